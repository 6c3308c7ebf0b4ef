//! Liveness, readiness and Prometheus metrics.

use axum::extract::State as AxState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::State;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: storage answers, and with `[tls]` every managed certificate is being served. Each
/// certificate is listed under `tls` with its expiry and, while its renewal fails, the last error.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Ready"), (status = 503, description = "Storage unreachable, or a host has no certificate yet")))]
pub(crate) async fn readyz(AxState(state): AxState<State>) -> impl IntoResponse {
    let certificates = state.tls.snapshot();
    let tls_ready = state.tls.all_served();
    let mut body = serde_json::json!({"status": "ready", "storage": state.store.backend()});
    if !certificates.is_empty() {
        body["tls"] = serde_json::json!(certificates);
    }
    let mut status = StatusCode::OK;
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "not ready: storage unreachable");
        status = StatusCode::SERVICE_UNAVAILABLE;
        body["status"] = "unavailable".into();
    } else if !tls_ready {
        status = StatusCode::SERVICE_UNAVAILABLE;
        body["status"] = "no_certificate".into();
    }
    (status, Json(body))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn metrics(AxState(state): AxState<State>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
