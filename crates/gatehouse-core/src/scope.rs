//! Scopes (SPEC §4.4): `resource:action` strings, where `write` implies `read`; `*` is everything; and
//! any other RFC 6749 scope token (`read_customers`), which matches only itself.

use std::fmt;

/// One parsed scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Kind);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// `*`.
    All,
    /// `resource:action`, both parts in the structured syntax: `write` grants `read`.
    Structured { resource: String, action: String },
    /// Any other RFC 6749 scope-token: granted only by itself (or `*`).
    Token(String),
}

const MAX_SCOPE_LEN: usize = 128;

/// A part of a structured scope: lowercase ASCII letters, digits, `_`, `-` or `.`, starting with a letter.
fn structured_part(part: &str) -> bool {
    part.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn token_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Whether a scope token is a pasted credential: an API key, OAuth token or client secret
/// (`{ns}_sk_…`, `_rk_`, `_at_`, `_rt_`, `_cs_`, for any namespace, followed by at least 16 characters) or a
/// webhook secret (`whsec_`). Such a token would be stored and listed as a scope name, so it is refused.
fn looks_like_credential(s: &str) -> bool {
    if s.contains("whsec_") {
        return true;
    }
    ["_sk_", "_rk_", "_at_", "_rt_", "_cs_"].iter().any(|marker| {
        s.match_indices(marker).any(|(i, _)| {
            let before = s[..i].bytes().rev().take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit()).count();
            before >= 2 && s.len() - (i + marker.len()) >= 16
        })
    })
}

impl Scope {
    /// Accepts `*`, `resource:action` (each part lowercase ASCII letters, digits, `_`, `-` or `.`, starting
    /// with a letter), or any other RFC 6749 scope token: printable ASCII with no space, `"` or `\`, at most
    /// 128 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self(Kind::All));
        }
        let shown: String = s.chars().take(40).flat_map(char::escape_default).collect();
        if s.len() > MAX_SCOPE_LEN {
            return Err(format!("scope `{shown}…` is longer than {MAX_SCOPE_LEN} characters"));
        }
        if s.is_empty() {
            return Err("a scope must not be empty".into());
        }
        if !s.bytes().all(token_char) {
            return Err(format!(
                "scope `{shown}` may hold only printable ASCII without spaces, `\"` or `\\` \
                 (e.g. `orders:read` or `read_customers`)"
            ));
        }
        if looks_like_credential(s) {
            return Err(format!("scope `{shown}` looks like a credential; a scope names a permission"));
        }
        match s.split_once(':') {
            Some((resource, action)) if structured_part(resource) && structured_part(action) => {
                Ok(Self(Kind::Structured { resource: resource.to_owned(), action: action.to_owned() }))
            }
            _ => Ok(Self(Kind::Token(s.to_owned()))),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.0 == Kind::All
    }

    /// The resource part (`orders` of `orders:read`); `None` for `*` and for plain tokens.
    pub fn resource(&self) -> Option<&str> {
        match &self.0 {
            Kind::Structured { resource, .. } => Some(resource),
            _ => None,
        }
    }

    /// The action part (`read` of `orders:read`); empty for `*` and for plain tokens.
    pub fn action(&self) -> &str {
        match &self.0 {
            Kind::Structured { action, .. } => action,
            _ => "",
        }
    }

    /// Whether holding `self` is enough for `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        match (&self.0, &required.0) {
            (Kind::All, _) => true,
            (Kind::Structured { resource, action }, Kind::Structured { resource: r, action: a }) => {
                resource == r && (action == a || (action == "write" && a == "read"))
            }
            (Kind::Token(held), Kind::Token(wanted)) => held == wanted,
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::All => f.write_str("*"),
            Kind::Structured { resource, action } => write!(f, "{resource}:{action}"),
            Kind::Token(t) => f.write_str(t),
        }
    }
}

