//! Deliveries verified by libraries nobody here wrote: Stripe's official SDKs (`stripe` on npm and PyPI)
//! and the `standardwebhooks` packages, in real receiver processes (tests/webhook-receivers), during a
//! rotation window — each live secret alone must verify every delivery.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse_store::testing::Backend;
use serde_json::{json, Value};

use crate::{story, TestApp};

fn receivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/webhook-receivers")
}

struct Receiver {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(program: &str, script: &str, secrets_file: &std::path::Path) -> Receiver {
    let mut child = Command::new(program)
        .arg(script)
        .current_dir(receivers_dir())
        .env("SECRETS_FILE", secrets_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} {script} could not start ({e}); run scripts/test.sh, which installs the receivers")
        });
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("the receiver says where it listens");
    let port = first.strip_prefix("listening ").expect("listening line").parse().unwrap();
    Receiver { child, port, lines }
}

fn collect(r: &Receiver, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = vec![];
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match r.lines.recv_timeout(left) {
            Ok(l) => out.push(serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l}"))),
            Err(_) => panic!("expected {n} verified deliveries, got {out:?}"),
        }
    }
    out
}

story!(stripe_sdks_and_standard_webhooks_verify_every_delivery_during_a_rotation);
async fn stripe_sdks_and_standard_webhooks_verify_every_delivery_during_a_rotation(b: Backend) {
    let dir = receivers_dir();
    assert!(
        dir.join("node_modules/stripe").is_dir() && dir.join(".venv/bin/python").exists(),
        "receiver packages missing: run scripts/test.sh"
    );
    let mut cfg = crate::test_config();
    cfg.webhooks.allow_private_destinations = true;
    cfg.webhooks.poll_interval = Duration::from_millis(20);
    let app = TestApp::with_config(b, cfg).await;
    let tmp = tempfile::tempdir().unwrap();
    let python = dir.join(".venv/bin/python").display().to_string();
    let receivers =
        [("node", "receiver.mjs".to_owned(), "node"), (python.as_str(), "receiver.py".to_owned(), "python")];
    let mut running = vec![];
    for (program, script, name) in receivers {
        let secrets_file = tmp.path().join(format!("{name}.secrets"));
        std::fs::write(&secrets_file, "").unwrap();
        let r = start(program, &script, &secrets_file);
        let body = json!({"url": format!("http://127.0.0.1:{}/hooks", r.port), "enabled_events": ["key.created", "key.revoked"], "standard_webhooks": true});
        let (s, _, e) = app.call("POST", "/v1/webhook_endpoints", Some(&app.admin), Some(body)).await;
        assert_eq!(s, 200, "{e}");
        let id = e["id"].as_str().unwrap();
        let (_, _, rolled) = app
            .call(
                "POST",
                &format!("/v1/webhook_endpoints/{id}/roll_secret"),
                Some(&app.admin),
                Some(json!({"overlap_secs": 3600})),
            )
            .await;
        let secrets = format!("{}\n{}\n", e["secret"].as_str().unwrap(), rolled["secret"].as_str().unwrap());
        std::fs::write(&secrets_file, secrets).unwrap();
        running.push((name, r));
    }
    let mut ids = vec![];
    for i in 0..3 {
        let (_, _, k) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": format!("sdk {i}")}))).await;
        ids.push(k["id"].as_str().unwrap().to_owned());
    }
    app.call("POST", &format!("/v1/keys/{}/revoke", ids[0]), Some(&app.admin), None).await;
    for (name, r) in &running {
        let got = tokio::task::block_in_place(|| collect(r, 4));
        for v in &got {
            assert_eq!(v["errors"], json!([]), "{name}: {v}");
            assert_eq!(
                v["stripe_verified"], 2,
                "{name}: Stripe's SDK verified with each of the two live secrets alone: {v}"
            );
            assert_eq!(v["standard_verified"], 2, "{name}: standardwebhooks verified with each secret: {v}");
            assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        }
        let mut seen: Vec<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{name}: four distinct events");
    }
}
