//! The control plane's HTTP surface: routing, the request-context middleware (request id, metrics,
//! rate-limit headers, final key masking), extractors that answer in the §5 error format, and
//! API-key authentication with per-route scopes.

pub(crate) mod audit;
pub mod dto;
pub(crate) mod keys;
pub mod oauth_clients;
pub(crate) mod ops;
pub(crate) mod users;
pub mod webhooks;

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use gatehouse_core::credentials::{looks_like_api_key, AuthorizationHeader, Credential};
use gatehouse_core::ratelimit::RateDecision;
use gatehouse_core::{ApiKey, DenyReason, Scope, VerifyContext};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::credentials::{self, RateSubject, TokenTarget};
use crate::error::{in_request_scope, set_rate_headers, set_request_id, ApiError};
use crate::extract::ApiPath;
use crate::state::AppState;
use gatehouse_services::metrics::HttpLabels;
use gatehouse_services::verifier::CachedKey;

pub(crate) type State = Arc<AppState>;

tokio::task_local! {
    /// The rate-limit decision of this request's credential, for the `RateLimit-*` headers on success.
    static RATE_SLOT: Cell<Option<RateDecision>>;
}

/// The OpenAPI document's fixed parts; paths are added from the routes themselves.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse management API", description = "API keys, audit log and key verification. See SPEC §4.5."),
    modifiers(&SecurityAddon),
    tags((name = "keys", description = "API keys"), (name = "audit", description = "Audit log"), (name = "oauth", description = "OAuth clients"), (name = "webhooks", description = "Webhook endpoints and events"), (name = "users", description = "Users and their roles"), (name = "ops", description = "Health and metrics"))
)]
#[derive(Debug)]
pub(crate) struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("gth_sk_live_…").build(),
            ),
        );
    }
}

/// The routes and their OpenAPI description, built together so they cannot disagree.
pub(crate) fn api_routes() -> (Router<State>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(utoipa_axum::routes!(keys::create_key, keys::list_keys))
        .routes(utoipa_axum::routes!(keys::get_key))
        .routes(utoipa_axum::routes!(keys::revoke_key))
        .routes(utoipa_axum::routes!(keys::roll_key))
        .routes(utoipa_axum::routes!(keys::verify_key))
        .routes(utoipa_axum::routes!(oauth_clients::create_client, oauth_clients::list_clients))
        .routes(utoipa_axum::routes!(oauth_clients::get_client))
        .routes(utoipa_axum::routes!(oauth_clients::rotate_secret))
        .routes(utoipa_axum::routes!(oauth_clients::disable_client))
        .routes(utoipa_axum::routes!(webhooks::create_endpoint, webhooks::list_endpoints))
        .routes(utoipa_axum::routes!(webhooks::get_endpoint))
        .routes(utoipa_axum::routes!(webhooks::roll_secret))
        .routes(utoipa_axum::routes!(webhooks::disable_endpoint))
        .routes(utoipa_axum::routes!(webhooks::enable_endpoint))
        .routes(utoipa_axum::routes!(webhooks::list_events))
        .routes(utoipa_axum::routes!(webhooks::get_event))
        .routes(utoipa_axum::routes!(webhooks::resend_event))
        .routes(utoipa_axum::routes!(audit::list_audit))
        .routes(utoipa_axum::routes!(users::list_users, users::create_user))
        .routes(utoipa_axum::routes!(users::disable_user))
        .routes(utoipa_axum::routes!(users::enable_user))
        .routes(utoipa_axum::routes!(users::set_user_role))
        .routes(utoipa_axum::routes!(ops::healthz))
        .routes(utoipa_axum::routes!(ops::readyz))
        .routes(utoipa_axum::routes!(ops::metrics))
        .split_for_parts()
}

