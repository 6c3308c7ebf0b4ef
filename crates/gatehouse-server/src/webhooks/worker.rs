//! The delivery worker: claims due deliveries (row leases, so several workers or nodes never send the
//! same attempt twice), signs each attempt afresh, POSTs it without following redirects, logs the
//! attempt and schedules the next one. The clock is injectable so retry schedules test in milliseconds.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::destination::forbidden_reason;
use gatehouse_core::id::new_id;
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

/// Resolves names for deliveries and refuses forbidden addresses, so the address checked is the address
/// connected to (no DNS rebinding between check and connect).
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow {
                if let Some((ip, why)) = addrs.iter().find_map(|a| forbidden_reason(a.ip()).map(|w| (a.ip(), w))) {
                    return Err(format!("{host} resolves to {ip}, a {why} address; refused (SSRF guard)").into());
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Delivers webhooks.
pub struct Worker {
    store: Arc<dyn Store>,
    cfg: WebhookConfig,
    clock: Clock,
    http: reqwest::Client,
    signature_header: String,
    /// Attempts are recorded in batches (one transaction for all that finished meanwhile).
    finished: crate::batch::Batcher<FinishedAttempt, ()>,
    metrics: Option<crate::metrics::Metrics>,
    /// Why the configured proxy may not be used, if it may not: then nothing is sent.
    proxy_refused: Option<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// What one attempt observed.
struct Observed {
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, cfg: WebhookConfig, clock: Clock) -> Self {
        // `no_proxy`: reqwest would otherwise honour HTTP(S)_PROXY / ALL_PROXY from the environment, and
        // a proxy resolves the destination itself, so the guarded resolver below would never run (SPEC §11).
        // A configured proxy's name is resolved by the guarded resolver like any destination.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("Gatehouse-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private: cfg.allow_private_destinations }));
        let mut proxy_refused = None;
        if let Some(url) = &cfg.proxy {
            match super::validate_proxy(url, cfg.allow_private_destinations)
                .and_then(|()| reqwest::Proxy::all(url).map_err(|e| e.to_string()))
            {
                Ok(p) => builder = builder.proxy(p),
                // Checked when the config was loaded; a worker built otherwise refuses every delivery.
                Err(e) => proxy_refused = Some(format!("webhooks.proxy: {e}")),
            }
        }
        let http = builder.build().expect("a static client configuration builds");
        let signature_header = format!("{}-Signature", cfg.header_prefix);
        let (s, disable_after) = (store.clone(), cfg.disable_after.as_millis() as i64);
        let finished = crate::batch::Batcher::new(256, move |items: Vec<FinishedAttempt>| {
            let s = s.clone();
            async move { s.finish_attempts(&items, disable_after).await.map(|()| vec![(); items.len()]) }
        });
        Self { store, cfg, clock, http, signature_header, finished, metrics: None, proxy_refused }
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

    async fn deliver(&self, d: ClaimedDelivery) {
        let now = (self.clock)();
        let started = Instant::now();
        let observed = self.attempt(&d, now).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let ok = observed.status.is_some_and(|s| (200..300).contains(&s));
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
        let attempt = AttemptRecord {
            id: new_id("att", now.0),
            event_id: d.event.id.clone(),
            endpoint_id: d.endpoint.id.clone(),
            at: now,
            status_code: observed.status.map(i64::from),
            latency_ms,
            error: observed.error.clone(),
            response_excerpt: observed.excerpt,
        };
        let target = crate::service::AuditTarget {
            kind: "webhook_endpoint",
            id: &d.endpoint.id,
            environment: Some(d.endpoint.environment),
        };
        let details = serde_json::json!({"url": d.endpoint.url, "reason": "failing for too long"});
        let mut disabled = crate::service::audit_entry(
            &d.endpoint.workspace,
            "system",
            &Default::default(),
            "webhook_endpoint.disabled",
            target,
            details,
        );
        disabled.at = now; // the worker's clock, which tests move by hand
        tracing::debug!(event = %d.event.id, endpoint = %d.endpoint.id, status = ?observed.status, error = ?observed.error, attempt = made, "webhook attempt");
        if let Err(e) = self.finished.submit(FinishedAttempt { attempt, outcome, disabled_audit: disabled }).await {
            // The lease runs out and the delivery is claimed again: at least once, never lost.
            tracing::warn!(error = %e, event = %d.event.id, "could not record a webhook attempt; it will be retried");
        }
    }

    async fn attempt(&self, d: &ClaimedDelivery, now: Timestamp) -> Observed {
        let fail = |e: String| Observed { status: None, error: Some(e), excerpt: None };
        if let Some(e) = &self.proxy_refused {
            return fail(e.clone());
        }
        if let Err(e) = self.check_literal(&d.endpoint.url) {
            return fail(e);
        }
        if self.cfg.proxy.is_some() {
            // Through a proxy the destination is resolved by the proxy, not by the guarded resolver,
            // so it is resolved and judged here first (the proxy may still resolve it differently).
            if let Err(e) = super::check_destination(&d.endpoint.url, self.cfg.allow_private_destinations).await {
                return fail(e.replacen("url: ", "", 1));
            }
        }
        let body = d.event.body.as_bytes();
        let t = now.unix_seconds();
        let secrets = d.endpoint.live_secrets(now);
        let mut req = self
            .http
            .post(&d.endpoint.url)
            .header("content-type", "application/json")
            .header(self.signature_header.as_str(), gatehouse_webhook::sign_header(&secrets, t, body));
        if d.endpoint.standard_headers {
            let sigs: Vec<String> =
                secrets.iter().filter_map(|s| gatehouse_webhook::standard::sign(s, &d.event.id, t, body)).collect();
            req = req
                .header("webhook-id", &d.event.id)
                .header("webhook-timestamp", t.to_string())
                .header("webhook-signature", sigs.join(" "));
        }
        let resp = match req.body(d.event.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let msg =
                    if e.is_timeout() { format!("timed out after {:?}", self.cfg.timeout) } else { error_chain(&e) };
                return fail(msg);
            }
        };
        let status = resp.status().as_u16();
        let excerpt = first_kib(resp).await;
        Observed { status: Some(status), error: None, excerpt }
    }

    /// An IP-literal URL never goes through the resolver, so it is checked here.
    fn check_literal(&self, url: &str) -> Result<(), String> {
        if self.cfg.allow_private_destinations {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        let ip: Option<IpAddr> = super::literal_ip(&parsed);
        match ip.and_then(|ip| forbidden_reason(ip).map(|w| (ip, w))) {
            Some((ip, why)) => Err(format!("{ip} is a {why} address; refused (SSRF guard)")),
            None => Ok(()),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.chars().take(500).collect()
}

/// The first KiB of a response body, as text.
async fn first_kib(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(1024);
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}
