//! The gateway (SPEC §3): host → app, `/__gatehouse/…`, path → micro, public?, authenticate,
//! authorize, rate limit, forward. Each phase can answer early; the decision itself is the pure
//! `gatehouse_core::gateway::decide`.

pub mod forward;
mod identity;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use gatehouse_core::gateway::{decide, is_browser_navigation, Authorization, Decision, RequestFacts};
use gatehouse_core::path::NormalizedPath;
use gatehouse_core::spacefile::{Micro, Spacefile};
use gatehouse_core::{DenyReason, Environment, KeyKind, VerifyContext};

use self::forward::{UpstreamClient, UpstreamError};
use self::identity::{Identity, IdentityHeaders};
use crate::error::{in_request_scope, set_request_id, ApiError};
use crate::login::{end_session, is_https, url_encode};
use crate::state::AppState;
use crate::web::{self, cookies, csrf_token, page, redirect, set_cookie, CSRF_COOKIE};
use gatehouse_services::verifier::VerifyError;

/// Where a micro's requests go.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// `host:port` of an HTTP server.
    Http(String),
    /// A directory served by Gatehouse.
    Static(PathBuf),
}

/// One app behind the gateway.
#[derive(Clone, Debug)]
pub struct GatewayApp {
    /// The app's name: the assertion audience and what app-restricted keys name.
    pub name: String,
    /// `host[:port]` values (lower case) this app answers on. A host without a port matches any port.
    pub hosts: Vec<String>,
    /// Keys of this environment are accepted.
    pub environment: Environment,
    pub spacefile: Spacefile,
    /// Micro name → upstream.
    pub upstreams: HashMap<String, Upstream>,
}

/// The gateway's settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub apps: Vec<GatewayApp>,
    /// How long an upstream may take to send its response head.
    pub upstream_timeout: Duration,
    /// Optional limit per client IP on public routes (SPEC §8); credentials have their own limits.
    pub public_rate_limit: Option<gatehouse_core::ratelimit::Quota>,
}

/// The gateway: config, the upstream client, and the shared app state.
#[derive(Debug)]
pub struct Gateway {
    pub state: Arc<AppState>,
    pub config: GatewayConfig,
    client: UpstreamClient,
    identity_headers: IdentityHeaders,
}

impl Gateway {
    pub fn new(state: Arc<AppState>, config: GatewayConfig) -> Arc<Self> {
        Arc::new(Self { state, config, client: forward::client(), identity_headers: IdentityHeaders::default() })
    }

    /// The gateway's router: one handler for every path. It sets the request context itself (request
    /// id, key masking), and its traffic is counted in `gateway_requests`, not `http_requests`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    fn app_for(&self, host: &str) -> Option<&GatewayApp> {
        let host = host.to_ascii_lowercase();
        let bare = strip_port(&host);
        self.config.apps.iter().find(|a| a.hosts.iter().any(|h| *h == host || (!h.contains(':') && h == bare)))
    }
}

/// The one authority a request names, lower case: `Host`, the absolute-form target's or h2's
/// `:authority`, which must agree when both are present. Userinfo in the authority is refused.
fn request_authority(req: &Request) -> Result<String, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err("Send one Host header."),
        (Some(v), None) => Some(v.to_str().map_err(|_| "The Host header is not valid.")?),
        (None, None) => None,
    };
    let target = req.uri().authority().map(|a| a.as_str());
    if target.is_some_and(|a| a.contains('@')) {
        return Err("The request target must not carry user information.");
    }
    match (target, header_host) {
        (Some(t), Some(h)) if !t.eq_ignore_ascii_case(h.trim()) => {
            Err("The request target's authority and the Host header disagree.")
        }
        (Some(t), _) => Ok(t.to_ascii_lowercase()),
        (None, Some(h)) if !h.trim().is_empty() => Ok(h.trim().to_ascii_lowercase()),
        _ => Err("A Host header is required."),
    }
}

/// Whether the request's `Origin` (if it has one) is `http(s)://` + the host the app was chosen by.
fn is_own_origin(headers: &HeaderMap, host: &str) -> bool {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return true,
        (Some(o), None) => o.to_str().unwrap_or("").to_ascii_lowercase(),
        (Some(_), Some(_)) => return false,
    };
    let named = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    named == Some(host)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

