//! `[tls.acme]` (SPEC §14, RFC 8555): a certificate for every host Gatehouse serves, obtained from an
//! ACME CA with `instant-acme`, cached in the data dir, renewed `renew_before` ahead of expiry, and
//! presented through [`Certificates`] without a restart.
//!
//! One certificate per host, so one host failing its challenge (its DNS points elsewhere) does not
//! hold the others back. A failure is retried after `retry_min`, doubling up to `retry_max`, and is
//! visible in the log, in `/metrics` (`gatehouse_acme_orders`, `gatehouse_acme_failing`) and in
//! `/readyz` (a host without any certificate makes the node not ready; one whose renewal fails while
//! its certificate is still valid is reported but ready). The account key and every certificate key
//! are written `0600`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::sign::CertifiedKey;

use super::redirect::Http01Tokens;
use super::{Certificates, TlsStatus};

/// Let's Encrypt's production directory, the default `directory_url`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How the CA checks that we control a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// A token served at `http://HOST/.well-known/acme-challenge/…` (the `http_redirect_listen` listener, port 80).
    Http01,
    /// A self-signed certificate presented for `acme-tls/1` on the HTTPS port (443, the gateway's listener).
    TlsAlpn01,
}

/// The checked `[tls.acme]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory_url: String,
    /// Contact address for the account (`mailto:`).
    pub email: Option<String>,
    /// PEM root certificate trusted for the ACME server's own HTTPS (a private CA); `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    pub challenge: Challenge,
    /// Where the account and the certificates are kept (`<data_dir>/acme`).
    pub cache_dir: PathBuf,
    /// A certificate is renewed once it expires within this.
    pub renew_before: Duration,
    /// How often certificates are looked at for renewal.
    pub check_interval: Duration,
    /// The first wait after a failure, doubled per failure up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// Why obtaining a certificate failed, in words for the log and `/readyz` (never key material).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AcmeError(String);

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        AcmeError(e.to_string())
    }
}

/// The hosts of `hosts` (`host[:port]`) that a CA can issue for: DNS names, lower case, without
/// port, each once. IP literals and `localhost` are left out.
pub fn certificate_names<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = vec![];
    for h in hosts {
        let h = h.to_ascii_lowercase();
        if h.starts_with('[') {
            continue;
        }
        let name = h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n).to_owned();
        if name.is_empty() || name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() || names.contains(&name) {
            continue;
        }
        names.push(name);
    }
    names
}

/// The certificate manager.
#[derive(Debug)]
pub struct Acme {
    config: AcmeConfig,
    hosts: Vec<String>,
    certs: Arc<Certificates>,
    tokens: Arc<Http01Tokens>,
    status: Arc<TlsStatus>,
    metrics: gatehouse_services::metrics::Metrics,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

impl Acme {
    /// A manager of certificates for `hosts` (names from [`certificate_names`]).
    pub fn new(
        config: AcmeConfig,
        hosts: Vec<String>,
        certs: Arc<Certificates>,
        tokens: Arc<Http01Tokens>,
        status: Arc<TlsStatus>,
        metrics: gatehouse_services::metrics::Metrics,
    ) -> Self {
        // instant-acme's HTTP client builds its rustls configuration with the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for h in &hosts {
            status.update(h, |_| {});
        }
        Self { config, hosts, certs, tokens, status, metrics }
    }

    fn host_dir(&self, host: &str) -> PathBuf {
        self.config.cache_dir.join("certificates").join(host)
    }

