//! `/v1/keys`: create, list, get, revoke, roll, and verify (SPEC §4.5).

use std::net::IpAddr;

use axum::extract::State as AxState;
use axum::Json;
use gatehouse_core::{ApiKey, Scope, Timestamp, VerifyContext};

use super::dto::{
    CreateKeyIn, KeyOut, KeyWithSecret, ListOut, ListQuery, RevokeIn, RollIn, RolledOut, VerifyIn, VerifyOut,
};
use super::{ApiJson, ApiPath, ApiQuery, Caller, KeysRead, KeysWrite, OptionalJson, State};
use crate::credentials::{RateLimited, RateSubject};
use crate::error::ApiError;
use gatehouse_services::keys::NewKey;
use gatehouse_services::verifier::VerifyError;

/// Create a key. The secret is in this response only.
///
/// Without `kind`, a body with `scopes` creates a restricted (`rk`) key holding exactly those scopes,
/// and a body without creates a secret (`sk`) key; the response's `kind` says which. `"kind": "sk"`
/// together with `scopes` is refused (400): an `sk` key holds every scope of its environment.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys", security(("api_key" = [])),
    request_body = CreateKeyIn,
    responses(
        (status = 200, description = "The new key with its secret; `kind` is `rk` when scopes were given without a kind", body = KeyWithSecret),
        (status = 400, description = "Malformed input", body = crate::error::ErrorOut),
        (status = 401, description = "Missing or bad credential", body = crate::error::ErrorOut),
        (status = 403, description = "Not allowed (scope, environment)", body = crate::error::ErrorOut),
        (status = 429, description = "Rate limited", body = crate::error::ErrorOut),
    )
)]
pub(crate) async fn create_key(
    AxState(state): AxState<State>,
    caller: Caller<KeysWrite>,
    ApiJson(body): ApiJson<CreateKeyIn>,
) -> Result<Json<KeyWithSecret>, ApiError> {
    let expires_at = body
        .expires_at
        .as_ref()
        .map(|t| t.to_timestamp())
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("expires_at: {e}")))?;
    let new = NewKey {
        name: body.name,
        // A body with scopes and no kind asks for a restricted key (the API guide's own example);
        // an explicit `sk` with scopes is still refused by the service.
        kind: body.kind.map_or(
            if body.scopes.is_empty() { gatehouse_core::KeyKind::Secret } else { gatehouse_core::KeyKind::Restricted },
            Into::into,
        ),
        environment: body.environment.map_or(caller.key.record.environment, Into::into),
        scopes: body.scopes,
        ip_allowlist: body.ip_allowlist,
        expires_at,
        app: body.app,
        rate_limit: body.rate_limit.map(Into::into),
        metadata: body.metadata,
    };
    let (record, secret) = state.keys.create(&caller.actor(), &caller.meta(), new).await?;
    Ok(Json(KeyWithSecret { key: KeyOut::from_record(&record, Timestamp::now()), secret: secret.expose().to_owned() }))
}

/// List the keys of the caller's environment, newest first.
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys", security(("api_key" = [])),
    params(ListQuery),
    responses((status = 200, description = "A page of keys", body = ListOut<KeyOut>), (status = 400, body = crate::error::ErrorOut))
)]
pub(crate) async fn list_keys(
    AxState(state): AxState<State>,
    caller: Caller<KeysRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListOut<KeyOut>>, ApiError> {
    let page = state.keys.list(&caller.actor(), None, &q.page()?).await?;
    let now = Timestamp::now();
    Ok(Json(ListOut::from_page(&page, |r| r.id.as_str(), |k| KeyOut::from_record(k, now))))
}

/// Get one key.
#[utoipa::path(
    get, path = "/v1/keys/{id}", tag = "keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "A key id, `key_…`")),
    responses((status = 200, body = KeyOut), (status = 404, body = crate::error::ErrorOut))
)]
pub(crate) async fn get_key(
    AxState(state): AxState<State>,
    caller: Caller<KeysRead>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KeyOut>, ApiError> {
    let record = state.keys.get(&caller.actor(), &id).await?;
    Ok(Json(KeyOut::from_record(&record, Timestamp::now())))
}

/// Revoke a key, effective immediately. Revoking twice is harmless.
#[utoipa::path(
    post, path = "/v1/keys/{id}/revoke", tag = "keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "A key id, `key_…`")),
    request_body(content = Option<RevokeIn>, description = "Optional reason, recorded in the audit log"),
    responses((status = 200, body = KeyOut), (status = 404, body = crate::error::ErrorOut))
)]
pub(crate) async fn revoke_key(
    AxState(state): AxState<State>,
    caller: Caller<KeysWrite>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RevokeIn>,
) -> Result<Json<KeyOut>, ApiError> {
    let record = state.keys.revoke(&caller.actor(), &caller.meta(), &id, body.reason).await?;
    Ok(Json(KeyOut::from_record(&record, Timestamp::now())))
}

