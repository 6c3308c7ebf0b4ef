//! The gateway (SPEC §3): the request pipeline, whose phases are in `phases` (host → app, path,
//! `/__gatehouse/…`, path → micro, decide, authenticate, authorize, rate limit, upstream request,
//! forward), each able to answer early; the decision itself is the pure `gatehouse_core::gateway::decide`.

pub mod forward;
mod identity;
mod phases;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use gatehouse_core::gateway::is_browser_navigation;
use gatehouse_core::path::NormalizedPath;
use gatehouse_core::spacefile::Spacefile;
use gatehouse_core::{Environment, KeyHash};
use gatehouse_services::sessions::ActiveSession;

use self::forward::UpstreamClient;
use self::identity::IdentityHeaders;
use crate::error::{in_request_scope, set_request_id, ApiError};
use crate::login::{end_session, is_https, url_encode};
use crate::pages;
use crate::state::AppState;
use crate::web::{self, cookies, message, page, redirect, set_cookie, CSRF_COOKIE};

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

impl GatewayApp {
    /// What the control plane (the dashboard) knows of this app.
    pub fn info(&self) -> crate::state::AppInfo {
        crate::state::AppInfo {
            name: self.name.clone(),
            hosts: self.hosts.clone(),
            environment: self.environment,
            spacefile: self.spacefile.clone(),
        }
    }
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
}

