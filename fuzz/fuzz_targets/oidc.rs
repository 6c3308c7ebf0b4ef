//! Fuzzes what Gatehouse reads from an identity provider (SPEC §15): the discovery document, the JWK
//! Set and an ID token judged against that set. Never panics, and keeps the parsers' promises: a
//! document that parses names only accepted algorithms and good endpoints; no token made of fuzzer
//! bytes verifies (that would be a forged signature).
//!
//! Input: `JWKS \n token` (the token is every byte after the first `\n`); the whole input is also
//! read as a discovery document.

#![no_main]

use gatehouse_core::oidc::{endpoint_ok, validate_id_token, Expectations, Jwks, ProviderMetadata, ASYMMETRIC};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://idp.example.com";

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ProviderMetadata::parse(data, ISSUER) {
        assert_eq!(m.issuer, ISSUER);
        assert!(!m.id_token_algorithms.is_empty());
        assert!(m.id_token_algorithms.iter().all(|a| ASYMMETRIC.contains(a)));
        for e in [&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri] {
            assert!(endpoint_ok(e, false), "{e}");
        }
    }
    let mut parts = data.splitn(2, |&b| b == b'\n');
    let jwks = parts.next().and_then(|j| Jwks::parse(j).ok()).unwrap_or_default();
    if let Some(token) = parts.next().and_then(|t| std::str::from_utf8(t).ok()) {
        let expect = Expectations {
            issuer: ISSUER,
            client_id: "gatehouse",
            nonce: "n",
            algorithms: ASYMMETRIC,
            now: 1_800_000_000,
            leeway: 60,
            groups_claim: "groups",
        };
        assert!(validate_id_token(token, &jwks, &expect).is_err());
    }
});
