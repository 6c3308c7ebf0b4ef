//! OAuth clients declared in the config file (`[[oauth.clients]]`): created at start, updated to match
//! the file at the next start (secret included), usable at the token endpoint.

use std::process::Command;
use std::time::{Duration, Instant};

fn write_config(dir: &std::path::Path, port: u16, scope: &str, secret: &str) {
    std::fs::write(dir.join("client.secret"), format!("{secret}\n")).unwrap();
    std::fs::write(
        dir.join("gatehouse.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nlog_level = \"warn\"\n\n[[oauth.clients]]\nid = \"client_billing-portal\"\nname = \"Billing portal\"\n\
             redirect_uris = [\"https://billing.example.com/cb\"]\nscopes = [\"{scope}\"]\nclient_secret_file = \"client.secret\"\n"
        ),
    )
    .unwrap();
}

async fn token(port: u16, secret: &str) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        match client
            .post(format!("http://127.0.0.1:{port}/oauth/token"))
            .basic_auth("client_billing-portal", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
        {
            Ok(r) => {
                let s = r.status().as_u16();
                return (s, r.json().await.unwrap_or_default());
            }
            Err(_) if start.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("the server did not come up: {e}"),
        }
    }
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_from_the_config_file_are_created_and_kept_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let first = "first-secret-0123456789abcdefghijklmnop";
    write_config(dir.path(), port, "orders:read", first);
    let server = crate::webhooks_crash::serve(dir.path());
    let (s, t) = token(port, first).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["scope"], "orders:read");
    stop(server);

    let second = "second-secret-0123456789abcdefghijklmno";
    write_config(dir.path(), port, "orders:write", second);
    let server = crate::webhooks_crash::serve(dir.path());
    let (s, t) = token(port, second).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["scope"], "orders:write", "the file's settings win at start");
    let (s, _) = token(port, first).await;
    assert_eq!(s, 401, "the secret replaced in the file no longer works");
    stop(server);
    let v = crate::json(
        dir.path(),
        &["--config", "gatehouse.toml", "oauth", "clients", "get", "client_billing-portal"],
        &[],
    );
    assert_eq!(v["name"], "Billing portal");
    assert_eq!(v["scopes"], serde_json::json!(["orders:write"]));

    // A short secret is refused at start, naming the client.
    write_config(dir.path(), port, "orders:read", "short");
    let out = crate::gatehouse(dir.path(), &["--config", "gatehouse.toml", "serve"], &[]);
    assert!(!out.status.success());
    assert!(
        crate::stderr(&out).contains("client_billing-portal") && crate::stderr(&out).contains("at least 32"),
        "{}",
        crate::stderr(&out)
    );
}
