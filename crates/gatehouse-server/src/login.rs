//! The control plane's browser pages: sign in (`/login`), first-owner setup (`/setup`), sign out
//! (`/logout`). A sign-in for an app on another host ends with a one-time ticket that the app host
//! turns into its own cookie at `/__gatehouse/callback`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::pages;
use crate::state::AppState;
use crate::web::{
    cookies, csrf_ok, csrf_ok_for, csrf_token, message, page, parse_return_to, redirect, set_cookie, ReturnTo,
    CSRF_COOKIE,
};
use gatehouse_services::users::{SignIn, UserError};

type St = State<Arc<AppState>>;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    pub return_to: Option<String>,
    pub error: Option<String>,
    /// The hash of the app host's state cookie (hex), when an app host started this sign-in.
    pub state: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub return_to: String,
    #[serde(default)]
    pub state: String,
}

/// The browser binding an app host passed along (`state`, the hex SHA-256 of its state cookie).
pub(crate) fn parse_state(s: &str) -> Option<gatehouse_core::KeyHash> {
    gatehouse_core::KeyHash::from_hex(s)
}

/// Whether the deployment is served over HTTPS: it terminates TLS itself (`[tls]`), or its public URL
/// says so. Then every host is treated as HTTPS whatever an individual request looks like (a
/// TLS-terminating proxy in front).
pub(crate) fn deployment_https(state: &AppState) -> bool {
    state.config.tls || state.config.public_url.starts_with("https://")
}

/// Whether this request is to be answered as HTTPS: the deployment is, or the request came over TLS.
/// Then cookies are `Secure`, HSTS is sent, and absolute return URLs use `https`.
pub(crate) fn secure_context(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    deployment_https(state) || is_https(state, headers, peer)
}

/// `Strict-Transport-Security` for responses of an HTTPS deployment or request (SPEC §11 "TLS", §14).
pub(crate) fn add_hsts(resp: &mut Response, secure: bool) {
    if secure {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, axum::http::HeaderValue::from_static("max-age=31536000"));
    }
}

/// Middleware of the control plane: HSTS on every response of an HTTPS deployment or request.
pub(crate) async fn hsts_layer(
    State(state): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let secure = secure_context(&state, req.headers(), peer);
    let mut resp = next.run(req).await;
    add_hsts(&mut resp, secure);
    resp
}

/// Whether the browser reached us over HTTPS: our own listeners speak TLS (`[tls]`; the plain-HTTP
/// redirect listener never gets this far), or a trusted proxy says so.
pub(crate) fn is_https(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    if state.config.tls {
        return true;
    }
    let trusted = peer.is_some_and(|p| {
        state.config.trusted_proxies.iter().any(|n| n.contains(&gatehouse_core::ipallow::canonical(p.ip())))
    });
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The browser's CSRF cookie, or a fresh one to set with the page.
pub(crate) fn csrf_cookie(headers: &HeaderMap) -> (String, bool) {
    match cookies(headers, CSRF_COOKIE).find(|c| c.len() == 43) {
        Some(c) => (c.to_owned(), false),
        None => (gatehouse_services::sessions::new_token().0, true),
    }
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    https: bool,
    return_to: &str,
    browser: Option<&gatehouse_core::KeyHash>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (cookie, fresh) = csrf_cookie(headers);
    let token = csrf_token(&state.web.csrf_key, &cookie);
    let state_hex = browser.map(|b| b.to_hex()).unwrap_or_default();
    let providers = provider_buttons(state, return_to, &state_hex);
    let mut resp = page(
        status,
        &pages::Login {
            title: "Sign in",
            error,
            csrf: &token,
            return_to,
            state: &state_hex,
            providers: &providers,
            password_login: state.config.password_login,
        },
    );
    if fresh {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &cookie, 86_400, https));
    }
    resp
}

