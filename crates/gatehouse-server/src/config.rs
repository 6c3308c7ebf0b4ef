//! The server's checked configuration. The binary builds it from file, environment and flags;
//! here every value is already valid.

use std::time::Duration;

use gatehouse_core::ratelimit::Quota;
use gatehouse_core::Namespace;
use ipnet::IpNet;

/// Key-cache tuning (see `verifier`).
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How often the change feed is polled for revocations and other key writes.
    pub poll_interval: Duration,
    /// If the feed could not be read for this long, the cache is bypassed (and a dead store then answers 503).
    pub max_staleness: Duration,
    /// How long a found key is trusted before it is re-read, even without a change.
    pub positive_ttl: Duration,
    /// How long an unknown hash is remembered as unknown.
    pub negative_ttl: Duration,
    /// Upper bound on cached entries (found and unknown together).
    pub max_entries: usize,
    /// How often `last_used_at` is written back, in one batch.
    pub last_used_flush: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_staleness: Duration::from_secs(2),
            positive_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_entries: 1_000_000,
            last_used_flush: Duration::from_secs(10),
        }
    }
}

/// Everything the control plane needs to know, validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub namespace: Namespace,
    pub workspace: String,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The default per-credential limit; keys may override it.
    pub default_rate_limit: Quota,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    pub cache: CacheConfig,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The control plane's public origin (login pages, assertion issuer), e.g. `http://127.0.0.1:4455`.
    pub public_url: String,
    pub sessions: crate::sessions::SessionConfig,
    pub oauth: crate::oauth::OAuthConfig,
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Run the webhook delivery worker in this process (every node may; rows are claimed, not locked).
    pub webhook_worker: bool,
    /// Share rate limits across nodes through this Redis (SPEC §8); `None`: limits per node, in memory.
    pub redis_url: Option<gatehouse_core::SecretString>,
    /// Time and size limits of each listener (SPEC §11).
    pub listener: crate::listener::ListenerLimits,
    /// Sign-in throttling and the password-hashing cap (SPEC §11 "Sign-in").
    pub sign_in: crate::users::SignInConfig,
    pub usage: crate::usage::UsageConfig,
}

/// The documented request body limit of the management API.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            namespace: Namespace::default(),
            workspace: "default".to_owned(),
            trusted_proxies: Vec::new(),
            default_rate_limit: Quota { limit: 100, window_ms: 1_000 },
            body_limit: DEFAULT_BODY_LIMIT,
            cache: CacheConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            public_url: "http://127.0.0.1:4455".to_owned(),
            sessions: crate::sessions::SessionConfig::default(),
            oauth: crate::oauth::OAuthConfig::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
            webhook_worker: true,
            redis_url: None,
            listener: crate::listener::ListenerLimits::default(),
            sign_in: crate::users::SignInConfig::default(),
            usage: crate::usage::UsageConfig::default(),
        }
    }
}
