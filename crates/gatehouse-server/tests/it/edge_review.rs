//! SPEC §11, the edge, attacked again after the first round of fixes: request smuggling between the
//! gateway's parser and the upstream's, h2 → HTTP/1.1 downgrades, pipelining, WebSocket handshakes and
//! tunnels, and connections kept open without ever making a request. Each test is a real attack on
//! a real gateway; what the upstream received is checked, not only the status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::Gw;
use crate::{sk, test_config};

fn h2c_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/h2c")
}

/// Runs tests/h2c/review.py `mode` against the gateway; its JSON answer.
async fn review(mode: &str, gw: &Gw, extra: &[&str]) -> Value {
    let python = h2c_dir().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: scripts/test.sh installs tests/h2c/requirements.txt", python.display());
    let out = tokio::process::Command::new(python)
        .arg(h2c_dir().join("review.py"))
        .args([mode, &gw.addr.to_string(), &gw.host])
        .args(extra)
        .current_dir(h2c_dir())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "review.py {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("review.py printed {}", String::from_utf8_lossy(&out.stdout)))
}

/// Sends raw bytes, reads until the server closes (or `wait`); the whole answer as text.
async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer.match_indices("HTTP/1.1 ").filter_map(|(i, _)| answer[i + 9..].get(..3)?.parse().ok()).collect()
}

fn limited(header_read: u64, idle: u64, max_connections: usize) -> gatehouse_server::ServerConfig {
    let mut config = test_config();
    config.listener.header_read_timeout = Duration::from_secs(header_read);
    config.listener.idle_timeout = Duration::from_secs(idle);
    config.listener.max_connections = max_connections;
    config
}

/// Whether the server closed `s` within `within` (reads until EOF, ignoring what it says first).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn seen_paths(gw: &Gw) -> Vec<String> {
    gw.seen.lock().unwrap().iter().map(|(_, pq, _)| pq.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_smuggling_cl_te_variants_never_desynchronise_the_upstream() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let h = &gw.host;
    let smuggled = format!("GET /admin HTTP/1.1\r\nHost: {h}\r\n\r\n");
    // Refused outright: a Transfer-Encoding that does not end in chunked, obs-fold, junk lengths, TE in HTTP/1.0.
    let refused = [
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3, 40\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: +3\r\n\r\nabc{smuggled}"),
        format!("POST /public/upload HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
    ];
    for req in &refused {
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(statuses(&answer), [400], "{req:?} → {answer}");
    }
    assert_eq!(seen_paths(&gw), Vec::<String>::new(), "nothing reached the upstream");
    // CL + TE in either order: chunked wins, Content-Length never reaches the upstream, and the
    // connection is closed after it so the bytes behind the body are never read as a request.
    for order in [["Content-Length: 40", "Transfer-Encoding: chunked"], ["Transfer-Encoding: chunked", "Content-Length: 40"]] {
        let req = format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\n{}\r\n{}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}", order[0], order[1]);
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(statuses(&answer), [200], "{order:?}: exactly one answer: {answer}");
        assert!(answer.contains("(5 bytes)"), "{answer}");
        let (_, pq, seen) = gw.last_seen();
        assert_eq!(pq, "/public/upload");
        assert!(seen.get("content-length").is_none_or(|v| v == "5"), "{order:?}: the client's Content-Length reached the upstream: {seen:?}");
    }
    // Two equal Content-Lengths are one.
    let req = format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.contains("(5 bytes)"), "{answer}");
    let (_, _, seen) = gw.last_seen();
    assert_eq!(seen.get_all("content-length").iter().collect::<Vec<_>>(), ["5"]);
    assert!(!seen_paths(&gw).iter().any(|p| p == "/admin"), "a smuggled private request reached the upstream: {:?}", seen_paths(&gw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_pipelined_requests_are_each_judged() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let h = &gw.host;
    // A public request, then a private one riding in the same packet, with a forged identity.
    let req = format!(
        "GET /ping HTTP/1.1\r\nHost: {h}\r\n\r\nGET /admin HTTP/1.1\r\nHost: {h}\r\nX-Gatehouse-User: usr_admin\r\n\r\nGET /ping HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(statuses(&answer), [200, 401, 200], "{answer}");
    assert_eq!(seen_paths(&gw), ["/ping", "/ping"]);
    // A body that is itself a request is a body, not a second request.
    let inner = format!("GET /admin HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let req = format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{inner}", inner.len());
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    assert!(!seen_paths(&gw).iter().any(|p| p == "/admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_h2_downgrade_forbidden_headers_and_content_length_mismatch_are_refused() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    for name in ["transfer-encoding", "connection", "upgrade", "keep-alive"] {
        let out = review("forbidden", &gw, &[name]).await;
        assert_ne!(out["status"], 200, "h2 {name}: {out}");
    }
    for cl in ["3", "40"] {
        let out = review("cl", &gw, &[cl]).await;
        assert_ne!(out["status"], 200, "h2 content-length {cl} with 10 bytes: {out}");
    }
    let ok = review("cl", &gw, &["10"]).await;
    assert_eq!(ok["status"], 200, "{ok}");
    assert!(ok["body"].as_str().unwrap().contains("(10 bytes)"), "{ok}");
    let seen = gw.seen.lock().unwrap().clone();
    for (_, pq, h) in &seen {
        assert!(h.get("transfer-encoding").is_none_or(|v| v == "chunked") && h.get("upgrade").is_none(), "{pq}: {h:?}");
        assert!(h.get_all("content-length").iter().all(|v| v == "10"), "{pq}: a mismatched content-length reached the upstream: {h:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_huge_heads_are_refused() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let req = format!("GET /ping HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\nConnection: close\r\n\r\n", gw.host, "a".repeat(200 * 1024));
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(matches!(status_of(&answer), Some(431) | None), "{}", &answer[..answer.len().min(200)]);
    let many: String = (0..2000).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(40))).collect();
    let req = format!("GET /ping HTTP/1.1\r\nHost: {}\r\n{many}Connection: close\r\n\r\n", gw.host);
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(matches!(status_of(&answer), Some(431) | None), "{}", &answer[..answer.len().min(200)]);
    assert_eq!(gw.seen_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_h2_connections_that_only_ping_are_closed_when_idle() {
    let gw = Gw::start_full(Backend::Sqlite, None, None, Duration::from_secs(10), limited(1, 2, 100)).await;
    let out = review("pings", &gw, &["7"]).await;
    let closed = out["closed_after"].as_f64();
    assert!(closed.is_some_and(|s| s < 5.0), "an h2 connection that never makes a request stays open by pinging: {out}");
}
