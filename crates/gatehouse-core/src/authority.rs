//! "Authority never grows" (SPEC §11): what a credential creates is at most as strong as the
//! credential in every dimension. One pure rule, used by every path that creates a key or a client
//! for a credential (API with a key, API with an OAuth token, roll), so the paths cannot drift apart.
//!
//! When the parent has a limit and the request leaves that dimension out, the child inherits the
//! parent's limit (a key made by a key that expires in 30 minutes expires then too); a request for
//! more than the parent holds is refused, never silently narrowed, so a caller always gets exactly
//! the key it asked for or an error that says which dimension was too wide.

use std::fmt;

use crate::apikey::{Environment, KeyKind};
use crate::ipallow::IpAllowlist;
use crate::record::{KeyRecord, RateLimitOverride};
use crate::scope::{Scope, ScopeSet};
use crate::time::Timestamp;

/// What a creating credential holds: the ceiling for everything it creates.
#[derive(Clone, Debug)]
pub struct Authority<'a> {
    pub environment: Environment,
    pub kind: KeyKind,
    /// Effective scopes (`*` for an `sk`).
    pub scopes: std::borrow::Cow<'a, ScopeSet>,
    pub app: Option<&'a str>,
    /// Empty means any address.
    pub ip_allowlist: &'a IpAllowlist,
    pub expires_at: Option<Timestamp>,
    /// The parent's own rate-limit override, if it has one.
    pub rate_limit: Option<RateLimitOverride>,
    /// What a credential without an override is held to; `None` means unknown (no ceiling).
    pub default_rate_limit: Option<RateLimitOverride>,
}

impl<'a> Authority<'a> {
    /// A key's authority; `default_rate_limit` is what a key without an override is held to.
    pub fn of_key(k: &'a KeyRecord, default_rate_limit: Option<RateLimitOverride>) -> Self {
        Authority {
            environment: k.environment,
            kind: k.kind,
            scopes: k.effective_scopes(),
            app: k.app.as_deref(),
            ip_allowlist: &k.ip_allowlist,
            expires_at: k.expires_at,
            rate_limit: k.rate_limit,
            default_rate_limit,
        }
    }

    /// The rate the parent is actually held to.
    fn effective_rate(&self) -> Option<RateLimitOverride> {
        self.rate_limit.or(self.default_rate_limit)
    }
}

/// What a caller asks a new key to be. `None` / empty means "not given": inherit the parent's limit.
#[derive(Clone, Debug)]
pub struct KeyRequest<'a> {
    pub environment: Environment,
    pub kind: KeyKind,
    /// The scopes as asked (empty for an `sk`, which holds every scope).
    pub scopes: &'a ScopeSet,
    pub app: Option<&'a str>,
    pub ip_allowlist: &'a IpAllowlist,
    pub expires_at: Option<Timestamp>,
    pub rate_limit: Option<RateLimitOverride>,
}

/// The limits a new key gets once inheritance is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounded {
    pub app: Option<String>,
    pub ip_allowlist: IpAllowlist,
    pub expires_at: Option<Timestamp>,
    pub rate_limit: Option<RateLimitOverride>,
}

/// The dimension a request exceeded; each maps to a SPEC §5 `permission_error` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    Environment,
    Kind,
    Scopes,
    App,
    IpAllowlist,
    Expiry,
    RateLimit,
}

impl Dimension {
    /// The §5 code: the four dimensions §5 names keep their codes; kind, expiry and rate limit are
    /// authority the credential does not hold, so `insufficient_scope`.
    pub fn code(self) -> &'static str {
        match self {
            Dimension::Environment => "environment_mismatch",
            Dimension::App => "app_not_allowed",
            Dimension::IpAllowlist => "ip_not_allowed",
            Dimension::Kind | Dimension::Scopes | Dimension::Expiry | Dimension::RateLimit => "insufficient_scope",
        }
    }
}

/// A refusal: which dimension, and a message that says what the parent allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excess {
    pub dimension: Dimension,
    pub message: String,
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn excess(dimension: Dimension, message: impl Into<String>) -> Excess {
    Excess { dimension, message: message.into() }
}

