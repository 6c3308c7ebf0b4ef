//! The OAuth endpoints on the control plane: `/oauth/authorize` (GET shows consent, POST decides),
//! `/oauth/token`, `/oauth/revoke` (RFC 7009), `/oauth/introspect` (RFC 7662), the RFC 8414
//! metadata, and the signed-in user's own list of authorized apps (`/v1/me/authorizations`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gatehouse_core::credentials::{AuthorizationHeader, Credential};
use gatehouse_core::oauth::{pkce_s256_ok, redirect_uri_matches, valid_challenge};
use gatehouse_core::{ApiKey, KeyHash, Scope, Timestamp, VerifyContext};
use gatehouse_store::oauth::{
    ClientRecord, CodeOutcome, CodeRecord, NewGrant, RefreshOutcome, RefreshRequest, TokenKind,
};
use gatehouse_store::{StoreError, UserRecord};

use super::error::{no_store, OAuthError};
use crate::error::masked;
use crate::extract::ApiPath;
use crate::login::{csrf_cookie, current_login, is_https, unavailable, url_encode};
use crate::pages;
use crate::state::AppState;
use crate::web::{cookies, csrf_ok_for, csrf_token_for, message, page, redirect, set_cookie, CSRF_COOKIE};
use gatehouse_services::audit::RequestMeta;
use gatehouse_services::oauth::{new_code, requested_scopes};

type St = State<Arc<AppState>>;

