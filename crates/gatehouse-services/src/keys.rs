//! Key lifecycle operations shared by the management API and the CLI: validation, the actor's
//! authority, audit entries, and cache invalidation. No HTTP here.

use std::sync::Arc;

use crate::ids::new_id;
use crate::ids::new_key;
use gatehouse_core::apikey::ApiKey;
use gatehouse_core::authority::{bound_key, KeyRequest};
use gatehouse_core::id::looks_like;
use gatehouse_core::{
    DenyReason, Environment, IpAllowlist, KeyKind, KeyRecord, Namespace, RateLimitOverride, ScopeSet, SecretString,
    Timestamp,
};
use gatehouse_store::{AuditEntry, Cursor, KeyFilter, Page, PageRequest, Rolled, Seek, Store, StoreError};

use crate::audit::{audit_entry, Actor, AuditTarget, RequestMeta};
use crate::verifier::Verifier;
use crate::ServiceError;

/// Longest grace period a roll may give the old key.
pub const MAX_GRACE_SECS: i64 = 7 * 86_400;
const MAX_NAME_LEN: usize = 100;
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_BYTES: usize = 4096;

/// A deployment's default per-credential quota as a key override, rounded so it is never read as
/// more generous than it is (a sub-second window counts as a whole second).
pub fn default_as_override(q: gatehouse_core::ratelimit::Quota) -> RateLimitOverride {
    RateLimitOverride { limit: q.limit, window_secs: u32::try_from((q.window_ms / 1000).max(1)).unwrap_or(u32::MAX) }
}

/// The fields of a new key, as given by a caller; validated by `KeyService::create`.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: Option<String>,
    pub kind: KeyKind,
    pub environment: Environment,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub app: Option<String>,
    pub rate_limit: Option<RateLimitOverride>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Key lifecycle on one workspace.
#[derive(Clone, Debug)]
pub struct KeyService {
    store: Arc<dyn Store>,
    namespace: Namespace,
    workspace: String,
    cache: Option<Verifier>,
    /// What a key without an override is held to: the ceiling for rate limits a key hands out.
    default_rate_limit: Option<RateLimitOverride>,
}

impl KeyService {
    pub fn new(store: Arc<dyn Store>, namespace: Namespace, workspace: String) -> Self {
        Self { store, namespace, workspace, cache: None, default_rate_limit: None }
    }

    /// The deployment's default rate limit, so a key held to it cannot mint a faster one.
    pub fn with_default_rate_limit(mut self, limit: RateLimitOverride) -> Self {
        self.default_rate_limit = Some(limit);
        self
    }

    /// Drops keys from this node's cache at once when they are revoked or rolled.
    pub fn with_cache(mut self, verifier: Verifier) -> Self {
        self.cache = Some(verifier);
        self
    }

    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    fn audit(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        key: &KeyRecord,
        details: serde_json::Value,
    ) -> AuditEntry {
        let target = AuditTarget { kind: "api_key", id: &key.id, environment: Some(key.environment) };
        audit_entry(&self.workspace, &actor.id(), meta, action, target, details)
    }