/// One `Continue with …` link per identity provider, carrying the sign-in's `return_to` and the app
/// host's browser binding (`state`) to `/login/<id>`.
fn provider_buttons(state: &AppState, return_to: &str, browser_hex: &str) -> Vec<pages::ProviderButton> {
    state
        .idp
        .all()
        .iter()
        .map(|p| {
            let mut href = format!("/login/{}", p.config.id);
            let mut sep = '?';
            for (name, value) in [("return_to", return_to), ("state", browser_hex)] {
                if !value.is_empty() {
                    href.push(sep);
                    href.push_str(name);
                    href.push('=');
                    href.push_str(&utf8_percent_encode(value, QUERY_COMPONENT).to_string());
                    sep = '&';
                }
            }
            pages::ProviderButton { href, name: p.config.display_name.clone() }
        })
        .collect()
}

/// Where to send a signed-in browser: straight to a local path, or via a ticket to an app host. A
/// ticket is only issued for a sign-in the app host started (its state cookie's hash in `browser`);
/// otherwise the browser is sent to the app host to start one, which comes straight back here.
///
/// On HTTPS the scheme of the return URL is always `https`, whatever the link said: a ticket never
/// travels over plain HTTP from a deployment that has TLS.
pub(crate) async fn continue_to(
    state: &AppState,
    login_hash: &gatehouse_core::KeyHash,
    return_to: Option<ReturnTo>,
    browser: Option<gatehouse_core::KeyHash>,
    secure: bool,
) -> Response {
    match return_to {
        Some(ReturnTo::App { scheme, host, path }) if host != state.web.cp_host => {
            let scheme = if secure { "https" } else { scheme.as_str() };
            let Some(browser) = browser else {
                return redirect(
                    StatusCode::SEE_OTHER,
                    &format!("{scheme}://{host}/__gatehouse/signin?return_to={}", url_encode(&path)),
                );
            };
            match state.sessions.issue_ticket(login_hash, &host, &browser).await {
                Ok(ticket) => {
                    let rt: String = url_encode(&path);
                    redirect(
                        StatusCode::SEE_OTHER,
                        &format!("{scheme}://{host}/__gatehouse/callback?ticket={ticket}&return_to={rt}"),
                    )
                }
                Err(e) => unavailable(e),
            }
        }
        Some(ReturnTo::App { path, .. }) | Some(ReturnTo::Local(path)) => redirect(StatusCode::SEE_OTHER, &path),
        None => redirect(StatusCode::SEE_OTHER, "/"),
    }
}

/// What `url_encode` leaves as is: the RFC 3986 unreserved characters, plus `/` so a path stays readable.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Like `QUERY_VALUE` but `/` too is escaped (a value inside a client's redirect URI).
pub(crate) const QUERY_COMPONENT: &AsciiSet = &QUERY_VALUE.add(b'/');

/// Percent-encodes everything but unreserved characters and `/` (for a query parameter value).
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "storage unavailable during sign-in");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "Gatehouse cannot reach its storage right now. Nothing was changed.",
    )
}

