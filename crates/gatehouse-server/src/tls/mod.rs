//! HTTPS at the edge (SPEC §14): the certificates the gateway and the control plane present, the
//! rustls configuration both listeners share, and what `/readyz` and `/metrics` say about them.
//!
//! One [`Certificates`] resolver answers every handshake: a certificate obtained by ACME for the
//! name the client asked for (SNI), else the certificate of `[tls] cert_file`. Both are swapped in
//! place (`files` watches the PEM files, `acme` renews), so a new handshake sees the new certificate
//! while connections already open keep the session they have. A TLS-ALPN-01 challenge
//! (`acme-tls/1`) is answered only with its challenge certificate, never with a real one.
//!
//! This module knows nothing of the listener or the app state: the listener holds a [`Terminator`],
//! the state a [`TlsStatus`].

pub mod acme;
pub mod files;
pub mod redirect;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The crypto provider of every TLS configuration here: ring (already in the tree through rustls).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates presented to clients, swapped atomically while serving.
#[derive(Default)]
pub struct Certificates {
    /// `[tls] cert_file` / `key_file`, for every name without a certificate of its own.
    fallback: RwLock<Option<Arc<CertifiedKey>>>,
    /// Certificates obtained by ACME, by host name (lower case, no port).
    by_host: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// TLS-ALPN-01 challenge certificates, by host name, while a challenge is open.
    alpn_challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("fallback", &self.fallback.read().is_some())
            .field("hosts", &self.by_host.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Presents `cert` from the next handshake on (for names without an ACME certificate).
    pub fn set_fallback(&self, cert: Arc<CertifiedKey>) {
        *self.fallback.write() = Some(cert);
    }

    /// Presents `cert` for `host` from the next handshake on.
    pub fn set_host(&self, host: &str, cert: Arc<CertifiedKey>) {
        self.by_host.write().insert(host.to_ascii_lowercase(), cert);
    }

    pub(crate) fn has_host(&self, host: &str) -> bool {
        self.by_host.read().contains_key(host)
    }

    pub(crate) fn set_alpn_challenge(&self, host: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut map = self.alpn_challenges.write();
        match cert {
            Some(c) => map.insert(host.to_ascii_lowercase(), c),
            None => map.remove(host),
        };
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        if hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN)) {
            return self.alpn_challenges.read().get(name.as_deref()?).cloned();
        }
        if let Some(cert) = name.as_deref().and_then(|n| self.by_host.read().get(n).cloned()) {
            return Some(cert);
        }
        self.fallback.read().clone()
    }
}

/// What accepts TLS on a listener: the shared rustls configuration and the handshake's deadline.
#[derive(Clone)]
pub struct Terminator {
    acceptor: tokio_rustls::TlsAcceptor,
    /// How long a client may take to complete the handshake (`limits.tls_handshake_timeout_secs`).
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

impl Terminator {
    /// TLS 1.2 and 1.3 with ring's default suites, ALPN `h2` then `http/1.1` (and `acme-tls/1` when
    /// TLS-ALPN-01 challenges are answered), certificates from `certs`.
    pub fn new(certs: Arc<Certificates>, alpn_challenges: bool, handshake_timeout: Duration) -> Self {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(certs);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if alpn_challenges {
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        Self { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), handshake_timeout }
    }

    /// Completes the handshake on `io` within the handshake timeout.
    pub async fn accept<IO>(&self, io: IO) -> Result<tokio_rustls::server::TlsStream<IO>, HandshakeError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::TimedOut),
        }
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("TLS handshake not completed within the timeout")]
    TimedOut,
}

/// What `/readyz` reports about certificates: one entry per certificate Gatehouse manages.
#[derive(Debug, Default)]
pub struct TlsStatus {
    entries: RwLock<BTreeMap<String, CertStatus>>,
}

/// One certificate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertStatus {
    /// The certificate being served expires then (Unix seconds); `None`: none is served yet.
    pub not_after: Option<i64>,
    /// The last attempt to obtain, renew or reload it failed with this (no secret in it).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

impl TlsStatus {
    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut CertStatus)) {
        f(self.entries.write().entry(name.to_owned()).or_default());
    }

    /// Every managed certificate by name (`cert_file`, or an ACME host name).
    pub fn snapshot(&self) -> BTreeMap<String, CertStatus> {
        self.entries.read().clone()
    }

    /// Whether every managed certificate is being served (ready), i.e. none is missing. A renewal
    /// that keeps failing while the old certificate is still valid is reported, but still ready.
    pub fn all_served(&self) -> bool {
        self.entries.read().values().all(|s| s.not_after.is_some())
    }
}

/// The end-entity certificate's expiry (Unix seconds), if it parses.
pub(crate) fn not_after(cert: &CertifiedKey) -> Option<i64> {
    let leaf = cert.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
