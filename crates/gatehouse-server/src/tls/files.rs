//! `[tls] cert_file` / `key_file`: a PEM certificate chain and its private key, loaded at start and
//! watched while serving. The files are polled (their content, so an atomic rename, a symlink
//! swapped by certbot and an in-place rewrite within one second all count); a new pair is loaded only
//! when it parses, the key matches the certificate and the certificate has not expired. Otherwise the
//! certificate being served stays, and the reason is logged once per new content.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::{Certificates, TlsStatus};

/// The name of the file certificate in `/readyz` and the metrics.
pub const CERT_FILE: &str = "cert_file";

/// Where the certificate and key are, and how often they are looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are read to see whether they changed (`tls.reload_interval_secs`).
    pub reload_interval: Duration,
}

/// Why a certificate pair was not loaded. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}: no certificate in the file")]
    NoCertificate(String),
    #[error("{0}: no private key in the file")]
    NoKey(String),
    #[error("the private key is not usable: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error("the certificate expired at {0} (Unix time)")]
    Expired(i64),
}

/// Reads and checks a certificate chain and key from PEM bytes.
pub fn parse_pair(cert_pem: &[u8], key_pem: &[u8], cert_name: &str, key_name: &str) -> Result<CertifiedKey, LoadError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| LoadError::Read { path: cert_name.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(LoadError::NoCertificate(cert_name.to_owned()));
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => return Err(LoadError::NoKey(key_name.to_owned())),
        // The PEM error names positions and section kinds, never key bytes.
        Err(e) => return Err(LoadError::Read { path: key_name.to_owned(), reason: e.to_string() }),
    };
    let signing = super::provider().key_provider.load_private_key(key).map_err(|e| LoadError::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(LoadError::KeyMismatch)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(LoadError::BadCertificate(e.to_string())),
    }
    let expiry = super::not_after(&certified)
        .ok_or_else(|| LoadError::BadCertificate("the first certificate is not X.509".into()))?;
    if expiry <= super::unix_now() {
        return Err(LoadError::Expired(expiry));
    }
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Read { path: path.display().to_string(), reason: e.to_string() })
}

/// Reads and checks the pair named by `files`.
pub fn load(files: &CertFiles) -> Result<CertifiedKey, LoadError> {
    let cert = read(&files.cert_file)?;
    let key = read(&files.key_file)?;
    parse_pair(&cert, &key, &files.cert_file.display().to_string(), &files.key_file.display().to_string())
}

/// The files' content, hashed (what the watcher compares).
fn fingerprint(files: &CertFiles) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(std::fs::read(&files.cert_file).ok()?);
    h.update([0]);
    h.update(std::fs::read(&files.key_file).ok()?);
    Some(h.finalize().into())
}

/// Loads the pair now (an error here stops the start: there is nothing to serve yet), presents it,
/// and spawns the watcher that reloads it whenever the files change.
pub fn serve_and_watch(
    files: CertFiles,
    certs: Arc<Certificates>,
    status: Arc<TlsStatus>,
    metrics: gatehouse_services::metrics::Metrics,
) -> Result<tokio::task::JoinHandle<()>, LoadError> {
    let seen = fingerprint(&files);
    let first = load(&files)?;
    install(&certs, &status, &metrics, first);
    Ok(tokio::spawn(watch(files, certs, status, metrics, seen)))
}

fn install(
    certs: &Certificates,
    status: &TlsStatus,
    metrics: &gatehouse_services::metrics::Metrics,
    cert: CertifiedKey,
) {
    let expiry = super::not_after(&cert);
    certs.set_fallback(Arc::new(cert));
    status.update(CERT_FILE, |s| {
        s.not_after = expiry;
        s.last_error = None;
        s.failures = 0;
    });
    metrics.tls_certificate_expiry(CERT_FILE, expiry.unwrap_or(0));
}

async fn watch(
    files: CertFiles,
    certs: Arc<Certificates>,
    status: Arc<TlsStatus>,
    metrics: gatehouse_services::metrics::Metrics,
    mut seen: Option<[u8; 32]>,
) {
    let mut tick = tokio::time::interval(files.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = {
            let files = files.clone();
            tokio::task::spawn_blocking(move || fingerprint(&files)).await.ok().flatten()
        };
        // A file that is missing for a moment (being replaced) is looked at again on the next tick.
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let files = files.clone();
            tokio::task::spawn_blocking(move || load(&files)).await
        };
        match loaded {
            Ok(Ok(cert)) => {
                let expiry = super::not_after(&cert);
                install(&certs, &status, &metrics, cert);
                metrics.tls_reloads(true);
                tracing::info!(cert_file = %files.cert_file.display(), not_after = expiry, "TLS certificate reloaded");
            }
            Ok(Err(e)) => {
                metrics.tls_reloads(false);
                status.update(CERT_FILE, |s| {
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                });
                tracing::warn!(error = %e, "the new TLS certificate files were not loaded; still serving the previous certificate");
            }
            Err(e) => tracing::warn!(error = %e, "reading the TLS certificate files failed"),
        }
    }
}
