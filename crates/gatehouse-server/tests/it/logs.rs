//! Secrets never reach the logs: capture everything at TRACE level while keys are created, used,
//! verified (valid and not), rolled and revoked, and search the capture for the secrets.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::json;

use crate::{sk, TestApp};

/// Every log line, captured in memory.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Installs a global TRACE-level subscriber writing here. The flag is false when another subscriber
    /// was already installed (each nextest test is its own process, so normally this one sees only its test).
    pub(crate) fn install() -> (Capture, bool) {
        let capture = Capture::default();
        let writer = capture.clone();
        let installed = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .try_init()
            .is_ok();
        (capture, installed)
    }

    /// What was logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let (capture, installed) = Capture::install();
    let app = TestApp::new(Backend::Sqlite).await;
    let (rec, key) = app.cli_key(sk(Environment::Live)).await;
    let mut secrets = vec![app.admin.clone(), key.clone()];
    let (_, _, created) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "x"}))).await;
    secrets.push(created["secret"].as_str().unwrap().to_owned());
    app.call("GET", "/v1/keys", Some(&key), None).await;
    app.call("POST", "/v1/keys/verify", Some(&app.admin), Some(json!({"key": key}))).await;
    let mut typo = key.clone();
    typo.replace_range(20..21, if &key[20..21] == "a" { "b" } else { "a" });
    app.call("GET", "/v1/keys", Some(&typo), None).await;
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"kind": "rk", "scopes": [key]}))).await;
    let (_, _, rolled) = app.call("POST", &format!("/v1/keys/{}/roll", rec.id), Some(&app.admin), None).await;
    secrets.push(rolled["new_key"]["secret"].as_str().unwrap().to_owned());
    app.call("POST", &format!("/v1/keys/{}/revoke", rec.id), Some(&app.admin), None).await;
    app.call("GET", "/v1/keys", Some(&key), None).await;
    app.store.close().await;
    // A sleep on purpose: only the staleness bound passing sends the next request to (dead) storage.
    tokio::time::sleep(app.config.cache.max_staleness + std::time::Duration::from_millis(300)).await;
    app.call("GET", "/v1/keys", Some(&app.admin), None).await;

    let text = capture.text();
    if installed {
        assert!(text.contains("request"), "the capture saw the request logs");
    }
    for s in &secrets {
        // The random part is what makes a key secret; the prefix alone is public.
        assert!(!text.contains(&s[12..]), "a secret reached the logs");
    }
    assert!(!text.contains(&typo[12..]), "a mistyped key reached the logs");
}
