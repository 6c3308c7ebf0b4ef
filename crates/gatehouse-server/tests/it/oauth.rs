//! OAuth 2.0 (SPEC §7): the whole flow with the `oauth2` crate as the client, and each hostile case
//! as its own test. The browser part (sign in, consent) goes through the real HTML forms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_server::ServerConfig;
use gatehouse_services::users::Users;
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditStore, PageRequest, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::gateway::Gw;
use crate::story;

pub const EMAIL: &str = "owner@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const CB: &str = "http://127.0.0.1/callback";

pub fn oauth_config(race_window: Duration) -> ServerConfig {
    let mut c = crate::test_config();
    c.oauth.refresh_race_window = race_window;
    c
}

/// A gateway + control plane with an owner and one registered client.
pub struct Env {
    pub gw: Gw,
    pub client_id: String,
    pub secret: String,
}

pub async fn env_with(b: Backend, config: ServerConfig, body: Value) -> Env {
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let users = Users::new(Arc::new(gw.cp.store.clone()) as Arc<dyn Store>, "default".into());
    users.create_owner(EMAIL, PASSWORD, "test").await.unwrap();
    let (s, _, c) = gw.cp.call("POST", "/v1/oauth/clients", Some(&gw.cp.admin), Some(body)).await;
    assert_eq!(s, 200, "{c}");
    Env {
        client_id: c["id"].as_str().unwrap().to_owned(),
        secret: c["client_secret"].as_str().unwrap_or("").to_owned(),
        gw,
    }
}

pub async fn env(b: Backend) -> Env {
    env_with(b, oauth_config(Duration::from_millis(300)), client_body("confidential")).await
}

pub fn client_body(kind: &str) -> Value {
    json!({"name": "Order Tracker", "client_type": kind, "redirect_uris": [CB, "https://tracker.example.com/cb"], "scopes": ["orders:read", "orders:write", "keys:read"]})
}

/// A cookie-keeping browser that does not follow redirects.
pub struct Browser(reqwest::Client);

impl Browser {
    /// The underlying client, sharing this browser's cookies.
    pub fn clone_client(&self) -> reqwest::Client {
        self.0.clone()
    }
    pub fn new() -> Self {
        Self(reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap())
    }
    pub async fn get(&self, url: &str) -> (StatusCode, String, String) {
        let r = self.0.get(url).header("accept", "text/html").send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }
    pub async fn post(&self, url: &str, form: &[(String, String)]) -> (StatusCode, String, String) {
        let r = self.0.post(url).form(form).send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// The hidden inputs of the consent form.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for part in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = part.split_once('"').unwrap();
        let v = rest.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
        out.push((name.to_owned(), unescape(v)));
    }
    out
}

/// Decodes the character references an escaping template writes (named or numeric), as a browser does.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let decoded = match &rest[1..end] {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            n => n.strip_prefix('#').and_then(|d| d.parse().ok()).and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Query parameters of a URL, decoded.
pub fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap().into_iter().collect()
}

/// Signs in (if asked to) and answers the consent screen; returns where the browser is sent.
pub async fn authorize(e: &Env, br: &Browser, authorize_url: &str, allow: bool) -> String {
    authorize_as(e, br, authorize_url, allow, EMAIL, PASSWORD).await.0
}

/// `authorize` as another user; also returns the consent page shown, if one was.
pub async fn authorize_as(
    e: &Env,
    br: &Browser,
    authorize_url: &str,
    allow: bool,
    email: &str,
    password: &str,
) -> (String, String) {
    let (s, loc, body) = br.get(authorize_url).await;
    let (s, loc, body) = if s == 302 && loc.starts_with("/login") {
        let (_, _, form) = br.get(&e.gw.cp.url(&loc)).await;
        let rt = query_of(&loc)["return_to"].clone();
        let fields = [("email", email), ("password", password), ("csrf", &csrf_of(&form)), ("return_to", &rt)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (s, back, _) = br.post(&e.gw.cp.url("/login"), &fields).await;
        assert_eq!(s, 303);
        br.get(&e.gw.cp.url(&back)).await
    } else {
        (s, loc, body)
    };
    if s == 302 {
        return (loc, String::new()); // consent remembered, or an error sent back to the client
    }
    assert_eq!(s, 200, "consent page expected: {body}");
    assert!(body.contains("Order Tracker"), "the consent screen names the client");
    let mut fields = hidden_fields(&body);
    fields.push(("decision".into(), if allow { "allow" } else { "deny" }.into()));
    let (s, loc, posted) = br.post(&e.gw.cp.url("/oauth/authorize"), &fields).await;
    assert_eq!(s, 303, "{posted}");
    (loc, body)
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!("{}{}", gatehouse_services::sessions::new_token().0, "-verifier.~");
    let challenge = gatehouse_services::oauth::s256(&verifier);
    Pkce { verifier, challenge }
}

pub fn authorize_url(e: &Env, redirect: &str, scope: &str, challenge: &str) -> String {
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", e.client_id.as_str()),
        ("redirect_uri", redirect),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    e.gw.cp.url(&format!("/oauth/authorize?{q}"))
}

/// Runs the browser part and returns the code.
pub async fn get_code(e: &Env, br: &Browser, p: &Pkce) -> String {
    let to = authorize(e, br, &authorize_url(e, CB, "orders:read keys:read", &p.challenge), true).await;
    assert!(to.starts_with(CB), "{to}");
    let q = query_of(&to);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], e.gw.cp.url(""), "RFC 9207 iss");
    q["code"].clone()
}

