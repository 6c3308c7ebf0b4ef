//! Request and response bodies of the management API, converted by hand from domain types.

use gatehouse_core::{Environment, KeyKind, KeyRecord, RateLimitOverride, Timestamp};
use gatehouse_store::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `sk` (every scope of its environment) or `rk` (restricted to its scopes).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum Kind {
    #[serde(rename = "sk")]
    Sk,
    #[serde(rename = "rk")]
    Rk,
}

impl From<Kind> for KeyKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Sk => KeyKind::Secret,
            Kind::Rk => KeyKind::Restricted,
        }
    }
}

impl From<KeyKind> for Kind {
    fn from(k: KeyKind) -> Self {
        match k {
            KeyKind::Secret => Kind::Sk,
            KeyKind::Restricted => Kind::Rk,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Live,
    Test,
}

impl From<Env> for Environment {
    fn from(e: Env) -> Self {
        match e {
            Env::Live => Environment::Live,
            Env::Test => Environment::Test,
        }
    }
}

impl From<Environment> for Env {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Live => Env::Live,
            Environment::Test => Env::Test,
        }
    }
}

/// A per-key rate limit replacing the deployment default.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDto {
    /// Requests allowed per window (1 … 10,000,000).
    pub limit: u32,
    /// The window in seconds (1 … 86,400).
    pub window_secs: u32,
}

impl From<RateLimitDto> for RateLimitOverride {
    fn from(r: RateLimitDto) -> Self {
        RateLimitOverride { limit: r.limit, window_secs: r.window_secs }
    }
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyIn {
    /// A label for people (≤ 100 characters).
    pub name: Option<String>,
    /// Default: `rk` (restricted) when `scopes` is given, else `sk`. `sk` with `scopes` is refused (400).
    pub kind: Option<Kind>,
    /// Default: the calling key's environment (a key can only create keys in its own environment).
    pub environment: Option<Env>,
    /// Exactly what a restricted key holds: required (non-empty) for `rk` keys, refused for `sk` keys; given
    /// without `kind`, it makes the key `rk`. `resource:action`, `*`, or any RFC 6749 scope token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// CIDRs or addresses (IPv4 and IPv6); empty allows every address.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// In the future: Unix seconds (`1893456000`) or an RFC 3339 time (`"2030-01-01T00:00:00Z"`).
    #[schema(value_type = Option<Object>)]
    pub expires_at: Option<TimeIn>,
    /// Restrict the key to one app (by name).
    pub app: Option<String>,
    pub rate_limit: Option<RateLimitDto>,
    /// Up to 50 keys, 4 KiB as JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A point in time as a client may send it: Unix seconds or RFC 3339.
#[derive(Debug, Clone)]
pub(crate) enum TimeIn {
    UnixSeconds(i64),
    Rfc3339(String),
}

impl<'de> Deserialize<'de> for TimeIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TimeIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Unix seconds or an RFC 3339 time such as \"2030-01-01T00:00:00Z\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TimeIn, E> {
                Ok(TimeIn::UnixSeconds(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TimeIn, E> {
                i64::try_from(v).map(TimeIn::UnixSeconds).map_err(|_| E::custom("time out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TimeIn, E> {
                Ok(TimeIn::Rfc3339(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl TimeIn {
    pub(crate) fn to_timestamp(&self) -> Result<Timestamp, String> {
        match self {
            TimeIn::UnixSeconds(s) if (0..=253_402_300_799).contains(s) => Ok(Timestamp::from_unix_seconds(*s)),
            TimeIn::UnixSeconds(s) => Err(format!("{s} is not a plausible Unix time in seconds")),
            TimeIn::Rfc3339(t) => Timestamp::parse_rfc3339(t),
        }
    }
}

/// An API key as the API shows it. Never contains the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// Always `api_key`.
    pub object: &'static str,
    pub name: String,
    pub kind: Kind,
    pub environment: Env,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    /// e.g. `gth_sk_live_4eC3…`
    pub display_prefix: String,
    pub last4: String,
    /// e.g. `gth_sk_live_4eC3…ab12`
    pub redacted: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<i64>,
    pub app: Option<String>,
    pub rate_limit: Option<RateLimitDto>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Set on a rolled key: its successor.
    pub rolled_to: Option<String>,
}

impl KeyOut {
    pub fn from_record(k: &KeyRecord, now: Timestamp) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.is_expired(now) {
            "expired"
        } else {
            "active"
        };
        let secs = |t: Option<Timestamp>| t.map(Timestamp::unix_seconds);
        KeyOut {
            id: k.id.clone(),
            object: "api_key",
            name: k.name.clone(),
            kind: k.kind.into(),
            environment: k.environment.into(),
            status,
            display_prefix: k.display_prefix.clone(),
            last4: k.last4.clone(),
            redacted: format!("{}{}", k.display_prefix, k.last4),
            scopes: match k.kind {
                KeyKind::Secret => vec!["*".to_owned()],
                KeyKind::Restricted => k.scopes.to_strings(),
            },
            ip_allowlist: k.ip_allowlist.to_strings(),
            expires_at: secs(k.expires_at),
            app: k.app.clone(),
            rate_limit: k.rate_limit.map(|r| RateLimitDto { limit: r.limit, window_secs: r.window_secs }),
            metadata: k.metadata.clone(),
            created_at: k.created_at.unix_seconds(),
            created_by: k.created_by.clone(),
            last_used_at: secs(k.last_used_at),
            revoked_at: secs(k.revoked_at),
            rolled_to: k.rolled_to.clone(),
        }
    }
}

/// A key with its secret: returned once, by create and roll.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyWithSecret {
    #[serde(flatten)]
    pub key: KeyOut,
    /// The full key. Shown only in this response; store it now.
    pub secret: String,
}

/// Body of `POST /v1/keys/{id}/roll`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollIn {
    /// How long the old key keeps working, 0 … 604800 seconds (7 days). Default 0: the old key stops now.
    #[serde(default)]
    pub grace_period_secs: i64,
}

/// Answer of a roll: the new key (with its secret) and the old one.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RolledOut {
    pub new_key: KeyWithSecret,
    pub old_key: KeyOut,
}

/// Body of `POST /v1/keys/{id}/revoke` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeIn {
    /// Recorded in the audit log (≤ 500 characters).
    pub reason: Option<String>,
}

/// Body of `POST /v1/keys/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyIn {
    /// The key to check. It is checked in the calling key's environment.
    pub key: String,
    /// A scope the key must hold.
    pub scope: Option<String>,
    /// The address the key is used from; required for keys with an IP allowlist.
    pub ip: Option<String>,
    /// The app the key is used for; required for app-restricted keys.
    pub app: Option<String>,
}

/// Answer of `POST /v1/keys/verify`: always 200 when the caller is authorized.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyOut {
    pub valid: bool,
    /// `valid` or one of the §5 error codes (`invalid_api_key`, `api_key_revoked`, …, `rate_limited`).
    pub code: &'static str,
    /// Why it is not valid, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds to wait, when `code` is `rate_limited`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The key, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyOut>,
}

/// Pagination parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// 1 … 100, default 10.
    pub limit: Option<u32>,
    /// An id from the previous page (`next_cursor`).
    pub starting_after: Option<String>,
}

