//! Where the plain-HTTP listener sends a request (SPEC §14 `http_redirect_listen`): the same host,
//! path and query over HTTPS, and only for a host Gatehouse serves, so the listener can never be used
//! as an open redirect to somebody else's site.
//!
//! The `Host` a browser sends to port 80 carries no port (or the plain port); the HTTPS side may be
//! on another one. A served host is therefore matched by its name alone, and the answer names the
//! HTTPS authority it was configured with: `host:port` as written, or the host and the HTTPS port of
//! its listener (omitted when it is 443).

/// The hosts served over HTTPS, each with the authority the redirect names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpsHosts {
    /// (host name, lower case without port; HTTPS authority).
    targets: Vec<(String, String)>,
}

/// Why a plain-HTTP request is not redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// No `Host` header (and no absolute-form target).
    NoHost,
    /// More than one `Host` header.
    ManyHosts,
    /// A `Host` that is not a plain `host[:port]` (userinfo, path characters, bad port, not ASCII…),
    /// or an absolute-form target that names another authority than `Host`.
    BadHost,
    /// A well-formed host that Gatehouse does not serve.
    UnknownHost,
    /// The request target is not an absolute path (`*`, or bytes a URL must not carry).
    BadTarget,
}

impl HttpsHosts {
    /// Adds a served host: `host` (lower-cased here) with an explicit port is reached at exactly that
    /// authority; without one at `https_port` (no port in the URL when it is 443). A host that is not
    /// a plain `host[:port]` is ignored: it could not be matched anyway. The first entry for a name wins.
    pub fn add(&mut self, host: &str, https_port: u16) {
        let host = host.to_ascii_lowercase();
        let Some((name, port)) = split_authority(host.as_bytes()) else {
            return;
        };
        if self.targets.iter().any(|(n, _)| n == name) {
            return;
        }
        let authority = match (port, https_port) {
            (Some(_), _) => host.clone(),
            (None, 443) => name.to_owned(),
            (None, p) => format!("{name}:{p}"),
        };
        self.targets.push((name.to_owned(), authority));
    }

    /// The HTTPS authorities redirects may name.
    pub fn authorities(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|(_, a)| a.as_str())
    }

    /// The `Location` for a plain-HTTP request with these `Host` header values, the authority of an
    /// absolute-form target (if it was one) and the target's path and query.
    pub fn location(
        &self,
        host_headers: &[&[u8]],
        target_authority: Option<&[u8]>,
        path_and_query: &[u8],
    ) -> Result<String, RedirectRefusal> {
        let host = match (host_headers, target_authority) {
            ([_, _, ..], _) => return Err(RedirectRefusal::ManyHosts),
            ([h], Some(t)) if !h.trim_ascii().eq_ignore_ascii_case(t) => return Err(RedirectRefusal::BadHost),
            ([h], _) => h.trim_ascii(),
            ([], Some(t)) => t,
            ([], None) => return Err(RedirectRefusal::NoHost),
        };
        if host.is_empty() {
            return Err(RedirectRefusal::NoHost);
        }
        let host = host.to_ascii_lowercase();
        let (name, _port) = split_authority(&host).ok_or(RedirectRefusal::BadHost)?;
        let authority = self
            .targets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
            .ok_or(RedirectRefusal::UnknownHost)?;
        if path_and_query.first() != Some(&b'/') || path_and_query.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
            return Err(RedirectRefusal::BadTarget);
        }
        let path = std::str::from_utf8(path_and_query).map_err(|_| RedirectRefusal::BadTarget)?;
        Ok(format!("https://{authority}{path}"))
    }
}

