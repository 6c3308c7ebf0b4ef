//! The gateway's decision (SPEC §3 steps 4–6) as a pure function of the micro's policy and the
//! request's facts. Credential *verification* happens afterwards, in the server; this decides which
//! credential, if any, the request is judged by — and never lets a presented key or token fall back
//! to the ambient cookie.

pub use crate::credentials::AppKeyHeader;
use crate::route::RoutePattern;
use crate::scope::Scope;

/// What a micro allows, from the Spacefile (and its marked extensions).
#[derive(Clone, Debug, Default)]
pub struct MicroPolicy {
    /// `public: true`: nothing is checked.
    pub public: bool,
    /// `public_routes`: patterns on the micro-relative path.
    pub public_routes: Vec<RoutePattern>,
    /// `presets.api_keys: true`: `X-Space-App-Key` / `Authorization: Bearer <key>` accepted.
    pub api_keys: bool,
    /// Extension: route → required scope, first match wins.
    pub route_scopes: Vec<(RoutePattern, Scope)>,
}

impl MicroPolicy {
    /// The scope a request needs, if the route declares one.
    pub fn required_scope(&self, method: &str, path: &str) -> Option<&Scope> {
        self.route_scopes.iter().find(|(p, _)| p.matches(method, path)).map(|(_, s)| s)
    }

    pub fn is_public(&self, method: &str, path: &str) -> bool {
        self.public || self.public_routes.iter().any(|p| p.matches(method, path))
    }
}

/// The `Authorization` header as presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authorization<'a> {
    Absent,
    /// `Bearer <token>` (scheme case-insensitive).
    Bearer(&'a str),
    /// Another scheme (e.g. `Basic`): not a Gatehouse credential; passed through untouched.
    Other,
    /// More than one `Authorization` header.
    Repeated,
}

/// What the gateway knows about a request before checking anything.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The micro-relative, normalized path.
    pub path: &'a str,
    /// `X-Space-App-Key`: absent, one value, or repeated.
    pub app_key: AppKeyHeader<'a>,
    pub authorization: Authorization<'a>,
    /// Whether a Gatehouse session cookie is present.
    pub has_session_cookie: bool,
    /// `is_browser_navigation(…)` of this request.
    pub browser_navigation: bool,
    /// Whether a bearer token looks like one of our API keys (decided by the caller with the namespace).
    pub bearer_is_api_key: bool,
}

/// Which credential judges the request, or the answer without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Step 4: forward with no credential check.
    Public,
    /// An API key (from either header); verify it alone.
    ApiKey { key: &'a str, scope: Option<Scope> },
    /// A bearer token that is not an API key (OAuth); verify it alone.
    BearerToken { token: &'a str, scope: Option<Scope> },
    /// The session cookie; verify it.
    Session { scope: Option<Scope> },
    /// Step 6, browser: redirect to login with the original URL.
    RedirectToLogin,
    /// 401 `missing_credentials` (not a browser, no credential).
    MissingCredentials,
    /// 401: an API key presented to a micro without `presets.api_keys`.
    ApiKeysNotEnabled,
    /// 400 `multiple_credentials`.
    MultipleCredentials,
}

/// SPEC §3, steps 4 to 6.
pub fn decide<'a>(policy: &MicroPolicy, req: &RequestFacts<'a>) -> Decision<'a> {
    if policy.is_public(req.method, req.path) {
        return Decision::Public;
    }
    let scope = policy.required_scope(req.method, req.path).cloned();
    if req.app_key == AppKeyHeader::Repeated || req.authorization == Authorization::Repeated {
        return Decision::MultipleCredentials;
    }
    let bearer = match req.authorization {
        Authorization::Bearer(t) => Some(t),
        _ => None,
    };
    let app_key = match req.app_key {
        AppKeyHeader::One(key) => Some(key),
        AppKeyHeader::Absent | AppKeyHeader::Repeated => None,
    };
    match (app_key, bearer) {
        (Some(_), Some(_)) => Decision::MultipleCredentials,
        (Some(key), None) => {
            if policy.api_keys {
                Decision::ApiKey { key, scope }
            } else {
                Decision::ApiKeysNotEnabled
            }
        }
        (None, Some(token)) if req.bearer_is_api_key => {
            if policy.api_keys {
                Decision::ApiKey { key: token, scope }
            } else {
                Decision::ApiKeysNotEnabled
            }
        }
        (None, Some(token)) => Decision::BearerToken { token, scope },
        (None, None) if req.has_session_cookie => Decision::Session { scope },
        (None, None) if req.browser_navigation => Decision::RedirectToLogin,
        (None, None) => Decision::MissingCredentials,
    }
}