/// Checks a new key against its creator and fills in inherited limits.
pub fn bound_key(parent: &Authority<'_>, req: &KeyRequest<'_>) -> Result<Bounded, Excess> {
    environment(parent, req.environment)?;
    if req.kind == KeyKind::Secret && parent.kind != KeyKind::Secret {
        return Err(excess(
            Dimension::Kind,
            "A restricted (rk) key cannot create a secret (sk) key; create an rk key with the scopes it needs.",
        ));
    }
    let wanted = match req.kind {
        KeyKind::Secret => ScopeSet::all(),
        KeyKind::Restricted => req.scopes.clone(),
    };
    scopes(parent, &wanted)?;
    let app = app(parent, req.app)?;
    let ip_allowlist = if req.ip_allowlist.is_empty() {
        parent.ip_allowlist.clone()
    } else if parent.ip_allowlist.is_empty() || req.ip_allowlist.is_within(parent.ip_allowlist) {
        req.ip_allowlist.clone()
    } else {
        return Err(excess(
            Dimension::IpAllowlist,
            format!(
                "The IP allowlist may only narrow the creating credential's ({}); every entry must lie inside it.",
                parent.ip_allowlist.to_strings().join(", ")
            ),
        ));
    };
    let expires_at = match (parent.expires_at, req.expires_at) {
        (None, e) => e,
        (Some(p), None) => Some(p),
        (Some(p), Some(e)) if e <= p => Some(e),
        (Some(p), Some(_)) => {
            return Err(excess(
                Dimension::Expiry,
                format!("The creating credential expires at {p}; a key it creates cannot expire later."),
            ))
        }
    };
    // Omitted: the parent's own override, or none, and then the child is held to the same default.
    let rate_limit = match (parent.effective_rate(), req.rate_limit) {
        (_, None) => parent.rate_limit,
        (None, r) => r,
        (Some(p), Some(r)) if not_faster(r, p) => Some(r),
        (Some(p), Some(_)) => {
            return Err(excess(
                Dimension::RateLimit,
                format!(
                "The creating credential is limited to {} requests per {} s; a key it creates cannot be allowed more.",
                p.limit, p.window_secs
            ),
            ))
        }
    };
    Ok(Bounded { app, ip_allowlist, expires_at, rate_limit })
}

/// Checks an OAuth client a credential registers: same environment, scopes it holds, its app. A
/// client cannot carry an IP allowlist, an expiry or a lower rate limit, so a credential with one of
/// those may not register clients (their tokens would escape the limit).
pub fn bound_client<'a>(
    parent: &Authority<'a>,
    environment_wanted: Environment,
    scopes_wanted: &ScopeSet,
    app_wanted: Option<&'a str>,
) -> Result<Option<String>, Excess> {
    environment(parent, environment_wanted)?;
    scopes(parent, scopes_wanted)?;
    let app = app(parent, app_wanted)?;
    if !parent.ip_allowlist.is_empty() {
        return Err(excess(
            Dimension::IpAllowlist,
            "A credential with an IP allowlist cannot register OAuth clients: their tokens are not bound to addresses.",
        ));
    }
    if let Some(p) = parent.expires_at {
        return Err(excess(
            Dimension::Expiry,
            format!("The creating credential expires at {p}; an OAuth client it registered would outlive it."),
        ));
    }
    // Tokens are held to the deployment default; a parent held to less may not hand that out.
    if let Some(p) = parent.rate_limit {
        if !parent.default_rate_limit.is_some_and(|d| not_faster(d, p)) {
            return Err(excess(
                Dimension::RateLimit,
                format!(
                    "The creating credential is limited to {} requests per {} s, below what OAuth tokens are allowed.",
                    p.limit, p.window_secs
                ),
            ));
        }
    }
    Ok(app)
}

/// The resources of the management API's own scopes (SPEC §4.4).
pub const MANAGEMENT_RESOURCES: [&str; 5] = ["keys", "oauth_clients", "webhooks", "audit", "users"];

/// Whether a user of `role` may delegate `scope` to an app (SPEC §12 roles): a person hands an app
/// no more of the management API than their role lets them use themselves. App scopes are the user's
/// own access to apps, which every role has. Unknown roles delegate no management scope (fail closed).
pub fn role_may_delegate(role: &str, scope: &Scope) -> bool {
    if scope.is_wildcard() {
        return matches!(role, "owner" | "admin");
    }
    // A plain scope token (`read_customers`) is an app scope: it names no management resource.
    let Some(resource) = scope.resource() else { return true };
    if !MANAGEMENT_RESOURCES.contains(&resource) {
        return true;
    }
    let read = scope.action() == "read";
    match role {
        "owner" | "admin" => true,
        "developer" => matches!(resource, "keys" | "oauth_clients" | "webhooks") || (resource == "audit" && read),
        "viewer" => read,
        _ => false,
    }
}

