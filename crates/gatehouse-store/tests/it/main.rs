//! Storage stories: each runs on SQLite and on PostgreSQL, each time in a fresh database.

mod audit;
mod identities;
mod keys;
mod lists;
mod oauth;
mod secrets;
mod usage;
mod users;

use gatehouse_core::apikey::{generate, ApiKey, Namespace};
use gatehouse_core::{id::new_id, Environment, IpAllowlist, KeyKind, KeyRecord, ScopeSet, Timestamp};
use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::AuditEntry;

/// Defines `#[tokio::test]`s named `sqlite` and `postgres` in a module named after the story.
macro_rules! story {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(gatehouse_store::testing::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(gatehouse_store::testing::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use story;

pub async fn fresh(backend: Backend) -> (TestDb, gatehouse_store::SqlStore) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    (db, store)
}

pub fn new_key(env: Environment, kind: KeyKind, at: i64) -> KeyRecord {
    let ns = Namespace::default();
    let secret = generate(&ns, kind, env, &mut rand::rngs::OsRng);
    let parsed = ApiKey::parse(&ns, secret.expose()).unwrap();
    KeyRecord {
        id: new_id("key", Timestamp(at), &mut rand::thread_rng()),
        hash: parsed.hash(),
        name: "test key".into(),
        workspace: "default".into(),
        environment: env,
        kind,
        scopes: if kind == KeyKind::Restricted {
            ScopeSet::parse(["orders:read"]).unwrap()
        } else {
            ScopeSet::default()
        },
        ip_allowlist: IpAllowlist::parse(["10.0.0.0/8", "2001:db8::/32"]).unwrap(),
        expires_at: Some(Timestamp(at + 86_400_000)),
        app: Some("shop".into()),
        rate_limit: Some(gatehouse_core::RateLimitOverride { limit: 50, window_secs: 10 }),
        metadata: serde_json::json!({"team": "billing"}).as_object().unwrap().clone(),
        display_prefix: parsed.display_prefix(),
        last4: parsed.last4().to_owned(),
        created_at: Timestamp(at),
        created_by: "cli".into(),
        last_used_at: None,
        revoked_at: None,
        rolled_to: None,
    }
}

pub fn audit(action: &str, target: &str, at: i64) -> AuditEntry {
    AuditEntry {
        id: new_id("aud", Timestamp(at), &mut rand::thread_rng()),
        workspace: "default".into(),
        environment: Some(Environment::Live),
        at: Timestamp(at),
        actor: "cli".into(),
        action: action.into(),
        target_type: "api_key".into(),
        target_id: target.into(),
        request_id: None,
        ip: None,
        details: serde_json::json!({"name": "test key"}),
    }
}
