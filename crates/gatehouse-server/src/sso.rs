//! Sign-in with an identity provider (SPEC §15), the browser side: `GET /login/<id>` starts the
//! authorization code flow (PKCE S256, `state`, `nonce`) and sends the browser to the provider;
//! `GET /login/<id>/callback` spends the pending sign-in (once, only in the browser that started it),
//! exchanges the code, validates the ID token (`idp`), finds the user (`gatehouse_services::external`)
//! and starts the ordinary Gatehouse login, ending as a password sign-in does (`login::continue_to`).
//! Error pages say what happened and what to do; they never show a code, token or state.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_services::external::ProviderRules;
use gatehouse_services::sessions::new_token;
use gatehouse_store::PendingLogin;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::idp::IdpError;
use crate::login::{continue_to, parse_state, secure_context, unavailable};
use crate::state::AppState;
use crate::web::{cookies, message, oidc_cookie, parse_return_to, redirect, set_cookie, OIDC_COOKIE};

type St = State<Arc<AppState>>;

/// How long a sign-in at the provider may take before it must start again.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartQuery {
    pub return_to: Option<String>,
    /// The app host's browser binding (hex), when an app host started the sign-in.
    pub state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// The redirect URI registered at the provider: `<control plane>/login/<id>/callback`.
pub fn redirect_uri(state: &AppState, provider_id: &str) -> String {
    format!("{}/login/{provider_id}/callback", state.web.cp_origin)
}

fn no_such_provider() -> Response {
    message(StatusCode::NOT_FOUND, "Sign in", "There is no such identity provider here. Go back and sign in.")
}

fn provider_down(id: &str, e: &IdpError) -> Response {
    tracing::warn!(provider = id, error = %e, "identity provider unavailable for sign-in");
    let mut resp = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign in",
        "Gatehouse cannot reach your identity provider right now. Try again in a moment.",
    );
    resp.headers_mut().insert(header::RETRY_AFTER, 5.into());
    resp
}

fn start_again(detail: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "Sign in", &format!("{detail} Go back to the sign-in page and start again."))
}

/// `GET /login/<id>`: starts a sign-in at provider `id`.
pub(crate) async fn start(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let https = secure_context(&state, &headers, Some(peer));
    let Some(provider) = state.idp.get(&id).cloned() else { return no_such_provider() };
    let return_to = q.return_to.unwrap_or_default();
    if !return_to.is_empty() && parse_return_to(&return_to, &state.web.known_hosts()).is_none() {
        return start_again("That return address is not one Gatehouse serves.");
    }
    let meta = match state.idp.metadata(&provider).await {
        Ok(m) => m,
        Err(e) => return provider_down(&id, &e),
    };
    // One binding cookie per browser, reused by sign-ins started in other tabs.
    let (binding, fresh) = match cookies(&headers, OIDC_COOKIE).find(|c| c.len() == 43) {
        Some(c) => (c.to_owned(), false),
        None => (new_token().0, true),
    };
    let (state_param, state_hash) = new_token();
    let (nonce, _) = new_token();
    let (verifier, _) = new_token();
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    let now = Timestamp::now();
    let pending = PendingLogin {
        state_hash,
        provider_id: id.clone(),
        nonce: nonce.clone(),
        code_verifier: verifier,
        return_to,
        app_browser: q.state.as_deref().and_then(parse_state),
        browser_hash: KeyHash::of(&binding),
        created_at: now,
        expires_at: now.plus_millis(PENDING_TTL_MS),
    };
    if let Err(e) = state.store.insert_pending_login(&pending).await {
        return unavailable(e);
    }
    let Ok(mut url) = url::Url::parse(&meta.authorization_endpoint) else {
        return provider_down(&id, &IdpError::Unreachable("authorization endpoint".into()));
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.config.client_id)
        .append_pair("redirect_uri", &redirect_uri(&state, &id))
        .append_pair("scope", &provider.config.scopes.join(" "))
        .append_pair("state", &state_param)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut resp = redirect(StatusCode::SEE_OTHER, url.as_str());
    if fresh {
        resp.headers_mut().append(header::SET_COOKIE, oidc_cookie(&binding, PENDING_TTL_MS / 1000, https));
    }
    resp
}