impl GatewayConfig {
    fn app_for(&self, host: &str) -> Option<&GatewayApp> {
        let host = host.to_ascii_lowercase();
        let bare = strip_port(&host);
        self.apps.iter().find(|a| a.hosts.iter().any(|h| *h == host || (!h.contains(':') && h == bare)))
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

impl<'a> Ctx<'a> {
    fn new(gw: &'a Gateway, app: &'a GatewayApp, host: String, peer: SocketAddr, req: &Request) -> Self {
        let state = &gw.state;
        let headers = req.headers();
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let fetch_mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
        Ctx {
            gw,
            app,
            https: is_https(state, headers, Some(peer)),
            client_ip: crate::netaddr::client_ip(peer.ip(), headers, &state.config.trusted_proxies),
            peer,
            browser: is_browser_navigation(req.method().as_str(), accept, fetch_mode),
            host,
        }
    }

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
        let mut html = message(status, title, &format!("{} ({})", title, status.as_u16()));
        // The challenge and rate-limit headers mean the same to a browser as to an API client.
        for name in ["www-authenticate", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            if let Some(v) = json.headers().get(name) {
                html.headers_mut().insert(name, v.clone());
            }
        }
        html
    }

    /// Cookies set on this host are `Secure` whenever it is served over HTTPS.
    fn secure(&self) -> bool {
        self.https || crate::login::deployment_https(self.state())
    }

    /// The sign-out form's CSRF token for this browser — bound to its app session `session` when it
    /// has one, so the form ends only that session — and the CSRF cookie to set when it had none.
    fn logout_csrf(&self, headers: &HeaderMap, session: Option<&KeyHash>) -> (String, Option<HeaderValue>) {
        let key = &self.state().web.csrf_key;
        let existing = cookies(headers, CSRF_COOKIE).find(|c| c.len() == 43).map(str::to_owned);
        let (cookie, fresh) = match existing {
            Some(c) => (c, false),
            None => (gatehouse_services::sessions::new_token().0, true),
        };
        let token = web::csrf_token_for(key, &cookie, session);
        (token, fresh.then(|| set_cookie(CSRF_COOKIE, &cookie, 86_400, self.secure())))
    }

    /// The 403 page for a signed-in person the app's access policy does not list (SPEC §15): who
    /// they are signed in as, and *Switch account* (sign out, then sign in again, back to this URL).
    fn not_allowed_page(
        &self,
        signed_in: &ActiveSession,
        headers: &HeaderMap,
        path: &NormalizedPath,
        query: Option<&str>,
    ) -> Response {
        let (csrf, csrf_cookie) = self.logout_csrf(headers, Some(&signed_in.session.id_hash));
        let return_to = match query {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        };
        let mut resp = page(
            StatusCode::FORBIDDEN,
            &pages::AppNotAllowed {
                title: "No access to this app",
                email: &signed_in.user.email,
                app: &self.app.name,
                csrf: &csrf,
                return_to: &return_to,
            },
        );
        if let Some(c) = csrf_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        crate::login::add_hsts(&mut resp, self.secure());
        resp
    }

    /// Sends a browser to the control plane's sign-in, bound to this browser: a fresh state cookie on
    /// this host (only sent to `/__gatehouse/`), whose hash the control plane puts into the ticket.
    /// On an HTTPS deployment or request the return URL is `https`, the cookie `Secure`, and HSTS is sent.
    fn login_redirect(&self, path: &NormalizedPath, query: Option<&str>) -> Response {
        let secure = self.secure();
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
    let mut outcome = Outcome { app: String::new(), decision: "invalid", credential: None, allowed: false };
    let ns = gw.state.config.namespace.clone();
    let (request_id, mut resp) = in_request_scope(ns, pipeline(&gw, peer, req, &mut outcome)).await;
    set_request_id(&mut resp, &request_id);
    if let Some(class) = usage_outcome(outcome.allowed, resp.status()).filter(|_| !outcome.app.is_empty()) {
        gw.state.usage.record(&outcome.app, outcome.credential.as_ref().map(Credential::usage), class);
    }
    let labels = gatehouse_services::metrics::GatewayLabels {
        app: outcome.app,
        decision: outcome.decision,
        status: resp.status().as_u16(),
    };
    gw.state.metrics.gateway_requests.get_or_create(&labels).inc();
    resp
}

/// What the pipeline decided, for the metrics and usage.
struct Outcome {
    app: String,
    decision: &'static str,
    /// The valid credential the request carried, once verified (usage counts per credential).
    credential: Option<Credential>,
    /// Every check passed and the request went on to the micro.
    allowed: bool,
}

pub(super) enum Credential {
    Key(Arc<gatehouse_services::verifier::CachedKey>),
    OAuth(Arc<gatehouse_services::oauth::ActiveToken>),
}

impl Credential {
    fn usage(&self) -> gatehouse_services::usage::CredentialRef<'_> {
        match self {
            Credential::Key(k) => gatehouse_services::usage::CredentialRef::ApiKey(&k.record.id),
            Credential::OAuth(t) => gatehouse_services::usage::CredentialRef::OAuthClient(&t.record.client_id),
        }
    }
}

/// The usage class of an answer: allowed when it went to the micro (whatever the micro answered,
/// 502/504 included), else 401/403/429. Other refusals (400 malformed, 404 unknown host, 503 storage
/// down, a redirect to sign-in) are not counted.
fn usage_outcome(allowed: bool, status: StatusCode) -> Option<gatehouse_store::usage::UsageOutcome> {
    use gatehouse_store::usage::UsageOutcome;
    match status.as_u16() {
        _ if allowed => Some(UsageOutcome::Allowed),
        401 => Some(UsageOutcome::Unauthorized),
        403 => Some(UsageOutcome::Forbidden),
        429 => Some(UsageOutcome::RateLimited),
        _ => None,
    }
}

/// The request phases in order (`phases`); each may answer early. The outcome labels the metrics.
async fn pipeline(gw: &Arc<Gateway>, peer: SocketAddr, req: Request, outcome: &mut Outcome) -> Response {
    match run_phases(gw, peer, req, outcome).await {
        Ok(resp) | Err(resp) => resp,
    }
}

async fn run_phases(
    gw: &Arc<Gateway>,
    peer: SocketAddr,
    mut req: Request,
    outcome: &mut Outcome,
) -> Result<Response, Response> {
    let state = &gw.state;
    let (app, host) = phases::resolve_app(&gw.config, &req).map_err(IntoResponse::into_response)?;
    outcome.app = app.name.clone();
    let ctx = Ctx::new(gw, app, host, peer, &req);
    let path = phases::normalize_path(&req).map_err(|e| ctx.error(e))?;
    if phases::own_page(&path) {
        outcome.decision = "gatehouse_page";
        return Ok(own_pages(&ctx, &path, req).await);
    }
    let (micro, rel) = phases::pick_micro(app, &path);
    let query = req.uri().query().map(str::to_owned);
    let (who, bearer_used) = {
        let presented =
            phases::Presented::read(req.headers(), &state.config.namespace, &state.sessions.cfg.cookie_name);
        let decision = phases::decide(micro, req.method().as_str(), &rel, &presented, ctx.browser);
        outcome.decision = phases::decision_label(&decision);
        let bearer_used = phases::bearer_used(&decision, &presented);
        (phases::authenticate(&ctx, decision, &presented, &path, query.as_deref()).await?, bearer_used)
    };
    // From here on a refusal (403, 429) is counted against the verified credential.
    outcome.credential = who.usage_credential();
    phases::authorize(app, &ctx.host, &who, req.method(), req.headers()).map_err(|e| ctx.error(e))?;
    phases::admit(&ctx, &who, req.headers(), &path, query.as_deref())?;
    phases::rate_limit(&ctx, &who).await.map_err(|e| ctx.error(e))?;
    let upstream = phases::upstream_of(app, micro).map_err(|e| ctx.error(e))?;
    let websocket = forward::is_websocket_upgrade(req.method(), req.headers());
    phases::upstream_request(&ctx, &who.into_identity(), bearer_used, &mut req);
    outcome.allowed = true;
    Ok(phases::forward_to(&ctx, micro, upstream, &rel, query.as_deref(), websocket, req).await)
}

#[derive(serde::Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    return_to: String,
}

