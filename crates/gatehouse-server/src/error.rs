//! The one place where failures become HTTP answers (SPEC §5): status, `type`, `code`, message,
//! `Request-Id`, `WWW-Authenticate` and the rate-limit headers. Nothing else picks a status for an error.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::apikey::{mask, mask_keys_in};
use gatehouse_core::ratelimit::RateDecision;
use gatehouse_core::{DenyClass, DenyReason, Namespace};
use gatehouse_store::StoreError;

use gatehouse_services::ServiceError;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub(crate) static REQUEST_ID: String;
}

/// Runs `fut` as one request: a fresh request id and the key namespace are set for it (error bodies
/// carry the id, the final masking pass uses the namespace). Answers the id and `fut`'s output; the
/// caller puts the id on its response. Both the management API's middleware and the gateway use it.
pub(crate) async fn in_request_scope<T>(ns: Namespace, fut: impl std::future::Future<Output = T>) -> (String, T) {
    let request_id = gatehouse_services::ids::new_id_now("req");
    let out = REQUEST_ID.scope(request_id.clone(), NAMESPACE.scope(ns, fut)).await;
    (request_id, out)
}

/// Sets the `Request-Id` header.
pub(crate) fn set_request_id(resp: &mut Response, request_id: &str) {
    resp.headers_mut().insert("request-id", HeaderValue::from_str(request_id).expect("ids are ASCII"));
}

/// The current request's id, or a fresh one outside a request.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| gatehouse_services::ids::new_id_now("req"))
}

/// Every error the management API can answer with.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400 `invalid_request`.
    InvalidRequest(String),
    /// 400 `ambiguous_path` (SPEC §3 path safety).
    AmbiguousPath(String),
    /// 502: the micro's upstream cannot be reached.
    BadGateway(String),
    /// 504: the micro's upstream did not answer in time.
    UpstreamTimeout(String),
    /// 400 `multiple_credentials`.
    MultipleCredentials(String),
    /// 413: the body is larger than the documented limit.
    PayloadTooLarge(usize),
    /// 404 `resource_missing`.
    NotFound(String),
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `conflict`.
    Conflict(String),
    /// 401 / 403 / 429 from a credential check; `presented` is masked into the message.
    Denied { reason: DenyReason, presented: Option<String>, rate: Option<RateDecision> },
    /// 401 `invalid_signature`: a signed request (GitHub's secret scanning) whose signature does not
    /// check out; the message says which part failed, never what was expected.
    BadSignature(String),
    /// 503: storage unreachable. Never "allow".
    Unavailable,
    /// 503 with the message given: a dependency other than storage (GitHub's key list) is unreachable.
    DependencyUnavailable(String),
    /// 500: a bug. The cause goes to the log with the request id, never to the client.
    Internal(String),
}

impl ApiError {
    pub(crate) fn denied(reason: DenyReason) -> Self {
        ApiError::Denied { reason, presented: None, rate: None }
    }

    /// A refusal whose message names the (masked) key that was presented.
    pub(crate) fn denied_key(reason: DenyReason, presented: &str) -> Self {
        ApiError::Denied { reason, presented: Some(mask(presented)), rate: None }
    }

    pub(crate) fn rate_limited(decision: RateDecision) -> Self {
        ApiError::Denied {
            reason: DenyReason::RateLimited { retry_after_secs: decision.retry_after_secs },
            presented: None,
            rate: Some(decision),
        }
    }