struct Ctx<'a> {
    gw: &'a Gateway,
    app: &'a GatewayApp,
    host: String,
    https: bool,
    client_ip: IpAddr,
    peer: SocketAddr,
    browser: bool,
}

impl Ctx<'_> {
    fn state(&self) -> &AppState {
        &self.gw.state
    }

    /// An error as JSON (API clients) or a small page (browsers).
    fn error(&self, e: ApiError) -> Response {
        if !self.browser {
            return e.into_response();
        }
        let json = e.into_response();
        let status = json.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut html =
            page(status, title, &format!("<p>{}</p>", web::esc(&format!("{} ({})", title, status.as_u16()))));
        // The challenge and rate-limit headers mean the same to a browser as to an API client.
        for name in ["www-authenticate", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            if let Some(v) = json.headers().get(name) {
                html.headers_mut().insert(name, v.clone());
            }
        }
        html
    }

    /// Sends a browser to the control plane's sign-in, bound to this browser: a fresh state cookie on
    /// this host (only sent to `/__gatehouse/`), whose hash the control plane puts into the ticket.
    /// On an HTTPS deployment or request the return URL is `https`, the cookie `Secure`, and HSTS is sent.
    fn login_redirect(&self, path: &NormalizedPath, query: Option<&str>) -> Response {
        let secure = self.https || crate::login::deployment_https(self.state());
        let scheme = if secure { "https" } else { "http" };
        let mut url = format!("{scheme}://{}{}", self.host, path.as_str());
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        let (nonce, hash) = gatehouse_services::sessions::new_token();
        let mut resp = redirect(
            StatusCode::FOUND,
            &format!("{}/login?return_to={}&state={}", self.state().web.cp_origin, url_encode(&url), hash.to_hex()),
        );
        resp.headers_mut().append(header::SET_COOKIE, web::state_cookie(&nonce, web::STATE_MAX_AGE_SECS, secure));
        crate::login::add_hsts(&mut resp, secure);
        resp
    }
}

async fn handle(State(gw): State<Arc<Gateway>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let mut outcome = Outcome { app: String::new(), decision: "invalid" };
    let ns = gw.state.config.namespace.clone();
    let (request_id, mut resp) = in_request_scope(ns, pipeline(&gw, peer, req, &mut outcome)).await;
    set_request_id(&mut resp, &request_id);
    let labels = gatehouse_services::metrics::GatewayLabels {
        app: outcome.app,
        decision: outcome.decision,
        status: resp.status().as_u16(),
    };
    gw.state.metrics.gateway_requests.get_or_create(&labels).inc();
    resp
}

/// What the pipeline decided, for the metrics.
struct Outcome {
    app: String,
    decision: &'static str,
}

