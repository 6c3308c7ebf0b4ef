//! Credential checks shared by every door — the gateway, the management API and the OAuth endpoints:
//! reading `Authorization` / `X-Space-App-Key` (the grammar is `gatehouse_core::credentials`), verifying
//! an API key or an OAuth access token for a target, and the one rate-limit check that counts a refusal
//! in the metrics and answers 429 with its headers (SPEC §5, §8).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use gatehouse_core::credentials::{AppKeyHeader, AuthorizationHeader};
use gatehouse_core::ratelimit::{Quota, RateDecision};
use gatehouse_core::{DenyReason, Environment, KeyRecord, Scope, VerifyContext};

use crate::error::ApiError;
use crate::state::AppState;
use gatehouse_services::oauth::ActiveToken;
use gatehouse_services::verifier::{CachedKey, VerifyError};

/// Every `Authorization` header of a request, read once.
pub fn authorization(headers: &HeaderMap) -> AuthorizationHeader<'_> {
    AuthorizationHeader::parse(headers.get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes))
}

/// Every `X-Space-App-Key` header of a request, read once.
pub fn app_key(headers: &HeaderMap) -> AppKeyHeader<'_> {
    AppKeyHeader::parse(headers.get_all("x-space-app-key").iter().map(HeaderValue::as_bytes))
}

/// Verifies a presented API key in `ctx` (SPEC §4.3, rate limit excluded); a refusal names the masked key.
pub async fn verify_key(
    state: &AppState,
    presented: &str,
    ctx: &VerifyContext<'_>,
) -> Result<Arc<CachedKey>, ApiError> {
    state.verifier.verify(presented, ctx).await.map_err(|e| match e {
        VerifyError::Denied(reason) => ApiError::denied_key(reason, presented),
        VerifyError::Unavailable => ApiError::Unavailable,
    })
}

/// Where a token is presented.
#[derive(Clone, Copy, Debug)]
pub enum TokenTarget<'a> {
    /// The management API: the token acts in its own environment, and an app-restricted token is refused.
    ManagementApi,
    /// An app behind the gateway, of one environment.
    App { name: &'a str, environment: Environment },
}

/// Checks an OAuth access token for a route or endpoint needing `scope`, like an API key (§4.3, §11):
/// [`authenticate_token`], then [`authorize_token`], then its client+user rate limit (429), in that
/// order. The management API's door; the gateway runs the same three as its own phases.
pub async fn check_token(
    state: &AppState,
    token: &str,
    target: TokenTarget<'_>,
    scope: Option<&Scope>,
) -> Result<(Arc<ActiveToken>, RateDecision), ApiError> {
    let t = authenticate_token(state, token).await?;
    authorize_token(&t, target, scope)?;
    let rate = check_rate(state, RateSubject::of_token(&t)).await?;
    Ok((t, rate))
}

/// The live access token `token` is, or 401 `invalid_token`.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Arc<ActiveToken>, ApiError> {
    state.oauth.verify_access(token).await?.ok_or_else(|| ApiError::denied(DenyReason::InvalidToken))
}

/// Whether a live token may act on `target` for `scope`: of the app's environment (403
/// `environment_mismatch`), allowed on the app (403 `app_not_allowed`), and holding the scope — a token
/// is a restricted credential, so a route that declares no scope refuses it (403).
pub fn authorize_token(t: &ActiveToken, target: TokenTarget<'_>, scope: Option<&Scope>) -> Result<(), ApiError> {
    let app = match target {
        TokenTarget::ManagementApi => None,
        TokenTarget::App { name, environment } => {
            if environment != t.environment {
                return Err(ApiError::denied(DenyReason::EnvironmentMismatch));
            }
            Some(name)
        }
    };
    if let Some(restricted) = &t.app {
        if app != Some(restricted.as_str()) {
            return Err(ApiError::denied(DenyReason::AppNotAllowed));
        }
    }
    match scope {
        None => Err(ApiError::denied(DenyReason::RouteHasNoScope)),
        Some(s) if !t.scopes.grants(s) => Err(ApiError::denied(DenyReason::InsufficientScope(s.clone()))),
        // On the management API a token acting for a person holds at most what that person's role
        // allows now (SPEC §12), whatever was consented to before.
        Some(s)
            if matches!(target, TokenTarget::ManagementApi)
                && t.user.as_ref().is_some_and(|u| !gatehouse_core::authority::role_may_delegate(&u.role, s)) =>
        {
            Err(ApiError::denied(DenyReason::InsufficientScope(s.clone())))
        }
        Some(_) => Ok(()),
    }
}

/// Whose rate limit a request counts against (SPEC §8).
#[derive(Clone, Copy, Debug)]
pub enum RateSubject<'a> {
    /// An API key, under its own override or the default.
    Key(&'a KeyRecord),
    /// An OAuth access token: its client and user together, under the default.
    OAuth { client_id: &'a str, user_id: Option<&'a str> },
    /// A signed-in user (a session), under the default.
    User(&'a str),
    /// A client address on public routes, under the gateway's public quota.
    PublicIp(IpAddr, Quota),
    /// A client address reporting leaked credentials, under the report-a-leak quota.
    LeakReport(IpAddr, Quota),
}

impl<'a> RateSubject<'a> {
    pub fn of_token(t: &'a ActiveToken) -> Self {
        RateSubject::OAuth { client_id: &t.record.client_id, user_id: t.record.user_id.as_deref() }
    }

    /// The limiter's id for the subject and the quota it overrides the default with.
    fn id_and_quota(self) -> (Cow<'a, str>, Option<Quota>) {
        match self {
            RateSubject::Key(k) => (Cow::Borrowed(&k.id), k.rate_limit.map(quota_of)),
            RateSubject::OAuth { client_id, user_id } => {
                (Cow::Owned(format!("oauth:{client_id}:{}", user_id.unwrap_or("-"))), None)
            }
            RateSubject::User(id) => (Cow::Owned(format!("user:{id}")), None),
            RateSubject::PublicIp(ip, quota) => (Cow::Owned(format!("ip:{ip}")), Some(quota)),
            RateSubject::LeakReport(ip, quota) => (Cow::Owned(format!("leak_report:{ip}")), Some(quota)),
        }
    }
}

/// A request over its rate limit: the decision carries `Retry-After` and the `RateLimit-*` values.
#[derive(Clone, Copy, Debug)]
pub struct RateLimited(pub RateDecision);

impl From<RateLimited> for ApiError {
    fn from(RateLimited(rate): RateLimited) -> Self {
        ApiError::rate_limited(rate)
    }
}

/// Counts one request against `subject`'s limit. A refusal is counted in `rate_limited` and, through
/// `?`, becomes the 429 with `Retry-After` and `RateLimit-*`; an allowed decision gives the headers of
/// a success.
pub async fn check_rate(state: &AppState, subject: RateSubject<'_>) -> Result<RateDecision, RateLimited> {
    let (id, quota) = subject.id_and_quota();
    let rate = state.limiter.check(&id, quota).await;
    if rate.allowed {
        Ok(rate)
    } else {
        state.metrics.rate_limited.inc();
        Err(RateLimited(rate))
    }
}

/// A key's rate-limit override as a quota.
pub fn quota_of(o: gatehouse_core::RateLimitOverride) -> Quota {
    Quota { limit: o.limit, window_ms: u64::from(o.window_secs) * 1000 }
}
