//! SPEC §11 "authority never grows" against a running server: what a key or an OAuth token creates is
//! never stronger than itself, and a credential of one environment cannot reach the other.

use gatehouse_core::{Environment, RateLimitOverride, Timestamp};
use gatehouse_services::keys::NewKey;
use gatehouse_store::testing::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

use gatehouse_store::AuditStore;

use crate::oauth::{authorize_as, authorize_url, exchange, pkce, query_of, Browser, CB, EMAIL, PASSWORD};
use crate::{code, rk, story, TestApp};

// Keys a restricted key creates: limits it leaves out are inherited, limits it widens are refused.
story!(restricted_key_escape_is_refused);
async fn restricted_key_escape_is_refused(b: Backend) {
    let app = TestApp::new(b).await;
    let parent_expiry = Timestamp::now().plus_millis(30 * 60 * 1000).unix_seconds();
    // The review's key: an allowlist (the test client's address), a 30-minute expiry and a low rate limit.
    let (_, parent) = app
        .cli_key(NewKey {
            ip_allowlist: vec!["127.0.0.0/8".into()],
            expires_at: Some(Timestamp::from_unix_seconds(parent_expiry)),
            rate_limit: Some(RateLimitOverride { limit: 20, window_secs: 60 }),
            ..rk(Environment::Live, &["keys:write", "orders:read"])
        })
        .await;

    // Asking for nothing: the child carries every limit of its parent.
    let (s, _, child) =
        app.call("POST", "/v1/keys", Some(&parent), Some(json!({"kind": "rk", "scopes": ["orders:read"]}))).await;
    assert_eq!(s, 200, "{child}");
    let k = &child;
    assert_eq!(k["ip_allowlist"], json!(["127.0.0.0/8"]), "allowlist inherited: {k}");
    assert_eq!(k["expires_at"], json!(parent_expiry), "expiry inherited: {k}");
    assert_eq!(k["rate_limit"], json!({"limit": 20, "window_secs": 60}), "rate limit inherited: {k}");

    // Narrower is fine.
    let sooner = parent_expiry - 60;
    let (s, _, narrow) = app
        .call("POST", "/v1/keys", Some(&parent), Some(json!({"kind": "rk", "scopes": ["orders:read"], "ip_allowlist": ["127.0.0.1"], "expires_at": sooner, "rate_limit": {"limit": 1, "window_secs": 60}})))
        .await;
    assert_eq!(s, 200, "{narrow}");
    assert_eq!(narrow["ip_allowlist"], json!(["127.0.0.1/32"]));
    assert_eq!(narrow["expires_at"], json!(sooner));

    // Every widening is a 403 permission_error naming what the parent allows, and creates nothing.
    let before = app.key_count().await;
    let far = Timestamp::now().plus_millis(86_400_000).unix_seconds();
    let cases: [(&str, Value, &str, &str); 7] = [
        (
            "no allowlist → any address",
            json!({"kind": "rk", "scopes": ["orders:read"], "ip_allowlist": ["0.0.0.0/0"]}),
            "ip_not_allowed",
            "127.0.0.0/8",
        ),
        (
            "another network",
            json!({"kind": "rk", "scopes": ["orders:read"], "ip_allowlist": ["192.0.2.0/24"]}),
            "ip_not_allowed",
            "127.0.0.0/8",
        ),
        (
            "later expiry",
            json!({"kind": "rk", "scopes": ["orders:read"], "expires_at": far}),
            "insufficient_scope",
            "cannot expire later",
        ),
        (
            "10 M/s",
            json!({"kind": "rk", "scopes": ["orders:read"], "rate_limit": {"limit": 10_000_000, "window_secs": 1}}),
            "insufficient_scope",
            "20 requests per 60 s",
        ),
        (
            "a scope it lacks",
            json!({"kind": "rk", "scopes": ["webhooks:write"]}),
            "insufficient_scope",
            "webhooks:write",
        ),
        ("an sk", json!({"kind": "sk"}), "insufficient_scope", "secret (sk)"),
        (
            "the other environment",
            json!({"kind": "rk", "scopes": ["orders:read"], "environment": "test"}),
            "environment_mismatch",
            "live",
        ),
    ];
    for (what, body, want_code, names) in cases {
        let (s, _, err) = app.call("POST", "/v1/keys", Some(&parent), Some(body)).await;
        assert_eq!(
            (s, code(&err), err["error"]["type"].as_str()),
            (StatusCode::FORBIDDEN, want_code, Some("permission_error")),
            "{what}: {err}"
        );
        assert!(err["error"]["message"].as_str().unwrap().contains(names), "{what}: {err}");
    }
    assert_eq!(app.key_count().await, before, "no refused request created a key");
}

