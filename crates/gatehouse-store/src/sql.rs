//! The SQL store: one implementation for SQLite and PostgreSQL.
//!
//! Each method is written once; the `on_db!` macro expands its body for each backend's concrete pool
//! type, so sqlx sees concrete types and we avoid two hand-kept copies drifting apart. SQL is kept to
//! the common dialect (`$n` placeholders, `RETURNING`, integer milliseconds for time, JSON as text);
//! the few places that differ say so. Each backend has its own migrations under `migrations/`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::{Environment, IpAllowlist, KeyHash, KeyKind, KeyRecord, RateLimitOverride, ScopeSet, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{
    AuditEntry, AuditFilter, AuditStore, KeyChanges, KeyFilter, KeyStatus, KeyStore, Page, Rolled, SecretStore, Seek,
    SessionRecord, SessionStore, Store, StoreError, UserChange, UserRecord, UserStore, LAST_OWNER, MAX_SEARCH_LEN,
};

use crate::breaker::{Breaker, ProbeConfig, Transition};
use crate::sql_where::{bind_args, page_rows, Arg, Where};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connection settings shared by both backends.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long to wait for a connection before answering "unavailable".
    pub acquire_timeout: Duration,
    /// Upper bound on pooled connections (readers, for SQLite).
    pub max_connections: u32,
    /// How the database is probed while it is known to be down (see `breaker`).
    pub probe: ProbeConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { acquire_timeout: Duration::from_secs(3), max_connections: 8, probe: ProbeConfig::default() }
    }
}

#[derive(Clone, Debug)]
enum Db {
    /// SQLite allows one writer at a time; a dedicated one-connection pool queues writes in-process
    /// instead of spinning on `SQLITE_BUSY`, and readers never wait for it (WAL).
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// The one SQL implementation of every storage trait.
#[derive(Clone, Debug)]
pub struct SqlStore {
    db: Db,
    breaker: Arc<Breaker>,
    probe: ProbeConfig,
    /// The listening connection's pool and its ticks (PostgreSQL only; see `notify`).
    feed_notices: Option<(PgPool, tokio::sync::watch::Receiver<u64>)>,
}

/// Runs `$body` behind the breaker: at once `Unavailable` while storage is known to be down, and
/// any `Unavailable` the body meets opens the breaker (see `breaker`). `$body` may use `?` and
/// `return Err(…)` as in the method around it.
macro_rules! guarded {
    ($self:expr, $body:expr) => {{
        let store: &SqlStore = &$self;
        store.breaker.admit()?;
        let out: Result<_, StoreError> = async { Ok($body) }.await;
        store.observe(out)?
    }};
}

/// Runs `$body` with `$p` bound to the backend's pool (`read` or `write` side), behind the breaker.
macro_rules! on_db {
    ($self:expr, read, $p:ident => $body:expr) => {
        guarded!(
            $self,
            match &$self.db {
                Db::Sqlite { read: $p, .. } => $body,
                Db::Postgres($p) => $body,
            }
        )
    };
    ($self:expr, write, $p:ident => $body:expr) => {
        guarded!(
            $self,
            match &$self.db {
                Db::Sqlite { write: $p, .. } => $body,
                Db::Postgres($p) => $body,
            }
        )
    };
}

/// Runs `$body` inside a write transaction `$tx` and commits it when the body returns `Ok`, behind
/// the breaker. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a read-then-write never
/// fails on upgrade. PostgreSQL takes the change-feed advisory lock, so feed order is commit order.
macro_rules! in_tx {
    ($self:expr, $tx:ident => $body:expr) => {
        guarded!(
            $self,
            match &$self.db {
                Db::Sqlite { write, .. } => {
                    let mut $tx = crate::tx::Begin::begin_tx(write, "BEGIN IMMEDIATE").await?;
                    let out = $body;
                    $tx.commit().await?;
                    out
                }
                Db::Postgres(pool) => {
                    let mut $tx = crate::tx::Begin::begin_tx(pool, "BEGIN").await?;
                    sqlx::query("SELECT pg_advisory_xact_lock(7243010)").execute(&mut *$tx).await?;
                    let out = $body;
                    $tx.commit().await?;
                    out
                }
            }
        )
    };
}

impl SqlStore {
    /// Opens (creating if missing) the SQLite database at `path` in WAL mode and migrates it.
    pub async fn open_sqlite(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Tokens and audit entries are keyed by random ids, so inserts touch pages all over the
            // B-trees; a 32 MiB page cache per connection keeps them in memory between commits.
            .pragma("cache_size", "-32768");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        SQLITE_MIGRATIONS.run(&write).await.map_err(migrate_error)?;
        let read = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self::with_db(Db::Sqlite { read, write }, opts, None))
    }

    /// Connects to PostgreSQL and migrates it.
    pub async fn open_postgres(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Other(format!("database_url is not a valid PostgreSQL URL: {}", redact_url_error(&e)))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            // No ping before handing out an idle connection: when the server goes down, the next query on
            // a pooled connection fails at once and opens the breaker, where a ping that failed would make
            // the pool reconnect (refused, retried) for the whole acquire timeout first. A connection that
            // died quietly costs one failed call and one probe interval of 503s.
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await.map_err(migrate_error)?;
        let notices = crate::notify::listen(connect);
        Ok(Self::with_db(Db::Postgres(pool), opts, Some(notices)))
    }

