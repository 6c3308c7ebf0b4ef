//! Gatehouse's services, apart from HTTP: key, user, session, OAuth and webhook lifecycles, the key
//! verifier with its cache, rate limits, assertion signing and metrics. The management API, the
//! gateway, the login pages and the CLI all call these; none of them is known here.
//!
//! This crate depends on no HTTP framework (no axum, hyper, tower, reqwest or http); `scripts/test.sh`
//! checks it with `cargo tree`.

pub mod access;
pub mod assertion;
pub mod audit;
pub mod batch;
pub mod error;
pub mod external;
pub mod ids;
pub mod keys;
pub mod leaks;
pub mod limiter;
pub mod metrics;
pub mod oauth;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod verifier;
pub mod webhooks;

pub use error::ServiceError;
