//! Gatehouse storage: what the rest of the code may ask of a database, split by capability,
//! and one SQL implementation that runs on SQLite (the embedded default) and PostgreSQL.
//!
//! Callers hold an `Arc<dyn Store>` and never ask which database is underneath.

mod breaker;
mod error;
pub mod identities;
pub mod leaks;
mod notify;
pub mod oauth;
mod sql;
mod sql_where;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;
pub mod usage;
pub mod webhooks;

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, KeyKind, KeyRecord, Timestamp};

pub use breaker::ProbeConfig;
pub use error::StoreError;
pub use identities::{ExternalIdentity, IdentityStore, PendingLogin};
pub use leaks::{LeakRecord, LeakStore, LeakTarget};
pub use oauth::OAuthStore;
pub use sql::client_feed_hash;
pub use sql::{SqlStore, StoreOptions};
pub use usage::UsageStore;
pub use webhooks::WebhookStore;

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

/// Filters for listing keys: every field that is set must match. The SQL is built from the fields
/// that are set (see `sql_where`), so each combination can use its own index.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    pub workspace: String,
    pub environment: Option<Environment>,
    pub kind: Option<KeyKind>,
    /// The app the key is restricted to (exact name).
    pub app: Option<String>,
    pub status: Option<KeyStatus>,
    /// Case-insensitive (ASCII case on SQLite) substring of the name, the id, or the shown
    /// `prefix…last4`. `%`, `_` and `\` are matched literally. Text that no stored value can hold
    /// (a NUL byte, or more than [`MAX_SEARCH_LEN`] characters) matches nothing.
    pub search: Option<String>,
}

/// The longest search text that can match: longer than any name, id or prefix the services store.
pub const MAX_SEARCH_LEN: usize = 1_000;

/// A key's status as the dashboard filters by it, judged at an instant (expiry depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Not revoked and not expired at this instant.
    Active(Timestamp),
    /// Revoked (whenever; a revoked key that has also expired counts as revoked).
    Revoked,
    /// Not revoked, and expired at or before this instant.
    Expired(Timestamp),
}

/// Where a keyset page starts, newest first: after an id (older entries, the "Older" link), or just
/// before one (the newer entries next to it, the "Newer" link). Ids are unique, so no entry is lost
/// or shown twice across pages, whatever the timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    After(String),
    Before(String),
}

/// A keyset page request in either direction.
#[derive(Clone, Debug, Default)]
pub struct Seek {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl From<&PageRequest> for Seek {
    fn from(p: &PageRequest) -> Self {
        Seek { limit: p.limit, cursor: p.starting_after.clone().map(Cursor::After) }
    }
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
    /// Newest first (by id), narrowed by `filter`, after `page.starting_after`.
    async fn list_keys(&self, filter: &KeyFilter, page: &PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        self.seek_keys(filter, &Seek::from(page)).await
    }
    /// Newest first (by id), narrowed by `filter`, from the cursor in either direction; `has_more`
    /// says whether more entries follow in the direction asked for.
    async fn seek_keys(&self, filter: &KeyFilter, seek: &Seek) -> Result<Page<KeyRecord>, StoreError>;
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
    /// Ticks soon after another writer commits to the change feed, where the database can push
    /// (PostgreSQL's LISTEN/NOTIFY); `None` where readers must rely on polling alone. A hint to read the
    /// feed now: ticks may be lost or spurious, so readers keep polling as well.
    fn key_change_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// The audit log, read side (entries are written by the mutations that cause them).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Newest first; with an environment, only entries of that environment (SPEC §11: entries that
    /// belong to no environment — users, sign-ins — are for readers that act in both, e.g. owners).
    async fn list_audit(
        &self,
        workspace: &str,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let filter = AuditFilter { environment, ..Default::default() };
        self.seek_audit(workspace, &filter, &Seek::from(page)).await
    }

    /// Newest first, narrowed by `filter` (every field that is set must match), paginated like
    /// [`AuditStore::list_audit`].
    async fn search_audit(
        &self,
        workspace: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.seek_audit(workspace, filter, &Seek::from(page)).await
    }

