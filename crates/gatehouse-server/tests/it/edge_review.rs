//! SPEC §11, the edge, attacked again after the first round of fixes: request smuggling between the
//! gateway's parser and the upstream's, h2 → HTTP/1.1 downgrades, pipelining, WebSocket handshakes and
//! tunnels, and connections kept open without ever making a request. Each test is a real attack on
//! a real gateway; what the upstream received is checked, not only the status.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::edge::{closed_within, h2c_script, limited, raw, status_of};
use crate::gateway::Gw;
use crate::{sk, test_config};

/// Runs tests/h2c/review.py `mode` against the gateway; its JSON answer.
async fn review(mode: &str, gw: &Gw, extra: &[&str]) -> Value {
    let (addr, host) = (gw.addr.to_string(), gw.host.clone());
    let mut args = vec![mode, addr.as_str(), host.as_str()];
    args.extend_from_slice(extra);
    h2c_script("review.py", &args).await
}

fn statuses(answer: &str) -> Vec<u16> {
    answer.match_indices("HTTP/1.1 ").filter_map(|(i, _)| answer[i + 9..].get(..3)?.parse().ok()).collect()
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
    for order in
        [["Content-Length: 40", "Transfer-Encoding: chunked"], ["Transfer-Encoding: chunked", "Content-Length: 40"]]
    {
        let req = format!(
            "POST /public/upload HTTP/1.1\r\nHost: {h}\r\n{}\r\n{}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}",
            order[0], order[1]
        );
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(statuses(&answer), [200], "{order:?}: exactly one answer: {answer}");
        assert!(answer.contains("(5 bytes)"), "{answer}");
        let (_, pq, seen) = gw.last_seen();
        assert_eq!(pq, "/public/upload");
        assert!(
            seen.get("content-length").is_none_or(|v| v == "5"),
            "{order:?}: the client's Content-Length reached the upstream: {seen:?}"
        );
    }
    // Two equal Content-Lengths are one.
    let req = format!("POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.contains("(5 bytes)"), "{answer}");
    let (_, _, seen) = gw.last_seen();
    assert_eq!(seen.get_all("content-length").iter().collect::<Vec<_>>(), ["5"]);
    assert!(
        !seen_paths(&gw).iter().any(|p| p == "/admin"),
        "a smuggled private request reached the upstream: {:?}",
        seen_paths(&gw)
    );
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
    let req = format!(
        "POST /public/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{inner}",
        inner.len()
    );
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
        assert!(
            h.get_all("content-length").iter().all(|v| v == "10"),
            "{pq}: a mismatched content-length reached the upstream: {h:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_huge_heads_are_refused() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let req = format!(
        "GET /ping HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        gw.host,
        "a".repeat(200 * 1024)
    );
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
    assert!(
        closed.is_some_and(|s| s < 5.0),
        "an h2 connection that never makes a request stays open by pinging: {out}"
    );
}

/// What the WebSocket upstream saw: each handshake's head, as text.
type Heads = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An upstream that accepts every WebSocket handshake (`101`) and then echoes whatever it receives.
async fn websocket_upstream() -> (SocketAddr, Heads) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads: Heads = Default::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, heads)
}