    /// Validates, authorizes and stores a new key; returns it with its secret (shown once).
    pub async fn create(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        req: NewKey,
    ) -> Result<(KeyRecord, SecretString), ServiceError> {
        let now = Timestamp::now();
        let scopes = validate_scopes(req.kind, &req.scopes)?;
        let ip_allowlist = IpAllowlist::parse(req.ip_allowlist.iter().map(String::as_str))
            .map_err(|e| invalid(format!("ip_allowlist: {e}")))?;
        if let Some(exp) = req.expires_at {
            if exp <= now {
                return Err(invalid(format!("expires_at ({exp}) is in the past; give a future time")));
            }
        }
        let name = validate_name(req.name.as_deref())?;
        if let Some(app) = &req.app {
            validate_app(app)?;
        }
        if let Some(rl) = &req.rate_limit {
            validate_rate_limit(rl)?;
        }
        validate_metadata(&req.metadata)?;
        let mut req = req;
        let mut ip_allowlist = ip_allowlist;
        // Authority never grows (SPEC §11): a key-backed actor's limits bound the new key, and
        // limits the request leaves out are inherited.
        if let Some(parent) = actor.authority(self.default_rate_limit) {
            let asked = KeyRequest {
                environment: req.environment,
                kind: req.kind,
                scopes: &scopes,
                app: req.app.as_deref(),
                ip_allowlist: &ip_allowlist,
                expires_at: req.expires_at,
                rate_limit: req.rate_limit,
            };
            let b = bound_key(&parent, &asked).map_err(|e| ServiceError::Denied(DenyReason::ExceedsAuthority(e)))?;
            req.app = b.app;
            req.expires_at = b.expires_at;
            req.rate_limit = b.rate_limit;
            ip_allowlist = b.ip_allowlist;
        }
        let (secret, minted) = self.mint(req.kind, req.environment, now, actor);
        let record = KeyRecord {
            name,
            workspace: self.workspace.clone(),
            environment: req.environment,
            kind: req.kind,
            scopes,
            ip_allowlist,
            expires_at: req.expires_at,
            app: req.app,
            rate_limit: req.rate_limit,
            metadata: req.metadata,
            ..minted
        };
        let audit = self.audit(actor, meta, "key.created", &record, describe(&record));
        self.store.insert_key(&record, &audit).await?;
        Ok((record, secret))
    }

    /// A fresh secret and a record carrying its identity (id, hash, prefix, last 4, creation); other
    /// settings are empty for the caller to fill in.
    fn mint(
        &self,
        kind: KeyKind,
        environment: Environment,
        now: Timestamp,
        actor: &Actor,
    ) -> (SecretString, KeyRecord) {
        let secret = new_key(&self.namespace, kind, environment);
        let parsed = ApiKey::parse(&self.namespace, secret.expose()).expect("a generated key parses");
        let record = KeyRecord {
            id: new_id("key", now),
            hash: parsed.hash(),
            name: String::new(),
            workspace: self.workspace.clone(),
            environment,
            kind,
            scopes: ScopeSet::default(),
            ip_allowlist: IpAllowlist::default(),
            expires_at: None,
            app: None,
            rate_limit: None,
            metadata: Default::default(),
            display_prefix: parsed.display_prefix(),
            last4: parsed.last4().to_owned(),
            created_at: now,
            created_by: actor.id(),
            last_used_at: None,
            revoked_at: None,
            rolled_to: None,
        };
        (secret, record)
    }

    /// The actor may act in `env` and may not hand out more than it holds.
    fn authorize(&self, actor: &Actor, env: Environment, scopes: &ScopeSet) -> Result<(), ServiceError> {
        let Actor::Key(k) = actor else { return Ok(()) };
        if k.environment != env {
            return Err(ServiceError::Denied(DenyReason::EnvironmentMismatch));
        }
        let held = k.effective_scopes();
        if !held.covers(scopes) {
            let missing = scopes
                .iter()
                .find(|s| !held.grants(s) || s.is_wildcard())
                .cloned()
                .unwrap_or_else(|| gatehouse_core::Scope::parse("*").expect("wildcard parses"));
            return Err(ServiceError::Denied(DenyReason::InsufficientScope(missing)));
        }
        Ok(())
    }

