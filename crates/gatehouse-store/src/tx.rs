//! Write transactions that never hand a broken connection back to the pool.
//!
//! sqlx's own `Transaction` counts its depth on the connection and, when dropped uncommitted, queues
//! a `ROLLBACK`. When a `COMMIT` fails because SQLite already rolled the transaction back itself — as
//! it does for a full disk (`SQLITE_FULL`) or a failed write (`SQLITE_IOERR`) — that `ROLLBACK` fails
//! too ("no transaction is active"), the depth stays at one, and every later `BEGIN` on the pooled
//! connection fails with "attempted to call begin_with at non-zero transaction depth": one full disk
//! turned into 500s for good. Here the transaction is plain SQL on a pooled connection: committed, it
//! goes back to the pool; failed or dropped part-way (an error returned with `?`, a cancelled request)
//! the connection is closed instead, which ends whatever transaction it held, and the pool opens a new
//! one when it needs it.

use std::future::Future;
use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::StoreError;

/// An open transaction on one pooled connection; derefs to the connection for queries.
pub(crate) struct Tx<DB: Database> {
    conn: PoolConnection<DB>,
    open: bool,
}

/// Starting a [`Tx`] on a pool, the same call for both backends (the store's bodies are written
/// once and expanded for each pool type).
pub(crate) trait Begin {
    type Db: Database;
    /// Takes a connection and runs `begin` (`BEGIN`, or SQLite's `BEGIN IMMEDIATE`) on it.
    fn begin_tx(&self, begin: &'static str) -> impl Future<Output = Result<Tx<Self::Db>, StoreError>> + Send;
}

/// The three statements, once per backend: concrete types, so the futures of the store's
/// `async_trait` methods stay `Send` (a bound over every connection lifetime would not).
macro_rules! tx_for {
    ($db:ty) => {
        impl Begin for Pool<$db> {
            type Db = $db;
            fn begin_tx(&self, begin: &'static str) -> impl Future<Output = Result<Tx<$db>, StoreError>> + Send {
                async move {
                    // Open from the start: a BEGIN that fails part-way closes the connection too.
                    let mut tx = Tx { conn: self.acquire().await?, open: true };
                    sqlx::query(begin).execute(&mut *tx.conn).await?;
                    Ok(tx)
                }
            }
        }

        impl Tx<$db> {
            pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
                sqlx::query("COMMIT").execute(&mut *self.conn).await?;
                self.open = false;
                Ok(())
            }

            pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
                sqlx::query("ROLLBACK").execute(&mut *self.conn).await?;
                self.open = false;
                Ok(())
            }
        }
    };
}

tx_for!(sqlx::Sqlite);
tx_for!(sqlx::Postgres);

impl<DB: Database> Drop for Tx<DB> {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl<DB: Database> Deref for Tx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: Database> DerefMut for Tx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}
