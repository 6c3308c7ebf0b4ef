//! Configuration layering (SPEC §1): built-in defaults → TOML file → `GATEHOUSE_…` environment → flags.
//! Unknown keys are errors everywhere, and file errors name the file, line and field.
//! Secrets may come from `…_FILE` variables. The result is checked once into `Config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gatehouse_core::access::{AccessPolicy, PolicyLists};
use gatehouse_core::ratelimit::Quota;
use gatehouse_core::{Namespace, SecretString};
use gatehouse_server::config::ServerConfig;
use gatehouse_services::access::PolicyTable;
use gatehouse_services::verifier::CacheConfig;
use ipnet::IpNet;
use serde::Deserialize;

/// The file/env shape. Every field optional: absent means "the next layer down decides".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub listen: Option<String>,
    pub key_namespace: Option<String>,
    pub workspace: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub body_limit_bytes: Option<usize>,
    pub shutdown_grace_secs: Option<u64>,
    /// The control plane's public URL (login pages and assertion issuer). Default: http://<listen>.
    pub public_url: Option<String>,
    /// Where the gateway listens (`up`, and `serve` when apps are configured).
    pub gateway_listen: Option<String>,
    pub owner_email: Option<String>,
    pub owner_password: Option<String>,
    pub session: Option<RawSession>,
    pub sign_in: Option<RawSignIn>,
    pub oauth: Option<RawOAuth>,
    pub webhooks: Option<RawWebhooks>,
    pub usage: Option<RawUsage>,
    /// GitHub's secret scanning partner endpoint and report-a-leak (SPEC §13).
    pub secret_scanning: Option<RawSecretScanning>,
    pub gateway: Option<RawGateway>,
    /// Apps served by `serve` (one table per app).
    pub apps: Option<Vec<RawApp>>,
    /// `[access.<app name>]`: who may open each app (SPEC §15). Read from the file alone, with lines,
    /// by `access_policies`; here only accepted as a table.
    #[allow(dead_code)] // read from the file's text, where lines are known, not from the merged layers
    pub access: Option<toml::Table>,
    /// OpenID Connect providers people may sign in with (SPEC §15).
    pub identity_providers: Option<Vec<RawIdentityProvider>>,
    /// Offer the password form on the sign-in page (default true; false: providers only).
    pub password_login: Option<bool>,
    pub rate_limit: Option<RawRateLimit>,
    pub cache: Option<RawCache>,
    /// Time and size limits of each listener (SPEC §11).
    pub limits: Option<RawLimits>,
    /// HTTPS for the gateway and the control plane (SPEC §14).
    pub tls: Option<RawTls>,
    /// Where plain HTTP is answered with a redirect to HTTPS (and ACME HTTP-01 challenges); needs `[tls]`.
    pub http_redirect_listen: Option<String>,
}

/// `[tls]`: a certificate from files, certificates from ACME, or both (ACME's for the hosts it
/// obtained, the files' for every other name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, end-entity certificate first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: Option<PathBuf>,
    /// How often the two files are read to see whether they changed (default 10).
    pub reload_interval_secs: Option<u64>,
    pub acme: Option<RawAcme>,
}

/// `[tls.acme]` (RFC 8555).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The CA's directory (default Let's Encrypt's production directory).
    pub directory_url: Option<String>,
    /// Contact address given to the CA (expiry and incident notices).
    pub email: Option<String>,
    /// PEM root certificate(s) to trust for the ACME server's own HTTPS (a private CA).
    pub ca_file: Option<PathBuf>,
    /// `http-01` (default; needs `http_redirect_listen` on port 80) or `tls-alpn-01` (on the gateway's port 443).
    pub challenge: Option<String>,
    /// Renew this many days before expiry (default 30).
    pub renew_before_days: Option<u64>,
    /// How often certificates are checked for renewal (default 3600 seconds).
    pub check_interval_secs: Option<u64>,
    /// The first retry after a failure (default 60 seconds); doubled per failure up to `retry_max_secs`.
    pub retry_min_secs: Option<u64>,
    /// The longest wait between two attempts (default 3600 seconds).
    pub retry_max_secs: Option<u64>,
}

impl RawTls {
    fn check(self, data_dir: &Path, at: &dyn Fn(&str) -> String) -> Result<TlsSettings> {
        let reload = self.reload_interval_secs.unwrap_or(10);
        if !(1..=86_400).contains(&reload) {
            bail!("{}: between 1 and 86400", at("tls.reload_interval_secs"));
        }
        let files = match (self.cert_file, self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                for (field, path) in [("tls.cert_file", &cert_file), ("tls.key_file", &key_file)] {
                    std::fs::metadata(path).map_err(|e| anyhow!("{}: {}: {e}", at(field), path.display()))?;
                }
                Some(gatehouse_server::tls::files::CertFiles {
                    cert_file,
                    key_file,
                    reload_interval: Duration::from_secs(reload),
                })
            }
            (Some(_), None) => bail!("{}: set key_file too (the certificate's private key)", at("tls.key_file")),
            (None, Some(_)) => bail!("{}: set cert_file too (the certificate chain)", at("tls.cert_file")),
            (None, None) => None,
        };
        let acme = self.acme.map(|a| a.check(data_dir, at)).transpose()?;
        if files.is_none() && acme.is_none() {
            bail!("{}: [tls] needs cert_file and key_file, or a [tls.acme] section", at("tls"));
        }
        Ok(TlsSettings { files, acme })
    }
}

impl RawAcme {
    fn check(self, data_dir: &Path, at: &dyn Fn(&str) -> String) -> Result<gatehouse_server::tls::acme::AcmeConfig> {
        use gatehouse_server::tls::acme::{AcmeConfig, Challenge, LETS_ENCRYPT};
        let directory_url = match self.directory_url {
            None => LETS_ENCRYPT.to_owned(),
            Some(u) if u.starts_with("https://") => u,
            Some(u) => bail!("{}: `{u}` must start with https:// (RFC 8555 §6.1)", at("tls.acme.directory_url")),
        };
        if let Some(e) = &self.email {
            if e.is_empty() || !e.contains('@') || e.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b',') {
                bail!("{}: `{e}` is not an email address", at("tls.acme.email"));
            }
        }
        if let Some(ca) = &self.ca_file {
            std::fs::metadata(ca).map_err(|e| anyhow!("{}: {}: {e}", at("tls.acme.ca_file"), ca.display()))?;
        }
        let challenge = match self.challenge.as_deref() {
            None | Some("http-01") => Challenge::Http01,
            Some("tls-alpn-01") => Challenge::TlsAlpn01,
            Some(other) => bail!("{}: `{other}` must be http-01 or tls-alpn-01", at("tls.acme.challenge")),
        };
        let renew_before_days = self.renew_before_days.unwrap_or(30);
        if !(1..=36_500).contains(&renew_before_days) {
            bail!("{}: between 1 and 36500", at("tls.acme.renew_before_days"));
        }
        let check = self.check_interval_secs.unwrap_or(3600);
        if !(1..=86_400).contains(&check) {
            bail!("{}: between 1 and 86400", at("tls.acme.check_interval_secs"));
        }
        let retry_min = self.retry_min_secs.unwrap_or(60);
        let retry_max = self.retry_max_secs.unwrap_or(3600);
        if !(1..=86_400).contains(&retry_min) {
            bail!("{}: between 1 and 86400", at("tls.acme.retry_min_secs"));
        }
        if !(retry_min..=7 * 86_400).contains(&retry_max) {
            bail!("{}: between retry_min_secs and 604800", at("tls.acme.retry_max_secs"));
        }
        Ok(AcmeConfig {
            directory_url,
            email: self.email,
            ca_file: self.ca_file,
            challenge,
            cache_dir: data_dir.join("acme"),
            renew_before: Duration::from_secs(renew_before_days * 86_400),
            check_interval: Duration::from_secs(check),
            retry_min: Duration::from_secs(retry_min),
            retry_max: Duration::from_secs(retry_max),
        })
    }
}

/// The checked `[tls]`.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub files: Option<gatehouse_server::tls::files::CertFiles>,
    pub acme: Option<gatehouse_server::tls::acme::AcmeConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    /// Client connections per listener; unset: derived from the open-file limit.
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    /// How long a client may take to complete a TLS handshake (listeners with `[tls]`).
    pub tls_handshake_timeout_secs: Option<u64>,
}

