//! Fuzzes what GitHub's secret scanning partner endpoint and report-a-leak read from the network:
//! the two signature headers, the batch of matches, a report-a-leak body, the published key list,
//! and the recognition of each reported string. Never panics, and keeps the parsers' promises.
//!
//! Input: `key id \n signature \n body` (the body is every byte after the second `\n`).

#![no_main]

use gatehouse_core::leak::{
    parse_github_batch, parse_key_list, parse_leak_report, parse_signature_headers, pem_of_p256_point,
    p256_point_of_pem, recognise, MAX_BATCH_ITEMS, MAX_TOKEN_LEN,
};
use gatehouse_core::{KeyHash, Namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let key_id = parts.next();
    let signature = parts.next();
    let body = parts.next().unwrap_or_default();
    if let Ok(sig) = parse_signature_headers(key_id, signature) {
        assert!((8..=72).contains(&sig.der.len()) && sig.der[0] == 0x30, "{sig:?}");
        assert!(!sig.key_id.is_empty() && sig.key_id.len() <= 128);
    }
    let ns = Namespace::default();
    let check = |token: &str| {
        if let Some(r) = recognise(&ns, token) {
            assert_eq!(r.hash, KeyHash::of(token));
            assert!(token.len() < 16 || !r.masked.contains(token), "the masked form hides the token");
        }
    };
    if let Ok(items) = parse_github_batch(body) {
        assert!(items.len() <= MAX_BATCH_ITEMS);
        for t in &items {
            assert!(!t.token.is_empty() && t.token.len() <= MAX_TOKEN_LEN);
            assert!(!t.url.chars().any(char::is_control) && !t.token_type.chars().any(char::is_control));
            check(&t.token);
        }
    }
    if let Ok(creds) = parse_leak_report(body) {
        assert!(creds.len() <= MAX_BATCH_ITEMS);
        creds.iter().for_each(|c| check(c));
    }
    if let Ok(list) = parse_key_list(body) {
        for k in list.keys {
            assert_eq!(k.point.len(), 65);
            assert_eq!(p256_point_of_pem(&pem_of_p256_point(&k.point)), Some(k.point.clone()));
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        check(text);
        if let Some(point) = p256_point_of_pem(text) {
            assert_eq!(point.len(), 65);
        }
    }
});
