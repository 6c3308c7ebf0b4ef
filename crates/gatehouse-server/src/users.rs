//! Users: Argon2id password hashing, the owner bootstrap (SPEC §1), and sign-in checks with
//! throttling per account and per IP. Unknown emails cost the same as wrong passwords.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use gatehouse_core::id::new_id;
use gatehouse_core::Timestamp;
use gatehouse_store::{AuditEntry, Store, StoreError, UserChange, UserRecord};
use parking_lot::Mutex;

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing with valid params").to_string()
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The outcome of a sign-in attempt.
#[derive(Debug)]
pub enum SignIn {
    Ok(UserRecord),
    /// Wrong email or password (never says which).
    Wrong,
    /// Too many failures; retry after this long.
    Throttled(Duration),
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// Failed attempts allowed before a wait is imposed.
const FREE_ATTEMPTS: u32 = 5;
/// Failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Users of one workspace.
pub struct Users {
    store: Arc<dyn Store>,
    workspace: String,
    failures: Mutex<HashMap<String, Failures>>,
    dummy_hash: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("workspace", &self.workspace).finish_non_exhaustive()
    }
}

/// Normalizes an email for lookup: trimmed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks a new password: long enough to resist guessing, not absurdly long.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 10 {
        return Err("the password must be at least 10 characters".into());
    }
    if n > 1024 {
        return Err("the password must be at most 1024 characters".into());
    }
    Ok(())
}

impl Users {
    pub fn new(store: Arc<dyn Store>, workspace: String) -> Self {
        Self { store, workspace, failures: Mutex::default(), dummy_hash: hash_password("not a real password, for timing only") }
    }

    pub async fn has_any(&self) -> Result<bool, StoreError> {
        Ok(self.store.count_users(&self.workspace).await? > 0)
    }

    /// Creates the owner account. Fails if the email exists.
    pub async fn create_owner(&self, email: &str, password: &str, actor: &str) -> Result<UserRecord, String> {
        self.create(email, password, "owner", actor).await
    }

