//! The outbox survives a crash (SPEC §6): `gatehouse serve` is killed with SIGKILL while events are
//! pending (the receiver is refusing them), more events are written by the CLI while it is down, and
//! after a restart every event reaches the receiver.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;

pub fn serve(dir: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(dir)
        .args(["--config", "gatehouse.toml", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.err")).unwrap());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
        cmd.env_remove(k);
    }
    cmd.spawn().unwrap()
}

fn key(dir: &std::path::Path, name: &str) -> String {
    crate::json(dir, &["--config", "gatehouse.toml", "keys", "create", "--name", name], &[])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pending_event_arrives_after_a_sigkill_and_restart() {
    // The receiver refuses everything until `accept` is set, and records the keys of accepted events.
    let accept = Arc::new(AtomicBool::new(false));
    let delivered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, d, r) = (accept.clone(), delivered.clone(), refused.clone());
    let app = axum::Router::new().fallback(move |body: String| {
        let (a, d, r) = (a.clone(), d.clone(), r.clone());
        async move {
            if !a.load(Ordering::SeqCst) {
                r.fetch_add(1, Ordering::SeqCst);
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let v: Value = serde_json::from_str(&body).unwrap();
            d.lock().unwrap().insert(v["data"]["object"]["id"].as_str().unwrap().to_owned());
            StatusCode::OK
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });

    let dir = crate::dir_with_webhook_endpoint(receiver);

    let mut server = serve(dir.path());
    let mut keys: Vec<String> = (0..10).map(|i| key(dir.path(), &format!("before {i}"))).collect();
    let start = Instant::now();
    while refused.load(Ordering::SeqCst) < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server never tried to deliver: {}",
            std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pending, with retries scheduled: now the crash.
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    keys.extend((0..5).map(|i| key(dir.path(), &format!("while down {i}"))));
    accept.store(true, Ordering::SeqCst);

    let mut server = serve(dir.path());
    let start = Instant::now();
    loop {
        let missing: Vec<String> = {
            let got = delivered.lock().unwrap();
            keys.iter().filter(|k| !got.contains(*k)).cloned().collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "events never delivered after the restart: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
}
