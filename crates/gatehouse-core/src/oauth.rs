//! OAuth 2.0 rules that need no I/O (SPEC §7): redirect URI registration and matching (exact, with
//! RFC 8252's any-port rule for loopback), PKCE S256 (RFC 7636), and the `scope` parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scope::Scope;

const MAX_REDIRECT_URI_LEN: usize = 2000;

/// The pieces of a redirect URI that matching looks at.
#[derive(Debug, PartialEq, Eq)]
struct UriParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    /// Path and query, exactly as written.
    rest: &'a str,
}

/// Splits `scheme://authority rest`, refusing what RFC 3986 does not allow or what a redirect URI has
/// no business holding: a scheme outside `ALPHA *(ALPHA / DIGIT / + / - / .)`, userinfo, an empty
/// host, a host that is not a DNS name or a bracketed IPv6 address (no zone id, no percent-encoding),
/// and a port that is empty, not decimal, has a leading zero, is 0, or is above 65535.
fn split_uri(uri: &str) -> Option<UriParts<'_>> {
    let (scheme, rest) = uri.split_once("://")?;
    if !valid_scheme(scheme) {
        return None;
    }
    let (authority, rest) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if !valid_dns_name(host) {
            return None;
        }
        (host, port)
    };
    if let Some(p) = port {
        let decimal = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
        if !decimal || p.parse::<u16>().is_err() {
            return None;
        }
    }
    Some(UriParts { scheme, host, port, rest })
}

/// RFC 3986 §3.1: a letter, then letters, digits, `+`, `-` or `.`.
fn valid_scheme(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A host name of non-empty labels of letters, digits, `-` and `_`, at most 63 characters each and
/// 253 in all (IPv4 literals are of this shape too).
fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// Checks a redirect URI a client wants to register: absolute, no fragment, no userinfo, no
/// whitespace or control characters; `https`, `http` only on a loopback host, or a private-use
/// scheme with a dot (`com.example.app:/cb`, RFC 8252 §7.1).
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let shown: String = uri.chars().take(60).collect();
    if uri.is_empty() || uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(format!("redirect URI `{shown}` must be 1 to {MAX_REDIRECT_URI_LEN} characters"));
    }
    if uri.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b >= 0x80) {
        return Err(format!("redirect URI `{shown}` contains whitespace, control, backslash or non-ASCII characters"));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI `{shown}` must not contain a fragment"));
    }
    if let Some(parts) = split_uri(uri) {
        return match parts.scheme {
            "https" => Ok(()),
            "http" if is_loopback_host(parts.host) => Ok(()),
            "http" => Err(format!("redirect URI `{shown}` must use https (http is allowed only for 127.0.0.1, [::1] and localhost)")),
            s if s.contains('.') => Ok(()),
            _ => Err(format!("redirect URI `{shown}` has a scheme that is neither https nor a private-use scheme like com.example.app")),
        };
    }
    // A private-use scheme without an authority: `com.example.app:/callback`.
    if uri.contains("://") {
        return Err(format!("redirect URI `{shown}` has an invalid scheme, host or port (ports are 1 to 65535; no user name, no empty host)"));
    }
    match uri.split_once(':') {
        Some((scheme, rest))
            if scheme.contains('.') && valid_scheme(scheme) && rest.starts_with('/') && !rest.starts_with("//") =>
        {
            Ok(())
        }
        _ => Err(format!(
            "redirect URI `{shown}` is not an absolute URI (https://…, http://127.0.0.1…, or com.example.app:/…)"
        )),
    }
}

/// Whether `presented` is the registered URI: byte-for-byte, except that for `http` on a loopback
/// host any port is accepted (RFC 8252 §7.3). No normalisation: case, trailing slashes, extra query
/// parameters and fragments all make a different URI.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    if presented.contains('#') || presented.len() > MAX_REDIRECT_URI_LEN {
        return false;
    }
    match (split_uri(registered), split_uri(presented)) {
        (Some(r), Some(p)) => {
            r.scheme == "http" && p.scheme == "http" && is_loopback_host(r.host) && r.host == p.host && r.rest == p.rest
        }
        _ => false,
    }
}

