//! The OAuth 2.0 authorization server's HTTP side (SPEC §7): the endpoints (`endpoints`) over
//! `gatehouse_services::oauth::OAuthService`. Errors on the OAuth endpoints use the RFC 6749 format
//! (`error`), not the management API's.

pub(crate) mod endpoints;
pub(crate) mod error;
