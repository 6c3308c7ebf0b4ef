//! Browser-facing pieces shared by the control plane and the gateway: cookies, CSRF tokens,
//! the `return_to` check (no open redirect), and the response around Gatehouse's own pages (whose
//! HTML comes from the templates in `crate::pages`).

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Decodes a query string or an `application/x-www-form-urlencoded` body into `T`: the one parser for
/// both, read as it is (a made-up `/?{q}` URI cut a body at a raw `#` and refused one with a space).
/// Errors name the field (`n: invalid digit found in string`), like axum's `Query`.
pub(crate) fn from_query<T: serde::de::DeserializeOwned>(
    q: &str,
) -> Result<T, serde_path_to_error::Error<serde_urlencoded::de::Error>> {
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes())))
}

/// Name of the cookie that carries the CSRF secret of a browser.
pub(crate) const CSRF_COOKIE: &str = "gatehouse_csrf";

/// Name of the cookie that binds a sign-in to the browser that started it (SPEC §11 "The cross-host
/// ticket"): set on the app host before the redirect to the control plane, whose ticket carries its hash.
pub(crate) const STATE_COOKIE: &str = "gatehouse_state";

/// How long a started sign-in may take (typing a password, a password manager) before it must restart.
pub(crate) const STATE_MAX_AGE_SECS: i64 = 900;

/// The state cookie: only sent to `/__gatehouse/` (never forwarded upstream, never to other paths).
pub fn state_cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    build_cookie(STATE_COOKIE, value, "/__gatehouse/", max_age_secs, secure)
}

/// Name of the cookie that binds a provider sign-in (SPEC §15) to the browser that started it.
pub(crate) const OIDC_COOKIE: &str = "gatehouse_oidc";

/// The provider sign-in binding cookie: only sent to `/login/` (the start and the callback).
pub(crate) fn oidc_cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    build_cookie(OIDC_COOKIE, value, "/login/", max_age_secs, secure)
}

/// Percent-decodes `s` completely; `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether `path` (with query) is a safe place to send a browser on the same host: an absolute path
/// that stays an absolute path however a browser reads it. Refused, before and after percent-decoding:
/// control characters (a browser drops tab and newline, so `/\t/evil` is `//evil`), `\` (read as `/`),
/// a leading `//` (another host) also behind `/./` or `/../` segments, spaces, and malformed escapes.
pub(crate) fn safe_local_path(path: &str) -> bool {
    if path.len() > 4096 || !path.starts_with('/') {
        return false;
    }
    let Some(decoded) = percent_decode(path) else { return false };
    for bytes in [path.as_bytes(), decoded.as_slice()] {
        if bytes.iter().any(|b| b.is_ascii_control() || *b == b'\\') {
            return false;
        }
        let end = bytes.iter().position(|b| matches!(b, b'?' | b'#')).unwrap_or(bytes.len());
        let mut p = &bytes[..end];
        loop {
            if p.starts_with(b"/./") {
                p = &p[2..];
            } else if p.starts_with(b"/../") {
                p = &p[3..];
            } else {
                break;
            }
        }
        if p.starts_with(b"//") {
            return false;
        }
    }
    !path.contains(' ')
}

/// The `Cookie` headers of a request as text. A header that is not visible ASCII cannot be read (and
/// none of ours ever is), so it counts as carrying no cookie of ours.
fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok())
}

/// The name of one `name=value` pair of a `Cookie` header as the `cookie` crate reads it (trimmed),
/// or, for a pair without `=` or with an empty name, the trimmed text itself (which a server may
/// still take for a name, so it is never forwarded when it is one of ours).
fn pair_name(pair: &str) -> &str {
    Cookie::parse(pair).ok().and_then(|c| c.name_raw()).unwrap_or(pair.trim())
}

/// Reads one cookie's values (every occurrence, in order, across every `Cookie` header). Values are
/// as sent: a quoted value keeps its quotes, so it matches no cookie Gatehouse set.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cookie_headers(headers).flat_map(Cookie::split_parse).filter_map(move |c| {
        let c = c.ok()?;
        (c.name() == name).then(|| c.value_raw()).flatten()
    })
}

/// Removes one cookie from the `Cookie` headers, keeping the other pairs (as sent) for the upstream
/// in one header. A header that cannot be read is dropped whole, since it cannot be checked.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<&str> = cookie_headers(headers)
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair_name(pair) != name)
        .collect();
    let joined = kept.join("; ");
    headers.remove(header::COOKIE);
    if !joined.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on HTTPS. `max_age` 0 deletes.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    build_cookie(name, value, "/", max_age_secs, secure)
}