/// Whether a `code_challenge` has the S256 shape: 43 characters of base64url (a SHA-256, unpadded).
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` is a valid `code_verifier` (43–128 unreserved characters) whose S256 is `challenge`.
/// The comparison is constant-time.
pub fn pkce_s256_ok(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !shaped || !valid_challenge(challenge) {
        return false;
    }
    let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Whether a presented bearer string can be one of our access tokens: `{ns}_at_` + 43 base64url
/// characters (opaque), or three non-empty base64url segments (an RFC 9068 JWT), at most 4 KiB.
/// Anything else is refused without a storage lookup.
pub fn looks_like_access_token(namespace: &str, token: &str) -> bool {
    let b64url = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if token.len() > 4096 {
        return false;
    }
    if let Some(rest) = token.strip_prefix(namespace).and_then(|r| r.strip_prefix("_at_")) {
        return rest.len() == 43 && b64url(rest);
    }
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| b64url(p))
}

/// Parses a `scope` parameter: scope tokens separated by single spaces; duplicates are dropped.
pub fn parse_scope_param(s: &str) -> Result<Vec<Scope>, String> {
    if s.len() > 4096 {
        return Err("the scope parameter is too long".into());
    }
    let mut out: Vec<Scope> = Vec::new();
    for token in s.split(' ').filter(|t| !t.is_empty()) {
        let scope = Scope::parse(token)?;
        if scope.is_wildcard() {
            return Err("`*` cannot be requested through OAuth; ask for the scopes the app needs".into());
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_table() {
        let ok = [
            "https://app.example.com/callback",
            "https://app.example.com/cb?tenant=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:9/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
            "com.example.app://callback",
        ];
        for u in ok {
            assert_eq!(validate_redirect_uri(u), Ok(()), "{u}");
        }
        let bad = [
            "",
            "/relative",
            "app.example.com/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user@app.example.com/cb",
            "https://app.example.com/c b",
            "https://app.example.com/\ncb",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://",
            "https://app.example.com:99999999/cb",
            "https://app.example.com\\@evil.com/",
            "ftp://files.example.com/",
            "http://127.0.0.1.evil.com/cb",
        ];
        for u in bad {
            assert!(validate_redirect_uri(u).is_err(), "{u:?} should be refused");
        }
        // Hostile authorities: every row must be refused, and must not match a loopback registration either.
        let hostile = [
            "https://app.example.com:65536/cb",
            "https://app.example.com:99999/cb",
            "http://127.0.0.1:65536/cb",
            "http://[::1]:70000/cb",
            "https://app.example.com:0/cb",
            "http://127.0.0.1:0/cb",
            "https://app.example.com:08080/cb",
            "https://app.example.com:/cb",
            "https://app.example.com:80a/cb",
            "https://app.example.com:-1/cb",
            "https://app.example.com:+443/cb",
            "https://app.example.com:0x50/cb",
            "https://app.example.com:443:443/cb",
            "https://:443/cb",
            "https://:/cb",
            "https:///cb",
            "https://?x",
            "https://user:pw@app.example.com/cb",
            "https://@app.example.com/cb",
            "http://u@127.0.0.1/cb",
            "https://app.example.com/cb#",
            "https://app.example.com/cb#access_token=x",
            "https://app..example.com/cb",
            "https://.app.example.com/cb",
            "https://app.example.com./cb",
            "https://app%2eexample.com/cb",
            "https://evil.com%2f@app.example.com/cb",
            "https://[]/cb",
            "https://[::1/cb",
            "https://[::1]x/cb",
            "https://[fe80::1%25eth0]/cb",
            "https://[not-v6]/cb",
            "http://[::1]]/cb",
            "https:/evil.example://cb",
            "1com.example.app://cb",
            "com.exa_mple.app://cb",
        ];
        for u in hostile {
            assert!(validate_redirect_uri(u).is_err(), "{u:?} should be refused");
            assert!(!redirect_uri_matches("http://127.0.0.1/cb", u), "{u:?} must not match a loopback registration");
        }
        let msg = validate_redirect_uri("https://app.example.com:65536/cb").unwrap_err();
        assert!(msg.contains("1 to 65535"), "{msg}");
        for u in [
            "https://app.example.com:65535/cb",
            "https://app.example.com:1/cb",
            "http://127.0.0.1:65535/cb",
            "https://my_host.example.com/cb",
            "https://[2001:db8::1]:8443/cb",
        ] {
            assert_eq!(validate_redirect_uri(u), Ok(()), "{u}");
        }
        assert!(validate_redirect_uri(&format!("https://a.example/{}", "x".repeat(3000))).is_err());
    }

    #[test]
    fn matching_table() {
        let reg = "https://app.example.com/callback";
        let rows = [
            (reg, reg, true),
            (reg, "https://app.example.com/callback/", false),
            (reg, "https://APP.example.com/callback", false),
            (reg, "https://app.example.com/Callback", false),
            (reg, "https://app.example.com/callback?x=1", false),
            (reg, "https://app.example.com/callback#x", false),
            (reg, "https://evil@app.example.com/callback", false),
            (reg, "https://app.example.com:444/callback", false),
            (reg, "https://app.example.com:443/callback", false),
            (reg, "http://app.example.com/callback", false),
            (reg, "https://app.example.com.evil.com/callback", false),
            (reg, "https://app.example.com/callback/../callback", false),
            (reg, "https://app.example.com/%63allback", false),
            ("https://app.example.com/cb?a=1", "https://app.example.com/cb?a=1", true),
            ("https://app.example.com/cb?a=1", "https://app.example.com/cb?a=1&b=2", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb", true),
            ("http://127.0.0.1:8000/cb", "http://127.0.0.1:9/cb", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb/", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb?x", false),
            ("http://127.0.0.1/cb", "http://localhost:51234/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb#f", false),
            ("http://127.0.0.1/cb", "http://u@127.0.0.1:51234/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:x/cb", false),
            ("http://[::1]/cb", "http://[::1]:7000/cb", true),
            ("https://127.0.0.1/cb", "https://127.0.0.1:8443/cb", false),
            ("com.example.app:/cb", "com.example.app:/cb", true),
            ("com.example.app:/cb", "com.example.app:/cb2", false),
        ];
        for (i, (r, p, want)) in rows.into_iter().enumerate() {
            assert_eq!(redirect_uri_matches(r, p), want, "row {i}: {r} vs {p}");
        }
    }

    #[test]
    fn pkce_table() {
        // The challenge was computed independently (Python's hashlib + base64.urlsafe_b64encode).
        let verifier = "dBjftJeZ4CVP-mJ92K1a2l3fEekrxnZ6N7bYDL6NdJE";
        let challenge = "C-BJhW3XG5wl32qZ7-42DelH8PFhvEpBZI49o0Ds_dQ";
        assert!(pkce_s256_ok(verifier, challenge));
        let bad = [
            ("", challenge),
            (&verifier[..42], challenge),
            ("dBjftJeZ4CVP-mJ92K1a2l3fEekrxnZ6N7bYDL6NdJF", challenge),
            (verifier, verifier),
            (verifier, "C-BJhW3XG5wl32qZ7-42DelH8PFhvEpBZI49o0Ds_dQ="),
            (verifier, ""),
            ("dBjftJeZ4CVP mJ92K1a2l3fEekrxnZ6N7bYDL6NdJE", challenge),
        ];
        for (v, c) in bad {
            assert!(!pkce_s256_ok(v, c), "{v:?} / {c:?}");
        }
        let long = "a".repeat(129);
        assert!(!pkce_s256_ok(&long, &B64.encode(Sha256::digest(long.as_bytes()))));
        let max = "a".repeat(128);
        assert!(pkce_s256_ok(&max, &B64.encode(Sha256::digest(max.as_bytes()))));
    }

    #[test]
    fn access_token_shape_table() {
        let opaque = format!("gth_at_{}", "A".repeat(42) + "-");
        assert!(looks_like_access_token("gth", &opaque));
        assert!(looks_like_access_token("gth", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        let bad = [
            String::new(),
            "gth_at_".into(),
            format!("gth_at_{}", "A".repeat(42)),
            format!("gth_at_{}", "A".repeat(44)),
            format!("gth_at_{}=", "A".repeat(42)),
            format!("xyz_at_{}", "A".repeat(43)),
            format!("gth_rt_{}", "A".repeat(43)),
            "a.b".into(),
            "a..c".into(),
            "a.b.c.d".into(),
            "a.b+.c".into(),
            format!("{}.b.c", "a".repeat(5000)),
            "gth_sk_live_notatoken".into(),
        ];
        for b in bad {
            assert!(!looks_like_access_token("gth", &b), "{b:?}");
        }
    }

    #[test]
    fn scope_param_table() {
        assert_eq!(parse_scope_param("orders:read  orders:read profile:read").unwrap().len(), 2);
        assert!(parse_scope_param("").unwrap().is_empty());
        // SPEC §4.4: any RFC 6749 scope token, as the API guide's URL asks for them (`+` is already a space here).
        let guide: Vec<String> = parse_scope_param("read_customers write_orders read_customers")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(guide, ["read_customers", "write_orders"]);
        assert_eq!(parse_scope_param("orders Orders:read a:b;c:d").unwrap().len(), 3);
        for bad in [
            "*",
            "orders:read *",
            "orders:read\u{0}",
            "orders:read\torders:write",
            "say\"hi\"",
            "back\\slash",
            "caf\u{e9}",
            "orders:read\n",
        ] {
            assert!(parse_scope_param(bad).is_err(), "{bad:?}");
        }
        assert!(parse_scope_param(&format!("a{}", "b".repeat(200))).is_err());
        assert!(parse_scope_param(&"a:b ".repeat(2000)).is_err());
    }
}