    /// Presents every cached certificate that is still valid, so a restart serves HTTPS at once.
    pub fn load_cache(&self) {
        for host in &self.hosts {
            let dir = self.host_dir(host);
            let (Ok(cert), Ok(key)) = (std::fs::read(dir.join("cert.pem")), std::fs::read(dir.join("key.pem"))) else {
                continue;
            };
            match super::files::parse_pair(&cert, &key, "cert.pem", "key.pem") {
                Ok(c) => self.install(host, c),
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "cached ACME certificate not used; a new one will be ordered")
                }
            }
        }
    }

    fn install(&self, host: &str, cert: CertifiedKey) {
        let expiry = super::not_after(&cert);
        self.certs.set_host(host, Arc::new(cert));
        self.status.update(host, |s| {
            s.not_after = expiry;
            s.last_error = None;
            s.failures = 0;
        });
        self.metrics.tls_certificate_expiry(host, expiry.unwrap_or(0));
    }

    /// Whether `host` needs a certificate now: none yet, or the one served expires within `renew_before`.
    fn due(&self, host: &str) -> bool {
        let renew_before = i64::try_from(self.config.renew_before.as_secs()).unwrap_or(i64::MAX);
        match self.status.snapshot().get(host).and_then(|s| s.not_after) {
            Some(not_after) if self.certs.has_host(host) => not_after.saturating_sub(renew_before) <= super::unix_now(),
            _ => true,
        }
    }

    /// Runs the manager until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut account: Option<Account> = None;
        let mut retry_at: HashMap<String, (Instant, Duration)> = HashMap::new();
        loop {
            for host in &self.hosts {
                if !self.due(host) || retry_at.get(host).is_some_and(|(at, _)| *at > Instant::now()) {
                    continue;
                }
                let result = match &account {
                    Some(a) => self.obtain(a, host).await,
                    None => match self.account().await {
                        Ok(a) => {
                            let r = self.obtain(&a, host).await;
                            account = Some(a);
                            r
                        }
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(cert) => {
                        let expiry = super::not_after(&cert);
                        self.install(host, cert);
                        self.metrics.acme_order(host, true);
                        retry_at.remove(host);
                        tracing::info!(host = %host, not_after = expiry, "ACME certificate obtained");
                    }
                    Err(e) => {
                        let wait = retry_at
                            .get(host)
                            .map_or(self.config.retry_min, |(_, w)| (*w * 2).min(self.config.retry_max));
                        retry_at.insert(host.clone(), (Instant::now() + wait, wait));
                        tracing::warn!(host = %host, error = %e, retry_in_secs = wait.as_secs(), "ACME certificate not obtained; will retry");
                        self.metrics.acme_order(host, false);
                        self.status.update(host, |s| {
                            s.last_error = Some(e.to_string());
                            s.failures += 1;
                        });
                    }
                }
            }
            let next_retry = retry_at.values().map(|(at, _)| *at).min();
            let wake = next_retry.map_or(self.config.check_interval, |at| {
                at.saturating_duration_since(Instant::now()).min(self.config.check_interval)
            });
            tokio::time::sleep(wake.max(Duration::from_millis(100))).await;
        }
    }

    /// The cached account for this directory, or a new one (then cached).
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.config.cache_dir.join("account.json");
        let builder = || match &self.config.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        if let Ok(bytes) = std::fs::read(&path) {
            match serde_json::from_slice::<CachedAccount>(&bytes) {
                Ok(c) if c.directory_url == self.config.directory_url => {
                    return Ok(builder()?.from_credentials(c.credentials).await?);
                }
                Ok(_) => tracing::info!("the cached ACME account is for another directory; creating one"),
                Err(e) => tracing::warn!(error = %e, "the cached ACME account is unreadable; creating one"),
            }
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false },
                self.config.directory_url.clone(),
                None,
            )
            .await?;
        let cached = CachedAccount { directory_url: self.config.directory_url.clone(), credentials };
        let json = serde_json::to_vec(&cached).map_err(|e| AcmeError(e.to_string()))?;
        write_private(&path, &json)?;
        tracing::info!(directory = %self.config.directory_url, "ACME account created");
        Ok(account)
    }

    /// One order for `host`: answer its challenge, finalize with a new key, download, cache.
    async fn obtain(&self, account: &Account, host: &str) -> Result<CertifiedKey, AcmeError> {
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let kind = match self.config.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut tokens = vec![];
        let answered = self.answer_challenges(&mut order, host, kind, &mut tokens).await;
        let ready = match answered {
            Ok(()) => {
                order.poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(120))).await.map_err(AcmeError::from)
            }
            Err(e) => Err(e),
        }
        .map_err(|e| AcmeError(format!("the challenge for {host} was not validated: {e}")));
        for t in &tokens {
            self.tokens.remove(t);
        }
        self.certs.set_alpn_challenge(host, None);
        match ready? {
            OrderStatus::Ready => {}
            other => return Err(AcmeError(challenge_failure(&mut order, other).await)),
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(120))).await?;
        let cert = super::files::parse_pair(chain_pem.as_bytes(), key_pem.as_bytes(), "the CA's chain", "the new key")
            .map_err(|e| AcmeError(e.to_string()))?;
        let dir = self.host_dir(host);
        std::fs::create_dir_all(&dir).map_err(|e| AcmeError(format!("{}: {e}", dir.display())))?;
        write_private(&dir.join("key.pem"), key_pem.as_bytes())?;
        write_private(&dir.join("cert.pem"), chain_pem.as_bytes())?;
        Ok(cert)
    }

    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        host: &str,
        kind: ChallengeType,
        tokens: &mut Vec<String>,
    ) -> Result<(), AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError(format!("the CA answered the authorization for {host} with {other:?}"))),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError(format!("the CA offers no {kind:?} challenge for {host}")))?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeType::TlsAlpn01 => {
                    let cert = alpn_challenge_certificate(host, key_authorization.digest().as_ref())?;
                    self.certs.set_alpn_challenge(host, Some(Arc::new(cert)));
                }
                _ => {
                    self.tokens.insert(&challenge.token, key_authorization.as_str());
                    tokens.push(challenge.token.clone());
                }
            }
            challenge.set_ready().await?;
        }
        Ok(())
    }
}

/// Why an order did not become ready: the CA's word on the failed challenge, if it gave one.
async fn challenge_failure(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
                return format!("the challenge was not validated: {problem}");
            }
        }
    }
    format!("the order is {status:?}")
}

/// The self-signed certificate of a TLS-ALPN-01 answer (RFC 8737 §3): the host as its only name and
/// the SHA-256 of the key authorization in the critical `acmeIdentifier` extension.
fn alpn_challenge_certificate(host: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let fail = |e: rcgen::Error| AcmeError(format!("cannot make the TLS-ALPN-01 certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = super::provider().key_provider.load_private_key(der).map_err(|e| AcmeError(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Writes `bytes` to `path` readable by the owner alone, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| AcmeError(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_are_dns_names_once_without_ports() {
        let hosts =
            ["App.Test:8443", "app.test", "shop.test", "127.0.0.1:4480", "[::1]:4480", "localhost:4480", "cp.test"];
        assert_eq!(certificate_names(hosts), ["app.test", "shop.test", "cp.test"]);
    }

    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/key.pem");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
