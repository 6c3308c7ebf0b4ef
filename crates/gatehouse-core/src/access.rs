//! Who may open which app (SPEC §15 "Access policy per app"): an app's policy — `emails`, `domains`,
//! `roles`, `groups` — parsed from the operator's lists into a type that cannot be wrong, and the pure
//! decision over a signed-in subject. A user matching any entry may enter; an app without a policy
//! lets every enabled user in; a disabled user never enters.
//!
//! Comparison rules, chosen so that no look-alike address gets in:
//! - An email entry is lower-cased as the user store lower-cases emails (`to_lowercase`), so an entry
//!   names exactly the account that `users create` with the same text makes. The subject's email is
//!   compared ASCII-case-insensitively only: a stored email is already lower case, and an address
//!   that reaches the same text only through Unicode case mapping (the Kelvin sign `K` folds to `k`)
//!   is another address.
//! - A domain entry is ASCII (an internationalized domain is written in its `xn--` form), matched
//!   ASCII-case-insensitively against the whole part of the subject's email after its **last** `@`,
//!   exactly: `example.com` admits neither `eng.example.com` (list it), `evil-example.com`,
//!   `example.com.evil`, nor `example.com.` (a trailing dot). A subject with an empty local part
//!   matches no domain.
//! - Roles are the five of SPEC §12, exactly. Groups (from the identity provider's claim) compare
//!   exactly, case and all: providers' group names are identifiers.

use std::collections::HashSet;
use std::fmt;

/// The roles of SPEC §12, most powerful first.
pub const ROLES: [&str; 5] = ["owner", "admin", "developer", "viewer", "member"];

/// Most entries a list may hold (a longer list is a group's job).
pub const MAX_ENTRIES: usize = 10_000;

/// Longest email entry, in bytes (RFC 5321's path limit, with room for quoting).
const MAX_EMAIL: usize = 320;
/// Longest domain, in bytes (RFC 1035).
const MAX_DOMAIN: usize = 253;
/// Longest group name, in bytes.
const MAX_GROUP: usize = 256;

/// The operator's lists, as written in `[access.<app>]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyLists {
    pub emails: Vec<String>,
    pub domains: Vec<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

/// One app's access policy, every entry checked and normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Lower case, as the user store keeps emails.
    emails: HashSet<String>,
    /// ASCII lower case.
    domains: HashSet<String>,
    /// Members of [`ROLES`].
    roles: Vec<&'static str>,
    groups: HashSet<String>,
}

/// A list entry that is not acceptable, with the list and position it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An entry of `emails`, `domains`, `roles` or `groups` (`list`) at `index` is not acceptable.
    #[error("{list}[{index}]: {problem}")]
    Entry { list: &'static str, index: usize, problem: String },
    /// A list is longer than [`MAX_ENTRIES`].
    #[error("{list}: at most {MAX_ENTRIES} entries (use `groups` or `domains` for more people)")]
    TooMany { list: &'static str },
    /// Every list is empty: nobody would be let in.
    #[error(
        "lists no one, so nobody could open the app: give at least one of emails, domains, roles or groups \
         (remove the table to let every enabled user in)"
    )]
    Empty,
}

/// The signed-in person a decision is about.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub email: &'a str,
    pub role: &'a str,
    /// From the identity provider's groups claim; empty for a password sign-in.
    pub groups: &'a [String],
    pub enabled: bool,
}

/// What the policy decided, and why (for the explainer and the logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessDecision<'a> {
    Allowed(Allowed<'a>),
    Refused(Refused),
}

/// Which entry let the subject in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed<'a> {
    /// The app has no policy.
    EveryEnabledUser,
    Email,
    Domain(&'a str),
    Role(&'a str),
    Group(&'a str),
}

/// Why the subject was kept out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The account is disabled (whatever the policy says).
    Disabled,
    /// The subject matches no entry of the policy.
    NotListed,
}

impl AccessDecision<'_> {
    pub fn is_allowed(&self) -> bool {
        matches!(self, AccessDecision::Allowed(_))
    }
}