impl RawLimits {
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<gatehouse_server::listener::ListenerLimits> {
        let l = self;
        let ld = gatehouse_server::listener::ListenerLimits::default();
        let listener = gatehouse_server::listener::ListenerLimits {
            header_read_timeout: l.header_read_timeout_secs.map_or(ld.header_read_timeout, Duration::from_secs),
            idle_timeout: l.idle_timeout_secs.map_or(ld.idle_timeout, Duration::from_secs),
            max_connections: l.max_connections.unwrap_or(ld.max_connections),
            max_header_bytes: l.max_header_bytes.unwrap_or(ld.max_header_bytes),
            tls_handshake_timeout: l.tls_handshake_timeout_secs.map_or(ld.tls_handshake_timeout, Duration::from_secs),
        };
        if !(1..=300).contains(&listener.header_read_timeout.as_secs()) {
            bail!("{}: between 1 and 300 seconds", at("limits.header_read_timeout_secs"));
        }
        if !(1..=3600).contains(&listener.idle_timeout.as_secs()) {
            bail!("{}: between 1 and 3600 seconds", at("limits.idle_timeout_secs"));
        }
        if !(1..=1_000_000).contains(&listener.max_connections) {
            bail!("{}: between 1 and 1000000", at("limits.max_connections"));
        }
        if !(8192..=1024 * 1024).contains(&listener.max_header_bytes) {
            bail!("{}: between 8192 and 1048576 bytes", at("limits.max_header_bytes"));
        }
        if !(1..=300).contains(&listener.tls_handshake_timeout.as_secs()) {
            bail!("{}: between 1 and 300 seconds", at("limits.tls_handshake_timeout_secs"));
        }
        Ok(listener)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub absolute_secs: Option<u64>,
    pub idle_secs: Option<u64>,
}

impl RawSession {
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<gatehouse_services::sessions::SessionConfig> {
        let s = self;
        let sd = gatehouse_services::sessions::SessionConfig::default();
        let sessions = gatehouse_services::sessions::SessionConfig {
            absolute: s.absolute_secs.map_or(sd.absolute, Duration::from_secs),
            idle: s.idle_secs.map_or(sd.idle, Duration::from_secs),
            ..sd
        };
        if sessions.absolute.as_secs() < 60 || sessions.idle.as_secs() < 60 {
            bail!("{}: session lifetimes must be at least 60 seconds", at("session"));
        }
        Ok(sessions)
    }
}

/// `[sign_in]`: failed sign-in throttling and the password-hashing cap (SPEC §11 "Sign-in").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignIn {
    /// Failed attempts per account and per client address before waits begin (default 5).
    pub free_attempts: Option<u32>,
    /// The longest wait; it doubles from 1 s per further failure (default 900).
    pub max_wait_secs: Option<u64>,
    /// Failures are forgotten this long after the last one (default 900).
    pub forget_after_secs: Option<u64>,
    /// Password hashes computed at once (default: one per CPU, at most 8); memory is this × 19 MiB.
    pub max_concurrent_hashes: Option<u32>,
    /// How long a sign-in waits for a hashing slot before a 503 (default 2000).
    pub hash_wait_ms: Option<u64>,
}