    /// Looks a key up for this actor; keys of another environment look absent.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<KeyRecord, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("No API key with id `{}`.", shown(id)));
        if !looks_like("key", id) {
            return Err(not_found());
        }
        let record = self.store.key_by_id(&self.workspace, id).await?.ok_or_else(not_found)?;
        if let Actor::Key(k) = actor {
            if k.environment != record.environment {
                return Err(not_found());
            }
        }
        Ok(record)
    }

    pub async fn list(
        &self,
        actor: &Actor,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<KeyRecord>, ServiceError> {
        let environment = match actor {
            Actor::Key(k) => Some(k.environment),
            Actor::Cli | Actor::User(_) => environment,
        };
        if let Some(after) = &page.starting_after {
            if !looks_like("key", after) {
                return Err(invalid(format!("starting_after `{}` is not a key id", shown(after))));
            }
        }
        let filter = KeyFilter { workspace: self.workspace.clone(), environment, ..Default::default() };
        Ok(self.store.list_keys(&filter, page).await?)
    }

    /// One page of the keys `filter` matches, from `seek`'s cursor in either direction (the
    /// dashboard's list). The workspace is this service's; a key actor sees its own environment only.
    pub async fn search(&self, actor: &Actor, filter: KeyFilter, seek: &Seek) -> Result<Page<KeyRecord>, ServiceError> {
        let environment = match actor {
            Actor::Key(k) => Some(k.environment),
            Actor::Cli | Actor::User(_) => filter.environment,
        };
        if let Some(Cursor::After(id) | Cursor::Before(id)) = &seek.cursor {
            if !looks_like("key", id) {
                return Err(invalid(format!("the page cursor `{}` is not a key id", shown(id))));
            }
        }
        let filter = KeyFilter { workspace: self.workspace.clone(), environment, ..filter };
        Ok(self.store.seek_keys(&filter, seek).await?)
    }

    /// Revokes at once; revoking twice is not an error and keeps the first time.
    pub async fn revoke(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: &str,
        reason: Option<String>,
    ) -> Result<KeyRecord, ServiceError> {
        let target = self.get(actor, id).await?;
        self.authorize(actor, target.environment, &target.effective_scopes())?;
        if let Some(r) = &reason {
            if r.chars().count() > 500 {
                return Err(invalid("reason is longer than 500 characters"));
            }
        }
        let mut details = describe(&target);
        details["reason"] = reason.into();
        let audit = self.audit(actor, meta, "key.revoked", &target, details);
        let revoked = self
            .store
            .revoke_key(&self.workspace, id, Timestamp::now(), &audit)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("No API key with id `{}`.", shown(id))))?;
        if let Some(cache) = &self.cache {
            cache.invalidate(&revoked.hash);
        }
        Ok(revoked)
    }

    /// Issues a successor with the same settings; the old key expires after `grace_secs` (or its own expiry if sooner).
    pub async fn roll(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: &str,
        grace_secs: i64,
    ) -> Result<(Rolled, SecretString), ServiceError> {
        if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
            return Err(invalid(format!("grace period must be between 0 and {MAX_GRACE_SECS} seconds (7 days)")));
        }
        let old = self.get(actor, id).await?;
        // The successor has the old key's settings exactly, so the actor must be able to create it.
        if let Some(parent) = actor.authority(self.default_rate_limit) {
            let asked = KeyRequest {
                environment: old.environment,
                kind: old.kind,
                scopes: &old.scopes,
                app: old.app.as_deref(),
                ip_allowlist: &old.ip_allowlist,
                expires_at: old.expires_at,
                rate_limit: old.rate_limit,
            };
            let b = bound_key(&parent, &asked).map_err(|e| ServiceError::Denied(DenyReason::ExceedsAuthority(e)))?;
            let same = b.app == old.app
                && b.ip_allowlist == old.ip_allowlist
                && b.expires_at == old.expires_at
                && b.rate_limit == old.rate_limit;
            if !same {
                return Err(ServiceError::Denied(DenyReason::ExceedsAuthority(gatehouse_core::authority::Excess {
                    dimension: gatehouse_core::authority::Dimension::Scopes,
                    message: "This key has fewer limits than the credential rolling it (app, IP allowlist, expiry or rate limit); roll it with a credential that has at least its authority.".into(),
                })));
            }
        }
        let now = Timestamp::now();
        if old.revoked_at.is_some() {
            return Err(ServiceError::Conflict("The key is revoked; create a new key instead of rolling it.".into()));
        }
        if old.is_expired(now) {
            return Err(ServiceError::Conflict("The key has expired; create a new key instead of rolling it.".into()));
        }
        let (secret, minted) = self.mint(old.kind, old.environment, now, actor);
        // Same settings as the old key; fresh identity, secret and history.
        let new = KeyRecord {
            id: minted.id,
            hash: minted.hash,
            display_prefix: minted.display_prefix,
            last4: minted.last4,
            created_at: minted.created_at,
            created_by: minted.created_by,
            last_used_at: None,
            revoked_at: None,
            rolled_to: None,
            ..old.clone()
        };
        let grace_end = now.plus_millis(grace_secs * 1000);
        let old_expires_at = old.expires_at.map_or(grace_end, |e| e.min(grace_end));
        let details = serde_json::json!({
            "new_key_id": new.id,
            "grace_period_secs": grace_secs,
            "old_expires_at": old_expires_at.unix_seconds(),
        });
        let audit = self.audit(actor, meta, "key.rolled", &old, details);
        let rolled = self
            .store
            .roll_key(&self.workspace, id, &new, old_expires_at, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => ServiceError::Conflict(m),
                other => other.into(),
            })?
            .ok_or_else(|| ServiceError::NotFound(format!("No API key with id `{}`.", shown(id))))?;
        if let Some(cache) = &self.cache {
            cache.invalidate(&rolled.old.hash);
        }
        Ok((rolled, secret))
    }
}

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(m.into())
}

