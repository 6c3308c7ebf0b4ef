//! The gateway over real sockets: an in-process upstream that records what it receives, the gateway
//! in front of it, and the control plane beside it. SPEC §3 decisions, header hygiene, the identity
//! assertion, revocation, upstream failures, and sign-in across hosts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use gatehouse_core::spacefile;
use gatehouse_core::Environment;
use gatehouse_server::gateway::{Gateway, GatewayApp, GatewayConfig, Upstream};
use gatehouse_server::App;
use gatehouse_services::keys::NewKey;
use gatehouse_store::testing::Backend;
use gatehouse_store::Store;
use serde_json::Value;

use crate::{rk, sk, story, TestApp};

/// What the upstream saw: method, path with query, headers.
pub type Seen = Arc<Mutex<Vec<(String, String, HeaderMap)>>>;

/// Starts an upstream that records every request and answers `pong` on /ping, echoes otherwise.
pub async fn recording_upstream(delay: Option<Duration>) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let pq = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            s.lock().unwrap().push((req.method().to_string(), pq.clone(), req.headers().clone()));
            if req.uri().path() == "/ping" {
                return "pong".into_response();
            }
            // An upstream that tries to plant or clear Gatehouse's cookies, beside one of its own.
            if req.uri().path() == "/public/set-cookies" {
                let mut r = "cookies".into_response();
                for c in [
                    "gatehouse_session=planted; Path=/",
                    "gatehouse_csrf=planted",
                    "gatehouse_state=planted; Path=/__gatehouse/",
                    "GATEHOUSE_CP_SESSION=; Max-Age=0",
                    "app_theme=dark",
                ] {
                    r.headers_mut().append("set-cookie", c.parse().unwrap());
                }
                return r;
            }
            let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await.map(|b| b.len()).unwrap_or(0);
            format!("upstream saw {pq} ({body} bytes)").into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, seen)
}

pub const SPACEFILE: &str = r#"v: 0
app_name: shop
micros:
  - name: web
    src: .
    engine: custom
    run: x
    primary: true
    public_routes: ["/ping", "/public/*", "GET /feed/*"]
    presets:
      api_keys: true
    route_scopes:
      "POST /orders/*": orders:write
      "GET /orders/*": orders:read
  - name: api
    src: .
    engine: custom
    run: y
    path: api
    presets:
      api_keys: true
  - name: nokeys
    src: .
    engine: custom
    run: z
"#;

/// A control plane, a gateway for app `shop` on `shop.test`, and the upstream behind both micros.
pub struct Gw {
    pub cp: TestApp,
    pub addr: SocketAddr,
    pub seen: Seen,
    pub host: String,
}

impl Gw {
    pub async fn start(b: Backend, upstream_delay: Option<Duration>, timeout: Duration) -> Gw {
        Self::start_with(b, upstream_delay, timeout, crate::test_config()).await
    }

    pub async fn start_with(
        b: Backend,
        upstream_delay: Option<Duration>,
        timeout: Duration,
        config: gatehouse_server::ServerConfig,
    ) -> Gw {
        Self::start_full(b, None, upstream_delay, timeout, config).await
    }

