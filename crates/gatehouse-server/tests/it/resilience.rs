//! Failure behaviour: storage down means 503 (never "valid"), readiness follows storage, and the
//! process-level pieces (metrics, health) keep answering.

use std::time::Duration;

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::json;

use crate::{code, sk, story, TestApp};

story!(storage_down_is_503_never_valid);
async fn storage_down_is_503_never_valid(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, key) = app.cli_key(sk(Environment::Live)).await;
    assert_eq!(app.call("GET", "/v1/keys/verify", Some(&key), None).await.0, 405);
    assert_eq!(app.call("POST", "/v1/keys/verify", Some(&key), Some(json!({"key": app.admin}))).await.0, 200, "cached");
    assert_eq!(app.call("GET", "/readyz", None, None).await.0, 200);
    app.store.close().await;
    // Past the staleness bound the cache is not trusted, so the answer must come from (dead) storage.
    // A sleep on purpose: what is tested is that time (the bound) passing withdraws trust; no event says so.
    tokio::time::sleep(app.config.cache.max_staleness + Duration::from_millis(300)).await;
    let unknown =
        gatehouse_services::ids::new_key(&Default::default(), gatehouse_core::KeyKind::Secret, Environment::Live);
    for k in [key.as_str(), unknown.expose()] {
        let (s, _, body) = app.call("GET", "/v1/keys", Some(k), None).await;
        assert_eq!((s.as_u16(), code(&body)), (503, "service_unavailable"), "{body}");
    }
    let (s, _, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((s.as_u16(), body["status"].as_str()), (503, Some("unavailable")));
    assert_eq!(app.call("GET", "/healthz", None, None).await.0, 200);
    let (_, _, metrics) = app.call("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("gatehouse_key_verifications_total{code=\"unavailable\"}"), "{text}");
    assert!(text.contains("gatehouse_key_cache_trusted 0"), "{text}");
}
