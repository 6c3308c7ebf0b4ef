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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gatehouse_core::leak::{
    parse_github_batch, parse_key_list, parse_leak_report, parse_signature_headers, PublishedKey, MAX_BATCH_BYTES,
    MAX_KEY_LIST_BYTES,
};
use gatehouse_core::ratelimit::Quota;
use gatehouse_core::KeyHash;
use gatehouse_services::audit::RequestMeta;
use gatehouse_services::leaks::{LeakService, LeakSource};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use crate::credentials::{check_rate, RateSubject};
use crate::error::ApiError;
use crate::state::AppState;

/// GitHub's published secret scanning keys.
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// Where GitHub's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Fetched over HTTP(S) (GitHub's list by default).
    Url(String),
    /// Read from a file of the same JSON shape.
    File(PathBuf),
}

/// `[secret_scanning]`: the key list and the report-a-leak limits.
#[derive(Clone, Debug)]
pub struct SecretScanningConfig {
    pub keys: KeySource,
    /// How long a fetched list is trusted before it is fetched again.
    pub refresh_interval: Duration,
    /// Fewest time between two fetches (an unknown key identifier asks for one).
    pub min_refetch_interval: Duration,
    /// Per client address, on `POST /v1/credentials/report_leak`.
    pub report_limit: Quota,
}

impl Default for SecretScanningConfig {
    fn default() -> Self {
        Self {
            keys: KeySource::Url(GITHUB_KEYS_URL.to_owned()),
            refresh_interval: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(60),
            report_limit: Quota { limit: 10, window_ms: 60_000 },
        }
    }
}

/// Reports accepted but not yet processed, across all clients; past this, `503`.
const MAX_PENDING_REPORTS: usize = 64;

/// The cached key list.
#[derive(Debug, Default)]
struct KeyCache {
    keys: Vec<PublishedKey>,
    /// When the list in `keys` was loaded (`None`: never).
    loaded_at: Option<Instant>,
    /// When a load was last tried, successful or not.
    tried_at: Option<Instant>,
}

/// GitHub's key list, cached and refreshed (SPEC §13).
#[derive(Debug)]
pub struct GithubKeys {
    config: SecretScanningConfig,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<KeyCache>,
}

/// Why a key could not be had.
#[derive(Debug, PartialEq, Eq)]
enum KeyLookup {
    Found(PublishedKey),
    /// Not in the list (after a refetch if one was allowed).
    Unknown,
    /// Never loaded and cannot be loaded now.
    Unavailable,
}

impl GithubKeys {
    pub fn new(config: SecretScanningConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with static settings builds");
        Self { config, http, cache: tokio::sync::Mutex::new(KeyCache::default()) }
    }

    /// The key `id`, loading the list when it is stale or does not know `id` (rate limited).
    async fn key(&self, id: &str) -> KeyLookup {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let fresh = cache.loaded_at.is_some_and(|t| now.duration_since(t) < self.config.refresh_interval);
        let known = cache.keys.iter().any(|k| k.key_identifier == id);
        let may_try = cache.tried_at.is_none_or(|t| now.duration_since(t) >= self.config.min_refetch_interval);
        if (!fresh || !known) && may_try {
            cache.tried_at = Some(now);
            match self.load().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.loaded_at = Some(now);
                }
                // The previous list, if any, stays in use: GitHub rotates rarely, and an outage of its
                // API should not stop revocations signed by a key we already know.
                Err(e) => tracing::warn!(error = %e, "could not load GitHub's secret scanning keys"),
            }
        }
        if cache.loaded_at.is_none() {
            return KeyLookup::Unavailable;
        }
        match cache.keys.iter().find(|k| k.key_identifier == id) {
            Some(k) => KeyLookup::Found(k.clone()),
            None => KeyLookup::Unknown,
        }
    }

    async fn load(&self) -> Result<Vec<PublishedKey>, String> {
        let body = match &self.config.keys {
            KeySource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                if meta.len() > MAX_KEY_LIST_BYTES as u64 {
                    return Err(format!("{}: larger than {MAX_KEY_LIST_BYTES} bytes", path.display()));
                }
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            KeySource::Url(url) => self.fetch(url).await?,
        };
        let list = parse_key_list(&body).map_err(|e| e.to_string())?;
        if list.skipped > 0 {
            tracing::info!(skipped = list.skipped, "GitHub key list entries that are not P-256 keys were skipped");
        }
        Ok(list.keys)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {}", e.without_url()))? {
            if body.len() + chunk.len() > MAX_KEY_LIST_BYTES {
                return Err(format!("{url}: larger than {MAX_KEY_LIST_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Checks GitHub's signature headers over the raw `body`.
    async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let sig =
            parse_signature_headers(header("github-public-key-identifier"), header("github-public-key-signature"))
                .map_err(|e| ApiError::BadSignature(format!("{e}.")))?;
        let key =
            match self.key(&sig.key_id).await {
                KeyLookup::Found(k) => k,
                KeyLookup::Unknown => {
                    return Err(ApiError::BadSignature("The signing key is not in GitHub's published key list.".into()))
                }
                KeyLookup::Unavailable => return Err(ApiError::DependencyUnavailable(
                    "GitHub's secret scanning keys could not be loaded; the report was not processed. Retry shortly."
                        .into(),
                )),
            };
        if !key.is_current {
            return Err(ApiError::BadSignature("The signing key is no longer current in GitHub's key list.".into()));
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point)
            .verify(body, &sig.der)
            .map_err(|_| ApiError::BadSignature("The signature does not match the body.".into()))
    }
}

/// What the two endpoints share.
#[derive(Debug)]
pub struct LeakIntake {
    pub service: LeakService,
    pub github_keys: GithubKeys,
    pending: Arc<tokio::sync::Semaphore>,
}

impl LeakIntake {
    pub fn new(service: LeakService, config: SecretScanningConfig) -> Self {
        Self {
            service,
            github_keys: GithubKeys::new(config),
            pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_REPORTS)),
        }
    }
}

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
    let ip = crate::api::client_ip(&parts, &state);
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
    let ip = crate::api::client_ip(&parts, &state);
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
