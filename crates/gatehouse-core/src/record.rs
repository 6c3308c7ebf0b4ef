//! A stored key's facts and the pure verification rules of SPEC §4.3 (everything but the lookup and the rate limit).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::apikey::{Environment, KeyHash, KeyKind};
use crate::deny::DenyReason;
use crate::ipallow::IpAllowlist;
use crate::scope::{Scope, ScopeSet};
use crate::time::Timestamp;

/// A per-key rate limit that replaces the deployment default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window in seconds.
    pub window_secs: u32,
}

/// Everything stored about a key except the secret (only its hash is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub hash: KeyHash,
    pub name: String,
    pub workspace: String,
    pub environment: Environment,
    pub kind: KeyKind,
    /// Empty for `sk` keys, which hold every scope.
    pub scopes: ScopeSet,
    pub ip_allowlist: IpAllowlist,
    pub expires_at: Option<Timestamp>,
    pub app: Option<String>,
    pub rate_limit: Option<RateLimitOverride>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub display_prefix: String,
    pub last4: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Set on the old key by a roll: the id of its successor.
    pub rolled_to: Option<String>,
}

/// What the request brings to the check.
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'a> {
    /// The environment the caller or app operates in.
    pub environment: Environment,
    /// The client address; `None` means unknown, which an allowlisted key refuses.
    pub ip: Option<IpAddr>,
    /// The app being accessed; `None` outside any app (management API), which an app-restricted key refuses.
    pub app: Option<&'a str>,
    /// The scope the route needs, if any.
    pub scope: Option<&'a Scope>,
}

impl KeyRecord {
    /// The scopes this key effectively holds.
    pub fn effective_scopes(&self) -> std::borrow::Cow<'_, ScopeSet> {
        match self.kind {
            KeyKind::Secret => std::borrow::Cow::Owned(ScopeSet::all()),
            KeyKind::Restricted => std::borrow::Cow::Borrowed(&self.scopes),
        }
    }

    pub fn holds(&self, scope: &Scope) -> bool {
        self.kind == KeyKind::Secret || self.scopes.grants(scope)
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// revoked → expired → environment → IP → app → scope; the first failure wins.
    pub fn check(&self, ctx: &VerifyContext<'_>, now: Timestamp) -> Result<(), DenyReason> {
        if self.revoked_at.is_some_and(|r| r <= now) {
            return Err(DenyReason::ApiKeyRevoked);
        }
        if self.is_expired(now) {
            return Err(DenyReason::ApiKeyExpired);
        }
        if self.environment != ctx.environment {
            return Err(DenyReason::EnvironmentMismatch);
        }
        if !self.ip_allowlist.is_empty() && !ctx.ip.is_some_and(|ip| self.ip_allowlist.allows(ip)) {
            return Err(DenyReason::IpNotAllowed);
        }
        if let Some(app) = &self.app {
            if ctx.app != Some(app.as_str()) {
                return Err(DenyReason::AppNotAllowed);
            }
        }
        if let Some(scope) = ctx.scope {
            if !self.holds(scope) {
                return Err(DenyReason::InsufficientScope(scope.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            id: "key_1".into(),
            hash: KeyHash([0; 32]),
            name: "n".into(),
            workspace: "default".into(),
            environment: Environment::Live,
            kind: KeyKind::Restricted,
            scopes: ScopeSet::parse(["orders:write"]).unwrap(),
            ip_allowlist: IpAllowlist::parse(["10.0.0.0/8"]).unwrap(),
            expires_at: Some(Timestamp(10_000)),
            app: Some("shop".into()),
            rate_limit: None,
            metadata: Default::default(),
            display_prefix: "gth_rk_live_abcd…".into(),
            last4: "wxyz".into(),
            created_at: Timestamp(0),
            created_by: "test".into(),
            last_used_at: None,
            revoked_at: None,
            rolled_to: None,
        }
    }

    /// One row per rule, each breaking exactly the rules listed, to pin the order of §4.3.
    #[test]
    fn verification_order_truth_table() {
        let read = Scope::parse("orders:read").unwrap();
        let admin = Scope::parse("admin:write").unwrap();
        let ok_ip: IpAddr = "10.1.1.1".parse().unwrap();
        let bad_ip: IpAddr = "192.0.2.1".parse().unwrap();
        struct Row {
            revoked: bool,
            now: i64,
            env: Environment,
            ip: Option<IpAddr>,
            app: Option<&'static str>,
            want: Result<(), &'static str>,
        }
        let rows = [
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Live,
                ip: Some(ok_ip),
                app: Some("shop"),
                want: Ok(()),
            },
            Row {
                revoked: true,
                now: 50_000,
                env: Environment::Test,
                ip: Some(bad_ip),
                app: None,
                want: Err("api_key_revoked"),
            },
            Row {
                revoked: false,
                now: 50_000,
                env: Environment::Test,
                ip: Some(bad_ip),
                app: None,
                want: Err("api_key_expired"),
            },
            Row {
                revoked: false,
                now: 10_000,
                env: Environment::Live,
                ip: Some(ok_ip),
                app: Some("shop"),
                want: Err("api_key_expired"),
            },
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Test,
                ip: Some(bad_ip),
                app: None,
                want: Err("environment_mismatch"),
            },
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Live,
                ip: Some(bad_ip),
                app: None,
                want: Err("ip_not_allowed"),
            },
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Live,
                ip: None,
                app: Some("shop"),
                want: Err("ip_not_allowed"),
            },
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Live,
                ip: Some(ok_ip),
                app: None,
                want: Err("app_not_allowed"),
            },
            Row {
                revoked: false,
                now: 5_000,
                env: Environment::Live,
                ip: Some(ok_ip),
                app: Some("blog"),
                want: Err("app_not_allowed"),
            },
        ];
        for (i, row) in rows.iter().enumerate() {
            let mut r = record();
            if row.revoked {
                r.revoked_at = Some(Timestamp(1));
            }
            let ctx = VerifyContext { environment: row.env, ip: row.ip, app: row.app, scope: Some(&read) };
            let got = r.check(&ctx, Timestamp(row.now)).map_err(|d| d.code());
            assert_eq!(got, row.want, "row {i}");
        }
        let ctx =
            VerifyContext { environment: Environment::Live, ip: Some(ok_ip), app: Some("shop"), scope: Some(&admin) };
        let denied = record().check(&ctx, Timestamp(5_000)).unwrap_err();
        assert_eq!(denied, DenyReason::InsufficientScope(admin.clone()));
        assert!(denied.to_string().contains("admin:write"));

        let mut sk = record();
        sk.kind = KeyKind::Secret;
        assert!(sk.check(&ctx, Timestamp(5_000)).is_ok(), "sk holds every scope");
    }
}
