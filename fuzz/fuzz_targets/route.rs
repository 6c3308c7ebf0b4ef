//! Route patterns of the Spacefile and config (`METHOD[,METHOD] /path/*`), and matching them: the
//! input is `pattern \n method \n path`. Parsing and matching never panic, and a pattern that names
//! methods never matches a method it does not name (HEAD goes with GET).
#![no_main]

use gatehouse_core::route::RoutePattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut parts = s.splitn(3, '\n');
    let (pattern, method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
    let Ok(p) = RoutePattern::parse(pattern) else { return };
    let matched = p.matches(method, path);
    if matched && p.is_method_qualified() {
        let (methods, _) = pattern.split_once(' ').unwrap();
        let named = |m: &str| methods.split(',').any(|x| x == m);
        assert!(named(method) || (method == "HEAD" && named("GET")), "{pattern:?} matched {method}");
    }
});