    /// Opens by URL: `postgres://…`/`postgresql://…`, or `sqlite://PATH`, or a plain file path.
    pub async fn open(url_or_path: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
            Self::open_postgres(url_or_path, opts).await
        } else {
            let path = url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path);
            Self::open_sqlite(Path::new(path), opts).await
        }
    }

    fn with_db(db: Db, opts: &StoreOptions, feed_notices: Option<(PgPool, tokio::sync::watch::Receiver<u64>)>) -> Self {
        Self { db, breaker: Arc::default(), probe: opts.probe, feed_notices }
    }

    /// Passes `out` through, opening the breaker (and starting the one probe of this outage) when it
    /// shows that storage is unreachable.
    fn observe<T>(&self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Full(e)) = &out {
            if self.breaker.full_should_log() {
                tracing::error!(error = %e,
                    "storage is full: writes are refused (503) until space is freed; reads go on (said at most every 10 s)");
            }
        }
        if self.breaker.observe(&out) == Transition::Opened {
            if let Err(e) = &out {
                tracing::warn!(error = %e, probe_ms = self.probe.interval.as_millis() as u64,
                    "storage unreachable; failing storage calls at once until a probe succeeds");
            }
            self.spawn_probe();
        }
        out
    }

    fn spawn_probe(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to probe from: close again, so the next call is the probe.
            self.breaker.close();
            return;
        };
        let (db, breaker, probe) = (self.db.clone(), self.breaker.clone(), self.probe);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(probe.interval).await;
                let closed = match &db {
                    Db::Sqlite { read, write } => read.is_closed() || write.is_closed(),
                    Db::Postgres(p) => p.is_closed(),
                };
                if closed {
                    return; // the store was closed on purpose; it stays unavailable
                }
                let answered = match &db {
                    Db::Sqlite { read, write } => {
                        let ping = async {
                            sqlx::query("SELECT 1").execute(read).await?;
                            sqlx::query("SELECT 1").execute(write).await.map(|_| ())
                        };
                        tokio::time::timeout(probe.timeout, ping).await
                    }
                    Db::Postgres(p) => {
                        let ping = async { sqlx::query("SELECT 1").execute(p).await.map(|_| ()) };
                        tokio::time::timeout(probe.timeout, ping).await
                    }
                };
                if matches!(answered, Ok(Ok(_))) {
                    breaker.close();
                    tracing::info!("storage answers again; storage calls resume");
                    return;
                }
            }
        });
    }

    /// How many times storage was found down since the store was opened.
    pub fn outages(&self) -> u64 {
        self.breaker.trips()
    }

    /// Closes every pooled connection (the listening one too).
    pub async fn close(&self) {
        if let Some((listener, _)) = &self.feed_notices {
            listener.close().await;
        }
        match &self.db {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
        other => StoreError::Other(format!("migration failed: {other}")),
    }
}

/// sqlx's URL errors may echo the URL, which can hold a password.
fn redact_url_error(e: &sqlx::Error) -> String {
    let msg = e.to_string();
    if msg.contains('@') {
        "malformed URL".to_owned()
    } else {
        msg
    }
}

/// A key as the database returns it, before parsing into domain types.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    key_hash: Vec<u8>,
    workspace: String,
    environment: String,
    kind: String,
    name: String,
    scopes: String,
    ip_allowlist: String,
    expires_at: Option<i64>,
    app: Option<String>,
    rate_limit: Option<String>,
    metadata: String,
    display_prefix: String,
    last4: String,
    created_at: i64,
    created_by: String,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    rolled_to: Option<String>,
}

const KEY_COLUMNS: &str = "id, key_hash, workspace, environment, kind, name, scopes, ip_allowlist, expires_at, app, \
     rate_limit, metadata, display_prefix, last4, created_at, created_by, last_used_at, revoked_at, rolled_to";

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("key {}: {what}", r.id));
        let hash: [u8; 32] = r.key_hash.as_slice().try_into().map_err(|_| corrupt("hash length"))?;
        let scopes: Vec<String> = serde_json::from_str(&r.scopes).map_err(|_| corrupt("scopes"))?;
        let ips: Vec<String> = serde_json::from_str(&r.ip_allowlist).map_err(|_| corrupt("ip_allowlist"))?;
        let rate_limit = match &r.rate_limit {
            Some(s) => Some(serde_json::from_str::<RateLimitOverride>(s).map_err(|_| corrupt("rate_limit"))?),
            None => None,
        };
        Ok(KeyRecord {
            hash: KeyHash(hash),
            environment: Environment::parse(&r.environment).ok_or_else(|| corrupt("environment"))?,
            kind: KeyKind::parse(&r.kind).ok_or_else(|| corrupt("kind"))?,
            scopes: ScopeSet::parse(scopes.iter().map(String::as_str)).map_err(|_| corrupt("scopes"))?,
            ip_allowlist: IpAllowlist::parse(ips.iter().map(String::as_str)).map_err(|_| corrupt("ip_allowlist"))?,
            metadata: serde_json::from_str(&r.metadata).map_err(|_| corrupt("metadata"))?,
            rate_limit,
            expires_at: r.expires_at.map(Timestamp),
            created_at: Timestamp(r.created_at),
            last_used_at: r.last_used_at.map(Timestamp),
            revoked_at: r.revoked_at.map(Timestamp),
            id: r.id,
            workspace: r.workspace,
            name: r.name,
            app: r.app,
            display_prefix: r.display_prefix,
            last4: r.last4,
            created_by: r.created_by,
            rolled_to: r.rolled_to,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    workspace: String,
    environment: Option<String>,
    at: i64,
    actor: String,
    action: String,
    target_type: String,
    target_id: String,
    request_id: Option<String>,
    ip: Option<String>,
    details: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            environment: r.environment.as_deref().and_then(Environment::parse),
            at: Timestamp(r.at),
            details: serde_json::from_str(&r.details)
                .map_err(|_| StoreError::Corrupt(format!("audit entry {}: details", r.id)))?,
            id: r.id,
            workspace: r.workspace,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            request_id: r.request_id,
            ip: r.ip,
        })
    }
}