/// The control plane's router.
pub(crate) fn router(state: State) -> Router {
    let (routes, openapi) = api_routes();
    let openapi = Arc::new(openapi);
    let body_limit = state.config.body_limit;
    routes
        .route("/", axum::routing::get(crate::login::home))
        .route("/login", axum::routing::get(crate::login::get_login).post(crate::login::post_login))
        .route("/logout", axum::routing::post(crate::login::post_logout))
        .route("/login/{id}", axum::routing::get(crate::sso::start))
        .route("/login/{id}/callback", axum::routing::get(crate::sso::callback))
        .route("/setup", axum::routing::get(crate::login::get_setup).post(crate::login::post_setup))
        .route(
            "/set-password",
            axum::routing::get(crate::login::get_set_password).post(crate::login::post_set_password),
        )
        .route("/.well-known/jwks.json", axum::routing::get(crate::login::jwks))
        .route("/.well-known/oauth-authorization-server", axum::routing::get(crate::oauth::endpoints::metadata))
        .route(
            "/oauth/authorize",
            axum::routing::get(crate::oauth::endpoints::authorize_get).post(crate::oauth::endpoints::authorize_post),
        )
        .route("/oauth/token", axum::routing::post(crate::oauth::endpoints::token))
        .route("/oauth/revoke", axum::routing::post(crate::oauth::endpoints::revoke))
        .route("/oauth/introspect", axum::routing::post(crate::oauth::endpoints::introspect))
        .route(
            "/v1/secret_scanning/github",
            axum::routing::post(crate::secret_scanning::github)
                .layer(axum::extract::DefaultBodyLimit::max(gatehouse_core::leak::MAX_BATCH_BYTES)),
        )
        .route(
            "/v1/credentials/report_leak",
            axum::routing::post(crate::secret_scanning::report_leak)
                .layer(axum::extract::DefaultBodyLimit::max(gatehouse_core::leak::MAX_BATCH_BYTES)),
        )
        .route("/v1/me/authorizations", axum::routing::get(crate::oauth::endpoints::my_authorizations))
        .route(
            "/v1/me/authorizations/{client_id}",
            axum::routing::delete(crate::oauth::endpoints::withdraw_authorization),
        )
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(crate::dashboard::router())
        .fallback(|| async { ApiError::NotFound("No such endpoint. See /openapi.json for the API.".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .layer(middleware::from_fn_with_state(state.clone(), crate::login::hsts_layer))
        .with_state(state)
}

/// Request id, metrics, rate-limit headers, and a last masking pass over error bodies' namespace.
pub(crate) async fn request_context(
    axum::extract::State(state): axum::extract::State<State>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    req.extensions_mut().insert(BodyLimit(state.config.body_limit));
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let ns = state.config.namespace.clone();
    let (request_id, (mut resp, rate)) = in_request_scope(
        ns,
        RATE_SLOT.scope(Cell::new(None), async move {
            let resp = next.run(req).await;
            (resp, RATE_SLOT.with(Cell::get))
        }),
    )
    .await;
    set_request_id(&mut resp, &request_id);
    let h = resp.headers_mut();
    if let Some(rate) = rate {
        if !h.contains_key("ratelimit-limit") {
            set_rate_headers(h, &rate);
        }
    }
    let status = resp.status().as_u16();
    state.metrics.http_requests.get_or_create(&HttpLabels { route: route.clone(), status }).inc();
    // Per-request lines are debug: at tens of thousands of requests a second they would cost more than the work.
    tracing::debug!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        latency_us = start.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// A JSON body that answers 400/413 in the §5 format; unknown fields are refused by the DTOs.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(ApiError::InvalidRequest(format!(
                    "Content-Type must be application/json, not `{}`.",
                    essence.chars().take(60).collect::<String>()
                )));
            }
        }
        let limit = req.extensions().get::<BodyLimit>().map(|b| b.0);
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit.unwrap_or(crate::config::DEFAULT_BODY_LIMIT))
            } else {
                ApiError::InvalidRequest("The request body could not be read.".into())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The configured body limit, for the 413 message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize);

/// Parses JSON, naming the field that is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::InvalidRequest("The request body is empty; send a JSON object.".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("Invalid JSON body: {inner}.")
        } else {
            format!("Invalid JSON body at `{path}`: {inner}.")
        };
        ApiError::InvalidRequest(msg)
    })
}

/// A JSON body that may also be absent (e.g. revoke with no reason).
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v == "0")
            || (req.headers().get(header::CONTENT_TYPE).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none()
                && req.headers().get(header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        ApiJson::<T>::from_request(req, state).await.map(|ApiJson(v)| OptionalJson(v))
    }
}

/// Query parameters that answer 400 in the §5 format.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from(q).map(ApiQuery)
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    crate::web::from_query(q).map_err(|e| {
        ApiError::InvalidRequest(format!("Invalid query string: Failed to deserialize query string: {e}."))
    })
}

/// The scope a management route needs, as a type so each handler states it in its signature.
pub(crate) trait RequiredScope {
    fn scope() -> &'static Scope;
}

macro_rules! scopes {
    ($($ty:ident => $s:literal),* $(,)?) => {$(
        #[doc = concat!("Requires `", $s, "`.")]
        #[derive(Debug)]
        pub(crate) struct $ty;
        impl RequiredScope for $ty {
            fn scope() -> &'static Scope {
                static S: OnceLock<Scope> = OnceLock::new();
                S.get_or_init(|| Scope::parse($s).expect("built-in scope parses"))
            }
        }
    )*};
}

