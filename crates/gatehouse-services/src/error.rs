//! The error every service returns, in domain words; the server maps it to HTTP statuses.

use gatehouse_core::DenyReason;
use gatehouse_store::StoreError;

/// What a lifecycle operation can fail with, in domain words.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Denied(DenyReason),
    #[error(transparent)]
    Store(#[from] StoreError),
}