/// A plain `host[:port]` (lower case): a DNS name or IPv4 address of letters, digits, `-` and `.`, or
/// a bracketed IPv6 literal, then an optional decimal port of at most five digits.
fn split_authority(a: &[u8]) -> Option<(&str, Option<u16>)> {
    let (name, port) = if a.first() == Some(&b'[') {
        let close = a.iter().position(|&b| b == b']')?;
        let inner = &a[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        match &a[close + 1..] {
            [] => (&a[..=close], None),
            [b':', p @ ..] => (&a[..=close], Some(p)),
            _ => return None,
        }
    } else {
        let (name, port) = match a.iter().rposition(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        };
        let label_ok = |l: &[u8]| {
            !l.is_empty()
                && l.len() <= 63
                && l.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && l[0] != b'-'
                && l[l.len() - 1] != b'-'
        };
        if name.is_empty() || name.len() > 253 || !name.split(|&b| b == b'.').all(label_ok) {
            return None;
        }
        (name, port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit) => {
            Some(std::str::from_utf8(p).ok()?.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((std::str::from_utf8(name).ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RedirectRefusal::*;

    /// One request as the listener sees it: `Host` values, the absolute-form authority, the target.
    type Row<'a, T> = (&'a [&'a [u8]], Option<&'a [u8]>, &'a [u8], T);

    fn hosts() -> HttpsHosts {
        let mut h = HttpsHosts::default();
        h.add("app.test", 8443);
        h.add("Shop.Test:9443", 8443);
        h.add("cp.test", 443);
        h.add("[::1]", 8443);
        h.add("127.0.0.1", 8443);
        h.add("not a host", 443);
        h
    }

    #[test]
    fn served_hosts_go_to_their_https_authority_with_path_and_query() {
        let h = hosts();
        let rows: Vec<Row<&str>> = vec![
            (&[b"app.test"], None, b"/", "https://app.test:8443/"),
            (&[b"APP.test:80"], None, b"/a/b?c=d&e", "https://app.test:8443/a/b?c=d&e"),
            (&[b" app.test:8080 "], None, b"/x", "https://app.test:8443/x"),
            (&[b"shop.test"], None, b"/cart", "https://shop.test:9443/cart"),
            (&[b"cp.test"], None, b"/login?return_to=%2F", "https://cp.test/login?return_to=%2F"),
            (&[b"[::1]:80"], None, b"/", "https://[::1]:8443/"),
            (&[b"127.0.0.1"], None, b"/", "https://127.0.0.1:8443/"),
            (&[], Some(b"app.test"), b"/abs", "https://app.test:8443/abs"),
            (&[b"app.test"], Some(b"APP.TEST"), b"/abs", "https://app.test:8443/abs"),
            // A path that looks like a network path stays a path on the served host.
            (&[b"app.test"], None, b"//evil.test/x", "https://app.test:8443//evil.test/x"),
        ];
        for (host, target, path, want) in rows {
            assert_eq!(h.location(host, target, path).as_deref(), Ok(want), "{host:?} {target:?} {path:?}");
        }
        assert_eq!(
            h.authorities().collect::<Vec<_>>(),
            ["app.test:8443", "shop.test:9443", "cp.test", "[::1]:8443", "127.0.0.1:8443"]
        );
    }

    #[test]
    fn hostile_hosts_and_targets_are_refused() {
        let h = hosts();
        let rows: Vec<Row<RedirectRefusal>> = vec![
            (&[], None, b"/", NoHost),
            (&[b""], None, b"/", NoHost),
            (&[b"   "], None, b"/", NoHost),
            (&[b"app.test", b"app.test"], None, b"/", ManyHosts),
            (&[b"app.test", b"evil.test"], None, b"/", ManyHosts),
            (&[b"evil.test"], None, b"/", UnknownHost),
            (&[b"app.test.evil.test"], None, b"/", UnknownHost),
            (&[b"evilapp.test"], None, b"/", UnknownHost),
            (&[b"test"], None, b"/", UnknownHost),
            (&[b"app.test@evil.test"], None, b"/", BadHost),
            (&[b"evil.test@app.test"], None, b"/", BadHost),
            (&[b"app.test/evil.test"], None, b"/", BadHost),
            (&[b"app.test\\evil.test"], None, b"/", BadHost),
            (&[b"app.test?x"], None, b"/", BadHost),
            (&[b"app.test#x"], None, b"/", BadHost),
            (&[b"app.test:"], None, b"/", BadHost),
            (&[b"app.test:99999"], None, b"/", BadHost),
            (&[b"app.test:123456"], None, b"/", BadHost),
            (&[b"app.test:80:80"], None, b"/", BadHost),
            (&[b"app.test:8a"], None, b"/", BadHost),
            (&[b"app%2etest"], None, b"/", BadHost),
            (&[b"app.test."], None, b"/", BadHost),
            (&[b".app.test"], None, b"/", BadHost),
            (&[b"app..test"], None, b"/", BadHost),
            (&[b"-app.test"], None, b"/", BadHost),
            (&[b"app.test\r\nLocation: https://evil.test"], None, b"/", BadHost),
            (&[b"\xc3\xa4pp.test"], None, b"/", BadHost),
            (&[b"[::1"], None, b"/", BadHost),
            (&[b"[::1]x"], None, b"/", BadHost),
            (&[b"[evil.test]"], None, b"/", BadHost),
            (&[b"[]"], None, b"/", BadHost),
            // An absolute-form target must name the Host it came with.
            (&[b"app.test"], Some(b"evil.test"), b"/", BadHost),
            (&[], Some(b"evil.test"), b"/", UnknownHost),
            (&[b"app.test"], None, b"*", BadTarget),
            (&[b"app.test"], None, b"", BadTarget),
            (&[b"app.test"], None, b"evil.test/", BadTarget),
            (&[b"app.test"], None, b"/a b", BadTarget),
            (&[b"app.test"], None, b"/a\r\nSet-Cookie: x=y", BadTarget),
            (&[b"app.test"], None, "/ä".as_bytes(), BadTarget),
        ];
        for (host, target, path, want) in rows {
            assert_eq!(h.location(host, target, path), Err(want), "{host:?} {target:?} {path:?}");
        }
    }
}
