//! Why a credential was refused, in the vocabulary of SPEC §5. The server maps the class to a status.

use std::fmt;

use crate::scope::Scope;

/// Which of 401 / 403 / 429 a refusal belongs to; they are never collapsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyClass {
    /// 401: the credential is missing, malformed, unknown, revoked or expired.
    Authentication,
    /// 403: the credential is valid but not allowed here.
    Permission,
    /// 429: valid and authorized, but over its limit.
    RateLimit,
}

/// One refusal with its wire `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    MissingCredentials,
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    InvalidToken,
    /// An API key sent to a micro whose Spacefile does not enable `presets.api_keys`.
    KeyNotAcceptedHere,
    InsufficientScope(Scope),
    /// A restricted credential on a route that declares no scope (SPEC §4.4).
    RouteHasNoScope,
    IpNotAllowed,
    EnvironmentMismatch,
    AppNotAllowed,
    /// A signed-in person whom the app's access policy does not list (SPEC §15).
    AccountNotAllowed,
    RateLimited {
        retry_after_secs: u64,
    },
    /// Creating something stronger than the creating credential (SPEC §11 "authority never grows").
    ExceedsAuthority(crate::authority::Excess),
}

impl DenyReason {
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::MissingCredentials => "missing_credentials",
            DenyReason::InvalidApiKey | DenyReason::KeyNotAcceptedHere => "invalid_api_key",
            DenyReason::ApiKeyRevoked => "api_key_revoked",
            DenyReason::ApiKeyExpired => "api_key_expired",
            DenyReason::InvalidToken => "invalid_token",
            DenyReason::InsufficientScope(_) | DenyReason::RouteHasNoScope => "insufficient_scope",
            DenyReason::IpNotAllowed => "ip_not_allowed",
            DenyReason::EnvironmentMismatch => "environment_mismatch",
            DenyReason::AppNotAllowed | DenyReason::AccountNotAllowed => "app_not_allowed",
            DenyReason::RateLimited { .. } => "rate_limited",
            DenyReason::ExceedsAuthority(e) => e.dimension.code(),
        }
    }

    pub fn class(&self) -> DenyClass {
        match self {
            DenyReason::MissingCredentials
            | DenyReason::InvalidApiKey
            | DenyReason::ApiKeyRevoked
            | DenyReason::ApiKeyExpired
            | DenyReason::InvalidToken
            | DenyReason::KeyNotAcceptedHere => DenyClass::Authentication,
            DenyReason::InsufficientScope(_)
            | DenyReason::RouteHasNoScope
            | DenyReason::IpNotAllowed
            | DenyReason::EnvironmentMismatch
            | DenyReason::AppNotAllowed
            | DenyReason::AccountNotAllowed
            | DenyReason::ExceedsAuthority(_) => DenyClass::Permission,
            DenyReason::RateLimited { .. } => DenyClass::RateLimit,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::MissingCredentials => f.write_str("No credentials were provided."),
            DenyReason::InvalidApiKey => f.write_str("The API key is not valid."),
            DenyReason::ApiKeyRevoked => f.write_str("The API key has been revoked."),
            DenyReason::ApiKeyExpired => f.write_str("The API key has expired."),
            DenyReason::InvalidToken => f.write_str("The access token is not valid."),
            DenyReason::KeyNotAcceptedHere => {
                f.write_str("This micro does not accept API keys; its Spacefile does not enable presets.api_keys.")
            }
            DenyReason::RouteHasNoScope => f.write_str(
                "Restricted credentials are refused on this route because it declares no scope (route_scopes in the Spacefile).",
            ),
            DenyReason::InsufficientScope(s) => write!(f, "This request needs the scope `{s}`, which the credential does not hold."),
            DenyReason::IpNotAllowed => f.write_str("The credential may not be used from this IP address."),
            DenyReason::EnvironmentMismatch => f.write_str("The credential belongs to a different environment (live/test)."),
            DenyReason::AppNotAllowed => f.write_str("The credential may not be used for this app."),
            DenyReason::AccountNotAllowed => f.write_str(
                "The signed-in account may not open this app: its access policy does not list it. Sign in with another account.",
            ),
            DenyReason::RateLimited { retry_after_secs } => {
                write!(f, "Too many requests for this credential; retry after {retry_after_secs} s.")
            }
            DenyReason::ExceedsAuthority(e) => f.write_str(&e.message),
        }
    }
}