/// A provider error code as shown: only a plain RFC 6749 token, else nothing.
fn plain_code(code: &str) -> Option<&str> {
    (code.len() <= 64 && !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(code)
}

/// `GET /login/<id>/callback`: where the provider sends the browser back.
pub(crate) async fn callback(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let https = secure_context(&state, &headers, Some(peer));
    let Some(provider) = state.idp.get(&id).cloned() else { return no_such_provider() };
    let Some(state_param) = q.state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return start_again("This sign-in came back without its state.");
    };
    // Spent whatever follows: a state works once.
    let pending = match state.store.take_pending_login(&KeyHash::of(&state_param)).await {
        Ok(Some(p)) => p,
        Ok(None) => return start_again("This sign-in is unknown or was already used."),
        Err(e) => return unavailable(e),
    };
    let binding = cookies(&headers, OIDC_COOKIE).find(|c| c.len() == 43);
    if pending.provider_id != id || binding.is_none_or(|b| !KeyHash::of(b).ct_eq(&pending.browser_hash)) {
        tracing::warn!(provider = %id, "provider sign-in refused: its state belongs to another browser or provider");
        return start_again("This sign-in was started in another browser.");
    }
    if pending.expires_at.0 < Timestamp::now().0 {
        return start_again("This sign-in took too long.");
    }
    if let Some(err) = q.error {
        let detail = match plain_code(&err) {
            Some("access_denied") => "You declined to sign in at your identity provider.".to_owned(),
            Some(code) => format!("Your identity provider did not sign you in ({code})."),
            None => "Your identity provider did not sign you in.".to_owned(),
        };
        return start_again(&detail);
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return start_again("Your identity provider sent no authorization code.");
    };
    let exchanged = match state.idp.exchange(&provider, &code, &pending.code_verifier, &redirect_uri(&state, &id)).await
    {
        Ok(x) => x,
        Err(e @ IdpError::Exchange(_)) => {
            tracing::warn!(provider = %id, error = %e, "provider sign-in: code exchange refused");
            return start_again("Your identity provider did not accept this sign-in.");
        }
        Err(e) => return provider_down(&id, &e),
    };
    let claims = match state.idp.validate(&provider, &exchanged.id_token, &pending.nonce).await {
        Ok(c) => c,
        Err(IdpError::Token(e)) => {
            tracing::warn!(provider = %id, error = %e, "provider sign-in: ID token refused");
            return message(
                StatusCode::BAD_REQUEST,
                "Sign in",
                "Your identity provider's answer could not be verified, so you were not signed in. Try again; if it keeps happening, tell your administrator.",
            );
        }
        Err(e) => return provider_down(&id, &e),
    };
    let ip = crate::netaddr::client_ip(peer.ip(), &headers, &state.config.trusted_proxies);
    let rules = ProviderRules {
        provider_id: &id,
        auto_create_users: provider.config.auto_create_users,
        default_role: &provider.config.default_role,
    };
    let signed_in = match state.external.sign_in(rules, &claims, Some(ip)).await {
        Ok(Ok(s)) => s,
        Ok(Err(refusal)) => return message(StatusCode::FORBIDDEN, "Sign in", &refusal.to_string()),
        Err(e) => return unavailable(e),
    };
    // The provider's groups claim (capped in `oidc::id_token`) travels with the session, and on to the
    // app hosts' sessions through the ticket: it is what the access policy's `groups` judge (SPEC §15).
    let (cookie, hash) =
        match state.sessions.create_login(&signed_in.user, &state.web.cp_host, signed_in.groups.clone()).await {
            Ok(x) => x,
            Err(e) => return unavailable(e),
        };
    let meta = state.idp.metadata(&provider).await.ok();
    if provider.config.end_session && meta.is_some_and(|m| m.end_session_endpoint.is_some()) {
        let until = Timestamp::now().plus_millis(state.sessions.cfg.absolute.as_millis() as i64);
        if let Err(e) = state.store.insert_provider_login(&hash, &id, &exchanged.id_token, until).await {
            tracing::warn!(provider = %id, error = %e, "could not keep the ID token for sign-out at the provider");
        }
    }
    tracing::info!(user = %signed_in.user.id, provider = %id, how = ?signed_in.how, "signed in through an identity provider");
    let rt =
        if pending.return_to.is_empty() { None } else { parse_return_to(&pending.return_to, &state.web.known_hosts()) };
    let mut resp = continue_to(&state, &hash, rt, pending.app_browser, https).await;
    let max_age = state.sessions.cfg.absolute.as_secs() as i64;
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state.sessions.cfg.cp_cookie_name, &cookie, max_age, https));
    resp
}
