//! Rate limits shared through a real Redis (SPEC §8): two nodes count against one limit; when Redis
//! goes away each node keeps enforcing the limit on its own and says so; when it comes back, the
//! limit is shared again.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::ratelimit::Quota;
use gatehouse_core::{Environment, RateLimitOverride, SecretString};
use gatehouse_server::App;
use gatehouse_services::limiter::{RateLimiter, SharedHealth};
use gatehouse_store::testing::Backend;
use gatehouse_store::Store;
use reqwest::StatusCode;

use crate::{sk, story, test_config, TestApp};

/// The Redis the suite runs against (`.ci/run` starts one on the default port).
fn redis_url() -> String {
    std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix of this test's own, and a guard deleting its keys afterwards.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        Self(format!("gatehouse-test:{}:", gatehouse_services::ids::new_id_now("rl")))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url()) {
            if let Ok(mut c) = client.get_connection() {
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("{}*", self.0)).query(&mut c).unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
                }
            }
        }
    }
}

fn node(url: &str, prefix: &Prefix, health: &SharedHealth) -> RateLimiter {
    RateLimiter::shared(Quota { limit: 100, window_ms: 1000 }, url, prefix.0.clone(), health.clone()).unwrap()
}

#[tokio::test]
async fn two_nodes_count_against_one_limit() {
    let prefix = Prefix::new();
    let (ha, hb) = (SharedHealth::default(), SharedHealth::default());
    let (a, b) = (node(&redis_url(), &prefix, &ha), node(&redis_url(), &prefix, &hb));
    let q = Some(Quota { limit: 5, window_ms: 60_000 });
    let mut remaining = vec![];
    for (i, n) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let d = n.check("key_shared", q).await;
        assert!(d.allowed, "request {i}");
        remaining.push(d.remaining);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0], "one count across both nodes");
    for n in [&b, &a] {
        let d = n.check("key_shared", q).await;
        assert!(!d.allowed);
        assert!((1..=12).contains(&d.retry_after_secs), "retry after {}", d.retry_after_secs);
        assert!((1..=60).contains(&d.reset_secs));
    }
    assert!(b.check("key_other", q).await.allowed, "another credential has its own count");
    assert_eq!((ha.up.get(), hb.up.get()), (1, 1));
    assert_eq!((ha.fallbacks.get(), hb.fallbacks.get()), (0, 0));
}

#[tokio::test]
async fn without_redis_each_node_still_enforces_the_limit() {
    let prefix = Prefix::new();
    let health = SharedHealth::default();
    // Nothing listens on port 1.
    let n = node("redis://127.0.0.1:1", &prefix, &health);
    let q = Some(Quota { limit: 2, window_ms: 60_000 });
    let started = Instant::now();
    assert!(n.check("key_a", q).await.allowed);
    assert!(n.check("key_a", q).await.allowed);
    assert!(!n.check("key_a", q).await.allowed, "the per-node limit holds");
    assert!(started.elapsed() < Duration::from_secs(2), "an outage does not add a timeout to every request");
    assert_eq!(health.up.get(), 0);
    assert_eq!(health.fallbacks.get(), 3);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis of this test's own, so it can be stopped and started.
fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[tokio::test]
async fn limits_fall_back_during_an_outage_and_are_shared_again_after() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = start_redis(port);
    let prefix = Prefix::new();
    let (ha, hb) = (SharedHealth::default(), SharedHealth::default());
    let (a, b) = (node(&url, &prefix, &ha), node(&url, &prefix, &hb));
    let q = Some(Quota { limit: 3, window_ms: 60_000 });
    assert!(a.check("key_x", q).await.allowed);
    assert!(b.check("key_x", q).await.allowed);
    assert_eq!(ha.up.get(), 1);

    let _ = redis.kill();
    let _ = redis.wait();
    // Each node now counts alone: three more on A alone are allowed, the fourth is not.
    for i in 0..3 {
        assert!(a.check("key_x", q).await.allowed, "per-node request {i}");
    }
    assert!(!a.check("key_x", q).await.allowed);
    assert_eq!(ha.up.get(), 0);
    assert!(ha.fallbacks.get() >= 4);

    // Back again (an empty Redis): after the retry pause the nodes share one count again.
    let mut redis = start_redis(port);
    let start = Instant::now();
    loop {
        b.check("key_y", q).await;
        if hb.up.get() == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the shared limiter did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = Instant::now();
    while ha.up.get() == 0 {
        a.check("key_y", q).await;
        assert!(start.elapsed() < Duration::from_secs(10), "node A did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = a.check("key_z", q).await;
    assert_eq!(d.remaining, 2);
    assert_eq!(b.check("key_z", q).await.remaining, 1, "shared again");
    let _ = redis.kill();
    let _ = redis.wait();
}

story!(two_control_planes_share_a_key_rate_limit_through_redis);
async fn two_control_planes_share_a_key_rate_limit_through_redis(backend: Backend) {
    let mut config = test_config();
    config.redis_url = Some(SecretString::new(redis_url()));
    let a = TestApp::with_config(backend, config.clone()).await;
    // A second node on the same database and the same Redis.
    let store = a.db.store().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let app = App::build(config.clone(), Arc::new(store) as Arc<dyn Store>, vec![]).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let (rec, key) = a
        .cli_key(gatehouse_services::keys::NewKey {
            rate_limit: Some(RateLimitOverride { limit: 4, window_secs: 60 }),
            ..sk(Environment::Live)
        })
        .await;
    let _cleanup = Prefix(format!("gatehouse:{}:rl:{}", config.workspace, rec.id));
    let urls = [a.url("/v1/keys"), format!("http://{b_addr}/v1/keys")];
    let mut seen = vec![];
    for i in 0..6 {
        let resp = a.client.get(&urls[i % 2]).bearer_auth(&key).send().await.unwrap();
        let remaining = resp.headers().get("ratelimit-remaining").map(|v| v.to_str().unwrap().to_owned());
        seen.push((resp.status(), remaining));
    }
    let statuses: Vec<StatusCode> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses[..4], [StatusCode::OK; 4], "{seen:?}");
    assert_eq!(
        statuses[4..],
        [StatusCode::TOO_MANY_REQUESTS; 2],
        "the fifth and sixth, on either node, are over the shared limit: {seen:?}"
    );
    let remaining: Vec<_> = seen[..4].iter().map(|s| s.1.clone().unwrap()).collect();
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    assert!(a.call("GET", "/metrics", None, None).await.2.as_str().unwrap().contains("rate_limit_shared 1"));
    let _ = stop.send(());
}
