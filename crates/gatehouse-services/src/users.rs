//! Users: Argon2id password hashing, the owner bootstrap (SPEC §1), and sign-in checks with
//! throttling per account and per client address (SPEC §11 "Sign-in"). Unknown emails cost the same
//! as wrong passwords.
//!
//! The throttle lives in storage, so a restart keeps a lock and nodes sharing a database count
//! together; an attempt is reserved there *before* its password is checked, so a burst of concurrent
//! guesses spends the allowance exactly as the same guesses one after another would. Password hashing
//! runs behind a semaphore measured in Argon2 memory (KiB): at most `max_concurrent_hashes` default-cost
//! hashes at once, and a caller that cannot get a permit within `hash_wait` is told to come back later.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Actor;
use crate::ids::new_id;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use gatehouse_core::authority::{role_may_delegate, MANAGEMENT_RESOURCES};
use gatehouse_core::{KeyHash, Scope, Timestamp};
use gatehouse_store::{AuditEntry, Reservation, Store, StoreError, ThrottlePolicy, UserChange, UserRecord};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing with valid params").to_string()
}

/// Checks `password` against a PHC string, computing Argon2 in `blocks` (grown as needed and kept by
/// the caller for the next check, so memory is allocated once per hashing slot, not per attempt).
fn verify_password(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) =
        (Algorithm::try_from(h.algorithm), Params::try_from(&h), h.salt, h.hash)
    else {
        return false;
    };
    let Ok(version) = h.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    blocks.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..]).is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Hashes a new password like `hash_password`, in the caller's `blocks`.
fn hash_password_in(password: &str, blocks: &mut Vec<Block>) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let mut salt_buf = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_buf).expect("a generated salt decodes");
    blocks.resize(params.block_count(), Block::default());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::default()
        .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, &mut blocks[..])
        .expect("argon2 hashing with valid params");
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().expect("default params encode"),
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).expect("32-byte output")),
    };
    phc.to_string()
}

/// Memory (KiB) one check of `phc` takes: its `m` parameter, or the default cost when unreadable.
fn memory_cost_kib(phc: &str) -> u32 {
    PasswordHash::new(phc).ok().and_then(|h| h.params.get_decimal("m")).unwrap_or(argon2::Params::DEFAULT_M_COST)
}

/// Sign-in limits (config section `[sign_in]`).
#[derive(Clone, Debug)]
pub struct SignInConfig {
    /// Failed attempts per account and per client address before waits are imposed.
    pub free_attempts: u32,
    /// The longest wait (it doubles from 1 s per further failure).
    pub max_wait: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
    /// Password hashes computed at once; memory is this × the Argon2 cost (19 MiB by default).
    pub max_concurrent_hashes: u32,
    /// How long a sign-in waits for a hashing slot before it is answered 503.
    pub hash_wait: Duration,
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            max_wait: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(15 * 60),
            max_concurrent_hashes: default_hash_concurrency(),
            hash_wait: Duration::from_secs(2),
        }
    }
}

/// One hash per CPU (Argon2 is CPU-bound: more at once only adds memory), at most 8.
pub fn default_hash_concurrency() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8) as u32)
}

impl SignInConfig {
    fn policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            free_attempts: self.free_attempts,
            max_wait_ms: self.max_wait.as_millis() as i64,
            forget_after_ms: self.forget_after.as_millis() as i64,
        }
    }
}

/// The outcome of a sign-in attempt.
#[derive(Debug)]
pub enum SignIn {
    Ok(UserRecord),
    /// Wrong email or password (never says which).
    Wrong,
    /// Too many failures; retry after this long. The password was not checked.
    Throttled(Duration),
    /// Every hashing slot stayed busy; retry shortly. Nothing was counted.
    Busy,
}

/// The hashing semaphore and what it has done (for metrics and tests).
struct Hashing {
    permits: Arc<Semaphore>,
    total_kib: u32,
    checks: AtomicU64,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// Argon2 working memory of idle slots, reused while hashes keep coming (at most
    /// `max_concurrent_hashes` default-cost buffers) and dropped `IDLE_RELEASE` after the last one.
    buffers: parking_lot::Mutex<Vec<Vec<Block>>>,
    max_buffers: usize,
}

impl std::fmt::Debug for Hashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing")
            .field("total_kib", &self.total_kib)
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

