//! Fills a database with what the dashboard benchmark needs (bench/dashboard_http.sh): 100,000 API
//! keys over a few apps (both environments, both kinds, some revoked, some expired) created over the
//! last 90 days with their audit entries, and 30 days of usage — per hour for the busiest keys, per
//! minute for the last 24 hours for some of them — written through the store's own APIs
//! (`insert_key`, `revoke_key`, the batched `add_usage`), so the rows are exactly what a running
//! Gatehouse writes.
//!
//! `cargo run --release -p gatehouse-services --example seed_dashboard -- DB [KEYS] [APPS]`
//! DB is a SQLite file path or a `postgres://` URL; KEYS defaults to 100000; APPS is a comma-separated
//! list (default `shop,blog,billing,search`). Prints one JSON line with ids and words for the benchmark.

use std::collections::VecDeque;
use std::time::Instant;

use gatehouse_core::apikey::{generate, ApiKey, Namespace};
use gatehouse_core::{
    id::new_id, Environment, IpAllowlist, KeyKind, KeyRecord, RateLimitOverride, ScopeSet, Timestamp,
};
use gatehouse_store::usage::{CredentialKind, UsageCounts, UsageCredential, UsageDelta, UsageStore};
use gatehouse_store::{AuditEntry, KeyStore, SqlStore, StoreOptions};
use rand::{Rng, SeedableRng};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// Keys with usage in every hour of the last 30 days (`SEED_HOURLY_KEYS` overrides).
const HOURLY_KEYS: usize = 1_000;
/// Of those, keys with usage in every minute of the last 24 hours (`SEED_MINUTE_KEYS` overrides).
const MINUTE_KEYS: usize = 100;
/// Deltas per `add_usage` call (one transaction each).
const USAGE_BATCH: usize = 2_000;
const WORDS: [&str; 8] =
    ["checkout", "billing worker", "ci deploy", "mobile app", "partner", "cron", "search", "import"];

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: seed_dashboard DB [KEYS] [APPS]");
    let count: usize = args.next().map_or(100_000, |c| c.parse().expect("KEYS must be a number"));
    let apps: Vec<String> =
        args.next().unwrap_or_else(|| "shop,blog,billing,search".into()).split(',').map(str::to_owned).collect();
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (hourly_keys, minute_keys) = (env("SEED_HOURLY_KEYS", HOURLY_KEYS), env("SEED_MINUTE_KEYS", MINUTE_KEYS));
    let opts = StoreOptions { max_connections: 16, ..Default::default() };
    let store = SqlStore::open(&url, &opts).await.expect("open and migrate the store");
    let ns = Namespace::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let now = Timestamp::now().0;
    let started = Instant::now();

    // Keys, oldest first, each with its `key.created` entry (one transaction each, as the service
    // writes them); every 20th revoked later with its `key.revoked` entry.
    let mut busy: VecDeque<(String, Option<String>)> = VecDeque::with_capacity(hourly_keys + 1);
    let mut revoked = 0;
    let mut expired = 0;
    let mut sample_search = String::new();
    for i in 0..count {
        let created = now - 90 * DAY + (i as i64) * (90 * DAY) / count as i64;
        let environment = if i % 5 == 4 { Environment::Test } else { Environment::Live };
        let kind = if i % 3 == 0 { KeyKind::Secret } else { KeyKind::Restricted };
        let app = (i % 5 != 3).then(|| apps[i % apps.len()].clone());
        let secret = generate(&ns, kind, environment, &mut rng);
        let parsed = ApiKey::parse(&ns, secret.expose()).expect("generated keys parse");
        let name = format!("{} {} {i}", WORDS[i % WORDS.len()], app.as_deref().unwrap_or("any app"));
        let expires_at = match i % 33 {
            0 => Some(Timestamp(created + 7 * DAY).min(Timestamp(now - DAY))),
            1 => Some(Timestamp(now + 30 * DAY)),
            _ => None,
        };
        if expires_at.is_some_and(|e| e.0 <= now) {
            expired += 1;
        }
        let key = KeyRecord {
            id: new_id("key", Timestamp(created), &mut rng),
            hash: parsed.hash(),
            workspace: "default".into(),
            environment,
            kind,
            name: name.clone(),
            scopes: if kind == KeyKind::Restricted {
                ScopeSet::parse(["orders:read", "customers:write"]).expect("scopes parse")
            } else {
                ScopeSet::default()
            },
            ip_allowlist: IpAllowlist::default(),
            expires_at,
            app: app.clone(),
            rate_limit: (i % 7 == 0).then_some(RateLimitOverride { limit: 600, window_secs: 60 }),
            metadata: Default::default(),
            display_prefix: parsed.display_prefix(),
            last4: parsed.last4().to_owned(),
            created_at: Timestamp(created),
            created_by: "seed".into(),
            last_used_at: None,
            revoked_at: None,
            rolled_to: None,
        };
        let details = serde_json::json!({"name": name, "kind": kind.as_str(), "app": app});
        store.insert_key(&key, &audit("key.created", &key, created, details.clone())).await.expect("insert key");
        if i % 20 == 7 {
            let at = created + DAY.min((now - created) / 2);
            let entry = audit("key.revoked", &key, at, details);
            store.revoke_key("default", &key.id, Timestamp(at), &entry).await.expect("revoke key");
            revoked += 1;
        } else if environment == Environment::Live && app.is_some() && expires_at.is_none() {
            busy.push_back((key.id.clone(), app.clone()));
            if busy.len() > hourly_keys {
                busy.pop_front();
            }
        }
        if i == count / 2 {
            // A search that matches one key: the list checks every key along the way.
            sample_search = i.to_string();
        }
        if (i + 1) % 10_000 == 0 {
            eprintln!("{} keys in {:.0}s", i + 1, started.elapsed().as_secs_f64());
        }
    }
    let keys_done = started.elapsed().as_secs_f64();

    // Usage: the newest `hourly_keys` busy keys in every hour of the last 30 days, the newest
    // `minute_keys` of them in every minute of the last 24 hours, and requests without a credential.
    let busy: Vec<_> = busy.into_iter().rev().collect();
    let mut deltas = Vec::with_capacity(USAGE_BATCH);
    let mut written = 0usize;
    let mut flush = |deltas: &mut Vec<UsageDelta>| {
        let batch = std::mem::take(deltas);
        written += batch.len();
        let store = store.clone();
        async move { store.add_usage(&batch).await.expect("add usage") }
    };
    let this_hour = now - now.rem_euclid(HOUR);
    for (n, (id, app)) in busy.iter().enumerate() {
        let credential = Some(UsageCredential { kind: CredentialKind::ApiKey, id: id.clone() });
        for h in 0..(30 * 24) {
            let counts = UsageCounts {
                allowed: rng.gen_range(50..500),
                unauthorized: 0,
                forbidden: rng.gen_range(0..5),
                rate_limited: rng.gen_range(0..3),
            };
            let minute = Timestamp(this_hour - h * HOUR);
            deltas.push(UsageDelta {
                minute,
                app: app.clone().unwrap_or_default(),
                credential: credential.clone(),
                counts,
            });
            if deltas.len() == USAGE_BATCH {
                flush(&mut deltas).await;
            }
        }
        if n < minute_keys {
            let this_minute = now - now.rem_euclid(MINUTE);
            for m in 1..(24 * 60) {
                let counts = UsageCounts { allowed: rng.gen_range(1..20), ..Default::default() };
                let minute = Timestamp(this_minute - m * MINUTE);
                if minute.0 % HOUR == 0 {
                    continue; // already counted above
                }
                deltas.push(UsageDelta {
                    minute,
                    app: app.clone().unwrap_or_default(),
                    credential: credential.clone(),
                    counts,
                });
                if deltas.len() == USAGE_BATCH {
                    flush(&mut deltas).await;
                }
            }
        }
    }
    for app in &apps {
        for h in 0..(30 * 24) {
            let counts = UsageCounts { unauthorized: rng.gen_range(0..50), ..Default::default() };
            deltas.push(UsageDelta {
                minute: Timestamp(this_hour - h * HOUR),
                app: app.clone(),
                credential: None,
                counts,
            });
        }
    }
    flush(&mut deltas).await;
    // What a running node's pruning leaves: per-minute rows of the last 24 hours only.
    let pruned = store.prune_usage(Timestamp(now - DAY), Timestamp(now - 31 * DAY)).await.expect("prune usage");
    let total = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} keys ({revoked} revoked, {expired} expired) in {keys_done:.0}s; {written} usage deltas, \
         {pruned} old minute rows pruned; {total:.0}s in all"
    );
    let busiest = busy.first().map(|(id, _)| id.clone()).unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "keys": count, "revoked": revoked, "expired": expired, "usage_deltas": written,
            "busy_key": busiest, "hourly_keys": hourly_keys, "minute_keys": minute_keys, "apps": apps, "search": sample_search,
            "seconds": {"keys": keys_done, "total": total},
        })
    );
    store.close().await;
}

/// The audit entry the key service writes for `action` on `key`.
fn audit(action: &str, key: &KeyRecord, at: i64, details: serde_json::Value) -> AuditEntry {
    AuditEntry {
        id: new_id("aud", Timestamp(at), &mut rand::thread_rng()),
        workspace: "default".into(),
        environment: Some(key.environment),
        at: Timestamp(at),
        actor: "cli".into(),
        action: action.into(),
        target_type: "api_key".into(),
        target_id: key.id.clone(),
        request_id: None,
        ip: None,
        details,
    }
}