fn environment(parent: &Authority<'_>, wanted: Environment) -> Result<(), Excess> {
    if parent.environment == wanted {
        Ok(())
    } else {
        Err(excess(
            Dimension::Environment,
            format!("This credential acts only in {}; it cannot create anything in {wanted}.", parent.environment),
        ))
    }
}

fn scopes(parent: &Authority<'_>, wanted: &ScopeSet) -> Result<(), Excess> {
    if parent.scopes.covers(wanted) {
        return Ok(());
    }
    let missing = wanted
        .iter()
        .find(|s| !parent.scopes.grants(s) || (s.is_wildcard() && !parent.scopes.iter().any(Scope::is_wildcard)))
        .map_or_else(|| "*".to_owned(), ToString::to_string);
    Err(excess(
        Dimension::Scopes,
        format!("This request needs the scope `{missing}`, which the credential does not hold."),
    ))
}

fn app<'a>(parent: &Authority<'a>, wanted: Option<&'a str>) -> Result<Option<String>, Excess> {
    match (parent.app, wanted) {
        (None, w) => Ok(w.map(str::to_owned)),
        (Some(p), None) => Ok(Some(p.to_owned())),
        (Some(p), Some(w)) if p == w => Ok(Some(p.to_owned())),
        (Some(p), Some(_)) => Err(excess(
            Dimension::App,
            format!("This credential is restricted to the app `{p}`; what it creates is too."),
        )),
    }
}

