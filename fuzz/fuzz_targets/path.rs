//! Request paths (SPEC §3 "Path safety"): a path the normaliser accepts starts with `/`, has no dot
//! segment, no `//`, nothing it would refuse, and normalises to itself (one reading only).
#![no_main]

use gatehouse_core::path::NormalizedPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(p) = NormalizedPath::parse(raw) else { return };
    let s = p.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    assert!(!s.contains("//"), "{s:?}");
    assert!(!s.split('/').any(|seg| seg == "." || seg == ".."), "{s:?}");
    assert!(!s.contains('\\') && !s.contains(';') && !s.contains('#'), "{s:?}");
    assert!(!s.bytes().any(|b| b.is_ascii_control()), "{s:?}");
    assert_eq!(NormalizedPath::parse(s).as_ref(), Ok(&p), "not a fixed point: {raw:?} -> {s:?}");
    if let Some(rest) = p.strip_mount("/api") {
        assert!(rest.as_str().starts_with('/'));
    }
});
