//! Leaked credentials (SPEC §13): revoking a credential because it was found in public, once, with
//! the place it was found; and the reads that tell a credential's owner about it.

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, Timestamp};

use crate::oauth::ClientRecord;
use crate::{AuditEntry, StoreError};

/// What a leaked credential gives access to, and so what revoking it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeakTarget {
    /// The API key with this id is revoked.
    ApiKey(String),
    /// The OAuth grant with this id (of a leaked access or refresh token) is revoked with its tokens.
    Grant(String),
    /// The client's secret with the leaked hash stops working (current or previous), and its
    /// `client_credentials` grants, which that secret alone could have minted, are revoked.
    ClientSecret(String),
}

impl LeakTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            LeakTarget::ApiKey(_) => "api_key",
            LeakTarget::Grant(_) => "oauth_grant",
            LeakTarget::ClientSecret(_) => "oauth_client",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            LeakTarget::ApiKey(id) | LeakTarget::Grant(id) | LeakTarget::ClientSecret(id) => id,
        }
    }
}

/// One leaked credential as remembered: never the credential, only its hash and masked form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakRecord {
    pub credential_hash: KeyHash,
    /// `api_key`, `oauth_access_token`, `oauth_refresh_token` or `oauth_client_secret`.
    pub credential_type: String,
    pub workspace: String,
    pub environment: Option<Environment>,
    pub target: LeakTarget,
    pub masked: String,
    /// `github`, `report` or `scan`.
    pub source_kind: String,
    /// Where it was found: a URL (GitHub) or a file path (scan).
    pub location: Option<String>,
    pub commit: Option<String>,
    /// What else the reporter said (GitHub's `source` and `type`).
    pub detail: Option<String>,
    pub reported_at: Timestamp,
}

/// Revoking leaked credentials.
#[async_trait]
pub trait LeakStore: Send + Sync {
    /// In one transaction: revokes what `leak.target` names if it is still live (an unrevoked,
    /// unexpired key; a live grant; a client whose current or unexpired previous secret has the
    /// leaked hash), remembers the leak, writes `audit` (and so its event) and puts what changed on
    /// the change feed. `false`, with nothing written, when nothing was live: a second report of the
    /// same credential changes nothing.
    async fn revoke_leaked(&self, leak: &LeakRecord, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// The leak remembered for this credential hash.
    async fn leak_by_hash(&self, hash: &KeyHash) -> Result<Option<LeakRecord>, StoreError>;
    /// Leaks of any of these targets (key, grant or client ids) in the workspace, newest first.
    async fn leaks_of(&self, workspace: &str, target_ids: &[String]) -> Result<Vec<LeakRecord>, StoreError>;
    /// The client whose current or previous secret has this hash.
    async fn client_by_secret_hash(&self, hash: &KeyHash) -> Result<Option<ClientRecord>, StoreError>;
}