scopes! {
    KeysRead => "keys:read",
    KeysWrite => "keys:write",
    AuditRead => "audit:read",
    OAuthClientsRead => "oauth_clients:read",
    OAuthClientsWrite => "oauth_clients:write",
    WebhooksRead => "webhooks:read",
    WebhooksWrite => "webhooks:write",
    UsersRead => "users:read",
    UsersWrite => "users:write",
}

/// An authenticated management caller holding the scope `S`.
#[derive(Debug)]
pub(crate) struct Caller<S> {
    pub key: Arc<CachedKey>,
    pub ip: Option<IpAddr>,
    _scope: std::marker::PhantomData<S>,
}

impl<S> Caller<S> {
    pub(crate) fn actor(&self) -> gatehouse_services::audit::Actor {
        gatehouse_services::audit::Actor::Key(Arc::new(self.key.record.clone()))
    }

    pub(crate) fn meta(&self) -> gatehouse_services::audit::RequestMeta {
        gatehouse_services::audit::RequestMeta {
            request_id: Some(crate::error::current_request_id()),
            ip: self.ip.map(|i| i.to_string()),
        }
    }
}

/// The client address, honouring `X-Forwarded-For` only from trusted proxies.
pub(crate) fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    crate::netaddr::client_of(parts, &state.config.trusted_proxies)
}

/// The one presented credential from `Authorization`: a bearer token, or Basic with the key as user name.
fn presented_key(parts: &Parts) -> Result<String, ApiError> {
    match credentials::authorization(&parts.headers) {
        AuthorizationHeader::Absent => Err(ApiError::denied(DenyReason::MissingCredentials)),
        AuthorizationHeader::Repeated => {
            Err(ApiError::MultipleCredentials("Send exactly one Authorization header.".into()))
        }
        AuthorizationHeader::One(Credential::Bearer(token)) => Ok(token.to_owned()),
        AuthorizationHeader::One(Credential::Basic(payload)) => payload
            .decode()
            .map(|basic| basic.user)
            .filter(|user| !user.is_empty())
            .ok_or_else(|| ApiError::denied(DenyReason::InvalidApiKey)),
        AuthorizationHeader::One(Credential::Other) => Err(ApiError::denied(DenyReason::InvalidApiKey)),
    }
}

impl<S: RequiredScope + Send + Sync> FromRequestParts<State> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let presented = presented_key(parts)?;
        let ip = client_ip(parts, state);
        if !looks_like_api_key(&state.config.namespace, &presented) {
            return oauth_caller(state, &presented, ip).await;
        }
        let parsed = ApiKey::parse(&state.config.namespace, &presented)
            .map_err(|_| ApiError::denied_key(DenyReason::InvalidApiKey, &presented))?;
        let ctx = VerifyContext { environment: parsed.environment, ip, app: None, scope: Some(S::scope()) };
        let key = credentials::verify_key(state, &presented, &ctx).await?;
        let rate = credentials::check_rate(state, RateSubject::Key(&key.record)).await?;
        let _ = RATE_SLOT.try_with(|slot| slot.set(Some(rate)));
        Ok(Caller { key, ip, _scope: std::marker::PhantomData })
    }
}

/// An OAuth access token calling the management API: it acts as a restricted credential holding the
/// token's scopes in its client's environment, expiring with the token, identified by its grant.
async fn oauth_caller<S: RequiredScope>(state: &State, token: &str, ip: Option<IpAddr>) -> Result<Caller<S>, ApiError> {
    let (t, rate) = credentials::check_token(state, token, TokenTarget::ManagementApi, Some(S::scope())).await?;
    let _ = RATE_SLOT.try_with(|slot| slot.set(Some(rate)));
    let r = &t.record;
    let record = gatehouse_core::KeyRecord {
        id: r.grant_id.clone(),
        hash: r.hash,
        name: format!("OAuth token of {}", r.client_id),
        workspace: state.keys.workspace().to_owned(),
        environment: t.environment,
        kind: gatehouse_core::KeyKind::Restricted,
        scopes: t.scopes.clone(),
        ip_allowlist: Default::default(),
        expires_at: Some(r.expires_at),
        app: t.app.clone(),
        rate_limit: None,
        metadata: Default::default(),
        display_prefix: String::new(),
        last4: String::new(),
        created_at: r.created_at,
        created_by: r.user_id.clone().unwrap_or_else(|| r.client_id.clone()),
        last_used_at: None,
        revoked_at: None,
        rolled_to: None,
    };
    Ok(Caller { key: Arc::new(CachedKey::synthetic(record)), ip, _scope: std::marker::PhantomData })
}