/// Parameters of a form or query string. A parameter given twice is refused (RFC 6749 §3.1, §3.2).
pub(crate) fn params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(raw).map_err(|_| "the parameters are not valid form encoding".to_owned())?;
    let mut out = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if out.contains_key(&k) {
            return Err(format!("the parameter `{}` is given more than once", k.chars().take(40).collect::<String>()));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn meta(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> RequestMeta {
    RequestMeta {
        request_id: Some(crate::error::current_request_id()),
        ip: Some(crate::netaddr::client_ip(peer.ip(), headers, &state.config.trusted_proxies).to_string()),
    }
}

// ---- /oauth/authorize ----------------------------------------------------------------------------

/// A validated authorization request.
struct Authz {
    client: ClientRecord,
    redirect_uri: String,
    redirect_given: bool,
    state: Option<String>,
    scopes: Vec<String>,
    code_challenge: String,
    prompt: Option<String>,
}

/// Where an invalid authorization request is answered.
enum AuthzFail {
    /// The client or redirect URI cannot be trusted: an error page, never a redirect.
    Page(String),
    /// Back to the client with `error` (RFC 6749 §4.1.2.1).
    Redirect { to: String, state: Option<String>, error: &'static str, description: String },
}

fn check_authz(p: &HashMap<String, String>, client: Option<ClientRecord>) -> Result<Authz, AuthzFail> {
    let Some(client) = client else {
        return Err(AuthzFail::Page(
            "This application is not registered with Gatehouse (unknown or disabled client_id).".into(),
        ));
    };
    let given = p.get("redirect_uri");
    let redirect_uri = match given {
        Some(u) => match client.redirect_uris.iter().find(|r| redirect_uri_matches(r, u)) {
            Some(_) => u.clone(),
            None => return Err(AuthzFail::Page("The redirect_uri is not one registered for this application.".into())),
        },
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(AuthzFail::Page("This application must say which redirect_uri to use.".into())),
    };
    let state = p.get("state").cloned();
    let fail = |error, description: &str| AuthzFail::Redirect {
        to: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required")),
        Some(_) => return Err(fail("unsupported_response_type", "only response_type=code is supported")),
    }
    let Some(challenge) = p.get("code_challenge") else {
        return Err(fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256"));
    };
    match p.get("code_challenge_method").map(String::as_str) {
        Some("S256") => {}
        None | Some("plain") => {
            return Err(fail("invalid_request", "code_challenge_method must be S256 (plain is not accepted)"))
        }
        Some(_) => return Err(fail("invalid_request", "code_challenge_method must be S256")),
    }
    if !valid_challenge(challenge) {
        return Err(fail("invalid_request", "code_challenge must be 43 characters of base64url (an S256 hash)"));
    }
    let scopes =
        requested_scopes(p.get("scope").map(String::as_str), &client.scopes).map_err(|e| fail("invalid_scope", &e))?;
    if scopes.is_empty() {
        return Err(fail("invalid_scope", "no scope was requested and the client has none allowed"));
    }
    Ok(Authz {
        redirect_given: given.is_some(),
        state,
        scopes,
        code_challenge: challenge.clone(),
        prompt: p.get("prompt").cloned(),
        redirect_uri,
        client,
    })
}

/// Keeps the scopes the signed-in user's role lets them delegate (SPEC §12): an app gets no more of
/// the management API than the person using it has. Nothing left is `invalid_scope`.
fn narrow_to_role(a: &mut Authz, user: &UserRecord) -> Result<(), AuthzFail> {
    a.scopes = gatehouse_services::oauth::delegable(user, &a.scopes);
    if a.scopes.is_empty() {
        let description = format!("your account's role ({}) cannot authorize any of the requested scopes", user.role);
        return Err(AuthzFail::Redirect {
            to: a.redirect_uri.clone(),
            state: a.state.clone(),
            error: "invalid_scope",
            description,
        });
    }
    Ok(())
}

/// Adds query parameters to a redirect URI that may already have a query.
fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_owned();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(v, crate::login::QUERY_COMPONENT));
        sep = '&';
    }
    out
}

fn fail_response(state: &AppState, f: AuthzFail, status: StatusCode) -> Response {
    match f {
        AuthzFail::Page(msg) => message(StatusCode::BAD_REQUEST, "Cannot continue", &masked(&msg)),
        AuthzFail::Redirect { to, state: st, error, description } => {
            let iss = state.web.cp_origin.clone();
            // The description may quote a parameter (a scope); a credential pasted there goes back masked.
            let description = masked(&description);
            let mut ps = vec![("error", error), ("error_description", description.as_str())];
            if let Some(s) = &st {
                ps.push(("state", s));
            }
            ps.push(("iss", &iss));
            redirect(status, &with_params(&to, &ps))
        }
    }
}

async fn load_client(state: &AppState, p: &HashMap<String, String>) -> Result<Option<ClientRecord>, Response> {
    let Some(id) = p.get("client_id") else { return Ok(None) };
    match state.oauth.get_client(id).await {
        Ok(c) if c.disabled_at.is_none() => Ok(Some(c)),
        Ok(_)
        | Err(gatehouse_services::ServiceError::NotFound(_))
        | Err(gatehouse_services::ServiceError::Invalid(_)) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// Issues a code for `a` and sends the browser back to the client.
async fn issue_code(state: &AppState, a: &Authz, user: &UserRecord, status: StatusCode) -> Response {
    let (code, hash) = new_code();
    let now = Timestamp::now();
    let record = CodeRecord {
        code_hash: hash,
        client_id: a.client.id.clone(),
        user_id: user.id.clone(),
        redirect_uri: a.redirect_uri.clone(),
        redirect_given: a.redirect_given,
        scopes: a.scopes.clone(),
        code_challenge: a.code_challenge.clone(),
        created_at: now,
        expires_at: now.plus_millis(state.oauth.cfg.code_ttl.as_millis() as i64),
        used_at: None,
        grant_id: None,
    };
    if let Err(e) = state.store.insert_code(&record).await {
        return unavailable(e);
    }
    let iss = state.web.cp_origin.clone();
    let mut ps = vec![("code", code.as_str())];
    if let Some(s) = &a.state {
        ps.push(("state", s));
    }
    ps.push(("iss", &iss));
    redirect(status, &with_params(&a.redirect_uri, &ps))
}

/// The consent form's CSRF token is bound to the control-plane session it is shown to (SPEC §11), so
/// a (cookie, token) pair taken from one session is worthless with another.
fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    a: &Authz,
    user: &UserRecord,
    session: &KeyHash,
    https: bool,
) -> Response {
    let (cookie, fresh) = csrf_cookie(headers);
    let token = csrf_token_for(&state.web.csrf_key, &cookie, Some(session));
    let scope = a.scopes.join(" ");
    let mut fields = vec![("csrf", token.as_str()), ("response_type", "code"), ("client_id", a.client.id.as_str())];
    if a.redirect_given {
        fields.push(("redirect_uri", &a.redirect_uri));
    }
    fields.push(("scope", &scope));
    if let Some(s) = &a.state {
        fields.push(("state", s));
    }
    fields.push(("code_challenge", &a.code_challenge));
    fields.push(("code_challenge_method", "S256"));
    let host = a
        .redirect_uri
        .split_once("://")
        .map_or(a.redirect_uri.as_str(), |(_, r)| r.split(['/', '?']).next().unwrap_or(r));
    let consent = pages::Consent {
        title: "Authorize an application",
        client: &a.client.name,
        email: &user.email,
        scopes: &a.scopes,
        host,
        fields,
    };
    let mut resp = page(StatusCode::OK, &consent);
    if fresh {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, &cookie, 86_400, https));
    }
    resp
}