impl RawSignIn {
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<gatehouse_services::users::SignInConfig> {
        let si = self;
        let sid = gatehouse_services::users::SignInConfig::default();
        let sign_in = gatehouse_services::users::SignInConfig {
            free_attempts: si.free_attempts.unwrap_or(sid.free_attempts),
            max_wait: si.max_wait_secs.map_or(sid.max_wait, Duration::from_secs),
            forget_after: si.forget_after_secs.map_or(sid.forget_after, Duration::from_secs),
            max_concurrent_hashes: si.max_concurrent_hashes.unwrap_or(sid.max_concurrent_hashes),
            hash_wait: si.hash_wait_ms.map_or(sid.hash_wait, Duration::from_millis),
        };
        if !(1..=100).contains(&sign_in.free_attempts) {
            bail!("{}: between 1 and 100", at("sign_in.free_attempts"));
        }
        if !(1..=86_400).contains(&sign_in.max_wait.as_secs()) {
            bail!("{}: between 1 and 86400", at("sign_in.max_wait_secs"));
        }
        if !(60..=7 * 86_400).contains(&sign_in.forget_after.as_secs()) {
            bail!("{}: between 60 and 604800", at("sign_in.forget_after_secs"));
        }
        if sign_in.max_wait > sign_in.forget_after {
            bail!(
                "{}: at most sign_in.forget_after_secs (failures are forgotten then, and the wait with them)",
                at("sign_in.max_wait_secs")
            );
        }
        if !(1..=256).contains(&sign_in.max_concurrent_hashes) {
            bail!("{}: between 1 and 256 (each takes 19 MiB while it runs)", at("sign_in.max_concurrent_hashes"));
        }
        if sign_in.hash_wait.as_millis() > 60_000 {
            bail!("{}: at most 60000", at("sign_in.hash_wait_ms"));
        }
        Ok(sign_in)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Count gateway requests per credential and app for the dashboard's charts (default true).
    pub enabled: Option<bool>,
    pub flush_interval_secs: Option<u64>,
    /// Per-minute counts are kept this long (default 24 h).
    pub minute_retention_hours: Option<u64>,
    /// Per-hour counts are kept this long (default 30 days).
    pub hour_retention_days: Option<u64>,
}

impl RawUsage {
    /// The usage counters' settings (SPEC §12 "Usage"), each bounded.
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<gatehouse_services::usage::UsageConfig> {
        let d = gatehouse_services::usage::UsageConfig::default();
        let flush = self.flush_interval_secs.unwrap_or(d.flush_interval.as_secs());
        if !(1..=300).contains(&flush) {
            bail!("{}: between 1 and 300", at("usage.flush_interval_secs"));
        }
        let minutes = self.minute_retention_hours.unwrap_or(d.minute_retention.as_secs() / 3600);
        if !(1..=24 * 7).contains(&minutes) {
            bail!("{}: between 1 and 168 (per-minute rows are many)", at("usage.minute_retention_hours"));
        }
        let hours = self.hour_retention_days.unwrap_or(d.hour_retention.as_secs() / 86_400);
        if !(1..=3660).contains(&hours) {
            bail!("{}: between 1 and 3660", at("usage.hour_retention_days"));
        }
        Ok(gatehouse_services::usage::UsageConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            flush_interval: Duration::from_secs(flush),
            minute_retention: Duration::from_secs(minutes * 3600),
            hour_retention: Duration::from_secs(hours * 86_400),
            ..d
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretScanning {
    /// GitHub's published signing keys (default GitHub's list).
    pub github_keys_url: Option<String>,
    /// Or a file of the same JSON shape (then no URL is fetched).
    pub github_keys_file: Option<PathBuf>,
    /// How long a loaded key list is used before it is loaded again (default 3600).
    pub refresh_interval_secs: Option<u64>,
    /// Fewest seconds between two loads; an unknown key identifier asks for one (default 60).
    pub min_refetch_interval_secs: Option<u64>,
    /// Report-a-leak requests per client address per window (default 10 per 60 s).
    pub report_limit: Option<u32>,
    pub report_window_secs: Option<u64>,
}

impl RawSecretScanning {
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<gatehouse_server::secret_scanning::SecretScanningConfig> {
        use gatehouse_server::secret_scanning::{KeySource, SecretScanningConfig};
        let d = SecretScanningConfig::default();
        let keys = match (self.github_keys_url.filter(|u| !u.is_empty()), self.github_keys_file) {
            (Some(_), Some(_)) => {
                bail!("{}: give github_keys_url or github_keys_file, not both", at("secret_scanning.github_keys_file"))
            }
            (Some(u), None) if u.starts_with("https://") || u.starts_with("http://") => KeySource::Url(u),
            (Some(u), None) => {
                bail!("{}: `{u}` must start with https:// or http://", at("secret_scanning.github_keys_url"))
            }
            (None, Some(f)) => {
                std::fs::metadata(&f)
                    .map_err(|e| anyhow!("{}: {}: {e}", at("secret_scanning.github_keys_file"), f.display()))?;
                KeySource::File(f)
            }
            (None, None) => d.keys,
        };
        let refresh = self.refresh_interval_secs.unwrap_or(d.refresh_interval.as_secs());
        if !(60..=7 * 86_400).contains(&refresh) {
            bail!("{}: between 60 and 604800", at("secret_scanning.refresh_interval_secs"));
        }
        let refetch = self.min_refetch_interval_secs.unwrap_or(d.min_refetch_interval.as_secs());
        if !(1..=3600).contains(&refetch) {
            bail!("{}: between 1 and 3600", at("secret_scanning.min_refetch_interval_secs"));
        }
        let limit = self.report_limit.unwrap_or(d.report_limit.limit);
        if !(1..=100_000).contains(&limit) {
            bail!("{}: between 1 and 100000", at("secret_scanning.report_limit"));
        }
        let window = self.report_window_secs.unwrap_or(d.report_limit.window_ms / 1000);
        if !(1..=86_400).contains(&window) {
            bail!("{}: between 1 and 86400", at("secret_scanning.report_window_secs"));
        }
        Ok(SecretScanningConfig {
            keys,
            refresh_interval: Duration::from_secs(refresh),
            min_refetch_interval: Duration::from_secs(refetch),
            report_limit: Quota { limit, window_ms: window * 1000 },
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub header_prefix: Option<String>,
    pub timeout_secs: Option<u64>,
    pub allow_private_destinations: Option<bool>,
    pub deliver: Option<bool>,
    /// An outgoing proxy for deliveries, `http://host:port` (environment proxies are never used).
    pub proxy: Option<String>,
}

impl RawWebhooks {
    /// Whether this node delivers webhooks, and the delivery settings.
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<(bool, gatehouse_services::webhooks::WebhookConfig)> {
        let w = self;
        let webhook_worker = w.deliver.unwrap_or(true);
        let wd = gatehouse_services::webhooks::WebhookConfig::default();
        let header_prefix = w.header_prefix.unwrap_or(wd.header_prefix.clone());
        if header_prefix.is_empty()
            || header_prefix.len() > 40
            || !header_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            bail!(
                "{}: 1 to 40 letters, digits or `-` (the header is `<prefix>-Signature`)",
                at("webhooks.header_prefix")
            );
        }
        let webhooks = gatehouse_services::webhooks::WebhookConfig {
            header_prefix,
            timeout: w.timeout_secs.map_or(wd.timeout, |s| Duration::from_secs(s.clamp(1, 60))),
            allow_private_destinations: w.allow_private_destinations.unwrap_or(false),
            proxy: w.proxy.filter(|p| !p.is_empty()),
            ..wd
        };
        if let Some(p) = &webhooks.proxy {
            gatehouse_services::webhooks::validate_proxy(p, webhooks.allow_private_destinations)
                .map_err(|e| anyhow!("{}: {e}", at("webhooks.proxy")))?;
        }
        Ok((webhook_worker, webhooks))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub access_token_ttl_secs: Option<u64>,
    pub refresh_token_ttl_secs: Option<u64>,
    pub code_ttl_secs: Option<u64>,
    pub refresh_race_window_ms: Option<u64>,
    pub clients: Option<Vec<RawOAuthClient>>,
}

impl RawOAuth {
    /// The OAuth lifetimes, and the clients declared in configuration (secrets read from their files).
    fn check(
        self,
        at: &dyn Fn(&str) -> String,
        file: Option<&Path>,
    ) -> Result<(Vec<gatehouse_services::oauth::ConfiguredClient>, gatehouse_services::oauth::OAuthConfig)> {
        let mut o = self;
        let config_dir = file.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let mut oauth_clients = vec![];
        for (i, c) in o.clients.take().unwrap_or_default().into_iter().enumerate() {
            let secret = match &c.client_secret_file {
                Some(f) => {
                    let path = if f.is_relative() { config_dir.join(f) } else { f.clone() };
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        anyhow!(
                            "{}: cannot read {} ({e})",
                            at(&format!("oauth.clients[{i}].client_secret_file")),
                            path.display()
                        )
                    })?;
                    Some(SecretString::new(text.trim_end_matches(['\n', '\r']).to_owned()))
                }
                None => None,
            };
            let environment =
                match c.environment.as_deref() {
                    None => None,
                    Some(e) => Some(gatehouse_core::Environment::parse(e).ok_or_else(|| {
                        anyhow!("{}: `live` or `test`", at(&format!("oauth.clients[{i}].environment")))
                    })?),
                };
            let client = gatehouse_services::oauth::NewClient {
                name: c.name,
                confidential: !c.public,
                redirect_uris: c.redirect_uris,
                scopes: c.scopes,
                token_format: c.token_format,
                environment,
                app: c.app,
            };
            oauth_clients.push(gatehouse_services::oauth::ConfiguredClient { id: c.id, client, secret });
        }
        let od = gatehouse_services::oauth::OAuthConfig::default();
        let oauth = gatehouse_services::oauth::OAuthConfig {
            access_token_ttl: o.access_token_ttl_secs.map_or(od.access_token_ttl, Duration::from_secs),
            refresh_token_ttl: o.refresh_token_ttl_secs.map_or(od.refresh_token_ttl, Duration::from_secs),
            code_ttl: o.code_ttl_secs.map_or(od.code_ttl, Duration::from_secs),
            refresh_race_window: o.refresh_race_window_ms.map_or(od.refresh_race_window, Duration::from_millis),
            ..od
        };
        if !(60..=86_400).contains(&oauth.access_token_ttl.as_secs()) {
            bail!("{}: between 60 and 86400 seconds", at("oauth.access_token_ttl_secs"));
        }
        if oauth.refresh_token_ttl < oauth.access_token_ttl || oauth.refresh_token_ttl.as_secs() > 365 * 86_400 {
            bail!("{}: at least the access token lifetime and at most 365 days", at("oauth.refresh_token_ttl_secs"));
        }
        if !(10..=600).contains(&oauth.code_ttl.as_secs()) {
            bail!("{}: between 10 and 600 seconds", at("oauth.code_ttl_secs"));
        }
        if oauth.refresh_race_window.as_millis() > 10_000 {
            bail!("{}: at most 10000", at("oauth.refresh_race_window_ms"));
        }
        Ok((oauth_clients, oauth))
    }
}

/// `[[oauth.clients]]`: a client that exists exactly as declared (created or updated at start).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthClient {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub public: bool,
    /// A file holding the client secret (confidential clients); relative paths are from the config file.
    pub client_secret_file: Option<PathBuf>,
    pub token_format: Option<String>,
    /// `live` (default) or `test`: the environment the client's tokens act in.
    pub environment: Option<String>,
    /// Restricts the client's tokens to one app.
    pub app: Option<String>,
}

/// `[[identity_providers]]`: an OpenID Connect provider (SPEC §15). From the config file only.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityProvider {
    pub id: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// A file holding the client secret; relative paths are from the config file.
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Option<Vec<String>>,
    pub auto_create_users: Option<bool>,
    pub default_role: Option<String>,
    pub groups_claim: Option<String>,
    /// Sign out at the provider too, when it offers RP-initiated logout (default false).
    pub end_session: Option<bool>,
}

impl std::fmt::Debug for RawIdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIdentityProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// An identity provider's id: it is a URL path segment (`/login/<id>/callback`), so 1-64 lower-case
/// letters, digits, `-` or `_`, beginning with a letter or digit.
fn provider_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// `[[identity_providers]]` and `password_login`, checked; secrets read from their files.
fn check_identity_providers(
    raw: Vec<RawIdentityProvider>,
    password_login: bool,
    file: Option<&Path>,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<gatehouse_server::config::IdentityProviderConfig>> {
    let config_dir = file.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let mut out: Vec<gatehouse_server::config::IdentityProviderConfig> = vec![];
    for (i, p) in raw.into_iter().enumerate() {
        let field = |f: &str| at(&format!("identity_providers[{i}].{f}"));
        if !provider_id_ok(&p.id) {
            bail!(
                "{}: `{}` must be 1-64 lower-case letters, digits, `-` or `_` (it is part of the redirect URI)",
                field("id"),
                p.id.chars().take(80).collect::<String>()
            );
        }
        if out.iter().any(|o| o.id == p.id) {
            bail!("{}: the id `{}` is used by another provider", field("id"), p.id);
        }
        let name = p.display_name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            bail!("{}: 1 to 64 characters, no control characters", field("display_name"));
        }
        if !gatehouse_core::oidc::issuer_ok(&p.issuer) {
            bail!(
                "{}: `{}` must be an https URL without query or fragment (http only on localhost), exactly as the provider names itself",
                field("issuer"),
                p.issuer.chars().take(200).collect::<String>()
            );
        }
        if p.client_id.is_empty() || p.client_id.len() > 256 || p.client_id.chars().any(|c| c.is_control()) {
            bail!("{}: 1 to 256 characters", field("client_id"));
        }
        let secret = match (p.client_secret, &p.client_secret_file) {
            (Some(_), Some(_)) => {
                bail!("{}: give client_secret or client_secret_file, not both", field("client_secret_file"))
            }
            (Some(s), None) => s,
            (None, Some(f)) => {
                let path = if f.is_relative() { config_dir.join(f) } else { f.clone() };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow!("{}: cannot read {} ({e})", field("client_secret_file"), path.display()))?;
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
            (None, None) => {
                bail!("{}: the provider's client secret is needed (or client_secret_file)", field("client_secret"))
            }
        };
        if secret.is_empty() {
            bail!("{}: the client secret is empty", field("client_secret"));
        }
        let scopes = p.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            bail!("{}: must include `openid`", field("scopes"));
        }
        if let Some(bad) =
            scopes.iter().find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
        {
            bail!("{}: `{bad}` is not a scope (printable characters, no spaces)", field("scopes"));
        }
        let default_role = p.default_role.unwrap_or_else(|| "member".into());
        if !gatehouse_services::users::ROLES.contains(&default_role.as_str()) || default_role == "owner" {
            bail!(
                "{}: one of admin, developer, viewer, member (an identity provider never creates owners)",
                field("default_role")
            );
        }
        let groups_claim = p.groups_claim.unwrap_or_else(|| "groups".into());
        if groups_claim.is_empty() || groups_claim.len() > 64 || groups_claim.chars().any(char::is_control) {
            bail!("{}: 1 to 64 characters", field("groups_claim"));
        }
        out.push(gatehouse_server::config::IdentityProviderConfig {
            id: p.id,
            display_name: name.to_owned(),
            issuer: p.issuer,
            client_id: p.client_id,
            client_secret: SecretString::new(secret),
            scopes,
            auto_create_users: p.auto_create_users.unwrap_or(false),
            default_role,
            groups_claim,
            end_session: p.end_session.unwrap_or(false),
        });
    }
    if !password_login && out.is_empty() {
        bail!(
            "{}: password sign-in can only be turned off when an [[identity_providers]] table is configured",
            at("password_login")
        );
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub upstream_timeout_secs: Option<u64>,
    /// Gateway threads, each with its own runtime and upstream pool; unset = one per CPU.
    pub threads: Option<u64>,
    /// Requests per client IP per `public_window_secs` on public routes; unset = no limit.
    pub public_limit: Option<u32>,
    pub public_window_secs: Option<u32>,
}

impl RawGateway {
    /// The upstream timeout, the number of gateway threads and the per-IP limit on public routes.
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<(Duration, usize, Option<Quota>)> {
        let g = self;
        let upstream_timeout = Duration::from_secs(g.upstream_timeout_secs.unwrap_or(30).clamp(1, 3600));
        let gateway_threads = match g.threads {
            None => std::thread::available_parallelism().map_or(1, usize::from),
            Some(n @ 1..=256) => n as usize,
            Some(_) => bail!("{}: between 1 and 256", at("gateway.threads")),
        };
        let public_rate_limit = match (g.public_limit, g.public_window_secs) {
            (None, None) => None,
            (Some(limit), window) if limit > 0 => {
                Some(Quota { limit, window_ms: u64::from(window.unwrap_or(1).clamp(1, 86_400)) * 1000 })
            }
            _ => bail!("{}: set gateway.public_limit (≥ 1) to limit public routes per IP", at("gateway.public_limit")),
        };
        Ok((upstream_timeout, gateway_threads, public_rate_limit))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The app's name (assertion audience; what app-restricted keys name).
    pub name: String,
    /// Hosts it answers on, `host` or `host:port`.
    pub hosts: Vec<String>,
    /// A Spacefile whose micros use `upstream:` (relative paths are from the config file).
    pub spacefile: PathBuf,
    /// `live` (default) or `test`.
    pub environment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub limit: Option<u32>,
    pub window_secs: Option<u32>,
}

impl RawRateLimit {
    /// The default per-key limit.
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<Quota> {
        let rl = self;
        let limit = rl.limit.unwrap_or(100);
        let window_secs = rl.window_secs.unwrap_or(1);
        if limit == 0 || window_secs == 0 || window_secs > 86_400 {
            bail!("{}: limit must be ≥ 1 and window_secs between 1 and 86400", at("rate_limit"));
        }
        Ok(Quota { limit, window_ms: u64::from(window_secs) * 1000 })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub poll_interval_ms: Option<u64>,
    pub max_staleness_ms: Option<u64>,
    pub positive_ttl_secs: Option<u64>,
    pub negative_ttl_secs: Option<u64>,
    pub max_entries: Option<usize>,
    pub last_used_flush_secs: Option<u64>,
}

impl RawCache {
    fn check(self, at: &dyn Fn(&str) -> String) -> Result<CacheConfig> {
        let c = self;
        let d = CacheConfig::default();
        let cache = CacheConfig {
            poll_interval: c.poll_interval_ms.map_or(d.poll_interval, Duration::from_millis),
            max_staleness: c.max_staleness_ms.map_or(d.max_staleness, Duration::from_millis),
            positive_ttl: c.positive_ttl_secs.map_or(d.positive_ttl, Duration::from_secs),
            negative_ttl: c.negative_ttl_secs.map_or(d.negative_ttl, Duration::from_secs),
            max_entries: c.max_entries.unwrap_or(d.max_entries),
            last_used_flush: c.last_used_flush_secs.map_or(d.last_used_flush, Duration::from_secs),
        };
        if cache.poll_interval.is_zero() || cache.poll_interval > Duration::from_secs(1) {
            bail!(
                "{}: must be between 1 and 1000 ms so revocations reach this node within 1 s",
                at("cache.poll_interval_ms")
            );
        }
        if cache.max_staleness < cache.poll_interval * 2 {
            bail!("{}: must be at least twice cache.poll_interval_ms", at("cache.max_staleness_ms"));
        }
        if cache.last_used_flush.is_zero() {
            bail!("{}: must be at least 1", at("cache.last_used_flush_secs"));
        }
        Ok(cache)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// Every settable key, as `section.field`, with how an environment string is read.
/// The environment name is `GATEHOUSE_` + the path upper-cased with `.` as `__`.
const KEYS: &[(&str, Kind)] = &[
    ("data_dir", Kind::Str),
    ("database_url", Kind::Str),
    ("redis_url", Kind::Str),
    ("listen", Kind::Str),
    ("key_namespace", Kind::Str),
    ("workspace", Kind::Str),
    ("trusted_proxies", Kind::List),
    ("log_format", Kind::Str),
    ("log_level", Kind::Str),
    ("body_limit_bytes", Kind::Int),
    ("shutdown_grace_secs", Kind::Int),
    ("public_url", Kind::Str),
    ("gateway_listen", Kind::Str),
    ("owner_email", Kind::Str),
    ("owner_password", Kind::Str),
    ("password_login", Kind::Bool),
    ("session.absolute_secs", Kind::Int),
    ("session.idle_secs", Kind::Int),
    ("sign_in.free_attempts", Kind::Int),
    ("sign_in.max_wait_secs", Kind::Int),
    ("sign_in.forget_after_secs", Kind::Int),
    ("sign_in.max_concurrent_hashes", Kind::Int),
    ("sign_in.hash_wait_ms", Kind::Int),
    ("webhooks.header_prefix", Kind::Str),
    ("webhooks.timeout_secs", Kind::Int),
    ("webhooks.allow_private_destinations", Kind::Bool),
    ("webhooks.deliver", Kind::Bool),
    ("webhooks.proxy", Kind::Str),
    ("usage.enabled", Kind::Bool),
    ("usage.flush_interval_secs", Kind::Int),
    ("usage.minute_retention_hours", Kind::Int),
    ("usage.hour_retention_days", Kind::Int),
    ("secret_scanning.github_keys_url", Kind::Str),
    ("secret_scanning.github_keys_file", Kind::Str),
    ("secret_scanning.refresh_interval_secs", Kind::Int),
    ("secret_scanning.min_refetch_interval_secs", Kind::Int),
    ("secret_scanning.report_limit", Kind::Int),
    ("secret_scanning.report_window_secs", Kind::Int),
    ("oauth.access_token_ttl_secs", Kind::Int),
    ("oauth.refresh_token_ttl_secs", Kind::Int),
    ("oauth.code_ttl_secs", Kind::Int),
    ("oauth.refresh_race_window_ms", Kind::Int),
    ("gateway.upstream_timeout_secs", Kind::Int),
    ("gateway.threads", Kind::Int),
    ("gateway.public_limit", Kind::Int),
    ("gateway.public_window_secs", Kind::Int),
    ("rate_limit.limit", Kind::Int),
    ("rate_limit.window_secs", Kind::Int),
    ("cache.poll_interval_ms", Kind::Int),
    ("cache.max_staleness_ms", Kind::Int),
    ("cache.positive_ttl_secs", Kind::Int),
    ("cache.negative_ttl_secs", Kind::Int),
    ("cache.max_entries", Kind::Int),
    ("cache.last_used_flush_secs", Kind::Int),
    ("limits.header_read_timeout_secs", Kind::Int),
    ("limits.idle_timeout_secs", Kind::Int),
    ("limits.max_connections", Kind::Int),
    ("limits.max_header_bytes", Kind::Int),
    ("limits.tls_handshake_timeout_secs", Kind::Int),
    ("http_redirect_listen", Kind::Str),
    ("tls.cert_file", Kind::Str),
    ("tls.key_file", Kind::Str),
    ("tls.reload_interval_secs", Kind::Int),
    ("tls.acme.directory_url", Kind::Str),
    ("tls.acme.email", Kind::Str),
    ("tls.acme.ca_file", Kind::Str),
    ("tls.acme.challenge", Kind::Str),
    ("tls.acme.renew_before_days", Kind::Int),
    ("tls.acme.check_interval_secs", Kind::Int),
    ("tls.acme.retry_min_secs", Kind::Int),
    ("tls.acme.retry_max_secs", Kind::Int),
];

/// Keys whose value may be read from a file named by `GATEHOUSE_<KEY>_FILE`.
const SECRET_KEYS: &[&str] = &["database_url", "redis_url", "owner_password"];

fn env_name(path: &str) -> String {
    format!("GATEHOUSE_{}", path.replace('.', "__").to_uppercase())
}

/// Values given on the command line, the top layer.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub gateway_listen: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data dir.
    pub database_url: Option<SecretString>,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub server: ServerConfig,
    pub gateway_listen: SocketAddr,
    pub upstream_timeout: Duration,
    /// Single-threaded gateway runtimes sharing the gateway socket.
    pub gateway_threads: usize,
    pub public_rate_limit: Option<Quota>,
    /// Owner bootstrap (SPEC §1): both set, or neither.
    pub owner: Option<(String, SecretString)>,
    /// Apps for `serve`, with Spacefile paths resolved.
    pub apps: Vec<RawApp>,
    /// OAuth clients declared in the config file, secrets read.
    pub oauth_clients: Vec<gatehouse_services::oauth::ConfiguredClient>,
    /// `[tls]`: the gateway and the control plane serve HTTPS.
    pub tls: Option<TlsSettings>,
    /// Plain HTTP answered with redirects to HTTPS (and HTTP-01 challenges).
    pub http_redirect_listen: Option<SocketAddr>,
    /// The configuration file, re-read while running for its `[access.<app>]` tables.
    pub config_file: Option<PathBuf>,
    /// Accepted but worth saying out loud. Loading runs before logging is set up, so the caller logs
    /// these once it is (`log_warnings`).
    pub warnings: Vec<ConfigWarning>,
}

/// A setting that is valid but unsafe outside development.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWarning {
    AllowPrivateDestinations,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigWarning::AllowPrivateDestinations => {
                "webhooks.allow_private_destinations is on: webhooks may be sent to loopback and private addresses (development only)"
            }
        })
    }
}

impl Config {
    /// Logs the loading warnings (call once logging is set up).
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
    }