    /// Creates a user with `role` (`owner` or `member`). Fails if the email exists.
    pub async fn create(&self, email: &str, password: &str, role: &str, actor: &str) -> Result<UserRecord, String> {
        let email = normalize_email(email);
        if !email.contains('@') || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{}` is not an email address", email.chars().take(254).collect::<String>()));
        }
        if !matches!(role, "owner" | "member") {
            return Err(format!("the role must be owner or member, not `{role}`"));
        }
        check_password(password)?;
        let now = Timestamp::now();
        let user = UserRecord {
            id: new_id("usr", now.0),
            workspace: self.workspace.clone(),
            email: email.clone(),
            password_hash: hash_password(password),
            role: role.into(),
            created_at: now,
            disabled_at: None,
        };
        let audit = self.audit(actor, "user.created", &user.id, serde_json::json!({"email": email, "role": role}));
        self.store.insert_user(&user, &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => format!("a user with email {email} already exists"),
            other => other.to_string(),
        })?;
        Ok(user)
    }

    fn audit(&self, actor: &str, action: &str, user_id: &str, details: serde_json::Value) -> AuditEntry {
        let now = Timestamp::now();
        AuditEntry {
            id: new_id("aud", now.0),
            workspace: self.workspace.clone(),
            environment: None,
            at: now,
            actor: actor.to_owned(),
            action: action.into(),
            target_type: "user".into(),
            target_id: user_id.to_owned(),
            request_id: None,
            ip: None,
            details,
        }
    }

    /// Every user of the workspace, oldest first.
    pub async fn list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.store.list_users(&self.workspace).await
    }

    /// A user of this workspace by id (`usr_…`) or email.
    pub async fn find(&self, id_or_email: &str) -> Result<Option<UserRecord>, StoreError> {
        let found = if id_or_email.contains('@') {
            self.store.user_by_email(&self.workspace, &normalize_email(id_or_email)).await?
        } else {
            self.store.user_by_id(id_or_email).await?
        };
        Ok(found.filter(|u| u.workspace == self.workspace))
    }

    async fn find_or_fail(&self, id_or_email: &str) -> Result<UserRecord, String> {
        self.find(id_or_email)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no user `{}`", id_or_email.chars().take(254).collect::<String>()))
    }

    async fn change(&self, user: &UserRecord, change: UserChange, action: &str, actor: &str) -> Result<UserRecord, String> {
        let audit = self.audit(actor, action, &user.id, serde_json::json!({"email": user.email}));
        self.store.update_user(&user.id, &change, &audit).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no user `{}`", user.id))
    }

    /// Disables a user: they cannot sign in, and every session they have ends (on every node within a
    /// poll). The last enabled owner cannot be disabled: nobody could sign in to manage the deployment.
    pub async fn disable(&self, id_or_email: &str, actor: &str) -> Result<UserRecord, String> {
        let user = self.find_or_fail(id_or_email).await?;
        if user.role == "owner" && user.disabled_at.is_none() {
            let owners = self.list().await.map_err(|e| e.to_string())?;
            if !owners.iter().any(|u| u.id != user.id && u.role == "owner" && u.disabled_at.is_none()) {
                return Err(format!("{} is the only enabled owner; create or enable another owner first", user.email));
            }
        }
        self.change(&user, UserChange::Disable { at: Timestamp::now() }, "user.disabled", actor).await
    }

    /// Lets a disabled user sign in again (their ended sessions stay ended).
    pub async fn enable(&self, id_or_email: &str, actor: &str) -> Result<UserRecord, String> {
        let user = self.find_or_fail(id_or_email).await?;
        self.change(&user, UserChange::Enable, "user.enabled", actor).await
    }

    /// Sets a new password and ends every session of the user.
    pub async fn set_password(&self, id_or_email: &str, password: &str, actor: &str) -> Result<UserRecord, String> {
        check_password(password)?;
        let user = self.find_or_fail(id_or_email).await?;
        let hash = hash_password(password);
        self.change(&user, UserChange::Password { hash, at: Timestamp::now() }, "user.password_changed", actor).await
    }

    fn wait_for(&self, key: &str) -> Option<Duration> {
        let f = self.failures.lock();
        let entry = f.get(key)?;
        let last = entry.last?;
        if last.elapsed() > FORGET_AFTER || entry.count < FREE_ATTEMPTS {
            return None;
        }
        // 1 s after the fifth failure, doubling, at most 15 minutes.
        let wait = Duration::from_secs(1u64 << (entry.count - FREE_ATTEMPTS).min(10)).min(FORGET_AFTER);
        wait.checked_sub(last.elapsed())
    }

    fn record(&self, key: String, failed: bool) {
        let mut f = self.failures.lock();
        if f.len() > 100_000 {
            f.retain(|_, v| v.last.is_some_and(|l| l.elapsed() < FORGET_AFTER));
        }
        if failed {
            let e = f.entry(key).or_default();
            if e.last.is_some_and(|l| l.elapsed() > FORGET_AFTER) {
                e.count = 0;
            }
            e.count += 1;
            e.last = Some(Instant::now());
        } else {
            f.remove(&key);
        }
    }

    /// Checks an email and password, throttled per account and per client IP.
    pub async fn sign_in(&self, email: &str, password: &str, ip: Option<IpAddr>) -> Result<SignIn, StoreError> {
        let email = normalize_email(email);
        let account_key = format!("account:{email}");
        let ip_key = ip.map(|i| format!("ip:{i}"));
        let waits = [Some(account_key.as_str()), ip_key.as_deref()].into_iter().flatten().filter_map(|k| self.wait_for(k));
        if let Some(wait) = waits.max() {
            return Ok(SignIn::Throttled(wait));
        }
        let user = self.store.user_by_email(&self.workspace, &email).await?;
        let (hash, user) = match user {
            Some(u) if u.disabled_at.is_none() => (u.password_hash.clone(), Some(u)),
            _ => (self.dummy_hash.clone(), None),
        };
        // Argon2 is CPU-heavy: keep it off the async workers.
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.unwrap_or(false);
        match (ok, user) {
            (true, Some(u)) => {
                self.record(account_key, false);
                Ok(SignIn::Ok(u))
            }
            _ => {
                self.record(account_key, true);
                if let Some(k) = ip_key {
                    self.record(k, true);
                }
                Ok(SignIn::Wrong)
            }
        }
    }
}
