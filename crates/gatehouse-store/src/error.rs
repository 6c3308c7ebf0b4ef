//! Storage errors in words the server can map: unavailable (503), conflict (409), or a bug (500).

/// What went wrong in storage. Messages never contain secrets.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out; callers fail closed (503).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The disk (or the database's space) is full: writes fail, reads still work. Callers fail
    /// closed (503) as for `Unavailable`, but the breaker stays closed, so reads go on.
    #[error("storage is full: {0}")]
    Full(String),
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
            sqlx::Error::Database(db) if is_full_code(db.code().as_deref()) => {
                StoreError::Full(db.message().to_owned())
            }
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// The error code's backend: PostgreSQL's SQLSTATEs are five characters; SQLite's (extended) result
/// codes are decimal numbers below 10,000.
enum Code {
    Postgres(String),
    /// Primary result code (the low byte of the extended code).
    Sqlite(u32),
}

fn classify(code: Option<&str>) -> Option<Code> {
    let c = code?;
    if c.len() == 5 {
        return Some(Code::Postgres(c.to_owned()));
    }
    c.parse::<u32>().ok().map(|n| Code::Sqlite(n & 0xff))
}

/// SQLite busy/locked/cannot-open and PostgreSQL connection/shutdown classes mean "try later", not "bug".
fn is_unavailable_code(code: Option<&str>) -> bool {
    match classify(code) {
        Some(Code::Sqlite(c)) => matches!(c, 5 | 6 | 14),
        Some(Code::Postgres(c)) => c.starts_with("08") || c.starts_with("57P") || c == "53300",
        None => false,
    }
}

/// SQLite's SQLITE_FULL (13) and the write errors of a full disk (SQLITE_IOERR, 10, e.g. a WAL write
/// that hit ENOSPC); PostgreSQL's class 53 (disk full, out of memory, …) but for too_many_connections
/// (53300), which is the server refusing a connection: unavailable.
fn is_full_code(code: Option<&str>) -> bool {
    match classify(code) {
        Some(Code::Sqlite(c)) => matches!(c, 10 | 13),
        Some(Code::Postgres(c)) => c.starts_with("53") && c != "53300",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_backend() {
        let cases: &[(Option<&str>, bool, bool)] = &[
            // (code, unavailable, full)
            (Some("5"), true, false),     // SQLITE_BUSY
            (Some("517"), true, false),   // SQLITE_BUSY_SNAPSHOT
            (Some("6"), true, false),     // SQLITE_LOCKED
            (Some("262"), true, false),   // SQLITE_LOCKED_SHAREDCACHE
            (Some("14"), true, false),    // SQLITE_CANTOPEN
            (Some("13"), false, true),    // SQLITE_FULL
            (Some("778"), false, true),   // SQLITE_IOERR_WRITE
            (Some("10"), false, true),    // SQLITE_IOERR
            (Some("19"), false, false),   // SQLITE_CONSTRAINT
            (Some("2067"), false, false), // SQLITE_CONSTRAINT_UNIQUE
            (Some("08006"), true, false), // connection_failure
            (Some("57P01"), true, false), // admin_shutdown
            (Some("53100"), false, true), // disk_full
            (Some("53300"), true, false), // too_many_connections
            (Some("53200"), false, true), // out_of_memory
            (Some("23505"), false, false),
            (Some("22012"), false, false), // five digits: PostgreSQL's, not SQLite's 22012 & 0xff
            (Some(""), false, false),
            (Some("x"), false, false),
            (None, false, false),
        ];
        for &(code, unavailable, full) in cases {
            assert_eq!(is_unavailable_code(code), unavailable, "{code:?}");
            assert_eq!(is_full_code(code), full, "{code:?}");
        }
    }
}
