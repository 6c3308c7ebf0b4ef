//! Server-side sessions (SPEC §3 "Sessions"): the cookie holds only a random 256-bit id; the store
//! keeps its SHA-256. Lookups are cached like keys (and dropped through the same change feed), and
//! activity is written in batches, so serving a request never writes to the database.
//!
//! A sign-in at the control plane creates a *login* session there; each app host then gets its own
//! child session through a one-time ticket (`/__gatehouse/callback`). Ending any session of a login
//! ends them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_store::{SessionRecord, Store, StoreError, UserRecord};
use parking_lot::{Mutex, RwLock};

use crate::verifier::{ChangeSink, Verifier};

/// Session lifetimes and cookie naming.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// A session ends this long after sign-in, whatever happens.
    pub absolute: Duration,
    /// A session ends after this long without a request.
    pub idle: Duration,
    /// The session cookie on app hosts.
    pub cookie_name: String,
    /// The login cookie on the control plane. A different name, because an app and the control plane
    /// may share a host name on different ports, and browsers do not separate cookies by port.
    pub cp_cookie_name: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute: Duration::from_secs(7 * 86_400),
            idle: Duration::from_secs(12 * 3600),
            cookie_name: "gatehouse_session".into(),
            cp_cookie_name: "gatehouse_cp_session".into(),
        }
    }
}

/// A live session with its user.
#[derive(Debug)]
pub struct ActiveSession {
    pub session: SessionRecord,
    pub user: UserRecord,
    last_seen_ms: AtomicI64,
}

/// Sessions, their cache and their pending activity.
pub struct Sessions {
    store: Arc<dyn Store>,
    pub cfg: SessionConfig,
    verifier: Verifier,
    cache: RwLock<HashMap<KeyHash, Arc<ActiveSession>>>,
    pending_seen: Mutex<HashMap<KeyHash, Arc<ActiveSession>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// A new random credential: its cookie/ticket text and the hash to store.
pub fn new_token() -> (String, KeyHash) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let text = B64.encode(bytes);
    let hash = KeyHash::of(&text);
    (text, hash)
}

/// What redeeming a ticket gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// A new app-host session: its cookie value.
    Session(String),
    /// Unknown, used, expired, for another host, or its login ended.
    Invalid,
    /// A valid ticket, but for a sign-in this browser did not start (login CSRF): spent, no session.
    OtherBrowser,
}

/// Activity is recorded at most this often per session, so a busy session does not churn the map.
const SEEN_GRANULARITY_MS: i64 = 30_000;

impl Sessions {
    pub fn new(store: Arc<dyn Store>, cfg: SessionConfig, verifier: Verifier) -> Arc<Self> {
        let me = Arc::new(Self {
            store,
            cfg,
            verifier: verifier.clone(),
            cache: RwLock::default(),
            pending_seen: Mutex::default(),
        });
        verifier.subscribe(me.clone());
        me
    }

    /// Starts a login session for `user` on `host` (the control plane); returns the cookie value.
    /// `groups` are the identity provider's groups claim (SPEC §15), which app access policies may
    /// name; a password sign-in passes none. Every app-host session of this login carries them.
    pub async fn create_login(
        &self,
        user: &UserRecord,
        host: &str,
        groups: Vec<String>,
    ) -> Result<(String, KeyHash), StoreError> {
        self.create(user.id.clone(), None, host, groups).await
    }

    async fn create(
        &self,
        user_id: String,
        parent: Option<(KeyHash, Timestamp)>,
        host: &str,
        groups: Vec<String>,
    ) -> Result<(String, KeyHash), StoreError> {
        let (cookie, hash) = new_token();
        let now = Timestamp::now();
        let absolute = now.plus_millis(self.cfg.absolute.as_millis() as i64);
        let record = SessionRecord {
            id_hash: hash,
            parent_hash: parent.map(|p| p.0),
            user_id,
            host: host.to_owned(),
            created_at: now,
            // A child never outlives its login.
            expires_at: parent.map_or(absolute, |p| p.1.min(absolute)),
            last_seen_at: now,
            revoked_at: None,
            groups,
        };
        self.store.insert_session(&record).await?;
        Ok((cookie, hash))
    }

    /// A one-time ticket (60 s) that lets `host` open a child session of the login `parent`, only in
    /// the browser whose state cookie hashes to `browser`.
    pub async fn issue_ticket(&self, parent: &KeyHash, host: &str, browser: &KeyHash) -> Result<String, StoreError> {
        let (ticket, hash) = new_token();
        self.store.insert_ticket(&hash, parent, host, browser, Timestamp::now().plus_millis(60_000)).await?;
        Ok(ticket)
    }

