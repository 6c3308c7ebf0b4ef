//! PostgreSQL stopped under load (SPEC §16): a `gatehouse serve` on a PostgreSQL server of the test's
//! own keeps answering from its cache for `max_staleness`, then answers 503 at once (no request waits
//! for a connection) and never 200 for a revoked or unknown key; when the server is started again the
//! node recovers by itself, and every key it acknowledged (200) has its audit entry and its webhook event.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_core::{Environment, KeyKind};
use gatehouse_store::{AuditFilter, AuditStore, PageRequest, SqlStore, StoreOptions};
use serde_json::{json, Value};

use crate::servers::{receiver, NodeDir, OwnPostgres};

const MAX_STALENESS: Duration = Duration::from_millis(1000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The admin key, cached: 200 while the cache may be trusted.
    Valid,
    Revoked,
    /// A well-formed key nobody created (a fresh one per request, so no negative cache answers it).
    Unknown,
    /// `POST /v1/keys`: a write with an audit entry and a webhook event.
    Create,
}

#[derive(Debug)]
struct Sample {
    kind: Kind,
    started: Instant,
    took: Duration,
    status: u16,
    created: Option<String>,
}

async fn one(client: &reqwest::Client, base: &str, kind: Kind, admin: &str, revoked: &str) -> Sample {
    let unknown;
    let req = match kind {
        Kind::Valid => client.get(format!("{base}/v1/keys?limit=1")).bearer_auth(admin),
        Kind::Revoked => client.get(format!("{base}/v1/keys?limit=1")).bearer_auth(revoked),
        Kind::Unknown => {
            unknown = gatehouse_services::ids::new_key(&Default::default(), KeyKind::Secret, Environment::Live);
            client.get(format!("{base}/v1/keys?limit=1")).bearer_auth(unknown.expose())
        }
        Kind::Create => client.post(format!("{base}/v1/keys")).bearer_auth(admin).json(&json!({"name": "load"})),
    };
    let started = Instant::now();
    let (status, body) = match req.send().await {
        Ok(r) => (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default()),
        Err(_) => (0, Value::Null),
    };
    let took = started.elapsed();
    let created = (kind == Kind::Create && status == 200).then(|| body["id"].as_str().unwrap_or_default().to_owned());
    Sample { kind, started, took, status, created }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_fails_fast_then_recovers_without_loss() {
    let pg = OwnPostgres::start();
    let (hooks, delivered) = receiver().await;
    let node = NodeDir::new(&format!(
        "database_url = \"{}\"\n[cache]\npoll_interval_ms = 100\nmax_staleness_ms = {}\n\
         [webhooks]\nallow_private_destinations = true\n[rate_limit]\nlimit = 1000000\nwindow_secs = 1\n",
        pg.url(),
        MAX_STALENESS.as_millis()
    ));
    let admin = node.cli(&["keys", "create", "--name", "admin"])["secret"].as_str().unwrap().to_owned();
    let gone = node.cli(&["keys", "create", "--name", "to revoke"]);
    let revoked = gone["secret"].as_str().unwrap().to_owned();
    node.cli(&["keys", "revoke", gone["id"].as_str().unwrap()]);
    node.cli(&["webhooks", "endpoints", "create", "--url", &format!("http://{hooks}/hooks"), "--event", "key.created"]);
    let server = node.serve().await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let base = node.base.clone();

    // Load: four kinds of request, two workers each, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let mut workers = vec![];
    for kind in [Kind::Valid, Kind::Revoked, Kind::Unknown, Kind::Create].into_iter().cycle().take(8) {
        let (client, base, admin, revoked) = (client.clone(), base.clone(), admin.clone(), revoked.clone());
        let (stop, samples) = (stop.clone(), samples.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = one(&client, &base, kind, &admin, &revoked).await;
                samples.lock().unwrap().push(s);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Sleeps in this test are the load's phases: what is tested is behaviour while time passes.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stopped_at = Instant::now();
    pg.stop();
    tokio::time::sleep(MAX_STALENESS + Duration::from_millis(2500)).await;
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_storage_down 1"), "metrics must say storage is down:\n{metrics}");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap().status();
    assert_eq!(ready, 503, "readiness follows storage");

    let restart_at = Instant::now();
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    let recovered_at = loop {
        let s = one(&client, &base, Kind::Valid, &admin, &revoked).await;
        if s.status == 200 {
            break s.started;
        }
        assert!(Instant::now() < deadline, "no recovery within 15 s of the restart: {}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());

    // Never "allow" for a revoked or unknown key, whatever the phase.
    for s in samples.iter().filter(|s| matches!(s.kind, Kind::Revoked | Kind::Unknown)) {
        assert!(matches!(s.status, 401 | 503), "{s:?} answered {} (must be 401 or 503)", s.status);
    }
    // Before the stop everything worked.
    let before: Vec<&Sample> = samples.iter().filter(|s| s.started + s.took < stopped_at).collect();
    for kind in [Kind::Valid, Kind::Create] {
        let ok = before.iter().filter(|s| s.kind == kind && s.status == 200).count();
        assert!(ok > 0, "no successful {kind:?} before the outage");
    }
    assert!(before.iter().all(|s| s.kind != Kind::Valid || s.status == 200), "a valid key failed before the outage");
    // Once the cache may no longer be trusted and until the restart: 503, at once.
    let down_from = stopped_at + MAX_STALENESS + Duration::from_millis(250);
    let down: Vec<&Sample> = samples.iter().filter(|s| s.started >= down_from && s.started < restart_at).collect();
    assert!(down.len() > 50, "too few requests during the outage to judge: {}", down.len());
    for s in &down {
        assert_eq!(s.status, 503, "during the outage {s:?}");
    }
    let mut took: Vec<Duration> = down.iter().map(|s| s.took).collect();
    took.sort();
    let (p50, p99, max) = (percentile(&took, 0.5), percentile(&took, 0.99), *took.last().unwrap());
    let mut cached: Vec<Duration> = before.iter().filter(|s| s.kind == Kind::Valid).map(|s| s.took).collect();
    cached.sort();
    println!(
        "503s during the outage: {} requests, p50 {p50:?}, p99 {p99:?}, max {max:?}; cached 200s before it: p50 {:?}, p99 {:?}",
        took.len(),
        percentile(&cached, 0.5),
        percentile(&cached, 0.99)
    );
    // Without the breaker each of these waited the pool's 3 s acquire timeout. The bound is generous
    // because this machine is shared with builds; the cached 200s above are the same run's yardstick.
    assert!(p50 < Duration::from_millis(50), "503s must come at once: p50 {p50:?} p99 {p99:?} max {max:?}");
    assert!(max < Duration::from_secs(1), "a request waited for a connection: max {max:?}");

    // After the restart the node serves again by itself, no restart of its own.
    let after: Vec<&Sample> =
        samples.iter().filter(|s| s.started >= recovered_at + Duration::from_millis(500)).collect();
    assert!(after.len() > 20, "too few requests after recovery: {}", after.len());
    for s in &after {
        let want = match s.kind {
            Kind::Valid | Kind::Create => 200,
            Kind::Revoked | Kind::Unknown => 401,
        };
        assert_eq!(s.status, want, "after recovery {s:?}");
    }
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_storage_down 0"), "{metrics}");

    // Nothing acknowledged was lost: every key created with a 200 has its audit entry and its event.
    let acknowledged: HashSet<String> = samples.iter().filter_map(|s| s.created.clone()).collect();
    let store = SqlStore::open(&pg.url(), &StoreOptions::default()).await.unwrap();
    let mut audited = HashSet::new();
    let mut page = PageRequest { limit: 100, starting_after: None };
    let filter = AuditFilter { action: Some("key.created".into()), ..Default::default() };
    loop {
        let p = store.search_audit("default", &filter, &page).await.unwrap();
        audited.extend(p.items.iter().map(|e| e.target_id.clone()));
        if !p.has_more {
            break;
        }
        page.starting_after = p.items.last().map(|e| e.id.clone());
    }
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !audited.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged keys without an audit entry: {missing:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let undelivered: Vec<String> = {
            let got = delivered.lock().unwrap();
            acknowledged.iter().filter(|id| !got.contains(&("/hooks".to_owned(), (*id).clone()))).cloned().collect()
        };
        if undelivered.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "events never delivered: {undelivered:?}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And no event without its change: every delivered key exists.
    for (_, id) in delivered.lock().unwrap().iter() {
        assert!(audited.contains(id), "an event for {id}, which has no audit entry");
    }
    let log = server.log();
    assert!(log.contains("storage unreachable"), "the outage is logged: {log}");
    assert!(log.contains("storage answers again"), "the recovery is logged: {log}");
    store.close().await;
}
