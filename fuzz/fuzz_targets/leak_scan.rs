//! Fuzzes `gatehouse_core::leak_scan::Scanner`, which `gatehouse scan` runs over every file and git blob
//! it meets: never panics, and every credential it reports is in bounds, in order, not overlapping,
//! of exactly its kind's shape (API keys with a valid checksum), and found again on its own.

#![no_main]

use gatehouse_core::apikey::ApiKey;
use gatehouse_core::leak_scan::{CredentialKind, Scanner};
use gatehouse_core::Namespace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ns = Namespace::default();
    let scanner = Scanner::new(&ns);
    let found = scanner.find_all(data);
    let mut end = 0;
    for f in &found {
        assert!(f.start >= end && f.end() <= data.len(), "{f:?} after {end}");
        end = f.end();
        let text = f.text(data);
        if f.kind.is_api_key() {
            let key = ApiKey::parse(&ns, text).expect("a reported key parses with its checksum");
            assert_eq!(key.as_str(), text);
        } else if f.kind == CredentialKind::WebhookSecret {
            assert!(text.starts_with("whsec_") && text.len() == 50 && text.ends_with('='));
        } else {
            assert!(text.starts_with("gth_") && text.len() == 50);
        }
        // On its own (with its neighbours), the same credential is found at the same place.
        let from = f.start.saturating_sub(1);
        let to = (f.end() + 1).min(data.len());
        let again = scanner.find_all(&data[from..to]);
        assert!(again.iter().any(|g| g.start + from == f.start && g.len == f.len && g.kind == f.kind), "{f:?}");
    }
    // Starting later never finds something that starting at 0 skipped.
    if let Some(first) = scanner.find(data, data.len() / 2) {
        assert!(found.iter().any(|f| f.start == first.start) || found.iter().any(|f| f.start < first.start && f.end() > first.start));
    }
});