    /// Redeems a ticket on `host` in a browser holding `state_cookies` and opens the child session.
    /// The ticket is spent in every case; the binding is compared in constant time.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        host: &str,
        state_cookies: &[&str],
    ) -> Result<Redeemed, StoreError> {
        if ticket.len() != 43 {
            return Ok(Redeemed::Invalid);
        }
        let now = Timestamp::now();
        let Some((parent, browser)) = self.store.redeem_ticket(&KeyHash::of(ticket), host, now).await? else {
            return Ok(Redeemed::Invalid);
        };
        let bound = browser.is_some_and(|b| {
            state_cookies.iter().filter(|c| c.len() == 43).fold(false, |ok, c| ok | KeyHash::of(c).ct_eq(&b))
        });
        if !bound {
            return Ok(Redeemed::OtherBrowser);
        }
        let Some(login) = self.store.session_by_hash(&parent).await? else { return Ok(Redeemed::Invalid) };
        if login.revoked_at.is_some() || login.expires_at <= now {
            return Ok(Redeemed::Invalid);
        }
        let (cookie, _) = self.create(login.user_id, Some((parent, login.expires_at)), host, login.groups).await?;
        Ok(Redeemed::Session(cookie))
    }

    /// The live session behind a cookie value on `host`, or `None` (unknown, ended, idle, other host).
    /// A storage failure is an error: the caller answers 503, never "signed in".
    pub async fn lookup(&self, cookie: &str, host: &str) -> Result<Option<Arc<ActiveSession>>, StoreError> {
        if cookie.len() != 43 {
            return Ok(None);
        }
        let hash = KeyHash::of(cookie);
        let now = Timestamp::now();
        let cached = if self.verifier.cache_trusted() { self.cache.read().get(&hash).cloned() } else { None };
        let active = match cached {
            Some(a) => a,
            None => {
                let Some(session) = self.store.session_by_hash(&hash).await? else { return Ok(None) };
                let Some(user) = self.store.user_by_id(&session.user_id).await? else { return Ok(None) };
                let a = Arc::new(ActiveSession { last_seen_ms: AtomicI64::new(session.last_seen_at.0), session, user });
                let mut cache = self.cache.write();
                if cache.len() > 200_000 {
                    cache.clear();
                }
                cache.insert(hash, a.clone());
                a
            }
        };
        let s = &active.session;
        let last_seen = active.last_seen_ms.load(Ordering::Relaxed);
        let idle_end = last_seen + self.cfg.idle.as_millis() as i64;
        if s.revoked_at.is_some()
            || s.expires_at <= now
            || idle_end <= now.0
            || s.host != host
            || active.user.disabled_at.is_some()
        {
            return Ok(None);
        }
        if now.0 - last_seen >= SEEN_GRANULARITY_MS {
            active.last_seen_ms.store(now.0, Ordering::Relaxed);
            self.pending_seen.lock().insert(hash, active.clone());
        }
        Ok(Some(active))
    }

    /// Ends the session behind `cookie` and its whole login family.
    pub async fn end(&self, cookie: &str) -> Result<(), StoreError> {
        let ended = self.store.revoke_session_family(&KeyHash::of(cookie), Timestamp::now()).await?;
        let mut cache = self.cache.write();
        for h in ended {
            cache.remove(&h);
        }
        Ok(())
    }

    /// The user's live control-plane logins, newest first.
    pub async fn logins_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.store.user_logins(user_id, Timestamp::now()).await
    }

    /// Ends every session of the user but the login `keep` (and its app sessions), on every node within a poll.
    pub async fn end_others(&self, user_id: &str, keep: &KeyHash) -> Result<usize, StoreError> {
        let ended = self.store.revoke_other_sessions(user_id, keep, Timestamp::now()).await?;
        let mut cache = self.cache.write();
        for h in &ended {
            cache.remove(h);
        }
        Ok(ended.len())
    }

    /// Writes pending activity in one batch.
    pub async fn flush_activity(&self) {
        let pending: Vec<(KeyHash, Arc<ActiveSession>)> = self.pending_seen.lock().drain().collect();
        if pending.is_empty() {
            return;
        }
        let batch: Vec<(KeyHash, Timestamp)> =
            pending.iter().map(|(h, a)| (*h, Timestamp(a.last_seen_ms.load(Ordering::Relaxed)))).collect();
        if let Err(e) = self.store.touch_sessions(&batch).await {
            tracing::warn!(error = %e, sessions = batch.len(), "could not record session activity; will retry");
            self.pending_seen.lock().extend(pending);
        }
    }
}

impl ChangeSink for Sessions {
    fn invalidate(&self, hash: &KeyHash) {
        self.cache.write().remove(hash);
    }

    fn invalidate_all(&self) {
        self.cache.write().clear();
    }
}