/// `GET /oauth/authorize`.
pub(crate) async fn authorize_get(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let raw = uri.query().unwrap_or("");
    let p = match params(raw.as_bytes()) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Cannot continue", &masked(&e)),
    };
    let client = match load_client(&state, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut a = match check_authz(&p, client) {
        Ok(a) => a,
        Err(f) => return fail_response(&state, f, StatusCode::FOUND),
    };
    let login = match current_login(&state, &headers).await {
        Ok(login) => login,
        Err(e) => return unavailable(e),
    };
    let Some(login) = login else {
        if a.prompt.as_deref() == Some("none") {
            return fail_response(
                &state,
                AuthzFail::Redirect {
                    to: a.redirect_uri,
                    state: a.state,
                    error: "login_required",
                    description: "the user is not signed in".into(),
                },
                StatusCode::FOUND,
            );
        }
        let back = format!("/oauth/authorize?{raw}");
        return redirect(StatusCode::FOUND, &format!("/login?return_to={}", url_encode(&back)));
    };
    let user = login.user.clone();
    if let Err(f) = narrow_to_role(&mut a, &user) {
        return fail_response(&state, f, StatusCode::FOUND);
    }
    let remembered = match state.store.consent(&user.id, &a.client.id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return unavailable(e),
    };
    let covered = a.scopes.iter().all(|s| remembered.contains(s));
    if covered && a.prompt.as_deref() != Some("consent") {
        return issue_code(&state, &a, &user, StatusCode::FOUND).await;
    }
    if a.prompt.as_deref() == Some("none") {
        return fail_response(
            &state,
            AuthzFail::Redirect {
                to: a.redirect_uri,
                state: a.state,
                error: "consent_required",
                description: "the user has not authorized these scopes".into(),
            },
            StatusCode::FOUND,
        );
    }
    consent_page(&state, &headers, &a, &user, &login.session.id_hash, is_https(&state, &headers, Some(peer)))
}

/// `POST /oauth/authorize`: the consent form's answer.
pub(crate) async fn authorize_post(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match params(&body) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Cannot continue", &masked(&e)),
    };
    let csrf = cookies(&headers, CSRF_COOKIE).find(|c| c.len() == 43);
    let submitted = p.get("csrf").map_or("", String::as_str);
    let login = match current_login(&state, &headers).await {
        Ok(Some(login)) => login,
        Ok(None) => {
            return message(
                StatusCode::UNAUTHORIZED,
                "Cannot continue",
                "You are no longer signed in. Go back to the application and start again.",
            )
        }
        Err(e) => return unavailable(e),
    };
    // The token must have been minted for this very session (SPEC §11): one copied from another
    // session's consent page, with its cookie, is refused.
    if !csrf_ok_for(&state.web.csrf_key, csrf, Some(&login.session.id_hash), submitted) {
        return message(
            StatusCode::FORBIDDEN,
            "Cannot continue",
            "The form expired. Go back to the application and start again.",
        );
    }
    let user = login.user.clone();
    let client = match load_client(&state, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut a = match check_authz(&p, client) {
        Ok(a) => a,
        Err(f) => return fail_response(&state, f, StatusCode::SEE_OTHER),
    };
    if let Err(f) = narrow_to_role(&mut a, &user) {
        return fail_response(&state, f, StatusCode::SEE_OTHER);
    }
    if p.get("decision").map(String::as_str) != Some("allow") {
        let f = AuthzFail::Redirect {
            to: a.redirect_uri,
            state: a.state,
            error: "access_denied",
            description: "the user denied the request".into(),
        };
        return fail_response(&state, f, StatusCode::SEE_OTHER);
    }
    let mut scopes = match state.store.consent(&user.id, &a.client.id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return unavailable(e),
    };
    for s in &a.scopes {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    if let Err(e) = state.store.save_consent(&user.id, &a.client.id, &scopes, Timestamp::now()).await {
        return unavailable(e);
    }
    tracing::info!(user = %user.id, client = %a.client.id, request_id = %meta(&state, &headers, peer).request_id.unwrap_or_default(), "consent given");
    issue_code(&state, &a, &user, StatusCode::SEE_OTHER).await
}

// ---- client authentication ---------------------------------------------------------------------

/// Decodes one `application/x-www-form-urlencoded` value: the user or the password of Basic client
/// credentials (RFC 6749 §2.3.1). The whole string is the value, so a raw `&` or `=` is part of it (it
/// used to end it, and `secret&anything` authenticated as `secret`). `None` unless it decodes to UTF-8:
/// a lossy decoding could make two different secrets equal.
fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8().ok().map(|v| v.into_owned())
}

