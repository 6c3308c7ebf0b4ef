//! Route patterns of `public_routes` and of the route → scope map (SPEC §3): anchored globs on the
//! micro-relative path where `*` matches any run of characters, `/` included. The extension
//! `"GET /feed/*"` limits a pattern to some methods (`HEAD` goes with `GET`).

use std::fmt;

/// One pattern, optionally method-qualified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    methods: Option<Vec<String>>,
    glob: String,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl RoutePattern {
    /// Accepts `/path/*` or `METHOD[,METHOD…] /path/*`. The path must start with `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (methods, glob) = match s.split_once(' ') {
            Some((m, g)) => {
                let mut methods = vec![];
                for method in m.split(',') {
                    if !METHODS.contains(&method) {
                        return Err(format!(
                            "`{method}` in route `{s}` is not a method; use one of {} (upper case)",
                            METHODS.join(", ")
                        ));
                    }
                    methods.push(method.to_owned());
                }
                (Some(methods), g.trim_start())
            }
            None => (None, s),
        };
        if !glob.starts_with('/') {
            return Err(format!("route `{s}` must start with `/` (or `METHOD /`)"));
        }
        if glob.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#') {
            return Err(format!("route `{s}` may not contain spaces, `?`, `#` or control characters"));
        }
        Ok(Self { methods, glob: glob.to_owned() })
    }

    /// Whether a request with `method` to the (normalized, micro-relative) `path` matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(methods) = &self.methods {
            let m = if method == "HEAD" { "GET" } else { method };
            if !methods.iter().any(|x| x == method || x == m) {
                return false;
            }
        }
        glob_match(self.glob.as_bytes(), path.as_bytes())
    }

    pub fn is_method_qualified(&self) -> bool {
        self.methods.is_some()
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.methods {
            write!(f, "{} ", m.join(","))?;
        }
        f.write_str(&self.glob)
    }
}

/// Anchored glob with `*` only; linear backtracking on the last star.
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_table() {
        let rows: &[(&str, &str, &str, bool)] = &[
            ("/ping", "GET", "/ping", true),
            ("/ping", "GET", "/ping/", false),
            ("/ping", "GET", "/pingx", false),
            ("/ping", "GET", "/PING", false),
            ("/_app/*", "GET", "/_app/immutable/x.js", true),
            ("/_app/*", "GET", "/_app/", true),
            ("/x/*", "GET", "/x", false),
            ("/*", "GET", "/", true),
            ("/*", "POST", "/anything/at/all", true),
            ("/*.js", "GET", "/a/b.js", true),
            ("/*.js", "GET", "/a/b.jsx", false),
            ("/a/*/c", "GET", "/a/b/c", true),
            ("/a/*/c", "GET", "/a/b/x/c", true),
            ("/a/*/c", "GET", "/a/b/cd", false),
            ("/public", "GET", "/public/../admin", false),
            ("GET /feed/*", "GET", "/feed/1", true),
            ("GET /feed/*", "HEAD", "/feed/1", true),
            ("GET /feed/*", "POST", "/feed/1", false),
            ("GET,POST /hook", "POST", "/hook", true),
            ("POST /hook", "DELETE", "/hook", false),
            ("HEAD /h", "GET", "/h", false),
        ];
        for (pat, method, path, want) in rows {
            let p = RoutePattern::parse(pat).unwrap();
            assert_eq!(p.matches(method, path), *want, "{pat} vs {method} {path}");
        }
    }

    #[test]
    fn parse_rejects() {
        for bad in ["ping", "", "get /x", "FETCH /x", "GET x", "/a b", "/a?b", "/a#b", "GET  ", "/a\n"] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(RoutePattern::parse("GET,POST /x").unwrap().to_string(), "GET,POST /x");
    }

    #[test]
    fn glob_is_linear_enough_on_hostile_patterns() {
        let p = RoutePattern::parse(&format!("/{}b", "*a".repeat(20))).unwrap();
        let path = format!("/{}", "a".repeat(5000));
        assert!(!p.matches("GET", &path));
    }
}
