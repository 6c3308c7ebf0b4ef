//! Fuzzes the access policy parser (`gatehouse_core::access`, SPEC §15): any lists either parse or
//! are refused with a reason, never a panic; what parses lets in exactly the people it lists.
//!
//! Input: lines, each `e`, `d`, `r` or `g` (emails, domains, roles, groups) followed by the entry.

#![no_main]

use gatehouse_core::access::{decide, AccessPolicy, PolicyLists, Subject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lists = PolicyLists::default();
    for line in text.split('\n') {
        let mut chars = line.chars();
        let list = match chars.next() {
            Some('e') => &mut lists.emails,
            Some('d') => &mut lists.domains,
            Some('r') => &mut lists.roles,
            Some('g') => &mut lists.groups,
            _ => continue,
        };
        list.push(chars.as_str().to_owned());
    }
    let Ok(policy) = AccessPolicy::parse(&lists) else { return };
    // Normalizing is idempotent: the parsed lists parse to the same policy.
    let normalized = policy.lists();
    assert_eq!(AccessPolicy::parse(&normalized).as_ref(), Ok(&policy));
    let allowed = |email: &str, role: &str, groups: &[String]| {
        decide(Some(&policy), &Subject { email, role, groups, enabled: true }).is_allowed()
    };
    for e in &normalized.emails {
        assert!(allowed(e, "none", &[]), "email {e:?}");
        // Disabled: never, whatever matches.
        let off = Subject { email: e, role: "owner", groups: &normalized.groups, enabled: false };
        assert!(!decide(Some(&policy), &off).is_allowed());
    }
    for d in &normalized.domains {
        assert!(allowed(&format!("someone@{d}"), "none", &[]), "domain {d:?}");
        // A domain entry never admits a subdomain or a longer name that is not listed itself.
        for other in [format!("x@sub.{d}"), format!("x@{d}.evil"), format!("x@evil-{d}"), format!("x@{d}.")] {
            let domain = other.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            let listed = normalized.domains.iter().any(|l| l.eq_ignore_ascii_case(domain))
                || normalized.emails.iter().any(|e| e.eq_ignore_ascii_case(&other));
            assert_eq!(allowed(&other, "none", &[]), listed, "{other:?}");
        }
    }
    for g in &normalized.groups {
        assert!(allowed("nobody@invalid.invalid", "none", std::slice::from_ref(g)), "group {g:?}");
    }
});
