//! Fuzzes the plain-HTTP listener's redirect: never panics, and every `Location` it answers is
//! `https://` + one of the configured authorities + an absolute path, so no input makes it an open
//! redirect. Input: `Host` values, one a line; the last line is the request's path and query.

#![no_main]

use gatehouse_core::https_redirect::HttpsHosts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut hosts = HttpsHosts::default();
    hosts.add("app.test", 8443);
    hosts.add("shop.test:9443", 443);
    hosts.add("[::1]", 443);
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').take(4).collect();
    let path = lines.pop().unwrap_or(b"/");
    let (host_headers, target) = match lines.first() {
        Some(first) if first.starts_with(b"abs:") => (&lines[1..], Some(&first[4..])),
        _ => (&lines[..], None),
    };
    if let Ok(location) = hosts.location(host_headers, target, path) {
        let rest = location.strip_prefix("https://").expect("always https");
        let ok = hosts.authorities().any(|a| rest.strip_prefix(a).is_some_and(|p| p.starts_with('/')));
        assert!(ok, "{location} names no configured authority");
        assert!(!location.bytes().any(|b| b.is_ascii_control() || b == b' '), "{location:?}");
    }
});