/// POSTs a form to the token endpoint with Basic client authentication.
pub async fn token_call(
    e: &Env,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut rb = e.gw.cp.client.post(e.gw.cp.url("/oauth/token")).form(form);
    if let Some((u, p)) = basic {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.json().await.unwrap_or(Value::Null))
}

pub async fn exchange(e: &Env, code: &str, verifier: &str) -> (StatusCode, Value) {
    let (s, _, v) = token_call(
        e,
        Some((&e.client_id, &e.secret)),
        &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB), ("code_verifier", verifier)],
    )
    .await;
    (s, v)
}

pub async fn refresh(e: &Env, rt: &str) -> (StatusCode, Value) {
    let (s, _, v) =
        token_call(e, Some((&e.client_id, &e.secret)), &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    (s, v)
}

pub async fn introspect(e: &Env, token: &str) -> Value {
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/introspect"))
            .basic_auth(&e.client_id, Some(&e.secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn audit_actions(e: &Env) -> Vec<String> {
    let page =
        e.gw.cp.store.list_audit("default", None, &PageRequest { limit: 100, starting_after: None }).await.unwrap();
    page.items.into_iter().map(|a| a.action).collect()
}

// ---- the whole flow with the oauth2 crate -----------------------------------------------------------

story!(oauth2_crate_completes_the_whole_flow);
async fn oauth2_crate_completes_the_whole_flow(b: Backend) {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, PkceCodeChallenge,
        RedirectUrl, RevocationUrl, Scope, StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
    };
    let e = env(b).await;
    let cp = |p: &str| e.gw.cp.url(p);
    let client = BasicClient::new(ClientId::new(e.client_id.clone()))
        .set_client_secret(ClientSecret::new(e.secret.clone()))
        .set_auth_uri(AuthUrl::new(cp("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(cp("/oauth/token")).unwrap())
        .set_revocation_url(RevocationUrl::new(cp("/oauth/revoke")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(cp("/oauth/introspect")).unwrap())
        .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:8765/callback".into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("orders:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let br = Browser::new();
    let to = authorize(&e, &br, url.as_str(), true).await;
    assert!(to.starts_with("http://127.0.0.1:8765/callback?"), "a loopback redirect on any port: {to}");
    let q = query_of(&to);
    assert_eq!(&q["state"], csrf.secret());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let access = tokens.access_token().secret().clone();
    assert!(access.starts_with("gth_at_"));

    // Through the gateway, on a route whose scope the token holds; refused where it does not.
    let (s, _, body) = e.gw.get("/orders/7", &[("authorization", &format!("Bearer {access}"))]).await;
    assert_eq!(s, 200, "{body}");
    let (_, _, h) = e.gw.last_seen();
    assert_eq!(h["x-gatehouse-auth"], "oauth");
    assert_eq!(h["x-gatehouse-client-id"].to_str().unwrap(), e.client_id);
    assert_eq!(h["x-gatehouse-email"], EMAIL);
    assert!(h.get("authorization").is_none(), "the token does not reach the app");
    let (s, _, body) = e.gw.client_post("/orders/7", &access).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("insufficient_scope") && body.contains("orders:write"), "{body}");

    // Refresh rotates; the old access token keeps working until it expires, the new one works.
    let refreshed = client.exchange_refresh_token(tokens.refresh_token().unwrap()).request_async(&http).await.unwrap();
    assert_ne!(refreshed.refresh_token().unwrap().secret(), tokens.refresh_token().unwrap().secret());
    let new_access = refreshed.access_token().clone();

    let info = client.introspect(&new_access).request_async(&http).await.unwrap();
    assert!(info.active());
    assert_eq!(info.client_id().unwrap().as_str(), e.client_id);
    assert_eq!(info.username(), Some(EMAIL));

    // The crate refuses to send a revocation to a non-https URL, and this test server speaks plain
    // HTTP; it does check that it would (the error names exactly that), then the same request goes by hand.
    let refused = client.revoke_token(StandardRevocableToken::AccessToken(new_access.clone()));
    assert!(matches!(refused, Err(oauth2::ConfigurationError::InsecureUrl("revocation"))));
    let r = http
        .post(cp("/oauth/revoke"))
        .basic_auth(&e.client_id, Some(&e.secret))
        .form(&[("token", new_access.secret().as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info = client.introspect(&new_access).request_async(&http).await.unwrap();
    assert!(!info.active(), "revoked");
    let (s, h, _) = e.gw.get("/orders/7", &[("authorization", &format!("Bearer {}", new_access.secret()))]).await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let actions = audit_actions(&e).await;
    for a in ["oauth.client.created", "oauth.grant.created", "oauth.access_token.revoked"] {
        assert!(actions.contains(&a.to_owned()), "{a} missing from {actions:?}");
    }
}

// ---- hostile cases -------------------------------------------------------------------------------

story!(redirect_uri_variants_get_an_error_page_not_a_redirect);
async fn redirect_uri_variants_get_an_error_page_not_a_redirect(b: Backend) {
    let e = env(b).await;
    let p = pkce();
    let br = Browser::new();
    for bad in [
        "https://tracker.example.com/cb/",
        "https://TRACKER.example.com/cb",
        "https://tracker.example.com/cb?x=1",
        "https://evil@tracker.example.com/cb",
        "https://tracker.example.com:8443/cb",
        "https://tracker.example.com/cb#frag",
        "https://evil.example.com/cb",
        "http://localhost:9000/callback",
    ] {
        let (s, loc, body) = br.get(&authorize_url(&e, bad, "orders:read", &p.challenge)).await;
        assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""), "{bad}");
        assert!(body.contains("redirect_uri"), "{bad}: {body}");
    }
    // An unknown client is an error page too.
    let mut url = authorize_url(&e, CB, "orders:read", &p.challenge);
    url = url.replace(&e.client_id, "client_00000000000000000000000000");
    let (s, loc, _) = br.get(&url).await;
    assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""));
}

story!(pkce_is_mandatory_and_s256_only);
async fn pkce_is_mandatory_and_s256_only(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let base = authorize_url(&e, CB, "orders:read", "x");
    let without: String = base.split('&').filter(|p| !p.starts_with("code_challenge")).collect::<Vec<_>>().join("&");
    let (s, loc, _) = br.get(&without).await;
    assert_eq!(s, 302);
    assert_eq!(query_of(&loc)["error"], "invalid_request", "missing PKCE: {loc}");
    let p = pkce();
    let plain = authorize_url(&e, CB, "orders:read", &p.challenge)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let (_, loc, _) = br.get(&plain).await;
    assert_eq!(query_of(&loc)["error"], "invalid_request", "plain: {loc}");
    assert_eq!(query_of(&loc)["state"], "st-123");
    // Wrong verifier: invalid_grant, and the code is spent.
    let code = get_code(&e, &br, &p).await;
    let (s, v) = exchange(&e, &code, &pkce().verifier).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (s, v) = exchange(&e, &code, &p.verifier).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "a failed attempt spends the code"
    );
    // Missing verifier.
    let code = get_code(&e, &br, &p).await;
    let (s, _, v) = token_call(
        &e,
        Some((&e.client_id, &e.secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB)],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}

story!(code_replay_revokes_what_the_code_issued);
async fn code_replay_revokes_what_the_code_issued(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (s, first) = exchange(&e, &code, &p.verifier).await;
    assert_eq!(s, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&e, access).await["active"], true);
    let (s, v) = exchange(&e, &code, &p.verifier).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(introspect(&e, access).await["active"], false, "the replay revoked the first exchange's tokens");
    let (s, v) = refresh(&e, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(audit_actions(&e).await.contains(&"oauth.grant.revoked".to_owned()));
}

story!(refresh_reuse_revokes_the_whole_grant);
async fn refresh_reuse_revokes_the_whole_grant(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, t1) = exchange(&e, &code, &p.verifier).await;
    let (s, t2) = refresh(&e, t1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    let (s, t3) = refresh(&e, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{t3}");
    // A sleep on purpose (here and in the retry test below): the race window is a span of time after a
    // refresh; only the clock moves a replay out of it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The first token again: its successor was used, so this is theft, not a lost response.
    let (s, v) = refresh(&e, t1["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    for t in [&t1, &t2, &t3] {
        assert_eq!(introspect(&e, t["access_token"].as_str().unwrap()).await["active"], false);
    }
    let (s, _) = refresh(&e, t3["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 400, "the newest refresh token died with the grant");
    assert!(audit_actions(&e).await.contains(&"oauth.refresh_token.reused".to_owned()));
}

story!(a_lost_refresh_response_may_be_retried_once);
async fn a_lost_refresh_response_may_be_retried_once(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, t1) = exchange(&e, &code, &p.verifier).await;
    let r1 = t1["refresh_token"].as_str().unwrap();
    let (s, lost) = refresh(&e, r1).await; // pretend this response never arrived
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, retry) = refresh(&e, r1).await;
    assert_eq!(s, 200, "the retry is accepted: {retry}");
    assert_eq!(
        introspect(&e, lost["access_token"].as_str().unwrap()).await["active"],
        false,
        "the unused pair is revoked"
    );
    let (s, _) = refresh(&e, lost["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 400);
    assert_eq!(introspect(&e, retry["access_token"].as_str().unwrap()).await["active"], true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _) = refresh(&e, r1).await;
    assert_eq!(s, 400, "only once");
    assert_eq!(
        introspect(&e, retry["access_token"].as_str().unwrap()).await["active"],
        false,
        "a second replay is reuse: grant revoked"
    );
}

story!(twenty_concurrent_refreshes_have_exactly_one_winner);
async fn twenty_concurrent_refreshes_have_exactly_one_winner(b: Backend) {
    let e = env_with(b, oauth_config(Duration::from_secs(5)), client_body("confidential")).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, t1) = exchange(&e, &code, &p.verifier).await;
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let e = Arc::new(e);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (e, r1) = (e.clone(), r1.clone());
            tokio::spawn(async move { refresh(&e, &r1).await })
        })
        .collect();
    let mut wins = vec![];
    for t in tasks {
        let (s, v) = t.await.unwrap();
        if s == 200 {
            wins.push(v);
        } else {
            assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        }
    }
    assert_eq!(wins.len(), 1, "exactly one refresh succeeds");
    assert_eq!(
        introspect(&e, wins[0]["access_token"].as_str().unwrap()).await["active"],
        true,
        "and its tokens stay valid"
    );
}

story!(wrong_client_credentials_are_invalid_client_with_a_basic_challenge);
async fn wrong_client_credentials_are_invalid_client_with_a_basic_challenge(b: Backend) {
    let e = env(b).await;
    let form = [("grant_type", "client_credentials"), ("scope", "orders:read")];
    let wrong = format!("{}x", e.secret);
    for basic in [
        Some((e.client_id.as_str(), wrong.as_str())),
        Some(("client_00000000000000000000000000", e.secret.as_str())),
        None,
    ] {
        let (s, h, v) = token_call(&e, basic, &form).await;
        assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{basic:?}");
        assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(h["cache-control"], "no-store");
    }
    let (s, h, v) = token_call(&e, Some((&e.client_id, &e.secret)), &form).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    assert!(v.get("refresh_token").is_none(), "client_credentials gets no refresh token");
    // client_secret_post works too; Basic and post together are refused.
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", &e.client_id), ("client_secret", &e.secret)])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/token"))
            .basic_auth(&e.client_id, Some(&e.secret))
            .form(&[("grant_type", "client_credentials"), ("client_secret", &e.secret)])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
}

story!(a_code_cannot_be_redeemed_by_another_client);
async fn a_code_cannot_be_redeemed_by_another_client(b: Backend) {
    let e = env(b).await;
    let (_, _, other) =
        e.gw.cp.call("POST", "/v1/oauth/clients", Some(&e.gw.cp.admin), Some(client_body("confidential"))).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (s, _, v) = token_call(
        &e,
        Some((other["id"].as_str().unwrap(), other["client_secret"].as_str().unwrap())),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &p.verifier)],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (s, _) = exchange(&e, &code, &p.verifier).await;
    assert_eq!(s, 400, "the attempt spent the code");
}

story!(an_expired_code_is_refused);
async fn an_expired_code_is_refused(b: Backend) {
    let mut cfg = oauth_config(Duration::from_millis(300));
    cfg.oauth.code_ttl = Duration::from_millis(500);
    let e = env_with(b, cfg, client_body("confidential")).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    // A sleep on purpose: the code's lifetime is what is tested.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, v) = exchange(&e, &code, &p.verifier).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

story!(unknown_or_unallowed_scopes_are_invalid_scope);
async fn unknown_or_unallowed_scopes_are_invalid_scope(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    for scope in ["billing:read", "orders:read admin:write", "*", "not a scope"] {
        let to = authorize(&e, &br, &authorize_url(&e, CB, scope, &p.challenge), true).await;
        let q = query_of(&to);
        assert_eq!(q["error"], "invalid_scope", "{scope}: {to}");
        assert_eq!(q["iss"], e.gw.cp.url(""));
    }
    let (s, _, v) = token_call(
        &e,
        Some((&e.client_id, &e.secret)),
        &[("grant_type", "client_credentials"), ("scope", "billing:read")],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
}

story!(consent_is_remembered_and_can_be_withdrawn);
async fn consent_is_remembered_and_can_be_withdrawn(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, t) = exchange(&e, &code, &p.verifier).await;
    // Second time: no consent screen.
    let (s, loc, _) = br.get(&authorize_url(&e, CB, "orders:read", &p.challenge)).await;
    assert_eq!(s, 302);
    assert!(query_of(&loc).contains_key("code"), "{loc}");
    // Denying sends access_denied.
    let e2 = Browser::new();
    let to = authorize(&e, &e2, &authorize_url(&e, CB, "orders:write", &p.challenge), false).await;
    assert_eq!(query_of(&to)["error"], "access_denied");
    // The user sees the app and withdraws it: tokens die, consent is asked again.
    let r = br.0.get(e.gw.cp.url("/v1/me/authorizations")).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["data"][0]["client_id"].as_str().unwrap(), e.client_id, "{list}");
    assert_eq!(list["data"][0]["name"], "Order Tracker");
    let r = br.0.delete(e.gw.cp.url(&format!("/v1/me/authorizations/{}", e.client_id))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(introspect(&e, t["access_token"].as_str().unwrap()).await["active"], false);
    let (s, _, body) = br.get(&authorize_url(&e, CB, "orders:read", &p.challenge)).await;
    assert_eq!(s, 200, "consent is asked again");
    assert!(body.contains("Allow"));
    // Without a session the API refuses.
    let r = e.gw.cp.client.get(e.gw.cp.url("/v1/me/authorizations")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

story!(management_api_accepts_tokens_with_scopes_enforced);
async fn management_api_accepts_tokens_with_scopes_enforced(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await; // orders:read keys:read
    let (_, t) = exchange(&e, &code, &p.verifier).await;
    let at = t["access_token"].as_str().unwrap();
    let (s, _, body) = e.gw.cp.call("GET", "/v1/keys", Some(at), None).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = e.gw.cp.call("POST", "/v1/keys", Some(at), Some(json!({"name": "x"}))).await;
    assert_eq!(s, 403);
    assert_eq!(crate::code(&body), "insufficient_scope");
    assert!(body["error"]["message"].as_str().unwrap().contains("keys:write"));
    let (s, h, body) = e.gw.cp.call("GET", "/v1/keys", Some("gth_at_not-a-real-token"), None).await;
    assert_eq!((s, crate::code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert!(h["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

story!(client_credentials_public_clients_and_metadata);
async fn client_credentials_public_clients_and_metadata(b: Backend) {
    let e = env(b).await;
    let (s, _, public) =
        e.gw.cp.call("POST", "/v1/oauth/clients", Some(&e.gw.cp.admin), Some(client_body("public"))).await;
    assert_eq!(s, 200);
    assert!(public["client_secret"].is_null(), "a public client has no secret");
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", public["id"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/token"))
            .form(&[("grant_type", "password"), ("client_id", public["id"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    let (s, _, m) = e.gw.cp.call("GET", "/.well-known/oauth-authorization-server", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(m["issuer"], e.gw.cp.url(""));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["grant_types_supported"], json!(["authorization_code", "refresh_token", "client_credentials"]));
    // Introspection of garbage is inactive, not an error.
    assert_eq!(introspect(&e, "nonsense").await, json!({"active": false}));
    // A client cannot introspect another client's token.
    let (_, _, other) =
        e.gw.cp.call("POST", "/v1/oauth/clients", Some(&e.gw.cp.admin), Some(client_body("confidential"))).await;
    let (_, _, v) = token_call(
        &e,
        Some((other["id"].as_str().unwrap(), other["client_secret"].as_str().unwrap())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(introspect(&e, v["access_token"].as_str().unwrap()).await, json!({"active": false}));
}

story!(rotated_secrets_overlap_and_disabled_clients_stop);
async fn rotated_secrets_overlap_and_disabled_clients_stop(b: Backend) {
    let e = env(b).await;
    let path = format!("/v1/oauth/clients/{}/rotate_secret", e.client_id);
    let (s, _, rotated) =
        e.gw.cp.call("POST", &path, Some(&e.gw.cp.admin), Some(json!({"grace_period_secs": 60}))).await;
    assert_eq!(s, 200, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap();
    let form = [("grant_type", "client_credentials")];
    for secret in [e.secret.as_str(), new_secret] {
        let (s, _, _) = token_call(&e, Some((&e.client_id, secret)), &form).await;
        assert_eq!(s, 200, "both secrets work during the overlap");
    }
    let (_, _, rotated) =
        e.gw.cp.call("POST", &path, Some(&e.gw.cp.admin), Some(json!({"grace_period_secs": 0}))).await;
    let (s, _, _) = token_call(&e, Some((&e.client_id, new_secret)), &form).await;
    assert_eq!(s, 401, "no overlap: the old secret stops at once");
    let newest = rotated["client_secret"].as_str().unwrap();
    let (_, _, t) = token_call(&e, Some((&e.client_id, newest)), &form).await;
    let (s, _, _) =
        e.gw.cp.call("POST", &format!("/v1/oauth/clients/{}/disable", e.client_id), Some(&e.gw.cp.admin), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = token_call(&e, Some((&e.client_id, newest)), &form).await;
    assert_eq!(s, 401);
    let (s, _, body) = e.gw.cp.call("GET", "/v1/keys", Some(t["access_token"].as_str().unwrap()), None).await;
    assert_eq!(s, 401, "a disabled client's tokens stop working: {body}");
    let actions = audit_actions(&e).await;
    assert!(
        actions.contains(&"oauth.client.secret_rotated".to_owned())
            && actions.contains(&"oauth.client.disabled".to_owned())
    );
}

story!(jwt_access_tokens_verify_with_the_jwks_and_are_revocable);
async fn jwt_access_tokens_verify_with_the_jwks_and_are_revocable(b: Backend) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let mut body = client_body("confidential");
    body["token_format"] = json!("jwt");
    let e = env_with(b, oauth_config(Duration::from_millis(300)), body).await;
    let (_, _, t) = token_call(
        &e,
        Some((&e.client_id, &e.secret)),
        &[("grant_type", "client_credentials"), ("scope", "keys:read")],
    )
    .await;
    let jwt = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["client_id"].as_str().unwrap(), e.client_id);
    assert_eq!(claims["scope"], "keys:read");
    assert_eq!(claims["iss"], e.gw.cp.url(""));
    let (_, _, jwks) = e.gw.cp.call("GET", "/.well-known/jwks.json", None, None).await;
    let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let vk = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    vk.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap(),
    )
    .unwrap();
    let (s, _, _) = e.gw.cp.call("GET", "/v1/keys", Some(jwt), None).await;
    assert_eq!(s, 200);
    let r =
        e.gw.cp
            .client
            .post(e.gw.cp.url("/oauth/revoke"))
            .basic_auth(&e.client_id, Some(&e.secret))
            .form(&[("token", jwt)])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, _) = e.gw.cp.call("GET", "/v1/keys", Some(jwt), None).await;
    assert_eq!(s, 401, "a revoked JWT is refused although its signature is still good");
}

// ---- SPEC §11: the consent form's CSRF token is bound to its session --------------------------------

/// A browser whose cookies can be read back, signed in and shown the consent page: its cookies
/// (name → value), the consent form's fields, and the sign-in page's (pre-login) CSRF token.
async fn signed_in_on_consent(e: &Env, url: &str) -> (HashMap<String, String>, Vec<(String, String)>, String) {
    use reqwest::cookie::CookieStore;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let c = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |u: String| {
        let c = c.clone();
        async move {
            let r = c.get(u).send().await.unwrap();
            let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (r.status(), loc, r.text().await.unwrap())
        }
    };
    let (s, loc, _) = get(url.to_owned()).await;
    assert!(s == 302 && loc.starts_with("/login"), "{s} {loc}");
    let (_, _, form) = get(e.gw.cp.url(&loc)).await;
    let login_csrf = csrf_of(&form);
    let rt = query_of(&loc)["return_to"].clone();
    let fields = [("email", EMAIL), ("password", PASSWORD), ("csrf", login_csrf.as_str()), ("return_to", rt.as_str())];
    let r = c.post(e.gw.cp.url("/login")).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    let (s, _, page) = get(e.gw.cp.url(&back)).await;
    assert_eq!(s, 200, "consent page expected: {page}");
    let header = jar.cookies(&e.gw.cp.url("/").parse().unwrap()).unwrap();
    let cookies = header
        .to_str()
        .unwrap()
        .split("; ")
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
        .collect();
    (cookies, hidden_fields(&page), login_csrf)
}

/// Posts a consent form with exactly these cookies; answers the status and where it sends the browser.
async fn post_consent(
    e: &Env,
    cookies: &HashMap<String, String>,
    fields: &[(String, String)],
    csrf: &str,
) -> (StatusCode, String) {
    let mut form: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    form.push(("csrf".into(), csrf.to_owned()));
    form.push(("decision".into(), "allow".into()));
    let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let r =
        e.gw.cp.client.post(e.gw.cp.url("/oauth/authorize")).header("cookie", cookie).form(&form).send().await.unwrap();
    let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), loc)
}

// Login CSRF on consent: an attacker signs in to their own account, takes the consent form's
// (cookie, token) pair and plants it in the victim's browser, where it would be accepted with the
// victim's session. The token is only good with the session it was shown to.
story!(consent_csrf_pair_from_another_session_is_refused);
async fn consent_csrf_pair_from_another_session_is_refused(b: Backend) {
    let e = env(b).await;
    let p = pkce();
    let url = authorize_url(&e, CB, "orders:read", &p.challenge);
    let (victim, victim_form, victim_login_csrf) = signed_in_on_consent(&e, &url).await;
    let (attacker, attacker_form, _) = signed_in_on_consent(&e, &url).await;
    let token = |form: &[(String, String)]| form.iter().find(|(k, _)| k == "csrf").unwrap().1.clone();
    let (victim_token, attacker_token) = (token(&victim_form), token(&attacker_form));
    assert_ne!(victim["gatehouse_csrf"], attacker["gatehouse_csrf"]);
    // The attacker's cookie and token, with the victim's session.
    let mut planted = victim.clone();
    planted.insert("gatehouse_csrf".into(), attacker["gatehouse_csrf"].clone());
    let (s, loc) = post_consent(&e, &planted, &victim_form, &attacker_token).await;
    assert_eq!((s, loc.as_str()), (StatusCode::FORBIDDEN, ""), "another session's pair is refused");
    // The attacker's token with the victim's own cookie and session.
    let (s, _) = post_consent(&e, &victim, &victim_form, &attacker_token).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another session's token");
    // The victim's own cookie with the pre-login token of the sign-in page: not a consent token.
    let (s, _) = post_consent(&e, &victim, &victim_form, &victim_login_csrf).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a pre-login token");
    // No token at all.
    let (s, _) = post_consent(&e, &victim, &victim_form, "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no token");
    // Each session's own pair is accepted, so the refusals above are about the binding.
    for (cookies, form, t) in [(&victim, &victim_form, &victim_token), (&attacker, &attacker_form, &attacker_token)] {
        let (s, loc) = post_consent(&e, cookies, form, t).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
        assert!(query_of(&loc).contains_key("code"), "{loc}");
    }
}

// ---- SPEC §11: OAuth error descriptions show a pasted credential masked only -----------------------

// A refresh token or client secret pasted into a parameter that the error quotes (a scope, the name
// of a repeated parameter) comes back as its prefix and `…`, never its secret part nor what was glued to it.
story!(oauth_error_descriptions_never_echo_a_pasted_secret_beyond_its_masked_form);
async fn oauth_error_descriptions_never_echo_a_pasted_secret_beyond_its_masked_form(b: Backend) {
    let e = env(b).await;
    let br = Browser::new();
    let p = pkce();
    let code = get_code(&e, &br, &p).await;
    let (_, t) = exchange(&e, &code, &p.verifier).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt.starts_with("gth_rt_") && e.secret.starts_with("gth_cs_"), "{rt}");
    let junk = "hunter2Pa55";
    let secrets = [&rt["gth_rt_".len()..][..8], &e.secret["gth_cs_".len()..][..8], junk];
    let check = |what: &str, text: &str, shown: &str| {
        assert!(text.contains(shown), "{what}: {text}");
        for s in secrets {
            assert!(!text.contains(s), "{what} echoes `{s}`: {text}");
        }
    };
    let basic = Some((e.client_id.as_str(), e.secret.as_str()));
    let rows = [
        (
            "client_credentials scope",
            vec![("grant_type".into(), "client_credentials".into()), ("scope".into(), rt.clone())],
            "invalid_scope",
            "gth_rt_…",
        ),
        (
            "client_credentials scope with junk",
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("scope".into(), format!("orders:read {junk}{}", e.secret)),
            ],
            "invalid_scope",
            "gth_cs_…",
        ),
        (
            "refresh scope",
            vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), rt.clone()),
                ("scope".into(), format!("{}-{junk}", e.secret)),
            ],
            "invalid_scope",
            "gth_cs_…",
        ),
        (
            "repeated parameter name",
            vec![
                ("grant_type".into(), "client_credentials".into()),
                (rt.clone(), "x".into()),
                (rt.clone(), "y".into()),
            ],
            "invalid_request",
            "gth_rt_…",
        ),
        (
            "repeated secret parameter name",
            vec![
                ("grant_type".into(), "client_credentials".into()),
                (format!("{junk}{}", e.secret), "x".into()),
                (format!("{junk}{}", e.secret), "y".into()),
            ],
            "invalid_request",
            "gth_cs_…",
        ),
    ];
    for (what, form, error, shown) in rows {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, _, v) = token_call(&e, basic, &form).await;
        assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{what}: {v}");
        check(what, v["error_description"].as_str().unwrap(), shown);
    }
    // The refresh token was never spent by the refused calls and still works.
    let (s, _) = refresh(&e, &rt).await;
    assert_eq!(s, StatusCode::OK);
    // The authorization endpoint sends the same description back to the client in the redirect.
    let (s, loc, _) = Browser::new().get(&authorize_url(&e, CB, &format!("{junk}{rt}"), &p.challenge)).await;
    assert_eq!(s, 302, "{loc}");
    let q = query_of(&loc);
    assert_eq!(q["error"], "invalid_scope", "{loc}");
    check("authorize redirect", &q["error_description"], "gth_rt_…");
    check("authorize redirect (raw)", &loc, "");
    // A repeated parameter on the authorization page.
    let (s, _, page) =
        Browser::new().get(&format!("{}&{rt}=a&{rt}=b", authorize_url(&e, CB, "orders:read", &p.challenge))).await;
    assert_eq!(s, 400, "{page}");
    check("authorize page", &page, "gth_rt_…");
}

story!(basic_credentials_are_not_truncated_at_a_raw_ampersand);
async fn basic_credentials_are_not_truncated_at_a_raw_ampersand(b: Backend) {
    let e = env(b).await;
    let form = [("grant_type", "client_credentials"), ("scope", "orders:read")];
    // The old decoder cut the value at `&`, so these authenticated as the real secret.
    let tails = [format!("{}&x", e.secret), format!("{}&v=junk", e.secret), format!("{}&", e.secret)];
    for wrong in &tails {
        let (s, _, v) = token_call(&e, Some((&e.client_id, wrong)), &form).await;
        assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{wrong}");
    }
    let id_tail = format!("{}&x", e.client_id);
    let (s, _, v) = token_call(&e, Some((&id_tail, &e.secret)), &form).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // A form-encoded id or secret (RFC 6749 §2.3.1) still decodes to the real one.
    let encoded_id = e.client_id.replace('_', "%5F");
    assert_ne!(encoded_id, e.client_id, "the id has a `_` to encode");
    let encoded_secret: String = e.secret.chars().map(|c| format!("%{:02X}", c as u32)).collect();
    for (u, p) in [(encoded_id.as_str(), e.secret.as_str()), (e.client_id.as_str(), encoded_secret.as_str())] {
        let (s, _, v) = token_call(&e, Some((u, p)), &form).await;
        assert_eq!(s, 200, "{u}:{p} {v}");
    }
}

// ---- scopes as the API guide writes them (SPEC §4.4) ------------------------------------------------

story!(the_guides_plain_scope_tokens_register_and_complete_the_code_flow);
async fn the_guides_plain_scope_tokens_register_and_complete_the_code_flow(b: Backend) {
    let body = json!({"name": "Order Tracker", "client_type": "confidential", "redirect_uris": [CB],
        "scopes": ["read_customers", "write_orders"]});
    let e = env_with(b, oauth_config(Duration::from_millis(300)), body).await;
    let p = pkce();
    // The guide's authorization URL as written: `+` between the scopes.
    let url = e.gw.cp.url(&format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=read_customers+write_orders\
         &state=random_csrf_token&code_challenge={}&code_challenge_method=S256",
        e.client_id,
        percent_encoding::utf8_percent_encode(CB, percent_encoding::NON_ALPHANUMERIC),
        p.challenge
    ));
    let br = Browser::new();
    let (to, consent) = authorize_as(&e, &br, &url, true, EMAIL, PASSWORD).await;
    assert!(consent.contains("read_customers") && consent.contains("write_orders"), "{consent}");
    let q = query_of(&to);
    assert_eq!(q["state"], "random_csrf_token", "{to}");
    let (s, tokens) = exchange(&e, &q["code"], &p.verifier).await;
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(tokens["scope"], "read_customers write_orders");
    let info = introspect(&e, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!((info["active"].as_bool(), info["scope"].as_str()), (Some(true), Some("read_customers write_orders")));

    // A plain token grants only itself: `write_orders` is not `read_orders`, and a scope the client was
    // not registered with is invalid_scope.
    for scope in ["read_orders", "write_customers", "customers:read"] {
        let to = authorize(&e, &br, &authorize_url(&e, CB, scope, &p.challenge), true).await;
        assert_eq!(query_of(&to)["error"], "invalid_scope", "{scope}: {to}");
    }
    // Restricted keys may carry them too; hostile tokens are refused.
    let (s, _, key) =
        e.gw.cp
            .call("POST", "/v1/keys", Some(&e.gw.cp.admin), Some(json!({"kind": "rk", "scopes": ["read_customers"]})))
            .await;
    assert_eq!(s, 200, "{key}");
    assert_eq!(key["scopes"], json!(["read_customers"]));
    for bad in ["read customers", "say\"hi\"", "back\\slash", "caf\u{e9}", ""] {
        let (s, _, err) =
            e.gw.cp
                .call(
                    "POST",
                    "/v1/oauth/clients",
                    Some(&e.gw.cp.admin),
                    Some(json!({"name": "x", "client_type": "confidential", "redirect_uris": [CB], "scopes": [bad]})),
                )
                .await;
        assert_eq!(s, 400, "{bad:?}: {err}");
    }
}
