//! HTTPS at the edge (SPEC §14, §11) with the real binary: a certificate made here (rcgen) served by
//! the gateway and the control plane, HTTP/2 over TLS (ALPN h2) to an HTTP/1 upstream, the files
//! replaced while a connection stays open (new connections get the new certificate, the open one
//! keeps working, a bad file changes nothing), the handshake timeout, the plain-HTTP redirect
//! listener against hostile `Host` headers, and `Secure` cookies and HSTS only over TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::servers::{free_port, Node};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse test CA");
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A fresh key and a certificate for `names`, signed by this CA: (chain PEM, key PEM, leaf DER).
    pub fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem()), key.serialize_pem(), cert.der().to_vec())
    }
}

/// An HTTP/1 upstream (hyper's HTTP/1 only) that answers every request with what it saw: the HTTP
/// version, `X-Forwarded-Proto` and `Host`.
pub async fn http1_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let body = serde_json::json!({
                        "version": format!("{:?}", req.version()),
                        "proto": h("x-forwarded-proto"),
                        "host": h("host"),
                    });
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        hyper::body::Bytes::from(body.to_string()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A data dir with a public app (`app.test`) in front of `upstream`, `settings` appended to the config.
pub fn app_dir(cp_port: u16, gw_port: u16, upstream: SocketAddr, settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Spacefile"),
        format!("v: 0\nmicros:\n  - name: main\n    upstream: http://{upstream}\n    public: true\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "listen = \"127.0.0.1:{cp_port}\"\ngateway_listen = \"127.0.0.1:{gw_port}\"\ndata_dir = \"data\"\nlog_level = \"info\"\n{settings}\n\n[[apps]]\nname = \"app\"\nhosts = [\"app.test\"]\nspacefile = \"Spacefile\"\n"
        ),
    )
    .unwrap();
    dir
}

/// Starts `gatehouse serve` in `dir` (stderr to `serve.err`).
pub fn start(dir: &Path) -> Node {
    let mut cmd = crate::command(dir, &["--config", "gatehouse.toml", "serve"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("serve.err")).unwrap());
    Node::spawn(cmd, dir.join("serve.err"))
}

/// A client that trusts only `roots`, resolves the test host names to loopback and reports the
/// certificate each response came over.
pub fn client(roots: &[Vec<u8>], resolve: &[(&str, SocketAddr)]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none());
    for r in roots {
        b = b.add_root_certificate(reqwest::Certificate::from_der(r).unwrap());
    }
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    b.build().unwrap()
}

/// The DER of the certificate a response came over.
pub fn peer_certificate(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("a TLS response carries its peer certificate")
        .to_vec()
}