    /// Where the store lives: the PostgreSQL URL, or the SQLite file in the data dir.
    pub fn store_location(&self) -> String {
        match &self.database_url {
            Some(u) => u.expose().to_owned(),
            None => self.data_dir.join("gatehouse.db").display().to_string(),
        }
    }

    /// The store location with any password removed, for printing.
    pub fn store_display(&self) -> String {
        match &self.database_url {
            Some(u) => redact_url(u.expose()),
            None => format!("sqlite {}", self.data_dir.join("gatehouse.db").display()),
        }
    }
}

impl Config {
    /// Where rate limits are kept, with any password removed, for printing.
    pub fn limits_display(&self) -> String {
        match &self.server.redis_url {
            Some(u) => format!("shared through {}", redact_url(u.expose())),
            None => "per node, in memory".to_owned(),
        }
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Loads all layers from the real environment.
pub fn load(flags: &Flags) -> Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")).collect();
    load_from(flags, &env)
}

/// Loads all layers with the given environment (tests pass their own).
pub fn load_from(flags: &Flags, env: &BTreeMap<String, String>) -> Result<Config> {
    let mut merged = toml::Table::new();
    let mut access = PolicyTable::new();
    if let Some(path) = &flags.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        access = access_policies(path, &text)?;
        // Deserialize the file on its own first: that is where line and column are known.
        toml::from_str::<RawConfig>(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        // `[[apps]]` come from the file alone (no environment variable sets them), so their
        // uniqueness is checked here, where each value's line is known.
        check_apps_unique(path, &text)?;
        merged = text.parse::<toml::Table>().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    for (name, value) in env {
        let path = env_layer_path(name)?;
        let (path, value) = match path {
            EnvKey::Plain(p) => (p, value.clone()),
            EnvKey::File(p) => {
                let text = std::fs::read_to_string(value).with_context(|| format!("{name}: cannot read {value}"))?;
                (p, text.trim_end_matches(['\n', '\r']).to_owned())
            }
        };
        let kind = KEYS.iter().find(|(k, _)| *k == path).map(|(_, k)| *k).expect("path came from KEYS");
        let v = match kind {
            Kind::Str => toml::Value::String(value),
            Kind::Int => toml::Value::Integer(
                value.trim().parse().map_err(|_| anyhow!("{name}: `{}` is not a whole number", value.trim()))?,
            ),
            Kind::Bool => toml::Value::Boolean(match value.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => bail!("{name}: `{other}` is not true or false"),
            }),
            Kind::List => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ),
        };
        set_path(&mut merged, &path, v);
    }
    let flag_values = [
        ("data_dir", flags.data_dir.as_ref().map(|p| p.display().to_string())),
        ("database_url", flags.database_url.clone()),
        ("listen", flags.listen.clone()),
        ("gateway_listen", flags.gateway_listen.clone()),
    ];
    for (path, value) in flag_values {
        if let Some(v) = value {
            set_path(&mut merged, path, toml::Value::String(v));
        }
    }
    let raw: RawConfig = toml::Value::Table(merged).try_into().map_err(|e| anyhow!("configuration: {e}"))?;
    let mut cfg = check(raw, flags.config.as_deref())?;
    cfg.server.access = access;
    cfg.config_file = flags.config.clone();
    Ok(cfg)
}

/// `[access.<app>]`: the lists as written; each may be left out (empty), but not all of them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    emails: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// Only the `[access.…]` tables, with where each is in the file.
#[derive(Deserialize)]
struct AccessWithSpans {
    #[serde(default)]
    access: BTreeMap<String, toml::Spanned<toml::Value>>,
}

/// The `[access.<app>]` tables of a configuration file's text, each checked by
/// `gatehouse_core::access::AccessPolicy::parse`. Every problem is reported, each as
/// `file:line: [access.<app>]: …`; which apps exist is checked by `check_access_names`.
pub fn access_policies(path: &Path, text: &str) -> Result<PolicyTable> {
    let parsed: AccessWithSpans =
        toml::from_str(text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let line = |span: std::ops::Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let mut problems = vec![];
    let mut table = PolicyTable::new();
    for (name, value) in parsed.access {
        let at = format!("{}:{}: [access.{}]", path.display(), line(value.span()), table_key(&name));
        let raw: RawAccess = match value.into_inner().try_into() {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{at}: {}", e.to_string().trim_end()));
                continue;
            }
        };
        let lists = PolicyLists { emails: raw.emails, domains: raw.domains, roles: raw.roles, groups: raw.groups };
        match AccessPolicy::parse(&lists) {
            Ok(p) => {
                table.insert(name, Arc::new(p));
            }
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// A TOML key as written in a table header: bare when it can be, else quoted.
fn table_key(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// The access policies of an edited configuration file, for `access_reload`: the whole file must
/// still load as a configuration (so an edit that would stop the next start is refused now too), and
/// every table must be valid and name a served app.
pub fn reload_access(path: &Path, bytes: &[u8], apps: &[&str]) -> Result<PolicyTable> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow!("{}: not UTF-8 ({e})", path.display()))?;
    toml::from_str::<RawConfig>(text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let table = access_policies(path, text)?;
    check_access_names(Some(path), &table, apps)?;
    Ok(table)
}

/// Every `[access.<name>]` must name an app that is served (the `[[apps]]` name under `serve`, the
/// Spacefile's `app_name` under `up`): a policy for a misspelt app would protect nothing.
pub fn check_access_names(file: Option<&Path>, access: &PolicyTable, apps: &[&str]) -> Result<()> {
    let mut unknown: Vec<&String> = access.keys().filter(|n| !apps.contains(&n.as_str())).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let file = file.map_or_else(|| "configuration".to_owned(), |f| f.display().to_string());
    let served = if apps.is_empty() { "none".to_owned() } else { apps.join(", ") };
    let lines: Vec<String> = unknown
        .iter()
        .map(|n| format!("{file}: [access.{}] names no app that is served (apps: {served})", table_key(n)))
        .collect();
    bail!("{}", lines.join("\n"))
}

/// Only what the uniqueness checks read from `[[apps]]`, with where each value is in the file.
#[derive(Deserialize)]
struct AppsWithSpans {
    #[serde(default)]
    apps: Vec<SpannedApp>,
}

#[derive(Deserialize)]
struct SpannedApp {
    name: toml::Spanned<String>,
    #[serde(default)]
    hosts: Vec<toml::Spanned<String>>,
}

/// Refuses `[[apps]]` that share a name, or a host an earlier app already answers on: the gateway
/// picks the first app whose host matches, so the later one would be shadowed without a word.
/// Hosts compare as the gateway matches them: case-insensitively, and a host without a port also
/// claims that host on every port. Every problem is reported, each as `file:line: field: …`.
fn check_apps_unique(path: &Path, text: &str) -> Result<()> {
    let parsed: AppsWithSpans =
        toml::from_str(text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let line = |span: std::ops::Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let mut problems = vec![];
    // (lower-cased host, app index, app name, line)
    let mut claimed: Vec<(String, usize, &str, usize)> = vec![];
    for (i, app) in parsed.apps.iter().enumerate() {
        let name = app.name.get_ref();
        if let Some((j, first)) = parsed.apps[..i].iter().enumerate().find(|(_, a)| a.name.get_ref() == name) {
            problems.push(format!(
                "{}:{}: apps[{i}].name: the app name `{name}` is already used by apps[{j}] (line {}); app names must be unique",
                path.display(),
                line(app.name.span()),
                line(first.name.span())
            ));
        }
        for (k, host) in app.hosts.iter().enumerate() {
            let h = host.get_ref().to_ascii_lowercase();
            let at = line(host.span());
            if h.is_empty() {
                problems.push(format!("{}:{at}: apps[{i}].hosts[{k}]: a host must not be empty", path.display()));
                continue;
            }
            let earlier = claimed
                .iter()
                .find(|(c, owner, _, _)| *c == h || (*owner != i && !c.contains(':') && c == bare_host(&h)));
            if let Some((c, owner_index, owner, first)) = earlier {
                let problem = if *owner_index == i {
                    format!("the host `{}` is listed twice for this app (line {first})", host.get_ref())
                } else if *c == h {
                    format!("the host `{}` is already served by app `{owner}` (line {first}); requests would never reach `{name}`", host.get_ref())
                } else {
                    format!("the host `{}` is already served by app `{owner}`, whose host `{c}` (line {first}) takes every port; requests would never reach `{name}`", host.get_ref())
                };
                problems.push(format!("{}:{at}: apps[{i}].hosts[{k}]: {problem}", path.display()));
            }
            claimed.push((h, i, name, at));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// `host` of `host:port` (and `[v6]` of `[v6]:port`), as the gateway strips it.
fn bare_host(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map_or(h, |x| &h[..x.len() + 1]);
    }
    h.rsplit_once(':').map_or(h, |(b, _)| b)
}

enum EnvKey {
    Plain(String),
    File(String),
}

fn env_layer_path(name: &str) -> Result<EnvKey> {
    for (path, _) in KEYS {
        if env_name(path) == name {
            return Ok(EnvKey::Plain((*path).to_owned()));
        }
        if SECRET_KEYS.contains(path) && format!("{}_FILE", env_name(path)) == name {
            return Ok(EnvKey::File((*path).to_owned()));
        }
    }
    let known: Vec<String> = KEYS.iter().map(|(p, _)| env_name(p)).collect();
    bail!("unknown environment variable {name}; Gatehouse reads: {}", known.join(", "))
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((section, field)) => {
            let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(field.to_owned(), value);
            }
        }
    }
}

/// Turns the merged raw values into a checked config, naming the field of every problem.
/// `database_url` (PostgreSQL; unset for SQLite) and `redis_url` (shared rate limits), as secrets.
fn storage_urls(
    database_url: Option<String>,
    redis_url: Option<String>,
    at: &dyn Fn(&str) -> String,
) -> Result<(Option<SecretString>, Option<SecretString>)> {
    let database_url = match database_url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Some(SecretString::new(u)),
        Some(u) if u.is_empty() => None,
        Some(_) => {
            bail!("{}: must be a postgres:// URL; leave it unset for SQLite in the data dir", at("database_url"))
        }
        None => None,
    };
    let redis_url = match redis_url {
        Some(u) if u.is_empty() => None,
        Some(u) if (u.starts_with("redis://") || u.starts_with("redis+unix://") || u.starts_with("unix://")) && gatehouse_services::limiter::check_redis_url(&u).is_ok() => Some(SecretString::new(u)),
        Some(_) => bail!("{}: must be a redis:// URL (redis://[user:password@]host[:port][/db]); TLS (rediss://) is not supported yet", at("redis_url")),
        None => None,
    };
    Ok((database_url, redis_url))
}

/// `[[apps]]`: Spacefile paths relative to the config file; every app needs a host.
fn check_apps(mut apps: Vec<RawApp>, file: Option<&Path>, at: &dyn Fn(&str) -> String) -> Result<Vec<RawApp>> {
    let base = file.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    for a in &mut apps {
        if a.spacefile.is_relative() {
            a.spacefile = base.join(&a.spacefile);
        }
        if a.hosts.is_empty() {
            bail!("{}: app `{}` needs at least one host", at("apps"), a.name);
        }
    }
    Ok(apps)
}

/// `workspace`: 1-64 letters, digits, `_` or `-`.
fn check_workspace(workspace: Option<String>, at: &dyn Fn(&str) -> String) -> Result<String> {
    let workspace = workspace.unwrap_or_else(|| "default".into());
    if workspace.is_empty()
        || workspace.len() > 64
        || !workspace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!("{}: use 1-64 letters, digits, `_` or `-`", at("workspace"));
    }
    Ok(workspace)
}

/// `trusted_proxies`: CIDRs or single addresses.
fn check_trusted_proxies(proxies: Vec<String>, at: &dyn Fn(&str) -> String) -> Result<Vec<IpNet>> {
    let mut trusted_proxies = vec![];
    for p in proxies {
        let net: IpNet = p
            .parse()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| anyhow!("{}: `{p}` is not a CIDR or address", at("trusted_proxies")))?;
        trusted_proxies.push(net);
    }
    Ok(trusted_proxies)
}

/// `log_format` (`text` or `json`) and `log_level` (an env-filter directive).
fn check_logging(
    format: Option<String>,
    level: Option<String>,
    at: &dyn Fn(&str) -> String,
) -> Result<(LogFormat, String)> {
    let log_format = match format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => bail!("{}: `{other}` is not `text` or `json`", at("log_format")),
    };
    let log_level = level.unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| anyhow!("{}: {e}", at("log_level")))?;
    Ok((log_format, log_level))
}

