//! The OAuth 2.0 authorization server (SPEC §7): clients, codes, grants and tokens as domain
//! operations (`OAuthService`). Their HTTP endpoints are the server's `oauth::endpoints`.
//!
//! Tokens, codes and client secrets are 256-bit random strings, stored as SHA-256 only. Access
//! tokens are opaque (`gth_at_…`) or RFC 9068 JWTs; either way the database row keyed by the
//! token's hash is the truth, so revocation works for both. Verified access tokens are cached like
//! API keys and dropped through the same change feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::new_id;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use gatehouse_core::oauth::{parse_scope_param, validate_redirect_uri};
use gatehouse_core::{DenyReason, Environment, KeyHash, Namespace, Scope, ScopeSet, SecretString, Timestamp};
use gatehouse_store::oauth::{
    ClientEdit, ClientRecord, GrantRecord, NewGrant, RefreshOutcome, RefreshRequest, TokenKind, TokenRecord,
    UserConsent,
};
use gatehouse_store::{AuditEntry, Page, PageRequest, Store, StoreError, UserRecord};
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use crate::assertion::AssertionSigner;
use crate::audit::{Actor, RequestMeta};
use crate::verifier::{ChangeSink, Verifier};
use crate::ServiceError;

/// Lifetimes and the refresh race window.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
    /// A second presentation of a refresh token within this time of its first use is treated as a
    /// concurrent duplicate (refused, grant kept), not as a lost-response retry or a theft.
    pub refresh_race_window: Duration,
    /// Longest overlap a client-secret rotation may give the old secret.
    pub max_secret_overlap: Duration,
    /// The deployment's default per-credential rate limit, which tokens are held to (set by
    /// `App::build`): a key held to less may not register clients.
    pub default_rate_limit: Option<gatehouse_core::RateLimitOverride>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            code_ttl: Duration::from_secs(60),
            refresh_race_window: Duration::from_secs(1),
            max_secret_overlap: Duration::from_secs(7 * 86_400),
            default_rate_limit: None,
        }
    }
}

/// A new client as asked for by a caller; validated by `OAuthService::create_client`.
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    pub name: String,
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// `opaque` (default) or `jwt`.
    pub token_format: Option<String>,
    /// Where its tokens act: the registering key's environment (a key cannot choose another), live
    /// by default for the CLI and configuration.
    pub environment: Option<Environment>,
    /// Restricts its tokens to one app (inherited from an app-restricted registering key).
    pub app: Option<String>,
}

/// A verified, live access token with what the gateway and the API need to know about it.
#[derive(Debug)]
pub struct ActiveToken {
    pub record: TokenRecord,
    pub scopes: ScopeSet,
    pub user: Option<UserRecord>,
    /// The environment of the token's client: the only one it acts in.
    pub environment: Environment,
    /// The app the token's client is restricted to, if any.
    pub app: Option<String>,
}

impl ActiveToken {
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.record.revoked_at.is_none()
            && self.record.expires_at > now
            && self.user.as_ref().is_none_or(|u| u.disabled_at.is_none())
    }
}

/// A client's settings once validated.
struct ValidClient {
    scopes: Vec<String>,
    token_format: String,
    environment: Environment,
    app: Option<String>,
}

/// A client declared in configuration (`[[oauth.clients]]`).
#[derive(Clone, Debug)]
pub struct ConfiguredClient {
    /// `client_` followed by 1 to 64 of `a-z 0-9 _ -`.
    pub id: String,
    pub client: NewClient,
    /// The secret of a confidential client (read from a file; at least 32 characters).
    pub secret: Option<SecretString>,
}

/// Whether `id` can be a client id: generated (`client_` + 26 characters) or configured.
pub fn is_client_id(id: &str) -> bool {
    id.strip_prefix("client_").is_some_and(|r| {
        (1..=64).contains(&r.len())
            && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    })
}

/// The token response of RFC 6749 §5.1.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// OAuth operations on one workspace.
pub struct OAuthService {
    store: Arc<dyn Store>,
    pub namespace: Namespace,
    workspace: String,
    pub cfg: OAuthConfig,
    verifier: Verifier,
    cache: RwLock<HashMap<KeyHash, Arc<ActiveToken>>>,
    /// Clients by the hash of their change-feed name (`client_feed_hash`).
    clients: RwLock<HashMap<KeyHash, Arc<ClientRecord>>>,
    grants: crate::batch::Batcher<NewGrant, ()>,
    refreshes: crate::batch::Batcher<RefreshRequest, RefreshOutcome>,
}

