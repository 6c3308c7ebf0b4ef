//! Fuzzes the one reading of `Authorization` and `X-Space-App-Key`: never panics, and keeps its
//! promises on any bytes.

#![no_main]

use base64::Engine;
use gatehouse_core::credentials::{looks_like_api_key, AppKeyHeader, AuthorizationHeader, Credential};
use gatehouse_core::gateway::Authorization;
use gatehouse_core::Namespace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').take(4).collect();
    let header = AuthorizationHeader::parse(values.iter().copied());
    match (values.len(), header) {
        (0, AuthorizationHeader::Absent) | (2.., AuthorizationHeader::Repeated) | (1, AuthorizationHeader::One(_)) => {}
        (n, h) => panic!("{n} values read as {h:?}"),
    }
    for value in &values {
        match Credential::parse(value) {
            Credential::Bearer(token) => {
                assert!(!token.is_empty() && token == token.trim(), "bearer token {token:?}");
                assert!(value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "), "{value:?}");
                let _ = looks_like_api_key(&Namespace::default(), token);
            }
            Credential::Basic(payload) => {
                if let Some(basic) = payload.decode() {
                    let text = match &basic.password {
                        Some(pw) => format!("{}:{}", basic.user, pw.expose()),
                        None => basic.user.clone(),
                    };
                    let again = base64::engine::general_purpose::STANDARD.encode(text);
                    let sent = std::str::from_utf8(value).unwrap();
                    assert_eq!(sent.split_once(' ').map(|(_, p)| p.trim()).unwrap_or(""), again);
                }
            }
            Credential::Other => {}
        }
    }
    // The gateway's view never invents a bearer token.
    if let Authorization::Bearer(t) = header.for_decision() {
        assert!(matches!(header, AuthorizationHeader::One(Credential::Bearer(u)) if u == t));
    }
    match AppKeyHeader::parse(values.iter().copied()) {
        AppKeyHeader::One(key) => assert!(key.is_empty() || key.as_bytes() == values[0]),
        AppKeyHeader::Absent => assert!(values.is_empty()),
        AppKeyHeader::Repeated => assert!(values.len() > 1),
    }
});