/// `owner_email` and `owner_password`: both or neither.
fn check_owner(
    email: Option<String>,
    password: Option<String>,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<(String, SecretString)>> {
    let owner = match (email, password) {
        (Some(e), Some(p)) => Some((e, SecretString::new(p))),
        (None, None) => None,
        _ => bail!(
            "{}: set both owner_email and owner_password (GATEHOUSE_OWNER_EMAIL, GATEHOUSE_OWNER_PASSWORD), or neither",
            at("owner_email")
        ),
    };
    Ok(owner)
}

fn check(raw: RawConfig, file: Option<&Path>) -> Result<Config> {
    let at = |field: &str| match file {
        Some(f) => format!("{} (or its GATEHOUSE_ variable): {field}", f.display()),
        None => field.to_owned(),
    };
    let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from(".gatehouse"));
    let (database_url, redis_url) = storage_urls(raw.database_url, raw.redis_url, &at)?;
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:4455".into());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| anyhow!("{}: `{listen_text}` is not an address like 127.0.0.1:4455", at("listen")))?;
    let namespace = Namespace::parse(raw.key_namespace.as_deref().unwrap_or("gth"))
        .map_err(|e| anyhow!("{}: {e}", at("key_namespace")))?;
    let workspace = check_workspace(raw.workspace, &at)?;
    let trusted_proxies = check_trusted_proxies(raw.trusted_proxies.unwrap_or_default(), &at)?;
    let (log_format, log_level) = check_logging(raw.log_format, raw.log_level, &at)?;
    let body_limit = raw.body_limit_bytes.unwrap_or(gatehouse_server::config::DEFAULT_BODY_LIMIT);
    if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
        bail!("{}: must be between 1024 and 16777216", at("body_limit_bytes"));
    }
    let default_rate_limit = raw.rate_limit.unwrap_or_default().check(&at)?;
    let cache = raw.cache.unwrap_or_default().check(&at)?;
    let gateway_text = raw.gateway_listen.unwrap_or_else(|| "127.0.0.1:4480".into());
    let gateway_listen: SocketAddr = gateway_text
        .parse()
        .map_err(|_| anyhow!("{}: `{gateway_text}` is not an address like 127.0.0.1:4480", at("gateway_listen")))?;
    let tls = raw.tls.map(|t| t.check(&data_dir, &at)).transpose()?;
    let public_url = match raw.public_url {
        Some(u) if tls.is_some() && u.starts_with("http://") => {
            bail!(
                "{}: `{u}` must start with https:// when [tls] is set (the control plane serves HTTPS)",
                at("public_url")
            )
        }
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
        Some(u) => bail!("{}: `{u}` must start with http:// or https://", at("public_url")),
        None if tls.is_some() => format!("https://{listen}"),
        None => format!("http://{listen}"),
    };
    let http_redirect_listen = match raw.http_redirect_listen {
        None => None,
        Some(_) if tls.is_none() => {
            bail!("{}: needs [tls] (it redirects plain HTTP to the HTTPS listeners)", at("http_redirect_listen"))
        }
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| anyhow!("{}: `{text}` is not an address like 0.0.0.0:80", at("http_redirect_listen")))?,
        ),
    };
    let http01 = tls
        .as_ref()
        .and_then(|t| t.acme.as_ref())
        .is_some_and(|a| a.challenge == gatehouse_server::tls::acme::Challenge::Http01);
    if http01 && http_redirect_listen.is_none() {
        bail!(
            "{}: the http-01 challenge is answered on http_redirect_listen (port 80 for a public CA); set it, or use challenge = \"tls-alpn-01\"",
            at("tls.acme.challenge")
        );
    }
    let owner = check_owner(raw.owner_email, raw.owner_password, &at)?;
    let sessions = raw.session.unwrap_or_default().check(&at)?;
    let sign_in = raw.sign_in.unwrap_or_default().check(&at)?;
    let (oauth_clients, oauth) = raw.oauth.unwrap_or_default().check(&at, file)?;
    let (webhook_worker, webhooks) = raw.webhooks.unwrap_or_default().check(&at)?;
    let usage = raw.usage.unwrap_or_default().check(&at)?;
    let secret_scanning = raw.secret_scanning.unwrap_or_default().check(&at)?;
    let mut warnings = vec![];
    if webhooks.allow_private_destinations {
        warnings.push(ConfigWarning::AllowPrivateDestinations);
    }
    let (upstream_timeout, gateway_threads, public_rate_limit) = raw.gateway.unwrap_or_default().check(&at)?;
    let listener = raw.limits.unwrap_or_default().check(&at)?;
    let apps = check_apps(raw.apps.unwrap_or_default(), file, &at)?;
    let password_login = raw.password_login.unwrap_or(true);
    let identity_providers =
        check_identity_providers(raw.identity_providers.unwrap_or_default(), password_login, file, &at)?;
    Ok(Config {
        http_redirect_listen,
        config_file: None,
        warnings,
        oauth_clients,
        gateway_listen,
        upstream_timeout,
        gateway_threads,
        public_rate_limit,
        owner,
        apps,
        data_dir,
        database_url,
        listen,
        log_format,
        log_level,
        server: ServerConfig {
            namespace,
            workspace,
            trusted_proxies,
            default_rate_limit,
            body_limit,
            cache,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10).min(300)),
            public_url,
            sessions,
            oauth,
            webhooks,
            webhook_worker,
            redis_url,
            listener,
            sign_in,
            usage,
            secret_scanning,
            tls: tls.is_some(),
            access: PolicyTable::new(),
            identity_providers,
            password_login,
        },
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> (tempfile::NamedTempFile, Flags) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let flags = Flags { config: Some(f.path().to_owned()), ..Default::default() };
        (f, flags)
    }

    #[test]
    fn layers_in_order_defaults_file_env_flags() {
        let (_f, mut flags) = file("listen = \"127.0.0.1:1000\"\ndata_dir = \"/from/file\"\n[rate_limit]\nlimit = 7\n");
        let e = env(&[("GATEHOUSE_LISTEN", "127.0.0.1:2000"), ("GATEHOUSE_RATE_LIMIT__WINDOW_SECS", "60")]);
        flags.listen = Some("127.0.0.1:3000".into());
        let c = load_from(&flags, &e).unwrap();
        assert_eq!(c.listen.port(), 3000, "flag beats env and file");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"), "file beats default");
        assert_eq!(c.server.default_rate_limit, Quota { limit: 7, window_ms: 60_000 }, "env and file merge per field");
        assert_eq!(c.server.namespace.as_str(), "gth", "default");
        assert_eq!(
            c.gateway_threads,
            std::thread::available_parallelism().map_or(1, usize::from),
            "default: one per CPU"
        );
        let c = load_from(&Flags::default(), &env(&[("GATEHOUSE_GATEWAY__THREADS", "3")])).unwrap();
        assert_eq!(c.gateway_threads, 3);
        let d = gatehouse_services::users::SignInConfig::default();
        assert_eq!(
            (c.server.sign_in.free_attempts, c.server.sign_in.max_concurrent_hashes),
            (5, d.max_concurrent_hashes),
            "sign-in defaults"
        );
        let (_f, flags) = file("[sign_in]\nfree_attempts = 3\nmax_concurrent_hashes = 2\nhash_wait_ms = 250\n");
        let c = load_from(&flags, &env(&[("GATEHOUSE_SIGN_IN__MAX_WAIT_SECS", "60")])).unwrap();
        let si = &c.server.sign_in;
        assert_eq!(
            (si.free_attempts, si.max_concurrent_hashes, si.hash_wait, si.max_wait),
            (3, 2, Duration::from_millis(250), Duration::from_secs(60))
        );
    }

    #[test]
    fn secret_scanning_defaults_file_and_environment() {
        use gatehouse_server::secret_scanning::{KeySource, GITHUB_KEYS_URL};
        let c = load_from(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(c.server.secret_scanning.keys, KeySource::Url(GITHUB_KEYS_URL.into()));
        assert_eq!(c.server.secret_scanning.report_limit, Quota { limit: 10, window_ms: 60_000 });
        let keys = tempfile::NamedTempFile::new().unwrap();
        let (_f, flags) = file(&format!(
            "[secret_scanning]\ngithub_keys_file = {:?}\nreport_limit = 3\n",
            keys.path().display().to_string()
        ));
        let c = load_from(&flags, &env(&[("GATEHOUSE_SECRET_SCANNING__REPORT_WINDOW_SECS", "10")])).unwrap();
        let ss = &c.server.secret_scanning;
        assert_eq!(ss.keys, KeySource::File(keys.path().to_owned()));
        assert_eq!(ss.report_limit, Quota { limit: 3, window_ms: 10_000 });
        let c = load_from(
            &Flags::default(),
            &env(&[("GATEHOUSE_SECRET_SCANNING__GITHUB_KEYS_URL", "http://127.0.0.1:9/keys")]),
        )
        .unwrap();
        assert_eq!(c.server.secret_scanning.keys, KeySource::Url("http://127.0.0.1:9/keys".into()));
    }

    #[test]
    fn unknown_keys_are_errors_with_file_and_line() {
        let (f, flags) = file("listen = \"127.0.0.1:1000\"\n\n[cache]\npoll_intervall_ms = 5\n");
        let err = load_from(&flags, &env(&[])).unwrap_err().to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("poll_intervall_ms"), "{err}");
        let err = load_from(&Flags::default(), &env(&[("GATEHOUSE_LISTN", "x")])).unwrap_err().to_string();
        assert!(err.contains("unknown environment variable GATEHOUSE_LISTN"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let rows = [
            (vec![("GATEHOUSE_LISTEN", "localhost")], "listen"),
            (vec![("GATEHOUSE_DATABASE_URL", "mysql://x")], "database_url"),
            (vec![("GATEHOUSE_KEY_NAMESPACE", "GTH")], "key_namespace"),
            (vec![("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8, nope")], "trusted_proxies"),
            (vec![("GATEHOUSE_RATE_LIMIT__LIMIT", "ten")], "GATEHOUSE_RATE_LIMIT__LIMIT"),
            (vec![("GATEHOUSE_CACHE__POLL_INTERVAL_MS", "5000")], "cache.poll_interval_ms"),
            (vec![("GATEHOUSE_LOG_FORMAT", "xml")], "log_format"),
            (vec![("GATEHOUSE_GATEWAY__THREADS", "0")], "gateway.threads"),
            (vec![("GATEHOUSE_GATEWAY__THREADS", "257")], "gateway.threads"),
            (vec![("GATEHOUSE_REDIS_URL", "rediss://cache:6380")], "redis_url"),
            (vec![("GATEHOUSE_REDIS_URL", "memcached://cache")], "redis_url"),
            (vec![("GATEHOUSE_REDIS_URL", "redis://")], "redis_url"),
            (
                vec![("GATEHOUSE_WEBHOOKS__PROXY", "http://127.0.0.1:3128")],
                "webhooks.proxy: 127.0.0.1 is a loopback address",
            ),
            (
                vec![("GATEHOUSE_WEBHOOKS__PROXY", "http://169.254.169.254")],
                "webhooks.proxy: 169.254.169.254 is a cloud metadata address",
            ),
            (
                vec![("GATEHOUSE_WEBHOOKS__PROXY", "http://[::ffff:10.0.0.1]:3128")],
                "webhooks.proxy: ::ffff:10.0.0.1 is a private address",
            ),
            (vec![("GATEHOUSE_WEBHOOKS__PROXY", "socks5://proxy.example:1080")], "webhooks.proxy: scheme `socks5`"),
            (
                vec![("GATEHOUSE_WEBHOOKS__PROXY", "http://proxy.example:3128/path")],
                "webhooks.proxy: give the proxy as",
            ),
            (vec![("GATEHOUSE_WEBHOOKS__PROXY", "proxy.example:3128")], "webhooks.proxy"),
            (vec![("GATEHOUSE_SIGN_IN__FREE_ATTEMPTS", "0")], "sign_in.free_attempts"),
            (vec![("GATEHOUSE_SIGN_IN__MAX_CONCURRENT_HASHES", "0")], "sign_in.max_concurrent_hashes"),
            (vec![("GATEHOUSE_SIGN_IN__MAX_CONCURRENT_HASHES", "1000")], "sign_in.max_concurrent_hashes"),
            (vec![("GATEHOUSE_SIGN_IN__FORGET_AFTER_SECS", "5")], "sign_in.forget_after_secs"),
            (vec![("GATEHOUSE_SIGN_IN__HASH_WAIT_MS", "600000")], "sign_in.hash_wait_ms"),
            (vec![("GATEHOUSE_SIGN_IN__MAX_WAIT_SECS", "3600")], "sign_in.max_wait_secs"),
            (vec![("GATEHOUSE_USAGE__FLUSH_INTERVAL_SECS", "0")], "usage.flush_interval_secs"),
            (vec![("GATEHOUSE_USAGE__MINUTE_RETENTION_HOURS", "1000")], "usage.minute_retention_hours"),
            (vec![("GATEHOUSE_USAGE__HOUR_RETENTION_DAYS", "0")], "usage.hour_retention_days"),
            (vec![("GATEHOUSE_SECRET_SCANNING__GITHUB_KEYS_URL", "ftp://x")], "secret_scanning.github_keys_url"),
            (
                vec![
                    ("GATEHOUSE_SECRET_SCANNING__GITHUB_KEYS_URL", "https://keys.example"),
                    ("GATEHOUSE_SECRET_SCANNING__GITHUB_KEYS_FILE", "/etc/hostname"),
                ],
                "not both",
            ),
            (vec![("GATEHOUSE_SECRET_SCANNING__GITHUB_KEYS_FILE", "/no/such/keys.json")], "/no/such/keys.json"),
            (vec![("GATEHOUSE_SECRET_SCANNING__REFRESH_INTERVAL_SECS", "5")], "secret_scanning.refresh_interval_secs"),
            (
                vec![("GATEHOUSE_SECRET_SCANNING__MIN_REFETCH_INTERVAL_SECS", "0")],
                "secret_scanning.min_refetch_interval_secs",
            ),
            (vec![("GATEHOUSE_SECRET_SCANNING__REPORT_LIMIT", "0")], "secret_scanning.report_limit"),
        ];
        for (e, field) in rows {
            let err = load_from(&Flags::default(), &env(&e)).unwrap_err().to_string();
            assert!(err.contains(field), "{e:?}: {err}");
        }
    }

    #[test]
    fn a_webhook_proxy_is_taken_only_from_the_config_and_judged_by_the_ssrf_guard() {
        let c =
            load_from(&Flags::default(), &env(&[("GATEHOUSE_WEBHOOKS__PROXY", "http://proxy.example:3128")])).unwrap();
        assert_eq!(c.server.webhooks.proxy.as_deref(), Some("http://proxy.example:3128"));
        assert_eq!(load_from(&Flags::default(), &env(&[])).unwrap().server.webhooks.proxy, None);
        // A loopback proxy is fine for local development, with the switch that allows private destinations.
        let e = env(&[
            ("GATEHOUSE_WEBHOOKS__PROXY", "http://127.0.0.1:3128"),
            ("GATEHOUSE_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "true"),
        ]);
        assert!(load_from(&Flags::default(), &e).is_ok());
    }

    #[test]
    fn secrets_from_files_and_never_printed() {
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "postgres://u:hunter2@db/gh\n").unwrap();
        let e = env(&[("GATEHOUSE_DATABASE_URL_FILE", &secret.path().display().to_string())]);
        let c = load_from(&Flags::default(), &e).unwrap();
        assert_eq!(c.store_location(), "postgres://u:hunter2@db/gh");
        assert_eq!(c.store_display(), "postgres://…@db/gh");
        assert!(!format!("{c:?}").contains("hunter2"));

        let redis = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(redis.path(), "redis://:swordfish@cache:6379/2\n").unwrap();
        let c =
            load_from(&Flags::default(), &env(&[("GATEHOUSE_REDIS_URL_FILE", &redis.path().display().to_string())]))
                .unwrap();
        assert_eq!(c.server.redis_url.as_ref().unwrap().expose(), "redis://:swordfish@cache:6379/2");
        assert_eq!(c.limits_display(), "shared through redis://…@cache:6379/2");
        assert!(!format!("{c:?}").contains("swordfish"));
    }

    #[test]
    fn access_tables_load_from_the_file_and_name_their_table_in_every_error() {
        let (_f, flags) = file(
            "[access.shop]\ndomains = [\"Example.com\"]\nroles = [\"owner\"]\n\n[access.\"my app\"]\ngroups = [\"eng\"]\n",
        );
        let c = load_from(&flags, &env(&[])).unwrap();
        assert_eq!(c.server.access["shop"].lists().domains, ["example.com"]);
        assert_eq!(c.server.access["my app"].lists().groups, ["eng"]);
        assert_eq!(c.config_file.as_deref(), flags.config.as_deref());
        assert!(load_from(&Flags::default(), &env(&[])).unwrap().server.access.is_empty(), "no file: no policy");
        let rows = [
            (
                "[access.shop]\nemailz = [\"a@b.c\"]\n",
                ":1: [access.shop]: unknown field `emailz`, expected one of `emails`, `domains`, `roles`, `groups`",
            ),
            ("\n\n[access.shop]\n", ":3: [access.shop]: lists no one"),
            ("[access.shop]\ndomains = [\"*.example.com\"]\n", "[access.shop]: domains[0]: `*.example.com`: wildcards"),
            (
                "[access.shop]\ndomains = \"example.com\"\n",
                "[access.shop]: invalid type: string \"example.com\", expected a sequence",
            ),
            (
                "[access.shop]\nemails = [\"nobody\"]\n[access.blog]\nroles = [\"root\"]\n",
                "[access.blog]: roles[0]: `root` is not a role",
            ),
            (
                "[access.shop]\nemails = [\"nobody\"]\n[access.blog]\nroles = [\"root\"]\n",
                "[access.shop]: emails[0]: `nobody` is not an email address",
            ),
            ("[access.\"a.b\"]\nroles = [1]\n", "[access.\"a.b\"]: invalid type: integer `1`, expected a string"),
            ("access = 5\n", "invalid type: integer `5`, expected a map"),
            ("[access]\nshop = 5\n", "[access.shop]: invalid type: integer `5`"),
        ];
        for (text, want) in rows {
            let (f, flags) = file(text);
            let err = format!("{:#}", load_from(&flags, &env(&[])).unwrap_err());
            assert!(err.contains(want), "{text:?}: `{err}` should contain `{want}`");
            assert!(err.contains(&f.path().display().to_string()), "{err}");
        }
    }

    #[test]
    fn an_access_table_for_an_app_that_is_not_served_is_an_error() {
        let (f, flags) = file("[access.shop]\nroles = [\"owner\"]\n[access.sohp]\nroles = [\"owner\"]\n");
        let c = load_from(&flags, &env(&[])).unwrap();
        assert!(check_access_names(c.config_file.as_deref(), &c.server.access, &["shop"]).is_err());
        let err = check_access_names(c.config_file.as_deref(), &c.server.access, &["shop", "blog"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: [access.sohp] names no app that is served (apps: shop, blog)", f.path().display())
        );
        let err = check_access_names(None, &c.server.access, &[]).unwrap_err().to_string();
        assert!(err.contains("[access.shop] names no app that is served (apps: none)"), "{err}");
        // A reload judges the whole file: broken TOML, an unknown setting elsewhere, or an unknown app.
        let path = f.path();
        for (text, want) in [
            ("[access.shop\n", "invalid table header"),
            ("listn = 1\n[access.shop]\nroles = [\"owner\"]\n", "unknown field `listn`"),
            ("[access.blog]\nroles = [\"owner\"]\n", "[access.blog] names no app"),
        ] {
            let err = format!("{:#}", reload_access(path, text.as_bytes(), &["shop"]).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(reload_access(path, b"\xff", &["shop"]).unwrap_err().to_string().contains("not UTF-8"));
        let t = reload_access(path, b"[access.shop]\nemails = [\"A@x.io\"]\n", &["shop"]).unwrap();
        assert_eq!(t["shop"].lists().emails, ["a@x.io"]);
    }

    #[test]
    fn identity_providers_defaults_secrets_and_errors() {
        let provider = |extra: &str| {
            format!(
                "[[identity_providers]]\nid = \"corp\"\ndisplay_name = \"Corp SSO\"\nissuer = \"https://idp.example.com\"\nclient_id = \"gh\"\n{extra}\n"
            )
        };
        let (_f, flags) = file(&provider("client_secret = \"s3cr3t-value\""));
        let c = load_from(&flags, &env(&[])).unwrap();
        let p = &c.server.identity_providers[0];
        assert_eq!(
            (p.id.as_str(), p.display_name.as_str(), p.client_secret.expose()),
            ("corp", "Corp SSO", "s3cr3t-value")
        );
        assert_eq!(p.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(
            (p.auto_create_users, p.default_role.as_str(), p.groups_claim.as_str(), p.end_session),
            (false, "member", "groups", false)
        );
        assert!(c.server.password_login);
        assert!(!format!("{c:?}").contains("s3cr3t-value"), "the secret is never printed");

        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "from-a-file\n").unwrap();
        let (_f, flags) = file(&format!(
            "password_login = false\n{}",
            provider(&format!(
                "client_secret_file = {:?}\nscopes = [\"openid\", \"email\"]\nauto_create_users = true\ndefault_role = \"viewer\"\ngroups_claim = \"roles\"\nend_session = true",
                secret.path().display().to_string()
            ))
        ));
        let c = load_from(&flags, &env(&[])).unwrap();
        let p = &c.server.identity_providers[0];
        assert_eq!(p.client_secret.expose(), "from-a-file");
        assert_eq!(
            (p.auto_create_users, p.default_role.as_str(), p.groups_claim.as_str(), p.end_session),
            (true, "viewer", "roles", true)
        );
        assert!(!c.server.password_login);

        let rows = [
            (provider("client_secret = \"x\"\nclient_secert = \"typo\""), "client_secert"),
            (
                provider("client_secret = \"x\"").replace("id = \"corp\"", "id = \"Corp/../x\""),
                "identity_providers[0].id",
            ),
            (provider("client_secret = \"x\"").replace("id = \"corp\"", "id = \"\""), "identity_providers[0].id"),
            (
                provider("client_secret = \"x\"").replace("https://idp.example.com", "http://idp.example.com"),
                "identity_providers[0].issuer",
            ),
            (
                provider("client_secret = \"x\"").replace("https://idp.example.com", "https://idp.example.com/#x"),
                "identity_providers[0].issuer",
            ),
            (provider(""), "identity_providers[0].client_secret"),
            (provider("client_secret = \"\""), "identity_providers[0].client_secret"),
            (provider("client_secret = \"x\"\nclient_secret_file = \"/etc/hostname\""), "not both"),
            (provider("client_secret_file = \"/no/such/secret\""), "/no/such/secret"),
            (provider("client_secret = \"x\"\nscopes = [\"email\"]"), "must include `openid`"),
            (provider("client_secret = \"x\"\nscopes = [\"openid\", \"a b\"]"), "identity_providers[0].scopes"),
            (provider("client_secret = \"x\"\ndefault_role = \"owner\""), "never creates owners"),
            (provider("client_secret = \"x\"\ndefault_role = \"root\""), "identity_providers[0].default_role"),
            (
                format!("{}{}", provider("client_secret = \"x\""), provider("client_secret = \"y\"")),
                "used by another provider",
            ),
            ("password_login = false\n".to_owned(), "password_login"),
        ];
        for (text, want) in rows {
            let (_f, flags) = file(&text);
            let err = load_from(&flags, &env(&[])).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        let err = load_from(&Flags::default(), &env(&[("GATEHOUSE_PASSWORD_LOGIN", "false")])).unwrap_err().to_string();
        assert!(err.contains("password_login"), "{err}");
    }

    #[test]
    fn usage_retention_is_configurable() {
        let d = load_from(&Flags::default(), &env(&[])).unwrap().server.usage;
        assert!(d.enabled);
        assert_eq!((d.minute_retention.as_secs(), d.hour_retention.as_secs()), (24 * 3600, 30 * 86_400));
        let (_f, flags) = file(
            "[usage]\nenabled = false\nflush_interval_secs = 2\nminute_retention_hours = 6\nhour_retention_days = 90\n",
        );
        let u = load_from(&flags, &env(&[])).unwrap().server.usage;
        assert!(!u.enabled);
        assert_eq!(u.flush_interval.as_secs(), 2);
        assert_eq!((u.minute_retention.as_secs(), u.hour_retention.as_secs()), (6 * 3600, 90 * 86_400));
    }
}
