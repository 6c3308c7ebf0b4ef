//! Revoking leaked credentials (SPEC §13): the one "revoke as leaked" operation that GitHub's
//! secret scanning endpoint, report-a-leak and `gatehouse scan --revoke` all call.
//!
//! A reported string is first recognised without I/O (`gatehouse_core::leak::recognise`: API key
//! checksum, token prefixes), then looked up by its SHA-256. What is ours and live is revoked in one
//! transaction with its audit entry and `key.leaked` event (`LeakStore::revoke_leaked`); the leak is
//! remembered by hash, so the same report again changes nothing. The secret itself never leaves
//! this function: audit entries, events and outcomes carry its masked form only.

use std::sync::Arc;

use gatehouse_core::leak::{recognise, CredentialKind, Recognised};
use gatehouse_core::{Environment, KeyHash, Namespace, Timestamp};
use gatehouse_store::oauth::TokenKind;
use gatehouse_store::{LeakRecord, LeakTarget, Store};

use crate::audit::{audit_entry, AuditTarget, RequestMeta};
use crate::oauth::OAuthService;
use crate::verifier::{ChangeSink, Verifier};
use crate::ServiceError;

/// Where a leaked credential was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeakSource {
    /// GitHub's secret scanning partner program: the public URL of the match, what GitHub scanned
    /// (`content`, `commit`, …) and the secret type it matched.
    Github { url: String, source: String, token_type: String },
    /// Someone holding the credential reported it (`POST /v1/credentials/report_leak`); the
    /// request's address is in the audit entry's `ip`.
    Report,
    /// `gatehouse scan --revoke`: the file and, for a repository's history, the commit.
    Scan { path: String, commit: Option<String> },
}

impl LeakSource {
    fn kind(&self) -> &'static str {
        match self {
            LeakSource::Github { .. } => "github",
            LeakSource::Report => "report",
            LeakSource::Scan { .. } => "scan",
        }
    }

    /// Who acts, for the audit log.
    fn actor(&self) -> &'static str {
        match self {
            LeakSource::Github { .. } => "github_secret_scanning",
            LeakSource::Report => "leak_report",
            LeakSource::Scan { .. } => "cli",
        }
    }

    fn location(&self) -> Option<String> {
        match self {
            LeakSource::Github { url, .. } => Some(url.clone()).filter(|u| !u.is_empty()),
            LeakSource::Report => None,
            LeakSource::Scan { path, .. } => Some(path.clone()),
        }
    }

    fn commit(&self) -> Option<String> {
        match self {
            LeakSource::Scan { commit, .. } => commit.clone(),
            _ => None,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            LeakSource::Github { source, token_type, .. } => Some(format!("{token_type} in {source}")),
            _ => None,
        }
    }

    fn describe(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"kind": self.kind()});
        if let Some(l) = self.location() {
            v[if matches!(self, LeakSource::Scan { .. }) { "path" } else { "url" }] = l.into();
        }
        if let Some(c) = self.commit() {
            v["commit"] = c.into();
        }
        if let LeakSource::Github { source, token_type, .. } = self {
            v["github_source"] = source.clone().into();
            v["github_type"] = token_type.clone().into();
        }
        v
    }
}

/// What a report of one credential did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakOutcome {
    /// Ours and live: now revoked, audited and announced.
    Revoked,
    /// Ours, but nothing was live any more (revoked, expired, or reported before): nothing changed.
    AlreadyInactive,
    /// Not a credential this deployment issued (wrong shape or checksum, or unknown).
    NotOurs,
}

impl LeakOutcome {
    /// Whether the string is a real credential of ours (GitHub's `true_positive`).
    pub fn is_ours(self) -> bool {
        !matches!(self, LeakOutcome::NotOurs)
    }
}

/// The outcome with what may be said about the credential (masked form and type only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakReport {
    pub outcome: LeakOutcome,
    pub kind: Option<CredentialKind>,
    pub masked: Option<String>,
    /// The key, grant or client it belonged to (for ours).
    pub target: Option<LeakTarget>,
}

impl LeakReport {
    fn not_ours(kind: Option<CredentialKind>, masked: Option<String>) -> Self {
        LeakReport { outcome: LeakOutcome::NotOurs, kind, masked, target: None }
    }
}

/// Leak revocation on one workspace.
#[derive(Clone, Debug)]
pub struct LeakService {
    store: Arc<dyn Store>,
    namespace: Namespace,
    workspace: String,
    cache: Option<(Verifier, Arc<OAuthService>)>,
}

/// What a recognised credential belongs to, found in storage.
struct Owner {
    target: LeakTarget,
    environment: Option<Environment>,
    live: bool,
    details: serde_json::Value,
}

impl LeakService {
    /// Without caches (the CLI): other processes drop their cached copies through the change feed.
    pub fn new(store: Arc<dyn Store>, namespace: Namespace, workspace: String) -> Self {
        Self { store, namespace, workspace, cache: None }
    }

    /// Drops what a revocation ends from this node's caches at once.
    pub fn with_cache(mut self, verifier: Verifier, oauth: Arc<OAuthService>) -> Self {
        self.cache = Some((verifier, oauth));
        self
    }

    /// Revokes `credential` as leaked if it is ours and live; idempotent. Storage failures are
    /// errors (the caller answers 503), never "not ours".
    pub async fn revoke_leaked(
        &self,
        credential: &str,
        source: &LeakSource,
        meta: &RequestMeta,
    ) -> Result<LeakReport, ServiceError> {
        let Some(rec) = recognise(&self.namespace, credential) else { return Ok(LeakReport::not_ours(None, None)) };
        self.revoke_recognised(&rec, source, meta).await
    }

