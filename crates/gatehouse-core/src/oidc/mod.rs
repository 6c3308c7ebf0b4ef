//! OpenID Connect, the part without I/O (SPEC §15): what Gatehouse reads from an identity provider —
//! its discovery document (`metadata`), its signing keys (`jwks`) and the ID tokens it signs
//! (`id_token`) — parsed into types that cannot be wrong. Signatures are checked by `jsonwebtoken`
//! (RustCrypto backend); what is ours is the choice of key and algorithm and the OpenID claim rules.
//! Fetching, caching and the browser flow are the server's (`gatehouse_server::oidc`).

pub mod id_token;
pub mod jwks;
pub mod metadata;

pub use id_token::{validate_id_token, Expectations, IdClaims, IdTokenError};
pub use jwks::{Jwks, JwksError};
pub use metadata::{MetadataError, ProviderMetadata, TokenAuth};

/// The signing algorithms an ID token may use: asymmetric only. `none` and the HMAC family are never
/// accepted, whatever a provider advertises (an HMAC "key" would be the client secret or, worse, the
/// provider's public key).
pub const ASYMMETRIC: &[jsonwebtoken::Algorithm] = &[
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// The asymmetric algorithm called `name` (`RS256`, …), if it is one we accept.
pub fn asymmetric_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    let alg: jsonwebtoken::Algorithm = name.parse().ok()?;
    ASYMMETRIC.contains(&alg).then_some(alg)
}

/// Whether `url` is an absolute `https` URL (or `http` when `allow_http`: a provider on loopback in
/// development), with a host and without credentials or a fragment — what every endpoint a provider
/// names must be.
pub fn endpoint_ok(url: &str, allow_http: bool) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    let scheme_ok = u.scheme() == "https" || (allow_http && u.scheme() == "http");
    scheme_ok
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && u.fragment().is_none()
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Whether an issuer may be served over plain HTTP: only on a loopback host (a provider run on the
/// same machine for development or tests).
pub fn loopback_http(issuer: &str) -> bool {
    let Ok(u) = url::Url::parse(issuer) else { return false };
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        }
}

/// An issuer as configured: an `https` URL (or `http` on loopback) without query or fragment.
pub fn issuer_ok(issuer: &str) -> bool {
    let Ok(u) = url::Url::parse(issuer) else { return false };
    endpoint_ok(issuer, loopback_http(issuer)) && u.query().is_none()
}

/// Where an issuer's discovery document is: `<issuer>/.well-known/openid-configuration` (OpenID
/// Connect Discovery 1.0 §4, a trailing `/` of the issuer not doubled).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_issuers() {
        let rows = [
            ("https://accounts.google.com", true, true),
            ("https://login.microsoftonline.com/tid/v2.0", true, true),
            ("http://127.0.0.1:9000", true, true),
            ("http://localhost:9000/realms/x", true, true),
            ("http://[::1]:9000", true, true),
            ("http://idp.example.com", false, false),
            ("https://idp.example.com/?tenant=x", true, false),
            ("https://user:pw@idp.example.com", false, false),
            ("https://idp.example.com/#f", false, false),
            ("javascript:alert(1)", false, false),
            ("https://", false, false),
            ("/relative", false, false),
            ("https://idp.example.com/a b", false, false),
            ("", false, false),
        ];
        for (url, endpoint, issuer) in rows {
            assert_eq!(endpoint_ok(url, loopback_http(url)), endpoint, "endpoint {url}");
            assert_eq!(issuer_ok(url), issuer, "issuer {url}");
        }
        assert_eq!(discovery_url("https://x.example/"), "https://x.example/.well-known/openid-configuration");
        assert_eq!(asymmetric_algorithm("RS256"), Some(jsonwebtoken::Algorithm::RS256));
        for name in ["HS256", "HS512", "none", "None", "", "rs256"] {
            assert_eq!(asymmetric_algorithm(name), None, "{name}");
        }
    }
}