/// `a` allows no more than `b`: neither a higher rate nor a larger burst.
fn not_faster(a: RateLimitOverride, b: RateLimitOverride) -> bool {
    let rate_ok = u64::from(a.limit) * u64::from(b.window_secs) <= u64::from(b.limit) * u64::from(a.window_secs);
    rate_ok && a.limit <= b.limit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> ScopeSet {
        ScopeSet::parse(items.iter().copied()).unwrap()
    }

    fn ips(items: &[&str]) -> IpAllowlist {
        IpAllowlist::parse(items.iter().copied()).unwrap()
    }

    fn rl(limit: u32, window_secs: u32) -> Option<RateLimitOverride> {
        Some(RateLimitOverride { limit, window_secs })
    }

    fn sk_parent(ip: &IpAllowlist) -> Authority<'_> {
        Authority {
            environment: Environment::Live,
            kind: KeyKind::Secret,
            scopes: std::borrow::Cow::Owned(ScopeSet::all()),
            app: None,
            ip_allowlist: ip,
            expires_at: None,
            rate_limit: None,
            default_rate_limit: rl(100, 1),
        }
    }

    fn ask<'a>(kind: KeyKind, scopes: &'a ScopeSet, ip: &'a IpAllowlist) -> KeyRequest<'a> {
        KeyRequest {
            environment: Environment::Live,
            kind,
            scopes,
            app: None,
            ip_allowlist: ip,
            expires_at: None,
            rate_limit: None,
        }
    }

    /// One row per dimension and case: the parent's limit, what is asked, and the answer.
    #[test]
    fn authority_never_grows_table() {
        let any = IpAllowlist::default();
        let office = ips(&["10.0.0.0/8"]);
        let desk = ips(&["10.1.2.0/24"]);
        let elsewhere = ips(&["192.0.2.0/24"]);
        let wider = ips(&["10.0.0.0/7"]);
        let (t30, t60) = (Some(Timestamp(30_000)), Some(Timestamp(60_000)));
        let orders = set(&["orders:write"]);
        let orders_read = set(&["orders:read"]);
        let keys = set(&["keys:write", "orders:write"]);
        let none = ScopeSet::default();
        let all = ScopeSet::all();
        type Want = Result<Bounded, Dimension>;
        let ok =
            |app: Option<&str>, ip: &IpAllowlist, exp: Option<Timestamp>, rate: Option<RateLimitOverride>| -> Want {
                Ok(Bounded { app: app.map(str::to_owned), ip_allowlist: ip.clone(), expires_at: exp, rate_limit: rate })
            };
        struct Row<'a> {
            what: &'static str,
            parent: Authority<'a>,
            req: KeyRequest<'a>,
            want: Want,
        }
        let sk = |ip| sk_parent(ip);
        let rk = |scopes, ip| Authority {
            kind: KeyKind::Restricted,
            scopes: std::borrow::Cow::Borrowed(scopes),
            ..sk_parent(ip)
        };
        let ask_rk = |scopes, ip| ask(KeyKind::Restricted, scopes, ip);
        let ask_sk = |ip| ask(KeyKind::Secret, &none, ip);
        let rows = [
            // environment
            Row { what: "same environment", parent: sk(&any), req: ask_sk(&any), want: ok(None, &any, None, None) },
            Row {
                what: "other environment",
                parent: sk(&any),
                req: KeyRequest { environment: Environment::Test, ..ask_sk(&any) },
                want: Err(Dimension::Environment),
            },
            Row {
                what: "rk into other environment",
                parent: rk(&keys, &any),
                req: KeyRequest { environment: Environment::Test, ..ask_rk(&orders, &any) },
                want: Err(Dimension::Environment),
            },
            // kind and scopes
            Row { what: "sk mints rk", parent: sk(&any), req: ask_rk(&orders, &any), want: ok(None, &any, None, None) },
            Row { what: "rk never mints sk", parent: rk(&keys, &any), req: ask_sk(&any), want: Err(Dimension::Kind) },
            Row {
                what: "rk holding * still never mints sk",
                parent: rk(&all, &any),
                req: ask_sk(&any),
                want: Err(Dimension::Kind),
            },
            Row {
                what: "rk holding * mints rk *",
                parent: rk(&all, &any),
                req: ask_rk(&all, &any),
                want: ok(None, &any, None, None),
            },
            Row {
                what: "rk mints narrower rk",
                parent: rk(&keys, &any),
                req: ask_rk(&orders_read, &any),
                want: ok(None, &any, None, None),
            },
            Row {
                what: "rk mints rk with a scope it lacks",
                parent: rk(&orders, &any),
                req: ask_rk(&keys, &any),
                want: Err(Dimension::Scopes),
            },
            Row {
                what: "rk mints rk *",
                parent: rk(&keys, &any),
                req: ask_rk(&all, &any),
                want: Err(Dimension::Scopes),
            },
            // app
            Row {
                what: "app inherited",
                parent: Authority { app: Some("shop"), ..sk(&any) },
                req: ask_sk(&any),
                want: ok(Some("shop"), &any, None, None),
            },
            Row {
                what: "same app",
                parent: Authority { app: Some("shop"), ..sk(&any) },
                req: KeyRequest { app: Some("shop"), ..ask_sk(&any) },
                want: ok(Some("shop"), &any, None, None),
            },
            Row {
                what: "other app",
                parent: Authority { app: Some("shop"), ..sk(&any) },
                req: KeyRequest { app: Some("blog"), ..ask_sk(&any) },
                want: Err(Dimension::App),
            },
            Row {
                what: "unrestricted parent restricts",
                parent: sk(&any),
                req: KeyRequest { app: Some("blog"), ..ask_sk(&any) },
                want: ok(Some("blog"), &any, None, None),
            },
            // IP allowlist
            Row {
                what: "allowlist inherited",
                parent: sk(&office),
                req: ask_sk(&any),
                want: ok(None, &office, None, None),
            },
            Row {
                what: "allowlist narrowed",
                parent: sk(&office),
                req: ask_sk(&desk),
                want: ok(None, &desk, None, None),
            },
            Row {
                what: "allowlist equal",
                parent: sk(&office),
                req: ask_sk(&office),
                want: ok(None, &office, None, None),
            },
            Row {
                what: "allowlist elsewhere",
                parent: sk(&office),
                req: ask_sk(&elsewhere),
                want: Err(Dimension::IpAllowlist),
            },
            Row {
                what: "allowlist wider",
                parent: sk(&office),
                req: ask_sk(&wider),
                want: Err(Dimension::IpAllowlist),
            },
            Row {
                what: "unrestricted parent sets allowlist",
                parent: sk(&any),
                req: ask_sk(&elsewhere),
                want: ok(None, &elsewhere, None, None),
            },
            // expiry
            Row {
                what: "expiry inherited",
                parent: Authority { expires_at: t60, ..sk(&any) },
                req: ask_sk(&any),
                want: ok(None, &any, t60, None),
            },
            Row {
                what: "expiry sooner",
                parent: Authority { expires_at: t60, ..sk(&any) },
                req: KeyRequest { expires_at: t30, ..ask_sk(&any) },
                want: ok(None, &any, t30, None),
            },
            Row {
                what: "expiry equal",
                parent: Authority { expires_at: t60, ..sk(&any) },
                req: KeyRequest { expires_at: t60, ..ask_sk(&any) },
                want: ok(None, &any, t60, None),
            },
            Row {
                what: "expiry later",
                parent: Authority { expires_at: t30, ..sk(&any) },
                req: KeyRequest { expires_at: t60, ..ask_sk(&any) },
                want: Err(Dimension::Expiry),
            },
            Row {
                what: "permanent parent, expiring child",
                parent: sk(&any),
                req: KeyRequest { expires_at: t30, ..ask_sk(&any) },
                want: ok(None, &any, t30, None),
            },
            // rate limit
            Row {
                what: "rate inherited",
                parent: Authority { rate_limit: rl(1, 60), ..sk(&any) },
                req: ask_sk(&any),
                want: ok(None, &any, None, rl(1, 60)),
            },
            Row {
                what: "rate lower",
                parent: Authority { rate_limit: rl(10, 1), ..sk(&any) },
                req: KeyRequest { rate_limit: rl(5, 1), ..ask_sk(&any) },
                want: ok(None, &any, None, rl(5, 1)),
            },
            Row {
                what: "rate slower window",
                parent: Authority { rate_limit: rl(1, 60), ..sk(&any) },
                req: KeyRequest { rate_limit: rl(1, 3600), ..ask_sk(&any) },
                want: ok(None, &any, None, rl(1, 3600)),
            },
            Row {
                what: "rate higher",
                parent: Authority { rate_limit: rl(1, 60), ..sk(&any) },
                req: KeyRequest { rate_limit: rl(10_000_000, 1), ..ask_sk(&any) },
                want: Err(Dimension::RateLimit),
            },
            Row {
                what: "same rate, bigger burst",
                parent: Authority { rate_limit: rl(10, 1), ..sk(&any) },
                req: KeyRequest { rate_limit: rl(600, 60), ..ask_sk(&any) },
                want: Err(Dimension::RateLimit),
            },
            Row {
                what: "default-held parent, child omits: same default",
                parent: sk(&any),
                req: ask_sk(&any),
                want: ok(None, &any, None, None),
            },
            Row {
                what: "default-held parent, child below the default",
                parent: sk(&any),
                req: KeyRequest { rate_limit: rl(50, 1), ..ask_sk(&any) },
                want: ok(None, &any, None, rl(50, 1)),
            },
            Row {
                what: "default-held parent, child above the default",
                parent: sk(&any),
                req: KeyRequest { rate_limit: rl(10_000_000, 1), ..ask_sk(&any) },
                want: Err(Dimension::RateLimit),
            },
            Row {
                what: "parent above the default, child up to it",
                parent: Authority { rate_limit: rl(1000, 1), ..sk(&any) },
                req: KeyRequest { rate_limit: rl(1000, 1), ..ask_sk(&any) },
                want: ok(None, &any, None, rl(1000, 1)),
            },
            Row {
                what: "no known ceiling",
                parent: Authority { default_rate_limit: None, ..sk(&any) },
                req: KeyRequest { rate_limit: rl(10_000_000, 1), ..ask_sk(&any) },
                want: ok(None, &any, None, rl(10_000_000, 1)),
            },
            // several limits at once: the review's case
            Row {
                what: "restricted parent, child asks for nothing: inherits everything",
                parent: Authority { expires_at: t30, rate_limit: rl(1, 60), app: Some("shop"), ..rk(&keys, &office) },
                req: ask_rk(&orders, &any),
                want: ok(Some("shop"), &office, t30, rl(1, 60)),
            },
        ];
        for row in &rows {
            let got = bound_key(&row.parent, &row.req).map_err(|e| e.dimension);
            assert_eq!(got, row.want, "{}", row.what);
        }
    }

    #[test]
    fn refusals_name_the_limit_and_use_section_5_codes() {
        let any = IpAllowlist::default();
        let office = ips(&["10.0.0.0/8"]);
        let none = ScopeSet::default();
        let parent = Authority {
            environment: Environment::Live,
            kind: KeyKind::Secret,
            scopes: std::borrow::Cow::Owned(ScopeSet::all()),
            app: None,
            ip_allowlist: &office,
            expires_at: Some(Timestamp(30_000)),
            rate_limit: rl(1, 60),
            default_rate_limit: rl(100, 1),
        };
        let req = KeyRequest {
            environment: Environment::Live,
            kind: KeyKind::Secret,
            scopes: &none,
            app: None,
            ip_allowlist: &any,
            expires_at: Some(Timestamp(60_000)),
            rate_limit: None,
        };
        let e = bound_key(&parent, &req).unwrap_err();
        assert_eq!(
            (e.dimension.code(), e.message.contains("1970-01-01T00:00:30Z")),
            ("insufficient_scope", true),
            "{e}"
        );
        let req = KeyRequest { expires_at: None, rate_limit: rl(2, 60), ..req };
        let e = bound_key(&parent, &req).unwrap_err();
        assert!(e.message.contains("1 requests per 60 s"), "{e}");
        let req = KeyRequest { rate_limit: None, ip_allowlist: &ips(&["192.0.2.1"]), ..req };
        let e = bound_key(&parent, &req).unwrap_err();
        assert_eq!(e.dimension.code(), "ip_not_allowed");
        assert!(e.message.contains("10.0.0.0/8"), "{e}");
        assert_eq!(Dimension::Environment.code(), "environment_mismatch");
        assert_eq!(Dimension::App.code(), "app_not_allowed");
    }

    /// One row per role and kind of scope (SPEC §12).
    #[test]
    fn roles_delegate_what_they_may_use_table() {
        let rows: [(&str, &str, bool); 29] = [
            ("owner", "keys:write", true),
            ("owner", "users:write", true),
            ("owner", "*", true),
            ("admin", "users:write", true),
            ("admin", "*", true),
            ("developer", "keys:write", true),
            ("developer", "oauth_clients:write", true),
            ("developer", "webhooks:write", true),
            ("developer", "audit:read", true),
            ("developer", "users:read", false),
            ("developer", "users:write", false),
            ("developer", "*", false),
            ("developer", "orders:write", true),
            ("viewer", "keys:read", true),
            ("viewer", "audit:read", true),
            ("viewer", "users:read", true),
            ("viewer", "keys:write", false),
            ("viewer", "webhooks:write", false),
            ("viewer", "orders:write", true),
            ("member", "keys:write", false),
            ("member", "keys:read", false),
            ("member", "audit:read", false),
            ("member", "orders:write", true),
            ("member", "*", false),
            ("member", "read_customers", true),
            ("viewer", "write_orders", true),
            ("developer", "keys", true),
            ("", "keys:read", false),
            ("superuser", "keys:read", false),
        ];
        for (role, scope, want) in rows {
            assert_eq!(role_may_delegate(role, &Scope::parse(scope).unwrap()), want, "{role} {scope}");
        }
    }

    #[test]
    fn clients_are_bounded_like_keys() {
        let any = IpAllowlist::default();
        let office = ips(&["10.0.0.0/8"]);
        let orders = set(&["orders:read"]);
        let keys = set(&["keys:write"]);
        let base = Authority {
            environment: Environment::Test,
            kind: KeyKind::Restricted,
            scopes: std::borrow::Cow::Borrowed(&orders),
            app: None,
            ip_allowlist: &any,
            expires_at: None,
            rate_limit: None,
            default_rate_limit: rl(100, 1),
        };
        let code = |p: &Authority<'_>, env, s: &ScopeSet, app| bound_client(p, env, s, app).map_err(|e| e.dimension);
        assert_eq!(code(&base, Environment::Test, &orders, None), Ok(None));
        assert_eq!(code(&base, Environment::Live, &orders, None), Err(Dimension::Environment));
        assert_eq!(code(&base, Environment::Test, &keys, None), Err(Dimension::Scopes));
        let shop = Authority { app: Some("shop"), ..base.clone() };
        assert_eq!(code(&shop, Environment::Test, &orders, None), Ok(Some("shop".into())), "the app is inherited");
        assert_eq!(code(&shop, Environment::Test, &orders, Some("blog")), Err(Dimension::App));
        assert_eq!(
            code(&Authority { ip_allowlist: &office, ..base.clone() }, Environment::Test, &orders, None),
            Err(Dimension::IpAllowlist)
        );
        assert_eq!(
            code(&Authority { expires_at: Some(Timestamp(1)), ..base.clone() }, Environment::Test, &orders, None),
            Err(Dimension::Expiry)
        );
        assert_eq!(
            code(&Authority { rate_limit: rl(1, 60), ..base.clone() }, Environment::Test, &orders, None),
            Err(Dimension::RateLimit)
        );
        assert_eq!(
            code(&Authority { rate_limit: rl(1000, 1), ..base.clone() }, Environment::Test, &orders, None),
            Ok(None),
            "a parent faster than the token default"
        );
    }
}
