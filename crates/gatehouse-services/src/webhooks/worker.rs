//! The delivery worker: claims due deliveries (row leases, so several workers or nodes never send the
//! same attempt twice), hands each attempt to a [`Sender`] (the server's signs it afresh and POSTs it
//! without following redirects), logs the attempt and schedules the next one. The clock is injectable so
//! retry schedules test in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ids::new_id;
use gatehouse_core::Timestamp;
use gatehouse_store::webhooks::{AttemptOutcome, AttemptRecord, ClaimedDelivery, FinishedAttempt};
use gatehouse_store::Store;
use rand::Rng;

use super::WebhookConfig;

/// The time source of the worker (wall clock in production, a hand-moved one in tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Delivers webhooks.
pub struct Worker {
    store: Arc<dyn Store>,
    cfg: WebhookConfig,
    clock: Clock,
    sender: Arc<dyn Sender>,
    /// Attempts are recorded in batches (one transaction for all that finished meanwhile).
    finished: crate::batch::Batcher<FinishedAttempt, ()>,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// What one attempt observed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The response's status, if one came.
    pub status: Option<u16>,
    /// Why no response came (or why nothing was sent).
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub excerpt: Option<String>,
}

/// Sends one attempt of a delivery and says what it observed; the worker decides what follows.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn attempt(&self, d: &ClaimedDelivery, now: Timestamp) -> Observed;
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, cfg: WebhookConfig, clock: Clock, sender: Arc<dyn Sender>) -> Self {
        let (s, disable_after) = (store.clone(), cfg.disable_after.as_millis() as i64);
        let finished = crate::batch::Batcher::new(256, move |items: Vec<FinishedAttempt>| {
            let s = s.clone();
            async move { s.finish_attempts(&items, disable_after).await.map(|()| vec![(); items.len()]) }
        });
        Self { store, cfg, clock, sender, finished, metrics: None }
    }

    /// Counts attempts and delivery latency in these metrics.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Claims and delivers one batch of due deliveries; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, gatehouse_store::StoreError> {
        let now = (self.clock)();
        let lease = (self.cfg.timeout.as_millis() as i64) * 2 + 5_000;
        let claimed = self.store.claim_deliveries(now, lease, self.cfg.concurrency as i64).await?;
        let n = claimed.len();
        let tasks = claimed.into_iter().map(|d| self.deliver(d));
        futures_util::future::join_all(tasks).await;
        Ok(n)
    }

    /// Runs until aborted: delivers while there is work, polls when idle.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(0) => tokio::time::sleep(self.cfg.poll_interval).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook worker cannot reach storage; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    /// One attempt at `d` now: when it was made, what it observed, its latency, and its log record.
    async fn attempt(&self, d: &ClaimedDelivery) -> (Timestamp, Observed, AttemptRecord) {
        let now = (self.clock)();
        let started = Instant::now();
        let observed = self.sender.attempt(d, now).await;
        let record = AttemptRecord {
            id: new_id("att", now),
            event_id: d.event.id.clone(),
            endpoint_id: d.endpoint.id.clone(),
            at: now,
            status_code: observed.status.map(i64::from),
            latency_ms: started.elapsed().as_millis() as i64,
            error: observed.error.clone(),
            response_excerpt: observed.excerpt.clone(),
        };
        (now, observed, record)
    }

    async fn deliver(&self, mut d: ClaimedDelivery) {
        let (mut now, mut observed, mut attempt) = self.attempt(&d).await;
        // Inside a rotation window a receiver that reads only the last `v1` checks one secret; when the
        // receiver answers with a refusal, the other order is tried at once (ARCHITECTURE.md, "Webhook
        // secret rotation"). A delivery that got no answer is not retried this way: nothing judged it.
        let mut refused_order = None;
        if observed.status.is_some_and(|s| s >= 400) && d.endpoint.in_rotation_window(now) {
            if let Some(m) = &self.metrics {
                m.webhook_attempts.get_or_create(&crate::metrics::CodeLabel { code: "reordered" }).inc();
            }
            d.endpoint.signature_last = d.endpoint.signature_last.other();
            let (again_at, again, mut record) = self.attempt(&d).await;
            // Logged after the refused one even when the clock has not moved on (attempts sort by time).
            record.at = Timestamp(record.at.0.max(attempt.at.0 + 1));
            refused_order = Some(std::mem::replace(&mut attempt, record));
            (now, observed) = (again_at, again);
        }
        let ok = observed.status.is_some_and(|s| (200..300).contains(&s));
        let accepted_order = match d.endpoint.previous_secret_expires_at {
            Some(end) if ok && d.endpoint.in_rotation_window(now) => Some((d.endpoint.signature_last, end)),
            _ => None,
        };
        let made = d.attempts + 1;
        let outcome = if ok {
            AttemptOutcome::Delivered
        } else if let Some(delay) = self.cfg.schedule.get((made - 1) as usize) {
            let jitter = rand::thread_rng().gen_range(0.8..1.2);
            AttemptOutcome::RetryAt(now.plus_millis((delay.as_millis() as f64 * jitter) as i64))
        } else {
            AttemptOutcome::Failed
        };
        if let Some(m) = &self.metrics {
            let code = match outcome {
                AttemptOutcome::Delivered => "delivered",
                AttemptOutcome::RetryAt(_) => "retry",
                AttemptOutcome::Failed => "failed",
            };
            m.webhook_attempts.get_or_create(&crate::metrics::CodeLabel { code }).inc();
            if ok {
                let since = Timestamp::now().0 - d.event.created_at.0;
                m.webhook_delivery_seconds.observe(since.max(0) as f64 / 1000.0);
            }
        }
        let target = crate::audit::AuditTarget {
            kind: "webhook_endpoint",
            id: &d.endpoint.id,
            environment: Some(d.endpoint.environment),
        };
        let details = serde_json::json!({"url": d.endpoint.url, "reason": "failing for too long"});
        let mut disabled = crate::audit::audit_entry(
            &d.endpoint.workspace,
            "system",
            &Default::default(),
            "webhook_endpoint.disabled",
            target,
            details,
        );
        disabled.at = now; // the worker's clock, which tests move by hand
        tracing::debug!(event = %d.event.id, endpoint = %d.endpoint.id, status = ?observed.status, error = ?observed.error, attempt = made, reordered = refused_order.is_some(), "webhook attempt");
        let finished = FinishedAttempt { refused_order, attempt, outcome, accepted_order, disabled_audit: disabled };
        if let Err(e) = self.finished.submit(finished).await {
            // The lease runs out and the delivery is claimed again: at least once, never lost.
            tracing::warn!(error = %e, event = %d.event.id, "could not record a webhook attempt; it will be retried");
        }
    }
}
