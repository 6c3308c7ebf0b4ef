//! Webhook records and the storage capability that keeps them (SPEC §6): endpoints, the outbox of
//! events (written by the same transaction as the change, see `sql.rs`), deliveries and attempts.

use async_trait::async_trait;
use gatehouse_core::{Environment, Timestamp};

use crate::{AuditEntry, Page, PageRequest, StoreError};

/// Every event type Gatehouse emits. An audit entry whose action is one of these also writes an event.
pub const EVENT_TYPES: &[&str] = &[
    "key.created",
    "key.revoked",
    "key.rolled",
    "key.leaked",
    "oauth.client.created",
    "oauth.grant.created",
    "oauth.grant.revoked",
    "oauth.refresh_token.reused",
    "webhook_endpoint.disabled",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub id: String,
    pub workspace: String,
    pub environment: Environment,
    pub url: String,
    /// Event types, or `["*"]`.
    pub event_types: Vec<String>,
    pub description: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    /// Also send the Standard Webhooks headers.
    pub standard_headers: bool,
    pub created_at: Timestamp,
    pub created_by: String,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<Timestamp>,
    /// Inside a rotation window, whose signature goes last in the header: the secret the endpoint last
    /// accepted a delivery with (receivers that keep only the last `v1` check only that one).
    pub signature_last: SignatureLast,
}

/// One of the two live secrets of a rotation window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureLast {
    /// The newest secret, issued by the roll.
    Current,
    /// The secret before the roll, signing until `previous_secret_expires_at`.
    Previous,
}

impl SignatureLast {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureLast::Current => "current",
            SignatureLast::Previous => "previous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "current" => Some(SignatureLast::Current),
            "previous" => Some(SignatureLast::Previous),
            _ => None,
        }
    }

    /// The other secret of the window.
    pub fn other(self) -> Self {
        match self {
            SignatureLast::Current => SignatureLast::Previous,
            SignatureLast::Previous => SignatureLast::Current,
        }
    }
}

impl EndpointRecord {
    /// The secrets to sign with at `now`, in header order: the current one alone, or inside the rotation
    /// window both, the one the endpoint last accepted (`signature_last`) last.
    pub fn live_secrets(&self, now: Timestamp) -> Vec<&str> {
        self.secrets_in_order(now, self.signature_last)
    }

    /// As [`live_secrets`](Self::live_secrets), with `last`'s signature last inside the window.
    pub fn secrets_in_order(&self, now: Timestamp, last: SignatureLast) -> Vec<&str> {
        match self.previous_live(now) {
            None => vec![self.secret.as_str()],
            Some(p) if last == SignatureLast::Previous => vec![self.secret.as_str(), p],
            Some(p) => vec![p, self.secret.as_str()],
        }
    }

    /// Whether a rotation window is open at `now` (two secrets sign).
    pub fn in_rotation_window(&self, now: Timestamp) -> bool {
        self.previous_live(now).is_some()
    }