fn json_list(items: Vec<String>) -> String {
    serde_json::Value::from(items).to_string()
}

/// Binds a key's columns in `KEY_COLUMNS` order.
macro_rules! bind_key {
    ($q:expr, $k:expr) => {
        $q.bind(&$k.id)
            .bind(&$k.hash.0[..])
            .bind(&$k.workspace)
            .bind($k.environment.as_str())
            .bind($k.kind.as_str())
            .bind(&$k.name)
            .bind(json_list($k.scopes.to_strings()))
            .bind(json_list($k.ip_allowlist.to_strings()))
            .bind($k.expires_at.map(|t| t.0))
            .bind(&$k.app)
            .bind($k.rate_limit.map(|r| serde_json::json!({"limit": r.limit, "window_secs": r.window_secs}).to_string()))
            .bind(serde_json::Value::Object($k.metadata.clone()).to_string())
            .bind(&$k.display_prefix)
            .bind(&$k.last4)
            .bind($k.created_at.0)
            .bind(&$k.created_by)
            .bind($k.last_used_at.map(|t| t.0))
            .bind($k.revoked_at.map(|t| t.0))
            .bind(&$k.rolled_to)
    };
}

const INSERT_KEY: &str = "INSERT INTO api_keys (id, key_hash, workspace, environment, kind, name, scopes, ip_allowlist, \
     expires_at, app, rate_limit, metadata, display_prefix, last4, created_at, created_by, last_used_at, revoked_at, rolled_to) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (id, workspace, environment, at, actor, action, target_type, target_id, \
     request_id, ip, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const INSERT_CHANGE: &str = "INSERT INTO key_changes (key_hash, at) VALUES ($1, $2)";

macro_rules! bind_audit {
    ($q:expr, $a:expr) => {
        $q.bind(&$a.id)
            .bind(&$a.workspace)
            .bind($a.environment.map(|e| e.as_str()))
            .bind($a.at.0)
            .bind(&$a.actor)
            .bind(&$a.action)
            .bind(&$a.target_type)
            .bind(&$a.target_id)
            .bind(&$a.request_id)
            .bind(&$a.ip)
            .bind($a.details.to_string())
    };
}

