//! Who acts and from where, and the one way every service builds an audit entry.

use std::sync::Arc;

use crate::ids::new_id;
use gatehouse_core::authority::Authority;
use gatehouse_core::{Environment, KeyRecord, RateLimitOverride, Timestamp};
use gatehouse_store::AuditEntry;

/// Who asks: the shell (full authority over the data dir), a verified key, or a signed-in person in the
/// dashboard.
#[derive(Clone, Debug)]
pub enum Actor {
    Cli,
    Key(Arc<KeyRecord>),
    /// A signed-in user. Their role decides what they may do at all (the dashboard checks it with
    /// `authority::role_may_delegate` before calling a service, and bounds each scope they hand out by
    /// it); within that, a person acts over the whole workspace like the shell.
    User(Arc<gatehouse_store::UserRecord>),
}

impl Actor {
    pub fn id(&self) -> String {
        match self {
            Actor::Cli => "cli".into(),
            Actor::Key(k) => k.id.clone(),
            Actor::User(u) => u.id.clone(),
        }
    }

    /// The ceiling for what this actor creates (SPEC §11); `None` for the shell, which has full
    /// authority over its data dir.
    pub fn authority(&self, default_rate_limit: Option<RateLimitOverride>) -> Option<Authority<'_>> {
        match self {
            Actor::Cli | Actor::User(_) => None,
            Actor::Key(k) => Some(Authority::of_key(k, default_rate_limit)),
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

/// What an audit entry is about.
#[derive(Clone, Copy, Debug)]
pub struct AuditTarget<'a> {
    /// `api_key`, `oauth_client`, `oauth_grant`, `webhook_endpoint`, …
    pub kind: &'a str,
    pub id: &'a str,
    pub environment: Option<Environment>,
}

/// An audit entry stamped now with a fresh id: the one way every service builds them.
pub fn audit_entry(
    workspace: &str,
    actor: &str,
    meta: &RequestMeta,
    action: &str,
    target: AuditTarget<'_>,
    details: serde_json::Value,
) -> AuditEntry {
    let now = Timestamp::now();
    AuditEntry {
        id: new_id("aud", now),
        workspace: workspace.to_owned(),
        environment: target.environment,
        at: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_type: target.kind.to_owned(),
        target_id: target.id.to_owned(),
        request_id: meta.request_id.clone(),
        ip: meta.ip.clone(),
        details,
    }
}