/// How long hashing buffers are kept after the last hash.
const IDLE_RELEASE: Duration = Duration::from_secs(10);

/// A hashing slot could not be had in time.
#[derive(Debug)]
pub struct HashBusy;

/// Why a change to a user (create, disable, enable, new password) did not happen. The boundary picks
/// the answer by variant: bad input and rule refusals are the caller's to fix, `Busy` and a storage
/// failure are not, and no message here quotes a password.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The email is not an email address (quoted, at most 254 characters).
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    /// The role is not one of [`ROLES`].
    #[error("the role must be owner, admin, developer, viewer or member, not `{0}`")]
    InvalidRole(String),
    /// The actor's own authority does not reach this user or this role (an admin and an owner, a key
    /// and a role with more than the key holds).
    #[error("{0}")]
    NotAllowed(String),
    /// The set-password link is unknown, used or expired.
    #[error("this link is not valid: it was used already, has expired, or was never issued")]
    InvalidLink,
    /// The new password breaks the length rule.
    #[error(transparent)]
    Password(#[from] PasswordRule),
    /// Another user already has this email.
    #[error("a user with email {0} already exists")]
    EmailTaken(String),
    /// No user of this workspace has this id or email.
    #[error("no user `{0}`")]
    NoSuchUser(String),
    /// Disabling this owner or taking their role would leave nobody able to manage the deployment.
    #[error("{0} is the only enabled owner; create or enable another owner first")]
    LastOwner(String),
    /// Every password-hashing slot stayed busy; nothing was changed.
    #[error("the server is busy hashing passwords; try again shortly")]
    Busy,
    /// Storage failed (unreachable, or an error of its own); nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new password that breaks the length rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    #[error("the password must be at least 10 characters")]
    TooShort,
    #[error("the password must be at most 1024 characters")]
    TooLong,
}

/// The roles of SPEC §12, from the most to the least authority (the list access policies name, too).
pub const ROLES: [&str; 5] = gatehouse_core::access::ROLES;

/// Whether `actor` may act on a user of `role` — create one, change, disable, enable or reset them,
/// or give someone that role. The shell may do anything; an owner too; an admin everything except
/// owners; other roles manage no users. A key is bounded like everywhere else (SPEC §11): never an
/// owner, and only a role whose management access the key holds itself, so a key cannot make a
/// person with more authority than it has.
pub fn actor_may_manage(actor: &Actor, role: &str) -> bool {
    match actor {
        Actor::Cli => true,
        Actor::User(u) => {
            u.disabled_at.is_none()
                && match u.role.as_str() {
                    "owner" => true,
                    "admin" => role != "owner",
                    _ => false,
                }
        }
        Actor::Key(k) => {
            role != "owner"
                && (!role_may_delegate(role, &Scope::parse("*").expect("wildcard"))
                    || k.holds(&Scope::parse("*").expect("wildcard")))
                && MANAGEMENT_RESOURCES.iter().flat_map(|r| [format!("{r}:read"), format!("{r}:write")]).all(|s| {
                    let scope = Scope::parse(&s).expect("management scope");
                    !role_may_delegate(role, &scope) || k.holds(&scope)
                })
        }
    }
}

fn refuse(actor: &Actor, role: &str) -> UserError {
    let who = match actor {
        Actor::Key(_) => "this key",
        _ => "your role",
    };
    UserError::NotAllowed(format!("{who} cannot manage {role} users or give anyone that role"))
}

/// How long a set-password link is valid by default.
pub const PASSWORD_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Users of one workspace.
pub struct Users {
    store: Arc<dyn Store>,
    workspace: String,
    cfg: SignInConfig,
    hashing: Arc<Hashing>,
    last_prune_ms: AtomicI64,
    dummy_hash: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("workspace", &self.workspace).field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// The throttle subject of an account: the email's hash, so no typed text is stored.
fn account_subject(email: &str) -> String {
    format!("account:{}", hex::encode(Sha256::digest(email.as_bytes())))
}

/// Normalizes an email for lookup: trimmed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A new random password to show once: 24 characters of a 54-letter alphabet without look-alikes
/// (~138 bits).
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..24).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Checks a new password: long enough to resist guessing, not absurdly long.
pub fn check_password(password: &str) -> Result<(), PasswordRule> {
    let n = password.chars().count();
    if n < 10 {
        return Err(PasswordRule::TooShort);
    }
    if n > 1024 {
        return Err(PasswordRule::TooLong);
    }
    Ok(())
}

