//! What the control plane keeps of each identity provider (SPEC §15) and its HTTP with them: the
//! discovery document (`<issuer>/.well-known/openid-configuration`, cached for an hour, the last good
//! one kept through an outage), the signing keys (cached; a token with an unknown `kid` loads them again,
//! at most once per `min_refetch` so a flood of made-up key ids cannot make us hammer the provider), the
//! code exchange, and ID-token validation (`gatehouse_core::oidc`). A module of its own, like
//! `leak_intake`, so that `state` holds it without importing the sign-in handlers (`sso`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gatehouse_core::oidc::{
    discovery_url, validate_id_token, Expectations, IdClaims, IdTokenError, Jwks, ProviderMetadata, TokenAuth,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::config::IdentityProviderConfig;

/// The largest token-endpoint answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Timings of the provider caches.
#[derive(Clone, Debug)]
pub struct IdpTimings {
    /// A discovery document is used this long before it is loaded again.
    pub metadata_ttl: Duration,
    /// Signing keys are used this long before they are loaded again.
    pub keys_ttl: Duration,
    /// Fewest time between two loads of the keys (an unknown `kid` asks for one).
    pub min_refetch: Duration,
    /// Each HTTP exchange with a provider.
    pub timeout: Duration,
}

impl Default for IdpTimings {
    fn default() -> Self {
        Self {
            metadata_ttl: Duration::from_secs(3600),
            keys_ttl: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a provider step failed. Messages are for logs and never hold a token, code or secret.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("the provider could not be reached or answered badly: {0}")]
    Unreachable(String),
    #[error("the provider's discovery document was refused: {0}")]
    Metadata(#[from] gatehouse_core::oidc::MetadataError),
    #[error("the provider's signing keys were refused: {0}")]
    Keys(#[from] gatehouse_core::oidc::JwksError),
    #[error("the provider refused the code exchange: {0}")]
    Exchange(String),
    #[error("{0}")]
    Token(#[from] IdTokenError),
}

#[derive(Debug)]
struct Cached<T> {
    value: Option<Arc<T>>,
    loaded_at: Option<Instant>,
    tried_at: Option<Instant>,
}

impl<T> Cached<T> {
    /// Keeps what a load gave; a failed load keeps the last good value, and is an error only without one.
    fn keep(&mut self, loaded: Result<T, IdpError>, now: Instant, provider: &str, what: &str) -> Result<(), IdpError> {
        match loaded {
            Ok(v) => {
                self.value = Some(Arc::new(v));
                self.loaded_at = Some(now);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(provider, error = %e, "could not load the identity provider's {what}");
                if self.value.is_none() {
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self { value: None, loaded_at: None, tried_at: None }
    }
}

/// One configured provider with its caches.
#[derive(Debug)]
pub struct Provider {
    pub config: IdentityProviderConfig,
    metadata: tokio::sync::Mutex<Cached<ProviderMetadata>>,
    keys: tokio::sync::Mutex<Cached<Jwks>>,
    /// Loads of the key set so far (for tests and logs).
    key_loads: std::sync::atomic::AtomicU64,
}

/// The configured providers, in configuration order.
#[derive(Debug)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
    http: reqwest::Client,
    timings: IdpTimings,
}

/// What the token endpoint gave for a code.
pub struct Exchanged {
    pub id_token: String,
}

impl std::fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exchanged { id_token: [redacted] }")
    }
}

/// `application/x-www-form-urlencoded` value encoding (RFC 6749 §2.3.1 asks it of Basic credentials too).
fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl Providers {
    pub fn new(configs: Vec<IdentityProviderConfig>, timings: IdpTimings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with static settings builds");
        let list = configs
            .into_iter()
            .map(|config| {
                Arc::new(Provider {
                    config,
                    metadata: tokio::sync::Mutex::default(),
                    keys: tokio::sync::Mutex::default(),
                    key_loads: std::sync::atomic::AtomicU64::new(0),
                })
            })
            .collect();
        Self { list, http, timings }
    }

    /// The provider with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.config.id == id)
    }

    pub fn all(&self) -> &[Arc<Provider>] {
        &self.list
    }

    /// Reads `url` with at most `limit` bytes of body; a status other than 2xx is an error.
    async fn fetch(&self, req: reqwest::RequestBuilder, what: &str, limit: usize) -> Result<(u16, Vec<u8>), IdpError> {
        let mut resp = req.send().await.map_err(|e| IdpError::Unreachable(format!("{what}: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| IdpError::Unreachable(format!("{what}: {}", e.without_url())))?
        {
            if body.len() + chunk.len() > limit {
                return Err(IdpError::Unreachable(format!("{what}: the answer is larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    async fn get_json(&self, url: &str, what: &str, limit: usize) -> Result<Vec<u8>, IdpError> {
        let (status, body) = self.fetch(self.http.get(url).header("accept", "application/json"), what, limit).await?;
        if !(200..300).contains(&status) {
            return Err(IdpError::Unreachable(format!("{what}: status {status}")));
        }
        Ok(body)
    }

    /// The provider's discovery document, loaded when missing or older than `metadata_ttl`. When a load
    /// fails, the last good document stays in use.
    pub async fn metadata(&self, p: &Provider) -> Result<Arc<ProviderMetadata>, IdpError> {
        let mut cache = p.metadata.lock().await;
        let now = Instant::now();
        let fresh = cache.loaded_at.is_some_and(|t| now.duration_since(t) < self.timings.metadata_ttl);
        if let (true, Some(m)) = (fresh, &cache.value) {
            return Ok(m.clone());
        }
        // Without a document, every sign-in may try again; with one, a failing provider is asked once
        // per `min_refetch`.
        let may_try =
            cache.value.is_none() || cache.tried_at.is_none_or(|t| now.duration_since(t) >= self.timings.min_refetch);
        if may_try {
            cache.tried_at = Some(now);
            let url = discovery_url(&p.config.issuer);
            let loaded =
                match self.get_json(&url, "discovery", gatehouse_core::oidc::metadata::MAX_DOCUMENT_BYTES).await {
                    Ok(body) => ProviderMetadata::parse(&body, &p.config.issuer).map_err(IdpError::from),
                    Err(e) => Err(e),
                };
            cache.keep(loaded, now, &p.config.id, "discovery document")?;
        }
        cache.value.clone().ok_or_else(|| IdpError::Unreachable("discovery: not loaded".into()))
    }

    /// The provider's keys; loaded when missing, stale, or (`want_kid`) not holding that key id, at most
    /// once per `min_refetch`. The last good set stays in use when a load fails.
    async fn keys(&self, p: &Provider, meta: &ProviderMetadata, want_kid: Option<&str>) -> Result<Arc<Jwks>, IdpError> {
        let mut cache = p.keys.lock().await;
        let now = Instant::now();
        let fresh = cache.loaded_at.is_some_and(|t| now.duration_since(t) < self.timings.keys_ttl);
        let known = match (want_kid, &cache.value) {
            (Some(kid), Some(set)) => set.has_kid(kid),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let may_try = cache.tried_at.is_none_or(|t| now.duration_since(t) >= self.timings.min_refetch);
        if (!fresh || !known) && (may_try || cache.value.is_none()) {
            cache.tried_at = Some(now);
            p.key_loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let loaded = match self.get_json(&meta.jwks_uri, "jwks", gatehouse_core::oidc::jwks::MAX_JWKS_BYTES).await {
                Ok(body) => Jwks::parse(&body).map_err(IdpError::from),
                Err(e) => Err(e),
            };
            cache.keep(loaded, now, &p.config.id, "signing keys")?;
        }
        cache.value.clone().ok_or_else(|| IdpError::Unreachable("jwks: not loaded".into()))
    }

    /// Validates an ID token of provider `p` issued for the sign-in with `nonce`. A token signed with a
    /// key the cached set does not hold loads the set again (rate limited) and is judged once more.
    pub async fn validate(&self, p: &Provider, id_token: &str, nonce: &str) -> Result<IdClaims, IdpError> {
        let meta = self.metadata(p).await?;
        let now = gatehouse_core::Timestamp::now().unix_seconds();
        let expect = Expectations {
            issuer: &p.config.issuer,
            client_id: &p.config.client_id,
            nonce,
            algorithms: &meta.id_token_algorithms,
            now,
            leeway: 60,
            groups_claim: &p.config.groups_claim,
        };
        let keys = self.keys(p, &meta, None).await?;
        match validate_id_token(id_token, &keys, &expect) {
            Err(IdTokenError::UnknownKey) => {
                let kid = gatehouse_core::oidc::id_token::key_id(id_token);
                // No kid and no single matching key: load the set again too (a rotation without kids).
                let again = self.keys(p, &meta, Some(kid.as_deref().unwrap_or("\u{0}"))).await?;
                if Arc::ptr_eq(&again, &keys) {
                    return Err(IdTokenError::UnknownKey.into());
                }
                Ok(validate_id_token(id_token, &again, &expect)?)
            }
            other => Ok(other?),
        }
    }

    /// How many times the key set of `p` was loaded.
    pub fn key_loads(&self, p: &Provider) -> u64 {
        p.key_loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Exchanges an authorization code at the token endpoint (with the PKCE verifier), authenticating as
    /// the provider advertises (`client_secret_basic` or `client_secret_post`).
    pub async fn exchange(
        &self,
        p: &Provider,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Exchanged, IdpError> {
        let meta = self.metadata(p).await?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let secret = p.config.client_secret.expose();
        let mut req = self.http.post(&meta.token_endpoint).header("accept", "application/json");
        match meta.token_auth {
            TokenAuth::ClientSecretBasic => {
                let pair = format!("{}:{}", form_encode(&p.config.client_id), form_encode(secret));
                req = req.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
            }
            TokenAuth::ClientSecretPost => {
                form.push(("client_id", &p.config.client_id));
                form.push(("client_secret", secret));
            }
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| IdpError::Exchange(e.to_string()))?;
        let req = req.header("content-type", "application/x-www-form-urlencoded").body(body);
        let (status, body) = self.fetch(req, "token endpoint", MAX_TOKEN_RESPONSE_BYTES).await?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| IdpError::Exchange(format!("status {status}, the answer is not JSON")))?;
        if !(200..300).contains(&status) {
            // RFC 6749 §5.2: only the error code, and only if it is a plain token (never echo more).
            let code = json
                .get("error")
                .and_then(|e| e.as_str())
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .unwrap_or("unknown");
            return Err(IdpError::Exchange(format!("status {status}, error {code}")));
        }
        let id_token = json
            .get("id_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| IdpError::Exchange("the answer has no id_token (is `openid` among the scopes?)".into()))?;
        Ok(Exchanged { id_token: id_token.to_owned() })
    }

    /// Where to send a browser signing out of a login that came from provider `provider_id`: its
    /// `end_session_endpoint` with `id_token_hint`, `client_id` and `post_logout_redirect_uri`
    /// (OpenID Connect RP-Initiated Logout 1.0), when the provider has one and `end_session` is on.
    pub async fn end_session_url(
        &self,
        provider_id: &str,
        id_token: &str,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let p = self.get(provider_id)?;
        if !p.config.end_session {
            return None;
        }
        let meta = self.metadata(p).await.ok()?;
        let mut url = url::Url::parse(meta.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &p.config.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        Some(url.into())
    }
}
