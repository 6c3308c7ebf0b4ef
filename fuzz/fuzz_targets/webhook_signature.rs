//! The `Gatehouse-Signature` header a receiver checks (SPEC §6): any header verifies or is refused,
//! never panics; a header the signer made for the body verifies, and the same header over another
//! body does not. Input: `header \n body`.
#![no_main]

use gatehouse_webhook::{sign_header, verify};
use libfuzzer_sys::fuzz_target;

const SECRETS: [&str; 2] = ["whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A=", "whsec_b2xkLXNlY3JldA=="];
const NOW: i64 = 1_780_000_000;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (head, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    if let Ok(header) = std::str::from_utf8(head) {
        let _ = verify(header, body, &SECRETS, NOW, 300);
        let _ = verify(header, body, &[], NOW, u64::MAX);
    }
    let signed = sign_header(&SECRETS[..1], NOW, body);
    assert_eq!(verify(&signed, body, &SECRETS, NOW, 300), Ok(()));
    let mut other = body.to_vec();
    other.push(b'x');
    assert!(verify(&signed, &other, &SECRETS, NOW, 300).is_err());
});