    /// As `start_with`, in front of `upstream` (instead of the recording one) when given. The gateway
    /// listener has `config.listener`'s limits.
    pub async fn start_full(
        b: Backend,
        upstream: Option<SocketAddr>,
        upstream_delay: Option<Duration>,
        timeout: Duration,
        config: gatehouse_server::ServerConfig,
    ) -> Gw {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let host = format!("127.0.0.1:{}", addr.port());
        let limits = config.listener.clone();
        // One process serves both, as `gatehouse up` does: the gateway shares the control plane's state.
        let (recording, seen) = recording_upstream(upstream_delay).await;
        let up = upstream.unwrap_or(recording);
        let app = shop_app(&host, up);
        let cp = TestApp::with_apps(b, config, vec![app.info()]).await;
        let gw = Gateway::new(
            cp.state.clone(),
            GatewayConfig { apps: vec![app], upstream_timeout: timeout, public_rate_limit: None },
        );
        let gate = gatehouse_server::listener::ConnectionGate::new(limits);
        tokio::spawn(gatehouse_server::listener::serve(
            gw.router(),
            l,
            gate,
            Duration::from_secs(1),
            std::future::pending(),
        ));
        Gw { cp, addr, seen, host }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let mut rb = self.cp.client.get(self.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let h = r.headers().clone();
        (status, h, r.text().await.unwrap())
    }

    pub async fn client_post(&self, path: &str, bearer: &str) -> (u16, HeaderMap, String) {
        let r = self.cp.client.post(self.url(path)).bearer_auth(bearer).send().await.unwrap();
        let status = r.status().as_u16();
        let h = r.headers().clone();
        (status, h, r.text().await.unwrap())
    }

    pub fn last_seen(&self) -> (String, String, HeaderMap) {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw a request")
    }

    pub fn seen_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

story!(private_by_default_public_routes_and_keys);
async fn private_by_default_public_routes_and_keys(b: Backend) {
    let gw = Gw::start(b, None, Duration::from_secs(5)).await;
    let (_, key) = gw.cp.cli_key(NewKey { app: Some("shop".into()), ..sk(Environment::Live) }).await;

    let (s, h, body) = gw.get("/", &[]).await;
    assert_eq!((s, json(&body)["error"]["code"].as_str()), (401, Some("missing_credentials")));
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(gw.seen_count(), 0, "nothing reached the upstream");

    let browser = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let (s, h, _) = gw.get("/account?tab=1", &browser).await;
    assert_eq!(s, 302);
    let loc = h["location"].to_str().unwrap();
    assert!(loc.starts_with(&format!("http://{}/login?return_to=", gw.cp.addr)), "{loc}");
    assert!(
        loc.contains(&format!("return_to=http%3A//{}/account%3Ftab%3D1&", gw.host.replace(':', "%3A"))),
        "the original URL rides along: {loc}"
    );
    assert_eq!(gw.get("/", &[("accept", "*/*")]).await.0, 401, "*/* alone is not a browser");

    let (s, _, body) = gw.get("/ping", &[]).await;
    assert_eq!((s, body.as_str()), (200, "pong"));
    let (s, _, body) = gw.get("/ping", &[("x-space-app-key", "gth_sk_live_garbage")]).await;
    assert_eq!((s, body.as_str()), (200, "pong"), "a bad key on a public route is ignored");

    let (s, _, _) = gw.get("/", &[("x-space-app-key", &key)]).await;
    assert_eq!(s, 200);
    let (_, _, seen) = gw.last_seen();
    assert_eq!(seen["x-gatehouse-auth"], "api_key");
    assert!(seen.get("x-space-app-key").is_none(), "the key header is removed");
    let bearer = format!("Bearer {key}");
    let (s, _, _) = gw.get("/api/things", &[("authorization", &bearer)]).await;
    assert_eq!(s, 200);
    let (_, pq, seen) = gw.last_seen();
    assert_eq!(pq, "/things", "the mount prefix is stripped");
    assert!(seen.get("authorization").is_none(), "our bearer credential is removed");
    let (s, _, body) = gw.get("/nokeys/x", &[("x-space-app-key", &key)]).await;
    assert_eq!(
        (s, json(&body)["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "keys only where presets.api_keys is on"
    );
    assert!(json(&body)["error"]["message"].as_str().unwrap().contains("presets.api_keys"));

    // A presented key judges alone: an invalid one is a 401 even for a browser with a cookie.
    let (s, h, _) =
        gw.get("/", &[("x-space-app-key", "nope"), ("accept", "text/html"), ("cookie", "gatehouse_session=x")]).await;
    assert_eq!(s, 401, "never a redirect, never the cookie");
    assert!(h.get("location").is_none());
    assert!(h.contains_key("www-authenticate"), "the browser's 401 is a real challenge too");
    let (s, _, body) = gw.get("/", &[("x-space-app-key", "nope"), ("cookie", "gatehouse_session=x")]).await;
    assert_eq!((s, json(&body)["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let (s, _, body) = gw.get("/", &[("x-space-app-key", &key), ("authorization", &bearer)]).await;
    assert_eq!((s, json(&body)["error"]["code"].as_str()), (400, Some("multiple_credentials")));

    let (_, _, metrics) = gw.cp.call("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    for line in [
        r#"gatehouse_gateway_requests_total{app="shop",decision="public",status="200"} 2"#,
        r#"gatehouse_gateway_requests_total{app="shop",decision="redirect",status="302"} 1"#,
        r#"gatehouse_gateway_requests_total{app="shop",decision="invalid",status="400"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
}

story!(keys_are_checked_for_environment_app_ip_and_route_scope);
async fn keys_are_checked_for_environment_app_ip_and_route_scope(b: Backend) {
    let gw = Gw::start(b, None, Duration::from_secs(5)).await;
    let code = |r: (u16, HeaderMap, String)| (r.0, json(&r.2)["error"]["code"].as_str().unwrap_or("").to_owned());
    let (_, test_key) = gw.cp.cli_key(sk(Environment::Test)).await;
    assert_eq!(code(gw.get("/", &[("x-space-app-key", &test_key)]).await), (403, "environment_mismatch".into()));
    let (_, blog) = gw.cp.cli_key(NewKey { app: Some("blog".into()), ..sk(Environment::Live) }).await;
    assert_eq!(code(gw.get("/", &[("x-space-app-key", &blog)]).await), (403, "app_not_allowed".into()));
    let (_, far) = gw.cp.cli_key(NewKey { ip_allowlist: vec!["192.0.2.0/24".into()], ..sk(Environment::Live) }).await;
    assert_eq!(code(gw.get("/", &[("x-space-app-key", &far)]).await), (403, "ip_not_allowed".into()));
    let (_, reader) = gw.cp.cli_key(rk(Environment::Live, &["orders:read"])).await;
    assert_eq!(gw.get("/orders/7", &[("x-space-app-key", &reader)]).await.0, 200, "declared scope held");
    let post = gw.cp.client.post(gw.url("/orders/7")).header("x-space-app-key", &reader).send().await.unwrap();
    assert_eq!(post.status(), 403);
    let body: Value = post.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("orders:write"));
    assert_eq!(
        code(gw.get("/", &[("x-space-app-key", &reader)]).await),
        (403, "insufficient_scope".into()),
        "no declared scope: restricted keys refused"
    );
}

story!(upstream_sees_identity_not_spoofs_and_a_verifiable_assertion);
async fn upstream_sees_identity_not_spoofs_and_a_verifiable_assertion(b: Backend) {
    let gw = Gw::start(b, None, Duration::from_secs(5)).await;
    let (rec, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let spoofs = [
        ("x-space-app-key", key.as_str()),
        ("X-Gatehouse-User", "usr_admin"),
        ("x_gatehouse_email", "boss@example.com"),
        ("X-Gatehouse-Auth", "session"),
        ("X-Original-URL", "/ping"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("cookie", "theme=dark; gatehouse_session=stolen"),
    ];
    assert_eq!(gw.get("/", &spoofs).await.0, 200);
    let (_, _, h) = gw.last_seen();
    assert_eq!(h["x-gatehouse-auth"], "api_key");
    assert_eq!(h["x-gatehouse-key-id"], rec.id.as_str());
    assert_eq!(h["x-gatehouse-scopes"], "*");
    assert_eq!(h["x-gatehouse-environment"], "live");
    for gone in
        ["x-gatehouse-user", "x_gatehouse_email", "x-gatehouse-email", "x-original-url", "x-http-method-override"]
    {
        assert!(h.get(gone).is_none(), "{gone} must not reach the upstream");
    }
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "client-sent X-Forwarded-For is not trusted");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], gw.host.as_str());
    assert_eq!(h["cookie"], "theme=dark", "our cookie removed, the app's kept");

    // The assertion verifies against the control plane's JWKS and says the same thing.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use ed25519_dalek::Verifier;
    let jwt = h["x-gatehouse-jwt-assertion"].to_str().unwrap();
    let jwks: Value = gw.cp.client.get(gw.cp.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let sig = ed25519_dalek::Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).expect("signature verifies with the JWKS key");
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("EdDSA"), jwks["keys"][0]["kid"].as_str()));
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], "shop");
    assert_eq!(claims["key_id"], rec.id.as_str());
    let now = crate::now().unix_seconds();
    assert!(claims["exp"].as_i64().unwrap() > now && claims["exp"].as_i64().unwrap() <= now + 300);

    // Public requests carry no identity at all.
    gw.get("/ping", &[("X-Gatehouse-User", "usr_admin")]).await;
    let (_, _, h) = gw.last_seen();
    assert_eq!(h["x-gatehouse-auth"], "public");
    assert!(h.get("x-gatehouse-user").is_none() && h.get("x-gatehouse-jwt-assertion").is_none());
}

story!(revoked_key_is_refused_on_the_next_request);
async fn revoked_key_is_refused_on_the_next_request(b: Backend) {
    let gw = Gw::start(b, None, Duration::from_secs(5)).await;
    let (rec, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    assert_eq!(gw.get("/", &[("x-space-app-key", &key)]).await.0, 200);
    let (s, _, _) = gw.cp.call("POST", &format!("/v1/keys/{}/revoke", rec.id), Some(&gw.cp.admin), None).await;
    assert_eq!(s, 200);
    // Revoked through the API of the same process: the very next request is refused.
    let start = std::time::Instant::now();
    loop {
        let (s, _, body) = gw.get("/", &[("x-space-app-key", &key)]).await;
        if s == 401 {
            assert_eq!(json(&body)["error"]["code"], "api_key_revoked");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "revocation not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let gw = Gw::start(Backend::Sqlite, Some(Duration::from_millis(600)), Duration::from_millis(200)).await;
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let (s, _, body) = gw.get("/", &[("x-space-app-key", &key)]).await;
    assert_eq!((s, json(&body)["error"]["code"].as_str()), (504, Some("upstream_timeout")));
    let (s, h, body) = gw.get("/", &[("x-space-app-key", &key), ("accept", "text/html")]).await;
    assert_eq!(s, 504);
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html") && body.contains("504"),
        "browsers get a page"
    );

    // An upstream nobody listens on.
    let cp = TestApp::new(Backend::Sqlite).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let host = format!("127.0.0.1:{}", addr.port());
    let sf = spacefile::parse("Spacefile", SPACEFILE).unwrap();
    let upstreams =
        ["web", "api", "nokeys"].into_iter().map(|m| (m.to_owned(), Upstream::Http(dead.to_string()))).collect();
    let app = GatewayApp {
        name: "shop".into(),
        hosts: vec![host.clone()],
        environment: Environment::Live,
        spacefile: sf,
        upstreams,
    };
    let state = App::build(cp.config.clone(), Arc::new(cp.store.clone()) as Arc<dyn Store>, vec![host]).await.unwrap();
    let gw2 = Gateway::new(
        state.state.clone(),
        GatewayConfig { apps: vec![app], upstream_timeout: Duration::from_secs(2), public_rate_limit: None },
    );
    tokio::spawn(gatehouse_server::serve_router(gw2.router(), l, Duration::from_secs(1), std::future::pending()));
    let r = cp.client.get(format!("http://{addr}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
}

#[tokio::test]
async fn unknown_host_is_404_and_large_bodies_stream() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let r = gw.cp.client.get(gw.url("/ping")).header("host", "other.test").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let big = vec![b'x'; 8 * 1024 * 1024];
    let r = gw.cp.client.post(gw.url("/upload")).header("x-space-app-key", &key).body(big).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "upstream saw /upload (8388608 bytes)");
}

/// The `shop` app of [`SPACEFILE`] on `host`, every micro served by `upstream`.
fn shop_app(host: &str, upstream: SocketAddr) -> GatewayApp {
    let upstreams: HashMap<String, Upstream> =
        ["web", "api", "nokeys"].into_iter().map(|m| (m.to_owned(), Upstream::Http(upstream.to_string()))).collect();
    GatewayApp {
        name: "shop".into(),
        hosts: vec![host.to_owned()],
        environment: Environment::Live,
        spacefile: spacefile::parse("Spacefile", SPACEFILE).unwrap(),
        upstreams,
    }
}

/// A gateway whose every micro is the given upstream address.
async fn gateway_to(cp: &TestApp, upstream: SocketAddr) -> SocketAddr {
    gateway_limited_to(cp, upstream, None).await
}

/// As [`gateway_to`], with a rate limit per client address on public routes.
async fn gateway_limited_to(
    cp: &TestApp,
    upstream: SocketAddr,
    public_rate_limit: Option<gatehouse_core::ratelimit::Quota>,
) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = shop_app(&format!("127.0.0.1:{}", addr.port()), upstream);
    let gw = Gateway::new(
        cp.state.clone(),
        GatewayConfig { apps: vec![app], upstream_timeout: Duration::from_secs(5), public_rate_limit },
    );
    tokio::spawn(gatehouse_server::serve_router(gw.router(), l, Duration::from_secs(1), std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_authenticated_at_the_upgrade_and_then_spliced() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    // A WebSocket echo server as the upstream; it records the identity header of each upgrade.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = l.local_addr().unwrap();
    let auth_seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = auth_seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                // The callback's error type is the handshake's own (a full HTTP response); it never fails here.
                #[allow(clippy::result_large_err)]
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                    let auth = req
                        .headers()
                        .get("x-gatehouse-auth")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(auth);
                    Ok(resp)
                };
                if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() && ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    let cp = TestApp::new(Backend::Sqlite).await;
    let gw = gateway_to(&cp, upstream).await;
    let (_, key) = cp.cli_key(sk(Environment::Live)).await;

    // Without a credential the upgrade is refused before the upstream is asked.
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let refused = tokio_tungstenite::client_async(format!("ws://{gw}/socket"), tcp).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(auth_seen.lock().unwrap().is_empty());

    // With a key: upgraded, and messages flow both ways.
    let mut req = format!("ws://{gw}/socket").into_client_request().unwrap();
    req.headers_mut().insert("x-space-app-key", key.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    assert_eq!(auth_seen.lock().unwrap().as_slice(), ["api_key"]);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = client.get(gw.url("/ping")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "pong");
    let (_, key) = gw.cp.cli_key(sk(Environment::Live)).await;
    let r = client.get(gw.url("/private")).header("x-space-app-key", &key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, h) = gw.last_seen();
    assert_eq!(h["x-gatehouse-auth"], "api_key");
}

#[tokio::test]
async fn public_routes_can_be_limited_per_ip() {
    let cp = TestApp::new(Backend::Sqlite).await;
    let (up, _) = recording_upstream(None).await;
    let quota = gatehouse_core::ratelimit::Quota { limit: 2, window_ms: 60_000 };
    let addr = gateway_limited_to(&cp, up, Some(quota)).await;
    let get = || cp.client.get(format!("http://{addr}/ping")).send();
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let (_, key) = cp.cli_key(sk(Environment::Live)).await;
    let r = cp.client.get(format!("http://{addr}/private")).header("x-space-app-key", key).send().await.unwrap();
    assert_eq!(r.status(), 200, "credentials have their own limits");
}