    /// Newest first (by id), narrowed by `filter`, from the cursor in either direction; `has_more`
    /// says whether more entries follow in the direction asked for.
    async fn seek_audit(
        &self,
        workspace: &str,
        filter: &AuditFilter,
        seek: &Seek,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

/// The conflict message of a change that would leave the workspace without an enabled owner.
pub const LAST_OWNER: &str = "the last enabled owner must stay an enabled owner";

/// What an audit search narrows to. Text fields match exactly; the time range is `since <= at < until`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    pub environment: Option<Environment>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// The target's id (`key_…`, `usr_…`, …).
    pub target: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A person who signs in at the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub workspace: String,
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `owner` or `member`.
    pub role: String,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// A server-side session; only the SHA-256 of its cookie value is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: KeyHash,
    /// The control-plane login this app-host session came from (None for the login itself).
    pub parent_hash: Option<KeyHash>,
    pub user_id: String,
    /// The host the cookie was issued for.
    pub host: String,
    pub created_at: Timestamp,
    /// Absolute end of life.
    pub expires_at: Timestamp,
    /// Last activity as last written (activity is flushed in batches, not per request).
    pub last_seen_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The groups the identity provider's claim gave at sign-in (SPEC §15); empty for a password
    /// sign-in. An app-host session carries its login's.
    pub groups: Vec<String>,
}

/// Users.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user and its audit entry; a duplicate email is a `Conflict`.
    async fn insert_user(&self, user: &UserRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn user_by_email(&self, workspace: &str, email: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn count_users(&self, workspace: &str) -> Result<i64, StoreError>;
    /// Every user of the workspace, oldest first.
    async fn list_users(&self, workspace: &str) -> Result<Vec<UserRecord>, StoreError>;
    /// Applies `change` to the user `id` with its audit entry, in one transaction, and answers the
    /// updated record (`None`: no such user). Disabling a user or changing the password also ends every
    /// session of the user and puts those sessions and the user's live OAuth access tokens on the change
    /// feed, so every node drops its cached copies within one poll. Every change but enabling spends
    /// the user's open set-password links (issued for the user as they were). Disabling or demoting
    /// the workspace's last enabled owner is refused as a `Conflict`, nothing changed.
    async fn update_user(
        &self,
        id: &str,
        change: &UserChange,
        audit: &AuditEntry,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Stores a one-time set-password link for `user_id` (only the token's hash) with its audit entry.
    async fn insert_password_link(
        &self,
        token: &KeyHash,
        user_id: &str,
        created_at: Timestamp,
        expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The user a link is for, if it is unused and unexpired at `now` (nothing is spent).
    async fn password_link_user(&self, token: &KeyHash, now: Timestamp) -> Result<Option<String>, StoreError>;
    /// Spends the link and sets the user's password in one transaction, like
    /// `update_user(UserChange::Password)` (every session of the user ends). `None`: the link is unknown,
    /// used, expired, or not for `user_id`; nothing changed. Two presentations never both succeed, and
    /// the user's other open links are spent with it.
    async fn redeem_password_link(
        &self,
        token: &KeyHash,
        user_id: &str,
        hash: &str,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<UserRecord>, StoreError>;
}

/// A change to a user (`UserStore::update_user`).
#[derive(Clone, Debug, PartialEq, Eq)]
///
/// Disabling a user or giving them another role is refused with [`StoreError::Conflict`] carrying
/// [`LAST_OWNER`] when they are the workspace's last enabled owner; the check and the write are one
/// conditional statement inside the write transaction, so two admins acting at once cannot both pass it.
pub enum UserChange {
    Disable {
        at: Timestamp,
    },
    Enable,
    /// A new Argon2id PHC string.
    Password {
        hash: String,
        at: Timestamp,
    },
    /// A new Argon2id PHC string set by the user themselves: every session of theirs ends except
    /// `keep` (the one they changed it from).
    OwnPassword {
        hash: String,
        at: Timestamp,
        keep: KeyHash,
    },
    /// A new role. Sessions stay, but their cached copies (and of the user's live OAuth access tokens)
    /// are dropped through the change feed, so the new role applies to the next request.
    Role {
        role: String,
        at: Timestamp,
    },
}

/// Sessions and the one-time tickets that carry a login to an app host.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    async fn session_by_hash(&self, hash: &KeyHash) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity; each session keeps the latest time seen.
    async fn touch_sessions(&self, batch: &[(KeyHash, Timestamp)]) -> Result<(), StoreError>;
    /// Ends a session together with its whole family (its login and every app session of that login),
    /// putting every hash on the change feed. Returns the hashes ended.
    async fn revoke_session_family(&self, hash: &KeyHash, at: Timestamp) -> Result<Vec<KeyHash>, StoreError>;
    /// The user's live control-plane logins (no parent, not ended, not past their end) at `now`, newest first.
    async fn user_logins(&self, user_id: &str, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends every session of the user except the login `keep` and its app sessions, putting every hash
    /// ended on the change feed. Returns the hashes ended.
    async fn revoke_other_sessions(
        &self,
        user_id: &str,
        keep: &KeyHash,
        at: Timestamp,
    ) -> Result<Vec<KeyHash>, StoreError>;
    /// Stores a one-time ticket for `host`, bound to the browser whose state cookie hashes to `browser`.
    async fn insert_ticket(
        &self,
        ticket: &KeyHash,
        parent: &KeyHash,
        host: &str,
        browser: &KeyHash,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Uses a ticket once: if it exists, is for `host`, is unexpired and unused, marks it used and returns
    /// its login's hash and the browser binding (`None` for a ticket stored without one). The caller
    /// compares the binding; a ticket is spent whether or not it matches.
    async fn redeem_ticket(
        &self,
        ticket: &KeyHash,
        host: &str,
        now: Timestamp,
    ) -> Result<Option<(KeyHash, Option<KeyHash>)>, StoreError>;
}

/// How failed sign-ins are counted (SPEC §11 "Sign-in"): the first `free_attempts` failures of a
/// subject cost nothing; from then on each further attempt must wait 1 s, doubling per failure, at most
/// `max_wait_ms`; failures are forgotten `forget_after_ms` after the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub free_attempts: u32,
    pub max_wait_ms: i64,
    pub forget_after_ms: i64,
}

impl ThrottlePolicy {
    /// The wait imposed after the `failures`-th counted attempt.
    pub fn wait_after(&self, failures: i64) -> i64 {
        let free = i64::from(self.free_attempts);
        if failures < free {
            return 0;
        }
        let doublings = (failures - free).min(30) as u32;
        1000i64.saturating_mul(1i64 << doublings).min(self.max_wait_ms)
    }
}

/// The outcome of reserving a sign-in attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt may be checked; the count of each subject including this attempt, in the order given.
    Granted(Vec<i64>),
    /// A subject is waiting: nothing was counted; the next attempt is allowed at this time.
    Throttled { retry_at: Timestamp },
}

/// Sign-in throttling shared by every node on the same database.
#[async_trait]
pub trait SignInStore: Send + Sync {
    /// Atomically counts one attempt against every subject, or against none when any of them must
    /// still wait. Concurrent callers are serialised, so a burst spends the allowance exactly as the
    /// same attempts one after another would.
    async fn reserve_sign_in(
        &self,
        workspace: &str,
        subjects: &[&str],
        now: Timestamp,
        policy: &ThrottlePolicy,
    ) -> Result<Reservation, StoreError>;
    /// Gives back a reserved attempt that did not fail (a success, or one that could not be checked).
    /// `forget` subjects start over (the account after a success); the others lose the one attempt.
    async fn release_sign_in(
        &self,
        workspace: &str,
        forget: &[&str],
        give_back: &[&str],
        policy: &ThrottlePolicy,
    ) -> Result<(), StoreError>;
    /// Writes an audit entry about sign-ins (failures are summarised by the caller, not one per attempt).
    async fn audit_sign_in(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Deletes counters whose last attempt is older than `before`; returns how many.
    async fn prune_sign_in(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Deployment-wide secrets, created on first use and shared by every node.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret called `name`, inserting `fresh` if there is none yet (the first writer wins).
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError>;
    /// The secret called `name`, if there is one (never creates it).
    async fn read_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets the secret `name` to `value` if it still holds `expected` (`None`: if it does not exist
    /// yet), with its audit entry in the same transaction. False when another writer was first.
    async fn swap_secret(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
}

/// Everything the server needs from storage.
#[async_trait]
pub trait Store:
    KeyStore
    + AuditStore
    + UserStore
    + SessionStore
    + SignInStore
    + SecretStore
    + OAuthStore
    + WebhookStore
    + UsageStore
    + LeakStore
    + IdentityStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether storage is known to be unreachable right now, so calls fail at once (see the store's
    /// circuit breaker); for metrics and logs.
    fn known_down(&self) -> bool {
        false
    }
    /// `sqlite` or `postgres`, for logs and metrics only.
    fn backend(&self) -> &'static str;
}