    /// [`Self::revoke_leaked`] for a credential already recognised, when only its hash and mask are
    /// at hand (`gatehouse scan` keeps no secret in memory past the match).
    pub async fn revoke_recognised(
        &self,
        rec: &Recognised,
        source: &LeakSource,
        meta: &RequestMeta,
    ) -> Result<LeakReport, ServiceError> {
        let (kind, masked) = (Some(rec.kind), Some(rec.masked.clone()));
        let owner = match self.owner(rec.kind, &rec.hash).await? {
            Some(o) => o,
            None => {
                // A client secret that stopped working is gone from its client; the leak remembers it.
                return Ok(match self.store.leak_by_hash(&rec.hash).await? {
                    Some(l) if l.workspace == self.workspace => {
                        LeakReport { outcome: LeakOutcome::AlreadyInactive, kind, masked, target: Some(l.target) }
                    }
                    _ => LeakReport::not_ours(kind, masked),
                });
            }
        };
        let report = |outcome| LeakReport { outcome, kind, masked: masked.clone(), target: Some(owner.target.clone()) };
        if !owner.live {
            return Ok(report(LeakOutcome::AlreadyInactive));
        }
        let now = Timestamp::now();
        let mut details = owner.details.clone();
        details["credential_type"] = rec.kind.as_str().into();
        details["masked"] = rec.masked.clone().into();
        details["reason"] = "leaked".into();
        details["source"] = source.describe();
        let target = AuditTarget { kind: owner.target.kind(), id: owner.target.id(), environment: owner.environment };
        let audit = audit_entry(&self.workspace, source.actor(), meta, "key.leaked", target, details);
        let leak = LeakRecord {
            credential_hash: rec.hash,
            credential_type: rec.kind.as_str().to_owned(),
            workspace: self.workspace.clone(),
            environment: owner.environment,
            target: owner.target.clone(),
            masked: rec.masked.clone(),
            source_kind: source.kind().to_owned(),
            location: source.location(),
            commit: source.commit(),
            detail: source.detail(),
            reported_at: now,
        };
        if !self.store.revoke_leaked(&leak, &audit).await? {
            return Ok(report(LeakOutcome::AlreadyInactive));
        }
        if let Some((verifier, oauth)) = &self.cache {
            match &owner.target {
                LeakTarget::ApiKey(_) => verifier.invalidate(&rec.hash),
                LeakTarget::Grant(g) => oauth.forget_grant(g),
                LeakTarget::ClientSecret(c) => {
                    ChangeSink::invalidate(oauth.as_ref(), &gatehouse_store::client_feed_hash(c))
                }
            }
        }
        tracing::warn!(
            credential = %rec.masked, target = owner.target.id(), source = source.kind(),
            "leaked credential revoked"
        );
        Ok(report(LeakOutcome::Revoked))
    }

    /// What the credential with this hash belongs to in this workspace, and whether it is live.
    async fn owner(&self, kind: CredentialKind, hash: &KeyHash) -> Result<Option<Owner>, ServiceError> {
        let now = Timestamp::now();
        Ok(match kind {
            CredentialKind::ApiKey => {
                let Some(k) = self.store.key_by_hash(hash).await? else { return Ok(None) };
                if k.workspace != self.workspace || !k.hash.ct_eq(hash) {
                    return Ok(None);
                }
                Some(Owner {
                    live: k.revoked_at.is_none() && !k.is_expired(now),
                    environment: Some(k.environment),
                    details: serde_json::json!({
                        "name": k.name, "kind": k.kind.as_str(), "environment": k.environment.as_str(),
                        "display_prefix": k.display_prefix,
                    }),
                    target: LeakTarget::ApiKey(k.id),
                })
            }
            CredentialKind::AccessToken | CredentialKind::RefreshToken => {
                let want = if kind == CredentialKind::AccessToken { TokenKind::Access } else { TokenKind::Refresh };
                let Some(t) = self.store.token_by_hash(hash).await? else { return Ok(None) };
                if t.kind != want || !t.hash.ct_eq(hash) {
                    return Ok(None);
                }
                let Some(c) = self.store.client_by_id(&t.client_id).await? else { return Ok(None) };
                if c.workspace != self.workspace {
                    return Ok(None);
                }
                let grant = self.store.grant_by_id(&t.grant_id).await?;
                Some(Owner {
                    live: t.revoked_at.is_none() && t.expires_at > now && grant.is_some_and(|g| g.revoked_at.is_none()),
                    environment: Some(c.environment),
                    details: serde_json::json!({"client_id": c.id, "user_id": t.user_id}),
                    target: LeakTarget::Grant(t.grant_id),
                })
            }
            CredentialKind::ClientSecret => {
                let Some(c) = self.store.client_by_secret_hash(hash).await? else { return Ok(None) };
                if c.workspace != self.workspace {
                    return Ok(None);
                }
                let current = c.secret_hash.is_some_and(|h| h.ct_eq(hash));
                let previous = c.previous_secret_hash.is_some_and(|h| h.ct_eq(hash))
                    && c.previous_secret_expires_at.is_some_and(|t| t > now);
                Some(Owner {
                    live: c.disabled_at.is_none() && (current || previous),
                    environment: Some(c.environment),
                    details: serde_json::json!({"client_id": c.id, "name": c.name}),
                    target: LeakTarget::ClientSecret(c.id),
                })
            }
        })
    }
}
