//! The shipped corpus of auth-bypass attempts (SPEC §3 "Path safety"): well over 150 hostile requests,
//! sent byte for byte over raw TCP, none carrying a credential. The property: nothing the upstream
//! receives is a private route — every request it sees matches a public pattern — and no request that
//! is private after normalization is answered 2xx.

use std::time::Duration;

use gatehouse_core::spacefile;
use gatehouse_store::testing::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{Gw, SPACEFILE};

/// Sends raw bytes and returns the status code (None if the connection closed without one).
async fn raw(addr: std::net::SocketAddr, request: String) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// One request of the corpus: method, request target, headers.
type Case = (String, String, Vec<(String, String)>);

fn corpus(host: &str) -> Vec<Case> {
    let mut c: Vec<Case> = vec![];
    let mut add = |m: &str, t: String, h: &[(&str, &str)]| {
        c.push((m.into(), t, h.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()))
    };
    // Traversal out of every public prefix, with every spelling of `..` and of `/`.
    let anchors = ["/ping", "/public", "/public/x", "/feed/1"];
    let dots = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2e%2E"];
    let seps = ["/", "//", "/./", "%2f", "%2F", "\\", "%5c", "%5C"];
    for a in anchors {
        for d in dots {
            for s in seps {
                add("GET", format!("{a}{s}{d}{s}admin"), &[]);
            }
        }
    }
    let singles = [
        // Overlong and invalid UTF-8 dots and slashes.
        "/public/%c0%ae%c0%ae/admin",
        "/public/%c0%ae%c0%ae%c0%afadmin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public/%c1%9c../admin",
        "/public/%c0%2e%c0%2e/admin",
        "/public/%ff/../../admin",
        // NUL and control characters.
        "/ping%00",
        "/ping%00/../admin",
        "/public/%00/../../admin",
        "/ping%0a",
        "/ping%0d%0aX-Injected:%201",
        "/ping%09",
        // Invalid percent-encoding.
        "/public/%zz/../../admin",
        "/public/%/../../admin",
        "/public/%2/../../admin",
        "/public/%%2e%2e/admin",
        "/%",
        "/ping%",
        // Double encoding stays encoded (and so stays under /public).
        "/public/%252e%252e/admin",
        "/public/%252e%252e%252fadmin",
        // Semicolon path parameters.
        "/ping;/../admin",
        "/admin;.js",
        "/public/..;/admin",
        "/ping;jsessionid=1",
        "/admin;/ping",
        "/public;/x",
        // Case and trailing variants of public routes.
        "/PING",
        "/Ping",
        "/PUBLIC/x",
        "/Feed/1",
        "/ping/",
        "/ping.",
        "/ping%20",
        "/ping/.",
        "/ping/..",
        "/ping/../",
        // Fragments and query tricks.
        "/ping#x",
        "/ping%23/../admin",
        "/admin?/ping",
        "/admin?x=/ping",
        "/admin#?/ping",
        "/admin?%2e%2e/ping",
        // A public pattern as the prefix of a private path.
        "/pingx",
        "/ping-admin",
        "/pingadmin",
        "/publicx",
        "/public",
        "/feed",
        "/publicadmin/x",
        // Private routes themselves.
        "/",
        "/admin",
        "/orders/1",
        "/api",
        "/api/",
        "/api/ping",
        "/api/public/x",
        "/API/ping",
        // The reserved prefix, smuggled.
        "/ping/../__gatehouse/../admin",
        "/__gatehouse/../admin",
        "/__gatehouse/%2e%2e/admin",
        // Climbing above the root.
        "/..",
        "/../admin",
        "/%2e%2e/admin",
        "/../../../../etc/passwd",
        "/./../admin",
        // Not origin-form paths.
        "*",
        "admin",
        "ping",
    ];
    for t in singles {
        add("GET", t.to_owned(), &[]);
    }
    // Absolute-form request targets.
    for t in ["/admin", "/ping/../admin", "/public/%2e%2e/admin", "//admin"] {
        add("GET", format!("http://{host}{t}"), &[]);
    }
    add("GET", "http://other.test/ping".into(), &[]);
    // Methods on GET-only public routes and on private ones.
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        add(m, "/feed/1".into(), &[]);
        add(m, "/admin".into(), &[]);
    }
    // Spoofed routing headers on private paths.
    for h in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Forwarded-Prefix",
        "X-Original-URI",
        "X-Envoy-Original-Path",
    ] {
        add("GET", "/admin".into(), &[(h, "/ping")]);
        add("POST", "/feed/1".into(), &[(h, "/feed/1")]);
    }
    for h in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        add("POST", "/feed/1".into(), &[(h, "GET")]);
        add("GET", "/feed/1".into(), &[(h, "DELETE")]);
    }
    // Identity spoofing must not count as a credential.
    add("GET", "/admin".into(), &[("X-Gatehouse-User", "usr_owner"), ("X-Gatehouse-Auth", "session")]);
    add("GET", "/admin".into(), &[("X_Gatehouse_Auth", "api_key")]);
    add("GET", "/admin".into(), &[("Forwarded", "for=127.0.0.1;host=admin")]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bypass_attempt_reaches_a_private_route() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let sf = spacefile::parse("Spacefile", SPACEFILE).unwrap();
    let web = sf.micros.iter().find(|m| m.name == "web").unwrap();
    let corpus = corpus(&gw.host);
    assert!(corpus.len() >= 150, "the corpus has {} requests", corpus.len());
    let mut reached = 0;
    for (method, target, headers) in &corpus {
        let before = gw.seen_count();
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", gw.host);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        let status = raw(gw.addr, req).await;
        let seen: Vec<_> = gw.seen.lock().unwrap()[before..].to_vec();
        for (m, pq, h) in &seen {
            let path = pq.split('?').next().unwrap();
            assert!(web.policy.is_public(m, path), "{method} {target} reached the upstream as private {m} {pq}");
            for spoof in [
                "x-original-url",
                "x-rewrite-url",
                "x-forwarded-uri",
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
            ] {
                assert!(h.get(spoof).is_none(), "{method} {target}: {spoof} reached the upstream");
            }
            // `Forwarded` is Gatehouse's own, never the client's.
            let forwarded = h.get("forwarded").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(forwarded, Some(format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.host)), "{method} {target}");
            assert_eq!(h["x-gatehouse-auth"], "public", "{method} {target}");
        }
        if seen.is_empty() {
            assert!(
                status.is_none_or(|s| !(200..300).contains(&s)),
                "{method} {target} answered {status:?} without reaching the upstream"
            );
        } else {
            reached += 1;
        }
    }
    // Controls: the public routes themselves do reach the upstream, so the check above is live.
    for t in ["/ping", "/public/x", "/feed/1", "/public/a/../b"] {
        let before = gw.seen_count();
        let status = raw(gw.addr, format!("GET {t} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", gw.host)).await;
        assert_eq!(status, Some(200), "{t}");
        assert_eq!(gw.seen_count(), before + 1, "{t} reached the upstream");
    }
    assert!(reached > 0, "some corpus requests normalize to public routes and are forwarded");
}