impl fmt::Display for AccessDecision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessDecision::Allowed(Allowed::EveryEnabledUser) => {
                f.write_str("allowed: the app has no access policy, so every enabled user may open it")
            }
            AccessDecision::Allowed(Allowed::Email) => f.write_str("allowed: the email is listed in `emails`"),
            AccessDecision::Allowed(Allowed::Domain(d)) => {
                write!(f, "allowed: the domain `{d}` is listed in `domains`")
            }
            AccessDecision::Allowed(Allowed::Role(r)) => write!(f, "allowed: the role `{r}` is listed in `roles`"),
            AccessDecision::Allowed(Allowed::Group(g)) => write!(f, "allowed: the group `{g}` is listed in `groups`"),
            AccessDecision::Refused(r) => write!(f, "refused: {r}"),
        }
    }
}

impl Refused {
    /// A short machine-readable reason, for log fields.
    pub fn code(self) -> &'static str {
        match self {
            Refused::Disabled => "user_disabled",
            Refused::NotListed => "not_in_policy",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Disabled => "the account is disabled",
            Refused::NotListed => "the account matches none of the app's emails, domains, roles or groups",
        })
    }
}

/// The decision for `subject` on an app with `policy` (`None`: the app has no policy).
pub fn decide<'a>(policy: Option<&'a AccessPolicy>, subject: &Subject<'a>) -> AccessDecision<'a> {
    if !subject.enabled {
        return AccessDecision::Refused(Refused::Disabled);
    }
    let Some(p) = policy else { return AccessDecision::Allowed(Allowed::EveryEnabledUser) };
    if get_ascii_folded(&p.emails, subject.email).is_some() {
        return AccessDecision::Allowed(Allowed::Email);
    }
    if let Some(d) = domain_of(subject.email).and_then(|d| get_ascii_folded(&p.domains, d)) {
        return AccessDecision::Allowed(Allowed::Domain(d));
    }
    if let Some(r) = p.roles.iter().find(|r| **r == subject.role) {
        return AccessDecision::Allowed(Allowed::Role(r));
    }
    if let Some(g) = subject.groups.iter().find(|g| p.groups.contains(g.as_str())) {
        return AccessDecision::Allowed(Allowed::Group(g));
    }
    AccessDecision::Refused(Refused::NotListed)
}

/// The part of an email after its last `@`, when there is a non-empty part before it.
fn domain_of(email: &str) -> Option<&str> {
    match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Some(domain),
        _ => None,
    }
}

/// The entry of `set` (lower case) equal to `value` compared ASCII-case-insensitively, allocating
/// only when `value` has ASCII capitals.
fn get_ascii_folded<'s>(set: &'s HashSet<String>, value: &str) -> Option<&'s str> {
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        set.get(&value.to_ascii_lowercase()).map(String::as_str)
    } else {
        set.get(value).map(String::as_str)
    }
}

impl AccessPolicy {
    /// Checks and normalizes the operator's lists. Every list may be empty, but not all of them.
    pub fn parse(lists: &PolicyLists) -> Result<AccessPolicy, PolicyError> {
        for (list, items) in
            [("emails", &lists.emails), ("domains", &lists.domains), ("roles", &lists.roles), ("groups", &lists.groups)]
        {
            if items.len() > MAX_ENTRIES {
                return Err(PolicyError::TooMany { list });
            }
        }
        let entry = |list: &'static str, index: usize, problem: String| PolicyError::Entry { list, index, problem };
        let mut emails = HashSet::new();
        for (i, e) in lists.emails.iter().enumerate() {
            emails.insert(parse_email(e).map_err(|p| entry("emails", i, p))?);
        }
        let mut domains = HashSet::new();
        for (i, d) in lists.domains.iter().enumerate() {
            domains.insert(parse_domain(d).map_err(|p| entry("domains", i, p))?);
        }
        let mut roles = vec![];
        for (i, r) in lists.roles.iter().enumerate() {
            let Some(known) = ROLES.iter().find(|k| **k == r.as_str()) else {
                return Err(entry("roles", i, format!("`{}` is not a role; roles are {}", shown(r), ROLES.join(", "))));
            };
            if !roles.contains(known) {
                roles.push(*known);
            }
        }
        let mut groups = HashSet::new();
        for (i, g) in lists.groups.iter().enumerate() {
            groups.insert(parse_group(g).map_err(|p| entry("groups", i, p))?);
        }
        if emails.is_empty() && domains.is_empty() && roles.is_empty() && groups.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(AccessPolicy { emails, domains, roles, groups })
    }