impl ListQuery {
    pub(crate) fn page(&self) -> Result<gatehouse_store::PageRequest, crate::error::ApiError> {
        let limit = self.limit.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(crate::error::ApiError::InvalidRequest("limit must be between 1 and 100".into()));
        }
        Ok(gatehouse_store::PageRequest { limit, starting_after: self.starting_after.clone() })
    }
}

/// A page of results, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListOut<T: ToSchema> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `starting_after` to get the next page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> ListOut<T> {
    /// A page of records as the API shows them; the cursor is the last record's id.
    pub(crate) fn from_page<R>(
        page: &gatehouse_store::Page<R>,
        id: impl Fn(&R) -> &str,
        out: impl Fn(&R) -> T,
    ) -> Self {
        ListOut {
            object: "list",
            next_cursor: if page.has_more { page.items.last().map(|r| id(r).to_owned()) } else { None },
            has_more: page.has_more,
            data: page.items.iter().map(out).collect(),
        }
    }
}

/// One audit log entry. Never contains a secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditOut {
    pub id: String,
    /// Always `audit_entry`.
    pub object: &'static str,
    /// Unix seconds.
    pub at: i64,
    /// Who: a key id, `cli` or `system`.
    pub actor: String,
    /// What, e.g. `key.created`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub environment: Option<Env>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<&AuditEntry> for AuditOut {
    fn from(a: &AuditEntry) -> Self {
        AuditOut {
            id: a.id.clone(),
            object: "audit_entry",
            at: a.at.unix_seconds(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target_type: a.target_type.clone(),
            target_id: a.target_id.clone(),
            environment: a.environment.map(Into::into),
            request_id: a.request_id.clone(),
            ip: a.ip.clone(),
            details: a.details.clone(),
        }
    }
}