/// The app host's sign-out form; `return_to` (a path on this host) is set by *Switch account*.
#[derive(Default, serde::Deserialize)]
struct AppLogoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    return_to: String,
}

/// `/__gatehouse/…` on an app host: the login callback and sign-out.
async fn own_pages(ctx: &Ctx<'_>, path: &NormalizedPath, req: Request) -> Response {
    let state = ctx.state();
    // Cookies set here are `Secure` and HSTS is sent whenever this host is served over HTTPS.
    let secure = ctx.secure();
    let mut resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/__gatehouse/callback") => {
            let q: CallbackQuery = match web::from_query(req.uri().query().unwrap_or("")).ok() {
                Some(q) => q,
                None => return message(StatusCode::BAD_REQUEST, "Sign in", "This sign-in link is malformed."),
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
                Ok(gatehouse_services::sessions::Redeemed::OtherBrowser) => {
                    page(StatusCode::BAD_REQUEST, &pages::OtherBrowser { title: "Sign in", back: &back })
                }
                Ok(gatehouse_services::sessions::Redeemed::Invalid) => message(
                    StatusCode::BAD_REQUEST,
                    "Sign in",
                    "This sign-in link has expired or was already used. Open the app again to sign in.",
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
            let live =
                match crate::login::live_sessions(state, req.headers(), &state.sessions.cfg.cookie_name, &ctx.host)
                    .await
                {
                    Ok(l) => l,
                    Err(_) => return ctx.error(ApiError::Unavailable),
                };
            let (token, csrf_cookie) = ctx.logout_csrf(req.headers(), live.first().map(|(_, h)| h));
            let mut resp = page(StatusCode::OK, &pages::AppLogout { title: "Sign out", csrf: &token });
            if let Some(c) = csrf_cookie {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        (Method::POST, "/__gatehouse/logout") => {
            let headers = req.headers().clone();
            let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
                Ok(b) => b,
                Err(_) => return ctx.error(ApiError::InvalidRequest("The form is too large.".into())),
            };
            let form: AppLogoutForm =
                web::from_query(std::str::from_utf8(&body).unwrap_or("")).ok().unwrap_or_default();
            // *Switch account* names where to come back to: a new sign-in from this host, bound to this browser.
            let then = if web::safe_local_path(&form.return_to) {
                format!("/__gatehouse/signin?return_to={}", url_encode(&form.return_to))
            } else {
                "/".to_owned()
            };
            end_session(state, &headers, ctx.peer, &form.csrf, &state.sessions.cfg.cookie_name, &ctx.host, &then).await
        }
        _ => ctx.error(ApiError::NotFound("No such Gatehouse page.".into())),
    };
    crate::login::add_hsts(&mut resp, secure);
    resp
}

/// A key of `kind` with `scopes` for the gateway's unit tests (no storage behind it).
#[cfg(test)]
fn test_key(
    id: &str,
    kind: gatehouse_core::KeyKind,
    scopes: gatehouse_core::ScopeSet,
) -> std::sync::Arc<gatehouse_services::verifier::CachedKey> {
    std::sync::Arc::new(gatehouse_services::verifier::CachedKey::synthetic(gatehouse_core::KeyRecord {
        id: id.into(),
        hash: gatehouse_core::KeyHash::of(id),
        name: "k".into(),
        workspace: "default".into(),
        environment: gatehouse_core::Environment::Live,
        kind,
        scopes,
        ip_allowlist: Default::default(),
        expires_at: None,
        app: None,
        rate_limit: None,
        metadata: Default::default(),
        display_prefix: String::new(),
        last4: String::new(),
        created_at: gatehouse_core::Timestamp::now(),
        created_by: "cli".into(),
        last_used_at: None,
        revoked_at: None,
        rolled_to: None,
    }))
}