// An `rk` holding `*` is still restricted: it never mints an `sk`, nor rolls one.
story!(restricted_wildcard_key_cannot_mint_or_roll_a_secret_key);
async fn restricted_wildcard_key_cannot_mint_or_roll_a_secret_key(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, star) = app.cli_key(rk(Environment::Live, &["*"])).await;
    let (s, _, err) = app.call("POST", "/v1/keys", Some(&star), Some(json!({"kind": "sk"}))).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
    let (s, _, ok) = app.call("POST", "/v1/keys", Some(&star), Some(json!({"kind": "rk", "scopes": ["*"]}))).await;
    assert_eq!(s, 200, "an rk with * may mint an rk with *: {ok}");
    // Rolling an sk gives a fresh sk secret: the same as minting one.
    let (sk_rec, _) = app.cli_key(crate::sk(Environment::Live)).await;
    let (s, _, err) = app.call("POST", &format!("/v1/keys/{}/roll", sk_rec.id), Some(&star), None).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
}

// Rolling copies the old key's settings, so a limited credential cannot roll a key with fewer limits.
story!(roll_cannot_launder_a_stronger_key);
async fn roll_cannot_launder_a_stronger_key(b: Backend) {
    let app = TestApp::new(b).await;
    let (permanent, _) = app.cli_key(rk(Environment::Live, &["orders:read"])).await;
    let soon = Timestamp::now().plus_millis(30 * 60 * 1000);
    let (_, limited) =
        app.cli_key(NewKey { expires_at: Some(soon), ..rk(Environment::Live, &["keys:write", "orders:read"]) }).await;
    let (s, _, err) = app.call("POST", &format!("/v1/keys/{}/roll", permanent.id), Some(&limited), None).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
    // A key within its authority rolls as before.
    let (s, _, inside) =
        app.call("POST", "/v1/keys", Some(&limited), Some(json!({"kind": "rk", "scopes": ["orders:read"]}))).await;
    assert_eq!(s, 200);
    let id = inside["id"].as_str().unwrap();
    let (s, _, rolled) = app.call("POST", &format!("/v1/keys/{id}/roll"), Some(&limited), None).await;
    assert_eq!(s, 200, "{rolled}");
    assert_eq!(rolled["new_key"]["expires_at"], json!(soon.unix_seconds()));
}

// A key held to the deployment's default rate limit cannot hand out a faster one.
story!(default_rate_limit_is_a_ceiling_for_children);
async fn default_rate_limit_is_a_ceiling_for_children(b: Backend) {
    let app = TestApp::new(b).await; // default: 10 000 per second
    let (s, _, err) = app
        .call(
            "POST",
            "/v1/keys",
            Some(&app.admin),
            Some(json!({"rate_limit": {"limit": 10_000_000, "window_secs": 1}})),
        )
        .await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
    let (s, _, ok) = app
        .call("POST", "/v1/keys", Some(&app.admin), Some(json!({"rate_limit": {"limit": 5, "window_secs": 1}})))
        .await;
    assert_eq!(s, 200, "{ok}");
    let (s, _, ok) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({}))).await;
    assert_eq!(
        (s, &ok["rate_limit"]),
        (StatusCode::OK, &Value::Null),
        "an sk at the default mints keys at the default"
    );
}

