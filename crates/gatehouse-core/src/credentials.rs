//! Credentials as a request presents them (SPEC §3 step 5, §4, §7): the `Authorization` header
//! (`Bearer`, `Basic`) and `X-Space-App-Key`, parsed from raw header values into types. Every door —
//! the gateway, the management API, the OAuth endpoints — reads these headers through this one grammar
//! (by way of `gatehouse_server::credentials`), so a hostile header set gets one reading everywhere.

use base64::Engine;

use crate::apikey::Namespace;
use crate::gateway::Authorization;
use crate::secret::SecretString;

/// Every `Authorization` value of a request, judged together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationHeader<'a> {
    Absent,
    One(Credential<'a>),
    /// More than one `Authorization` header: never a credential, whatever each says.
    Repeated,
}

impl<'a> AuthorizationHeader<'a> {
    /// `values` are the raw values of every `Authorization` header, in order.
    pub fn parse(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(_), Some(_)) => Self::Repeated,
            (Some(v), None) => Self::One(Credential::parse(v)),
        }
    }

    /// What the gateway's decision sees: a bearer token is a credential of ours; any other scheme
    /// (Basic included) is the app's business and passes through.
    pub fn for_decision(&self) -> Authorization<'a> {
        match self {
            Self::Absent => Authorization::Absent,
            Self::Repeated => Authorization::Repeated,
            Self::One(Credential::Bearer(token)) => Authorization::Bearer(token),
            Self::One(Credential::Basic(_) | Credential::Other) => Authorization::Other,
        }
    }
}

/// One `Authorization` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Bearer <token>`: the scheme in any case, then a space; the token is trimmed and not empty.
    Bearer(&'a str),
    /// `Basic <base64>`: the scheme in any case; the payload is trimmed and not yet decoded.
    Basic(BasicPayload<'a>),
    /// Another scheme, a bearer with no token, or a value that is not visible ASCII.
    Other,
}

impl<'a> Credential<'a> {
    /// Reads one raw header value. The scheme ends at the first space (a tab does not end it).
    pub fn parse(value: &'a [u8]) -> Self {
        let Some(value) = header_text(value) else { return Self::Other };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Self::Bearer(rest)
        } else if scheme.eq_ignore_ascii_case("basic") {
            Self::Basic(BasicPayload(rest))
        } else {
            Self::Other
        }
    }
}

/// The base64 text of a `Basic` credential, as presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicPayload<'a>(&'a str);

impl BasicPayload<'_> {
    /// The user and password (RFC 7617): standard base64 of UTF-8 text; the user ends at the first
    /// `:`, and with no `:` at all the whole text is the user and there is no password. `None` when
    /// it is not base64 of UTF-8. Percent-decoding (OAuth client credentials) is the caller's.
    pub fn decode(&self) -> Option<BasicCredentials> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.0).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        Some(match text.split_once(':') {
            Some((user, password)) => {
                BasicCredentials { user: user.to_owned(), password: Some(SecretString::new(password)) }
            }
            None => BasicCredentials { user: text, password: None },
        })
    }
}

/// A decoded `Basic` credential; the password never prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: Option<SecretString>,
}

/// Every `X-Space-App-Key` value of a request, judged together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKeyHeader<'a> {
    Absent,
    /// One header. A value that is not visible ASCII reads as the empty key, which no key matches.
    One(&'a str),
    /// More than one header.
    Repeated,
}

impl<'a> AppKeyHeader<'a> {
    /// `values` are the raw values of every `X-Space-App-Key` header, in order. The value is not trimmed.
    pub fn parse(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(_), Some(_)) => Self::Repeated,
            (Some(v), None) => Self::One(header_text(v).unwrap_or("")),
        }
    }
}