/// The authenticated client of a token/revoke/introspect request.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<Arc<ClientRecord>, OAuthError> {
    let (id, secret) = match crate::credentials::authorization(headers) {
        AuthorizationHeader::Repeated => return Err(OAuthError::invalid_request("send one Authorization header")),
        AuthorizationHeader::One(Credential::Basic(payload)) => {
            let basic = payload.decode().ok_or_else(OAuthError::invalid_client)?;
            let password = basic.password.ok_or_else(OAuthError::invalid_client)?;
            let (u, pw) = (
                form_decode(&basic.user).ok_or_else(OAuthError::invalid_client)?,
                form_decode(password.expose()).ok_or_else(OAuthError::invalid_client)?,
            );
            if p.contains_key("client_secret") {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not Basic and client_secret together",
                ));
            }
            if p.get("client_id").is_some_and(|c| *c != u) {
                return Err(OAuthError::invalid_request("client_id differs from the Basic credentials"));
            }
            (u, Some(pw))
        }
        AuthorizationHeader::One(Credential::Bearer(_) | Credential::Other) => return Err(OAuthError::invalid_client()),
        AuthorizationHeader::Absent => match p.get("client_id") {
            Some(id) => (id.clone(), p.get("client_secret").cloned()),
            None => return Err(OAuthError::invalid_client()),
        },
    };
    match state.oauth.authenticate_client(&id, secret.as_deref()).await? {
        Some(c) => Ok(c),
        None => {
            tracing::info!(client = %crate::error::masked(&id.chars().take(40).collect::<String>()), "oauth client authentication failed");
            Err(OAuthError::invalid_client())
        }
    }
}

fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded"));
    }
    params(body).map_err(OAuthError::invalid_request)
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    p.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

fn json_no_store(status: StatusCode, value: impl serde::Serialize) -> Response {
    let mut resp = (status, Json(value)).into_response();
    no_store(resp.headers_mut());
    resp
}

// ---- /oauth/token --------------------------------------------------------------------------------

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match token_inner(&state, &headers, peer, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn token_inner(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let p = form_body(headers, body)?;
    let grant_type = required(&p, "grant_type")?.to_owned();
    let client = authenticate(state, headers, &p).await?;
    let resp = match grant_type.as_str() {
        "authorization_code" => code_grant(state, headers, peer, &client, &p).await?,
        "refresh_token" => refresh_grant(state, headers, peer, &client, &p).await?,
        "client_credentials" => client_credentials(state, headers, peer, &client, &p).await?,
        _ => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "supported: authorization_code, refresh_token, client_credentials",
            ))
        }
    };
    Ok(json_no_store(StatusCode::OK, resp))
}

