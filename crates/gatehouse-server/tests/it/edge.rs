//! SPEC §11, the edge: every attack of the security review against a real gateway on real sockets.
//! Protocol switches (with hypercorn, a real h2c-capable upstream, and the `h2` client), hop-by-hop
//! headers, Host, client addressing headers, upstream cookies, malformed framing, CONNECT, and the
//! listener's time and connection limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::Gw;
use crate::{sk, test_config};

pub(crate) fn h2c_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/h2c")
}

fn python() -> PathBuf {
    let p = h2c_dir().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: scripts/test.sh installs tests/h2c/requirements.txt", p.display());
    p
}

/// hypercorn serving tests/h2c/upstream.py on a free port, killed on drop.
struct Hypercorn {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Hypercorn {
    async fn start() -> Hypercorn {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = tokio::process::Command::new(h2c_dir().join(".venv/bin/hypercorn"))
            .args(["--bind", &addr.to_string(), "upstream:app"])
            .current_dir(h2c_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("hypercorn starts");
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Hypercorn { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hypercorn did not listen on {addr}");
    }

    /// What hypercorn saw, asked directly (not through the gateway).
    async fn seen(&self) -> Vec<Value> {
        let body = reqwest::get(format!("http://{}/__seen", self.addr)).await.unwrap().text().await.unwrap();
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }
}

impl Drop for Hypercorn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs the Python script `script` of tests/h2c (its venv) with `args`; its one-line JSON answer.
pub(crate) async fn h2c_script(script: &str, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(h2c_dir().join(script))
        .args(args)
        .current_dir(h2c_dir())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{script} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{script} printed {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs tests/h2c/attack.py `mode` against `target` naming `authority`; its JSON answer.
async fn attack(mode: &str, target: SocketAddr, authority: &str) -> Value {
    h2c_script("attack.py", &[mode, &target.to_string(), authority]).await
}

/// Sends raw bytes, reads until the server closes (or `wait`); the whole answer as text.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

pub(crate) fn status_of(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_smuggling_never_reaches_private_routes() {
    let up = Hypercorn::start().await;
    // Control: the upstream on its own does switch to h2c and serve the smuggled private stream, so the
    // attack below is live.
    let direct = attack("smuggle", up.addr, &up.addr.to_string()).await;
    assert_eq!(direct["switched"], true, "{direct}");
    assert_eq!(direct["private_status"], 200, "{direct}");

    let control_requests = up.seen().await.len();
    let gw = Gw::start_full(Backend::Sqlite, Some(up.addr), None, Duration::from_secs(5), test_config()).await;
    let through = attack("smuggle", gw.addr, &gw.host).await;
    assert_eq!(through["switched"], false, "the gateway must never answer an h2c upgrade with 101: {through}");
    assert!(through["status_line"].as_str().unwrap().starts_with("HTTP/1.1 200"), "/ping is still served: {through}");
    let seen = up.seen().await.split_off(control_requests);
    let through_gateway: Vec<&Value> = seen.iter().collect();
    assert_eq!(through_gateway.len(), 1, "one request through the gateway: {seen:?}");
    let ping = through_gateway[0];
    assert_eq!(ping["path"], "/ping");
    assert_eq!(ping["http_version"], "1.1");
    for h in ping["headers"].as_array().unwrap() {
        let name = h[0].as_str().unwrap();
        assert!(!["upgrade", "http2-settings"].contains(&name), "{name} reached the upstream");
        if name == "connection" {
            assert!(!h[1].as_str().unwrap().to_ascii_lowercase().contains("upgrade"), "{h}");
        }
    }
    assert!(
        !seen.iter().any(|r| r["path"] == "/admin/secrets"),
        "the smuggled private stream reached the upstream: {seen:?}"
    );

    // Neighbours: other spellings and other protocols on public and private routes, with and without a key.
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let rows: &[(&str, &str, &str)] = &[
        ("/ping", "Upgrade", "H2C"),
        ("/ping", "upgrade, HTTP2-Settings", "h2c, h2"),
        ("/ping", "Upgrade", "TLS/1.2"),
        ("/ping", "keep-alive, Upgrade", "HTTP/2.0"),
        ("/admin", "Upgrade, HTTP2-Settings", "h2c"),
    ];
    for (path, connection, upgrade) in rows {
        for with_key in [false, true] {
            let key_header = if with_key { format!("X-Space-App-Key: {key}\r\n") } else { String::new() };
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAP__\r\n{key_header}\r\n",
                gw.host
            );
            let answer = raw(gw.addr, req.as_bytes(), Duration::from_millis(800)).await;
            assert_ne!(status_of(&answer), Some(101), "{path} Upgrade: {upgrade} (key: {with_key}) switched: {answer}");
        }
    }
    let after = up.seen().await.split_off(control_requests);
    for r in &after {
        for h in r["headers"].as_array().unwrap() {
            assert!(!["upgrade", "http2-settings"].contains(&h[0].as_str().unwrap()), "{r}");
        }
    }
}

/// An upstream that answers every request with `101` (to whatever was asked).
async fn always_switching_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_protocol_switch_from_the_upstream_is_a_502() {
    let up = always_switching_upstream().await;
    let gw = Gw::start_full(Backend::Sqlite, Some(up), None, Duration::from_secs(5), test_config()).await;
    let plain = format!("GET /ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", gw.host);
    assert_eq!(status_of(&raw(gw.addr, plain.as_bytes(), Duration::from_secs(3)).await), Some(502));
    // A WebSocket handshake whose answer switches to another protocol is refused too.
    let ws = format!(
        "GET /ping HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        gw.host
    );
    assert_eq!(status_of(&raw(gw.addr, ws.as_bytes(), Duration::from_secs(3)).await), Some(502));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_and_h2_authority_mismatches_are_refused() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let connect = format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\n\r\n", h = gw.host);
    let answer = raw(gw.addr, connect.as_bytes(), Duration::from_millis(800)).await;
    assert_eq!(status_of(&answer), Some(400), "{answer}");
    let h2 = attack("connect", gw.addr, &gw.host).await;
    assert_eq!(h2["status"], 400, "h2 CONNECT: {h2}");
    let mismatch = attack("authority", gw.addr, &gw.host).await;
    assert_eq!(mismatch["status"], 400, "h2 :authority and host disagree: {mismatch}");
    assert_eq!(gw.seen_count(), 0, "none of them reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_injection_is_refused_and_the_upstream_gets_one_host() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let h = &gw.host;
    let refused = [
        format!("GET /ping HTTP/1.1\r\nHost: {h}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        format!("GET /ping HTTP/1.1\r\nHost: evil.example\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        format!("GET http://evil.example/ping HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        format!("GET http://{h}/ping HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        format!("GET http://user@{h}/ping HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
    ];
    for req in &refused {
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), Some(400), "{req:?} → {answer}");
    }
    assert_eq!(gw.seen_count(), 0);
    // Agreeing absolute form is fine, and the upstream sees exactly one Host: the app's.
    let same = format!("GET http://{h}/ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", h.to_ascii_uppercase());
    assert_eq!(status_of(&raw(gw.addr, same.as_bytes(), Duration::from_secs(3)).await), Some(200));
    let (_, _, seen) = gw.last_seen();
    let hosts: Vec<_> = seen.get_all("host").iter().collect();
    assert_eq!(hosts, [h.as_str()], "one Host, the authority the app was chosen by");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_gatehouse_headers() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let (rec, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let listed = "X-Forwarded-For, X-Real-IP, X-Gatehouse-Auth, Host, X-Gatehouse-Jwt-Assertion, X-Gatehouse-Key-Id, X-Forwarded-Proto, X-Forwarded-Host, Forwarded, X-Gatehouse-Environment";
    for (path, key_header) in [("/admin", format!("X-Space-App-Key: {key}\r\n")), ("/ping", String::new())] {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close, {listed}\r\n{key_header}\r\n", gw.host);
        let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), Some(200), "{answer}");
        let (_, _, h) = gw.last_seen();
        for name in [
            "x-forwarded-for",
            "x-real-ip",
            "x-gatehouse-auth",
            "host",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            assert!(h.get(name).is_some(), "{path}: {name} was removed by the client's Connection header");
        }
        if path == "/admin" {
            assert!(
                h.get("x-gatehouse-jwt-assertion").is_some(),
                "the assertion was removed by the client's Connection header"
            );
            assert_eq!(h["x-gatehouse-auth"], "api_key");
            assert_eq!(h["x-gatehouse-key-id"], rec.id.as_str());
            assert_eq!(h["x-gatehouse-environment"], "live");
        } else {
            assert_eq!(h["x-gatehouse-auth"], "public");
        }
        assert!(
            h.get("connection").is_none_or(|v| !v.to_str().unwrap().contains("X-Gatehouse")),
            "Connection is hop-by-hop"
        );
    }
}

const ADDRESSING: &[(&str, &str)] = &[
    ("True-Client-IP", "6.6.6.6"),
    ("X-Client-IP", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
    ("Fastly-Client-IP", "6.6.6.6"),
    ("X-Cluster-Client-IP", "6.6.6.6"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Scheme", "https"),
    ("Front-End-Https", "on"),
    ("X-Url-Scheme", "https"),
    ("X-Host", "admin.internal"),
    ("X-Original-Host", "admin.internal"),
    ("X-Forwarded-Server", "admin.internal"),
    ("X-Forwarded-Port", "443"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addressing_and_look_alike_headers_are_removed() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let look_alikes = [
        ("x-gatehouse.jwt-assertion", "forged"),
        ("x-gatehouse~jwt-assertion", "forged"),
        ("x.gatehouse.user", "usr_admin"),
        ("x-gatehouse--email", "boss@example.com"),
        ("x.space.app.key", "gth_sk_live_x"),
        ("x.original.url", "/admin"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
    ];
    let mut headers: Vec<(&str, &str)> = ADDRESSING.to_vec();
    headers.extend(look_alikes);
    assert_eq!(gw.get("/ping", &headers).await.0, 200);
    let (_, _, h) = gw.last_seen();
    for (name, _) in ADDRESSING.iter().chain(&look_alikes[..6]) {
        assert!(h.get(*name).is_none(), "{name} from an untrusted client reached the upstream");
    }
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["forwarded"], format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.host).as_str());

    // From a trusted proxy, the addressing headers it set are passed on and its chains extended.
    let mut config = test_config();
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let gw = Gw::start_with(Backend::Sqlite, None, Duration::from_secs(5), config).await;
    let mut headers: Vec<(&str, &str)> = ADDRESSING.to_vec();
    headers.extend([
        ("X-Forwarded-For", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.7"),
        ("x-gatehouse.user", "usr_admin"),
    ]);
    assert_eq!(gw.get("/ping", &headers).await.0, 200);
    let (_, _, h) = gw.last_seen();
    for (name, value) in ADDRESSING {
        assert_eq!(h.get(*name).map(|v| v.to_str().unwrap()), Some(*value), "{name} from a trusted proxy");
    }
    assert!(h.get("x-gatehouse.user").is_none(), "ours are removed whoever sends them");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["forwarded"], format!("for=203.0.113.7, for=127.0.0.1;proto=http;host=\"{}\"", gw.host).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_cannot_set_or_clear_gatehouse_cookies() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let (status, h, _) = gw.get("/public/set-cookies", &[]).await;
    assert_eq!(status, 200);
    let cookies: Vec<_> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies, ["app_theme=dark"], "only the app's own cookie reaches the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_chunking_is_a_400_not_a_502() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let bodies: &[&[u8]] = &[
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\nFFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"3\r\nhello\r\n0\r\n\r\n",
        b"-1\r\nx\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let mut req = format!(
            "POST /public/upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            gw.host
        )
        .into_bytes();
        req.extend_from_slice(body);
        let answer = raw(gw.addr, &req, Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), Some(400), "{:?} → {answer}", String::from_utf8_lossy(body));
        assert!(answer.contains("invalid_request"), "{answer}");
    }
    // A well-formed chunked body still goes through.
    let req = format!("POST /public/upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", gw.host);
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.contains("(5 bytes)"), "{answer}");
}

pub(crate) fn limited(header_read: u64, idle: u64, max_connections: usize) -> gatehouse_server::ServerConfig {
    let mut config = test_config();
    config.listener.header_read_timeout = Duration::from_secs(header_read);
    config.listener.idle_timeout = Duration::from_secs(idle);
    config.listener.max_connections = max_connections;
    config
}

/// Whether the server closed `s` within `within` (reads until EOF, ignoring what it says first).
pub(crate) async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
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

/// Connections waiting in `addr`'s accept queue (Linux: the receive-queue column of the listening
/// socket in /proc/net/tcp), i.e. connected but not yet taken by the server's `accept`.
pub(crate) fn accept_queue(addr: SocketAddr) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (the edge tests run on Linux)");
    let local = format!(":{:04X}", addr.port());
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1].ends_with(&local) && f[3] == "0A")
        .map(|f| usize::from_str_radix(f[4].split(':').nth(1).unwrap_or("0"), 16).unwrap())
        .unwrap_or_else(|| panic!("no listening socket on {addr} in /proc/net/tcp"))
}

/// Waits (bounded) until the server listening on `addr` has accepted every connection made to it so far.
pub(crate) async fn all_accepted(addr: SocketAddr) {
    let start = std::time::Instant::now();
    loop {
        let waiting = accept_queue(addr);
        if waiting == 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{waiting} connections still not accepted by {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_idle_connections_are_closed() {
    let gw = Gw::start_full(
        Backend::Sqlite,
        None,
        Some(Duration::from_millis(2500)),
        Duration::from_secs(10),
        limited(1, 2, 100),
    )
    .await;
    // An unfinished request head.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /ping HTTP/1.1\r\nHost: {}\r\n", gw.host).as_bytes()).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "an unfinished head stays open");
    // Slowloris: a byte every 200 ms keeps the socket busy but the head never completes in time.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!("GET /ping HTTP/1.1\r\nHost: {}\r\nX-Slow: {}\r\n\r\n", gw.host, "a".repeat(40));
    let mut closed = false;
    for b in head.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        // A sleep on purpose: a slow sender is the attack under test.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed || closed_within(&mut s, Duration::from_secs(1)).await, "a slowloris head was read to the end");
    // A connection that never sends anything.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "an idle connection stays open");
    // An idle keep-alive connection after a request.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /ping HTTP/1.1\r\nHost: {}\r\n\r\n", gw.host).as_bytes()).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await, "an idle keep-alive connection stays open");
    // A request slower than the idle timeout still gets its answer: idleness closes only between requests.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /public/slow HTTP/1.1\r\nHost: {}\r\n\r\n", gw.host).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("upstream saw /public/slow"),
        "the slow answer arrives: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_and_are_served_when_one_closes() {
    let gw = Gw::start_full(Backend::Sqlite, None, None, Duration::from_secs(10), limited(30, 60, 4)).await;
    let mut idle = vec![];
    for _ in 0..4 {
        let s = TcpStream::connect(gw.addr).await.unwrap();
        idle.push(s);
    }
    // The gateway has taken the four (each holds a permit), so the fifth meets a full cap.
    all_accepted(gw.addr).await;
    let mut fifth = TcpStream::connect(gw.addr).await.unwrap();
    fifth
        .write_all(format!("GET /ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", gw.host).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), fifth.read_to_end(&mut buf)).await;
    assert!(early.is_err() && buf.is_empty(), "a fifth connection was served beyond the cap of four");
    drop(idle.pop());
    tokio::time::timeout(Duration::from_secs(5), fifth.read_to_end(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_answers_over_tls_carry_hsts_and_plain_http_ones_do_not() {
    let mut config = test_config();
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let gw = Gw::start_with(Backend::Sqlite, None, Duration::from_secs(5), config).await;
    let (status, h, _) = gw.get("/ping", &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(status, 200);
    assert_eq!(h.get("strict-transport-security").map(|v| v.to_str().unwrap()), Some("max-age=31536000"));
    let (_, h, _) = gw.get("/ping", &[]).await;
    assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    // From an untrusted peer, X-Forwarded-Proto says nothing.
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let (_, h, _) = gw.get("/ping", &[("X-Forwarded-Proto", "https")]).await;
    assert!(h.get("strict-transport-security").is_none());
}
