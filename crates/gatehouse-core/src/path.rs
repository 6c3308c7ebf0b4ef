//! Request paths made unambiguous (SPEC §3, "Path safety"). The gateway decides on, and forwards,
//! exactly the `NormalizedPath` this module produces, so an upstream can never be shown a path that
//! means something other than what was authorized.
//!
//! Steps: refuse what could be read two ways (encoded `/`, `\` raw or encoded, NUL, control
//! characters, `;` parameters, invalid or non-UTF-8 percent-encoding, a fragment); decode
//! percent-encoded unreserved characters; upper-case the hex of what stays encoded; merge repeated
//! slashes; resolve `.` and `..`, refusing any path that would climb above the root.

use std::fmt;

/// Why a path was refused (answered as 400 `ambiguous_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path contains an encoded slash (%2F)")]
    EncodedSlash,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a NUL or control character")]
    ControlCharacter,
    #[error("the path contains invalid percent-encoding")]
    BadPercentEncoding,
    #[error("the path's percent-encoding is not valid UTF-8")]
    NotUtf8,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("the path contains `;` parameters, which servers read differently")]
    Semicolon,
    #[error("the path contains a fragment")]
    Fragment,
    #[error("the path is longer than 8192 bytes")]
    TooLong,
}

/// A path that passed every check: starts with `/`, no dot segments, no `//`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

const MAX_LEN: usize = 8192;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

impl NormalizedPath {
    /// Normalizes the raw (still percent-encoded) path of a request target, without its query.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_LEN {
            return Err(PathError::TooLong);
        }
        let bytes = raw.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        // Pass 1: check and decode unreserved; keep the rest encoded with upper-case hex.
        let mut decoded_all: Vec<u8> = Vec::with_capacity(bytes.len());
        let mut out = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'%' => {
                    let (h, l) =
                        match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                            (Some(h), Some(l)) => (h, l),
                            _ => return Err(PathError::BadPercentEncoding),
                        };
                    let v = h * 16 + l;
                    match v {
                        b'/' => return Err(PathError::EncodedSlash),
                        b'\\' => return Err(PathError::Backslash),
                        0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                        _ => {}
                    }
                    decoded_all.push(v);
                    if is_unreserved(v) {
                        out.push(v as char);
                    } else {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                    }
                    i += 3;
                    continue;
                }
                b'\\' => return Err(PathError::Backslash),
                b';' => return Err(PathError::Semicolon),
                b'#' => return Err(PathError::Fragment),
                0..=0x20 | 0x7f => return Err(PathError::ControlCharacter),
                0x80..=0xff => {
                    // Raw non-ASCII is not a valid request target; refuse rather than guess an encoding.
                    return Err(PathError::ControlCharacter);
                }
                _ => {
                    decoded_all.push(b);
                    out.push(b as char);
                }
            }
            i += 1;
        }
        if std::str::from_utf8(&decoded_all).is_err() {
            return Err(PathError::NotUtf8);
        }
        // Pass 2: segments. Empty segments (from `//`) merge; `.` drops; `..` pops or refuses.
        // RFC 3986 §5.2.4: a final `.` or `..` leaves the directory it names, so `/a/.` is `/a/`.
        let trailing_slash = out.len() > 1 && out.ends_with('/');
        let last = out.rsplit('/').next().unwrap_or("");
        let trailing_slash = trailing_slash || last == "." || last == "..";
        let mut segments: Vec<&str> = Vec::new();
        for seg in out.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                }
                s => segments.push(s),
            }
        }
        let mut path = String::with_capacity(out.len());
        for s in &segments {
            path.push('/');
            path.push_str(s);
        }
        if path.is_empty() || (trailing_slash && !path.ends_with('/')) {
            path.push('/');
        }
        Ok(Self(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below a mount point `/<prefix>` matched on whole segments, or `None`.
    /// `/api` mounts `/api` and `/api/x`, not `/apix`. The remainder always starts with `/`.
    pub fn strip_mount(&self, mount: &str) -> Option<NormalizedPath> {
        let rest = self.0.strip_prefix(mount)?;
        if rest.is_empty() {
            Some(NormalizedPath("/".into()))
        } else if rest.starts_with('/') {
            Some(NormalizedPath(rest.to_owned()))
        } else {
            None
        }
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let ok = [
            ("/", "/"),
            ("/ping", "/ping"),
            ("/a/b/", "/a/b/"),
            ("//ping", "/ping"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/%2e", "/a/"),
            ("/a/b/%2E%2E", "/a/"),
            ("/a/./", "/a/"),
            ("/a/b/../", "/a/"),
            ("/%70ing", "/ping"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/~user/x-y_z.js", "/~user/x-y_z.js"),
            ("/x/..", "/"),
            ("/.", "/"),
        ];
        for (raw, want) in ok {
            assert_eq!(NormalizedPath::parse(raw).map(|p| p.0), Ok(want.to_owned()), "{raw}");
        }
        let bad = [
            ("", PathError::NotAbsolute),
            ("ping", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/a%5cb", PathError::Backslash),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0ab", PathError::ControlCharacter),
            ("/a%", PathError::BadPercentEncoding),
            ("/a%2", PathError::BadPercentEncoding),
            ("/a%zz", PathError::BadPercentEncoding),
            ("/a%%32%65", PathError::BadPercentEncoding),
            ("/%c0%ae%c0%ae/etc", PathError::NotUtf8),
            ("/%e0%80%ae", PathError::NotUtf8),
            ("/%ff", PathError::NotUtf8),
            ("/admin;x=1", PathError::Semicolon),
            ("/ping#frag", PathError::Fragment),
            ("/a b", PathError::ControlCharacter),
        ];
        for (raw, want) in bad {
            assert_eq!(NormalizedPath::parse(raw), Err(want), "{raw}");
        }
        assert_eq!(NormalizedPath::parse(&format!("/{}", "a".repeat(9000))), Err(PathError::TooLong));
    }

    #[test]
    fn mounts_match_whole_segments() {
        let p = |s| NormalizedPath::parse(s).unwrap();
        assert_eq!(p("/api").strip_mount("/api").unwrap().as_str(), "/");
        assert_eq!(p("/api/x/y").strip_mount("/api").unwrap().as_str(), "/x/y");
        assert_eq!(p("/apix").strip_mount("/api"), None);
        assert_eq!(p("/ap").strip_mount("/api"), None);
    }
}
