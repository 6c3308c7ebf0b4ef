//! OAuth 2.0 records and the storage capability that keeps them (SPEC §7).

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, Timestamp};

use crate::{AuditEntry, Page, PageRequest, StoreError};

/// A registered OAuth client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// The `client_id`.
    pub id: String,
    pub workspace: String,
    /// Shown on the consent screen.
    pub name: String,
    /// Confidential clients authenticate with a secret; public ones (`none`) cannot keep one.
    pub confidential: bool,
    pub secret_hash: Option<KeyHash>,
    pub secret_last4: Option<String>,
    /// The secret before the last rotation, accepted until `previous_secret_expires_at`.
    pub previous_secret_hash: Option<KeyHash>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub redirect_uris: Vec<String>,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    /// `opaque` or `jwt` (RFC 9068) access tokens.
    pub token_format: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub disabled_at: Option<Timestamp>,
    /// The environment its tokens act in (SPEC §11).
    pub environment: Environment,
    /// The one app its tokens may be used on, if restricted.
    pub app: Option<String>,
}

/// An authorization code; only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: KeyHash,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI (then the token request must repeat it).
    pub redirect_given: bool,
    pub scopes: Vec<String>,
    /// BASE64URL(SHA-256(code_verifier)).
    pub code_challenge: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub grant_id: Option<String>,
}

/// What a user allowed a client, remembered so the consent screen is skipped next time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: Timestamp,
}

/// A user's consent to one client, as the client's page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConsent {
    pub user_id: String,
    pub scopes: Vec<String>,
    pub granted_at: Timestamp,
}

/// What an edit of a client changes (everything else stays as stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEdit {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

/// One authorization: the tokens descended from one code exchange or one client_credentials request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub workspace: String,
    pub client_id: String,
    pub user_id: Option<String>,
    /// `authorization_code` or `client_credentials`.
    pub grant_type: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// An access or refresh token; only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: KeyHash,
    pub kind: TokenKind,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The refresh token this one was issued from.
    pub parent_hash: Option<KeyHash>,
    pub used_at: Option<Timestamp>,
    pub retried_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was unspent: it is now spent and the new pair is live.
    Rotated,
    /// A replay of a spent token whose successor was never used (the response was lost): the unused
    /// successor pair was revoked and the new pair is live. Allowed once per token.
    Retried,
    /// A replay within the race window of the first use: refused, nothing changed.
    Concurrent,
    /// A replay of a spent token: the whole grant is revoked.
    Reused { grant_id: String },
    /// Unknown, revoked, expired, or not a refresh token.
    Invalid,
}

/// A client_credentials grant to store: the grant, its token(s), its audit entry.
#[derive(Clone, Debug)]
pub struct NewGrant {
    pub grant: GrantRecord,
    pub tokens: Vec<TokenRecord>,
    pub audit: AuditEntry,
}

/// One presentation of a refresh token.
#[derive(Clone, Debug)]
pub struct RefreshRequest {
    pub hash: KeyHash,
    pub client_id: String,
    pub now: Timestamp,
    /// A replay within this many milliseconds of the first use is `Concurrent`.
    pub race_window_ms: i64,
    pub new_pair: Vec<TokenRecord>,
    pub reuse_audit: AuditEntry,
}

/// What redeeming a code did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeOutcome {
    /// First use: the grant and tokens were stored.
    Redeemed,
    /// The code was already used (or burnt); the grant it issued, if any, is now revoked.
    Replayed { grant_id: Option<String> },
    /// Unknown or expired.
    Invalid,
}

/// OAuth clients, consents, codes, grants and tokens.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    async fn insert_client(&self, client: &ClientRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Creates or replaces a client declared in configuration (its secret and settings become exactly
    /// these; a disabled client is enabled again), audited, with a change-feed entry.
    async fn upsert_client(&self, client: &ClientRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn client_by_id(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// Clients of the workspace, of one environment when `environment` is given.
    async fn list_clients(
        &self,
        workspace: &str,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<ClientRecord>, StoreError>;
    /// Replaces the secret; the old one stays valid until `previous_expires_at`.
    async fn rotate_client_secret(
        &self,
        id: &str,
        new_hash: &KeyHash,
        new_last4: &str,
        previous_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError>;
    /// Changes an enabled client's name, redirect URIs and scopes, audited, with a change-feed entry;
    /// `None` (and nothing written) when it does not exist or is disabled.
    async fn update_client(
        &self,
        id: &str,
        edit: &ClientEdit,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError>;
    /// Disables a client and revokes every token it holds (their hashes go on the change feed).
    async fn disable_client(
        &self,
        id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError>;

    /// The scopes a user already allowed a client.
    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Vec<String>>, StoreError>;
    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Forgets the consent and revokes every grant of that user to that client.
    async fn withdraw_consent(
        &self,
        user_id: &str,
        client_id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Every user's consent to the client, newest first (at most 500).
    async fn consents_of_client(&self, client_id: &str) -> Result<Vec<UserConsent>, StoreError>;
    /// Every consent the user has given, newest first.
    async fn consents_of_user(&self, user_id: &str) -> Result<Vec<ConsentRecord>, StoreError>;
    /// The user's live grants, newest first.
    async fn grants_of_user(&self, user_id: &str) -> Result<Vec<GrantRecord>, StoreError>;
    async fn grant_by_id(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;

    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;
    async fn code_by_hash(&self, hash: &KeyHash) -> Result<Option<CodeRecord>, StoreError>;
    /// Spends a code that failed a check (wrong verifier, other client) so it can never be redeemed.
    async fn burn_code(&self, hash: &KeyHash, at: Timestamp) -> Result<(), StoreError>;
    /// Atomically spends the code and stores the grant and its tokens. A code already spent is a
    /// replay: the grant it issued is revoked (audited with `replay_audit`).
    async fn redeem_code(
        &self,
        hash: &KeyHash,
        now: Timestamp,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
        audit: &AuditEntry,
        replay_audit: &AuditEntry,
    ) -> Result<CodeOutcome, StoreError>;

    /// Stores grants with their tokens and audit entries (client_credentials), all in one transaction
    /// with one multi-row insert per table, so a burst of requests costs one commit.
    async fn insert_grants(&self, items: &[NewGrant]) -> Result<(), StoreError>;
    async fn token_by_hash(&self, hash: &KeyHash) -> Result<Option<TokenRecord>, StoreError>;
    /// Presents refresh tokens (SPEC §7 rotation, lost-response retry, reuse detection), in order, in one
    /// transaction: each item sees the effect of the ones before it, so the same token twice in a batch
    /// rotates once. A new pair is stored only for `Rotated` and `Retried`; the reuse audit only for `Reused`.
    async fn refresh_many(&self, items: &[RefreshRequest]) -> Result<Vec<RefreshOutcome>, StoreError>;
    /// Revokes one access token, audited. `false` if it was unknown or already revoked.
    async fn revoke_token(&self, hash: &KeyHash, at: Timestamp, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// Revokes a grant and all its tokens. `false` if it was unknown or already revoked.
    async fn revoke_grant(&self, grant_id: &str, at: Timestamp, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// Deletes codes and tokens that ended before `before`. Returns how many rows went.
    async fn delete_expired_oauth(&self, before: Timestamp) -> Result<u64, StoreError>;
}