/// Polls `f` every 100 ms until it answers `Some`, for at most `secs` seconds.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    node: &Node,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "{what} did not happen; log:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One raw HTTP/1.1 exchange on a fresh TCP connection: the response head (status line and headers).
async fn raw_http(port: u16, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(loopback(port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    // Until the head is complete or the server closes (a TLS port answers plain HTTP with neither).
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split("\r\n\r\n").next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn certificate_files_are_served_over_h2_and_reloaded_without_dropping_connections() {
    let ca = TestCa::new();
    let (chain, key, first_der) = ca.leaf(&["app.test", "cp.test"]);
    let (cp, gw) = (free_port(), free_port());
    let upstream = http1_upstream().await;
    let settings = format!(
        "public_url = \"https://cp.test:{cp}\"\n[limits]\ntls_handshake_timeout_secs = 1\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\nreload_interval_secs = 1\n"
    );
    let dir = app_dir(cp, gw, upstream, &settings);
    let d = dir.path();
    std::fs::write(d.join("cert.pem"), &chain).unwrap();
    std::fs::write(d.join("key.pem"), &key).unwrap();
    let node = start(d);
    let resolve = [("app.test", loopback(gw)), ("cp.test", loopback(cp))];
    let app_url = format!("https://app.test:{gw}/hello");
    let old = client(&[ca.der()], &resolve);
    let resp =
        eventually("the gateway serving HTTPS", 30, &node, || async { old.get(&app_url).send().await.ok() }).await;
    // HTTP/2 negotiated by ALPN towards the gateway; the upstream got HTTP/1.1 marked as https.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(peer_certificate(&resp), first_der);
    let hsts = resp.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
    assert_eq!(seen["proto"], "https", "{seen}");
    assert_eq!(seen["host"], format!("app.test:{gw}"), "{seen}");
    assert_eq!(hsts.as_deref(), Some("max-age=31536000"));

    // The control plane on its own listener, same certificate: its cookies are Secure, HSTS is sent.
    let login = old.get(format!("https://cp.test:{cp}/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers().get("strict-transport-security").unwrap(), "max-age=31536000");
    let cookies: Vec<&str> = login.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");
    let ready: serde_json::Value =
        old.get(format!("https://cp.test:{cp}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["tls"]["cert_file"]["not_after"].as_i64().unwrap() > 0, "{ready}");

    // Replace both files: a new connection sees the new certificate, the open one keeps working.
    let (chain2, key2, second_der) = ca.leaf(&["app.test", "cp.test"]);
    std::fs::write(d.join("key.pem"), &key2).unwrap();
    std::fs::write(d.join("cert.pem"), &chain2).unwrap();
    eventually("the new certificate on a new connection", 15, &node, || async {
        let fresh = client(&[ca.der()], &resolve);
        let r = fresh.get(&app_url).send().await.ok()?;
        (peer_certificate(&r) == second_der).then_some(())
    })
    .await;
    let again = old.get(&app_url).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(peer_certificate(&again), first_der, "the open connection was kept");

    // A key that does not belong to the certificate is refused: the served certificate stays.
    let (_, stray_key, _) = ca.leaf(&["app.test"]);
    std::fs::write(d.join("key.pem"), &stray_key).unwrap();
    let why = eventually("the bad key reported", 15, &node, || async {
        let ready: serde_json::Value =
            old.get(format!("https://cp.test:{cp}/readyz")).send().await.ok()?.json().await.ok()?;
        ready["tls"]["cert_file"]["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(why.contains("does not belong"), "{why}");
    assert!(node.log().contains("still serving the previous certificate"), "{}", node.log());
    let fresh = client(&[ca.der()], &resolve);
    let r = fresh.get(&app_url).send().await.unwrap();
    assert_eq!(peer_certificate(&r), second_der);
    let metrics = fresh.get(format!("https://cp.test:{cp}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_tls_reloads_total{code=\"loaded\"} 1"), "{metrics}");
    assert!(metrics.contains("gatehouse_tls_reloads_total{code=\"rejected\"} 1"), "{metrics}");

    // A client that never completes the handshake is cut off after tls_handshake_timeout_secs.
    let mut silent = tokio::net::TcpStream::connect(loopback(gw)).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the silent connection was closed: {n:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "closed after {:?}", start.elapsed());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let head = raw_http(gw, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    // A name the certificate was not made for is refused by the client (the file's certificate is
    // presented for every name, and it names only app.test and cp.test).
    let other = client(&[ca.der()], &[("other.test", loopback(gw))]);
    assert!(other.get(format!("https://other.test:{gw}/")).send().await.is_err());
}

#[tokio::test]
async fn the_redirect_listener_sends_served_hosts_to_https_and_nobody_else() {
    let ca = TestCa::new();
    let (chain, key, _) = ca.leaf(&["app.test", "cp.test"]);
    let (cp, gw, plain) = (free_port(), free_port(), free_port());
    let upstream = http1_upstream().await;
    let settings = format!(
        "public_url = \"https://cp.test:{cp}\"\nhttp_redirect_listen = \"127.0.0.1:{plain}\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n"
    );
    let dir = app_dir(cp, gw, upstream, &settings);
    std::fs::write(dir.path().join("cert.pem"), &chain).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let node = start(dir.path());
    let c = client(&[ca.der()], &[("app.test", loopback(plain)), ("cp.test", loopback(plain))]);
    let resp = eventually("the redirect listener", 30, &node, || async {
        c.get(format!("http://app.test:{plain}/a/b?c=d&e=%2F")).send().await.ok()
    })
    .await;
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], format!("https://app.test:{gw}/a/b?c=d&e=%2F"));
    let post = c.post(format!("http://app.test:{plain}/form")).body("x=1").send().await.unwrap();
    assert_eq!(post.status(), 308);
    assert_eq!(post.headers()["location"], format!("https://app.test:{gw}/form"));
    let cp_resp = c.get(format!("http://cp.test:{plain}/login")).send().await.unwrap();
    assert_eq!(cp_resp.headers()["location"], format!("https://cp.test:{cp}/login"));
    // Following the redirect lands on the app over HTTPS.
    let follow = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&ca.der()).unwrap())
        .resolve("app.test", loopback(plain))
        .build()
        .unwrap();
    // (After the redirect the client connects to the resolved address with the new port: the gateway.)
    let landed = follow.get(format!("http://app.test:{plain}/x")).send().await.unwrap();
    assert_eq!(landed.status(), 200);
    assert_eq!(landed.url().as_str(), format!("https://app.test:{gw}/x"));

    // Hostile requests get no Location at all.
    let rows = [
        ("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", " 404 "),
        ("GET / HTTP/1.1\r\nHost: app.test.evil.test\r\n\r\n", " 404 "),
        ("GET / HTTP/1.1\r\nHost: app.test@evil.test\r\n\r\n", " 400 "),
        ("GET / HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n", " 400 "),
        ("GET http://evil.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", " 400 "),
        ("GET / HTTP/1.0\r\n\r\n", " 400 "),
        ("GET //evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", " 404 "),
        ("OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n", " 400 "),
        ("GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: app.test\r\n\r\n", " 404 "),
    ];
    for (request, want) in rows {
        let head = raw_http(plain, request).await;
        let status_line = head.lines().next().unwrap_or("");
        assert!(status_line.starts_with("HTTP/1.") && status_line.contains(want), "{request:?}: {head}");
        assert!(!head.to_ascii_lowercase().contains("\r\nlocation:"), "{request:?}: {head}");
    }
    // A network-path-looking target stays on the served host.
    let head = raw_http(plain, "GET //evil.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(head.contains(&format!("location: https://app.test:{gw}//evil.test/x")), "{head}");
}

#[tokio::test]
async fn without_tls_cookies_are_not_secure_and_no_hsts_is_sent() {
    let (cp, gw) = (free_port(), free_port());
    let upstream = http1_upstream().await;
    let dir = app_dir(cp, gw, upstream, "");
    let node = start(dir.path());
    let c = client(&[], &[("app.test", loopback(gw))]);
    let login = eventually("the plain control plane", 30, &node, || async {
        c.get(format!("http://127.0.0.1:{cp}/login")).send().await.ok()
    })
    .await;
    assert_eq!(login.status(), 200);
    assert!(login.headers().get("strict-transport-security").is_none());
    let cookies: Vec<&str> = login.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    let resp = c.get(format!("http://app.test:{gw}/")).send().await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none());
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["proto"], "http", "{seen}");
}

#[test]
fn tls_settings_are_checked_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cert.pem"), "x").unwrap();
    let rows = [
        ("[tls]\n", "tls: [tls] needs cert_file and key_file, or a [tls.acme] section"),
        ("[tls]\ncert_file = \"cert.pem\"\n", "tls.key_file: set key_file too"),
        ("[tls]\ncert_file = \"cert.pem\"\nkey_file = \"missing.pem\"\n", "tls.key_file: missing.pem"),
        ("http_redirect_listen = \"127.0.0.1:8080\"\n", "http_redirect_listen: needs [tls]"),
        (
            "public_url = \"http://cp.test\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"cert.pem\"\n",
            "public_url: `http://cp.test` must start with https:// when [tls] is set",
        ),
        (
            "[tls.acme]\nemail = \"ops@example.com\"\n",
            "tls.acme.challenge: the http-01 challenge is answered on http_redirect_listen",
        ),
        ("[tls.acme]\nchallenge = \"dns-01\"\n", "tls.acme.challenge: `dns-01` must be http-01 or tls-alpn-01"),
        (
            "[tls.acme]\ndirectory_url = \"http://ca.test/dir\"\nchallenge = \"tls-alpn-01\"\n",
            "tls.acme.directory_url: `http://ca.test/dir` must start with https://",
        ),
        (
            "[tls.acme]\nemail = \"nobody\"\nchallenge = \"tls-alpn-01\"\n",
            "tls.acme.email: `nobody` is not an email address",
        ),
        (
            "[tls.acme]\nrenew_before_days = 0\nchallenge = \"tls-alpn-01\"\n",
            "tls.acme.renew_before_days: between 1 and 36500",
        ),
        ("[limits]\ntls_handshake_timeout_secs = 0\n", "limits.tls_handshake_timeout_secs: between 1 and 300 seconds"),
    ];
    for (config, want) in rows {
        std::fs::write(d.join("gatehouse.toml"), config).unwrap();
        let out = crate::gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = crate::stderr(&out);
        assert!(err.contains(want), "{config}\nwanted: {want}\ngot: {err}");
    }
}