/// A client_credentials token for `client_id`/`secret` with the given scopes.
pub async fn cc_token(app: &TestApp, client_id: &str, secret: &str, scope: &str) -> Value {
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Registers a confidential client with `key`; returns (id, secret) or the refusal.
pub async fn register(app: &TestApp, key: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"name": "Tool", "client_type": "confidential", "redirect_uris": [], "scopes": ["keys:read", "keys:write", "audit:read"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, _, c) = app.call("POST", "/v1/oauth/clients", Some(key), Some(body)).await;
    (s, c)
}

// A 1-hour OAuth token mints keys that end with it, never permanent ones.
story!(oauth_token_cannot_mint_a_permanent_key);
async fn oauth_token_cannot_mint_a_permanent_key(b: Backend) {
    let app = TestApp::new(b).await;
    let (s, c) = register(&app, &app.admin, json!({})).await;
    assert_eq!(s, 200, "{c}");
    let t = cc_token(&app, c["id"].as_str().unwrap(), c["client_secret"].as_str().unwrap(), "keys:write").await;
    let at = t["access_token"].as_str().unwrap();
    let token_exp = Timestamp::now().unix_seconds() + t["expires_in"].as_i64().unwrap();
    let (s, _, key) =
        app.call("POST", "/v1/keys", Some(at), Some(json!({"kind": "rk", "scopes": ["keys:read"]}))).await;
    assert_eq!(s, 200, "{key}");
    let exp = key["expires_at"].as_i64().expect("the key expires");
    assert!((token_exp - 5..=token_exp + 5).contains(&exp), "the key ends with the token: {exp} vs {token_exp}");
    let (s, _, err) = app
        .call(
            "POST",
            "/v1/keys",
            Some(at),
            Some(json!({"kind": "rk", "scopes": ["keys:read"], "expires_at": token_exp + 86_400})),
        )
        .await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
    // The token is restricted: it never mints an sk.
    let (s, _, err) = app.call("POST", "/v1/keys", Some(at), Some(json!({"kind": "sk"}))).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
}

// The review's attack: a test key registers a client with management scopes and uses its token in live.
story!(test_key_cannot_reach_live_through_an_oauth_client);
async fn test_key_cannot_reach_live_through_an_oauth_client(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let (live_rec, _) = app.cli_key(rk(Environment::Live, &["orders:read"])).await;

    let (s, err) = register(&app, &test_sk, json!({"environment": "live"})).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "environment_mismatch"), "{err}");
    let (s, c) = register(&app, &test_sk, json!({})).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["environment"], "test", "the client belongs to the registering key's environment");
    let t = cc_token(
        &app,
        c["id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
        "keys:read keys:write audit:read",
    )
    .await;
    let at = t["access_token"].as_str().unwrap();

    // Listing: only test keys; a live key by id looks absent.
    let (s, _, list) = app.call("GET", "/v1/keys?limit=100", Some(at), None).await;
    assert_eq!(s, 200, "{list}");
    let items = list["data"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|k| k["environment"] == "test"), "{list}");
    let (s, _, _) = app.call("GET", &format!("/v1/keys/{}", live_rec.id), Some(at), None).await;
    assert_eq!(s, 404);
    // Creating: in test only.
    let (s, _, k) = app.call("POST", "/v1/keys", Some(at), Some(json!({"kind": "rk", "scopes": ["keys:read"]}))).await;
    assert_eq!((s, &k["environment"]), (StatusCode::OK, &json!("test")), "{k}");
    let (s, _, err) = app
        .call("POST", "/v1/keys", Some(at), Some(json!({"kind": "rk", "scopes": ["keys:read"], "environment": "live"})))
        .await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "environment_mismatch"), "{err}");
    // Revoking and rolling a live key: absent.
    for path in [format!("/v1/keys/{}/revoke", live_rec.id), format!("/v1/keys/{}/roll", live_rec.id)] {
        let (s, _, _) = app.call("POST", &path, Some(at), None).await;
        assert_eq!(s, 404, "{path}");
    }
    // The audit log: nothing of live.
    let (s, _, log) = app.call("GET", "/v1/audit?limit=100", Some(at), None).await;
    assert_eq!(s, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["environment"] == "test"), "only test entries: {log}");
    assert!(!log.to_string().contains(&live_rec.id), "the live key's creation is not visible");
}