/// Roll a key: a new key with the same settings; the old one keeps working for the grace period.
#[utoipa::path(
    post, path = "/v1/keys/{id}/roll", tag = "keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "A key id, `key_…`")),
    request_body(content = Option<RollIn>, description = "Grace period for the old key"),
    responses((status = 200, body = RolledOut), (status = 404, body = crate::error::ErrorOut), (status = 409, body = crate::error::ErrorOut))
)]
pub(crate) async fn roll_key(
    AxState(state): AxState<State>,
    caller: Caller<KeysWrite>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RollIn>,
) -> Result<Json<RolledOut>, ApiError> {
    let (rolled, secret) = state.keys.roll(&caller.actor(), &caller.meta(), &id, body.grace_period_secs).await?;
    let now = Timestamp::now();
    Ok(Json(RolledOut {
        new_key: KeyWithSecret { key: KeyOut::from_record(&rolled.new, now), secret: secret.expose().to_owned() },
        old_key: KeyOut::from_record(&rolled.old, now),
    }))
}

/// Check a key for another service, in the caller's environment, with the order of SPEC §4.3.
/// A valid key's own rate limit is counted, so a service can rely on it.
#[utoipa::path(
    post, path = "/v1/keys/verify", tag = "keys", security(("api_key" = [])),
    request_body = VerifyIn,
    responses((status = 200, description = "The verdict", body = VerifyOut), (status = 400, body = crate::error::ErrorOut))
)]
pub(crate) async fn verify_key(
    AxState(state): AxState<State>,
    caller: Caller<KeysRead>,
    ApiJson(body): ApiJson<VerifyIn>,
) -> Result<Json<VerifyOut>, ApiError> {
    let scope = body
        .scope
        .as_deref()
        .map(Scope::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("scope: {e}")))?;
    let ip = body
        .ip
        .as_deref()
        .map(|s| s.parse::<IpAddr>())
        .transpose()
        .map_err(|_| ApiError::InvalidRequest("ip must be an IPv4 or IPv6 address".into()))?;
    let env = caller.key.record.environment;
    let ctx = VerifyContext { environment: env, ip, app: body.app.as_deref(), scope: scope.as_ref() };
    let denied = |code: &'static str, message: String| VerifyOut {
        valid: false,
        code,
        message: Some(message),
        retry_after: None,
        key: None,
    };
    // A key of the other environment is decided from its text, before any lookup, so whether it
    // exists, is revoked or has expired never reaches a caller of this environment (SPEC §11).
    if ApiKey::parse(&state.config.namespace, &body.key).is_ok_and(|k| k.environment != env) {
        let reason = gatehouse_core::DenyReason::EnvironmentMismatch;
        return Ok(Json(denied(reason.code(), reason.to_string())));
    }
    let out = match state.verifier.verify(&body.key, &ctx).await {
        Ok(key) => match crate::credentials::check_rate(&state, RateSubject::Key(&key.record)).await {
            Ok(_) => VerifyOut {
                valid: true,
                code: "valid",
                message: None,
                retry_after: None,
                key: Some(KeyOut::from_record(&key.record, Timestamp::now())),
            },
            Err(RateLimited(rate)) => {
                let reason = gatehouse_core::DenyReason::RateLimited { retry_after_secs: rate.retry_after_secs };
                VerifyOut { retry_after: Some(rate.retry_after_secs), ..denied(reason.code(), reason.to_string()) }
            }
        },
        Err(VerifyError::Denied(reason)) => {
            let mut message = reason.to_string();
            if ApiKey::parse(&state.config.namespace, &body.key).is_err() {
                message.push_str(" It does not have the key format or its checksum is wrong.");
            }
            denied(reason.code(), message)
        }
        Err(VerifyError::Unavailable) => return Err(ApiError::Unavailable),
    };
    Ok(Json(out))
}