    /// The policy as lists, sorted, for pages: (emails, domains, roles, groups).
    pub fn lists(&self) -> PolicyLists {
        let sorted = |s: &HashSet<String>| {
            let mut v: Vec<String> = s.iter().cloned().collect();
            v.sort();
            v
        };
        PolicyLists {
            emails: sorted(&self.emails),
            domains: sorted(&self.domains),
            roles: self.roles.iter().map(|r| (*r).to_owned()).collect(),
            groups: sorted(&self.groups),
        }
    }
}

/// An entry as an error message shows it: at most 100 characters, control characters escaped.
fn shown(s: &str) -> String {
    s.chars().take(100).flat_map(char::escape_debug).collect()
}

fn no_space_or_control(s: &str, what: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}`: {what} must not contain spaces or control characters", shown(s)));
    }
    Ok(())
}

fn parse_email(e: &str) -> Result<String, String> {
    if e.is_empty() {
        return Err("an email must not be empty".into());
    }
    if e.len() > MAX_EMAIL {
        return Err(format!("`{}…`: an email has at most {MAX_EMAIL} bytes", shown(e)));
    }
    no_space_or_control(e, "an email")?;
    let Some((local, domain)) = e.rsplit_once('@') else {
        return Err(format!("`{}` is not an email address (no `@`); list a whole domain in `domains`", shown(e)));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(format!("`{}` is not an email address (text is needed before and after the last `@`)", shown(e)));
    }
    if domain.ends_with('.') || domain.starts_with('.') || domain.contains("..") {
        return Err(format!("`{}`: write the domain without leading, trailing or doubled dots", shown(e)));
    }
    let lower = e.to_lowercase();
    // Lower-casing can lengthen a string (`İ` is two bytes, `i̇` three): the limit holds for what is kept.
    if lower.len() > MAX_EMAIL {
        return Err(format!("`{}…`: an email has at most {MAX_EMAIL} bytes", shown(e)));
    }
    Ok(lower)
}

fn parse_domain(d: &str) -> Result<String, String> {
    if d.is_empty() {
        return Err("a domain must not be empty".into());
    }
    no_space_or_control(d, "a domain")?;
    if d.contains('@') {
        return Err(format!("`{}`: write the domain alone, without `@` (list whole addresses in `emails`)", shown(d)));
    }
    if d.starts_with("*.") || d.starts_with('.') {
        return Err(format!(
            "`{}`: wildcards and leading dots are not supported; list each domain (a subdomain too) as it is written after `@`",
            shown(d)
        ));
    }
    if d.ends_with('.') {
        return Err(format!("`{}`: write the domain without the trailing dot", shown(d)));
    }
    if !d.is_ascii() {
        return Err(format!("`{}`: write an internationalized domain in its ASCII form (`xn--…`)", shown(d)));
    }
    if d.len() > MAX_DOMAIN {
        return Err(format!("`{}…`: a domain has at most {MAX_DOMAIN} characters", shown(d)));
    }
    for label in d.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{}` is not a domain name (labels of 1 to 63 letters, digits or inner `-`, separated by single dots)",
                shown(d)
            ));
        }
    }
    Ok(d.to_ascii_lowercase())
}

