//! Sign-in with an identity provider (SPEC §15): the accounts at providers that sign in as Gatehouse
//! users, the sign-ins sent to a provider and not back yet, and the ID tokens kept for sign-out there.

use async_trait::async_trait;
use gatehouse_core::{KeyHash, Timestamp};

use crate::{AuditEntry, StoreError, UserRecord};

/// An account at a provider, linked to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub workspace: String,
    /// The provider's issuer, exactly as in its ID tokens.
    pub issuer: String,
    /// The ID token's `sub`: stable per issuer.
    pub subject: String,
    pub user_id: String,
    /// The configured provider it was linked through.
    pub provider_id: String,
    /// The verified email it was linked by (or the user created with).
    pub email: Option<String>,
    pub created_at: Timestamp,
}

/// A sign-in sent to a provider, waiting for its callback. Holds no credential of the user: the
/// `state` itself is stored only as its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLogin {
    pub state_hash: KeyHash,
    pub provider_id: String,
    pub nonce: String,
    /// The PKCE verifier sent with the code exchange.
    pub code_verifier: String,
    /// Where the browser goes once signed in (as it came to `/login`, checked again at the end).
    pub return_to: String,
    /// The app host's browser binding, when an app host started the sign-in.
    pub app_browser: Option<KeyHash>,
    /// SHA-256 of the cookie set in the browser that started it.
    pub browser_hash: KeyHash,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Storage for provider sign-ins.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The user the account `(issuer, subject)` of the workspace signs in as.
    async fn user_of_identity(
        &self,
        workspace: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Links an account to an existing user, with its audit entry. `Conflict` when the account is
    /// already linked (to anyone): a link is never moved.
    async fn link_identity(&self, link: &ExternalIdentity, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Creates a user and links the account to it in one transaction, with the audit entry of the
    /// creation. `Conflict` when the email or the account is taken, nothing written.
    async fn insert_user_with_identity(
        &self,
        user: &UserRecord,
        link: &ExternalIdentity,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The accounts linked to a user, oldest first.
    async fn identities_of(&self, user_id: &str) -> Result<Vec<ExternalIdentity>, StoreError>;
    async fn insert_pending_login(&self, login: &PendingLogin) -> Result<(), StoreError>;
    /// Spends the pending sign-in with this state: it is deleted and returned in one statement, so two
    /// callbacks with the same state never both get it. Returned even when expired (the caller judges).
    async fn take_pending_login(&self, state_hash: &KeyHash) -> Result<Option<PendingLogin>, StoreError>;
    /// Keeps the ID token of a control-plane login for RP-initiated logout.
    async fn insert_provider_login(
        &self,
        session_hash: &KeyHash,
        provider_id: &str,
        id_token: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Removes and returns the provider and ID token kept for a login (at sign-out).
    async fn take_provider_login(&self, session_hash: &KeyHash) -> Result<Option<(String, String)>, StoreError>;
    /// Deletes pending sign-ins and kept ID tokens past their end; returns how many.
    async fn prune_provider_logins(&self, now: Timestamp) -> Result<u64, StoreError>;
}
