//! Gatehouse's domain: the types and rules every other crate builds on.
//!
//! Nothing here does I/O. Parsers turn untrusted strings into types that cannot be wrong
//! (`ApiKey::parse`, `Scope::parse`, `IpAllowlist::parse`), and the verification rules of
//! SPEC §4.3 are a pure function over a stored key record and the request's context.

pub mod access;
pub mod apikey;
pub mod authority;
pub mod base62;
pub mod credentials;
pub mod deny;
pub mod destination;
pub mod gateway;
pub mod https_redirect;
pub mod id;
pub mod ipallow;
pub mod leak;
pub mod leak_scan;
pub mod oauth;
pub mod oidc;
pub mod path;
pub mod ratelimit;
pub mod record;
pub mod route;
pub mod scope;
pub mod secret;
pub mod spacefile;
pub mod time;

pub use crate::time::Timestamp;
pub use apikey::{ApiKey, Environment, KeyHash, KeyKind, KeyParseError, Namespace};
pub use deny::{DenyClass, DenyReason};
pub use ipallow::IpAllowlist;
pub use record::{KeyRecord, RateLimitOverride, VerifyContext};
pub use scope::{Scope, ScopeSet};
pub use secret::SecretString;