async fn pipeline(gw: &Arc<Gateway>, peer: SocketAddr, req: Request, outcome: &mut Outcome) -> Response {
    // 1. Host → app. One authority only (SPEC §11): two `Host`s, or an absolute-form target or h2
    // `:authority` naming another host than `Host`, would let the upstream see a host we did not choose.
    let host = match request_authority(&req) {
        Ok(h) => h,
        Err(message) => return ApiError::InvalidRequest(message.into()).into_response(),
    };
    // No tunnels: CONNECT (HTTP/1.1, or h2 with or without `:protocol`) is never forwarded.
    if req.method() == Method::CONNECT {
        outcome.decision = "invalid";
        return ApiError::InvalidRequest(
            "CONNECT is not supported by the gateway; open WebSockets with an HTTP/1.1 upgrade.".into(),
        )
        .into_response();
    }
    let Some(app) = gw.app_for(&host) else {
        return ApiError::NotFound(format!(
            "No app is served at host `{}`.",
            host.chars().take(100).collect::<String>()
        ))
        .into_response();
    };
    outcome.app = app.name.clone();
    let state = &gw.state;
    let headers = req.headers();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let fetch_mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    let ctx = Ctx {
        gw,
        app,
        https: is_https(state, headers, Some(peer)),
        client_ip: crate::netaddr::client_ip(peer.ip(), headers, &state.config.trusted_proxies),
        peer,
        browser: is_browser_navigation(req.method().as_str(), accept, fetch_mode),
        host,
    };
    // Path safety comes before everything that looks at the path.
    let path = match NormalizedPath::parse(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return ctx.error(ApiError::AmbiguousPath(format!("The request path is ambiguous: {e}."))),
    };
    // 2. Gatehouse's own pages on every app host.
    if path.as_str() == "/__gatehouse" || path.as_str().starts_with("/__gatehouse/") {
        outcome.decision = "gatehouse_page";
        return own_pages(&ctx, &path, req).await;
    }
    // 3. Path → micro.
    let (micro, rel) = app.spacefile.route(&path);
    let query = req.uri().query().map(str::to_owned);
    // 4–6. The decision.
    let key_headers: Vec<&str> = headers.get_all("x-space-app-key").iter().map(|v| v.to_str().unwrap_or("")).collect();
    let mut auth_values = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = match (auth_values.next(), auth_values.next()) {
        (None, _) => Authorization::Absent,
        (Some(_), Some(_)) => Authorization::Repeated,
        (Some(v), None) => {
            let v = v.to_str().unwrap_or("");
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    Authorization::Bearer(token.trim())
                }
                _ => Authorization::Other,
            }
        }
    };
    let ns = &state.config.namespace;
    let bearer_is_key = matches!(authorization, Authorization::Bearer(t) if crate::api::looks_like_key(ns, t));
    let session_cookies: Vec<&str> = cookies(headers, &state.sessions.cfg.cookie_name).collect();
    let facts = RequestFacts {
        method: req.method().as_str(),
        path: rel.as_str(),
        app_key_headers: &key_headers,
        authorization,
        has_session_cookie: !session_cookies.is_empty(),
        browser_navigation: ctx.browser,
        bearer_is_api_key: bearer_is_key,
    };
    let decision = decide(&micro.policy, &facts);
    let bearer_used = matches!(decision, Decision::BearerToken { .. })
        || (bearer_is_key && matches!(decision, Decision::ApiKey { .. }));
    outcome.decision = match &decision {
        Decision::Public => "public",
        Decision::ApiKey { .. } => "api_key",
        Decision::BearerToken { .. } => "bearer_token",
        Decision::Session { .. } => "session",
        Decision::RedirectToLogin => "redirect",
        Decision::MissingCredentials | Decision::ApiKeysNotEnabled => "refused",
        Decision::MultipleCredentials => "invalid",
    };
    let identity = match decision {
        Decision::Public => {
            if let Some(q) = gw.config.public_rate_limit {
                let rate = state.limiter.check(&format!("ip:{}", ctx.client_ip), Some(q)).await;
                if !rate.allowed {
                    state.metrics.rate_limited.inc();
                    return ctx.error(ApiError::rate_limited(rate));
                }
            }
            Identity::Public
        }
        Decision::MultipleCredentials => {
            return ctx.error(ApiError::MultipleCredentials(
                "Send one credential: an API key header or a bearer token, once.".into(),
            ))
        }
        Decision::MissingCredentials => return ctx.error(ApiError::denied(DenyReason::MissingCredentials)),
        Decision::RedirectToLogin => return ctx.login_redirect(&path, query.as_deref()),
        Decision::ApiKeysNotEnabled => return ctx.error(ApiError::denied(DenyReason::KeyNotAcceptedHere)),
        Decision::BearerToken { token, scope } => match crate::api::authorize_token(
            state,
            token,
            crate::api::TokenTarget::App { name: &ctx.app.name, environment: ctx.app.environment },
            scope.as_ref(),
        )
        .await
        {
            Ok((t, _)) => Identity::OAuth(t),
            Err(e) => return ctx.error(e),
        },
        Decision::ApiKey { key, scope } => match check_key(&ctx, key, scope.as_ref()).await {
            Ok(k) => Identity::Key(k),
            Err(e) => return ctx.error(e),
        },
        Decision::Session { .. } => {
            let mut found = None;
            for c in &session_cookies {
                match state.sessions.lookup(c, &ctx.host).await {
                    Ok(Some(s)) => {
                        found = Some(s);
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => return ctx.error(ApiError::Unavailable),
                }
            }
            match found {
                // Browsers send the cookie with a WebSocket handshake opened by any page of the same site
                // (a sibling subdomain), and handshakes are outside CORS: a tunnel acting as the user must
                // come from the app's own origin (cross-site WebSocket hijacking). No `Origin`: not a browser.
                Some(_)
                    if forward::is_websocket_upgrade(req.method(), headers) && !is_own_origin(headers, &ctx.host) =>
                {
                    return ctx.error(ApiError::InvalidRequest(
                        "A WebSocket signed in by the session cookie must be opened from this app's own origin.".into(),
                    ))
                }
                Some(s) => {
                    let rate = state.limiter.check(&format!("user:{}", s.user.id), None).await;
                    if !rate.allowed {
                        state.metrics.rate_limited.inc();
                        return ctx.error(ApiError::rate_limited(rate));
                    }
                    Identity::Session(s)
                }
                // An ended or foreign cookie is ambient: treat the request as carrying nothing.
                None if ctx.browser => return ctx.login_redirect(&path, query.as_deref()),
                None => return ctx.error(ApiError::denied(DenyReason::MissingCredentials)),
            }
        }
    };
    proxy(&ctx, micro, rel, query, identity, bearer_used, req).await
}