async fn code_grant(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    client: &ClientRecord,
    p: &HashMap<String, String>,
) -> Result<gatehouse_services::oauth::TokenResponse, OAuthError> {
    let code = required(p, "code")?;
    let verifier =
        required(p, "code_verifier").map_err(|_| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    let hash = KeyHash::of(code);
    let bad = || {
        OAuthError::invalid_grant("The authorization code is invalid, expired, already used, or was issued to another client or redirect URI.")
    };
    let Some(rec) = state.store.code_by_hash(&hash).await? else { return Err(bad()) };
    let now = Timestamp::now();
    if rec.used_at.is_none() {
        let redirect_ok = match p.get("redirect_uri") {
            Some(u) => *u == rec.redirect_uri,
            None => !rec.redirect_given,
        };
        if rec.client_id != client.id || !redirect_ok || !pkce_s256_ok(verifier, &rec.code_challenge) {
            // A failed check spends the code: whoever holds it cannot try again.
            state.store.burn_code(&hash, now).await?;
            return Err(bad());
        }
        if rec.expires_at <= now {
            return Err(bad());
        }
    } else {
        // A spent code revokes what it issued only when its own client presents it, authenticated as
        // that client (SPEC §11): a confidential client by its secret (already checked), a public one
        // by the PKCE verifier. Anyone else holding the code learns nothing and changes nothing.
        let own = rec.client_id == client.id && (client.confidential || pkce_s256_ok(verifier, &rec.code_challenge));
        if !own {
            tracing::info!(client = %client.id, "a spent authorization code was presented by another party; ignored");
            return Err(bad());
        }
    }
    let user = match state.store.user_by_id(&rec.user_id).await? {
        Some(u) if u.disabled_at.is_none() => u,
        _ => return Err(bad()),
    };
    // What the user and client may still grant now, not only when the code was issued.
    let scopes = gatehouse_services::oauth::still_allowed(&rec.scopes, client, Some(&user));
    if scopes.is_empty() {
        return Err(bad());
    }
    let grant = state.oauth.new_grant(client, Some(&user), "authorization_code", &scopes);
    let (resp, tokens) =
        state.oauth.mint(client, &grant.id, Some(&user), &scopes, Some(&scopes), None, &state.web.signer);
    let m = meta(state, headers, peer);
    let audit = state.oauth.audit(
        client.environment,
        &format!("user:{}", user.id),
        &m,
        "oauth.grant.created",
        "oauth_grant",
        &grant.id,
        serde_json::json!({"client_id": client.id, "scopes": scopes, "grant_type": "authorization_code"}),
    );
    let replay_audit = state.oauth.audit(
        client.environment,
        &client.id,
        &m,
        "oauth.grant.revoked",
        "oauth_grant",
        rec.grant_id.as_deref().unwrap_or(""),
        serde_json::json!({"reason": "authorization_code_replayed", "client_id": client.id}),
    );
    match state.store.redeem_code(&hash, now, &grant, &tokens, &audit, &replay_audit).await? {
        CodeOutcome::Redeemed => Ok(resp),
        CodeOutcome::Replayed { grant_id } => {
            if let Some(g) = &grant_id {
                state.oauth.forget_grant(g);
            }
            tracing::warn!(client = %client.id, grant = ?grant_id, "authorization code replayed; the tokens it issued are revoked");
            Err(bad())
        }
        CodeOutcome::Invalid => Err(bad()),
    }
}

async fn refresh_grant(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    client: &ClientRecord,
    p: &HashMap<String, String>,
) -> Result<gatehouse_services::oauth::TokenResponse, OAuthError> {
    let presented = required(p, "refresh_token")?;
    let hash = KeyHash::of(presented);
    let bad = || {
        OAuthError::invalid_grant("The refresh token is invalid, expired, revoked, or was issued to another client.")
    };
    let Some(rec) = state.store.token_by_hash(&hash).await? else { return Err(bad()) };
    if rec.kind != TokenKind::Refresh || rec.client_id != client.id {
        return Err(bad());
    }
    let user = match &rec.user_id {
        Some(id) => match state.store.user_by_id(id).await? {
            Some(u) if u.disabled_at.is_none() => Some(u),
            _ => return Err(bad()),
        },
        None => None,
    };
    // A scope removed from the client, or no longer delegable by the user's role, is gone from the
    // grant from this refresh on (the new refresh token carries the narrowed set).
    let current = gatehouse_services::oauth::still_allowed(&rec.scopes, client, user.as_ref());
    if current.is_empty() {
        return Err(OAuthError::invalid_grant(
            "None of this authorization's scopes is still allowed for this client; the user must authorize again.",
        ));
    }
    let access_scopes = match p.get("scope") {
        None => current.clone(),
        Some(s) => requested_scopes(Some(s), &current).map_err(|e| OAuthError::new("invalid_scope", e))?,
    };
    let (resp, tokens) = state.oauth.mint(
        client,
        &rec.grant_id,
        user.as_ref(),
        &access_scopes,
        Some(&current),
        Some(hash),
        &state.web.signer,
    );
    let m = meta(state, headers, peer);
    let reuse_audit = state.oauth.audit(
        client.environment,
        &client.id,
        &m,
        "oauth.refresh_token.reused",
        "oauth_grant",
        &rec.grant_id,
        serde_json::json!({"client_id": client.id, "user_id": rec.user_id, "revoked": "grant"}),
    );
    let race = state.oauth.cfg.refresh_race_window.as_millis() as i64;
    let req = RefreshRequest {
        hash,
        client_id: client.id.clone(),
        now: Timestamp::now(),
        race_window_ms: race,
        new_pair: tokens,
        reuse_audit,
    };
    match state.oauth.present_refresh(req).await? {
        RefreshOutcome::Rotated => Ok(resp),
        RefreshOutcome::Retried => {
            state.oauth.forget_grant(&rec.grant_id);
            tracing::info!(client = %client.id, grant = %rec.grant_id, "refresh token replayed after a lost response; the unused pair was replaced");
            Ok(resp)
        }
        RefreshOutcome::Concurrent => Err(OAuthError::invalid_grant(
            "This refresh token was just used by a concurrent request; use the tokens that request received.",
        )),
        RefreshOutcome::Reused { grant_id } => {
            state.oauth.forget_grant(&grant_id);
            tracing::warn!(client = %client.id, grant = %grant_id, "refresh token reused; the whole grant is revoked");
            Err(OAuthError::invalid_grant("The refresh token was already used. Every token of this authorization has been revoked; the user must authorize again."))
        }
        RefreshOutcome::Invalid => Err(bad()),
    }
}

async fn client_credentials(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    client: &ClientRecord,
    p: &HashMap<String, String>,
) -> Result<gatehouse_services::oauth::TokenResponse, OAuthError> {
    if !client.confidential {
        return Err(OAuthError::new("unauthorized_client", "a public client cannot use client_credentials"));
    }
    let scopes = requested_scopes(p.get("scope").map(String::as_str), &client.scopes)
        .map_err(|e| OAuthError::new("invalid_scope", e))?;
    let grant = state.oauth.new_grant(client, None, "client_credentials", &scopes);
    let (resp, tokens) = state.oauth.mint(client, &grant.id, None, &scopes, None, None, &state.web.signer);
    let audit = state.oauth.audit(
        client.environment,
        &client.id,
        &meta(state, headers, peer),
        "oauth.grant.created",
        "oauth_grant",
        &grant.id,
        serde_json::json!({"client_id": client.id, "scopes": scopes, "grant_type": "client_credentials"}),
    );
    state.oauth.store_grant(NewGrant { grant, tokens, audit }).await?;
    Ok(resp)
}

// ---- /oauth/revoke -------------------------------------------------------------------------------

/// `POST /oauth/revoke` (RFC 7009). Unknown tokens and other clients' tokens answer 200 and change nothing.
pub(crate) async fn revoke(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let p = form_body(&headers, &body)?;
        let client = authenticate(&state, &headers, &p).await?;
        let token = required(&p, "token")?;
        let hash = KeyHash::of(token);
        if let Some(rec) = state.store.token_by_hash(&hash).await? {
            if rec.client_id == client.id {
                match rec.kind {
                    TokenKind::Access => {
                        let audit = state.oauth.audit(
                            client.environment,
                            &client.id,
                            &meta(&state, &headers, peer),
                            "oauth.access_token.revoked",
                            "oauth_grant",
                            &rec.grant_id,
                            serde_json::json!({"client_id": client.id}),
                        );
                        state.store.revoke_token(&hash, Timestamp::now(), &audit).await?;
                        state.oauth.forget_token(&hash);
                    }
                    TokenKind::Refresh => {
                        let audit = state.oauth.audit(
                            client.environment,
                            &client.id,
                            &meta(&state, &headers, peer),
                            "oauth.grant.revoked",
                            "oauth_grant",
                            &rec.grant_id,
                            serde_json::json!({"reason": "refresh_token_revoked", "client_id": client.id}),
                        );
                        state.store.revoke_grant(&rec.grant_id, Timestamp::now(), &audit).await?;
                        state.oauth.forget_grant(&rec.grant_id);
                    }
                }
            }
        }
        Ok::<_, OAuthError>(())
    };
    match run.await {
        Ok(()) => {
            let mut resp = StatusCode::OK.into_response();
            no_store(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(),
    }
}

// ---- /oauth/introspect ---------------------------------------------------------------------------

/// `POST /oauth/introspect` (RFC 7662). A client sees its own tokens; a management key with
/// `oauth_clients:read` sees every token of the workspace. Anything else about a token is `{"active": false}`.
pub(crate) async fn introspect(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match introspect_inner(&state, &headers, peer, &body).await {
        Ok(v) => json_no_store(StatusCode::OK, v),
        Err(e) => e.into_response(),
    }
}

async fn introspect_inner(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let p = form_body(headers, body)?;
    // One `Authorization` header or none (SPEC §11): a repeated header is never a credential, so a
    // management key cannot ride in front of a second value that a proxy or the client meant instead.
    let bearer = match crate::credentials::authorization(headers) {
        AuthorizationHeader::Repeated => {
            return Err(OAuthError::invalid_request("Send one Authorization header, once."))
        }
        AuthorizationHeader::One(Credential::Bearer(key)) => Some(key),
        _ => None,
    };
    // Who asks: a client (its own tokens) or a management key (every token of its environment).
    let (caller_client, key_env) = match bearer {
        Some(key) => {
            let parsed = ApiKey::parse(&state.config.namespace, key).map_err(|_| OAuthError::invalid_client())?;
            let ip = crate::netaddr::client_ip(peer.ip(), headers, &state.config.trusted_proxies);
            let scope = Scope::parse("oauth_clients:read").expect("scope parses");
            let ctx = VerifyContext { environment: parsed.environment, ip: Some(ip), app: None, scope: Some(&scope) };
            match state.verifier.verify(key, &ctx).await {
                Ok(_) => (None, Some(parsed.environment)),
                Err(gatehouse_services::verifier::VerifyError::Unavailable) => return Err(OAuthError::unavailable()),
                Err(_) => return Err(OAuthError::invalid_client()),
            }
        }
        None => {
            let c = authenticate(state, headers, &p).await?;
            if !c.confidential {
                return Err(OAuthError::invalid_client());
            }
            (Some(c), None)
        }
    };
    let token = required(&p, "token")?;
    let inactive = serde_json::json!({"active": false});
    let now = Timestamp::now();
    // Access tokens go through the verification cache; refresh tokens are read from storage.
    if let Some(t) = state.oauth.verify_access(token).await? {
        let r = &t.record;
        if caller_client.as_ref().is_some_and(|c| c.id != r.client_id) || key_env.is_some_and(|e| e != t.environment) {
            return Ok(inactive);
        }
        let mut v = serde_json::json!({
            "active": true, "scope": r.scopes.join(" "), "client_id": r.client_id, "token_type": "Bearer",
            "exp": r.expires_at.unix_seconds(), "iat": r.created_at.unix_seconds(), "iss": state.web.cp_origin,
            "sub": r.user_id.as_deref().unwrap_or(&r.client_id),
        });
        if let Some(u) = &t.user {
            v["username"] = u.email.clone().into();
        }
        return Ok(v);
    }
    let Some(r) = state.store.token_by_hash(&KeyHash::of(token)).await? else { return Ok(inactive) };
    let live = r.kind == TokenKind::Refresh && r.revoked_at.is_none() && r.used_at.is_none() && r.expires_at > now;
    if !live || caller_client.as_ref().is_some_and(|c| c.id != r.client_id) {
        return Ok(inactive);
    }
    if let Some(env) = key_env {
        match state.oauth.get_client(&r.client_id).await {
            Ok(c) if c.environment == env => {}
            Err(gatehouse_services::ServiceError::Store(e)) => return Err(e.into()),
            _ => return Ok(inactive),
        }
    }
    Ok(serde_json::json!({
        "active": true, "scope": r.scopes.join(" "), "client_id": r.client_id, "token_type": "refresh_token",
        "exp": r.expires_at.unix_seconds(), "iat": r.created_at.unix_seconds(), "iss": state.web.cp_origin,
        "sub": r.user_id.as_deref().unwrap_or(&r.client_id),
    }))
}

// ---- metadata ------------------------------------------------------------------------------------

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub(crate) async fn metadata(State(state): St) -> Response {
    let o = &state.web.cp_origin;
    let doc = serde_json::json!({
        "issuer": o,
        "authorization_endpoint": format!("{o}/oauth/authorize"),
        "token_endpoint": format!("{o}/oauth/token"),
        "revocation_endpoint": format!("{o}/oauth/revoke"),
        "introspection_endpoint": format!("{o}/oauth/introspect"),
        "jwks_uri": format!("{o}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "consent"],
    });
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

// ---- the signed-in user's authorized apps --------------------------------------------------------

/// An app a user authorized: what `/v1/me/authorizations` lists and the dashboard's Account page shows.
#[derive(Debug)]
pub(crate) struct AuthorizedApp {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub authorized_at: Timestamp,
    pub active_grants: bool,
}

/// One entry per app: consents first (newest first), then any app with live grants but no consent.
pub(crate) async fn authorized_apps(state: &AppState, user_id: &str) -> Result<Vec<AuthorizedApp>, StoreError> {
    let (consents, grants) =
        tokio::try_join!(state.store.consents_of_user(user_id), state.store.grants_of_user(user_id))?;
    let mut apps: Vec<(String, Timestamp)> = consents.iter().map(|c| (c.client_id.clone(), c.granted_at)).collect();
    for g in &grants {
        if !apps.iter().any(|(id, _)| *id == g.client_id) {
            apps.push((g.client_id.clone(), g.created_at));
        }
    }
    let mut out = Vec::new();
    for (client_id, at) in apps {
        let Some(client) = state.store.client_by_id(&client_id).await? else { continue };
        let mut scopes: Vec<String> = consents
            .iter()
            .filter(|c| c.client_id == client_id)
            .flat_map(|c| c.scopes.iter().cloned())
            .chain(grants.iter().filter(|g| g.client_id == client_id).flat_map(|g| g.scopes.iter().cloned()))
            .collect();
        scopes.sort();
        scopes.dedup();
        let active_grants = grants.iter().any(|g| g.client_id == client_id);
        out.push(AuthorizedApp { client_id, name: client.name, scopes, authorized_at: at, active_grants });
    }
    Ok(out)
}

/// Withdraws `user`'s consent to `client_id` and revokes every token of that app for them. `Ok(false)`:
/// they had not authorized it (or there is no such app).
pub(crate) async fn withdraw(
    state: &AppState,
    user_id: &str,
    client_id: &str,
    meta: &RequestMeta,
) -> Result<bool, StoreError> {
    let client = match state.oauth.get_client(client_id).await {
        Ok(c) => c,
        Err(gatehouse_services::ServiceError::Store(e)) => return Err(e),
        Err(_) => return Ok(false),
    };
    let audit = state.oauth.audit(
        client.environment,
        &format!("user:{user_id}"),
        meta,
        "oauth.grant.revoked",
        "oauth_client",
        client_id,
        serde_json::json!({"reason": "consent_withdrawn", "user_id": user_id}),
    );
    let withdrawn = state.store.withdraw_consent(user_id, client_id, Timestamp::now(), &audit).await?;
    if withdrawn {
        state.oauth.invalidate_user_client(user_id, client_id);
    }
    Ok(withdrawn)
}

/// `GET /v1/me/authorizations`: the apps the signed-in user authorized (session cookie). Every app
/// whose consent is remembered is listed, with or without live tokens, since a remembered consent is
/// what skips the consent screen: what is listed is exactly what is skipped, and withdrawing it here
/// forgets the consent and revokes the tokens.
pub(crate) async fn my_authorizations(State(state): St, headers: HeaderMap) -> Response {
    let user = match current_login(&state, &headers).await {
        Ok(Some(login)) => login.user.clone(),
        Ok(None) => {
            return crate::error::ApiError::denied(gatehouse_core::DenyReason::MissingCredentials).into_response()
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let apps = match authorized_apps(&state, &user.id).await {
        Ok(apps) => apps,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let by_client: Vec<serde_json::Value> = apps
        .iter()
        .map(|a| serde_json::json!({"client_id": a.client_id, "name": a.name, "scopes": a.scopes, "authorized_at": a.authorized_at.to_rfc3339(), "active_grants": a.active_grants}))
        .collect();
    let mut resp = Json(serde_json::json!({"object": "list", "data": by_client})).into_response();
    no_store(resp.headers_mut());
    resp
}

/// `DELETE /v1/me/authorizations/{client_id}`: withdraws consent and revokes every token of that app
/// for the signed-in user. DELETE is never sent cross-site with a SameSite=Lax cookie, so no CSRF token is needed.
pub(crate) async fn withdraw_authorization(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(client_id): ApiPath<String>,
) -> Response {
    let user = match current_login(&state, &headers).await {
        Ok(Some(login)) => login.user.clone(),
        Ok(None) => {
            return crate::error::ApiError::denied(gatehouse_core::DenyReason::MissingCredentials).into_response()
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    match withdraw(&state, &user.id, &client_id, &meta(&state, &headers, peer)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => {
            crate::error::ApiError::NotFound("You have not authorized that application.".into()).into_response()
        }
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Basic credentials are form-encoded values: decoded whole, never cut at a raw `&` or `=`.
    #[test]
    fn basic_credential_decoding_table() {
        let ok = [
            ("client_0123", "client_0123"),
            ("client%5F0123", "client_0123"),
            ("se%26cret", "se&cret"),
            ("se%3Dcret", "se=cret"),
            ("se%2Bcret", "se+cret"),
            ("se+cret", "se cret"),
            ("se%25cret", "se%cret"),
            // Raw `&` and `=` belong to the value (the old decoder returned "secret" for the first).
            ("secret&anything", "secret&anything"),
            ("secret&v=other", "secret&v=other"),
            ("a=b", "a=b"),
            // Malformed escapes stay literal, as every form decoder reads them.
            ("%zz", "%zz"),
            ("100%", "100%"),
            ("%4", "%4"),
            ("caf%C3%A9", "café"),
            ("", ""),
        ];
        for (raw, want) in ok {
            assert_eq!(form_decode(raw).as_deref(), Some(want), "{raw}");
        }
        // Not UTF-8 once decoded: refused, not replaced by U+FFFD (two secrets must never decode alike).
        for raw in ["%FF", "se%C3cret", "%80%80"] {
            assert_eq!(form_decode(raw), None, "{raw}");
        }
    }

    /// Hostile token-endpoint bodies: encoded separators stay inside their value, repeated keys are refused.
    #[test]
    fn hostile_form_bodies_table() {
        type Case<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);
        let ok: [Case; 7] = [
            (b"a=1&b=2", &[("a", "1"), ("b", "2")]),
            (b"code=x%26scope%3Dadmin", &[("code", "x&scope=admin")]),
            (b"code=a%2Bb+c", &[("code", "a+b c")]),
            (b"code=100%25", &[("code", "100%")]),
            (b"code=%zz", &[("code", "%zz")]),
            (b"code=a=b", &[("code", "a=b")]),
            (b"&&code=1&", &[("code", "1")]),
        ];
        for (body, want) in ok {
            let got = params(body).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
            let want: HashMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"code=1&code=2"[..], b"code=1&co%64e=2", b"a=1&b=2&a=1"] {
            assert!(params(body).unwrap_err().contains("more than once"), "{}", String::from_utf8_lossy(body));
        }
    }

    /// Redirect parameters keep the exact bytes the hand-written encoder produced.
    #[test]
    fn redirect_params_encoding_table() {
        let cases = [
            (
                "https://app.example/cb",
                &[("code", "abc_-.~"), ("state", "a b&c=d/e")][..],
                "https://app.example/cb?code=abc_-.~&state=a%20b%26c%3Dd%2Fe",
            ),
            (
                "https://app.example/cb?x=1",
                &[("error", "access_denied")][..],
                "https://app.example/cb?x=1&error=access_denied",
            ),
            ("https://app.example/cb", &[("state", "é+%")][..], "https://app.example/cb?state=%C3%A9%2B%25"),
        ];
        for (uri, p, want) in cases {
            assert_eq!(with_params(uri, p), want);
        }
        assert_eq!(url_encode("/a b/c?d=e&f#g~"), "/a%20b/c%3Fd%3De%26f%23g~");
    }
}
