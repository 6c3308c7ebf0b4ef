//! What an OAuth client sends (SPEC §7): redirect URIs, `scope`, PKCE challenges and verifiers. The
//! input is `redirect_uri \n presented \n scope \n verifier \n challenge`. An accepted redirect URI
//! matches itself exactly; a presented one that differs from the registered one matches only as
//! a loopback http URI on another port; every
//! accepted scope prints to a token that parses back to itself.
#![no_main]

use gatehouse_core::oauth::{parse_scope_param, pkce_s256_ok, redirect_uri_matches, valid_challenge, validate_redirect_uri};
use gatehouse_core::scope::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut parts = s.splitn(5, '\n');
    let mut next = || parts.next().unwrap_or("");
    let (uri, presented, scope, verifier, challenge) = (next(), next(), next(), next(), next());
    if validate_redirect_uri(uri).is_ok() {
        assert!(redirect_uri_matches(uri, uri), "{uri:?} does not match itself");
    }
    if redirect_uri_matches(uri, presented) && uri != presented {
        // Only a loopback http URI on another port is another URI that matches (RFC 8252 §7.3).
        assert!(uri.starts_with("http://") && presented.starts_with("http://"), "{uri:?} ~ {presented:?}");
        assert!(!presented.contains('#'), "{presented:?}");
    }
    if let Ok(scopes) = parse_scope_param(scope) {
        for sc in scopes {
            let printed = sc.to_string();
            assert_eq!(Scope::parse(&printed).map(|p| p.to_string()), Ok(printed));
        }
    }
    let _ = valid_challenge(challenge);
    let _ = pkce_s256_ok(verifier, challenge);
});