/// The signed-in control-plane session of this browser (with its user), if any.
pub(crate) async fn current_login(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<gatehouse_services::sessions::ActiveSession>>, gatehouse_store::StoreError> {
    for c in cookies(headers, &state.sessions.cfg.cp_cookie_name) {
        if let Some(active) = state.sessions.lookup(c, &state.web.cp_host).await? {
            return Ok(Some(active));
        }
    }
    Ok(None)
}

pub(crate) async fn get_login(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let https = secure_context(&state, &headers, Some(peer));
    let rt_raw = q.return_to.clone().unwrap_or_default();
    let rt = if rt_raw.is_empty() { None } else { parse_return_to(&rt_raw, &state.web.known_hosts()) };
    let browser = q.state.as_deref().and_then(parse_state);
    if !rt_raw.is_empty() && rt.is_none() {
        return login_page(
            &state,
            &headers,
            https,
            "",
            None,
            Some("That return address is not one Gatehouse serves; sign in to continue here."),
            StatusCode::BAD_REQUEST,
        );
    }
    match current_login(&state, &headers).await {
        Ok(Some(login)) if rt.is_some() => {
            return continue_to(&state, &login.session.id_hash, rt, browser, https).await
        }
        Ok(_) => {}
        Err(e) => return unavailable(e),
    }
    login_page(
        &state,
        &headers,
        https,
        &rt_raw,
        browser.as_ref(),
        q.error.as_deref().map(|_| "Sign in to continue."),
        StatusCode::OK,
    )
}

pub(crate) async fn post_login(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let https = secure_context(&state, &headers, Some(peer));
    if !state.config.password_login {
        return message(
            StatusCode::FORBIDDEN,
            "Sign in",
            "Password sign-in is turned off here. Go back and continue with your identity provider.",
        );
    }
    let browser = parse_state(&form.state);
    let csrf = cookies(&headers, CSRF_COOKIE).find(|c| c.len() == 43);
    if !csrf_ok(&state.web.csrf_key, csrf, &form.csrf) {
        return login_page(
            &state,
            &headers,
            https,
            &form.return_to,
            browser.as_ref(),
            Some("The form expired; please sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let rt = if form.return_to.is_empty() { None } else { parse_return_to(&form.return_to, &state.web.known_hosts()) };
    if !form.return_to.is_empty() && rt.is_none() {
        return login_page(
            &state,
            &headers,
            https,
            "",
            None,
            Some("That return address is not one Gatehouse serves."),
            StatusCode::BAD_REQUEST,
        );
    }
    let ip = crate::netaddr::client_ip(peer.ip(), &headers, &state.config.trusted_proxies);
    match state.users.sign_in(&form.email, &form.password, Some(ip)).await {
        Ok(SignIn::Ok(user)) => {
            let (cookie, hash) = match state.sessions.create_login(&user, &state.web.cp_host, vec![]).await {
                Ok(x) => x,
                Err(e) => return unavailable(e),
            };
            tracing::info!(user = %user.id, "signed in");
            let mut resp = continue_to(&state, &hash, rt, browser, https).await;
            let max_age = state.sessions.cfg.absolute.as_secs() as i64;
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(&state.sessions.cfg.cp_cookie_name, &cookie, max_age, https));
            resp
        }
        Ok(SignIn::Wrong) => login_page(
            &state,
            &headers,
            https,
            &form.return_to,
            browser.as_ref(),
            Some("Wrong email or password."),
            StatusCode::UNAUTHORIZED,
        ),
        Ok(SignIn::Throttled(wait)) => {
            let mut resp = login_page(
                &state,
                &headers,
                https,
                &form.return_to,
                browser.as_ref(),
                Some(&format!("Too many failed attempts. Try again in {} s.", wait.as_secs().max(1))),
                StatusCode::TOO_MANY_REQUESTS,
            );
            resp.headers_mut().insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
            resp
        }
        Ok(SignIn::Busy) => {
            let mut resp = login_page(
                &state,
                &headers,
                https,
                &form.return_to,
                browser.as_ref(),
                Some("Gatehouse is busy; try again in a moment."),
                StatusCode::SERVICE_UNAVAILABLE,
            );
            resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
            resp
        }
        Err(e) => unavailable(e),
    }
}

/// The control plane's landing page for a signed-in browser.
/// `/` on the control plane: the dashboard once signed in (SPEC §12), else the sign-in page.
pub(crate) async fn home(State(state): St, headers: HeaderMap) -> Response {
    match current_login(&state, &headers).await {
        Ok(Some(_)) => redirect(StatusCode::FOUND, "/dashboard"),
        Ok(None) => redirect(StatusCode::FOUND, "/login"),
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Ends the browser's login on the control plane and every app session it opened.
pub(crate) async fn post_logout(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (name, host) = (&state.sessions.cfg.cp_cookie_name, &state.web.cp_host);
    let live = match live_sessions(&state, &headers, name, host).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let mut resp = end_session(&state, &headers, peer, &form.csrf, name, host, "/login").await;
    if resp.status() != StatusCode::SEE_OTHER {
        return resp;
    }
    // The login just ended came from an identity provider with sign-out there: continue to it.
    for (cookie, hash) in live {
        if matches!(state.sessions.lookup(cookie, host).await, Ok(Some(_))) {
            continue;
        }
        let Ok(Some((provider, id_token))) = state.store.take_provider_login(&hash).await else { continue };
        let back = format!("{}/login", state.web.cp_origin);
        if let Some(url) = state.idp.end_session_url(&provider, &id_token, &back).await {
            if let Ok(v) = axum::http::HeaderValue::from_str(&url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
    }
    resp
}

/// The live sessions behind the browser's `cookie_name` cookies on `host`, as (cookie, id hash).
pub(crate) async fn live_sessions<'a>(
    state: &AppState,
    headers: &'a HeaderMap,
    cookie_name: &'a str,
    host: &str,
) -> Result<Vec<(&'a str, gatehouse_core::KeyHash)>, gatehouse_store::StoreError> {
    let mut live = vec![];
    for c in cookies(headers, cookie_name) {
        if let Some(a) = state.sessions.lookup(c, host).await? {
            live.push((c, a.session.id_hash));
        }
    }
    Ok(live)
}

/// Shared by the control plane and app hosts: CSRF check, end the session family, clear the cookie.
/// With a live session the token must be the one bound to it (a pair from another browser, or a
/// pre-login token, is refused); only the session the token belongs to is ended.
pub(crate) async fn end_session(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    csrf: &str,
    cookie_name: &str,
    host: &str,
    then: &str,
) -> Response {
    let https = secure_context(state, headers, Some(peer));
    let csrf_cookie = cookies(headers, CSRF_COOKIE).find(|c| c.len() == 43);
    let live = match live_sessions(state, headers, cookie_name, host).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let refused = || message(StatusCode::FORBIDDEN, "Sign out", "The form expired. Go back and try again.");
    if live.is_empty() {
        // Nothing to end (already signed out): the pre-login token suffices to clear the cookie.
        if !csrf_ok(&state.web.csrf_key, csrf_cookie, csrf) {
            return refused();
        }
    } else {
        let Some((cookie, _)) = live.iter().find(|(_, h)| csrf_ok_for(&state.web.csrf_key, csrf_cookie, Some(h), csrf))
        else {
            return refused();
        };
        if let Err(e) = state.sessions.end(cookie).await {
            return unavailable(e);
        }
    }
    let mut resp = redirect(StatusCode::SEE_OTHER, then);
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(cookie_name, "", 0, https));
    resp
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SetupQuery {
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetPasswordForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub confirm: String,
}

fn set_password_page(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let https = secure_context(state, headers, None);
    let (cookie, fresh) = csrf_cookie(headers);
    let csrf = csrf_token(&state.web.csrf_key, &cookie);
    let mut resp = page(status, &pages::SetPassword { title: "Set your password", error, csrf: &csrf, token });
    if fresh {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &cookie, 86_400, https));
    }
    resp
}

fn password_link_invalid() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Set your password",
        "This link is not valid: it works once, for a limited time. Ask an owner or an admin for a new one.",
    )
}

/// `GET /set-password?token=…`: the form of a one-time set-password link, if the link is usable.
pub(crate) async fn get_set_password(State(state): St, headers: HeaderMap, Query(q): Query<SetupQuery>) -> Response {
    let token = q.token.unwrap_or_default();
    match state.users.password_link_valid(&token).await {
        Ok(true) => set_password_page(&state, &headers, &token, None, StatusCode::OK),
        Ok(false) => password_link_invalid(),
        Err(e) => unavailable(e),
    }
}

/// `POST /set-password`: spends the link and sets the password (every session of the user ends).
pub(crate) async fn post_set_password(
    State(state): St,
    headers: HeaderMap,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    if !csrf_ok(&state.web.csrf_key, cookies(&headers, CSRF_COOKIE).find(|c| c.len() == 43), &form.csrf) {
        return set_password_page(
            &state,
            &headers,
            &form.token,
            Some("The form expired; try again."),
            StatusCode::FORBIDDEN,
        );
    }
    if form.password != form.confirm {
        let e = Some("The two passwords differ.");
        return set_password_page(&state, &headers, &form.token, e, StatusCode::BAD_REQUEST);
    }
    match state.users.redeem_password_link(&form.token, &form.password).await {
        Ok(_) => redirect(StatusCode::SEE_OTHER, "/login"),
        Err(UserError::InvalidLink) => password_link_invalid(),
        Err(UserError::Password(rule)) => {
            set_password_page(&state, &headers, &form.token, Some(&rule.to_string()), StatusCode::BAD_REQUEST)
        }
        Err(UserError::Busy) => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Set your password", "The server is busy; try again in a moment.")
        }
        Err(UserError::Store(e)) => unavailable(e),
        Err(_) => password_link_invalid(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetupForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf: String,
}

fn setup_page(state: &AppState, headers: &HeaderMap, token: &str, error: Option<&str>, status: StatusCode) -> Response {
    let https = secure_context(state, headers, None);
    let (cookie, fresh) = csrf_cookie(headers);
    let csrf = csrf_token(&state.web.csrf_key, &cookie);
    let mut resp = page(status, &pages::Setup { title: "Set up Gatehouse", error, csrf: &csrf, token });
    if fresh {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &cookie, 86_400, https));
    }
    resp
}

fn setup_link_invalid() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Set up Gatehouse",
        "This setup link is not valid (it works once, until an owner exists).",
    )
}