/// The scopes a credential holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The set holding every scope (what an `sk` key has).
    pub fn all() -> Self {
        Self(vec![Scope(Kind::All)])
    }

    /// Parses a list, rejecting the first malformed entry and dropping duplicates.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut v: Vec<Scope> = items.into_iter().map(Scope::parse).collect::<Result<_, _>>()?;
        v.sort();
        v.dedup();
        Ok(Self(v))
    }

    pub fn grants(&self, required: &Scope) -> bool {
        self.0.iter().any(|s| s.grants(required))
    }

    /// Whether every scope in `other` is granted by this set (used so a key cannot mint a stronger key).
    pub fn covers(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| if s.is_wildcard() { self.0.iter().any(Scope::is_wildcard) } else { self.grants(s) })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> ScopeSet {
        ScopeSet::parse(items.iter().copied()).unwrap()
    }

    #[test]
    fn grant_table() {
        let rows: &[(&[&str], &str, bool)] = &[
            (&["orders:read"], "orders:read", true),
            (&["orders:write"], "orders:read", true),
            (&["orders:read"], "orders:write", false),
            (&["orders:write"], "orders:write", true),
            (&["orders:write"], "customers:read", false),
            (&["*"], "anything:write", true),
            (&["orders:refund"], "orders:refund", true),
            (&["orders:write"], "orders:refund", false),
            (&["orders:read", "customers:write"], "customers:read", true),
            (&[], "orders:read", false),
        ];
        for (held, required, want) in rows {
            let got = set(held).grants(&Scope::parse(required).unwrap());
            assert_eq!(got, *want, "{held:?} grants {required}?");
        }
    }

    #[test]
    fn hostile_scopes() {
        let long = "a".repeat(200);
        for bad in [
            "",
            " ",
            "or ders:read",
            "orders:read ",
            "orders:read\n",
            "orders:read\t",
            "orders\u{0}:read",
            "orders\u{7f}",
            "say\"hi\"",
            "back\\slash",
            "orders:réad",
            "ключи",
            long.as_str(),
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Scope::parse(&"a".repeat(128)).is_ok());
        // Credentials pasted as scopes are refused, so they are never stored or listed as scope names.
        for pasted in [
            format!("gth_sk_live_{}", "a".repeat(36)),
            format!("acme_rk_test_{}", "B".repeat(36)),
            format!("x{}gth_cs_{}", "junk", "Q".repeat(43)),
            format!("gth_at_{}", "z".repeat(43)),
            "whsec_c29tZXRoaW5n".to_owned(),
        ] {
            assert!(Scope::parse(&pasted).unwrap_err().contains("looks like a credential"), "{pasted}");
        }
        assert!(Scope::parse("read_at_home").is_ok() && Scope::parse("orders:read_sk_x").is_ok());
        let err = Scope::parse("bad\u{1}").unwrap_err();
        assert!(err.contains("bad\\u{1}"), "control characters are shown escaped: {err}");
    }

    #[test]
    fn any_rfc6749_token_is_a_scope_that_grants_only_itself() {
        let rows: &[(&str, &str, bool)] = &[
            ("read_customers", "read_customers", true),
            ("write_orders", "write_orders", true),
            ("write_orders", "read_orders", false),
            ("write_customers", "customers:read", false),
            ("customers:write", "read_customers", false),
            ("*", "read_customers", true),
            ("Orders:read", "Orders:read", true),
            ("Orders:write", "Orders:read", false),
            ("orders:*", "orders:read", false),
            ("orders:read:x", "orders:read", false),
            ("https://api.example.com/orders", "https://api.example.com/orders", true),
            ("!#$%&'()*+,-./;<=>?@[]^_`{|}~", "!#$%&'()*+,-./;<=>?@[]^_`{|}~", true),
        ];
        for (held, required, want) in rows {
            let got = set(&[held]).grants(&Scope::parse(required).unwrap());
            assert_eq!(got, *want, "{held} grants {required}?");
        }
        for (text, structured) in
            [("orders.v2:read", true), ("orders:", false), (":read", false), ("1orders:read", false)]
        {
            let s = Scope::parse(text).unwrap();
            assert_eq!(s.to_string(), text);
            assert_eq!(s.resource().is_some(), structured, "{text}");
            assert!(!s.is_wildcard());
        }
        assert_eq!(
            set(&["write_orders", "read_customers", "write_orders"]).to_strings(),
            ["read_customers", "write_orders"]
        );
    }

    #[test]
    fn covers_prevents_escalation() {
        assert!(set(&["orders:write"]).covers(&set(&["orders:read"])));
        assert!(!set(&["orders:read"]).covers(&set(&["orders:write"])));
        assert!(!set(&["orders:write"]).covers(&set(&["*"])));
        assert!(set(&["*"]).covers(&set(&["*", "x:y"])));
        assert!(set(&["write_orders"]).covers(&set(&["write_orders"])));
        assert!(!set(&["write_orders"]).covers(&set(&["read_orders"])));
        assert!(!set(&["orders:write"]).covers(&set(&["write_orders"])));
    }
}
