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
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
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
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}