    /// `"<status> <code>: <message>"`, the answer in one line (the dashboard's decision explainer).
    pub(crate) fn summary(&self) -> String {
        let (status, _, code, message) = self.parts();
        format!("{} {code}: {message}", status.as_u16())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use ApiError::*;
        match self {
            InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", m.clone()),
            AmbiguousPath(m) => (StatusCode::BAD_REQUEST, "invalid_request_error", "ambiguous_path", m.clone()),
            BadGateway(micro) => (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_unavailable",
                format!("The app's `{micro}` service is not answering. It may be starting or down; retry shortly."),
            ),
            UpstreamTimeout(micro) => (
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "upstream_timeout",
                format!("The app's `{micro}` service took too long to answer."),
            ),
            MultipleCredentials(m) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "multiple_credentials", m.clone())
            }
            PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            NotFound(m) => (StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", m.clone()),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                "This endpoint does not accept that HTTP method.".into(),
            ),
            Conflict(m) => (StatusCode::CONFLICT, "invalid_request_error", "conflict", m.clone()),
            Denied { reason, presented, .. } => {
                let (status, kind) = match reason.class() {
                    DenyClass::Authentication => (StatusCode::UNAUTHORIZED, "authentication_error"),
                    DenyClass::Permission => (StatusCode::FORBIDDEN, "permission_error"),
                    DenyClass::RateLimit => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
                };
                let mut message = reason.to_string();
                // Naming the key helps find which of several keys failed; a 403's key is fine and needs no naming.
                if let (Some(p), DenyClass::Authentication) = (presented, reason.class()) {
                    message = format!("{message} (key {p})");
                }
                (status, kind, reason.code(), message)
            }
            BadSignature(m) => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_signature", m.clone()),
            DependencyUnavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, "api_error", "service_unavailable", m.clone())
            }
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "service_unavailable",
                "Storage is temporarily unavailable; the request was refused. Retry shortly.".into(),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                "Something went wrong on our side. Quote the request id when reporting it.".into(),
            ),
        }
    }

    /// Renders the error body and headers. `namespace` drives the final key-masking pass.
    pub(crate) fn render(&self, namespace: &Namespace) -> Response {
        let request_id = current_request_id();
        let (status, kind, code, message) = self.parts();
        if let ApiError::Internal(cause) = self {
            tracing::error!(request_id = %request_id, cause = %mask_keys_in(cause, namespace), "internal error");
        }
        let message = mask_keys_in(&message, namespace);
        let body = ErrorOut { error: ErrorDetail { kind: kind.into(), code: code.into(), message, request_id } };
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let ApiError::Denied { reason, rate, .. } = self {
            if reason.class() == DenyClass::Authentication {
                let challenge = match reason {
                    DenyReason::MissingCredentials => r#"Bearer realm="gatehouse""#.to_owned(),
                    _ => format!(
                        r#"Bearer realm="gatehouse", error="invalid_token", error_description="{}""#,
                        reason.code()
                    ),
                };
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("ASCII challenge"));
            }
            if let Some(rate) = rate {
                set_rate_headers(h, rate);
                h.insert(header::RETRY_AFTER, HeaderValue::from(rate.retry_after_secs));
            }
        }
        resp
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (draft IETF fields, delta seconds).
pub(crate) fn set_rate_headers(h: &mut http::HeaderMap, rate: &RateDecision) {
    h.insert("ratelimit-limit", HeaderValue::from(rate.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(rate.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(rate.reset_secs));
}

/// Without a namespace at hand (extractor rejections), mask with the default; the middleware's
/// catch-all pass re-masks with the deployment's namespace.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ns = NAMESPACE.try_with(Clone::clone).unwrap_or_default();
        self.render(&ns)
    }
}

tokio::task_local! {
    /// The deployment's key namespace, for masking in error bodies.
    pub(crate) static NAMESPACE: Namespace;
}

/// `text` with every credential of this deployment masked (`mask_keys_in` with the request's
/// namespace), for messages outside the §5 format that may quote user input: OAuth error
/// descriptions and the authorization pages.
pub(crate) fn masked(text: &str) -> String {
    let ns = NAMESPACE.try_with(Clone::clone).unwrap_or_default();
    mask_keys_in(text, &ns)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Full(_) => ApiError::Unavailable,
            StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<gatehouse_services::users::UserError> for ApiError {
    fn from(e: gatehouse_services::users::UserError) -> Self {
        use gatehouse_services::users::UserError;
        match e {
            UserError::InvalidEmail(_)
            | UserError::InvalidRole(_)
            | UserError::Password(_)
            | UserError::InvalidLink => ApiError::InvalidRequest(e.to_string()),
            UserError::EmailTaken(_) | UserError::LastOwner(_) => ApiError::Conflict(e.to_string()),
            UserError::NoSuchUser(_) => ApiError::NotFound(e.to_string()),
            UserError::NotAllowed(message) => {
                ApiError::denied(DenyReason::ExceedsAuthority(gatehouse_core::authority::Excess {
                    dimension: gatehouse_core::authority::Dimension::Scopes,
                    message,
                }))
            }
            UserError::Busy => ApiError::Unavailable,
            UserError::Store(s) => s.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => ApiError::InvalidRequest(m),
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Denied(reason) => ApiError::denied(reason),
            ServiceError::Store(s) => s.into(),
        }
    }
}

/// The §5 error body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorOut {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    pub request_id: String,
}