impl Users {
    pub fn new(store: Arc<dyn Store>, workspace: String) -> Self {
        Self::with_config(store, workspace, SignInConfig::default())
    }

    pub fn with_config(store: Arc<dyn Store>, workspace: String, cfg: SignInConfig) -> Self {
        let total_kib = cfg.max_concurrent_hashes.max(1).saturating_mul(argon2::Params::DEFAULT_M_COST);
        let hashing = Arc::new(Hashing {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            checks: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            buffers: parking_lot::Mutex::default(),
            max_buffers: cfg.max_concurrent_hashes.max(1) as usize,
        });
        let dummy_hash = hash_password("not a real password, for timing only");
        Self { store, workspace, cfg, hashing, last_prune_ms: AtomicI64::new(0), dummy_hash }
    }

    /// Passwords checked (Argon2 evaluations) since start.
    pub fn password_checks(&self) -> u64 {
        self.hashing.checks.load(Ordering::Relaxed)
    }

    /// Argon2 buffers kept for reuse right now (none once hashing has been idle for a while).
    pub fn hash_buffers_held(&self) -> usize {
        self.hashing.buffers.lock().len()
    }

    /// The most password hashes that ran at the same time since start.
    pub fn peak_concurrent_hashes(&self) -> usize {
        self.hashing.peak.load(Ordering::Relaxed)
    }

