//! Errors of the OAuth endpoints in the RFC 6749 §5.2 format: `{"error", "error_description"}`,
//! 400 for everything but `invalid_client` (401, with a `WWW-Authenticate: Basic` challenge),
//! 503 when storage cannot answer, and `Cache-Control: no-store` always. Descriptions pass through
//! the same credential masking as the management API's errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_store::StoreError;

/// One OAuth error.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    pub(crate) fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self { code, description: description.into() }
    }
    pub(crate) fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub(crate) fn invalid_client() -> Self {
        Self::new(
            "invalid_client",
            "Client authentication failed: unknown client, wrong secret, or a method this client may not use.",
        )
    }
    pub(crate) fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub(crate) fn unavailable() -> Self {
        Self::new("temporarily_unavailable", "Storage is temporarily unavailable; nothing was issued. Retry shortly.")
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Full(_) => OAuthError::unavailable(),
            other => {
                tracing::error!(request_id = %crate::error::current_request_id(), cause = %other, "oauth storage error");
                OAuthError::new(
                    "server_error",
                    "Something went wrong on our side. Quote the Request-Id header when reporting it.",
                )
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Descriptions may quote a parameter (a scope, a repeated parameter's name): whatever
        // credential was pasted there is shown masked only, as in the management API's errors.
        let body =
            serde_json::json!({"error": self.code, "error_description": crate::error::masked(&self.description)});
        let mut resp = (status, axum::Json(body)).into_response();
        no_store(resp.headers_mut());
        if self.code == "invalid_client" {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="gatehouse", charset="UTF-8""#),
            );
        }
        resp
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
