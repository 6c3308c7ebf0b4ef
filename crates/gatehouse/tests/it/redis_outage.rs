//! Redis killed and restarted under load (SPEC §8, §16): two `gatehouse serve` nodes share rate limits
//! through a `redis-server` of the test's own. Killed with SIGKILL, every request is still decided
//! (no 5xx: authentication never depends on Redis), limits fall back to each node's memory and the
//! metrics and log say so; started again on the same port, sharing resumes by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_store::testing::{Backend, TestDb};

use crate::servers::{Node, NodeDir, OwnRedis};

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()
}

/// Waits (at most 10 s) until every node's metrics contain `line`.
async fn all_say(http: &reqwest::Client, dirs: &[NodeDir], line: &str) {
    let start = Instant::now();
    for d in dirs {
        while !metrics(http, &d.base).await.contains(line) {
            assert!(start.elapsed() < Duration::from_secs(10), "{}: metrics never said `{line}`", d.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Spends a fresh key limited to 10 a minute round-robin over the nodes; answers how many passed.
async fn allowed_of_thirty(http: &reqwest::Client, dirs: &[NodeDir], name: &str) -> usize {
    let key = dirs[0].cli(&["keys", "create", "--name", name, "--rate-limit", "10/60s"]);
    let key = key["secret"].as_str().unwrap();
    let mut allowed = 0;
    for i in 0..30 {
        let r = http.get(format!("{}/v1/keys?limit=1", dirs[i % dirs.len()].base)).bearer_auth(key).send().await;
        match r.unwrap().status().as_u16() {
            200 => allowed += 1,
            429 => {}
            other => panic!("{name}: unexpected {other}"),
        }
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_falls_back_per_node_and_sharing_resumes() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = OwnRedis::start();
    let settings = format!("database_url = \"{}\"\nredis_url = \"{}\"\n", db.url, redis.url());
    let dirs: Vec<NodeDir> = (0..2).map(|_| NodeDir::new(&settings)).collect();
    let busy = dirs[0].cli(&["keys", "create", "--name", "load", "--rate-limit", "1000000/1s"]);
    let busy = busy["secret"].as_str().unwrap().to_owned();
    let mut nodes: Vec<Node> = vec![];
    for d in &dirs {
        nodes.push(d.serve().await);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    all_say(&http, &dirs, "gatehouse_rate_limit_shared 1").await;
    assert_eq!(allowed_of_thirty(&http, &dirs, "shared before").await, 10, "shared: 10 across both nodes");

    // Load on both nodes for the whole test; every answer is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses: Arc<Mutex<Vec<u16>>> = Arc::default();
    let mut workers = vec![];
    for d in &dirs {
        for _ in 0..2 {
            let (http, url, key) = (http.clone(), format!("{}/v1/keys?limit=1", d.base), busy.clone());
            let (stop, statuses) = (stop.clone(), statuses.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let s = http.get(&url).bearer_auth(&key).send().await.map_or(0, |r| r.status().as_u16());
                    statuses.lock().unwrap().push(s);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
    }

    redis.kill();
    all_say(&http, &dirs, "gatehouse_rate_limit_shared 0").await;
    for d in &dirs {
        let m = metrics(&http, &d.base).await;
        let fallbacks = m
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_rate_limit_fallbacks_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(fallbacks.is_some_and(|n| n > 0.0), "{}: fallbacks counted: {m}", d.base);
    }
    // Decided per node now: each node grants the key its own 10.
    assert_eq!(allowed_of_thirty(&http, &dirs, "per node").await, 20, "per-node fallback: 10 on each node");

    redis.start_again();
    all_say(&http, &dirs, "gatehouse_rate_limit_shared 1").await;
    // While the connections are re-established a node may still decide a few checks alone (each
    // failure leaves Redis alone for a second), so sharing is judged on fresh keys until it holds.
    let start = Instant::now();
    let mut seen = vec![];
    loop {
        let allowed = allowed_of_thirty(&http, &dirs, "shared after").await;
        seen.push(allowed);
        if allowed == 10 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "sharing never resumed: allowed per attempt {seen:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("after the restart, fresh keys limited to 10 got {seen:?} across both nodes");

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let statuses = std::mem::take(&mut *statuses.lock().unwrap());
    assert!(statuses.len() > 100, "too little load to judge: {}", statuses.len());
    let not_ok: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        not_ok.is_empty(),
        "every request under load must be decided and allowed: {:?}",
        &not_ok[..not_ok.len().min(20)]
    );
    for (d, n) in dirs.iter().zip(&nodes) {
        let log = n.log();
        assert!(log.contains("rate limits are enforced per node"), "{}: the fallback is logged: {log}", d.base);
        assert!(log.contains("Redis answers again"), "{}: the recovery is logged: {log}", d.base);
    }
}