/// Whether a presented credential is meant as an API key (`{ns}_sk_…`/`{ns}_rk_…`), as opposed to an
/// OAuth access token. Only the prefix is looked at: a malformed key is still judged as a key.
pub fn looks_like_api_key(ns: &Namespace, presented: &str) -> bool {
    presented
        .strip_prefix(ns.as_str())
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.starts_with("sk_") || r.starts_with("rk_"))
}

/// A header value as text when it is visible ASCII (tab allowed), the rule of `http`'s
/// `HeaderValue::to_str`; a value with any other byte (obs-text, controls) is not text.
fn header_text(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&b| (32..127).contains(&b) || b == b'\t');
    if visible {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// One row per hostile or ordinary `Authorization` header set, with the reading beside it.
    #[test]
    fn authorization_header_table() {
        use Credential::*;
        let user_pw = format!("Basic {}", basic("client:s3cret"));
        let rows: Vec<(Vec<&[u8]>, AuthorizationHeader)> = vec![
            (vec![], AuthorizationHeader::Absent),
            (vec![b"Bearer tok"], AuthorizationHeader::One(Bearer("tok"))),
            (vec![b"bearer tok"], AuthorizationHeader::One(Bearer("tok"))),
            (vec![b"BEARER tok"], AuthorizationHeader::One(Bearer("tok"))),
            // Whitespace after the first space is trimmed; inside the token it stays.
            (vec![b"Bearer   tok  "], AuthorizationHeader::One(Bearer("tok"))),
            (vec![b"Bearer \ttok\t"], AuthorizationHeader::One(Bearer("tok"))),
            (vec![b"Bearer tok more"], AuthorizationHeader::One(Bearer("tok more"))),
            // No token, or the scheme not ended by a space.
            (vec![b"Bearer"], AuthorizationHeader::One(Other)),
            (vec![b"Bearer "], AuthorizationHeader::One(Other)),
            (vec![b"Bearer \t "], AuthorizationHeader::One(Other)),
            (vec![b"Bearer\ttok"], AuthorizationHeader::One(Other)),
            (vec![b" Bearer tok"], AuthorizationHeader::One(Other)),
            (vec![b"Bearertok"], AuthorizationHeader::One(Other)),
            (vec![b""], AuthorizationHeader::One(Other)),
            // Other schemes.
            (vec![b"Token tok"], AuthorizationHeader::One(Other)),
            (vec![b"Digest username=x"], AuthorizationHeader::One(Other)),
            (vec![user_pw.as_bytes()], AuthorizationHeader::One(Basic(BasicPayload(&user_pw[6..])))),
            (vec![b"basic  abc "], AuthorizationHeader::One(Basic(BasicPayload("abc")))),
            (vec![b"Basic"], AuthorizationHeader::One(Basic(BasicPayload("")))),
            // Not visible ASCII: obs-text, UTF-8, controls.
            (vec![b"Bearer t\xffk"], AuthorizationHeader::One(Other)),
            (vec!["Bearer tök".as_bytes()], AuthorizationHeader::One(Other)),
            (vec![b"Bearer tok\x01"], AuthorizationHeader::One(Other)),
            (vec![b"Bearer tok\x7f"], AuthorizationHeader::One(Other)),
            // Repeated: whatever each says, even empty or identical.
            (vec![b"Bearer tok", b"Bearer tok"], AuthorizationHeader::Repeated),
            (vec![b"Bearer tok", b""], AuthorizationHeader::Repeated),
            (vec![b"", b""], AuthorizationHeader::Repeated),
            (vec![b"Basic abc", b"Bearer tok", b"x"], AuthorizationHeader::Repeated),
        ];
        for (i, (values, want)) in rows.into_iter().enumerate() {
            let got = AuthorizationHeader::parse(values.iter().copied());
            assert_eq!(got, want, "row {i}: {values:?}");
        }
    }

    #[test]
    fn the_decision_sees_only_bearer_tokens() {
        let rows: &[(&[&[u8]], Authorization)] = &[
            (&[], Authorization::Absent),
            (&[b"Bearer tok"], Authorization::Bearer("tok")),
            (&[b"Basic YTpi"], Authorization::Other),
            (&[b"Bearer "], Authorization::Other),
            (&[b"Negotiate x"], Authorization::Other),
            (&[b"Bearer a", b"Bearer b"], Authorization::Repeated),
        ];
        for (values, want) in rows {
            assert_eq!(AuthorizationHeader::parse(values.iter().copied()).for_decision(), *want, "{values:?}");
        }
    }

    #[test]
    fn basic_payload_table() {
        let b = |s: &str| basic(s);
        let pw = |s: &str| Some(SecretString::new(s));
        let rows: Vec<(String, Option<BasicCredentials>)> = vec![
            (b("client:secret"), Some(BasicCredentials { user: "client".into(), password: pw("secret") })),
            // The user ends at the first colon; the password may hold more.
            (b("client:se:cret"), Some(BasicCredentials { user: "client".into(), password: pw("se:cret") })),
            (b(":secret"), Some(BasicCredentials { user: String::new(), password: pw("secret") })),
            (b("client:"), Some(BasicCredentials { user: "client".into(), password: pw("") })),
            (b("gth_sk_live_x"), Some(BasicCredentials { user: "gth_sk_live_x".into(), password: None })),
            (b(""), Some(BasicCredentials { user: String::new(), password: None })),
            // Percent-encoding is not undone here.
            (b("a%3Ab:c"), Some(BasicCredentials { user: "a%3Ab".into(), password: pw("c") })),
            // Not base64 (URL-safe alphabet, missing padding, spaces), or not UTF-8.
            ("YTpi-_".into(), None),
            ("YTpiYw".into(), None),
            ("YT pi".into(), None),
            (base64::engine::general_purpose::STANDARD.encode(b"a:\xff"), None),
        ];
        for (payload, want) in rows {
            assert_eq!(BasicPayload(&payload).decode(), want, "{payload}");
        }
        let decoded = BasicPayload(&b("client:hunter2")).decode().unwrap();
        assert!(!format!("{decoded:?}").contains("hunter2"), "the password never prints");
    }

    #[test]
    fn app_key_header_table() {
        let rows: &[(&[&[u8]], AppKeyHeader)] = &[
            (&[], AppKeyHeader::Absent),
            (&[b"gth_sk_live_x"], AppKeyHeader::One("gth_sk_live_x")),
            // Not trimmed, not interpreted: the verifier judges what was sent.
            (&[b" gth_sk_live_x "], AppKeyHeader::One(" gth_sk_live_x ")),
            (&[b""], AppKeyHeader::One("")),
            (&[b"k\xffy"], AppKeyHeader::One("")),
            (&[b"a", b"a"], AppKeyHeader::Repeated),
            (&[b"", b""], AppKeyHeader::Repeated),
        ];
        for (values, want) in rows {
            assert_eq!(AppKeyHeader::parse(values.iter().copied()), *want, "{values:?}");
        }
    }

    #[test]
    fn api_keys_are_told_from_tokens_by_prefix() {
        let ns = Namespace::default();
        let rows = [
            ("gth_sk_live_abc", true),
            ("gth_rk_test_abc", true),
            ("gth_sk_", true),
            ("gth_pk_live_abc", false),
            ("gthsk_live_abc", false),
            ("other_sk_live_abc", false),
            ("GTH_SK_LIVE_ABC", false),
            ("opaque-oauth-token", false),
            ("", false),
        ];
        for (presented, want) in rows {
            assert_eq!(looks_like_api_key(&ns, presented), want, "{presented}");
        }
    }

    #[test]
    fn header_text_is_visible_ascii_and_tab() {
        for b in 0u8..=255 {
            let want = b == b'\t' || (32..127).contains(&b);
            assert_eq!(header_text(&[b]).is_some(), want, "byte {b:#x}");
        }
    }
}
