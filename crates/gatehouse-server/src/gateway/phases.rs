//! The gateway's request phases, in the order `pipeline` runs them. Each takes what it needs, does
//! one thing, and either gives the next phase its input or answers early (`Err`). The pure ones
//! (`resolve_app`, `normalize_path`, `own_page`, `pick_micro`, `decide`, `authorize`) touch no state.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::Response;
use gatehouse_core::access::{self, AccessDecision, Subject};
use gatehouse_core::credentials::{looks_like_api_key, AppKeyHeader};
use gatehouse_core::gateway::{Authorization, Decision, RequestFacts};
use gatehouse_core::path::NormalizedPath;
use gatehouse_core::spacefile::Micro;
use gatehouse_core::{DenyReason, KeyKind, Namespace, Scope, VerifyContext};

use super::forward::{self, UpstreamError};
use super::identity::Identity;
use super::{is_own_origin, request_authority, Ctx, GatewayApp, GatewayConfig, Upstream};
use crate::credentials::{self, check_rate, RateSubject, TokenTarget};
use crate::error::ApiError;
use crate::web::{self, cookies, CSRF_COOKIE};
use gatehouse_services::oauth::ActiveToken;
use gatehouse_services::sessions::ActiveSession;
use gatehouse_services::verifier::CachedKey;

/// Host → app. One authority only (SPEC §11): two `Host`s, or an absolute-form target or h2
/// `:authority` naming another host than `Host`, would let the upstream see a host we did not choose.
/// No tunnels: CONNECT (HTTP/1.1, or h2 with or without `:protocol`) is never forwarded.
pub(super) fn resolve_app<'a>(config: &'a GatewayConfig, req: &Request) -> Result<(&'a GatewayApp, String), ApiError> {
    let host = request_authority(req).map_err(|message| ApiError::InvalidRequest(message.into()))?;
    if req.method() == Method::CONNECT {
        return Err(ApiError::InvalidRequest(
            "CONNECT is not supported by the gateway; open WebSockets with an HTTP/1.1 upgrade.".into(),
        ));
    }
    match config.app_for(&host) {
        Some(app) => Ok((app, host)),
        None => Err(ApiError::NotFound(format!(
            "No app is served at host `{}`.",
            host.chars().take(100).collect::<String>()
        ))),
    }
}

/// Path safety comes before everything that looks at the path (SPEC §3).
pub(super) fn normalize_path(req: &Request) -> Result<NormalizedPath, ApiError> {
    NormalizedPath::parse(req.uri().path())
        .map_err(|e| ApiError::AmbiguousPath(format!("The request path is ambiguous: {e}.")))
}

/// Whether the path is one of Gatehouse's own pages, served on every app host.
pub(super) fn own_page(path: &NormalizedPath) -> bool {
    path.as_str() == "/__gatehouse" || path.as_str().starts_with("/__gatehouse/")
}

/// Path → micro, and the path relative to the micro's mount.
pub(super) fn pick_micro<'a>(app: &'a GatewayApp, path: &NormalizedPath) -> (&'a Micro, NormalizedPath) {
    app.spacefile.route(path)
}

/// The credentials a request presents, read once from its headers.
#[derive(Debug)]
pub(super) struct Presented<'r> {
    app_key: AppKeyHeader<'r>,
    authorization: Authorization<'r>,
    /// Whether the bearer token is one of our API keys rather than an OAuth token.
    bearer_is_key: bool,
    session_cookies: Vec<&'r str>,
}

impl<'r> Presented<'r> {
    pub(super) fn read(headers: &'r HeaderMap, ns: &Namespace, session_cookie: &'r str) -> Self {
        let authorization = credentials::authorization(headers).for_decision();
        let bearer_is_key = matches!(authorization, Authorization::Bearer(t) if looks_like_api_key(ns, t));
        Presented {
            app_key: credentials::app_key(headers),
            authorization,
            bearer_is_key,
            session_cookies: cookies(headers, session_cookie).collect(),
        }
    }
}

