//! Gatehouse storage: what the rest of the code may ask of a database, split by capability,
//! and one SQL implementation that runs on SQLite (the embedded default) and PostgreSQL.
//!
//! Callers hold an `Arc<dyn Store>` and never ask which database is underneath.

mod error;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, KeyRecord, Timestamp};

pub use error::StoreError;
pub use sql::{SqlStore, StoreOptions};

/// One entry of the append-only audit log. Never holds a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    pub workspace: String,
    pub environment: Option<Environment>,
    pub at: Timestamp,
    /// Who did it: a key id (`key_…`), `cli`, or `system`.
    pub actor: String,
    /// What happened, e.g. `key.created`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// Non-secret facts about the change.
    pub details: serde_json::Value,
}

/// A page request: newest first, starting after the given id.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub starting_after: Option<String>,
}

/// A page of results and whether more follow.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// Filters for listing keys.
#[derive(Clone, Debug)]
pub struct KeyFilter {
    pub workspace: String,
    pub environment: Option<Environment>,
}

/// What a roll did: the old key (with its shortened expiry) and the new one.
#[derive(Clone, Debug)]
pub struct Rolled {
    pub old: KeyRecord,
    pub new: KeyRecord,
}

/// A batch of key hashes whose cached copies are stale, and the position to poll from next.
#[derive(Clone, Debug, Default)]
pub struct KeyChanges {
    pub hashes: Vec<KeyHash>,
    pub next_seq: i64,
    /// True when changes older than the poller's position were pruned, so it missed some and must drop its whole cache.
    pub gap: bool,
}

/// API keys and their change feed.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a new key and its audit entry in one transaction.
    async fn insert_key(&self, key: &KeyRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_by_id(&self, workspace: &str, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    async fn list_keys(&self, filter: &KeyFilter, page: &PageRequest) -> Result<Page<KeyRecord>, StoreError>;
    /// Revokes a key (idempotent: an already revoked key keeps its first `revoked_at`) and audits it.
    /// `None` when no such key exists.
    async fn revoke_key(
        &self,
        workspace: &str,
        id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// Inserts `new`, sets the old key's expiry to `old_expires_at` and points it at its successor, audited,
    /// in one transaction. Fails with `Conflict` if the old key is revoked or was already rolled.
    async fn roll_key(
        &self,
        workspace: &str,
        id: &str,
        new: &KeyRecord,
        old_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<Rolled>, StoreError>;
    /// Records when keys were last used; each id keeps the latest time seen.
    async fn touch_last_used(&self, batch: &[(String, Timestamp)]) -> Result<(), StoreError>;
    /// The newest position of the change feed.
    async fn key_changes_head(&self) -> Result<i64, StoreError>;
    /// Changes after `seq`; prunes entries older than `retain_before` on the way.
    async fn key_changes_since(&self, seq: i64, retain_before: Timestamp) -> Result<KeyChanges, StoreError>;
}

/// The audit log, read side (entries are written by the mutations that cause them).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Newest first; with an environment, entries of that environment and environment-less ones.
    async fn list_audit(
        &self,
        workspace: &str,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

/// Everything the server needs from storage.
#[async_trait]
pub trait Store: KeyStore + AuditStore + Send + Sync + std::fmt::Debug {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// `sqlite` or `postgres`, for logs and metrics only.
    fn backend(&self) -> &'static str;
}
