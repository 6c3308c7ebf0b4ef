//! Any bytes given to the Spacefile parser end in a Spacefile or in errors that name a line or the
//! document, quickly, and never in a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = gatehouse_core::spacefile::parse_bytes("Spacefile", data) {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(e.to_string().starts_with("Spacefile"));
        }
    }
});