/// Verifies an API key for this app and route, then counts it against its rate limit.
async fn check_key(
    ctx: &Ctx<'_>,
    key: &str,
    scope: Option<&gatehouse_core::Scope>,
) -> Result<Arc<gatehouse_services::verifier::CachedKey>, ApiError> {
    let state = ctx.state();
    let vctx =
        VerifyContext { environment: ctx.app.environment, ip: Some(ctx.client_ip), app: Some(&ctx.app.name), scope };
    let cached = state.verifier.verify(key, &vctx).await.map_err(|e| match e {
        VerifyError::Denied(reason) => ApiError::denied_key(reason, key),
        VerifyError::Unavailable => ApiError::Unavailable,
    })?;
    // A restricted key needs a route that declares its scope (SPEC §4.4).
    if scope.is_none() && cached.record.kind == KeyKind::Restricted {
        return Err(ApiError::Denied { reason: DenyReason::RouteHasNoScope, presented: None, rate: None });
    }
    let rate = state.limiter.check(&cached.record.id, cached.record.rate_limit.map(crate::api::quota_of)).await;
    if !rate.allowed {
        state.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited(rate));
    }
    Ok(cached)
}

/// Builds the upstream request: strips what the client may not send, sets identity and forwarding headers.
async fn proxy(
    ctx: &Ctx<'_>,
    micro: &Micro,
    rel: NormalizedPath,
    query: Option<String>,
    identity: Identity,
    bearer_used: bool,
    mut req: Request,
) -> Response {
    let state = ctx.state();
    let upstream = match ctx.app.upstreams.get(&micro.name) {
        Some(u) => u.clone(),
        None => return ctx.error(ApiError::Internal(format!("no upstream for micro {}", micro.name))),
    };
    // Every header the client named in `Connection` goes before Gatehouse sets its own (SPEC §11), so a
    // client cannot delete `Host`, `X-Forwarded-*`, `X-Gatehouse-*` or the assertion.
    let websocket = forward::is_websocket_upgrade(req.method(), req.headers());
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
    for (name, value) in ctx.gw.identity_headers.get(&identity, ctx.app, &state.web.signer, now).iter() {
        h.insert(name.clone(), value.clone());
    }
    let mut path_and_query = rel.as_str().to_owned();
    if let Some(q) = &query {
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
                    // Over TLS the app's answers carry HSTS too, unless the app chose its own policy.
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

#[derive(serde::Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    return_to: String,
}

/// `/__gatehouse/…` on an app host: the login callback and sign-out.
async fn own_pages(ctx: &Ctx<'_>, path: &NormalizedPath, req: Request) -> Response {
    let state = ctx.state();
    // Cookies set here are `Secure` and HSTS is sent whenever this host is served over HTTPS.
    let secure = ctx.https || crate::login::deployment_https(state);
    let mut resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/__gatehouse/callback") => {
            let q: CallbackQuery = match web::from_query(req.uri().query().unwrap_or("")).ok() {
                Some(q) => q,
                None => return page(StatusCode::BAD_REQUEST, "Sign in", "<p>This sign-in link is malformed.</p>"),
            };
            // Only a path on this host, however a browser reads it: a ticket can never send the browser elsewhere.
            let back = if web::safe_local_path(&q.return_to) { q.return_to.clone() } else { "/".into() };
            let states: Vec<&str> = cookies(req.headers(), web::STATE_COOKIE).collect();
            match state.sessions.redeem_ticket(&q.ticket, &ctx.host, &states).await {
                Ok(gatehouse_services::sessions::Redeemed::Session(cookie)) => {
                    let mut resp = redirect(StatusCode::FOUND, &back);
                    let max_age = state.sessions.cfg.absolute.as_secs() as i64;
                    resp.headers_mut().append(
                        header::SET_COOKIE,
                        set_cookie(&state.sessions.cfg.cookie_name, &cookie, max_age, secure),
                    );
                    // The state is single use: this sign-in is done.
                    resp.headers_mut().append(header::SET_COOKIE, web::state_cookie("", 0, secure));
                    resp
                }
                Ok(gatehouse_services::sessions::Redeemed::OtherBrowser) => page(
                    StatusCode::BAD_REQUEST,
                    "Sign in",
                    &format!(
                        r#"<p>This sign-in was started in another browser or tab, so it was not used here.</p><p><a href="{}">Continue</a> to sign in yourself.</p>"#,
                        web::esc(&back)
                    ),
                ),
                Ok(gatehouse_services::sessions::Redeemed::Invalid) => page(
                    StatusCode::BAD_REQUEST,
                    "Sign in",
                    "<p>This sign-in link has expired or was already used. Open the app again to sign in.</p>",
                ),
                Err(_) => ctx.error(ApiError::Unavailable),
            }
        }
        (Method::GET, "/__gatehouse/signin") => {
            // Starts a sign-in from this host (the control plane sends browsers here when a sign-in
            // for this host did not start here), so the ticket can be bound to this browser.
            let q: CallbackQuery = web::from_query(req.uri().query().unwrap_or(""))
                .ok()
                .unwrap_or(CallbackQuery { ticket: String::new(), return_to: String::new() });
            let back = if web::safe_local_path(&q.return_to) { q.return_to.as_str() } else { "/" };
            let (p, query) = back.split_once('?').map_or((back, None), |(p, q)| (p, Some(q)));
            let p = p.split('#').next().unwrap_or("/");
            match NormalizedPath::parse(p) {
                Ok(p) => ctx.login_redirect(&p, query),
                Err(_) => ctx.login_redirect(&NormalizedPath::parse("/").expect("the root is a path"), None),
            }
        }
        (Method::GET, "/__gatehouse/logout") => {
            let existing = cookies(req.headers(), CSRF_COOKIE).find(|c| c.len() == 43).map(str::to_owned);
            let (cookie, fresh) = match existing {
                Some(c) => (c, false),
                None => (gatehouse_services::sessions::new_token().0, true),
            };
            // Bound to this browser's app session when it has one, so the form only ends that session.
            let live =
                match crate::login::live_sessions(state, req.headers(), &state.sessions.cfg.cookie_name, &ctx.host)
                    .await
                {
                    Ok(l) => l,
                    Err(_) => return ctx.error(ApiError::Unavailable),
                };
            let token = match live.first() {
                Some((_, h)) => web::csrf_token_for(&state.web.csrf_key, &cookie, Some(h)),
                None => csrf_token(&state.web.csrf_key, &cookie),
            };
            let mut resp = page(
                StatusCode::OK,
                "Sign out",
                &format!(
                    r#"<form method="post" action="/__gatehouse/logout"><input type="hidden" name="csrf" value="{token}"><button type="submit">Sign out</button></form>"#
                ),
            );
            if fresh {
                resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &cookie, 86_400, secure));
            }
            resp
        }
        (Method::POST, "/__gatehouse/logout") => {
            let headers = req.headers().clone();
            let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
                Ok(b) => b,
                Err(_) => return ctx.error(ApiError::InvalidRequest("The form is too large.".into())),
            };
            let form: crate::login::CsrfForm = web::from_query(std::str::from_utf8(&body).unwrap_or(""))
                .ok()
                .unwrap_or(crate::login::CsrfForm { csrf: String::new() });
            end_session(state, &headers, ctx.peer, &form.csrf, &state.sessions.cfg.cookie_name, &ctx.host, "/").await
        }
        _ => ctx.error(ApiError::NotFound("No such Gatehouse page.".into())),
    };
    crate::login::add_hsts(&mut resp, secure);
    resp
}
