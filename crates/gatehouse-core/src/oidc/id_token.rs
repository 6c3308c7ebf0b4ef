//! ID-token validation (OpenID Connect Core 1.0 §3.1.3.7): the signature through the provider's keys
//! (by `jsonwebtoken`), then `iss`, `aud`, `azp`, `exp`, `iat` and `nonce`, against a clock reading
//! the caller passes. The algorithm comes from the provider's metadata and must suit the key; `none`
//! and HMAC are never accepted, and a key embedded in the token (`jwk`, `jku`, `x5u`) is never used.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::jwks::Jwks;

/// The longest ID token read (real ones are 1–4 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The most groups kept from the groups claim, and the longest group name.
pub const MAX_GROUPS: usize = 256;
pub const MAX_GROUP_LEN: usize = 256;

/// What the token must say, and the time it is judged at.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    /// The configured issuer, compared exactly.
    pub issuer: &'a str,
    /// Our client id: the audience (and `azp` when there are several audiences).
    pub client_id: &'a str,
    /// The nonce sent with this sign-in.
    pub nonce: &'a str,
    /// The provider's ID-token algorithms that we accept (`ProviderMetadata::id_token_algorithms`).
    pub algorithms: &'a [Algorithm],
    /// Now, in seconds since the epoch.
    pub now: i64,
    /// Clock skew allowed on `exp` and `iat`, in seconds.
    pub leeway: i64,
    /// The claim that carries group names (`groups` by default).
    pub groups_claim: &'a str,
}

/// What Gatehouse keeps of a valid ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdClaims {
    pub issuer: String,
    pub subject: String,
    /// Lower-cased, when present and plausible.
    pub email: Option<String>,
    /// Only a JSON `true` counts.
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Why a token was refused. Messages never contain the token or a claim's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a well-formed signed JWT")]
    Malformed,
    #[error("the ID token is signed with `{0}`, which is not one of the provider's accepted algorithms")]
    AlgorithmNotAllowed(String),
    #[error("no signing key of the provider matches the ID token's key id")]
    UnknownKey,
    #[error("the ID token's signature does not verify")]
    BadSignature,
    #[error("the ID token was issued by another issuer")]
    WrongIssuer,
    #[error("the ID token is not for this client")]
    WrongAudience,
    #[error("the ID token's authorized party is not this client")]
    WrongAuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token claims to be issued in the future")]
    IssuedInFuture,
    #[error("the ID token's nonce is not the one of this sign-in")]
    WrongNonce,
    #[error("the ID token has no valid `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the ID token marks a header parameter critical")]
    CriticalHeader,
}

/// The `alg` a token's header names, for a precise error when `jsonwebtoken` refuses the header
/// (it has no variant for `none`).
fn header_alg(token: &str) -> Option<String> {
    let header = B64.decode(token.split('.').next()?).ok()?;
    let v: Value = serde_json::from_slice(&header).ok()?;
    Some(v.get("alg")?.as_str()?.chars().take(32).collect())
}

/// The `kid` of a token's header, unverified (to decide whether the provider's keys must be loaded again).
pub fn key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Validates `token` against `keys` and `expect`. `UnknownKey` tells the caller to load the provider's
/// keys again (at most as often as it allows) and try once more.
pub fn validate_id_token(token: &str, keys: &Jwks, expect: &Expectations<'_>) -> Result<IdClaims, IdTokenError> {
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(IdTokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| match header_alg(token) {
        Some(alg) if alg.parse::<Algorithm>().is_err() => IdTokenError::AlgorithmNotAllowed(alg),
        _ => IdTokenError::Malformed,
    })?;
    if !expect.algorithms.contains(&header.alg) || !super::ASYMMETRIC.contains(&header.alg) {
        return Err(IdTokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    if header.crit.is_some() {
        return Err(IdTokenError::CriticalHeader);
    }
    let key = keys.find(header.kid.as_deref(), header.alg).ok_or(IdTokenError::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(&[expect.client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    // Time is judged below against the caller's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => IdTokenError::BadSignature,
        ErrorKind::InvalidIssuer => IdTokenError::WrongIssuer,
        ErrorKind::InvalidAudience => IdTokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => IdTokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)),
        ErrorKind::MissingRequiredClaim(c) => IdTokenError::MissingClaim(match c.as_str() {
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "exp",
        }),
        _ => IdTokenError::Malformed,
    })?;
    claims_of(&data.claims, expect)
}

fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        _ => None,
    }
}

/// The OpenID claim rules past the signature.
fn claims_of(c: &Map<String, Value>, expect: &Expectations<'_>) -> Result<IdClaims, IdTokenError> {
    let issuer = c.get("iss").and_then(Value::as_str).ok_or(IdTokenError::MissingClaim("iss"))?;
    if issuer != expect.issuer {
        return Err(IdTokenError::WrongIssuer);
    }
    let subject = c
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control))
        .ok_or(IdTokenError::MissingClaim("sub"))?;
    // Several audiences: `azp` must be present and be us. One: if `azp` is present it must be us.
    let several = matches!(c.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match c.get("azp") {
        Some(Value::String(azp)) if azp == expect.client_id => {}
        None if !several => {}
        _ => return Err(IdTokenError::WrongAuthorizedParty),
    }
    let expires_at = seconds(c.get("exp")).ok_or(IdTokenError::MissingClaim("exp"))?;
    if expect.now > expires_at.saturating_add(expect.leeway) {
        return Err(IdTokenError::Expired);
    }
    let issued_at = seconds(c.get("iat")).ok_or(IdTokenError::MissingClaim("iat"))?;
    if issued_at > expect.now.saturating_add(expect.leeway) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if let Some(nbf) = seconds(c.get("nbf")) {
        if nbf > expect.now.saturating_add(expect.leeway) {
            return Err(IdTokenError::IssuedInFuture);
        }
    }
    let nonce = c.get("nonce").and_then(Value::as_str).ok_or(IdTokenError::WrongNonce)?;
    if !bool::from(nonce.as_bytes().ct_eq(expect.nonce.as_bytes())) || expect.nonce.is_empty() {
        return Err(IdTokenError::WrongNonce);
    }
    Ok(IdClaims {
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        email: c.get("email").and_then(Value::as_str).and_then(plausible_email),
        email_verified: c.get("email_verified") == Some(&Value::Bool(true)),
        name: c
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.chars().filter(|ch| !ch.is_control()).take(200).collect()),
        groups: groups_of(c.get(expect.groups_claim)),
        expires_at,
    })
}

/// An email as Gatehouse stores them (trimmed, lower case), if it looks like one.
fn plausible_email(e: &str) -> Option<String> {
    let e = e.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

/// Group names from the groups claim: a list of strings or one string; anything else is no groups.
/// Names that are empty, too long or hold control characters are dropped; at most `MAX_GROUPS`.
fn groups_of(v: Option<&Value>) -> Vec<String> {
    let ok = |s: &&str| !s.is_empty() && s.len() <= MAX_GROUP_LEN && !s.chars().any(char::is_control);
    let mut out: Vec<String> = match v {
        Some(Value::Array(items)) => {
            items.iter().filter_map(Value::as_str).filter(ok).take(MAX_GROUPS).map(str::to_owned).collect()
        }
        Some(Value::String(s)) => Some(s.as_str()).filter(ok).map(str::to_owned).into_iter().collect(),
        _ => vec![],
    };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