/// SPEC §3 steps 4–6: which credential, if any, judges the request (the pure `decide` of core).
pub(super) fn decide<'r>(
    micro: &Micro,
    method: &'r str,
    rel: &'r NormalizedPath,
    presented: &Presented<'r>,
    browser: bool,
) -> Decision<'r> {
    let facts = RequestFacts {
        method,
        path: rel.as_str(),
        app_key: presented.app_key,
        authorization: presented.authorization,
        has_session_cookie: !presented.session_cookies.is_empty(),
        browser_navigation: browser,
        bearer_is_api_key: presented.bearer_is_key,
    };
    gatehouse_core::gateway::decide(&micro.policy, &facts)
}

/// The decision's label in `gateway_requests`.
pub(super) fn decision_label(decision: &Decision<'_>) -> &'static str {
    match decision {
        Decision::Public => "public",
        Decision::ApiKey { .. } => "api_key",
        Decision::BearerToken { .. } => "bearer_token",
        Decision::Session { .. } => "session",
        Decision::RedirectToLogin => "redirect",
        Decision::MissingCredentials | Decision::ApiKeysNotEnabled => "refused",
        Decision::MultipleCredentials => "invalid",
    }
}

/// Whether `Authorization` carried the credential that judged the request, so it is ours and is not
/// forwarded; another scheme, or a bearer on a public route, is the app's.
pub(super) fn bearer_used(decision: &Decision<'_>, presented: &Presented<'_>) -> bool {
    matches!(decision, Decision::BearerToken { .. })
        || (presented.bearer_is_key && matches!(decision, Decision::ApiKey { .. }))
}

/// Who a request was verified to be, before authorization and the rate limit.
#[derive(Debug)]
pub(super) enum Authenticated {
    Public,
    Key { key: Arc<CachedKey>, scope: Option<Scope> },
    Token { token: Arc<ActiveToken>, scope: Option<Scope> },
    Session(Arc<ActiveSession>),
}

impl Authenticated {
    /// The verified credential usage is counted against (sessions and public requests count toward the app).
    pub(super) fn usage_credential(&self) -> Option<super::Credential> {
        match self {
            Authenticated::Key { key, .. } => Some(super::Credential::Key(key.clone())),
            Authenticated::Token { token, .. } => Some(super::Credential::OAuth(token.clone())),
            Authenticated::Public | Authenticated::Session(_) => None,
        }
    }

    pub(super) fn into_identity(self) -> Identity {
        match self {
            Authenticated::Public => Identity::Public,
            Authenticated::Key { key, .. } => Identity::Key(key),
            Authenticated::Token { token, .. } => Identity::OAuth(token),
            Authenticated::Session(s) => Identity::Session(s),
        }
    }
}

/// Verifies the credential the decision chose, or answers without one: 400 for two credentials, 401,
/// or the sign-in redirect for a browser. An API key is verified with the route's scope, the app and
/// the client address (SPEC §4.3); an ended or foreign session cookie counts as no credential.
pub(super) async fn authenticate(
    ctx: &Ctx<'_>,
    decision: Decision<'_>,
    presented: &Presented<'_>,
    path: &NormalizedPath,
    query: Option<&str>,
) -> Result<Authenticated, Response> {
    let state = ctx.state();
    match decision {
        Decision::Public => Ok(Authenticated::Public),
        Decision::MultipleCredentials => Err(ctx.error(ApiError::MultipleCredentials(
            "Send one credential: an API key header or a bearer token, once.".into(),
        ))),
        Decision::MissingCredentials => Err(ctx.error(ApiError::denied(DenyReason::MissingCredentials))),
        Decision::RedirectToLogin => Err(ctx.login_redirect(path, query)),
        Decision::ApiKeysNotEnabled => Err(ctx.error(ApiError::denied(DenyReason::KeyNotAcceptedHere))),
        Decision::BearerToken { token, scope } => match credentials::authenticate_token(state, token).await {
            Ok(token) => Ok(Authenticated::Token { token, scope }),
            Err(e) => Err(ctx.error(e)),
        },
        Decision::ApiKey { key, scope } => {
            let vctx = VerifyContext {
                environment: ctx.app.environment,
                ip: Some(ctx.client_ip),
                app: Some(&ctx.app.name),
                scope: scope.as_ref(),
            };
            match credentials::verify_key(state, key, &vctx).await {
                Ok(key) => Ok(Authenticated::Key { key, scope }),
                Err(e) => Err(ctx.error(e)),
            }
        }
        Decision::Session { .. } => {
            for c in &presented.session_cookies {
                match state.sessions.lookup(c, &ctx.host).await {
                    Ok(Some(s)) => return Ok(Authenticated::Session(s)),
                    Ok(None) => {}
                    Err(_) => return Err(ctx.error(ApiError::Unavailable)),
                }
            }
            if ctx.browser {
                Err(ctx.login_redirect(path, query))
            } else {
                Err(ctx.error(ApiError::denied(DenyReason::MissingCredentials)))
            }
        }
    }
}

/// Whether the verified credential may make this request here: a restricted key needs a route that
/// declares its scope (SPEC §4.4); a token must be of the app's environment, allowed on the app and
/// hold the route's scope; a WebSocket signed in by the session cookie must come from the app's own
/// origin.
pub(super) fn authorize(
    app: &GatewayApp,
    host: &str,
    who: &Authenticated,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match who {
        Authenticated::Public => Ok(()),
        Authenticated::Key { key, scope } => {
            if scope.is_none() && key.record.kind == KeyKind::Restricted {
                return Err(ApiError::Denied { reason: DenyReason::RouteHasNoScope, presented: None, rate: None });
            }
            Ok(())
        }
        Authenticated::Token { token, scope } => credentials::authorize_token(
            token,
            TokenTarget::App { name: &app.name, environment: app.environment },
            scope.as_ref(),
        ),
        // Browsers send the cookie with a WebSocket handshake opened by any page of the same site
        // (a sibling subdomain), and handshakes are outside CORS: a tunnel acting as the user must
        // come from the app's own origin (cross-site WebSocket hijacking). No `Origin`: not a browser.
        Authenticated::Session(_)
            if forward::is_websocket_upgrade(method, headers) && !is_own_origin(headers, host) =>
        {
            Err(ApiError::InvalidRequest(
                "A WebSocket signed in by the session cookie must be opened from this app's own origin.".into(),
            ))
        }
        Authenticated::Session(_) => Ok(()),
    }
}

/// SPEC §15: a signed-in person opens the app only when its access policy lists them (an app
/// without a policy: every enabled user). Refused: the 403 page naming the account, with *Switch
/// account*, for a browser navigation; 403 `app_not_allowed` for anything else. API keys and OAuth
/// tokens are judged by their own restrictions (SPEC §4.3, §7), public routes by nothing.
#[allow(clippy::result_large_err)] // the early answer is the response itself, as for every phase
pub(super) fn admit(
    ctx: &Ctx<'_>,
    who: &Authenticated,
    headers: &HeaderMap,
    path: &NormalizedPath,
    query: Option<&str>,
) -> Result<(), Response> {
    let Authenticated::Session(signed_in) = who else { return Ok(()) };
    let policy = ctx.state().access.policy_of(&ctx.app.name);
    let subject = Subject {
        email: &signed_in.user.email,
        role: &signed_in.user.role,
        groups: &signed_in.session.groups,
        enabled: signed_in.user.disabled_at.is_none(),
    };
    match access::decide(policy.as_deref(), &subject) {
        AccessDecision::Allowed(_) => Ok(()),
        AccessDecision::Refused(why) => {
            tracing::info!(
                app = %ctx.app.name,
                user = %signed_in.user.id,
                email = %signed_in.user.email,
                reason = why.code(),
                "the app's access policy refused a signed-in user"
            );
            if ctx.browser {
                Err(ctx.not_allowed_page(signed_in, headers, path, query))
            } else {
                Err(ctx.error(ApiError::denied(DenyReason::AccountNotAllowed)))
            }
        }
    }
}

/// Counts the request against its credential's limit, or its client address's on a public route when
/// the gateway has a public quota (SPEC §8); 429 when over.
pub(super) async fn rate_limit(ctx: &Ctx<'_>, who: &Authenticated) -> Result<(), ApiError> {
    let subject = match who {
        Authenticated::Public => match ctx.gw.config.public_rate_limit {
            Some(quota) => RateSubject::PublicIp(ctx.client_ip, quota),
            None => return Ok(()),
        },
        Authenticated::Key { key, .. } => RateSubject::Key(&key.record),
        Authenticated::Token { token, .. } => RateSubject::of_token(token),
        Authenticated::Session(s) => RateSubject::User(&s.user.id),
    };
    check_rate(ctx.state(), subject).await?;
    Ok(())
}

/// The micro's upstream.
pub(super) fn upstream_of(app: &GatewayApp, micro: &Micro) -> Result<Upstream, ApiError> {
    app.upstreams
        .get(&micro.name)
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("no upstream for micro {}", micro.name)))
}