/// Ids echoed in messages are clipped so junk input cannot make long or multi-line messages.
fn shown(s: &str) -> String {
    s.chars().take(40).filter(|c| !c.is_control()).collect()
}

/// Non-secret facts about a key, for audit entries.
fn describe(k: &KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "name": k.name,
        "kind": k.kind.as_str(),
        "environment": k.environment.as_str(),
        "display_prefix": k.display_prefix,
        "scopes": k.scopes.to_strings(),
        "ip_allowlist": k.ip_allowlist.to_strings(),
        "expires_at": k.expires_at.map(|t| t.unix_seconds()),
        "app": k.app,
    })
}

fn validate_scopes(kind: KeyKind, scopes: &[String]) -> Result<ScopeSet, ServiceError> {
    let set = ScopeSet::parse(scopes.iter().map(String::as_str)).map_err(|e| invalid(format!("scopes: {e}")))?;
    match kind {
        KeyKind::Secret if !set.is_empty() => Err(invalid(
            "scopes: an sk key holds every scope of its environment; create an rk (restricted) key to limit scopes",
        )),
        KeyKind::Restricted if set.is_empty() => {
            Err(invalid("scopes: a restricted (rk) key needs at least one scope, e.g. [\"orders:read\"]"))
        }
        _ => Ok(set),
    }
}

fn validate_name(name: Option<&str>) -> Result<String, ServiceError> {
    let name = name.unwrap_or("").trim();
    if name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(format!("name is longer than {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name may not contain control characters"));
    }
    Ok(name.to_owned())
}

/// App names follow Spacefile micro/app naming: letters, digits, `_` and `-`.
pub(crate) fn validate_app(app: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&app.len())
        && app.as_bytes()[0].is_ascii_alphanumeric()
        && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "app `{}` must be 1-64 letters, digits, `_` or `-`, starting with a letter or digit",
            shown(app)
        )))
    }
}

fn validate_rate_limit(rl: &RateLimitOverride) -> Result<(), ServiceError> {
    if !(1..=10_000_000).contains(&rl.limit) {
        return Err(invalid("rate_limit.limit must be between 1 and 10000000"));
    }
    if !(1..=86_400).contains(&rl.window_secs) {
        return Err(invalid("rate_limit.window_secs must be between 1 and 86400"));
    }
    Ok(())
}

fn validate_metadata(m: &serde_json::Map<String, serde_json::Value>) -> Result<(), ServiceError> {
    if m.len() > MAX_METADATA_KEYS {
        return Err(invalid(format!("metadata holds at most {MAX_METADATA_KEYS} keys")));
    }
    if serde_json::Value::Object(m.clone()).to_string().len() > MAX_METADATA_BYTES {
        return Err(invalid(format!("metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")));
    }
    Ok(())
}