/// Every cookie Gatehouse sets: HttpOnly, SameSite=Lax, on `path`, `Secure` on HTTPS, living
/// `max_age_secs`. A removal (`max_age_secs` 0) also carries an `Expires` in the past, for clients
/// that read no `Max-Age`.
fn build_cookie(name: &str, value: &str, path: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(Duration::seconds(max_age_secs));
    if secure {
        c = c.secure(true);
    }
    if max_age_secs <= 0 {
        c = c.expires(OffsetDateTime::UNIX_EPOCH);
    }
    HeaderValue::from_str(&c.build().to_string()).expect("cookie names and values are base64url")
}

/// The CSRF token for a browser's CSRF cookie: HMAC-SHA256 with the deployment's key. This is the
/// pre-login token (sign-in and setup forms); once there is a session use `csrf_token_for`.
pub(crate) fn csrf_token(key: &[u8], cookie: &str) -> String {
    csrf_token_for(key, cookie, None)
}

/// The CSRF token for a browser's CSRF cookie and, once signed in, its session (the SHA-256 of the
/// session cookie, i.e. the session's id hash). Bound to the session, a (cookie, token) pair taken from
/// one browser is worthless with anyone else's session, even where an app can plant the CSRF cookie
/// (an app and the control plane on one host name share cookies).
pub(crate) fn csrf_token_for(key: &[u8], cookie: &str, session: Option<&gatehouse_core::KeyHash>) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(cookie.as_bytes());
    if let Some(s) = session {
        // The cookie is always 43 characters, so the two inputs can never be confused.
        mac.update(b"\0session\0");
        mac.update(&s.0);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a submitted CSRF token against the browser's cookie and session.
pub(crate) fn csrf_ok_for(
    key: &[u8],
    cookie: Option<&str>,
    session: Option<&gatehouse_core::KeyHash>,
    submitted: &str,
) -> bool {
    match cookie {
        Some(c) if c.len() == 43 => csrf_token_for(key, c, session).as_bytes().ct_eq(submitted.as_bytes()).into(),
        _ => false,
    }
}

/// Constant-time check of a submitted pre-login CSRF token against the browser's cookie.
pub(crate) fn csrf_ok(key: &[u8], cookie: Option<&str>, submitted: &str) -> bool {
    csrf_ok_for(key, cookie, None, submitted)
}

/// Where a sign-in may send the browser back to: a path on the same origin, or an absolute
/// `http(s)` URL whose host Gatehouse serves. Everything else (other hosts, `//evil`, `\`, userinfo,
/// control characters, other schemes) is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReturnTo {
    /// A path (with query) on the host that shows the login page.
    Local(String),
    /// An app host: scheme, host[:port] and path.
    App { scheme: String, host: String, path: String },
}

pub(crate) fn parse_return_to(raw: &str, known_hosts: &[String]) -> Option<ReturnTo> {
    if raw.len() > 4096 || raw.bytes().any(|b| b.is_ascii_control() || b == b'\\' || b == b' ') {
        return None;
    }
    if raw.starts_with('/') {
        return safe_local_path(raw).then(|| ReturnTo::Local(raw.to_owned()));
    }
    let (scheme, rest) = raw.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = authority.to_ascii_lowercase();
    if !known_hosts.iter().any(|h| h == &host) {
        return None;
    }
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    if !safe_local_path(&path) {
        return None;
    }
    Some(ReturnTo::App { scheme: scheme.to_owned(), host, path })
}

/// One of Gatehouse's own pages (a template from `crate::pages`) with the page headers: no caching,
/// no framing, no scripts or outside assets (CSP), no referrer, no content sniffing.
pub fn page(status: StatusCode, page: &impl Template) -> Response {
    let html = match page.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// A page titled `title` saying `message` in one paragraph.
pub fn message(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, &crate::pages::Message { title, message })
}