/// Makes the client's request the upstream's: strips what the client may not send, sets identity and
/// forwarding headers. Every header the client named in `Connection` goes before Gatehouse sets its own
/// (SPEC §11), so a client cannot delete `Host`, `X-Forwarded-*`, `X-Gatehouse-*` or the assertion.
pub(super) fn upstream_request(ctx: &Ctx<'_>, identity: &Identity, bearer_used: bool, req: &mut Request) {
    let state = ctx.state();
    forward::remove_hop_by_hop(req.headers_mut());
    let peer_ip = gatehouse_core::ipallow::canonical(ctx.peer.ip());
    let trusted_peer = state.config.trusted_proxies.iter().any(|n| n.contains(&peer_ip));
    let joined = |h: &HeaderMap, name: &str| -> Vec<String> {
        if !trusted_peer {
            return vec![];
        }
        h.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let original_xff = joined(req.headers(), "x-forwarded-for");
    let original_forwarded = joined(req.headers(), "forwarded");
    let h = req.headers_mut();
    let doomed: Vec<HeaderName> = h.keys().filter(|n| forward::is_stripped(n, trusted_peer)).cloned().collect();
    for n in doomed {
        h.remove(n);
    }
    if bearer_used {
        h.remove(header::AUTHORIZATION);
    }
    web::strip_cookie(h, &state.sessions.cfg.cookie_name);
    web::strip_cookie(h, &state.sessions.cfg.cp_cookie_name);
    web::strip_cookie(h, CSRF_COOKIE);
    web::strip_cookie(h, web::STATE_COOKIE);
    // Forwarding headers: the client's own chain only counts when it came through a trusted proxy.
    let xff =
        if original_xff.is_empty() { peer_ip.to_string() } else { format!("{}, {peer_ip}", original_xff.join(", ")) };
    let proto = if ctx.https { "https" } else { "http" };
    let for_node = if peer_ip.is_ipv6() { format!("\"[{peer_ip}]\"") } else { peer_ip.to_string() };
    let ours = format!("for={for_node};proto={proto};host=\"{}\"", ctx.host);
    let forwarded =
        if original_forwarded.is_empty() { ours } else { format!("{}, {ours}", original_forwarded.join(", ")) };
    let set = |h: &mut HeaderMap, name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    // Exactly one Host: the authority the app was chosen by.
    set(h, header::HOST, &ctx.host);
    set(h, HeaderName::from_static("x-forwarded-for"), &xff);
    set(h, HeaderName::from_static("x-forwarded-proto"), proto);
    set(h, HeaderName::from_static("x-forwarded-host"), &ctx.host);
    set(h, HeaderName::from_static("x-real-ip"), &ctx.client_ip.to_string());
    set(h, header::FORWARDED, &forwarded);
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    for (name, value) in ctx.gw.identity_headers.get(identity, ctx.app, &state.web.signer, now).iter() {
        h.insert(name.clone(), value.clone());
    }
}

/// Sends the upstream request to the micro (or serves the static directory) and makes its answer the
/// client's: our cookies never come back from an app, and HSTS is added over TLS unless the app set its own.
pub(super) async fn forward_to(
    ctx: &Ctx<'_>,
    micro: &Micro,
    upstream: Upstream,
    rel: &NormalizedPath,
    query: Option<&str>,
    websocket: bool,
    req: Request,
) -> Response {
    let state = ctx.state();
    let mut path_and_query = rel.as_str().to_owned();
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    match upstream {
        Upstream::Static(dir) => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return ctx.error(ApiError::MethodNotAllowed);
            }
            forward::serve_static(&dir, rel.as_str()).await
        }
        Upstream::Http(authority) => {
            match forward::forward(
                &ctx.gw.client,
                &authority,
                &path_and_query,
                req,
                websocket,
                ctx.gw.config.upstream_timeout,
                state.config.listener.idle_timeout,
            )
            .await
            {
                Ok(mut resp) => {
                    let cfg = &state.sessions.cfg;
                    forward::drop_our_set_cookies(
                        resp.headers_mut(),
                        &[&cfg.cookie_name, &cfg.cp_cookie_name, CSRF_COOKIE, web::STATE_COOKIE],
                    );
                    if !resp.headers().contains_key(header::STRICT_TRANSPORT_SECURITY) {
                        crate::login::add_hsts(&mut resp, ctx.https);
                    }
                    resp
                }
                Err(UpstreamError::Timeout) => ctx.error(ApiError::UpstreamTimeout(micro.name.clone())),
                Err(UpstreamError::ClientBody(cause)) => {
                    tracing::info!(micro = %micro.name, error = %cause, "client sent a malformed request body");
                    ctx.error(ApiError::InvalidRequest("The request body is malformed.".into()))
                }
                Err(UpstreamError::Unreachable(cause)) => {
                    tracing::warn!(micro = %micro.name, error = %cause, "upstream unreachable");
                    ctx.error(ApiError::BadGateway(micro.name.clone()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use gatehouse_core::ratelimit::Quota;
    use gatehouse_core::{Environment, ScopeSet, Timestamp};
    use gatehouse_store::oauth::{TokenKind, TokenRecord};
    use gatehouse_store::testing::{Backend, TestDb};
    use gatehouse_store::Store;

    use super::*;
    use crate::gateway::Gateway;

    const SPACEFILE: &str = r#"v: 0
app_name: shop
micros:
  - name: web
    src: .
    engine: custom
    run: x
    primary: true
    public_routes: ["/ping"]
    presets:
      api_keys: true
    route_scopes:
      "POST /orders/*": orders:write
  - name: api
    src: .
    engine: custom
    run: y
    path: api
  - name: lost
    src: .
    engine: custom
    run: z
"#;

    fn app() -> GatewayApp {
        GatewayApp {
            name: "shop".into(),
            hosts: vec!["shop.test".into(), "other.test:8080".into()],
            environment: Environment::Live,
            spacefile: gatehouse_core::spacefile::parse("Spacefile", SPACEFILE).unwrap(),
            upstreams: ["web", "api"]
                .into_iter()
                .map(|m| (m.to_owned(), Upstream::Http("127.0.0.1:9".into())))
                .collect(),
        }
    }

    fn config(public_rate_limit: Option<Quota>) -> GatewayConfig {
        GatewayConfig { apps: vec![app()], upstream_timeout: Duration::from_secs(5), public_rate_limit }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn status(e: ApiError) -> StatusCode {
        e.into_response().status()
    }

    const PEER: &str = "192.0.2.7:5000";

    /// A gateway over a fresh SQLite database; the database lives as long as the guard.
    async fn gateway(public_rate_limit: Option<Quota>) -> (Arc<Gateway>, TestDb) {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = db.store().await;
        let built =
            crate::App::build(crate::ServerConfig::default(), Arc::new(store) as Arc<dyn Store>, vec![]).await.unwrap();
        (Gateway::new(built.state, config(public_rate_limit)), db)
    }

    fn ctx<'a>(gw: &'a Gateway, req: &Request) -> Ctx<'a> {
        let app = &gw.config.apps[0];
        Ctx::new(gw, app, "shop.test".into(), PEER.parse::<SocketAddr>().unwrap(), req)
    }

    fn key(kind: KeyKind) -> Arc<CachedKey> {
        crate::gateway::test_key("key_1", kind, ScopeSet::parse(["orders:write"]).unwrap())
    }

    fn token(environment: Environment, app: Option<&str>) -> Arc<ActiveToken> {
        let now = Timestamp::now();
        Arc::new(ActiveToken {
            record: TokenRecord {
                hash: gatehouse_core::KeyHash::of("t"),
                kind: TokenKind::Access,
                grant_id: "grant_1".into(),
                client_id: "client_1".into(),
                user_id: None,
                scopes: vec!["orders:write".into()],
                created_at: now,
                expires_at: Timestamp(now.0 + 60_000),
                parent_hash: None,
                used_at: None,
                retried_at: None,
                revoked_at: None,
            },
            scopes: ScopeSet::parse(["orders:write"]).unwrap(),
            user: None,
            environment,
            app: app.map(str::to_owned),
        })
    }

    #[test]
    fn resolve_app_picks_the_one_authority_and_refuses_the_rest() {
        let cfg = config(None);
        let rows: Vec<(Request, Result<&str, StatusCode>)> = vec![
            (request("GET", "/", &[("host", "shop.test")]), Ok("shop.test")),
            (request("GET", "/", &[("host", "SHOP.test:1234")]), Ok("shop.test:1234")),
            (request("GET", "/", &[("host", "other.test:8080")]), Ok("other.test:8080")),
            (request("GET", "http://shop.test/x", &[("host", "shop.test")]), Ok("shop.test")),
            (request("GET", "/", &[("host", "other.test:9090")]), Err(StatusCode::NOT_FOUND)),
            (request("GET", "/", &[("host", "elsewhere.test")]), Err(StatusCode::NOT_FOUND)),
            (request("GET", "/", &[]), Err(StatusCode::BAD_REQUEST)),
            (request("GET", "/", &[("host", "shop.test"), ("host", "shop.test")]), Err(StatusCode::BAD_REQUEST)),
            (request("GET", "http://evil.test/x", &[("host", "shop.test")]), Err(StatusCode::BAD_REQUEST)),
            (request("GET", "http://u@shop.test/x", &[("host", "shop.test")]), Err(StatusCode::BAD_REQUEST)),
            (request("CONNECT", "shop.test:443", &[("host", "shop.test:443")]), Err(StatusCode::BAD_REQUEST)),
        ];
        for (i, (req, want)) in rows.into_iter().enumerate() {
            let got = resolve_app(&cfg, &req).map(|(app, host)| (app.name.clone(), host)).map_err(status);
            assert_eq!(got, want.map(|h| ("shop".to_owned(), h.to_owned())), "row {i}: {:?}", req.uri());
        }
    }

    #[test]
    fn paths_are_normalized_and_own_pages_recognised() {
        assert_eq!(normalize_path(&request("GET", "/a/./c/../b", &[])).unwrap().as_str(), "/a/b");
        for ambiguous in ["/a/%2Fb", "/a;b", "/a/%zz", "/../b"] {
            let e = normalize_path(&request("GET", ambiguous, &[])).unwrap_err();
            assert!(matches!(e, ApiError::AmbiguousPath(_)), "{ambiguous}: {e:?}");
        }
        let rows = [
            ("/__gatehouse", true),
            ("/__gatehouse/callback", true),
            ("/__gatehouse/logout", true),
            ("/__gatehousex", false),
            ("/app/__gatehouse/logout", false),
            ("/", false),
        ];
        for (p, want) in rows {
            assert_eq!(own_page(&NormalizedPath::parse(p).unwrap()), want, "{p}");
        }
    }

    #[test]
    fn pick_micro_routes_by_mount() {
        let app = app();
        let rows =
            [("/", "web", "/"), ("/orders/1", "web", "/orders/1"), ("/api/x", "api", "/x"), ("/api", "api", "/")];
        for (p, micro, rel) in rows {
            let (m, r) = pick_micro(&app, &NormalizedPath::parse(p).unwrap());
            assert_eq!((m.name.as_str(), r.as_str()), (micro, rel), "{p}");
        }
    }

    /// The decision phase over real header sets: its metrics label and whether `Authorization` is ours.
    #[test]
    fn decide_reads_the_headers_once() {
        let app = app();
        let key = "gth_sk_live_abc";
        let bearer_key = format!("Bearer {key}");
        // Method, path, headers, browser navigation → metrics label, `Authorization` is ours.
        type Row<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, bool, &'a str, bool);
        let rows: Vec<Row> = vec![
            ("GET", "/ping", vec![("authorization", &bearer_key)], false, "public", false),
            ("GET", "/", vec![("x-space-app-key", key)], false, "api_key", false),
            ("GET", "/", vec![("authorization", &bearer_key)], false, "api_key", true),
            ("GET", "/", vec![("authorization", "bearer opaque")], false, "bearer_token", true),
            ("GET", "/", vec![("authorization", "Basic YTpi")], false, "refused", false),
            (
                "GET",
                "/",
                vec![("authorization", "Basic YTpi"), ("cookie", "gatehouse_session=x")],
                false,
                "session",
                false,
            ),
            ("GET", "/", vec![("cookie", "gatehouse_session=x")], false, "session", false),
            ("GET", "/", vec![("x-space-app-key", key), ("authorization", &bearer_key)], false, "invalid", false),
            ("GET", "/", vec![("x-space-app-key", key), ("x-space-app-key", key)], false, "invalid", false),
            ("GET", "/", vec![("authorization", "Bearer a"), ("authorization", "Bearer a")], false, "invalid", false),
            ("GET", "/", vec![("authorization", "Bearer ")], true, "redirect", false),
            ("GET", "/", vec![], false, "refused", false),
            ("GET", "/api/x", vec![("x-space-app-key", key)], false, "refused", false),
        ];
        let cookie = gatehouse_services::sessions::SessionConfig::default().cookie_name;
        for (i, (method, path, headers, browser, label, ours)) in rows.into_iter().enumerate() {
            let req = request(method, path, &headers.iter().map(|(n, v)| (*n, *v)).collect::<Vec<_>>());
            let path = NormalizedPath::parse(path).unwrap();
            let (micro, rel) = pick_micro(&app, &path);
            let presented = Presented::read(req.headers(), &Namespace::default(), &cookie);
            let decision = decide(micro, method, &rel, &presented, browser);
            assert_eq!((decision_label(&decision), bearer_used(&decision, &presented)), (label, ours), "row {i}");
        }
    }

    #[test]
    fn authorize_applies_the_route_scope_and_the_token_target() {
        let app = app();
        let write = Some(Scope::parse("orders:write").unwrap());
        let read = Some(Scope::parse("invoices:read").unwrap());
        let rows: Vec<(Authenticated, Result<(), StatusCode>)> = vec![
            (Authenticated::Public, Ok(())),
            (Authenticated::Key { key: key(KeyKind::Secret), scope: None }, Ok(())),
            (Authenticated::Key { key: key(KeyKind::Restricted), scope: write.clone() }, Ok(())),
            // A restricted key on a route that declares no scope (SPEC §4.4).
            (Authenticated::Key { key: key(KeyKind::Restricted), scope: None }, Err(StatusCode::FORBIDDEN)),
            (Authenticated::Token { token: token(Environment::Live, None), scope: write.clone() }, Ok(())),
            (Authenticated::Token { token: token(Environment::Live, Some("shop")), scope: write.clone() }, Ok(())),
            (Authenticated::Token { token: token(Environment::Live, None), scope: None }, Err(StatusCode::FORBIDDEN)),
            (Authenticated::Token { token: token(Environment::Live, None), scope: read }, Err(StatusCode::FORBIDDEN)),
            (
                Authenticated::Token { token: token(Environment::Test, None), scope: write.clone() },
                Err(StatusCode::FORBIDDEN),
            ),
            (
                Authenticated::Token { token: token(Environment::Live, Some("blog")), scope: write },
                Err(StatusCode::FORBIDDEN),
            ),
        ];
        let headers = HeaderMap::new();
        for (i, (who, want)) in rows.into_iter().enumerate() {
            let got = authorize(&app, "shop.test", &who, &Method::POST, &headers).map_err(status);
            assert_eq!(got, want, "row {i}: {who:?}");
        }
    }

    #[test]
    fn a_micro_without_an_upstream_is_an_internal_error() {
        let app = app();
        let (lost, _) = pick_micro(&app, &NormalizedPath::parse("/lost").unwrap());
        assert_eq!(lost.name, "lost");
        assert!(matches!(upstream_of(&app, lost), Err(ApiError::Internal(_))));
        let (web, _) = pick_micro(&app, &NormalizedPath::parse("/").unwrap());
        assert!(matches!(upstream_of(&app, web), Ok(Upstream::Http(a)) if a == "127.0.0.1:9"));
    }

    #[tokio::test]
    async fn authenticate_answers_early_without_a_usable_credential() {
        let (gw, _db) = gateway(None).await;
        let path = NormalizedPath::parse("/").unwrap();
        let no_cookie = request("GET", "/", &[]);
        let presented = Presented::read(no_cookie.headers(), &Namespace::default(), "gatehouse_session");
        let with_cookie = request("GET", "/", &[("cookie", "gatehouse_session=unknown")]);
        let presented_cookie = Presented::read(with_cookie.headers(), &Namespace::default(), "gatehouse_session");
        let browser = request("GET", "/", &[("cookie", "gatehouse_session=unknown"), ("sec-fetch-mode", "navigate")]);
        let rows: Vec<(Decision, &Request, &Presented, StatusCode, Option<&str>)> = vec![
            (Decision::MultipleCredentials, &no_cookie, &presented, StatusCode::BAD_REQUEST, None),
            (Decision::MissingCredentials, &no_cookie, &presented, StatusCode::UNAUTHORIZED, Some("www-authenticate")),
            (Decision::ApiKeysNotEnabled, &no_cookie, &presented, StatusCode::UNAUTHORIZED, Some("www-authenticate")),
            (Decision::RedirectToLogin, &no_cookie, &presented, StatusCode::FOUND, Some("location")),
            (
                Decision::ApiKey { key: "gth_sk_live_nope", scope: None },
                &no_cookie,
                &presented,
                StatusCode::UNAUTHORIZED,
                Some("www-authenticate"),
            ),
            (
                Decision::BearerToken { token: "opaque", scope: None },
                &no_cookie,
                &presented,
                StatusCode::UNAUTHORIZED,
                Some("www-authenticate"),
            ),
            // An unknown session cookie counts as none: 401, or the sign-in for a browser.
            (Decision::Session { scope: None }, &with_cookie, &presented_cookie, StatusCode::UNAUTHORIZED, None),
            (Decision::Session { scope: None }, &browser, &presented_cookie, StatusCode::FOUND, Some("location")),
        ];
        for (i, (decision, req, presented, want, header)) in rows.into_iter().enumerate() {
            let resp = authenticate(&ctx(&gw, req), decision, presented, &path, None).await.unwrap_err();
            assert_eq!(resp.status(), want, "row {i}");
            if let Some(h) = header {
                assert!(resp.headers().contains_key(h), "row {i}: {h}");
            }
        }
        let public = authenticate(&ctx(&gw, &no_cookie), Decision::Public, &presented, &path, None).await;
        assert!(matches!(public, Ok(Authenticated::Public)));
    }

    #[tokio::test]
    async fn rate_limit_refuses_with_429_and_counts_it() {
        let (gw, _db) = gateway(Some(Quota { limit: 1, window_ms: 60_000 })).await;
        let req = request("GET", "/ping", &[]);
        let c = ctx(&gw, &req);
        let before = gw.state.metrics.rate_limited.get();
        assert!(rate_limit(&c, &Authenticated::Public).await.is_ok());
        let refused = rate_limit(&c, &Authenticated::Public).await.unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        for h in ["retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            assert!(refused.headers().contains_key(h), "{h}");
        }
        assert_eq!(gw.state.metrics.rate_limited.get(), before + 1);
        // A key has its own limit, apart from the public one.
        assert!(rate_limit(&c, &Authenticated::Key { key: key(KeyKind::Secret), scope: None }).await.is_ok());
        // Without a public quota, public routes are not counted.
        let (open, _db2) = gateway(None).await;
        let c = ctx(&open, &req);
        for _ in 0..3 {
            assert!(rate_limit(&c, &Authenticated::Public).await.is_ok());
        }
    }

    #[tokio::test]
    async fn the_upstream_request_carries_our_headers_and_none_of_the_clients() {
        let (gw, _db) = gateway(None).await;
        let client = [
            ("host", "shop.test"),
            ("authorization", "Bearer opaque"),
            ("cookie", "gatehouse_session=secret; theme=dark"),
            ("x-gatehouse-user-id", "forged"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-real-ip"),
            ("accept", "application/json"),
        ];
        for bearer_used in [true, false] {
            let mut req = request("GET", "/orders", &client);
            let ctx = ctx(&gw, &req);
            upstream_request(&ctx, &Identity::Public, bearer_used, &mut req);
            let h = req.headers();
            let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(get("authorization").is_none(), bearer_used, "ours only when it judged the request");
            assert_eq!(get("cookie").as_deref(), Some("theme=dark"));
            assert_eq!(get("x-gatehouse-user-id"), None);
            assert_eq!(get("host").as_deref(), Some("shop.test"));
            // The peer is not a trusted proxy: its forwarding chain is dropped.
            assert_eq!(get("x-forwarded-for").as_deref(), Some("192.0.2.7"));
            assert_eq!(get("x-real-ip").as_deref(), Some("192.0.2.7"));
            assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
            assert_eq!(get("forwarded").as_deref(), Some("for=192.0.2.7;proto=http;host=\"shop.test\""));
            assert_eq!(get("accept").as_deref(), Some("application/json"));
            assert!(h.get("connection").is_none());
        }
    }
}