    /// Runs Argon2 (`f`, costing `kib` of memory) on the blocking pool once a slot is free. The slot is
    /// held by the blocking task itself, so a client that goes away cannot free it early.
    async fn hash_slot<T: Send + 'static>(
        &self,
        kib: u32,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashBusy> {
        let want = kib.clamp(1, self.hashing.total_kib);
        let acquire = self.hashing.permits.clone().acquire_many_owned(want);
        let permit = match tokio::time::timeout(self.cfg.hash_wait, acquire).await {
            Ok(Ok(p)) => p,
            _ => return Err(HashBusy),
        };
        let hashing = self.hashing.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = hashing.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            hashing.peak.fetch_max(now, Ordering::Relaxed);
            let generation = hashing.checks.fetch_add(1, Ordering::Relaxed) + 1;
            let mut blocks = hashing.buffers.lock().pop().unwrap_or_default();
            let out = f(&mut blocks);
            let still_running = hashing.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
            {
                // The next hash reuses this buffer instead of allocating its own (allocating 19 MiB per
                // attempt on many threads fragments the heap far beyond cap × cost). A hash with a larger
                // cost than ours does not leave its larger buffer behind.
                let mut pool = hashing.buffers.lock();
                if pool.len() < hashing.max_buffers && blocks.capacity() <= argon2::Params::DEFAULT_M_COST as usize {
                    pool.push(blocks);
                }
            }
            if still_running == 0 {
                // Once no hash has run for a while, give the memory back: an idle server keeps none.
                let hashing = hashing.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(IDLE_RELEASE).await;
                    if hashing.in_flight.load(Ordering::Relaxed) == 0
                        && hashing.checks.load(Ordering::Relaxed) == generation
                    {
                        hashing.buffers.lock().clear();
                    }
                });
            }
            out
        })
        .await
        .map_err(|_| HashBusy)
    }

    /// Hashes a new password under the same cap as sign-ins.
    async fn hash_new(&self, password: &str) -> Result<String, UserError> {
        let pw = password.to_owned();
        self.hash_slot(argon2::Params::DEFAULT_M_COST, move |blocks| hash_password_in(&pw, blocks))
            .await
            .map_err(|HashBusy| UserError::Busy)
    }

    pub async fn has_any(&self) -> Result<bool, StoreError> {
        Ok(self.store.count_users(&self.workspace).await? > 0)
    }

    /// Creates the owner account. Fails if the email exists.
    pub async fn create_owner(&self, email: &str, password: &str, actor: &str) -> Result<UserRecord, UserError> {
        self.create(email, password, "owner", actor).await
    }

    /// Creates a user with `role` (one of [`ROLES`]) as the shell does (no authority check; `actor`
    /// is what the audit log names). Fails if the email exists.
    pub async fn create(&self, email: &str, password: &str, role: &str, actor: &str) -> Result<UserRecord, UserError> {
        let email = normalize_email(email);
        if !email.contains('@') || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UserError::InvalidEmail(email.chars().take(254).collect()));
        }
        if !ROLES.contains(&role) {
            return Err(UserError::InvalidRole(role.chars().take(64).collect()));
        }
        check_password(password)?;
        let now = Timestamp::now();
        let user = UserRecord {
            id: new_id("usr", now),
            workspace: self.workspace.clone(),
            email: email.clone(),
            password_hash: self.hash_new(password).await?,
            role: role.into(),
            created_at: now,
            disabled_at: None,
        };
        let audit = self.audit(actor, "user.created", &user.id, serde_json::json!({"email": email, "role": role}));
        self.store.insert_user(&user, &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => UserError::EmailTaken(email),
            other => UserError::Store(other),
        })?;
        Ok(user)
    }

    fn audit(&self, actor: &str, action: &str, user_id: &str, details: serde_json::Value) -> AuditEntry {
        let now = Timestamp::now();
        AuditEntry {
            id: new_id("aud", now),
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
        // No user has such an id or email; PostgreSQL would refuse a NUL byte as an error.
        if id_or_email.len() > 320 || id_or_email.chars().any(char::is_control) {
            return Ok(None);
        }
        let found = if id_or_email.contains('@') {
            self.store.user_by_email(&self.workspace, &normalize_email(id_or_email)).await?
        } else {
            self.store.user_by_id(id_or_email).await?
        };
        Ok(found.filter(|u| u.workspace == self.workspace))
    }

    async fn find_or_fail(&self, id_or_email: &str) -> Result<UserRecord, UserError> {
        self.find(id_or_email).await?.ok_or_else(|| UserError::NoSuchUser(id_or_email.chars().take(254).collect()))
    }

    async fn change(
        &self,
        user: &UserRecord,
        change: UserChange,
        action: &str,
        actor: &str,
    ) -> Result<UserRecord, UserError> {
        let audit = self.audit(actor, action, &user.id, serde_json::json!({"email": user.email}));
        self.write(user, &change, &audit).await
    }

    /// Writes a change; the store's own last-owner guard (atomic with the write) becomes `LastOwner`.
    async fn write(&self, user: &UserRecord, change: &UserChange, audit: &AuditEntry) -> Result<UserRecord, UserError> {
        match self.store.update_user(&user.id, change, audit).await {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(UserError::NoSuchUser(user.id.clone())),
            Err(StoreError::Conflict(m)) if m == gatehouse_store::LAST_OWNER => {
                Err(UserError::LastOwner(user.email.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Disables a user: they cannot sign in, and every session they have ends (on every node within a
    /// poll). The last enabled owner cannot be disabled: nobody could sign in to manage the deployment.
    pub async fn disable(&self, id_or_email: &str, actor: &str) -> Result<UserRecord, UserError> {
        let user = self.find_or_fail(id_or_email).await?;
        self.disable_user(user, actor).await
    }

    async fn disable_user(&self, user: UserRecord, actor: &str) -> Result<UserRecord, UserError> {
        self.keep_an_owner(&user).await?;
        self.change(&user, UserChange::Disable { at: Timestamp::now() }, "user.disabled", actor).await
    }

    /// Refuses when `user` is the only enabled owner.
    async fn keep_an_owner(&self, user: &UserRecord) -> Result<(), UserError> {
        if user.role == "owner" && user.disabled_at.is_none() {
            let owners = self.list().await?;
            if !owners.iter().any(|u| u.id != user.id && u.role == "owner" && u.disabled_at.is_none()) {
                return Err(UserError::LastOwner(user.email.clone()));
            }
        }
        Ok(())
    }

    /// The user `id_or_email`, if `actor` may act on them.
    async fn target(&self, actor: &Actor, id_or_email: &str) -> Result<UserRecord, UserError> {
        let user = self.find_or_fail(id_or_email).await?;
        if !actor_may_manage(actor, &user.role) {
            return Err(refuse(actor, &user.role));
        }
        Ok(user)
    }

    /// [`Users::create`] on behalf of `actor`, within its authority.
    pub async fn create_as(
        &self,
        actor: &Actor,
        email: &str,
        password: &str,
        role: &str,
    ) -> Result<UserRecord, UserError> {
        if ROLES.contains(&role) && !actor_may_manage(actor, role) {
            return Err(refuse(actor, role));
        }
        self.create(email, password, role, &actor.id()).await
    }

    /// [`Users::disable`] on behalf of `actor`, within its authority.
    pub async fn disable_as(&self, actor: &Actor, id_or_email: &str) -> Result<UserRecord, UserError> {
        let user = self.target(actor, id_or_email).await?;
        self.disable_user(user, &actor.id()).await
    }

    /// [`Users::enable`] on behalf of `actor`, within its authority.
    pub async fn enable_as(&self, actor: &Actor, id_or_email: &str) -> Result<UserRecord, UserError> {
        let user = self.target(actor, id_or_email).await?;
        self.change(&user, UserChange::Enable, "user.enabled", &actor.id()).await
    }

    /// [`Users::set_password`] on behalf of `actor`, within its authority (every session of the user ends).
    pub async fn set_password_as(
        &self,
        actor: &Actor,
        id_or_email: &str,
        password: &str,
    ) -> Result<UserRecord, UserError> {
        check_password(password)?;
        let user = self.target(actor, id_or_email).await?;
        let hash = self.hash_new(password).await?;
        let change = UserChange::Password { hash, at: Timestamp::now() };
        self.change(&user, change, "user.password_changed", &actor.id()).await
    }

    /// Gives a user another role, audited in the same transaction. Both the user's current role and the
    /// new one must be within `actor`'s authority; the last enabled owner keeps the role. The change
    /// reaches the user's live sessions on every node within one poll of the change feed.
    pub async fn set_role(&self, actor: &Actor, id_or_email: &str, role: &str) -> Result<UserRecord, UserError> {
        if !ROLES.contains(&role) {
            return Err(UserError::InvalidRole(role.chars().take(64).collect()));
        }
        let user = self.target(actor, id_or_email).await?;
        if !actor_may_manage(actor, role) {
            return Err(refuse(actor, role));
        }
        if user.role == role {
            return Ok(user);
        }
        if role != "owner" {
            self.keep_an_owner(&user).await?;
        }
        let audit = self.audit(
            &actor.id(),
            "user.role_changed",
            &user.id,
            serde_json::json!({"email": user.email, "from": user.role, "to": role}),
        );
        let change = UserChange::Role { role: role.to_owned(), at: Timestamp::now() };
        self.write(&user, &change, &audit).await
    }

    /// Issues a one-time set-password link token for a user (shown once; only its SHA-256 is stored),
    /// valid for `ttl`. Using it sets the password and ends every session of the user.
    pub async fn create_password_link(
        &self,
        actor: &Actor,
        id_or_email: &str,
        ttl: Duration,
    ) -> Result<String, UserError> {
        let user = self.target(actor, id_or_email).await?;
        let (token, hash) = crate::sessions::new_token();
        let now = Timestamp::now();
        let expires = Timestamp(now.0.saturating_add(ttl.as_millis() as i64));
        let audit = self.audit(
            &actor.id(),
            "user.password_link_created",
            &user.id,
            serde_json::json!({"email": user.email, "expires_at": expires.0}),
        );
        self.store.insert_password_link(&hash, &user.id, now, expires, &audit).await?;
        Ok(token)
    }

    /// Whether a set-password link token is usable now (the page shows its form only then).
    pub async fn password_link_valid(&self, token: &str) -> Result<bool, StoreError> {
        if token.len() != 43 {
            return Ok(false);
        }
        Ok(self.store.password_link_user(&KeyHash::of(token), Timestamp::now()).await?.is_some())
    }

    /// Spends a set-password link: sets `password` for its user, once. A used, expired or unknown link,
    /// or one of a disabled user, is [`UserError::InvalidLink`].
    pub async fn redeem_password_link(&self, token: &str, password: &str) -> Result<UserRecord, UserError> {
        check_password(password)?;
        if token.len() != 43 {
            return Err(UserError::InvalidLink);
        }
        let hash = KeyHash::of(token);
        let Some(user_id) = self.store.password_link_user(&hash, Timestamp::now()).await? else {
            return Err(UserError::InvalidLink);
        };
        let user = self.store.user_by_id(&user_id).await?.ok_or(UserError::InvalidLink)?;
        if user.disabled_at.is_some() || user.workspace != self.workspace {
            return Err(UserError::InvalidLink);
        }
        let phc = self.hash_new(password).await?;
        let audit = self.audit(
            &user.id,
            "user.password_changed",
            &user.id,
            serde_json::json!({"email": user.email, "via": "link"}),
        );
        self.store
            .redeem_password_link(&hash, &user.id, &phc, Timestamp::now(), &audit)
            .await?
            .ok_or(UserError::InvalidLink)
    }

    /// Lets a disabled user sign in again (their ended sessions stay ended).
    pub async fn enable(&self, id_or_email: &str, actor: &str) -> Result<UserRecord, UserError> {
        let user = self.find_or_fail(id_or_email).await?;
        self.change(&user, UserChange::Enable, "user.enabled", actor).await
    }

    /// Sets a new password and ends every session of the user.
    pub async fn set_password(&self, id_or_email: &str, password: &str, actor: &str) -> Result<UserRecord, UserError> {
        check_password(password)?;
        let user = self.find_or_fail(id_or_email).await?;
        let hash = self.hash_new(password).await?;
        self.change(&user, UserChange::Password { hash, at: Timestamp::now() }, "user.password_changed", actor).await
    }

    /// A signed-in user changes their own password: every other session of theirs ends, the one they
    /// changed it from (`keep`, its id hash) stays signed in.
    pub async fn change_own_password(
        &self,
        user_id: &str,
        password: &str,
        keep: &gatehouse_core::KeyHash,
    ) -> Result<UserRecord, UserError> {
        check_password(password)?;
        let user = self.find_or_fail(user_id).await?;
        let hash = self.hash_new(password).await?;
        let change = UserChange::OwnPassword { hash, at: Timestamp::now(), keep: *keep };
        self.change(&user, change, "user.password_changed", user_id).await
    }

    /// Deletes long-forgotten throttle counters, at most once a minute per node.
    async fn maybe_prune(&self, now: Timestamp) {
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now.0 - last < 60_000
            || self.last_prune_ms.compare_exchange(last, now.0, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let before = Timestamp(now.0 - self.cfg.forget_after.as_millis() as i64);
        if let Err(e) = self.store.prune_sign_in(before).await {
            tracing::warn!(error = %e, "could not delete old sign-in counters; will retry");
        }
    }

    /// Checks an email and password, throttled per account and per client address. Storage errors
    /// are errors (the caller answers 503): the throttle never fails open.
    pub async fn sign_in(&self, email: &str, password: &str, ip: Option<IpAddr>) -> Result<SignIn, StoreError> {
        let email = normalize_email(email);
        let account = account_subject(&email);
        let ip_subject = ip.map(|i| format!("ip:{}", gatehouse_core::ipallow::canonical(i)));
        // Client address first, then account: every attempt locks rows in the same order.
        let subjects: Vec<&str> = ip_subject.iter().map(String::as_str).chain([account.as_str()]).collect();
        let policy = self.cfg.policy();
        let now = Timestamp::now();
        self.maybe_prune(now).await;
        let counts = match self.store.reserve_sign_in(&self.workspace, &subjects, now, &policy).await? {
            Reservation::Granted(counts) => counts,
            Reservation::Throttled { retry_at } => {
                tracing::debug!(ip = ?ip, "sign-in refused: throttled");
                return Ok(SignIn::Throttled(Duration::from_millis((retry_at.0 - now.0).max(1) as u64)));
            }
        };
        let found = match self.store.user_by_email(&self.workspace, &email).await {
            Ok(u) => u,
            Err(e) => {
                let _ = self.store.release_sign_in(&self.workspace, &[], &subjects, &policy).await;
                return Err(e);
            }
        };
        // A user created through an identity provider has no password yet: checked against the dummy hash,
        // so the answer takes as long as for any other wrong password.
        let usable =
            found.as_ref().filter(|u| u.disabled_at.is_none() && u.password_hash != crate::external::NO_PASSWORD);
        let hash = usable.map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let pw = password.to_owned();
        let kib = memory_cost_kib(&hash);
        let ok = match self.hash_slot(kib, move |blocks| verify_password(&pw, &hash, blocks)).await {
            Ok(ok) => ok,
            Err(HashBusy) => {
                // Not checked, so not counted: a flood that fills the slots costs nobody their allowance.
                self.store.release_sign_in(&self.workspace, &[], &subjects, &policy).await?;
                tracing::warn!(ip = ?ip, "sign-in refused: every password-hashing slot is busy");
                return Ok(SignIn::Busy);
            }
        };
        if let (true, Some(u)) = (ok, usable) {
            let back: Vec<&str> = ip_subject.iter().map(String::as_str).collect();
            self.store.release_sign_in(&self.workspace, &[account.as_str()], &back, &policy).await?;
            return Ok(SignIn::Ok(u.clone()));
        }
        let account_failures = counts.last().copied().unwrap_or(1);
        let ip_failures = ip_subject.as_ref().and(counts.first().copied());
        self.failed(found.as_ref(), ip, account_failures, ip_failures, &policy).await;
        Ok(SignIn::Wrong)
    }

    /// Logs a failed sign-in and audits it, summarised: for a known account, an entry at the 1st, 2nd,
    /// 4th, 8th… failure of a series, and `user.locked` when the series reaches the allowance. The typed
    /// email is never logged (people type passwords into it); the account is named by its id.
    async fn failed(
        &self,
        user: Option<&UserRecord>,
        ip: Option<IpAddr>,
        failures: i64,
        ip_failures: Option<i64>,
        policy: &ThrottlePolicy,
    ) {
        let free = i64::from(policy.free_attempts);
        match user {
            Some(u) => tracing::warn!(user = %u.id, ip = ?ip, failures, "sign-in failed"),
            None => tracing::warn!(ip = ?ip, "sign-in failed for an unknown or disabled account"),
        }
        if ip_failures == Some(free) {
            tracing::warn!(ip = ?ip, failures = free, "client address reached its sign-in allowance; further attempts wait");
        }
        let Some(u) = user else { return };
        let mut entries = vec![];
        if failures & (failures - 1) == 0 {
            entries.push(("user.sign_in_failed", serde_json::json!({"email": u.email, "failures": failures})));
        }
        if failures == free {
            let wait = policy.wait_after(failures) / 1000;
            entries.push((
                "user.locked",
                serde_json::json!({"email": u.email, "failures": failures, "retry_after_secs": wait}),
            ));
        }
        for (action, details) in entries {
            let mut entry = self.audit("anonymous", action, &u.id, details);
            entry.ip = ip.map(|i| i.to_string());
            if let Err(e) = self.store.audit_sign_in(&entry).await {
                tracing::warn!(error = %e, action, user = %u.id, "could not write the sign-in audit entry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_between_10_and_1024_characters() {
        let cases = [
            ("", Err(PasswordRule::TooShort)),
            ("123456789", Err(PasswordRule::TooShort)),
            ("ééééééééé", Err(PasswordRule::TooShort)),
            ("1234567890", Ok(())),
            ("éééééééééé", Ok(())),
            (&"x".repeat(1024), Ok(())),
            (&"x".repeat(1025), Err(PasswordRule::TooLong)),
        ];
        for (pw, want) in cases {
            assert_eq!(check_password(pw), want, "{} characters", pw.chars().count());
        }
        // The boundary shows the rule itself, never the password.
        assert_eq!(UserError::from(PasswordRule::TooShort).to_string(), "the password must be at least 10 characters");
    }

    #[test]
    fn reused_memory_hashes_and_verifies_like_the_library() {
        let mut blocks = vec![];
        let ours = hash_password_in("correct horse battery staple", &mut blocks);
        let theirs = hash_password("correct horse battery staple");
        for phc in [&ours, &theirs] {
            assert!(verify_password("correct horse battery staple", phc, &mut blocks), "{phc}");
            assert!(!verify_password("correct horse battery stapler", phc, &mut blocks));
            assert!(argon2::PasswordVerifier::verify_password(
                &Argon2::default(),
                b"correct horse battery staple",
                &PasswordHash::new(phc).unwrap()
            )
            .is_ok());
        }
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        assert_eq!(memory_cost_kib(&ours), 19_456);
        // Other parameters are honoured, garbage is refused.
        let light = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap())
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify_password("pw", &light, &mut blocks));
        assert_eq!(memory_cost_kib(&light), 1024);
        for bad in ["", "$argon2id$", "plaintext", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$"] {
            assert!(!verify_password("pw", bad, &mut blocks), "{bad}");
        }
    }
}