fn parse_group(g: &str) -> Result<String, String> {
    if g.is_empty() {
        return Err("a group must not be empty".into());
    }
    if g.len() > MAX_GROUP {
        return Err(format!("`{}…`: a group name has at most {MAX_GROUP} bytes", shown(g)));
    }
    if g.chars().any(char::is_control) {
        return Err(format!("`{}`: a group name must not contain control characters", shown(g)));
    }
    if g.trim() != g {
        return Err(format!("`{}`: a group name must not begin or end with a space", shown(g)));
    }
    Ok(g.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(emails: &[&str], domains: &[&str], roles: &[&str], groups: &[&str]) -> PolicyLists {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
        PolicyLists { emails: v(emails), domains: v(domains), roles: v(roles), groups: v(groups) }
    }

    fn policy(emails: &[&str], domains: &[&str], roles: &[&str], groups: &[&str]) -> AccessPolicy {
        AccessPolicy::parse(&lists(emails, domains, roles, groups)).unwrap()
    }

    /// What a row expects, by name.
    #[allow(non_snake_case, non_upper_case_globals)]
    mod Want {
        use super::super::{AccessDecision, Allowed, Refused};
        pub const Every: AccessDecision<'static> = AccessDecision::Allowed(Allowed::EveryEnabledUser);
        pub const Email: AccessDecision<'static> = AccessDecision::Allowed(Allowed::Email);
        pub const Disabled: AccessDecision<'static> = AccessDecision::Refused(Refused::Disabled);
        pub const NotListed: AccessDecision<'static> = AccessDecision::Refused(Refused::NotListed);
        pub fn Domain(d: &'static str) -> AccessDecision<'static> {
            AccessDecision::Allowed(Allowed::Domain(d))
        }
        pub fn Role(r: &'static str) -> AccessDecision<'static> {
            AccessDecision::Allowed(Allowed::Role(r))
        }
        pub fn Group(g: &'static str) -> AccessDecision<'static> {
            AccessDecision::Allowed(Allowed::Group(g))
        }
    }

    /// The truth table: one row per dimension and per hostile subject.
    #[test]
    fn decision_truth_table() {
        let by_domain = policy(&[], &["example.com"], &[], &[]);
        let by_email = policy(&["Ada@Example.com", "\"a@b\"@example.org", "ünal@example.net"], &[], &[], &[]);
        let by_role = policy(&[], &[], &["admin", "owner"], &[]);
        let by_group = policy(&[], &[], &[], &["eng", "/platform/ops"]);
        let mixed = policy(&["guest@partner.io"], &["example.com", "eng.example.com"], &["owner"], &["Staff"]);
        let kiwi = policy(&[], &["kiwi.com"], &[], &[]);
        let ibm = policy(&[], &["xn--nxasmq6b.com", "ibm.com"], &[], &[]);
        let kim = policy(&["kim@example.com"], &[], &[], &[]);
        let none: &[String] = &[];
        let eng = ["eng".to_owned()];
        let eng_upper = ["ENG".to_owned()];
        let ops = ["/platform/ops".to_owned(), "x".to_owned()];
        let staff_and_more = ["readers".to_owned(), "Staff".to_owned()];
        let empty_group = [String::new()];
        #[rustfmt::skip]
        type Row<'r> = (&'r str, Option<&'r AccessPolicy>, &'r str, &'r str, &'r [String], bool, AccessDecision<'static>);
        let rows: Vec<Row<'_>> = vec![
            // No policy: every enabled user; a disabled one never.
            ("no policy", None, "bob@anywhere.test", "member", none, true, Want::Every),
            ("no policy, disabled", None, "bob@anywhere.test", "owner", none, false, Want::Disabled),
            // Domains: the whole part after the last `@`, exactly, ASCII case folded.
            ("domain", Some(&by_domain), "bob@example.com", "member", none, true, Want::Domain("example.com")),
            (
                "domain, upper case",
                Some(&by_domain),
                "Bob@EXAMPLE.COM",
                "member",
                none,
                true,
                Want::Domain("example.com"),
            ),
            ("domain, disabled", Some(&by_domain), "bob@example.com", "member", none, false, Want::Disabled),
            ("other domain", Some(&by_domain), "bob@other.com", "member", none, true, Want::NotListed),
            ("subdomain not written", Some(&by_domain), "bob@eng.example.com", "member", none, true, Want::NotListed),
            ("suffix trick", Some(&by_domain), "bob@evil-example.com", "member", none, true, Want::NotListed),
            ("prefix trick", Some(&by_domain), "bob@notexample.com", "member", none, true, Want::NotListed),
            ("domain as a label", Some(&by_domain), "bob@example.com.evil", "member", none, true, Want::NotListed),
            ("trailing dot", Some(&by_domain), "bob@example.com.", "member", none, true, Want::NotListed),
            (
                "@ in the local part",
                Some(&by_domain),
                "\"bob@example.com\"@evil.test",
                "member",
                none,
                true,
                Want::NotListed,
            ),
            (
                "@example.com in the local part",
                Some(&by_domain),
                "bob@example.com@evil.test",
                "member",
                none,
                true,
                Want::NotListed,
            ),
            (
                "quoted local part, our domain",
                Some(&by_domain),
                "\"x@evil.test\"@example.com",
                "member",
                none,
                true,
                Want::Domain("example.com"),
            ),
            ("empty local part", Some(&by_domain), "@example.com", "member", none, true, Want::NotListed),
            ("no @ at all", Some(&by_domain), "example.com", "member", none, true, Want::NotListed),
            ("Kelvin sign folds to k", Some(&kiwi), "eve@\u{212A}iwi.com", "member", none, true, Want::NotListed),
            ("dotless i is not i", Some(&ibm), "eve@\u{0131}bm.com", "member", none, true, Want::NotListed),
            ("fullwidth letters", Some(&by_domain), "bob@\u{FF45}xample.com", "member", none, true, Want::NotListed),
            // Emails: the whole address, lower-cased as the user store does.
            ("email", Some(&by_email), "ada@example.com", "member", none, true, Want::Email),
            ("email, ASCII case", Some(&by_email), "ADA@example.COM", "member", none, true, Want::Email),
            (
                "email with @ in a quoted local part",
                Some(&by_email),
                "\"a@b\"@example.org",
                "member",
                none,
                true,
                Want::Email,
            ),
            (
                "the local part's @ is not an address",
                Some(&by_email),
                "b\"@example.org",
                "member",
                none,
                true,
                Want::NotListed,
            ),
            (
                "unicode entry lower-cased like the store",
                Some(&by_email),
                "ünal@example.net",
                "member",
                none,
                true,
                Want::Email,
            ),
            (
                "unicode capitals are not folded",
                Some(&by_email),
                "ÜNAL@example.net",
                "member",
                none,
                true,
                Want::NotListed,
            ),
            (
                "Kelvin sign in the local part",
                Some(&kim),
                "\u{212A}im@example.com",
                "member",
                none,
                true,
                Want::NotListed,
            ),
            ("email of another domain", Some(&by_email), "ada@example.com.evil", "member", none, true, Want::NotListed),
            ("email prefix", Some(&by_email), "ada@example.co", "member", none, true, Want::NotListed),
            ("email, disabled", Some(&by_email), "ada@example.com", "owner", none, false, Want::Disabled),
            // Roles: exactly.
            ("role", Some(&by_role), "x@y.test", "admin", none, true, Want::Role("admin")),
            ("other role", Some(&by_role), "x@y.test", "member", none, true, Want::NotListed),
            ("role, case", Some(&by_role), "x@y.test", "Admin", none, true, Want::NotListed),
            ("role, disabled", Some(&by_role), "x@y.test", "owner", none, false, Want::Disabled),
            // Groups: exactly, any one of the subject's.
            ("group", Some(&by_group), "x@y.test", "member", &eng, true, Want::Group("eng")),
            ("group path", Some(&by_group), "x@y.test", "member", &ops, true, Want::Group("/platform/ops")),
            ("group, case", Some(&by_group), "x@y.test", "member", &eng_upper, true, Want::NotListed),
            ("no groups (password sign-in)", Some(&by_group), "x@y.test", "member", none, true, Want::NotListed),
            ("an empty group claim", Some(&by_group), "x@y.test", "member", &empty_group, true, Want::NotListed),
            ("group, disabled", Some(&by_group), "x@y.test", "member", &eng, false, Want::Disabled),
            // Empty lists beside a filled one let no one in through them.
            ("empty lists, only roles", Some(&by_role), "ada@example.com", "member", &eng, true, Want::NotListed),
            // Any one entry suffices; the first dimension that matches is named.
            ("mixed: email", Some(&mixed), "guest@partner.io", "member", none, true, Want::Email),
            (
                "mixed: listed subdomain",
                Some(&mixed),
                "a@eng.example.com",
                "member",
                none,
                true,
                Want::Domain("eng.example.com"),
            ),
            ("mixed: role", Some(&mixed), "a@partner.io", "owner", none, true, Want::Role("owner")),
            ("mixed: group", Some(&mixed), "a@partner.io", "viewer", &staff_and_more, true, Want::Group("Staff")),
            ("mixed: nothing", Some(&mixed), "a@partner.io", "viewer", &eng, true, Want::NotListed),
        ];
        for (name, p, email, role, groups, enabled, want) in rows {
            let s = Subject { email, role, groups, enabled };
            assert_eq!(decide(p, &s), want, "{name}");
        }
    }

    #[test]
    fn reasons_read_as_sentences() {
        let p = policy(&[], &["example.com"], &["admin"], &[]);
        let s = |email, role| Subject { email, role, groups: &[], enabled: true };
        assert_eq!(
            decide(Some(&p), &s("a@example.com", "member")).to_string(),
            "allowed: the domain `example.com` is listed in `domains`"
        );
        assert_eq!(
            decide(Some(&p), &s("a@x.test", "admin")).to_string(),
            "allowed: the role `admin` is listed in `roles`"
        );
        assert_eq!(
            decide(Some(&p), &s("a@x.test", "member")).to_string(),
            "refused: the account matches none of the app's emails, domains, roles or groups"
        );
        assert_eq!(
            decide(None, &s("a@x.test", "member")).to_string(),
            "allowed: the app has no access policy, so every enabled user may open it"
        );
        let off = Subject { enabled: false, ..s("a@example.com", "admin") };
        assert_eq!(decide(Some(&p), &off).to_string(), "refused: the account is disabled");
        assert_eq!(Refused::NotListed.code(), "not_in_policy");
    }

    /// The parser's hostile inputs: one row per entry, the error it must give (or the normalized entry).
    #[test]
    fn parser_hostile_table() {
        #[rustfmt::skip]
        let rows: Vec<(PolicyLists, Result<PolicyLists, &str>)> = vec![
            (lists(&[], &[], &[], &[]), Err("lists no one")),
            (lists(&[""], &[], &[], &[]), Err("emails[0]: an email must not be empty")),
            (lists(&["a@x.io", "nobody"], &[], &[], &[]), Err("emails[1]: `nobody` is not an email address (no `@`)")),
            (lists(&["@example.com"], &[], &[], &[]), Err("emails[0]: `@example.com` is not an email address")),
            (lists(&["bob@"], &[], &[], &[]), Err("emails[0]: `bob@` is not an email address")),
            (lists(&["bob@example.com."], &[], &[], &[]), Err("emails[0]: `bob@example.com.`: write the domain without leading, trailing or doubled dots")),
            (lists(&["bob@example..com"], &[], &[], &[]), Err("doubled dots")),
            (lists(&["bob @example.com"], &[], &[], &[]), Err("emails[0]: `bob @example.com`: an email must not contain spaces")),
            (lists(&["bob@example.com\n"], &[], &[], &[]), Err("emails[0]: `bob@example.com\\n`: an email must not contain")),
            (lists(&["bob\u{0}@example.com"], &[], &[], &[]), Err("control characters")),
            (lists(&[&format!("{}@example.com", "a".repeat(400))], &[], &[], &[]), Err("at most 320 bytes")),
            (lists(&[&format!("{}@example.com", "\u{130}".repeat(150))], &[], &[], &[]), Err("at most 320 bytes")),
            (lists(&[], &[""], &[], &[]), Err("domains[0]: a domain must not be empty")),
            (lists(&[], &["@example.com"], &[], &[]), Err("domains[0]: `@example.com`: write the domain alone, without `@`")),
            (lists(&[], &["*.example.com"], &[], &[]), Err("wildcards and leading dots are not supported")),
            (lists(&[], &[".example.com"], &[], &[]), Err("wildcards and leading dots")),
            (lists(&[], &["example.com."], &[], &[]), Err("domains[0]: `example.com.`: write the domain without the trailing dot")),
            (lists(&[], &["exämple.com"], &[], &[]), Err("its ASCII form (`xn--…`)")),
            (lists(&[], &["\u{212A}iwi.com"], &[], &[]), Err("its ASCII form")),
            (lists(&[], &["example..com"], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["-example.com"], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["example-.com"], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["exa_mple.com"], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["example.com/evil"], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["example .com"], &[], &[]), Err("must not contain spaces")),
            (lists(&[], &[&format!("{}.com", "a".repeat(64))], &[], &[]), Err("is not a domain name")),
            (lists(&[], &["a.".repeat(130).trim_end_matches('.')], &[], &[]), Err("at most 253 characters")),
            (lists(&[], &[], &["Owner"], &[]), Err("roles[0]: `Owner` is not a role; roles are owner, admin, developer, viewer, member")),
            (lists(&[], &[], &["root"], &[]), Err("`root` is not a role")),
            (lists(&[], &[], &[""], &[]), Err("roles[0]: `` is not a role")),
            (lists(&[], &[], &[], &[""]), Err("groups[0]: a group must not be empty")),
            (lists(&[], &[], &[], &[" eng"]), Err("must not begin or end with a space")),
            (lists(&[], &[], &[], &["eng\r"]), Err("control characters")),
            (lists(&[], &[], &[], &[&"g".repeat(257)]), Err("at most 256 bytes")),
            // Accepted, normalized.
            (
                lists(&["Ada@Example.COM", "ada@example.com", "ÜNAL@x.io"], &["Example.COM", "xn--exmple-cua.com"], &["member", "member"], &["Eng Team", "/a/b"]),
                Ok(lists(&["ada@example.com", "ünal@x.io"], &["example.com", "xn--exmple-cua.com"], &["member"], &["/a/b", "Eng Team"])),
            ),
            (lists(&["\"a@b\"@example.org"], &[], &[], &[]), Ok(lists(&["\"a@b\"@example.org"], &[], &[], &[]))),
            (lists(&[], &["localhost"], &[], &[]), Ok(lists(&[], &["localhost"], &[], &[]))),
        ];
        for (input, want) in rows {
            let got = AccessPolicy::parse(&input);
            match (got, want) {
                (Ok(p), Ok(w)) => assert_eq!(p.lists(), w, "{input:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{input:?}: `{e}` should contain `{w}`"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
        let many = PolicyLists { groups: vec!["g".into(); MAX_ENTRIES + 1], ..Default::default() };
        assert_eq!(AccessPolicy::parse(&many), Err(PolicyError::TooMany { list: "groups" }));
    }

    #[test]
    fn roles_are_the_user_roles() {
        let all: Vec<&str> = ROLES.to_vec();
        let p = AccessPolicy::parse(&lists(&[], &[], &all, &[])).unwrap();
        assert_eq!(p.lists().roles, all);
    }
}