    fn previous_live(&self, now: Timestamp) -> Option<&str> {
        match (&self.previous_secret, self.previous_secret_expires_at) {
            (Some(p), Some(until)) if until > now => Some(p.as_str()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub id: String,
    pub workspace: String,
    pub environment: String,
    pub event_type: String,
    pub created_at: Timestamp,
    /// The exact JSON that is signed and sent.
    pub body: String,
}

/// A delivery claimed by a worker, with what it needs to send it.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub event: EventRecord,
    pub endpoint: EndpointRecord,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// One try at delivering an event, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub at: Timestamp,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(Timestamp),
    /// No retries left.
    Failed,
}

/// An attempt to record, what it leads to, and the audit entry to write if it disables the endpoint.
#[derive(Clone, Debug)]
pub struct FinishedAttempt {
    /// Inside a rotation window, an attempt refused with one signature order and retried at once with
    /// the other (`attempt`): logged before it, and not counted as a try of the retry schedule.
    pub refused_order: Option<AttemptRecord>,
    pub attempt: AttemptRecord,
    pub outcome: AttemptOutcome,
    /// On a delivery inside a rotation window: which signature was last, and the window's end (the roll
    /// it belongs to). Remembered as the endpoint's `signature_last` unless the secret was rolled since.
    pub accepted_order: Option<(SignatureLast, Timestamp)>,
    pub disabled_audit: AuditEntry,
}

/// The state of one (event, endpoint) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub endpoint_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// One delivery to an endpoint as its page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointDelivery {
    pub delivery: DeliveryRecord,
    pub event_type: String,
    pub event_created_at: Timestamp,
    pub attempts: Vec<AttemptRecord>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_endpoint(&self, e: &EndpointRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn endpoint_by_id(&self, workspace: &str, id: &str) -> Result<Option<EndpointRecord>, StoreError>;
    async fn list_endpoints(
        &self,
        workspace: &str,
        environment: Environment,
        page: &PageRequest,
    ) -> Result<Page<EndpointRecord>, StoreError>;
    /// New secret; the old one stays live until `previous_expires_at`.
    async fn roll_endpoint_secret(
        &self,
        workspace: &str,
        id: &str,
        secret: &str,
        previous_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRecord>, StoreError>;
    /// Disables (`Some(reason)`) or re-enables (`None`) an endpoint.
    async fn set_endpoint_disabled(
        &self,
        workspace: &str,
        id: &str,
        at: Timestamp,
        reason: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRecord>, StoreError>;

    async fn list_events(
        &self,
        workspace: &str,
        environment: Environment,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>, StoreError>;
    async fn event_by_id(&self, workspace: &str, id: &str) -> Result<Option<EventRecord>, StoreError>;
    async fn deliveries_of(&self, event_id: &str) -> Result<Vec<DeliveryRecord>, StoreError>;
    async fn attempts_of(&self, event_id: &str) -> Result<Vec<AttemptRecord>, StoreError>;
    /// The newest `limit` deliveries to one endpoint (newest event first), of events older than
    /// `before` when given (the next page), each with its event's type and every attempt at it, oldest
    /// attempt first.
    async fn deliveries_to(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EndpointDelivery>, StoreError>;
    /// Writes a test event (`test_type`, built from `audit` like every event) and one pending delivery of
    /// it to the enabled endpoint `endpoint_id` alone, with the audit entry, in one transaction. `None`
    /// (and nothing written) when that endpoint does not exist or is disabled.
    async fn insert_test_event(
        &self,
        workspace: &str,
        endpoint_id: &str,
        test_type: &str,
        audit: &AuditEntry,
    ) -> Result<Option<String>, StoreError>;
    /// Queues the event again, now, for every enabled endpoint of its environment that wants it.
    /// Returns how many deliveries were queued.
    async fn resend_event(&self, workspace: &str, id: &str, now: Timestamp) -> Result<u64, StoreError>;
    /// Queues one existing delivery (the event `event_id` to the enabled endpoint `endpoint_id` of
    /// `workspace`) again, now, with the audit entry; no other endpoint's delivery is touched. `false`
    /// (and nothing written) when there is no such delivery or the endpoint is disabled.
    async fn resend_delivery(
        &self,
        workspace: &str,
        endpoint_id: &str,
        event_id: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` due deliveries for `lease_ms` (rows claimed by another worker whose lease has
    /// not run out are skipped). Deliveries of disabled endpoints are not claimed.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Logs attempts and moves their deliveries on, in one transaction. A failure that leaves the endpoint
    /// failing for `disable_after_ms` disables it (with the item's `disabled_audit`, which also emits
    /// `webhook_endpoint.disabled`).
    async fn finish_attempts(&self, items: &[FinishedAttempt], disable_after_ms: i64) -> Result<(), StoreError>;
    /// Pending deliveries (for metrics).
    async fn pending_deliveries(&self) -> Result<i64, StoreError>;
}