fn setup_token_ok(state: &AppState, token: &str) -> bool {
    state
        .web
        .setup_token
        .lock()
        .as_deref()
        .is_some_and(|t| subtle::ConstantTimeEq::ct_eq(t.as_bytes(), token.as_bytes()).into())
}

pub(crate) async fn get_setup(State(state): St, headers: HeaderMap, Query(q): Query<SetupQuery>) -> Response {
    let token = q.token.unwrap_or_default();
    if !setup_token_ok(&state, &token) {
        return setup_link_invalid();
    }
    setup_page(&state, &headers, &token, None, StatusCode::OK)
}

pub(crate) async fn post_setup(State(state): St, headers: HeaderMap, Form(form): Form<SetupForm>) -> Response {
    if !setup_token_ok(&state, &form.token) {
        return setup_link_invalid();
    }
    if !csrf_ok(&state.web.csrf_key, cookies(&headers, CSRF_COOKIE).find(|c| c.len() == 43), &form.csrf) {
        return setup_page(&state, &headers, &form.token, Some("The form expired; try again."), StatusCode::FORBIDDEN);
    }
    match state.users.create_owner(&form.email, &form.password, "setup").await {
        Ok(_) => {
            *state.web.setup_token.lock() = None;
            redirect(StatusCode::SEE_OTHER, "/login")
        }
        Err(e) => setup_failed(&state, &headers, &form.token, e),
    }
}

