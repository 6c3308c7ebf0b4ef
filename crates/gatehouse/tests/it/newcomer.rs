//! The README's path, end to end with real processes: bootstrap a key with the CLI, start `serve`,
//! call a protected endpoint, verify, revoke from the shell, and see the next call answer 401 —
//! on SQLite, and on PostgreSQL by setting `GATEHOUSE_DATABASE_URL`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_store::testing::{Backend, TestDb};
use serde_json::json;

use crate::json;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn newcomer_flow(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env: Vec<(&str, &str)> = match backend {
        Backend::Sqlite => vec![],
        Backend::Postgres => vec![("GATEHOUSE_DATABASE_URL", db.url.as_str())],
    };
    let admin = json(d, &["keys", "create", "--name", "admin"], &env);
    let admin = admin["secret"].as_str().unwrap().to_owned();

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(d).args(["serve", "--listen", &listen]).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
        cmd.env_remove(k);
    }
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let _server = Server(cmd.spawn().unwrap());
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let start = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(20), "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let created: serde_json::Value = client
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "service"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let listed = client.get(format!("{base}/v1/keys")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let verdict: serde_json::Value = client
        .post(format!("{base}/v1/keys/verify"))
        .bearer_auth(&admin)
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["valid"], true);

    // Revoked from the shell while the server runs: within a second the server refuses it.
    let revoked = json(d, &["keys", "revoke", &id], &env);
    assert_eq!(revoked["status"], "revoked");
    let start = Instant::now();
    loop {
        let resp = client.get(format!("{base}/v1/keys")).bearer_auth(&key).send().await.unwrap();
        if resp.status() == 401 {
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "api_key_revoked");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "revocation from the CLI not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn newcomer_flow_on_sqlite() {
    newcomer_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn newcomer_flow_on_postgres() {
    newcomer_flow(Backend::Postgres).await;
}
