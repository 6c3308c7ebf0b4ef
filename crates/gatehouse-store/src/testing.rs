//! Test helpers: a fresh database per test on either backend, removed when the guard drops (even on panic).

use std::path::PathBuf;

use rand::Rng;

use crate::{SqlStore, StoreOptions};

/// Which backend a story runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server used for fresh PostgreSQL test databases (`GATEHOUSE_TEST_POSTGRES_URL`, default the local trust-auth server).
pub fn postgres_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database that is deleted when this guard drops.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    /// `postgres://…/gatehouse_test_…` or the path of the SQLite file.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("gatehouse.db");
                TestDb { backend, url: path.display().to_string(), dir: Some(dir), pg_name: None }
            }
            Backend::Postgres => {
                let name = format!("gatehouse_test_{:016x}", rand::thread_rng().gen::<u64>());
                let admin = postgres_admin_url();
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL must be running for the postgres tests ({admin}): {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb { backend, url: format!("{base}/{name}"), dir: None, pg_name: Some(name) }
            }
        }
    }

    /// Opens (and migrates) the store on this database.
    pub async fn store(&self) -> SqlStore {
        SqlStore::open(&self.url, &StoreOptions::default()).await.expect("open store")
    }

    /// The SQLite data directory, for tests that run the CLI or server on a data dir.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs inside a runtime; do the async cleanup on a thread of its own.
        let admin = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// Inserts `count` real keys (random secrets, correct hashes) straight into the `api_keys` table in
/// batches, without audit entries: for benchmarks that need a large table, not for anything users see.
/// Returns the secrets in insertion order.
pub async fn seed_keys(url: &str, count: usize, env: gatehouse_core::Environment) -> Vec<String> {
    use gatehouse_core::apikey::{generate, ApiKey, Namespace};
    let ns = Namespace::default();
    let mut secrets = Vec::with_capacity(count);
    let now = gatehouse_core::Timestamp::now().0;
    let store = SqlStore::open(url, &StoreOptions::default()).await.expect("open store");
    store.close().await;
    let mut rows: Vec<(String, Vec<u8>, String, String)> = Vec::with_capacity(1000);
    let is_pg = url.starts_with("postgres");
    let sqlite = if is_pg {
        None
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Some(sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await.expect("sqlite"))
    };
    let pg = if is_pg { Some(sqlx::PgPool::connect(url).await.expect("postgres")) } else { None };
    for i in 0..count {
        let secret = generate(&ns, gatehouse_core::KeyKind::Secret, env, &mut rand::rngs::OsRng);
        let parsed = ApiKey::parse(&ns, secret.expose()).expect("generated keys parse");
        rows.push((
            gatehouse_core::id::new_id("key", gatehouse_core::Timestamp(now), &mut rand::thread_rng()),
            parsed.hash().0.to_vec(),
            parsed.display_prefix(),
            parsed.last4().to_owned(),
        ));
        secrets.push(secret.expose().to_owned());
        if rows.len() == 1000 || i + 1 == count {
            let mut sql = String::from(
                "INSERT INTO api_keys (id, key_hash, workspace, environment, kind, name, scopes, ip_allowlist, metadata, \
                 display_prefix, last4, created_at, created_by) VALUES ",
            );
            for (n, _) in rows.iter().enumerate() {
                let b = n * 4;
                if n > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, 'default', '{}', 'sk', 'seeded', '[]', '[]', '{{}}', ${}, ${}, {now}, 'seed')",
                    b + 1,
                    b + 2,
                    env.as_str(),
                    b + 3,
                    b + 4
                ));
            }
            macro_rules! run {
                ($pool:expr) => {{
                    let mut q = sqlx::query(&sql);
                    for (id, hash, prefix, last4) in &rows {
                        q = q.bind(id).bind(hash).bind(prefix).bind(last4);
                    }
                    q.execute($pool).await.expect("seed insert");
                }};
            }
            match (&sqlite, &pg) {
                (Some(p), _) => run!(p),
                (_, Some(p)) => run!(p),
                _ => unreachable!(),
            }
            rows.clear();
        }
    }
    if let Some(p) = sqlite {
        p.close().await;
    }
    if let Some(p) = pg {
        p.close().await;
    }
    secrets
}
