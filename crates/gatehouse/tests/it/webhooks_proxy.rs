//! SSRF through an environment proxy (SPEC §11 "Outgoing webhooks"): a proxy resolves the destination
//! itself, so a delivery sent through `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` would skip the guarded
//! resolver. The variables are process-wide, so the real binary runs with them set, pointing at a proxy
//! that records every connection; deliveries must reach the receiver directly and the proxy never.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A "proxy" that records the first bytes of every connection and answers 502.
async fn recording_proxy() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                s.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned());
                let _ =
                    conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_are_never_used_for_deliveries() {
    let (proxy, through_proxy) = recording_proxy().await;
    let received = Arc::new(AtomicUsize::new(0));
    let r = received.clone();
    let app = axum::Router::new().fallback(move || {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });

    // Loopback receivers need the development switch; the guard itself is tested elsewhere. What is
    // tested here is the route a delivery takes.
    let dir = crate::dir_with_webhook_endpoint(receiver);

    let proxy_url = format!("http://{proxy}");
    let mut cmd = crate::command(dir.path(), &["--config", "gatehouse.toml", "serve"]);
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"] {
        cmd.env(var, &proxy_url);
    }
    for var in ["NO_PROXY", "no_proxy"] {
        cmd.env_remove(var);
    }
    let err_file = dir.path().join("serve.err");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap());
    let mut server = cmd.spawn().unwrap();

    for i in 0..3 {
        crate::json(dir.path(), &["--config", "gatehouse.toml", "keys", "create", "--name", &format!("k{i}")], &[]);
    }
    let start = Instant::now();
    while received.load(Ordering::SeqCst) < 3 {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "deliveries did not reach the receiver directly; the proxy saw {:?}; server said: {}",
                through_proxy.lock().unwrap(),
                std::fs::read_to_string(&err_file).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::process::Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert!(
        through_proxy.lock().unwrap().is_empty(),
        "nothing may go through an environment proxy: {:?}",
        through_proxy.lock().unwrap()
    );
}