/// A request is a browser navigation only when it is GET/HEAD and either says
/// `Sec-Fetch-Mode: navigate` or its `Accept` prefers `text/html` (q-values honoured; `*/*` alone is not a browser).
pub fn is_browser_navigation(method: &str, accept: Option<&str>, sec_fetch_mode: Option<&str>) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    if sec_fetch_mode.is_some_and(|m| m.trim().eq_ignore_ascii_case("navigate")) {
        return true;
    }
    let Some(accept) = accept else { return false };
    let mut html_q: Option<f32> = None;
    let mut best_other: f32 = 0.0;
    for item in accept.split(',').take(64) {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")) {
                q = v.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0);
            }
        }
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html_q = Some(html_q.map_or(q, |h: f32| h.max(q))),
            // Wildcards say "anything", not "HTML please".
            "*/*" | "text/*" => {}
            _ => best_other = best_other.max(q),
        }
    }
    html_q.is_some_and(|h| h > 0.0 && h >= best_other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(public: bool, routes: &[&str], api_keys: bool) -> MicroPolicy {
        MicroPolicy {
            public,
            public_routes: routes.iter().map(|r| RoutePattern::parse(r).unwrap()).collect(),
            api_keys,
            route_scopes: vec![(RoutePattern::parse("POST /orders/*").unwrap(), Scope::parse("orders:write").unwrap())],
        }
    }

    const KEY: &str = "gth_sk_live_x";

    fn facts<'a>(
        method: &'a str,
        path: &'a str,
        keys: &'a [&'a str],
        auth: Authorization<'a>,
        cookie: bool,
        browser: bool,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            app_key: match keys {
                [] => AppKeyHeader::Absent,
                [key] => AppKeyHeader::One(key),
                _ => AppKeyHeader::Repeated,
            },
            authorization: auth,
            has_session_cookie: cookie,
            browser_navigation: browser,
            bearer_is_api_key: matches!(auth, Authorization::Bearer(t) if t.starts_with("gth_")),
        }
    }

    /// The truth table of §3 steps 4–6: one row per combination that matters.
    #[test]
    fn decision_truth_table() {
        use Authorization::*;
        use Decision as D;
        let deta = policy(false, &["/ping"], true);
        let no_keys = policy(false, &["/ping"], false);
        let open = policy(true, &[], false);
        let feed = policy(false, &["GET /feed/*"], true);
        let orders = Some(Scope::parse("orders:write").unwrap());
        let rows: Vec<(&MicroPolicy, RequestFacts, D)> = vec![
            // Step 4: public wins over everything, even a bad key.
            (&deta, facts("GET", "/ping", &[], Absent, false, false), D::Public),
            (&deta, facts("GET", "/ping", &["junk"], Absent, false, false), D::Public),
            (&deta, facts("GET", "/ping", &["a", "b"], Repeated, true, true), D::Public),
            (&open, facts("POST", "/anything", &[], Absent, false, false), D::Public),
            (&feed, facts("GET", "/feed/1", &[], Absent, false, false), D::Public),
            (&feed, facts("HEAD", "/feed/1", &[], Absent, false, false), D::Public),
            (&feed, facts("POST", "/feed/1", &[], Absent, false, false), D::MissingCredentials),
            // Step 5: presented key or token judges alone, cookie ignored.
            (&deta, facts("GET", "/", &[KEY], Absent, true, true), D::ApiKey { key: KEY, scope: None }),
            (&deta, facts("GET", "/", &[], Bearer(KEY), true, true), D::ApiKey { key: KEY, scope: None }),
            (
                &deta,
                facts("POST", "/orders/1", &[KEY], Absent, false, false),
                D::ApiKey { key: KEY, scope: orders.clone() },
            ),
            (
                &deta,
                facts("GET", "/", &[], Bearer("opaque-token"), true, true),
                D::BearerToken { token: "opaque-token", scope: None },
            ),
            (&no_keys, facts("GET", "/", &[KEY], Absent, true, true), D::ApiKeysNotEnabled),
            (&no_keys, facts("GET", "/", &[], Bearer(KEY), true, false), D::ApiKeysNotEnabled),
            (
                &no_keys,
                facts("GET", "/", &[], Bearer("opaque"), false, false),
                D::BearerToken { token: "opaque", scope: None },
            ),
            // Two credentials, or one repeated: 400.
            (&deta, facts("GET", "/", &[KEY], Bearer(KEY), false, false), D::MultipleCredentials),
            (&deta, facts("GET", "/", &[KEY, KEY], Absent, false, false), D::MultipleCredentials),
            (&deta, facts("GET", "/", &[], Repeated, true, true), D::MultipleCredentials),
            // Other Authorization schemes are the app's business, not a credential of ours.
            (&deta, facts("GET", "/", &[], Other, true, true), D::Session { scope: None }),
            (&deta, facts("GET", "/", &[], Other, false, false), D::MissingCredentials),
            // Cookie, then step 6.
            (&deta, facts("GET", "/", &[], Absent, true, false), D::Session { scope: None }),
            (&deta, facts("GET", "/", &[], Absent, false, true), D::RedirectToLogin),
            (&deta, facts("GET", "/", &[], Absent, false, false), D::MissingCredentials),
            (&deta, facts("GET", "/ping/", &[], Absent, false, false), D::MissingCredentials),
        ];
        for (i, (p, f, want)) in rows.into_iter().enumerate() {
            assert_eq!(decide(p, &f), want, "row {i}: {f:?}");
        }
    }

    #[test]
    fn browser_navigation_table() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        let rows: &[(&str, Option<&str>, Option<&str>, bool)] = &[
            ("GET", Some(chrome), None, true),
            ("HEAD", Some(chrome), None, true),
            ("POST", Some(chrome), Some("navigate"), false),
            ("GET", Some("*/*"), None, false),
            ("GET", None, None, false),
            ("GET", None, Some("navigate"), true),
            ("GET", Some("*/*"), Some("cors"), false),
            ("GET", Some("application/json"), None, false),
            ("GET", Some("application/json, text/html;q=0.9"), None, false),
            ("GET", Some("text/html;q=0.5, application/json;q=0.4"), None, true),
            ("GET", Some("text/html;q=0"), None, false),
            ("GET", Some("text/*"), None, false),
            ("GET", Some("TEXT/HTML"), None, true),
            ("GET", Some("text/html;q=bogus"), None, false),
            ("GET", Some("text/html;q=2"), None, false),
        ];
        for (m, accept, mode, want) in rows {
            assert_eq!(is_browser_navigation(m, *accept, *mode), *want, "{m} {accept:?} {mode:?}");
        }
    }
}
