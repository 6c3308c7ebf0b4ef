//! API keys read from headers (SPEC §4.1): any string either parses to a key that is exactly itself
//! (kind, environment and checksum holding) or is refused; the masked form never holds the secret
//! part, and masking a text with the key in it never leaves the key whole.
#![no_main]

use gatehouse_core::apikey::{mask, mask_keys_in, ApiKey, Namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let ns = Namespace::default();
    if let Ok(key) = ApiKey::parse(&ns, s) {
        assert_eq!(key.as_str(), s);
        assert!(key.display_prefix().len() < s.len());
        let m = mask(s);
        assert!(!m.contains(&s[s.len() - 20..]), "the mask shows the secret part");
        let text = format!("before {s} after");
        assert!(!mask_keys_in(&text, &ns).contains(s), "a key survived masking");
    }
    let _ = mask(s);
    let _ = mask_keys_in(s, &ns);
});