fn websocket_handshake(path: &str, host: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Opens a tunnel through the gateway: sends the handshake, reads the head; the socket and its status.
async fn open_tunnel(gw: &Gw, path: &str, extra: &str) -> (TcpStream, Option<u16>, String) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(websocket_handshake(path, &gw.host, extra).as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut b).await {
                Ok(1) => head.push(b[0]),
                _ => return,
            }
        }
    })
    .await;
    let head = String::from_utf8_lossy(&head).into_owned();
    (s, status_of(&head), head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_websocket_upgrades_are_judged_and_carry_only_websocket() {
    let (up, heads) = websocket_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), test_config()).await;
    // A private route without a credential, or with a forged identity or a bad key: no tunnel.
    for extra in
        ["", "X-Gatehouse-User: usr_admin\r\nX-Gatehouse-Auth: session\r\n", "X-Space-App-Key: gth_sk_live_garbage\r\n"]
    {
        let (_, status, head) = open_tunnel(&gw, "/admin/ws", extra).await;
        assert_eq!(status, Some(401), "{extra:?}: {head}");
    }
    // Not a GET, or h2c riding along: never a 101 on a private route.
    let post = format!(
        "POST /admin/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        gw.host
    );
    assert_eq!(status_of(&raw(gw.addr, post.as_bytes(), Duration::from_secs(2)).await), Some(401));
    assert!(
        heads.lock().unwrap().is_empty(),
        "an unjudged handshake reached the upstream: {:?}",
        heads.lock().unwrap()
    );
    // With a key, the tunnel opens and the upstream sees Gatehouse's identity, `websocket` alone as
    // the upgrade, and no HTTP2-Settings.
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let extra =
        format!("X-Space-App-Key: {key}\r\nX-Gatehouse-User: usr_admin\r\nHTTP2-Settings: AAMAAABkAARAAP__\r\n");
    let (mut s, status, head) = open_tunnel(&gw, "/admin/ws", &extra).await;
    assert_eq!(status, Some(101), "{head}");
    s.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut echo)).await.unwrap().unwrap();
    assert_eq!(&echo, b"hello");
    let h2c = format!("GET /admin/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAP__\r\nX-Space-App-Key: {key}\r\n\r\n", gw.host);
    let mut s2 = TcpStream::connect(gw.addr).await.unwrap();
    s2.write_all(h2c.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), s2.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), Some(101));
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nupgrade: websocket\r\n") && !lower.contains("h2c") && !lower.contains("http2-settings"),
            "{head}"
        );
        assert!(lower.contains("\r\nx-gatehouse-auth: api_key\r\n") && !lower.contains("usr_admin"), "{head}");
        assert!(!lower.contains("x-space-app-key"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_websocket_tunnels_count_against_the_connection_cap() {
    let (up, _) = websocket_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), limited(30, 60, 2)).await;
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let extra = format!("X-Space-App-Key: {key}\r\n");
    let mut tunnels = vec![];
    for _ in 0..2 {
        let (s, status, head) = open_tunnel(&gw, "/ws", &extra).await;
        assert_eq!(status, Some(101), "{head}");
        tunnels.push(s);
    }
    crate::edge::all_accepted(gw.addr).await;
    // Two open tunnels hold two client sockets (and two upstream ones): a third connection waits.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third
        .write_all(format!("GET /ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", gw.host).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut buf)).await;
    assert!(
        early.is_err() && buf.is_empty(),
        "a third connection was served beyond the cap of two while two tunnels were open"
    );
    drop(tunnels.pop());
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("served once a tunnel closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("HTTP/1.1 "), "{}", String::from_utf8_lossy(&buf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_idle_websocket_tunnels_are_closed() {
    let (up, _) = websocket_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), limited(1, 2, 100)).await;
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let extra = format!("X-Space-App-Key: {key}\r\n");
    // A tunnel with traffic stays open past the idle timeout.
    let (mut busy, status, head) = open_tunnel(&gw, "/ws", &extra).await;
    assert_eq!(status, Some(101), "{head}");
    for _ in 0..8 {
        // A sleep on purpose: traffic spaced over more than the idle timeout is what is tested.
        tokio::time::sleep(Duration::from_millis(500)).await;
        busy.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), busy.read_exact(&mut echo))
            .await
            .expect("a busy tunnel stays open")
            .unwrap();
    }
    // One with no bytes either way is closed.
    let (mut idle, status, head) = open_tunnel(&gw, "/ws", &extra).await;
    assert_eq!(status, Some(101), "{head}");
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await, "an idle WebSocket tunnel stays open forever");
}

