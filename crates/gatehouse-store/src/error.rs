//! Storage errors in words the server can map: unavailable (503), conflict (409), or a bug (500).

/// What went wrong in storage. Messages never contain secrets.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out; callers fail closed (503).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness or state conflict the caller caused (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data that does not parse; a bug or tampering.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else from the database.
    #[error("storage error: {0}")]
    Other(String),
}

/// Conversions that cannot fail (e.g. rows that map straight onto records) fit where a fallible one is expected.
impl From<std::convert::Infallible> for StoreError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// SQLite busy/locked/cannot-open and PostgreSQL connection/shutdown classes mean "try later", not "bug".
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => matches!(c, "5" | "6" | "14" | "517" | "261") || c.starts_with("08") || c.starts_with("57P"),
        None => false,
    }
}