// Clients of one environment are invisible to keys of the other, and so are their secrets.
story!(clients_of_the_other_environment_look_absent);
async fn clients_of_the_other_environment_look_absent(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let (s, live) = register(&app, &app.admin, json!({})).await;
    assert_eq!((s, &live["environment"]), (StatusCode::OK, &json!("live")));
    let id = live["id"].as_str().unwrap();
    let (s, _, list) = app.call("GET", "/v1/oauth/clients", Some(&test_sk), None).await;
    assert_eq!(s, 200);
    assert!(!list.to_string().contains(id), "{list}");
    for (m, path) in [
        ("GET", format!("/v1/oauth/clients/{id}")),
        ("POST", format!("/v1/oauth/clients/{id}/rotate_secret")),
        ("POST", format!("/v1/oauth/clients/{id}/disable")),
    ] {
        let (s, _, body) = app.call(m, &path, Some(&test_sk), None).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    // The live client still works: nothing was rotated or disabled.
    cc_token(&app, id, live["client_secret"].as_str().unwrap(), "keys:read").await;
    let (s, _, got) = app.call("GET", &format!("/v1/oauth/clients/{id}"), Some(&app.admin), None).await;
    assert_eq!((s, &got["disabled_at"]), (StatusCode::OK, &Value::Null));
}

// Introspection with a key sees only tokens of the key's environment.
story!(test_key_cannot_introspect_live_tokens);
async fn test_key_cannot_introspect_live_tokens(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let (_, live) = register(&app, &app.admin, json!({})).await;
    let t = cc_token(&app, live["id"].as_str().unwrap(), live["client_secret"].as_str().unwrap(), "keys:read").await;
    let at = t["access_token"].as_str().unwrap();
    let introspect = |key: String| {
        let (app, at) = (&app, at.to_owned());
        async move {
            let r = app
                .client
                .post(app.url("/oauth/introspect"))
                .bearer_auth(key)
                .form(&[("token", at.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        introspect(test_sk.clone()).await,
        json!({"active": false}),
        "a test key learns nothing about a live token"
    );
    assert_eq!(introspect(app.admin.clone()).await["active"], true, "a live key does");
    // Attack: a live management key in a first `Authorization` header with a second one behind it.
    // A repeated header is never a credential (SPEC §11), here as at every other door.
    let r = app
        .client
        .post(app.url("/oauth/introspect"))
        .header("authorization", format!("Bearer {}", app.admin))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a repeated Authorization header is refused");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body.get("active").is_none(), "nothing about the token: {body}");
}

// `/v1/keys/verify` answers environment_mismatch for a key of the other environment whatever its state.
story!(verify_decides_environment_before_revoked_or_expired);
async fn verify_decides_environment_before_revoked_or_expired(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let (revoked, revoked_secret) = app.cli_key(crate::sk(Environment::Live)).await;
    let (s, _, _) = app.call("POST", &format!("/v1/keys/{}/revoke", revoked.id), Some(&app.admin), None).await;
    assert_eq!(s, 200);
    let (_, expiring) = app
        .cli_key(NewKey { expires_at: Some(Timestamp::now().plus_millis(300)), ..crate::sk(Environment::Live) })
        .await;
    // A sleep on purpose: the key's expiry is a point in time; nothing but the clock makes it expired.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let unknown =
        gatehouse_services::ids::new_key(&app.config.namespace, gatehouse_core::KeyKind::Secret, Environment::Live);
    for (what, key) in [
        ("revoked", revoked_secret.as_str()),
        ("expired", expiring.as_str()),
        ("unknown", unknown.expose()),
        ("valid", app.admin.as_str()),
    ] {
        let (s, _, v) = app.call("POST", "/v1/keys/verify", Some(&test_sk), Some(json!({"key": key}))).await;
        assert_eq!(
            (s, v["valid"].as_bool(), v["code"].as_str()),
            (StatusCode::OK, Some(false), Some("environment_mismatch")),
            "{what}: {v}"
        );
        assert!(v.get("key").is_none_or(Value::is_null), "{what}: nothing about the key: {v}");
    }
    // In its own environment the usual order holds.
    let (_, _, v) = app.call("POST", "/v1/keys/verify", Some(&app.admin), Some(json!({"key": revoked_secret}))).await;
    assert_eq!(v["code"], "api_key_revoked");
}

/// A control plane and a gateway serving `shop` (live), `blog` (live) and `lab` (test) on one port,
/// told apart by host.
struct ThreeApps {
    cp: TestApp,
    addr: std::net::SocketAddr,
    seen: crate::gateway::Seen,
}

impl ThreeApps {
    async fn start(b: Backend) -> Self {
        use gatehouse_server::gateway::{Gateway, GatewayApp, GatewayConfig, Upstream};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let host = |name: &str| format!("{name}.test:{}", addr.port());
        let cp = TestApp::with_app_hosts(b, crate::test_config(), ["shop", "blog", "lab"].map(host).to_vec()).await;
        let (up, seen) = crate::gateway::recording_upstream(None).await;
        let sf = gatehouse_core::spacefile::parse("Spacefile", crate::gateway::SPACEFILE).unwrap();
        let apps = [("shop", Environment::Live), ("blog", Environment::Live), ("lab", Environment::Test)].map(
            |(name, environment)| GatewayApp {
                name: name.into(),
                hosts: vec![host(name)],
                environment,
                spacefile: sf.clone(),
                upstreams: ["web", "api", "nokeys"]
                    .into_iter()
                    .map(|m| (m.to_owned(), Upstream::Http(up.to_string())))
                    .collect(),
            },
        );
        let gw = Gateway::new(
            cp.state.clone(),
            GatewayConfig {
                apps: apps.to_vec(),
                upstream_timeout: std::time::Duration::from_secs(5),
                public_rate_limit: None,
            },
        );
        tokio::spawn(gatehouse_server::serve_router(
            gw.router(),
            l,
            std::time::Duration::from_secs(1),
            std::future::pending(),
        ));
        ThreeApps { cp, addr, seen }
    }

    /// `GET /orders/1` on `app` with a bearer token: status and error code (or the environment the upstream was told).
    async fn get(&self, app: &str, token: &str) -> (u16, String) {
        let r = self
            .cp
            .client
            .get(format!("http://{}/orders/1", self.addr))
            .header("host", format!("{app}.test:{}", self.addr.port()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if s == 200 {
            let h = self.seen.lock().unwrap().last().cloned().unwrap().2;
            (s, h["x-gatehouse-environment"].to_str().unwrap().to_owned())
        } else {
            (s, code(&body).to_owned())
        }
    }
}

// A token is bound to its client's environment and app at the gateway, like an API key.
story!(oauth_token_is_bound_to_its_environment_and_app_at_the_gateway);
async fn oauth_token_is_bound_to_its_environment_and_app_at_the_gateway(b: Backend) {
    let g = ThreeApps::start(b).await;
    let app = &g.cp;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let scopes = json!({"scopes": ["orders:read", "keys:read"]});
    let (_, live) = register(app, &app.admin, scopes.clone()).await;
    let (_, test) = register(app, &test_sk, scopes.clone()).await;
    let (s, shop_only) =
        register(app, &app.admin, json!({"scopes": ["orders:read", "keys:read"], "app": "shop"})).await;
    assert_eq!((s, &shop_only["app"]), (StatusCode::OK, &json!("shop")), "{shop_only}");
    let token = |c: &Value| {
        let c = c.clone();
        async move {
            cc_token(app, c["id"].as_str().unwrap(), c["client_secret"].as_str().unwrap(), "orders:read keys:read")
                .await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (live_t, test_t, shop_t) = (token(&live).await, token(&test).await, token(&shop_only).await);
    let rows: [(&str, &String, (u16, &str)); 8] = [
        ("live token, live app", &live_t, (200, "live")),
        ("live token, other live app", &live_t, (200, "live")),
        ("live token, test app", &live_t, (403, "environment_mismatch")),
        ("test token, test app", &test_t, (200, "test")),
        ("test token, live app", &test_t, (403, "environment_mismatch")),
        ("shop token, shop", &shop_t, (200, "live")),
        ("shop token, blog", &shop_t, (403, "app_not_allowed")),
        ("shop token, test app", &shop_t, (403, "environment_mismatch")),
    ];
    let apps = ["shop", "blog", "lab", "lab", "shop", "shop", "blog", "lab"];
    for ((what, t, (want_s, want)), target) in rows.into_iter().zip(apps) {
        let (s, got) = g.get(target, t).await;
        assert_eq!((s, got.as_str()), (want_s, want), "{what}");
    }
    // An app-restricted token is outside its app on the management API, as an app-restricted key is.
    let (s, _, body) = app.call("GET", "/v1/keys", Some(&shop_t), None).await;
    assert_eq!((s, code(&body)), (StatusCode::FORBIDDEN, "app_not_allowed"), "{body}");
    let (s, _, _) = app.call("GET", "/v1/keys", Some(&live_t), None).await;
    assert_eq!(s, 200);
}

// ---- people delegate only what their role allows (SPEC §12) ------------------------------------------

async fn people_env(b: Backend) -> crate::oauth::Env {
    let mut body = crate::oauth::client_body("confidential");
    body["scopes"] = json!(["orders:read", "keys:read", "keys:write"]);
    let e = crate::oauth::env_with(b, crate::oauth::oauth_config(std::time::Duration::from_millis(300)), body).await;
    let users = gatehouse_services::users::Users::new(
        std::sync::Arc::new(e.gw.cp.store.clone()) as std::sync::Arc<dyn gatehouse_store::Store>,
        "default".into(),
    );
    users.create("member@example.com", PASSWORD, "member", "test").await.unwrap();
    e
}

// The review's attack: a member consents to a client holding keys:write and mints keys with the token.
story!(member_cannot_delegate_management_scopes);
async fn member_cannot_delegate_management_scopes(b: Backend) {
    let e = people_env(b).await;
    let p = pkce();
    let br = Browser::new();
    let (to, consent) = authorize_as(
        &e,
        &br,
        &authorize_url(&e, CB, "orders:read keys:write", &p.challenge),
        true,
        "member@example.com",
        PASSWORD,
    )
    .await;
    assert!(
        consent.contains("orders:read") && !consent.contains("keys:write"),
        "the consent screen offers only what the role allows: {consent}"
    );
    let q = query_of(&to);
    let (s, t) = exchange(&e, &q["code"], &p.verifier).await;
    assert_eq!((s, t["scope"].as_str()), (StatusCode::OK, Some("orders:read")), "{t}");
    let at = t["access_token"].as_str().unwrap();
    let (s, _, err) =
        e.gw.cp.call("POST", "/v1/keys", Some(at), Some(json!({"kind": "rk", "scopes": ["orders:read"]}))).await;
    assert_eq!((s, code(&err)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{err}");
    // Asking only for management scopes: nothing to delegate.
    let br = Browser::new();
    let (to, _) = authorize_as(
        &e,
        &br,
        &authorize_url(&e, CB, "keys:write keys:read", &p.challenge),
        true,
        "member@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(query_of(&to)["error"], "invalid_scope", "{to}");
    // A tampered consent form (the scope field edited to add keys:write) is narrowed again.
    let (s, _, page) = br.get(&format!("{}&prompt=consent", authorize_url(&e, CB, "orders:read", &p.challenge))).await;
    assert_eq!(s, 200, "{page}");
    let mut fields: Vec<(String, String)> = crate::oauth::hidden_fields(&page)
        .into_iter()
        .map(|(k, v)| if k == "scope" { (k, "orders:read keys:write".to_owned()) } else { (k, v) })
        .collect();
    fields.push(("decision".into(), "allow".into()));
    let (s, to, _) = br.post(&e.gw.cp.url("/oauth/authorize"), &fields).await;
    assert_eq!(s, 303);
    let (s, t) = exchange(&e, &query_of(&to)["code"], &p.verifier).await;
    assert_eq!((s, t["scope"].as_str()), (StatusCode::OK, Some("orders:read")), "{t}");
}

// An owner may delegate keys:write; what that token mints ends with the token.
story!(owner_token_mints_keys_that_end_with_the_token);
async fn owner_token_mints_keys_that_end_with_the_token(b: Backend) {
    let e = people_env(b).await;
    let p = pkce();
    let br = Browser::new();
    let (to, _) =
        authorize_as(&e, &br, &authorize_url(&e, CB, "keys:write", &p.challenge), true, EMAIL, PASSWORD).await;
    let (s, t) = exchange(&e, &query_of(&to)["code"], &p.verifier).await;
    assert_eq!((s, t["scope"].as_str()), (StatusCode::OK, Some("keys:write")), "{t}");
    let at = t["access_token"].as_str().unwrap();
    let token_exp = Timestamp::now().unix_seconds() + t["expires_in"].as_i64().unwrap();
    let (s, _, k) =
        e.gw.cp.call("POST", "/v1/keys", Some(at), Some(json!({"kind": "rk", "scopes": ["keys:read"]}))).await;
    assert_eq!(s, 200, "{k}");
    let exp = k["expires_at"].as_i64().expect("the key expires");
    assert!(exp <= token_exp + 5, "a key minted by a 1 h token ends with it: {exp} vs {token_exp}");
}

// A scope removed from a client is gone from its existing grants at the next refresh.
story!(removed_client_scope_is_not_refreshed_forever);
async fn removed_client_scope_is_not_refreshed_forever(b: Backend) {
    use gatehouse_services::oauth::{ConfiguredClient, NewClient};
    let e = crate::oauth::env(b).await; // client scopes: orders:read orders:write keys:read
    let br = Browser::new();
    let p = pkce();
    let the_code = crate::oauth::get_code(&e, &br, &p).await; // orders:read keys:read
    let (_, t1) = exchange(&e, &the_code, &p.verifier).await;
    assert_eq!(t1["scope"], "orders:read keys:read");
    let reconfigure = |scopes: &[&str]| ConfiguredClient {
        id: e.client_id.clone(),
        client: NewClient {
            name: "Order Tracker".into(),
            confidential: true,
            redirect_uris: vec![CB.into(), "https://tracker.example.com/cb".into()],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        secret: Some(gatehouse_core::SecretString::new(e.secret.clone())),
    };
    assert!(e.gw.cp.state.oauth.sync_configured(&reconfigure(&["orders:read", "orders:write"])).await.unwrap());
    let (s, t2) = crate::oauth::refresh(&e, t1["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, t2["scope"].as_str()), (StatusCode::OK, Some("orders:read")), "{t2}");
    let info = crate::oauth::introspect(&e, t2["access_token"].as_str().unwrap()).await;
    assert_eq!(info["scope"], "orders:read");
    let (s, _, body) = e.gw.cp.call("GET", "/v1/keys", Some(t2["access_token"].as_str().unwrap()), None).await;
    assert_eq!((s, code(&body)), (StatusCode::FORBIDDEN, "insufficient_scope"));
    // The narrowed set sticks: adding the scope back does not revive it in this grant.
    assert!(e
        .gw
        .cp
        .state
        .oauth
        .sync_configured(&reconfigure(&["orders:read", "orders:write", "keys:read"]))
        .await
        .unwrap());
    let (s, t3) = crate::oauth::refresh(&e, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, t3["scope"].as_str()), (StatusCode::OK, Some("orders:read")), "{t3}");
    // With nothing of the grant left (orders:write would still cover orders:read), it cannot refresh.
    assert!(e.gw.cp.state.oauth.sync_configured(&reconfigure(&["keys:read"])).await.unwrap());
    let (s, v) = crate::oauth::refresh(&e, t3["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{v}");
}

// ---- code replay (SPEC §11) --------------------------------------------------------------------------

async fn spend(e: &crate::oauth::Env, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (StatusCode, Value) {
    let (s, _, v) = crate::oauth::token_call(e, basic, form).await;
    (s, v)
}

// A spent code presented by anyone but its own client, authenticated, revokes nothing.
story!(spent_code_from_another_client_does_not_revoke_the_grant);
async fn spent_code_from_another_client_does_not_revoke_the_grant(b: Backend) {
    let e = crate::oauth::env(b).await;
    let admin = e.gw.cp.admin.clone();
    let (_, _, public) =
        e.gw.cp.call("POST", "/v1/oauth/clients", Some(&admin), Some(crate::oauth::client_body("public"))).await;
    let (_, _, other) =
        e.gw.cp.call("POST", "/v1/oauth/clients", Some(&admin), Some(crate::oauth::client_body("confidential"))).await;
    let br = Browser::new();
    let p = pkce();
    let the_code = crate::oauth::get_code(&e, &br, &p).await;
    let (s, t) = exchange(&e, &the_code, &p.verifier).await;
    assert_eq!(s, 200);
    let at = t["access_token"].as_str().unwrap();
    let bogus = pkce().verifier;
    let form = |verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", the_code.clone()),
            ("redirect_uri", CB.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let public_id = public["id"].as_str().unwrap().to_owned();
    // What, the form, and Basic credentials if any.
    type Attempt<'a> = (&'a str, Vec<(&'a str, String)>, Option<(String, String)>);
    let attempts: Vec<Attempt> = vec![
        (
            "a public client with a bogus verifier",
            [form(&bogus), vec![("client_id", public_id.clone())]].concat(),
            None,
        ),
        (
            "a public client with the right verifier",
            [form(&p.verifier), vec![("client_id", public_id.clone())]].concat(),
            None,
        ),
        (
            "another confidential client",
            form(&p.verifier),
            Some((other["id"].as_str().unwrap().to_owned(), other["client_secret"].as_str().unwrap().to_owned())),
        ),
        (
            "the right client id with a wrong secret",
            form(&p.verifier),
            Some((e.client_id.clone(), format!("{}x", e.secret))),
        ),
    ];
    for (what, f, basic) in attempts {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, v) = spend(&e, &f, basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))).await;
        assert!(s == 400 || s == 401, "{what}: {s} {v}");
        assert_eq!(crate::oauth::introspect(&e, at).await["active"], true, "{what}: the victim's grant survives");
    }
    // Its own client, authenticated, replaying: the grant is revoked, as before.
    let (s, _) = exchange(&e, &the_code, &p.verifier).await;
    assert_eq!(s, 400);
    assert_eq!(crate::oauth::introspect(&e, at).await["active"], false);
}

// A public client's replay counts only with the code's PKCE verifier.
story!(public_client_replay_needs_the_verifier);
async fn public_client_replay_needs_the_verifier(b: Backend) {
    let e = crate::oauth::env_with(
        b,
        crate::oauth::oauth_config(std::time::Duration::from_millis(300)),
        crate::oauth::client_body("public"),
    )
    .await;
    let br = Browser::new();
    let p = pkce();
    let the_code = crate::oauth::get_code(&e, &br, &p).await;
    let redeem = |verifier: String| {
        let (e, c) = (&e, the_code.clone());
        async move {
            let f = [
                ("grant_type", "authorization_code"),
                ("code", c.as_str()),
                ("redirect_uri", CB),
                ("code_verifier", verifier.as_str()),
                ("client_id", e.client_id.as_str()),
            ];
            spend(e, &f, None).await
        }
    };
    let (s, t) = redeem(p.verifier.clone()).await;
    assert_eq!(s, 200, "{t}");
    let at = t["access_token"].as_str().unwrap().to_owned();
    let (s, _) = redeem(pkce().verifier).await;
    assert_eq!(s, 400);
    let (s, _, _) = e.gw.cp.call("GET", "/v1/keys", Some(&at), None).await;
    assert_eq!(s, 200, "a replay with a bogus verifier revokes nothing");
    let (s, _) = redeem(p.verifier.clone()).await;
    assert_eq!(s, 400);
    let (s, _, _) = e.gw.cp.call("GET", "/v1/keys", Some(&at), None).await;
    assert_eq!(s, 401, "the replay with the verifier revoked the grant");
}

// A key reads only its own environment's audit entries: none of the other, none of no environment.
story!(key_reads_only_its_environments_audit_entries);
async fn key_reads_only_its_environments_audit_entries(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;
    let users = gatehouse_services::users::Users::new(
        std::sync::Arc::new(app.store.clone()) as std::sync::Arc<dyn gatehouse_store::Store>,
        "default".into(),
    );
    let person = users.create("someone@example.com", "a long enough password", "member", "test").await.unwrap();
    // A live OAuth grant: its entry names the client and the caller's address.
    let (_, live) = register(&app, &app.admin, json!({})).await;
    cc_token(&app, live["id"].as_str().unwrap(), live["client_secret"].as_str().unwrap(), "keys:read").await;
    let (_, test) = register(&app, &test_sk, json!({})).await;
    cc_token(&app, test["id"].as_str().unwrap(), test["client_secret"].as_str().unwrap(), "keys:read").await;

    let read = |key: String| {
        let app = &app;
        async move {
            let (s, _, log) = app.call("GET", "/v1/audit?limit=100", Some(&key), None).await;
            assert_eq!(s, 200, "{log}");
            log["data"].as_array().unwrap().clone()
        }
    };
    let test_log = read(test_sk.clone()).await;
    assert!(test_log.iter().all(|e| e["environment"] == "test"), "{test_log:?}");
    assert!(test_log.iter().any(|e| e["action"] == "oauth.grant.created"), "its own grants are there");
    let text = serde_json::to_string(&test_log).unwrap();
    assert!(
        !text.contains(&person.id) && !text.contains(live["id"].as_str().unwrap()),
        "nothing of users or live clients: {text}"
    );
    let live_log = read(app.admin.clone()).await;
    assert!(
        live_log.iter().all(|e| e["environment"] == "live"),
        "environment-less entries are not for keys: {live_log:?}"
    );
    assert!(live_log.iter().any(|e| e["action"] == "oauth.grant.created" && e["details"]["client_id"] == live["id"]));
    // The owner's view (no environment) still has everything.
    let all = app
        .store
        .list_audit("default", None, &gatehouse_store::PageRequest { limit: 100, starting_after: None })
        .await
        .unwrap();
    assert!(all.items.iter().any(|e| e.action == "user.created" && e.environment.is_none()));
}

// ---- remembered consent is visible exactly while it skips the screen ---------------------------------

// A consent whose grant never came (or was revoked) is listed, withdrawable, and then asked again.
story!(remembered_consent_without_a_grant_is_listed_and_withdrawable);
async fn remembered_consent_without_a_grant_is_listed_and_withdrawable(b: Backend) {
    let e = crate::oauth::env(b).await;
    let br = Browser::new();
    let p = pkce();
    let _never_exchanged = crate::oauth::get_code(&e, &br, &p).await;
    let list = |br: &Browser| {
        let (br, url) = (br.clone_client(), e.gw.cp.url("/v1/me/authorizations"));
        async move { br.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let l = list(&br).await;
    assert_eq!(l["data"][0]["client_id"].as_str(), Some(e.client_id.as_str()), "the remembered consent is listed: {l}");
    assert_eq!(l["data"][0]["active_grants"], false);
    let (s, loc, _) = br.get(&authorize_url(&e, CB, "orders:read", &p.challenge)).await;
    assert_eq!(s, 302, "and it skips the consent screen");
    assert!(query_of(&loc).contains_key("code"));
    // A grant whose refresh token the app revoked: the consent stays, and stays listed.
    let (_, t) = exchange(&e, &query_of(&loc)["code"], &p.verifier).await;
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/revoke"))
            .basic_auth(&e.client_id, Some(&e.secret))
            .form(&[("token", t["refresh_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let l = list(&br).await;
    assert_eq!((l["data"].as_array().unwrap().len(), &l["data"][0]["active_grants"]), (1, &json!(false)), "{l}");
    // Withdrawing forgets it: the next authorization asks again and the list is empty.
    let r =
        br.clone_client().delete(e.gw.cp.url(&format!("/v1/me/authorizations/{}", e.client_id))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(list(&br).await["data"], json!([]));
    let (s, _, body) = br.get(&authorize_url(&e, CB, "orders:read", &p.challenge)).await;
    assert_eq!(s, 200, "consent is asked again");
    assert!(body.contains("Allow"));
}