/// An upstream that answers every request after `delay` on its own connection (`Connection: close`),
/// and remembers the most requests it ever held at once.
///
/// A request counts from its connection's accept until just before its answer is written, not until
/// the socket is dropped: once the answer is on its way the gateway may finish that request, release its
/// slot and open the next connection, and counting the old socket until this task got round to dropping
/// it (late, on a loaded machine) saw five where the gateway held four. Both ends of the interval are
/// ordered after, and before, the gateway's own slot (accept follows its connect; its response follows
/// the decrement), so the count never exceeds what the gateway has in flight, and forty streams let
/// through at once would still be seen, each held here for `delay`.
async fn counting_upstream(delay: Duration) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let open = std::sync::Arc::new(AtomicUsize::new(0));
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let most_seen = most.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (open, most) = (open.clone(), most.clone());
            tokio::spawn(async move {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow").await;
            });
        }
    });
    (addr, most_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_h2_streams_cannot_multiply_upstream_sockets_beyond_the_cap() {
    let (up, most) = counting_upstream(Duration::from_millis(300)).await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(10), limited(30, 60, 4)).await;
    // One client connection, forty streams at once: each would hold an upstream socket, forty sockets
    // for a listener sized for four connections.
    let out = review("streams", &gw, &["40"]).await;
    let statuses = out["statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 40);
    assert!(statuses.iter().all(|s| s == 200), "every stream is still served, in turn: {out}");
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 4, "one h2 connection held {most} upstream sockets at once, beyond the listener's cap of 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_method_case_cannot_dodge_a_route_scope() {
    use crate::oauth::{env, exchange, get_code, pkce, Browser};
    // A token for `orders:read` only; `POST /orders/*` needs `orders:write`.
    let e = env(Backend::Sqlite).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, tokens) = exchange(&e, &code, &p.verifier).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let before = e.gw.seen_count();
    // Servers disagree on whether `post` is POST (Werkzeug upper-cases the method before routing), so
    // a lower-case method must not slip past the scope that `POST` would need.
    for method in ["post", "Post", "pOST", "get"] {
        let req = format!("{method} /orders/7 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {access}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", e.gw.host);
        let answer = raw(e.gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert!(
            matches!(status_of(&answer), Some(400 | 403 | 405)),
            "{method} /orders/7 with an orders:read token: {answer}"
        );
        assert!(answer.contains("insufficient_scope") || status_of(&answer) != Some(403), "{answer}");
    }
    assert_eq!(e.gw.seen_count(), before, "a lower-case method reached the upstream");
    // The upper-case ones still behave: GET is allowed, POST is refused for the missing scope.
    let get = format!(
        "GET /orders/7 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {access}\r\nConnection: close\r\n\r\n",
        e.gw.host
    );
    assert_eq!(status_of(&raw(e.gw.addr, get.as_bytes(), Duration::from_secs(3)).await), Some(200));
    let post = format!("POST /orders/7 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {access}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", e.gw.host);
    assert_eq!(status_of(&raw(e.gw.addr, post.as_bytes(), Duration::from_secs(3)).await), Some(403));
}

/// An upstream that records the raw bytes of each connection (read for a moment), then answers `200`.
async fn raw_upstream() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let all = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let all = all.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(400), s.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    bytes.extend_from_slice(&buf[..n]);
                }
                all.lock().unwrap().push(String::from_utf8_lossy(&bytes).into_owned());
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_request_trailers_cannot_carry_identity_or_addressing_headers() {
    let (up, seen) = raw_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), test_config()).await;
    // Declared in `Trailer` and sent after the last chunk: headers the upstream may merge into the request.
    let req = format!(
        "POST /public/upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Gatehouse-User, X-Forwarded-For, X-Space-App-Key\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Gatehouse-User: usr_admin\r\nX-Forwarded-For: 6.6.6.6\r\nX-Space-App-Key: gth_sk_live_stolen\r\n\r\n",
        gw.host
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let upstream = seen[0].to_ascii_lowercase();
    assert!(upstream.contains("hello"), "{upstream}");
    for forged in ["usr_admin", "6.6.6.6", "gth_sk_live_stolen", "trailer:"] {
        assert!(!upstream.contains(forged), "{forged} reached the upstream: {upstream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_odd_request_targets_are_refused() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let h = &gw.host;
    for target in [
        "*",
        "ping",
        "/ping/..;/admin",
        "/%2e%2e/admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public%2f../admin",
    ] {
        let method = if target == "*" { "OPTIONS" } else { "GET" };
        let req = format!("{method} {target} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert!(matches!(status_of(&answer), Some(400 | 401)), "{method} {target}: {answer}");
    }
    assert_eq!(gw.seen_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_h2_slowloris_header_blocks_do_not_hold_a_connection() {
    let gw = Gw::start_full(Backend::Sqlite, None, None, Duration::from_secs(10), limited(1, 2, 100)).await;
    let out = review("drip", &gw, &["8"]).await;
    assert!(
        out["closed_after"].as_f64().is_some_and(|s| s < 6.0),
        "a never-ending h2 header block keeps the connection: {out}"
    );
    assert_eq!(gw.seen_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cross_site_websocket_hijacking_with_the_session_cookie_is_refused() {
    let (up, heads) = websocket_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), test_config()).await;
    let users = gatehouse_services::users::Users::new(
        std::sync::Arc::new(gw.cp.store.clone()) as std::sync::Arc<dyn gatehouse_store::Store>,
        "default".into(),
    );
    let user = users.create_owner("owner@example.com", "correct horse battery", "test").await.unwrap();
    let (cookie, _) = gw.cp.state.sessions.create_login(&user, &gw.host, vec![]).await.unwrap();
    let session = format!("Cookie: gatehouse_session={cookie}\r\n");
    // A page on another site (a sibling subdomain is same-site, so SameSite=Lax still sends the cookie)
    // opens a WebSocket to the app: the browser adds the cookie, and the tunnel would act as the user.
    let other_port = format!("http://{}:1", gw.host.split(':').next().unwrap());
    for origin in [
        "http://evil.example",
        "null",
        &other_port,
        &format!("http://{}.evil.example", gw.host),
        &format!("http://{}@evil.example", gw.host),
    ] {
        let (_, status, head) = open_tunnel(&gw, "/ws", &format!("{session}Origin: {origin}\r\n")).await;
        assert_ne!(status, Some(101), "Origin {origin}: a cross-origin WebSocket rode the session cookie: {head}");
    }
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock().unwrap());
    // The app's own pages still open one, and so does a non-browser client (no Origin) with its cookie.
    for extra in [
        format!("{session}Origin: http://{}\r\n", gw.host),
        format!("{session}Origin: HTTP://{}\r\n", gw.host.to_ascii_uppercase()),
        format!("{session}Origin: https://{}\r\n", gw.host),
        session.clone(),
    ] {
        let (_, status, head) = open_tunnel(&gw, "/ws", &extra).await;
        assert_eq!(status, Some(101), "{extra:?}: {head}");
    }
    let heads = heads.lock().unwrap().clone();
    assert!(heads.iter().all(|h| h.to_ascii_lowercase().contains("x-gatehouse-auth: session")), "{heads:?}");
    // Credentials that are not ambient are not a cross-site risk: a key from any origin is judged as usual.
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let (_, status, head) =
        open_tunnel(&gw, "/ws", &format!("X-Space-App-Key: {key}\r\nOrigin: http://evil.example\r\n")).await;
    assert_eq!(status, Some(101), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_h2_connections_must_ask_within_the_header_read_timeout() {
    // An HTTP/1.1 connection that sends nothing is closed after the header-read timeout (hyper's timer);
    // an h2 one that sends its preface and then only PINGs must not get the longer idle timeout instead.
    let gw = Gw::start_full(Backend::Sqlite, None, None, Duration::from_secs(10), limited(1, 30, 100)).await;
    let out = review("pings", &gw, &["6"]).await;
    assert!(
        out["closed_after"].as_f64().is_some_and(|s| s < 4.0),
        "an h2 connection without a request outlived the header-read timeout: {out}"
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "a silent connection outlived the header-read timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_expect_continue_is_judged_before_the_body_is_invited() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    // Private, no credential: refused at once, the body never invited, nothing upstream.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!("POST /admin HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", gw.host)
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(statuses(&answer), [401], "{answer}");
    assert_eq!(gw.seen_count(), 0);
    // Public: the body is invited and arrives.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("POST /public/upload HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", gw.host).as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"), "{}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(String::from_utf8_lossy(&rest).contains("(5 bytes)"), "{}", String::from_utf8_lossy(&rest));
}