impl std::fmt::Debug for OAuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthService").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// `{ns}_{tag}_{43 characters}`: 256 random bits, base64url.
fn random_token(ns: &Namespace, tag: &str) -> String {
    let (text, _) = crate::sessions::new_token();
    format!("{}_{tag}_{text}", ns.as_str())
}

fn scopes_string(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Whether every requested scope is granted by one of `allowed`.
pub fn allowed_covers(allowed: &[String], requested: &[Scope]) -> Result<(), Scope> {
    let set = ScopeSet::parse(allowed.iter().map(String::as_str)).unwrap_or_default();
    match requested.iter().find(|s| !set.grants(s)) {
        Some(s) => Err(s.clone()),
        None => Ok(()),
    }
}

/// The scopes of `scopes` that `user` may delegate (SPEC §12 roles), in order. Unparseable ones are
/// dropped: they were validated when stored, so this only happens to data older than the rules.
pub fn delegable(user: &UserRecord, scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter(|s| Scope::parse(s).is_ok_and(|s| gatehouse_core::authority::role_may_delegate(&user.role, &s)))
        .cloned()
        .collect()
}

/// `scopes` narrowed to what a client may still ask for and what its user may still delegate: a
/// grant never keeps a scope that was since removed from its client or from its user's role.
pub fn still_allowed(scopes: &[String], client: &ClientRecord, user: Option<&UserRecord>) -> Vec<String> {
    let allowed = ScopeSet::parse(client.scopes.iter().map(String::as_str)).unwrap_or_default();
    let kept: Vec<String> =
        scopes.iter().filter(|s| Scope::parse(s).is_ok_and(|s| allowed.grants(&s))).cloned().collect();
    match user {
        Some(u) => delegable(u, &kept),
        None => kept,
    }
}

/// The scopes a request asks for: the `scope` parameter checked against what is allowed, or all of
/// `allowed` when the parameter is absent. An error names the offending scope.
pub fn requested_scopes(param: Option<&str>, allowed: &[String]) -> Result<Vec<String>, String> {
    match param {
        None => Ok(allowed.to_vec()),
        Some(p) => {
            let parsed = parse_scope_param(p)?;
            if let Err(s) = allowed_covers(allowed, &parsed) {
                return Err(format!("the scope `{s}` is not allowed for this client"));
            }
            Ok(parsed.iter().map(ToString::to_string).collect())
        }
    }
}

impl OAuthService {
    pub fn new(
        store: Arc<dyn Store>,
        namespace: Namespace,
        workspace: String,
        cfg: OAuthConfig,
        verifier: Verifier,
    ) -> Arc<Self> {
        let s = store.clone();
        let grants = crate::batch::Batcher::new(256, move |items: Vec<NewGrant>| {
            let s = s.clone();
            async move { s.insert_grants(&items).await.map(|()| vec![(); items.len()]) }
        });
        let s = store.clone();
        let refreshes = crate::batch::Batcher::new(256, move |items: Vec<RefreshRequest>| {
            let s = s.clone();
            async move { s.refresh_many(&items).await }
        });
        let me = Arc::new(Self {
            store,
            namespace,
            workspace,
            cfg,
            verifier: verifier.clone(),
            cache: RwLock::default(),
            clients: RwLock::default(),
            grants,
            refreshes,
        });
        verifier.subscribe(me.clone());
        me
    }

    /// An audit entry of this workspace in `environment` (the client's), so a key of the other
    /// environment never reads it.
    #[allow(clippy::too_many_arguments)]
    pub fn audit(
        &self,
        environment: Environment,
        actor: &str,
        meta: &RequestMeta,
        action: &str,
        target_type: &str,
        target_id: &str,
        details: serde_json::Value,
    ) -> AuditEntry {
        let target = crate::audit::AuditTarget { kind: target_type, id: target_id, environment: Some(environment) };
        crate::audit::audit_entry(&self.workspace, actor, meta, action, target, details)
    }

    // ---- clients -------------------------------------------------------------------------------

    /// Checks a new client's settings against the actor's authority; returns the normalised scopes,
    /// token format, environment and app.
    fn validate_client(&self, actor: &Actor, req: &NewClient) -> Result<ValidClient, ServiceError> {
        let invalid = ServiceError::Invalid;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(invalid(
                "name: give 1 to 100 printable characters; it is shown to users on the consent screen".into(),
            ));
        }
        if req.redirect_uris.is_empty() && !req.confidential {
            return Err(invalid("redirect_uris: a public client needs at least one redirect URI".into()));
        }
        if req.redirect_uris.len() > 20 {
            return Err(invalid("redirect_uris: at most 20".into()));
        }
        for (i, u) in req.redirect_uris.iter().enumerate() {
            validate_redirect_uri(u).map_err(|e| invalid(format!("redirect_uris[{i}]: {e}")))?;
        }
        if req.scopes.len() > 100 {
            return Err(invalid("scopes: at most 100".into()));
        }
        if req.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(invalid("scopes: give one scope per list item".into()));
        }
        let parsed = parse_scope_param(&req.scopes.join(" ")).map_err(|e| invalid(format!("scopes: {e}")))?;
        let token_format = req.token_format.clone().unwrap_or_else(|| "opaque".into());
        if token_format != "opaque" && token_format != "jwt" {
            return Err(invalid("token_format: `opaque` or `jwt`".into()));
        }
        if let Some(app) = &req.app {
            crate::keys::validate_app(app)?;
        }
        let scopes: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        let (environment, app) = match actor.authority(self.cfg.default_rate_limit) {
            // A credential registers clients in its own environment, holding no more than it does (SPEC §11).
            Some(parent) => {
                let environment = req.environment.unwrap_or(parent.environment);
                let wanted = ScopeSet::parse(scopes.iter().map(String::as_str)).unwrap_or_default();
                let app = gatehouse_core::authority::bound_client(&parent, environment, &wanted, req.app.as_deref())
                    .map_err(|e| ServiceError::Denied(DenyReason::ExceedsAuthority(e)))?;
                (environment, app)
            }
            None => (req.environment.unwrap_or(Environment::Live), req.app.clone()),
        };
        Ok(ValidClient { scopes, token_format, environment, app })
    }

    /// Whether `actor` holds at least the authority of `client` (needed to obtain its secret).
    fn check_authority_over(&self, actor: &Actor, client: &ClientRecord) -> Result<(), ServiceError> {
        let Some(parent) = actor.authority(self.cfg.default_rate_limit) else { return Ok(()) };
        let wanted = ScopeSet::parse(client.scopes.iter().map(String::as_str)).unwrap_or_default();
        gatehouse_core::authority::bound_client(&parent, client.environment, &wanted, client.app.as_deref())
            .map(|_| ())
            .map_err(|e| ServiceError::Denied(DenyReason::ExceedsAuthority(e)))
    }

    /// Validates and registers a client; a confidential client's secret is returned once.
    pub async fn create_client(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        req: NewClient,
    ) -> Result<(ClientRecord, Option<SecretString>), ServiceError> {
        let ValidClient { scopes, token_format, environment, app } = self.validate_client(actor, &req)?;
        let now = Timestamp::now();
        let secret = req.confidential.then(|| SecretString::new(random_token(&self.namespace, "cs")));
        let client = ClientRecord {
            id: new_id("client", now),
            workspace: self.workspace.clone(),
            name: req.name.trim().to_owned(),
            confidential: req.confidential,
            secret_hash: secret.as_ref().map(|s| KeyHash::of(s.expose())),
            secret_last4: secret.as_ref().map(|s| last4(s.expose())),
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            redirect_uris: req.redirect_uris,
            scopes,
            token_format,
            created_at: now,
            created_by: actor.id(),
            disabled_at: None,
            environment,
            app,
        };
        let audit = self.audit(
            environment,
            &actor.id(),
            meta,
            "oauth.client.created",
            "oauth_client",
            &client.id,
            describe_client(&client),
        );
        self.store.insert_client(&client, &audit).await?;
        Ok((client, secret))
    }

    /// Makes a client declared in configuration exist exactly as declared. Writes (and audits) only when
    /// something differs from what is stored; returns whether it wrote.
    pub async fn sync_configured(&self, c: &ConfiguredClient) -> Result<bool, ServiceError> {
        let invalid = ServiceError::Invalid;
        if !is_client_id(&c.id) {
            return Err(invalid(format!(
                "id `{}`: use `client_` followed by 1 to 64 of a-z, 0-9, `_`, `-`",
                c.id.chars().take(80).collect::<String>()
            )));
        }
        let ValidClient { scopes, token_format, environment, app } = self.validate_client(&Actor::Cli, &c.client)?;
        let secret_hash = match (&c.secret, c.client.confidential) {
            (Some(s), true) if s.expose().len() >= 32 => Some(KeyHash::of(s.expose())),
            (Some(_), true) => {
                return Err(invalid("client_secret_file: the secret must be at least 32 characters".into()))
            }
            (None, true) => return Err(invalid("client_secret_file: a confidential client needs a secret".into())),
            (Some(_), false) => return Err(invalid("client_secret_file: a public client has no secret".into())),
            (None, false) => None,
        };
        let existing = self.store.client_by_id(&c.id).await?;
        let now = Timestamp::now();
        let client = ClientRecord {
            id: c.id.clone(),
            workspace: self.workspace.clone(),
            name: c.client.name.trim().to_owned(),
            confidential: c.client.confidential,
            secret_hash,
            secret_last4: c.secret.as_ref().map(|s| last4(s.expose())),
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            redirect_uris: c.client.redirect_uris.clone(),
            scopes,
            token_format,
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            created_by: existing.as_ref().map_or_else(|| "config".to_owned(), |e| e.created_by.clone()),
            disabled_at: None,
            environment,
            app,
        };
        if existing.as_ref() == Some(&client) {
            return Ok(false);
        }
        if existing.as_ref().is_some_and(|e| e.workspace != self.workspace) {
            return Err(ServiceError::Conflict(format!("client `{}` belongs to another workspace", c.id)));
        }
        let action = if existing.is_some() { "oauth.client.configured" } else { "oauth.client.created" };
        let audit = self.audit(
            client.environment,
            "config",
            &RequestMeta::default(),
            action,
            "oauth_client",
            &client.id,
            describe_client(&client),
        );
        self.store.upsert_client(&client, &audit).await?;
        self.forget_client(&c.id);
        self.cache.write().retain(|_, t| t.record.client_id != c.id);
        Ok(true)
    }

    pub async fn get_client(&self, id: &str) -> Result<ClientRecord, ServiceError> {
        let not_found = || {
            ServiceError::NotFound(format!("No OAuth client with id `{}`.", id.chars().take(60).collect::<String>()))
        };
        if !is_client_id(id) {
            return Err(not_found());
        }
        match self.store.client_by_id(id).await? {
            Some(c) if c.workspace == self.workspace => Ok(c),
            _ => Err(not_found()),
        }
    }

    /// A client as `actor` may see it: a key's view holds only its own environment's clients, and
    /// the others look absent.
    pub async fn client_for(&self, actor: &Actor, id: &str) -> Result<ClientRecord, ServiceError> {
        let c = self.get_client(id).await?;
        match actor {
            Actor::Key(k) if k.environment != c.environment => Err(ServiceError::NotFound(format!(
                "No OAuth client with id `{}`.",
                id.chars().take(60).collect::<String>()
            ))),
            _ => Ok(c),
        }
    }

    /// Clients newest first; a key sees only its environment's, the CLI those of `environment` or all.
    pub async fn list_clients(
        &self,
        actor: &Actor,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<ClientRecord>, ServiceError> {
        if let Some(c) = &page.starting_after {
            if !is_client_id(c) {
                return Err(ServiceError::Invalid("starting_after: not a client id".into()));
            }
        }
        let environment = match actor {
            Actor::Key(k) => Some(k.environment),
            Actor::Cli | Actor::User(_) => environment,
        };
        Ok(self.store.list_clients(&self.workspace, environment, page).await?)
    }

    /// Issues a new secret; the old one keeps working for `overlap` (0 … 7 days).
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: &str,
        overlap_secs: i64,
    ) -> Result<(ClientRecord, SecretString), ServiceError> {
        let max = self.cfg.max_secret_overlap.as_secs() as i64;
        if !(0..=max).contains(&overlap_secs) {
            return Err(ServiceError::Invalid(format!("grace_period_secs: between 0 and {max}")));
        }
        let client = self.client_for(actor, id).await?;
        // The new secret is the client's whole authority: only a credential holding as much may have it.
        self.check_authority_over(actor, &client)?;
        if !client.confidential {
            return Err(ServiceError::Invalid("a public client has no secret to rotate".into()));
        }
        if client.disabled_at.is_some() {
            return Err(ServiceError::Conflict("the client is disabled".into()));
        }
        let secret = SecretString::new(random_token(&self.namespace, "cs"));
        let until = Timestamp::now().plus_millis(overlap_secs * 1000);
        let audit = self.audit(
            client.environment,
            &actor.id(),
            meta,
            "oauth.client.secret_rotated",
            "oauth_client",
            id,
            serde_json::json!({"grace_period_secs": overlap_secs}),
        );
        let updated = self
            .store
            .rotate_client_secret(id, &KeyHash::of(secret.expose()), &last4(secret.expose()), until, &audit)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the client changed while rotating; try again".into()))?;
        self.forget_client(id);
        Ok((updated, secret))
    }

    /// Changes a client's name, redirect URIs and scopes, checked as a registration is (the actor's
    /// authority bounds the new scopes), audited as `oauth.client.updated` with what it was and what it
    /// became. Tokens already issued keep the scopes they were issued with until they expire or are
    /// revoked; new authorizations get only the new scopes.
    pub async fn update_client(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: &str,
        edit: ClientEdit,
    ) -> Result<ClientRecord, ServiceError> {
        let client = self.client_for(actor, id).await?;
        if client.disabled_at.is_some() {
            return Err(ServiceError::Conflict("the client is disabled".into()));
        }
        let asked = NewClient {
            name: edit.name,
            confidential: client.confidential,
            redirect_uris: edit.redirect_uris,
            scopes: edit.scopes,
            token_format: Some(client.token_format.clone()),
            environment: Some(client.environment),
            app: client.app.clone(),
        };
        let ValidClient { scopes, .. } = self.validate_client(actor, &asked)?;
        let edit = ClientEdit { name: asked.name.trim().to_owned(), redirect_uris: asked.redirect_uris, scopes };
        let audit = self.audit(
            client.environment,
            &actor.id(),
            meta,
            "oauth.client.updated",
            "oauth_client",
            id,
            serde_json::json!({
                "before": {"name": client.name, "redirect_uris": client.redirect_uris, "scopes": client.scopes},
                "after": {"name": edit.name, "redirect_uris": edit.redirect_uris, "scopes": edit.scopes},
            }),
        );
        let updated = self
            .store
            .update_client(id, &edit, &audit)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the client changed while saving; try again".into()))?;
        self.forget_client(id);
        Ok(updated)
    }

    /// The users who authorized a client (their remembered consents), newest first.
    pub async fn authorized_users(&self, actor: &Actor, id: &str) -> Result<Vec<UserConsent>, ServiceError> {
        let client = self.client_for(actor, id).await?;
        Ok(self.store.consents_of_client(&client.id).await?)
    }

    /// Revokes one user's authorization of a client: forgets the consent and revokes every token of
    /// theirs descended from it, audited as `oauth.grant.revoked`. `false` when that user had not
    /// authorized the client.
    pub async fn revoke_authorization(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        client_id: &str,
        user_id: &str,
        reason: &str,
    ) -> Result<bool, ServiceError> {
        let client = self.client_for(actor, client_id).await?;
        // A value that cannot be a user id names no one (and never reaches the database).
        if !gatehouse_core::id::looks_like("usr", user_id) {
            return Ok(false);
        }
        let audit = self.audit(
            client.environment,
            &actor.id(),
            meta,
            "oauth.grant.revoked",
            "oauth_client",
            &client.id,
            serde_json::json!({"reason": reason, "user_id": user_id}),
        );
        let withdrawn = self.store.withdraw_consent(user_id, &client.id, Timestamp::now(), &audit).await?;
        if withdrawn {
            self.invalidate_user_client(user_id, &client.id);
        }
        Ok(withdrawn)
    }

    /// Disables a client and revokes everything it holds.
    pub async fn disable_client(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: &str,
    ) -> Result<ClientRecord, ServiceError> {
        let client = self.client_for(actor, id).await?;
        let audit = self.audit(
            client.environment,
            &actor.id(),
            meta,
            "oauth.client.disabled",
            "oauth_client",
            id,
            serde_json::json!({}),
        );
        let c = self
            .store
            .disable_client(id, Timestamp::now(), &audit)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no such client".into()))?;
        self.forget_client(id);
        self.cache.write().retain(|_, t| t.record.client_id != id);
        Ok(c)
    }

    /// Stores a client_credentials grant (group-committed with concurrent ones).
    pub async fn store_grant(&self, item: NewGrant) -> Result<(), StoreError> {
        self.grants.submit(item).await
    }

    /// Presents a refresh token (group-committed with concurrent ones; see `OAuthStore::refresh_many`).
    pub async fn present_refresh(&self, item: RefreshRequest) -> Result<RefreshOutcome, StoreError> {
        self.refreshes.submit(item).await
    }

    /// A client by id: from the cache while the change feed is fresh, else from storage.
    async fn client(&self, id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        let key = gatehouse_store::client_feed_hash(id);
        if self.verifier.cache_trusted() {
            if let Some(c) = self.clients.read().get(&key) {
                return Ok(Some(c.clone()));
            }
        }
        let Some(c) = self.store.client_by_id(id).await? else { return Ok(None) };
        let c = Arc::new(c);
        let mut clients = self.clients.write();
        if clients.len() > 100_000 {
            clients.clear();
        }
        clients.insert(key, c.clone());
        Ok(Some(c))
    }

    fn forget_client(&self, id: &str) {
        self.clients.write().remove(&gatehouse_store::client_feed_hash(id));
    }

    /// Checks a client's credentials (SPEC §7 client auth). `secret` is `None` for `none`.
    pub async fn authenticate_client(
        &self,
        id: &str,
        secret: Option<&str>,
    ) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        if !is_client_id(id) {
            return Ok(None);
        }
        let Some(c) = self.client(id).await? else { return Ok(None) };
        if c.disabled_at.is_some() || c.workspace != self.workspace {
            return Ok(None);
        }
        let ok = match (c.confidential, secret) {
            (false, None) => true,
            (true, Some(s)) => {
                let h = KeyHash::of(s);
                let current = c.secret_hash.is_some_and(|x| bool::from(x.0.ct_eq(&h.0)));
                let previous = c.previous_secret_hash.is_some_and(|x| bool::from(x.0.ct_eq(&h.0)))
                    && c.previous_secret_expires_at.is_some_and(|t| t > Timestamp::now());
                current | previous
            }
            _ => false,
        };
        Ok(ok.then_some(c))
    }

    // ---- tokens --------------------------------------------------------------------------------

    /// Mints an access token (and, with `refresh_scopes`, a refresh token) of a grant; returns the
    /// response and the records to store.
    #[allow(clippy::too_many_arguments)]
    pub fn mint(
        &self,
        client: &ClientRecord,
        grant_id: &str,
        user: Option<&UserRecord>,
        scopes: &[String],
        refresh_scopes: Option<&[String]>,
        parent: Option<KeyHash>,
        signer: &AssertionSigner,
    ) -> (TokenResponse, Vec<TokenRecord>) {
        let now = Timestamp::now();
        let access_ttl = self.cfg.access_token_ttl.as_secs();
        let access = if client.token_format == "jwt" {
            let claims = serde_json::json!({
                "iss": signer.issuer(),
                "sub": user.map_or(client.id.as_str(), |u| u.id.as_str()),
                "aud": signer.issuer(),
                "exp": now.unix_seconds() + access_ttl as i64,
                "iat": now.unix_seconds(),
                "jti": new_id("jti", now),
                "client_id": client.id,
                "scope": scopes_string(scopes),
            });
            signer.sign_jwt("at+jwt", &claims)
        } else {
            random_token(&self.namespace, "at")
        };
        let record = |hash: KeyHash, kind: TokenKind, ttl_ms: i64| TokenRecord {
            hash,
            kind,
            grant_id: grant_id.to_owned(),
            client_id: client.id.clone(),
            user_id: user.map(|u| u.id.clone()),
            scopes: scopes.to_vec(),
            created_at: now,
            expires_at: now.plus_millis(ttl_ms),
            parent_hash: parent,
            used_at: None,
            retried_at: None,
            revoked_at: None,
        };
        let mut records = vec![record(KeyHash::of(&access), TokenKind::Access, access_ttl as i64 * 1000)];
        let refresh = refresh_scopes.map(|s| (random_token(&self.namespace, "rt"), s));
        if let Some((r, s)) = &refresh {
            let mut rec = record(KeyHash::of(r), TokenKind::Refresh, self.cfg.refresh_token_ttl.as_millis() as i64);
            // RFC 6749 §6: a rotated refresh token keeps the original scope even when the access token is narrowed.
            rec.scopes = s.to_vec();
            records.push(rec);
        }
        let refresh = refresh.map(|(r, _)| r);
        let resp = TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: access_ttl,
            refresh_token: refresh,
            scope: scopes_string(scopes),
        };
        (resp, records)
    }

    /// A new grant record for `client`.
    pub fn new_grant(
        &self,
        client: &ClientRecord,
        user: Option<&UserRecord>,
        grant_type: &str,
        scopes: &[String],
    ) -> GrantRecord {
        let now = Timestamp::now();
        GrantRecord {
            id: new_id("grant", now),
            workspace: self.workspace.clone(),
            client_id: client.id.clone(),
            user_id: user.map(|u| u.id.clone()),
            grant_type: grant_type.to_owned(),
            scopes: scopes.to_vec(),
            created_at: now,
            revoked_at: None,
        }
    }

    /// The live access token behind `token`, from the cache or storage. A storage failure is an error
    /// (callers answer 503), never "valid".
    pub async fn verify_access(&self, token: &str) -> Result<Option<Arc<ActiveToken>>, StoreError> {
        if !gatehouse_core::oauth::looks_like_access_token(self.namespace.as_str(), token) {
            return Ok(None);
        }
        let hash = KeyHash::of(token);
        let now = Timestamp::now();
        let cached = if self.verifier.cache_trusted() { self.cache.read().get(&hash).cloned() } else { None };
        let active = match cached {
            Some(a) => a,
            None => {
                let Some(record) = self.store.token_by_hash(&hash).await? else { return Ok(None) };
                if record.kind != TokenKind::Access {
                    return Ok(None);
                }
                let user = match &record.user_id {
                    Some(id) => match self.store.user_by_id(id).await? {
                        Some(u) => Some(u),
                        None => return Ok(None),
                    },
                    None => None,
                };
                // The client decides where the token acts; a token whose client is gone acts nowhere.
                let Some(client) = self.client(&record.client_id).await? else { return Ok(None) };
                if client.disabled_at.is_some() || client.workspace != self.workspace {
                    return Ok(None);
                }
                let scopes = ScopeSet::parse(record.scopes.iter().map(String::as_str)).unwrap_or_default();
                let a = Arc::new(ActiveToken {
                    record,
                    scopes,
                    user,
                    environment: client.environment,
                    app: client.app.clone(),
                });
                if a.is_live(now) {
                    let mut cache = self.cache.write();
                    if cache.len() > 500_000 {
                        cache.retain(|_, t| t.is_live(now));
                    }
                    cache.insert(hash, a.clone());
                }
                a
            }
        };
        Ok(active.is_live(now).then_some(active))
    }

    /// Drops tokens of a grant from this node's cache at once (other nodes follow the change feed).
    pub fn forget_grant(&self, grant_id: &str) {
        self.cache.write().retain(|_, t| t.record.grant_id != grant_id);
    }

    pub fn invalidate_user_client(&self, user_id: &str, client_id: &str) {
        self.cache
            .write()
            .retain(|_, t| !(t.record.client_id == client_id && t.record.user_id.as_deref() == Some(user_id)));
    }

    pub fn forget_token(&self, hash: &KeyHash) {
        self.cache.write().remove(hash);
    }

    /// Deletes codes and tokens that ended more than a day ago (refresh tokens are kept until then so
    /// a late replay is still recognised).
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        self.store.delete_expired_oauth(Timestamp::now().plus_millis(-86_400_000)).await
    }
}

impl ChangeSink for OAuthService {
    fn invalidate(&self, hash: &KeyHash) {
        self.cache.write().remove(hash);
        // A changed client may have a new environment or app; its cached tokens carry the old ones.
        if let Some(c) = self.clients.write().remove(hash) {
            self.cache.write().retain(|_, t| t.record.client_id != c.id);
        }
    }

    fn invalidate_all(&self) {
        self.cache.write().clear();
        self.clients.write().clear();
    }
}

fn last4(s: &str) -> String {
    s[s.len() - 4..].to_owned()
}

/// A client as the API shows it: never a secret or a hash.
pub fn describe_client(c: &ClientRecord) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "client_type": if c.confidential { "confidential" } else { "public" },
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes,
        "token_format": c.token_format,
        "environment": c.environment.as_str(),
        "app": c.app,
    })
}

/// A new random authorization code and its hash.
pub fn new_code() -> (String, KeyHash) {
    crate::sessions::new_token()
}

/// BASE64URL(SHA-256(s)), for tests and tools that build PKCE pairs.
pub fn s256(s: &str) -> String {
    B64.encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))
}
