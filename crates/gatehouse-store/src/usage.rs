//! Usage counters (SPEC §12 "Usage"): requests per credential and per app, by outcome, per minute and
//! per hour. Nodes count in memory and add their counts here in batches; every write is an additive
//! upsert, so two nodes flushing the same bucket add up.

use async_trait::async_trait;
use gatehouse_core::Timestamp;

use crate::StoreError;

/// What the gateway answered, in the four classes usage is counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageOutcome {
    /// Let through to the app (whatever the app then answered).
    Allowed,
    /// 401: no valid credential.
    Unauthorized,
    /// 403: a valid credential that may not do this.
    Forbidden,
    /// 429: over its rate limit.
    RateLimited,
}

impl UsageOutcome {
    pub const ALL: [UsageOutcome; 4] =
        [UsageOutcome::Allowed, UsageOutcome::Unauthorized, UsageOutcome::Forbidden, UsageOutcome::RateLimited];

    /// Position in `UsageOutcome::ALL` (and in a counter array).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Requests counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub allowed: u64,
    pub unauthorized: u64,
    pub forbidden: u64,
    pub rate_limited: u64,
}

impl UsageCounts {
    /// Counts from an array indexed by `UsageOutcome::index`.
    pub fn from_array(a: [u64; 4]) -> Self {
        Self { allowed: a[0], unauthorized: a[1], forbidden: a[2], rate_limited: a[3] }
    }

    pub fn add(&mut self, other: &UsageCounts) {
        self.allowed += other.allowed;
        self.unauthorized += other.unauthorized;
        self.forbidden += other.forbidden;
        self.rate_limited += other.rate_limited;
    }

    pub fn total(&self) -> u64 {
        self.allowed + self.unauthorized + self.forbidden + self.rate_limited
    }
}

/// The kind of credential a request was counted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialKind {
    /// An API key, by its id (`key_…`).
    ApiKey,
    /// An OAuth client, by its client id.
    OAuthClient,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::OAuthClient => "oauth_client",
        }
    }
}

/// A credential as usage names it: its kind and id (never a secret or a hash).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageCredential {
    pub kind: CredentialKind,
    pub id: String,
}

/// Requests to add to one minute of one app (and of one credential, when the requests had one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// Any instant in the minute; stored as the minute's start.
    pub minute: Timestamp,
    pub app: String,
    /// `None`: requests without a valid credential, which count toward the app only.
    pub credential: Option<UsageCredential>,
    pub counts: UsageCounts,
}

/// The width of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// The start of the bucket holding `t`.
    pub fn floor(self, t: Timestamp) -> Timestamp {
        Timestamp(t.0 - t.0.rem_euclid(self.millis()))
    }
}

/// Whose series to read.
#[derive(Clone, Copy, Debug)]
pub enum UsageSubject<'a> {
    /// Every request of the app, with or without a credential.
    App(&'a str),
    /// Every request made with the credential, summed over the apps it was used with.
    Credential(&'a UsageCredential),
}

/// One bucket of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsagePoint {
    /// The bucket's start.
    pub at: Timestamp,
    pub counts: UsageCounts,
}

/// Usage counters, shared by every node on the same database.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds a batch of deltas to the minute and hour buckets in one transaction. Each delta counts
    /// toward its app, and toward its credential when it has one. Additive: concurrent writers add up.
    async fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError>;
    /// Buckets of `resolution` from the one holding `from` up to (excluding) `to`, oldest first; a
    /// bucket with nothing counted is in the series with zero counts.
    async fn usage_series(
        &self,
        subject: UsageSubject<'_>,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsagePoint>, StoreError>;
    /// Every app's totals over the buckets from the one holding `from` up to `to`, by app name.
    async fn usage_by_app(
        &self,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, UsageCounts)>, StoreError>;
    /// Deletes minute buckets that start before `minutes_before` and hour buckets before `hours_before`;
    /// returns how many rows went.
    async fn prune_usage(&self, minutes_before: Timestamp, hours_before: Timestamp) -> Result<u64, StoreError>;
}