/// A 303 redirect (after a POST) or 302 (navigation), with no-store.
pub(crate) fn redirect(status: StatusCode, to: &str) -> Response {
    let mut resp = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings and form bodies are read whole, as a form decoder reads them; errors name the field.
    #[test]
    fn from_query_table() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Q {
            a: String,
            n: Option<u32>,
        }
        let ok = [
            ("a=x", "x", None),
            ("a=x#y&n=1", "x#y", Some(1)),
            ("a=x y", "x y", None),
            ("a=%26%3D%2B%25&n=2", "&=+%", Some(2)),
            ("a=%zz", "%zz", None),
            ("n=3&a=caf%C3%A9", "café", Some(3)),
        ];
        for (q, a, n) in ok {
            assert_eq!(from_query::<Q>(q).unwrap(), Q { a: a.into(), n }, "{q}");
        }
        assert_eq!(from_query::<Q>("a=x&n=hi").unwrap_err().to_string(), "n: invalid digit found in string");
        assert!(from_query::<Q>("n=1").is_err(), "a missing field is an error");
    }

    #[test]
    fn return_to_table() {
        let hosts = vec!["app.example.com".to_owned(), "127.0.0.1:4480".to_owned()];
        let ok = [
            ("/dashboard?x=1", ReturnTo::Local("/dashboard?x=1".into())),
            (
                "http://app.example.com/a?b",
                ReturnTo::App { scheme: "http".into(), host: "app.example.com".into(), path: "/a?b".into() },
            ),
            (
                "https://APP.example.com",
                ReturnTo::App { scheme: "https".into(), host: "app.example.com".into(), path: "/".into() },
            ),
            (
                "http://127.0.0.1:4480/x",
                ReturnTo::App { scheme: "http".into(), host: "127.0.0.1:4480".into(), path: "/x".into() },
            ),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_return_to(raw, &hosts), Some(want), "{raw}");
        }
        let bad = [
            "//evil.com/x",
            "/\\evil.com",
            "https://evil.com/",
            "https://app.example.com.evil.com/",
            "https://evil.com@app.example.com/",
            "https://app.example.com@evil.com/",
            "javascript:alert(1)",
            "ftp://app.example.com/",
            "http://127.0.0.1:4481/",
            "http://app.example.com//evil.com",
            "/a\nb",
            "/a b",
            "http:/app.example.com",
            "",
            "evil.com",
            "http://",
            "/%09/evil.com",
            "/%2F/evil.com",
            "/%5Cevil.com",
            "http://app.example.com/%2F%2Fevil.com",
            "http://app.example.com/%09/evil.com",
        ];
        for raw in bad {
            assert_eq!(parse_return_to(raw, &hosts), None, "{raw:?}");
        }
    }

    #[test]
    fn safe_local_path_table() {
        let ok = [
            "/",
            "/account?tab=2",
            "/a/b/c",
            "/search?q=a%20b",
            "/a//b",
            "/?next=//x",
            "/a#//frag",
            "/%E2%9C%93",
            "/a/%2e%2e",
        ];
        for p in ok {
            assert!(safe_local_path(p), "{p:?} should be allowed");
        }
        let bad = [
            "",
            "a",
            "evil.com",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r/evil.com",
            "/%09/evil.com",
            "/%0a/evil.com",
            "/%0D/evil.com",
            "/%00",
            "/%2F/evil.com",
            "/%2f%2fevil.com",
            "/%5C/evil.com",
            "/%5cevil.com",
            "/./%2Fevil.com",
            "/.//evil.com",
            "/..//evil.com",
            "/%2E/%2Fevil.com",
            "/%",
            "/%zz",
            "/%2",
            "/a b",
            "/\x7f",
            "/%7F",
            "http://evil.com/",
            "https:evil.com",
            "javascript:alert(1)",
        ];
        for p in bad {
            assert!(!safe_local_path(p), "{p:?} should be refused");
        }
        assert!(!safe_local_path(&format!("/{}", "a".repeat(4096))), "too long");
    }

    #[test]
    fn cookies_are_read_and_stripped_without_touching_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; gatehouse_session=abc; b=2".parse().unwrap());
        h.append(header::COOKIE, "gatehouse_session=def".parse().unwrap());
        assert_eq!(cookies(&h, "gatehouse_session").collect::<Vec<_>>(), ["abc", "def"]);
        strip_cookie(&mut h, "gatehouse_session");
        assert_eq!(h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>(), ["a=1; b=2"]);
    }

    fn cookie_headers_of(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    /// (Cookie headers, values read for the session cookie, the `Cookie` header forwarded).
    type HostileRow<'a> = (Vec<&'a [u8]>, Vec<&'a str>, Option<&'a str>);

    /// Hostile `Cookie` headers: what Gatehouse reads as its session cookie, and what is left for the
    /// upstream once it is stripped. Reading and stripping agree: whatever is read is never forwarded.
    #[test]
    fn hostile_cookie_headers_table() {
        const S: &str = "gatehouse_session";
        let huge = format!("a={}; gatehouse_session=big; b=2", "x".repeat(64 * 1024));
        let huge_left = format!("a={}; b=2", "x".repeat(64 * 1024));
        #[rustfmt::skip]
        let table: Vec<HostileRow> = vec![
            // (Cookie headers, values read for S, the Cookie header forwarded)
            (vec![b"a=1; gatehouse_session=abc; b=2"], vec!["abc"], Some("a=1; b=2")),
            (vec![b"gatehouse_session=abc; gatehouse_session=def"], vec!["abc", "def"], None),
            (vec![b"a=1", b"gatehouse_session=abc", b"b=2"], vec!["abc"], Some("a=1; b=2")),
            (vec![b""], vec![], None),
            (vec![b";;; ;"], vec![], None),
            (vec![b"gatehouse_session="], vec![""], None),
            (vec![b"gatehouse_session=\"abc\""], vec!["\"abc\""], None),
            (vec![b" gatehouse_session = abc ;b=2"], vec!["abc"], Some("b=2")),
            (vec![b"a=1;gatehouse_session=abc"], vec!["abc"], Some("a=1")),
            (vec![b"gatehouse_session=a=b"], vec!["a=b"], None),
            (vec![b"gatehouse_session"], vec![], None),
            (vec![b"=abc; b=2"], vec![], Some("=abc; b=2")),
            (vec![b"a=\"x;gatehouse_session=abc\""], vec!["abc\""], Some("a=\"x")),
            (vec![b"GATEHOUSE_SESSION=x; gatehouse_sessionx=1; xgatehouse_session=2"], vec![],
             Some("GATEHOUSE_SESSION=x; gatehouse_sessionx=1; xgatehouse_session=2")),
            (vec![huge.as_bytes()], vec!["big"], Some(huge_left.as_str())),
            // Not visible ASCII: unreadable, so neither read nor forwarded.
            (vec![b"gatehouse_session=\xff\xfe; a=1"], vec![], None),
            (vec![b"a=caf\xc3\xa9", b"gatehouse_session=abc"], vec!["abc"], None),
        ];
        for (headers, read, forwarded) in table {
            let mut h = cookie_headers_of(&headers);
            assert_eq!(cookies(&h, S).collect::<Vec<_>>(), read, "{headers:?}");
            strip_cookie(&mut h, S);
            let left: Vec<_> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(left, forwarded.into_iter().collect::<Vec<_>>(), "{headers:?}");
        }
    }

    /// The `Set-Cookie` values Gatehouse sends: one attribute set for every cookie, `Secure` on HTTPS,
    /// removal by `Max-Age=0` and an `Expires` in the past.
    #[test]
    fn set_cookie_values() {
        let table = [
            (set_cookie("gatehouse_csrf", "abc", 86_400, false), "gatehouse_csrf=abc; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400"),
            (
                set_cookie("gatehouse_session", "abc", 3600, true),
                "gatehouse_session=abc; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=3600",
            ),
            (
                set_cookie("gatehouse_session", "", 0, true),
                "gatehouse_session=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ),
            (
                state_cookie("nonce", STATE_MAX_AGE_SECS, false),
                "gatehouse_state=nonce; HttpOnly; SameSite=Lax; Path=/__gatehouse/; Max-Age=900",
            ),
            (
                state_cookie("", 0, false),
                "gatehouse_state=; HttpOnly; SameSite=Lax; Path=/__gatehouse/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got.to_str().unwrap(), want);
        }
    }

    #[test]
    fn csrf_tokens_bind_to_the_cookie() {
        let key = [7u8; 32];
        let cookie = "A".repeat(43);
        let t = csrf_token(&key, &cookie);
        assert!(csrf_ok(&key, Some(&cookie), &t));
        assert!(!csrf_ok(&key, Some(&"B".repeat(43)), &t));
        assert!(!csrf_ok(&key, None, &t));
        assert!(!csrf_ok(&key, Some(&cookie), ""));
    }

    #[test]
    fn csrf_tokens_bind_to_the_session() {
        let key = [7u8; 32];
        let cookie = "A".repeat(43);
        let (mine, theirs) = (gatehouse_core::KeyHash::of("my session"), gatehouse_core::KeyHash::of("their session"));
        let t = csrf_token_for(&key, &cookie, Some(&mine));
        assert!(csrf_ok_for(&key, Some(&cookie), Some(&mine), &t));
        assert!(!csrf_ok_for(&key, Some(&cookie), Some(&theirs), &t), "another session");
        assert!(!csrf_ok_for(&key, Some(&cookie), None, &t), "a bound token is no pre-login token");
        assert!(
            !csrf_ok_for(&key, Some(&cookie), Some(&mine), &csrf_token(&key, &cookie)),
            "a pre-login token is no bound token"
        );
        assert!(!csrf_ok_for(&key, Some(&"B".repeat(43)), Some(&mine), &t), "another cookie");
    }
}
