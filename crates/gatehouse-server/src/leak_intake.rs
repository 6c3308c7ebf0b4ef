//! What the leak endpoints of `secret_scanning` keep between requests: GitHub's published key list
//! (fetched, cached, refetched at most once per `min_refetch_interval`) and the bound on reports in
//! flight. A module of its own so that `state` holds it without importing the handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use gatehouse_core::leak::{parse_key_list, parse_signature_headers, PublishedKey, MAX_KEY_LIST_BYTES};
use gatehouse_services::leaks::LeakService;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use crate::config::{KeySource, SecretScanningConfig};
use crate::error::ApiError;

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
    pub(crate) async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
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
    pub(crate) pending: Arc<tokio::sync::Semaphore>,
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
