//! Scopes (SPEC §4.4): `resource:action` strings; `write` implies `read`; `*` is everything.

use std::fmt;

/// One parsed scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// `None` for the wildcard `*`.
    resource: Option<String>,
    action: String,
}

const MAX_SCOPE_LEN: usize = 128;

impl Scope {
    /// Accepts `*` or `resource:action`, where each part is lowercase ASCII letters, digits, `_`, `-` or `.`,
    /// starting with a letter.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self { resource: None, action: String::new() });
        }
        let shown: String = s.chars().take(40).collect();
        if s.len() > MAX_SCOPE_LEN {
            return Err(format!("scope `{shown}…` is longer than {MAX_SCOPE_LEN} characters"));
        }
        let (resource, action) = s.split_once(':').ok_or_else(|| {
            format!("scope `{shown}` must look like `resource:action` (e.g. `orders:read`) or be `*`")
        })?;
        for (part, what) in [(resource, "resource"), (action, "action")] {
            let valid = part.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'));
            if !valid {
                return Err(format!(
                    "scope `{shown}` has an invalid {what}: use lowercase letters, digits, `_`, `-` or `.`, starting with a letter"
                ));
            }
        }
        Ok(Self { resource: Some(resource.to_owned()), action: action.to_owned() })
    }

    pub fn is_wildcard(&self) -> bool {
        self.resource.is_none()
    }

    /// The resource part (`orders` of `orders:read`); `None` for `*`.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The action part (`read` of `orders:read`); empty for `*`.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Whether holding `self` is enough for `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        let Some(resource) = &self.resource else { return true };
        if required.resource.as_ref() != Some(resource) {
            return false;
        }
        self.action == required.action || (self.action == "write" && required.action == "read")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            None => f.write_str("*"),
            Some(r) => write!(f, "{r}:{}", self.action),
        }
    }
}

/// The scopes a credential holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The set holding every scope (what an `sk` key has).
    pub fn all() -> Self {
        Self(vec![Scope { resource: None, action: String::new() }])
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
        for bad in [
            "",
            ":",
            "orders",
            "orders:",
            ":read",
            "Orders:read",
            "orders:READ",
            "orders:read:x",
            "or ders:read",
            "orders:*",
            "**",
            "1orders:read",
            "orders:read\n",
            "orders:réad",
            &"a".repeat(200),
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Scope::parse("orders.v2:read").unwrap().to_string(), "orders.v2:read");
    }

    #[test]
    fn covers_prevents_escalation() {
        assert!(set(&["orders:write"]).covers(&set(&["orders:read"])));
        assert!(!set(&["orders:read"]).covers(&set(&["orders:write"])));
        assert!(!set(&["orders:write"]).covers(&set(&["*"])));
        assert!(set(&["*"]).covers(&set(&["*", "x:y"])));
    }
}
