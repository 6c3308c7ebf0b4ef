//! Sign-in through an identity provider (SPEC §15), once the ID token is valid: which Gatehouse user
//! an account at a provider is. An account already linked signs in as its user. Otherwise it is linked
//! to the user with its email only when the provider says the email is verified (`email_verified:
//! true`), and a user is created for it only when the provider allows that (`auto_create_users`), with
//! the provider's default role — never an owner. A disabled user never gets in, linked or not.

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_core::oidc::IdClaims;
use gatehouse_core::Timestamp;
use gatehouse_store::{AuditEntry, ExternalIdentity, Store, StoreError, UserRecord};

use crate::audit::{audit_entry, AuditTarget, RequestMeta};
use crate::ids::new_id;

/// What a provider allows (from its `[[identity_providers]]` table).
#[derive(Clone, Copy, Debug)]
pub struct ProviderRules<'a> {
    pub provider_id: &'a str,
    pub auto_create_users: bool,
    /// One of the non-owner roles; checked when the configuration was loaded.
    pub default_role: &'a str,
}

/// A successful provider sign-in: the user, and the groups the provider's claim listed (for the access
/// policy of SPEC §15, which the session carries).
#[derive(Clone, Debug)]
pub struct ProviderSignIn {
    pub user: UserRecord,
    pub groups: Vec<String>,
    pub how: Linked,
}

/// How the account came to sign in as the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linked {
    /// It was linked before.
    Already,
    /// Just now, by its verified email.
    ByVerifiedEmail,
    /// The user was created for it just now.
    Created,
}

/// Why a valid ID token does not sign anyone in. The messages are sentences for the person at the
/// browser.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Your account at the identity provider is not linked to a Gatehouse user, and the provider did not confirm that your email address is verified, so it cannot be linked by email.")]
    EmailNotVerified,
    #[error("There is no Gatehouse user with your email address. Ask an owner or an admin to add you.")]
    NoSuchUser,
    #[error("This Gatehouse user is disabled.")]
    Disabled,
}

/// Provider sign-ins of one workspace.
#[derive(Clone)]
pub struct ExternalSignIns {
    store: Arc<dyn Store>,
    workspace: String,
}

impl std::fmt::Debug for ExternalSignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSignIns").field("workspace", &self.workspace).finish_non_exhaustive()
    }
}

/// The password hash of a user created through a provider: not a PHC string, so no password matches
/// it until one is set (a set-password link, or an admin).
pub const NO_PASSWORD: &str = "!external";

impl ExternalSignIns {
    pub fn new(store: Arc<dyn Store>, workspace: String) -> Self {
        Self { store, workspace }
    }

    fn audit(&self, action: &str, user_id: &str, ip: Option<IpAddr>, details: serde_json::Value) -> AuditEntry {
        let meta = RequestMeta { request_id: None, ip: ip.map(|i| i.to_string()) };
        let target = AuditTarget { kind: "user", id: user_id, environment: None };
        audit_entry(&self.workspace, "anonymous", &meta, action, target, details)
    }

    /// The user `claims` sign in as, linking or creating as the rules allow, audited (`user.signed_in`
    /// with the provider; `user.identity_linked` or `user.created` when that happened). Storage errors
    /// are errors: nobody is let in when the links cannot be read.
    pub async fn sign_in(
        &self,
        rules: ProviderRules<'_>,
        claims: &IdClaims,
        ip: Option<IpAddr>,
    ) -> Result<Result<ProviderSignIn, Refusal>, StoreError> {
        let outcome = self.resolve(rules, claims, ip).await?;
        let (user_id, details) = match &outcome {
            Ok(s) => (s.user.id.clone(), serde_json::json!({"provider": rules.provider_id, "email": s.user.email})),
            Err(r) => {
                tracing::info!(provider = rules.provider_id, refusal = ?r, "provider sign-in refused");
                return Ok(outcome);
            }
        };
        self.store.audit_sign_in(&self.audit("user.signed_in", &user_id, ip, details)).await?;
        Ok(outcome)
    }

    async fn resolve(
        &self,
        rules: ProviderRules<'_>,
        claims: &IdClaims,
        ip: Option<IpAddr>,
    ) -> Result<Result<ProviderSignIn, Refusal>, StoreError> {
        let done = |user: UserRecord, how| {
            if user.disabled_at.is_some() {
                Err(Refusal::Disabled)
            } else {
                Ok(ProviderSignIn { user, groups: claims.groups.clone(), how })
            }
        };
        // Twice at most: a concurrent first sign-in of the same account (or email) may win the race.
        for _ in 0..2 {
            if let Some(user) = self.store.user_of_identity(&self.workspace, &claims.issuer, &claims.subject).await? {
                return Ok(done(user, Linked::Already));
            }
            let email = match (&claims.email, claims.email_verified) {
                (Some(e), true) => e.clone(),
                _ => return Ok(Err(Refusal::EmailNotVerified)),
            };
            let now = Timestamp::now();
            let link = |user_id: &str| ExternalIdentity {
                workspace: self.workspace.clone(),
                issuer: claims.issuer.clone(),
                subject: claims.subject.clone(),
                user_id: user_id.to_owned(),
                provider_id: rules.provider_id.to_owned(),
                email: Some(email.clone()),
                created_at: now,
            };
            if let Some(user) = self.store.user_by_email(&self.workspace, &email).await? {
                if user.disabled_at.is_some() {
                    return Ok(Err(Refusal::Disabled));
                }
                let audit = self.audit(
                    "user.identity_linked",
                    &user.id,
                    ip,
                    serde_json::json!({"provider": rules.provider_id, "issuer": claims.issuer, "email": email}),
                );
                match self.store.link_identity(&link(&user.id), &audit).await {
                    Ok(()) => return Ok(done(user, Linked::ByVerifiedEmail)),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            if !rules.auto_create_users {
                return Ok(Err(Refusal::NoSuchUser));
            }
            let user = UserRecord {
                id: new_id("usr", now),
                workspace: self.workspace.clone(),
                email: email.clone(),
                password_hash: NO_PASSWORD.into(),
                role: rules.default_role.to_owned(),
                created_at: now,
                disabled_at: None,
            };
            let audit = self.audit(
                "user.created",
                &user.id,
                ip,
                serde_json::json!({"email": email, "role": rules.default_role, "provider": rules.provider_id}),
            );
            match self.store.insert_user_with_identity(&user, &link(&user.id), &audit).await {
                Ok(()) => return Ok(done(user, Linked::Created)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Other("the provider account was linked and unlinked concurrently".into()))
    }
}