/// The answer to a setup that created nothing: the form again with what to fix for bad input, 503 when
/// it is worth retrying. A storage failure gets the generic storage page, so no store message (table
/// names, addresses) reaches a browser that has only a setup link.
fn setup_failed(state: &AppState, headers: &HeaderMap, token: &str, e: UserError) -> Response {
    match e {
        UserError::InvalidEmail(_)
        | UserError::InvalidRole(_)
        | UserError::Password(_)
        | UserError::EmailTaken(_)
        | UserError::NoSuchUser(_)
        | UserError::LastOwner(_)
        | UserError::NotAllowed(_)
        | UserError::InvalidLink => setup_page(state, headers, token, Some(&e.to_string()), StatusCode::BAD_REQUEST),
        UserError::Busy => {
            let mut resp = setup_page(
                state,
                headers,
                token,
                Some("Gatehouse is busy; try again in a moment."),
                StatusCode::SERVICE_UNAVAILABLE,
            );
            resp.headers_mut().insert(header::RETRY_AFTER, 1.into());
            resp
        }
        UserError::Store(e) => unavailable(e),
    }
}

/// `GET /.well-known/jwks.json`: the keys that sign identity assertions (and, later, tokens).
pub(crate) async fn jwks(State(state): St) -> Response {
    let mut resp = axum::response::IntoResponse::into_response(axum::Json(state.web.signer.jwks()));
    resp.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("public, max-age=300"));
    resp
}