/// Writes an audit entry and, when its action is an event type (SPEC §6), the event and one pending
/// delivery per enabled endpoint that wants it — in the caller's transaction: the transactional outbox.
macro_rules! record {
    ($tx:ident, $a:expr) => {{
        let a: &AuditEntry = $a;
        bind_audit!(sqlx::query(INSERT_AUDIT), a).execute(&mut *$tx).await?;
        if crate::webhooks::EVENT_TYPES.contains(&a.action.as_str()) {
            let (event_id, env, body) = event_of(a);
            sqlx::query(INSERT_EVENT)
                .bind(&event_id)
                .bind(&a.workspace)
                .bind(&env)
                .bind(&a.action)
                .bind(a.at.0)
                .bind(&body)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(FAN_OUT)
                .bind(&event_id)
                .bind(a.at.0)
                .bind(&a.workspace)
                .bind(&env)
                .bind(format!("%\"{}\"%", a.action))
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

const INSERT_EVENT: &str =
    "INSERT INTO webhook_events (id, workspace, environment, type, created_at, body) VALUES ($1, $2, $3, $4, $5, $6)";

/// One pending delivery per enabled endpoint of the workspace and environment that wants the type.
/// Event types are validated names, so the LIKE pattern holds no user input.
const FAN_OUT: &str = "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at) \
     SELECT $1, id, 'pending', 0, $2 FROM webhook_endpoints WHERE workspace = $3 AND environment = $4 \
     AND disabled_at IS NULL AND (event_types LIKE $5 OR event_types LIKE '%\"*\"%')";

/// The event an audit entry announces: its id, environment and the JSON body of SPEC §6.
fn event_of(a: &AuditEntry) -> (String, String, String) {
    let id = gatehouse_core::id::new_id("evt", a.at, &mut rand::thread_rng());
    let env = a.environment.map_or("live", |e| e.as_str()).to_owned();
    let body = event_body(a, &id, &env);
    (id, env, body)
}

/// The JSON body of SPEC §6 for the event `id` that `a` announces.
fn event_body(a: &AuditEntry, id: &str, env: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), a.target_id.clone().into());
    object.insert("object".into(), a.target_type.clone().into());
    if let serde_json::Value::Object(d) = &a.details {
        for (k, v) in d {
            object.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let body = serde_json::json!({
        "id": id, "type": a.action, "created": a.at.unix_seconds(), "workspace": a.workspace,
        "environment": env, "data": {"object": object},
    });
    body.to_string()
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &KeyRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        in_tx!(self, tx => {
            bind_key!(sqlx::query(INSERT_KEY), key).execute(&mut *tx).await?;
            record!(tx, audit);
            // New keys go on the feed too, so other nodes drop a negative cache entry for this hash.
            sqlx::query(INSERT_CHANGE).bind(&key.hash.0[..]).bind(audit.at.0).execute(&mut *tx).await?;
        });
        Ok(())
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row: Option<KeyRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql).bind(&hash.0[..]).fetch_optional(p).await?
        });
        row.map(KeyRecord::try_from).transpose()
    }

    async fn key_by_id(&self, workspace: &str, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace = $1 AND id = $2");
        let row: Option<KeyRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql).bind(workspace).bind(id).fetch_optional(p).await?
        });
        row.map(KeyRecord::try_from).transpose()
    }

    async fn seek_keys(&self, filter: &KeyFilter, seek: &Seek) -> Result<Page<KeyRecord>, StoreError> {
        let w = key_where(filter);
        if w.impossible {
            return Ok(Page { items: vec![], has_more: false });
        }
        let (sql, args, limit) = w.select_page(KEY_COLUMNS, "api_keys", seek);
        let rows: Vec<KeyRow> = on_db!(self, read, p => bind_args!(sqlx::query_as(&sql), &args).fetch_all(p).await?);
        page_rows(rows, limit, seek)
    }

    async fn revoke_key(
        &self,
        workspace: &str,
        id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE workspace = $1 AND id = $2 RETURNING {KEY_COLUMNS}"
        );
        let row: Option<KeyRow> = in_tx!(self, tx => {
            let row: Option<KeyRow> =
                sqlx::query_as(&sql).bind(workspace).bind(id).bind(at.0).fetch_optional(&mut *tx).await?;
            if let Some(r) = &row {
                record!(tx, audit);
                sqlx::query(INSERT_CHANGE).bind(&r.key_hash).bind(at.0).execute(&mut *tx).await?;
            }
            row
        });
        row.map(KeyRecord::try_from).transpose()
    }

    async fn roll_key(
        &self,
        workspace: &str,
        id: &str,
        new: &KeyRecord,
        old_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<Rolled>, StoreError> {
        let update = format!(
            "UPDATE api_keys SET expires_at = $3, rolled_to = $4 \
             WHERE workspace = $1 AND id = $2 AND revoked_at IS NULL AND rolled_to IS NULL RETURNING {KEY_COLUMNS}"
        );
        let exists = "SELECT COUNT(*) FROM api_keys WHERE workspace = $1 AND id = $2";
        let row: Option<KeyRow> = in_tx!(self, tx => {
            let row: Option<KeyRow> = sqlx::query_as(&update)
                .bind(workspace)
                .bind(id)
                .bind(old_expires_at.0)
                .bind(&new.id)
                .fetch_optional(&mut *tx)
                .await?;
            match &row {
                Some(r) => {
                    bind_key!(sqlx::query(INSERT_KEY), new).execute(&mut *tx).await?;
                    record!(tx, audit);
                    sqlx::query(INSERT_CHANGE).bind(&r.key_hash).bind(audit.at.0).execute(&mut *tx).await?;
                    sqlx::query(INSERT_CHANGE).bind(&new.hash.0[..]).bind(audit.at.0).execute(&mut *tx).await?;
                }
                None => {
                    let n: i64 = sqlx::query_scalar(exists).bind(workspace).bind(id).fetch_one(&mut *tx).await?;
                    if n > 0 {
                        return Err(StoreError::Conflict(
                            "the key is revoked or was already rolled; roll its successor instead".into(),
                        ));
                    }
                }
            }
            row
        });
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(Rolled { old: KeyRecord::try_from(r)?, new: new.clone() })),
        }
    }

    async fn touch_last_used(&self, batch: &[(String, Timestamp)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sql = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
        on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            for (id, at) in batch {
                sqlx::query(sql).bind(id).bind(at.0).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn key_changes_head(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM key_changes";
        let head: i64 = on_db!(self, read, p => sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(head)
    }

    async fn key_changes_since(&self, seq: i64, retain_before: Timestamp) -> Result<KeyChanges, StoreError> {
        let sql = "SELECT seq, key_hash FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT 1000";
        let min_sql = "SELECT MIN(seq) FROM key_changes";
        let (rows, min): (Vec<(i64, Vec<u8>)>, Option<i64>) = on_db!(self, read, p => {
            (
                sqlx::query_as(sql).bind(seq).fetch_all(p).await?,
                sqlx::query_scalar(min_sql).fetch_one(p).await?,
            )
        });
        let mut out = KeyChanges { next_seq: seq, ..Default::default() };
        // The feed starts at 1; a first entry beyond seq + 1 means entries we never saw were pruned.
        out.gap = min.is_some_and(|m| m > seq + 1) && seq > 0;
        for (s, h) in rows {
            if let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) {
                out.hashes.push(KeyHash(h));
            }
            out.next_seq = s;
        }
        if out.hashes.is_empty() {
            let prune = "DELETE FROM key_changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM key_changes)";
            on_db!(self, write, p => {
                sqlx::query(prune).bind(retain_before.0).execute(p).await?;
            });
        }
        Ok(out)
    }

    fn key_change_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.feed_notices.as_ref().map(|(_, rx)| rx.clone())
    }
}

fn page_of<R, T>(rows: Vec<R>, limit_plus_one: i64) -> Result<Page<T>, StoreError>
where
    T: TryFrom<R>,
    StoreError: From<T::Error>,
{
    page_rows(rows, limit_plus_one, &Seek::default())
}

/// The conditions of a key list (see `sql_where`). The indexes of migration 0020 serve each filter
/// in `id` order, so a page reads about as many rows as it shows unless a text search matches few.
fn key_where(f: &KeyFilter) -> Where {
    let mut w = Where::default();
    w.eq_text("workspace", &f.workspace);
    if let Some(e) = f.environment {
        w.eq_text("environment", e.as_str());
    }
    if let Some(k) = f.kind {
        w.eq_text("kind", k.as_str());
    }
    if let Some(app) = &f.app {
        w.eq_text("app", app);
    }
    match f.status {
        None => {}
        Some(KeyStatus::Revoked) => w.and("revoked_at IS NOT NULL".into()),
        Some(KeyStatus::Active(at)) => {
            w.and("revoked_at IS NULL".into());
            let p = w.arg(Arg::Int(at.0));
            w.and(format!("(expires_at IS NULL OR expires_at > {p})"));
        }
        Some(KeyStatus::Expired(at)) => {
            w.and("revoked_at IS NULL".into());
            w.eq_int("expires_at", "<=", at.0);
        }
    }
    if let Some(s) = &f.search {
        w.contains_any(&["name", "id", "display_prefix || last4"], s, MAX_SEARCH_LEN);
    }
    w
}

/// The conditions of an audit search: exact text matches and the time range `since <= at < until`.
fn audit_where(workspace: &str, f: &AuditFilter) -> Where {
    let mut w = Where::default();
    w.eq_text("workspace", workspace);
    if let Some(e) = f.environment {
        w.eq_text("environment", e.as_str());
    }
    for (column, value) in [("actor", &f.actor), ("action", &f.action), ("target_id", &f.target)] {
        if let Some(v) = value {
            w.eq_text(column, v);
        }
    }
    if let Some(t) = f.since {
        w.eq_int("at", ">=", t.0);
    }
    if let Some(t) = f.until {
        w.eq_int("at", "<", t.0);
    }
    w
}

const AUDIT_COLUMNS: &str =
    "id, workspace, environment, at, actor, action, target_type, target_id, request_id, ip, details";

#[async_trait]
impl AuditStore for SqlStore {
    async fn seek_audit(
        &self,
        workspace: &str,
        filter: &AuditFilter,
        seek: &Seek,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let w = audit_where(workspace, filter);
        if w.impossible {
            return Ok(Page { items: vec![], has_more: false });
        }
        let (sql, args, limit) = w.select_page(AUDIT_COLUMNS, "audit_log", seek);
        let rows: Vec<AuditRow> = on_db!(self, read, p => bind_args!(sqlx::query_as(&sql), &args).fetch_all(p).await?);
        page_rows(rows, limit, seek)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    workspace: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        UserRecord {
            id: r.id,
            workspace: r.workspace,
            email: r.email,
            password_hash: r.password_hash,
            role: r.role,
            created_at: Timestamp(r.created_at),
            disabled_at: r.disabled_at.map(Timestamp),
        }
    }
}

const USER_COLUMNS: &str = "id, workspace, email, password_hash, role, created_at, disabled_at";

const INSERT_USER: &str = "INSERT INTO users (id, workspace, email, password_hash, role, created_at, disabled_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Binds a user's columns in `INSERT_USER` order.
macro_rules! bind_user {
    ($q:expr, $u:expr) => {
        $q.bind(&$u.id)
            .bind(&$u.workspace)
            .bind(&$u.email)
            .bind(&$u.password_hash)
            .bind(&$u.role)
            .bind($u.created_at.0)
            .bind($u.disabled_at.map(|t| t.0))
    };
}
/// Spends every open set-password link of a user (`$1`) at `$2`.
const SPEND_OPEN_LINKS: &str = "UPDATE password_links SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL";

#[async_trait]
impl UserStore for SqlStore {
    async fn insert_user(&self, user: &UserRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        in_tx!(self, tx => {
            bind_user!(sqlx::query(INSERT_USER), user).execute(&mut *tx).await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn user_by_email(&self, workspace: &str, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE workspace = $1 AND email = $2");
        let row: Option<UserRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql).bind(workspace).bind(email).fetch_optional(p).await?
        });
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        Ok(row.map(Into::into))
    }

    async fn count_users(&self, workspace: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM users WHERE workspace = $1";
        let n: i64 = on_db!(self, read, p => sqlx::query_scalar(sql).bind(workspace).fetch_one(p).await?);
        Ok(n)
    }

    async fn list_users(&self, workspace: &str) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE workspace = $1 ORDER BY id");
        let rows: Vec<UserRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(workspace).fetch_all(p).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn update_user(
        &self,
        id: &str,
        change: &UserChange,
        audit: &AuditEntry,
    ) -> Result<Option<UserRecord>, StoreError> {
        let select = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let live_sessions = "SELECT id_hash FROM sessions WHERE user_id = $1 AND revoked_at IS NULL";
        let end_sessions = "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
        let end_other_sessions =
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND id_hash <> $3";
        // The last enabled owner of a workspace keeps being one: the guard and the write are one statement.
        let keeps_an_owner = "(role <> 'owner' OR disabled_at IS NOT NULL OR EXISTS (SELECT 1 FROM users o \
                              WHERE o.workspace = users.workspace AND o.id <> users.id AND o.role = 'owner' \
                              AND o.disabled_at IS NULL))";
        let live_tokens =
            "SELECT token_hash FROM oauth_tokens WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2";
        let row: Option<UserRow> = in_tx!(self, tx => {
            let exists: Option<UserRow> = sqlx::query_as(&select).bind(id).fetch_optional(&mut *tx).await?;
            if exists.is_some() {
                // (when, whether sessions end): every change but enabling drops cached copies.
                let feed = match change {
                    UserChange::Disable { at } => {
                        let sql = format!("UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1 AND {keeps_an_owner}");
                        if sqlx::query(&sql).bind(id).bind(at.0).execute(&mut *tx).await?.rows_affected() == 0 {
                            return Err(StoreError::Conflict(LAST_OWNER.into()));
                        }
                        Some((*at, true))
                    }
                    UserChange::Enable => {
                        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1").bind(id).execute(&mut *tx).await?;
                        None
                    }
                    UserChange::Password { hash, at } => {
                        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(id).bind(hash).execute(&mut *tx).await?;
                        Some((*at, true))
                    }
                    UserChange::Role { role, at } => {
                        let guard = if role == "owner" { "" } else { keeps_an_owner };
                        let sql = format!("UPDATE users SET role = $2 WHERE id = $1{}{guard}", if guard.is_empty() { "" } else { " AND " });
                        if sqlx::query(&sql).bind(id).bind(role).execute(&mut *tx).await?.rows_affected() == 0 {
                            return Err(StoreError::Conflict(LAST_OWNER.into()));
                        }
                        Some((*at, false))
                    }
                    UserChange::OwnPassword { hash, at, .. } => {
                        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(id).bind(hash).execute(&mut *tx).await?;
                        Some((*at, true))
                    }
                };
                if let Some((at, end)) = feed {
                    // A set-password link was issued for the user as they were: a new password, a new
                    // role or a disabled account spends every link still open, so a link an admin saw
                    // never outlives a reset or turns into a way into an owner's account.
                    sqlx::query(SPEND_OPEN_LINKS).bind(id).bind(at.0).execute(&mut *tx).await?;
                    let mut hashes: Vec<Vec<u8>> = sqlx::query_scalar(live_sessions).bind(id).fetch_all(&mut *tx).await?;
                    match change {
                        // The session the user changed it from stays, and so does its cached copy.
                        UserChange::OwnPassword { keep, .. } => {
                            hashes.retain(|h| h[..] != keep.0[..]);
                            sqlx::query(end_other_sessions).bind(id).bind(at.0).bind(&keep.0[..]).execute(&mut *tx).await?;
                        }
                        _ if end => {
                            sqlx::query(end_sessions).bind(id).bind(at.0).execute(&mut *tx).await?;
                        }
                        _ => {}
                    }
                    // Access tokens are not revoked (the user's grants stay), but cached copies must be
                    // reloaded: a disabled user's tokens stop working, and the refresh path reads the user.
                    let tokens: Vec<Vec<u8>> = sqlx::query_scalar(live_tokens).bind(id).bind(at.0).fetch_all(&mut *tx).await?;
                    hashes.extend(tokens);
                    for h in &hashes {
                        sqlx::query(INSERT_CHANGE).bind(h).bind(at.0).execute(&mut *tx).await?;
                    }
                }
                record!(tx, audit);
            }
            match exists {
                Some(_) => sqlx::query_as(&select).bind(id).fetch_optional(&mut *tx).await?,
                None => None,
            }
        });
        Ok(row.map(Into::into))
    }

    async fn insert_password_link(
        &self,
        token: &KeyHash,
        user_id: &str,
        created_at: Timestamp,
        expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO password_links (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        in_tx!(self, tx => {
            sqlx::query(sql).bind(&token.0[..]).bind(user_id).bind(created_at.0).bind(expires_at.0).execute(&mut *tx).await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn password_link_user(&self, token: &KeyHash, now: Timestamp) -> Result<Option<String>, StoreError> {
        let sql = "SELECT user_id FROM password_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let user: Option<String> = on_db!(self, read, p => {
            sqlx::query_scalar(sql).bind(&token.0[..]).bind(now.0).fetch_optional(p).await?
        });
        Ok(user)
    }

    async fn redeem_password_link(
        &self,
        token: &KeyHash,
        user_id: &str,
        hash: &str,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<UserRecord>, StoreError> {
        let spend = "UPDATE password_links SET used_at = $3 \
                     WHERE token_hash = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > $3";
        let select = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let live_sessions = "SELECT id_hash FROM sessions WHERE user_id = $1 AND revoked_at IS NULL";
        let end_sessions = "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
        let live_tokens =
            "SELECT token_hash FROM oauth_tokens WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2";
        let row: Option<UserRow> = in_tx!(self, tx => {
            let spent = sqlx::query(spend).bind(&token.0[..]).bind(user_id).bind(now.0).execute(&mut *tx).await?.rows_affected();
            if spent == 1 {
                sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(user_id).bind(hash).execute(&mut *tx).await?;
                sqlx::query(SPEND_OPEN_LINKS).bind(user_id).bind(now.0).execute(&mut *tx).await?;
                let mut hashes: Vec<Vec<u8>> = sqlx::query_scalar(live_sessions).bind(user_id).fetch_all(&mut *tx).await?;
                sqlx::query(end_sessions).bind(user_id).bind(now.0).execute(&mut *tx).await?;
                let tokens: Vec<Vec<u8>> = sqlx::query_scalar(live_tokens).bind(user_id).bind(now.0).fetch_all(&mut *tx).await?;
                hashes.extend(tokens);
                for h in &hashes {
                    sqlx::query(INSERT_CHANGE).bind(h).bind(now.0).execute(&mut *tx).await?;
                }
                record!(tx, audit);
                sqlx::query_as(&select).bind(user_id).fetch_optional(&mut *tx).await?
            } else {
                None
            }
        });
        Ok(row.map(Into::into))
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id_hash: Vec<u8>,
    parent_hash: Option<Vec<u8>>,
    user_id: String,
    host: String,
    created_at: i64,
    expires_at: i64,
    last_seen_at: i64,
    revoked_at: Option<i64>,
    /// A JSON array of strings.
    groups: String,
}

fn hash_of(bytes: &[u8]) -> Result<KeyHash, StoreError> {
    <[u8; 32]>::try_from(bytes).map(KeyHash).map_err(|_| StoreError::Corrupt("hash length".into()))
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        Ok(SessionRecord {
            id_hash: hash_of(&r.id_hash)?,
            parent_hash: r.parent_hash.as_deref().map(hash_of).transpose()?,
            user_id: r.user_id,
            host: r.host,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            last_seen_at: Timestamp(r.last_seen_at),
            revoked_at: r.revoked_at.map(Timestamp),
            groups: serde_json::from_str(&r.groups).map_err(|_| StoreError::Corrupt("session groups".into()))?,
        })
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (id_hash, parent_hash, user_id, host, created_at, expires_at, last_seen_at, revoked_at, groups) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let groups = serde_json::to_string(&s.groups).map_err(|e| StoreError::Other(e.to_string()))?;
        on_db!(self, write, p => {
            sqlx::query(sql)
                .bind(&s.id_hash.0[..])
                .bind(s.parent_hash.as_ref().map(|h| h.0.to_vec()))
                .bind(&s.user_id)
                .bind(&s.host)
                .bind(s.created_at.0)
                .bind(s.expires_at.0)
                .bind(s.last_seen_at.0)
                .bind(s.revoked_at.map(|t| t.0))
                .bind(&groups)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn session_by_hash(&self, hash: &KeyHash) -> Result<Option<SessionRecord>, StoreError> {
        let sql =
            "SELECT id_hash, parent_hash, user_id, host, created_at, expires_at, last_seen_at, revoked_at, groups \
                   FROM sessions WHERE id_hash = $1";
        let row: Option<SessionRow> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(&hash.0[..]).fetch_optional(p).await?);
        row.map(SessionRecord::try_from).transpose()
    }

    async fn touch_sessions(&self, batch: &[(KeyHash, Timestamp)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sql = "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2";
        on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            for (h, at) in batch {
                sqlx::query(sql).bind(&h.0[..]).bind(at.0).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn revoke_session_family(&self, hash: &KeyHash, at: Timestamp) -> Result<Vec<KeyHash>, StoreError> {
        let root_sql = "SELECT COALESCE(parent_hash, id_hash) FROM sessions WHERE id_hash = $1";
        let family_sql = "SELECT id_hash FROM sessions WHERE id_hash = $1 OR parent_hash = $1";
        let revoke_sql =
            "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id_hash = $1 OR parent_hash = $1";
        let hashes: Vec<Vec<u8>> = in_tx!(self, tx => {
            let root: Option<Vec<u8>> = sqlx::query_scalar(root_sql).bind(&hash.0[..]).fetch_optional(&mut *tx).await?;
            match root {
                None => vec![],
                Some(root) => {
                    let family: Vec<Vec<u8>> = sqlx::query_scalar(family_sql).bind(&root).fetch_all(&mut *tx).await?;
                    sqlx::query(revoke_sql).bind(&root).bind(at.0).execute(&mut *tx).await?;
                    for h in &family {
                        sqlx::query(INSERT_CHANGE).bind(h).bind(at.0).execute(&mut *tx).await?;
                    }
                    family
                }
            }
        });
        hashes.iter().map(|h| hash_of(h)).collect()
    }

    async fn user_logins(&self, user_id: &str, now: Timestamp) -> Result<Vec<SessionRecord>, StoreError> {
        let sql =
            "SELECT id_hash, parent_hash, user_id, host, created_at, expires_at, last_seen_at, revoked_at, groups \
                   FROM sessions WHERE user_id = $1 AND parent_hash IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                   ORDER BY created_at DESC";
        let rows: Vec<SessionRow> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(user_id).bind(now.0).fetch_all(p).await?);
        rows.into_iter().map(SessionRecord::try_from).collect()
    }

    async fn revoke_other_sessions(
        &self,
        user_id: &str,
        keep: &KeyHash,
        at: Timestamp,
    ) -> Result<Vec<KeyHash>, StoreError> {
        let others = "SELECT id_hash FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
                      AND id_hash <> $2 AND (parent_hash IS NULL OR parent_hash <> $2)";
        let revoke = "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
                      AND id_hash <> $2 AND (parent_hash IS NULL OR parent_hash <> $2)";
        let hashes: Vec<Vec<u8>> = in_tx!(self, tx => {
            let hashes: Vec<Vec<u8>> = sqlx::query_scalar(others).bind(user_id).bind(&keep.0[..]).fetch_all(&mut *tx).await?;
            sqlx::query(revoke).bind(user_id).bind(&keep.0[..]).bind(at.0).execute(&mut *tx).await?;
            for h in &hashes {
                sqlx::query(INSERT_CHANGE).bind(h).bind(at.0).execute(&mut *tx).await?;
            }
            hashes
        });
        hashes.iter().map(|h| hash_of(h)).collect()
    }

    async fn insert_ticket(
        &self,
        ticket: &KeyHash,
        parent: &KeyHash,
        host: &str,
        browser: &KeyHash,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO login_tickets (ticket_hash, parent_hash, host, expires_at, browser_hash) VALUES ($1, $2, $3, $4, $5)";
        on_db!(self, write, p => {
            sqlx::query(sql).bind(&ticket.0[..]).bind(&parent.0[..]).bind(host).bind(expires_at.0).bind(&browser.0[..]).execute(p).await?;
        });
        Ok(())
    }

    async fn redeem_ticket(
        &self,
        ticket: &KeyHash,
        host: &str,
        now: Timestamp,
    ) -> Result<Option<(KeyHash, Option<KeyHash>)>, StoreError> {
        // One statement: marking used and checking validity cannot be split by a concurrent redeemer.
        let sql = "UPDATE login_tickets SET used_at = $3 WHERE ticket_hash = $1 AND host = $2 AND used_at IS NULL \
                   AND expires_at > $3 RETURNING parent_hash, browser_hash";
        let row: Option<(Vec<u8>, Option<Vec<u8>>)> = on_db!(self, write, p => {
            sqlx::query_as(sql).bind(&ticket.0[..]).bind(host).bind(now.0).fetch_optional(p).await?
        });
        match row {
            None => Ok(None),
            Some((parent, browser)) => Ok(Some((hash_of(&parent)?, browser.as_deref().map(hash_of).transpose()?))),
        }
    }
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let insert =
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
        let select = "SELECT value FROM server_secrets WHERE name = $1";
        let value: Vec<u8> = on_db!(self, write, p => {
            sqlx::query(insert).bind(name).bind(&fresh).bind(Timestamp::now().0).execute(p).await?;
            sqlx::query_scalar(select).bind(name).fetch_one(p).await?
        });
        Ok(value)
    }

    async fn read_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let select = "SELECT value FROM server_secrets WHERE name = $1";
        Ok(on_db!(self, read, p => { sqlx::query_scalar(select).bind(name).fetch_optional(p).await? }))
    }

    async fn swap_secret(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let insert =
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
        let update = "UPDATE server_secrets SET value = $3 WHERE name = $1 AND value = $2";
        let swapped = in_tx!(self, tx => {
            let done = match expected {
                None => sqlx::query(insert).bind(name).bind(value).bind(audit.at.0).execute(&mut *tx).await?,
                Some(old) => sqlx::query(update).bind(name).bind(old).bind(value).execute(&mut *tx).await?,
            };
            let swapped = done.rows_affected() == 1;
            if swapped {
                record!(tx, audit);
            }
            swapped
        });
        Ok(swapped)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, read, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    fn known_down(&self) -> bool {
        self.breaker.is_open()
    }

    fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

// Declared last so the macros above are in scope.
// `macro_use`: the OAuth revocation macros serve the leak store too.
#[macro_use]
#[path = "sql_oauth.rs"]
mod oauth_sql;
pub use oauth_sql::client_feed_hash;

#[path = "sql_leaks.rs"]
mod leaks_sql;

#[path = "sql_identities.rs"]
mod identities_sql;

#[path = "sql_webhooks.rs"]
mod webhooks_sql;

#[path = "sql_signin.rs"]
mod signin_sql;

#[path = "sql_usage.rs"]
mod usage_sql;
