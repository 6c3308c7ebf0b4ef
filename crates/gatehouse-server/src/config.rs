//! The server's checked configuration. The binary builds it from file, environment and flags;
//! here every value is already valid.

use std::time::Duration;

use gatehouse_core::ratelimit::Quota;
use gatehouse_core::Namespace;
use ipnet::IpNet;

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
    pub cache: gatehouse_services::verifier::CacheConfig,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The control plane's public origin (login pages, assertion issuer), e.g. `http://127.0.0.1:4455`.
    pub public_url: String,
    pub sessions: gatehouse_services::sessions::SessionConfig,
    pub oauth: gatehouse_services::oauth::OAuthConfig,
    pub webhooks: gatehouse_services::webhooks::WebhookConfig,
    /// Run the webhook delivery worker in this process (every node may; rows are claimed, not locked).
    pub webhook_worker: bool,
    /// Share rate limits across nodes through this Redis (SPEC §8); `None`: limits per node, in memory.
    pub redis_url: Option<gatehouse_core::SecretString>,
    /// Time and size limits of each listener (SPEC §11).
    pub listener: crate::listener::ListenerLimits,
    /// Sign-in throttling and the password-hashing cap (SPEC §11 "Sign-in").
    pub sign_in: gatehouse_services::users::SignInConfig,
    pub usage: gatehouse_services::usage::UsageConfig,
    /// GitHub's secret scanning keys and the report-a-leak limit (SPEC §13).
    pub secret_scanning: SecretScanningConfig,
    /// The gateway and control-plane listeners serve HTTPS themselves (`[tls]`): every request they
    /// answer came over TLS, so cookies are `Secure`, HSTS is sent and upstreams get
    /// `X-Forwarded-Proto: https` (SPEC §11, §14).
    pub tls: bool,
    /// The apps' access policies at start (SPEC §15); `AppState::access` holds the current ones.
    pub access: gatehouse_services::access::PolicyTable,
    /// `[[identity_providers]]`: OpenID Connect providers people may sign in with (SPEC §15).
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// Whether the sign-in page offers the password form (`password_login = false`: providers only).
    pub password_login: bool,
}

/// One `[[identity_providers]]` table, checked: a provider people may sign in with (SPEC §15).
#[derive(Clone, Debug)]
pub struct IdentityProviderConfig {
    /// In URLs: `/login/<id>` and the redirect URI `/login/<id>/callback`.
    pub id: String,
    /// The button says `Continue with <display_name>`.
    pub display_name: String,
    /// Compared exactly with the discovery document's and every ID token's `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: gatehouse_core::SecretString,
    /// Requested scopes; always includes `openid`.
    pub scopes: Vec<String>,
    /// Create a Gatehouse user (with `default_role`) for a verified email no user has yet.
    pub auto_create_users: bool,
    pub default_role: String,
    /// The ID-token claim that lists the person's groups.
    pub groups_claim: String,
    /// Send the browser to the provider's `end_session_endpoint` on sign-out, when it has one.
    pub end_session: bool,
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
            cache: gatehouse_services::verifier::CacheConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            public_url: "http://127.0.0.1:4455".to_owned(),
            sessions: gatehouse_services::sessions::SessionConfig::default(),
            oauth: gatehouse_services::oauth::OAuthConfig::default(),
            webhooks: gatehouse_services::webhooks::WebhookConfig::default(),
            webhook_worker: true,
            redis_url: None,
            listener: crate::listener::ListenerLimits::default(),
            sign_in: gatehouse_services::users::SignInConfig::default(),
            usage: gatehouse_services::usage::UsageConfig::default(),
            secret_scanning: SecretScanningConfig::default(),
            tls: false,
            access: Default::default(),
            identity_providers: Vec::new(),
            password_login: true,
        }
    }
}

/// GitHub's published secret scanning keys.
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// Where GitHub's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Fetched over HTTP(S) (GitHub's list by default).
    Url(String),
    /// Read from a file of the same JSON shape.
    File(std::path::PathBuf),
}

/// `[secret_scanning]`: the key list and the report-a-leak limits.
#[derive(Clone, Debug)]
pub struct SecretScanningConfig {
    pub keys: KeySource,
    /// How long a fetched list is trusted before it is fetched again.
    pub refresh_interval: std::time::Duration,
    /// Fewest time between two fetches (an unknown key identifier asks for one).
    pub min_refetch_interval: std::time::Duration,
    /// Per client address, on `POST /v1/credentials/report_leak`.
    pub report_limit: gatehouse_core::ratelimit::Quota,
}

impl Default for SecretScanningConfig {
    fn default() -> Self {
        Self {
            keys: KeySource::Url(GITHUB_KEYS_URL.to_owned()),
            refresh_interval: std::time::Duration::from_secs(3600),
            min_refetch_interval: std::time::Duration::from_secs(60),
            report_limit: gatehouse_core::ratelimit::Quota { limit: 10, window_ms: 60_000 },
        }
    }
}
