//! `gatehouse serve` SIGKILLed in the middle of key creation (SPEC §16), on SQLite and PostgreSQL:
//! after a restart on the same storage every key it acknowledged (200) is there with its
//! `key.created` audit entry and its webhook event delivered (the outbox survives the kill); no key
//! exists without its audit entry nor an audit entry without its key (a creation is all or nothing);
//! and the SQLite file passes `PRAGMA integrity_check`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::{AuditFilter, AuditStore, PageRequest, SqlStore, StoreOptions};
use serde_json::json;

use crate::servers::{receiver, NodeDir};

/// Every `target_id` of the workspace's `key.created` audit entries.
async fn created_audited(store: &SqlStore) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut page = PageRequest { limit: 100, starting_after: None };
    let filter = AuditFilter { action: Some("key.created".into()), ..Default::default() };
    loop {
        let p = store.search_audit("default", &filter, &page).await.unwrap();
        out.extend(p.items.iter().map(|e| e.target_id.clone()));
        if !p.has_more {
            break;
        }
        page.starting_after = p.items.last().map(|e| e.id.clone());
    }
    out
}

/// Every key id in storage, through the management API of the restarted node.
async fn listed(client: &reqwest::Client, base: &str, admin: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut after = String::new();
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/v1/keys?limit=100{after}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = page["data"].as_array().unwrap_or_else(|| panic!("{page}"));
        let ids: Vec<String> = data.iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect();
        after = format!("&starting_after={}", ids.last().cloned().unwrap_or_default());
        out.extend(ids);
        if page["has_more"] != true {
            break;
        }
    }
    out
}

async fn killed_mid_creation(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (hooks, delivered) = receiver().await;
    let storage = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => format!("database_url = \"{}\"\n", db.url),
    };
    let node = NodeDir::new(&format!(
        "{storage}[webhooks]\nallow_private_destinations = true\n[rate_limit]\nlimit = 1000000\nwindow_secs = 1\n"
    ));
    let admin = node.cli(&["keys", "create", "--name", "admin"]);
    let (admin_id, admin) = (admin["id"].as_str().unwrap().to_owned(), admin["secret"].as_str().unwrap().to_owned());
    node.cli(&["webhooks", "endpoints", "create", "--url", &format!("http://{hooks}/hooks"), "--event", "key.created"]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let base = node.base.clone();

    let server = node.serve().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0usize));
    let mut workers = vec![];
    for w in 0..6 {
        let (client, base, admin, stop, acked, failed) =
            (client.clone(), base.clone(), admin.clone(), stop.clone(), acked.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = client
                    .post(format!("{base}/v1/keys"))
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("w{w}-{i}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        match v["id"].as_str() {
                            Some(id) => drop(acked.lock().unwrap().insert(id.to_owned())),
                            // The body was cut by the kill: not acknowledged to the client.
                            None => *failed.lock().unwrap() += 1,
                        }
                    }
                    Ok(r) => panic!("a key creation answered {} before the kill", r.status()),
                    Err(_) => *failed.lock().unwrap() += 1,
                }
            }
        }));
    }
    // The load's phase before the kill: what is tested is a kill while creations are in flight.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 40 {
        assert!(start.elapsed() < Duration::from_secs(20), "too few creations before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server); // SIGKILL
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    // Requests cut by the kill, and those refused in the 300 ms after it. Six workers loop without
    // pause, so requests are in flight at the kill.
    let in_flight = *failed.lock().unwrap();
    assert!(in_flight > 0, "no request failed: the node was not killed under load");

    if backend == Backend::Sqlite {
        let url = format!("sqlite://{}", node.path().join("data/gatehouse.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
        assert_eq!(check, "ok", "the SQLite file after the kill");
        pool.close().await;
    }

    let server = node.serve().await;
    let keys = listed(&client, &base, &admin).await;
    let store_url = match backend {
        Backend::Sqlite => node.path().join("data/gatehouse.db").display().to_string(),
        Backend::Postgres => db.url.clone(),
    };
    let store = SqlStore::open(&store_url, &StoreOptions::default()).await.unwrap();
    let audited = created_audited(&store).await;
    store.close().await;
    println!(
        "{backend:?}: {} acknowledged, {in_flight} cut by the kill or refused after it, {} keys after the restart",
        acked.len(),
        keys.len() - 1
    );

    let lost: Vec<&String> = acked.iter().filter(|id| !keys.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged keys lost in the kill: {lost:?}");
    let unaudited: Vec<&String> = keys.iter().filter(|id| !audited.contains(*id)).collect();
    assert!(unaudited.is_empty(), "keys without their key.created audit entry: {unaudited:?}");
    let orphaned: Vec<&String> = audited.iter().filter(|id| !keys.contains(*id)).collect();
    assert!(orphaned.is_empty(), "key.created entries without their key: {orphaned:?}");

    // The outbox survived the kill: every key in storage gets its event, from the restarted node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<String> = {
            let got = delivered.lock().unwrap();
            keys.iter()
                .filter(|id| **id != admin_id && !got.contains(&("/hooks".to_owned(), (*id).clone())))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} events never delivered: {missing:?}\n{}", missing.len(), server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, id) in delivered.lock().unwrap().iter() {
        assert!(keys.contains(id), "an event for {id}, which is not in storage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_key_creation_on_sqlite_loses_nothing_acknowledged() {
    killed_mid_creation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_key_creation_on_postgres_loses_nothing_acknowledged() {
    killed_mid_creation(Backend::Postgres).await;
}
