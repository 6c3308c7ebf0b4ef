//! The two doors through which a leaked credential is reported (SPEC §13), over
//! `gatehouse_services::leaks`:
//!
//! - `POST /v1/secret_scanning/github`, GitHub's secret scanning partner endpoint: the raw body must
//!   carry an ECDSA P-256 / SHA-256 signature by a current key of GitHub's published list
//!   (`GithubKeys`: fetched from a URL or read from a file, cached, refetched when an unknown
//!   identifier arrives, at most once per `min_refetch_interval`). Only a verified body is parsed;
//!   the answer is GitHub's label format.
//! - `POST /v1/credentials/report_leak`: anyone holding a credential may kill it. No credential,
//!   rate limited per client address, and always `202` with a body that depends only on the
//!   request's shape, before any lookup is done, so neither the answer nor its timing tells which
//!   credentials were real.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gatehouse_core::leak::{parse_github_batch, parse_leak_report, MAX_BATCH_BYTES};
use gatehouse_core::KeyHash;
use gatehouse_services::audit::RequestMeta;
use gatehouse_services::leaks::LeakSource;

use crate::credentials::{check_rate, RateSubject};
use crate::error::ApiError;
use crate::state::AppState;

pub use crate::config::{KeySource, SecretScanningConfig, GITHUB_KEYS_URL};
pub use crate::leak_intake::{GithubKeys, LeakIntake};

/// One label of GitHub's feedback format.
#[derive(Debug, serde::Serialize)]
struct Label {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn body_bytes(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge(limit))
}

fn meta(ip: Option<IpAddr>) -> RequestMeta {
    RequestMeta { request_id: Some(crate::error::current_request_id()), ip: ip.map(|i| i.to_string()) }
}

/// `POST /v1/secret_scanning/github`.
pub(crate) async fn github(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let ip = crate::netaddr::client_of(&parts, &state.config.trusted_proxies);
    let body = body_bytes(body, MAX_BATCH_BYTES).await?;
    state.leaks.github_keys.verify(&parts.headers, &body).await?;
    let batch = parse_github_batch(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let meta = meta(ip);
    let mut labels = Vec::with_capacity(batch.len());
    for item in batch {
        let source = LeakSource::Github {
            url: item.url.clone(),
            source: item.source.clone(),
            token_type: item.token_type.clone(),
        };
        let report = state.leaks.service.revoke_leaked(&item.token, &source, &meta).await?;
        labels.push(Label {
            token_hash: KeyHash::of(&item.token).to_hex(),
            token_type: item.token_type,
            label: if report.outcome.is_ours() { "true_positive" } else { "false_positive" },
        });
    }
    Ok(Json(labels).into_response())
}

/// `POST /v1/credentials/report_leak`.
pub(crate) async fn report_leak(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let ip = crate::netaddr::client_of(&parts, &state.config.trusted_proxies);
    // The limit is spent before the body is read: a flood costs the flooder, and a 429 depends on
    // nothing but how many requests this address sent.
    if let Some(ip) = ip {
        check_rate(&state, RateSubject::LeakReport(ip, state.config.secret_scanning.report_limit))
            .await
            .map_err(ApiError::from)?;
    }
    let body = body_bytes(body, MAX_BATCH_BYTES).await?;
    let credentials = parse_leak_report(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let Ok(permit) = state.leaks.pending.clone().try_acquire_owned() else {
        return Err(ApiError::DependencyUnavailable(
            "Too many reports are waiting to be processed; retry shortly.".into(),
        ));
    };
    let received = credentials.len();
    let meta = meta(ip);
    let worker = state.clone();
    // Looked up after the answer, so its timing says nothing about validity.
    tokio::spawn(async move {
        let _permit = permit;
        let mut failed = 0usize;
        for c in credentials {
            if let Err(e) = worker.leaks.service.revoke_leaked(&c, &LeakSource::Report, &meta).await {
                failed += 1;
                tracing::warn!(error = %e, request_id = ?meta.request_id, "a reported credential could not be checked");
            }
        }
        if failed > 0 {
            tracing::warn!(failed, request_id = ?meta.request_id, "leak report partly unprocessed; the reporter may send it again");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"received": received}))).into_response())
}
