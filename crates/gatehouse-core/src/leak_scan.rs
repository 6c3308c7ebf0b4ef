//! Finding this deployment's credentials in arbitrary bytes (files, git blobs, build outputs) for
//! `gatehouse scan` (SPEC §13). The input is untrusted and may be anything: a literal prefilter
//! (`memchr::memmem` on `{ns}_` and `whsec_`) finds candidates, each is checked against the exact
//! shape of its format, and API keys must also pass their CRC32 checksum ([`ApiKey::parse`]), so
//! random look-alikes are not reported.
//!
//! Formats (all fixed-length):
//! - API keys `{ns}_{sk|rk}_{live|test}_` + 36 base62 (SPEC §4.1, checksummed). As the SPEC's
//!   scanner regex, no boundary is required around them: the checksum is the evidence.
//! - OAuth access and refresh tokens and client secrets `{ns}_{at|rt|cs}_` + 43 base64url (32 random
//!   bytes, unpadded). They carry no checksum, so they must stand alone (no token character on
//!   either side) and end in a character a canonical encoding of 32 bytes can end in.
//! - Webhook signing secrets `whsec_` + 43 base64 + `=` (32 bytes, padded), likewise.

use memchr::memmem;
use serde::Serialize;

use crate::apikey::{ApiKey, Namespace, CHECKSUM_LEN, RANDOM_LEN};
use crate::{Environment, KeyKind};

/// What a found credential is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    SecretKeyLive,
    SecretKeyTest,
    RestrictedKeyLive,
    RestrictedKeyTest,
    OAuthAccessToken,
    OAuthRefreshToken,
    OAuthClientSecret,
    WebhookSecret,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 8] = [
        CredentialKind::SecretKeyLive,
        CredentialKind::SecretKeyTest,
        CredentialKind::RestrictedKeyLive,
        CredentialKind::RestrictedKeyTest,
        CredentialKind::OAuthAccessToken,
        CredentialKind::OAuthRefreshToken,
        CredentialKind::OAuthClientSecret,
        CredentialKind::WebhookSecret,
    ];

    fn api_key(kind: KeyKind, env: Environment) -> Self {
        match (kind, env) {
            (KeyKind::Secret, Environment::Live) => CredentialKind::SecretKeyLive,
            (KeyKind::Secret, Environment::Test) => CredentialKind::SecretKeyTest,
            (KeyKind::Restricted, Environment::Live) => CredentialKind::RestrictedKeyLive,
            (KeyKind::Restricted, Environment::Test) => CredentialKind::RestrictedKeyTest,
        }
    }

    /// A stable identifier, used as the SARIF rule id and in JSON output.
    pub fn rule_id(self) -> &'static str {
        match self {
            CredentialKind::SecretKeyLive => "gatehouse-secret-key-live",
            CredentialKind::SecretKeyTest => "gatehouse-secret-key-test",
            CredentialKind::RestrictedKeyLive => "gatehouse-restricted-key-live",
            CredentialKind::RestrictedKeyTest => "gatehouse-restricted-key-test",
            CredentialKind::OAuthAccessToken => "gatehouse-oauth-access-token",
            CredentialKind::OAuthRefreshToken => "gatehouse-oauth-refresh-token",
            CredentialKind::OAuthClientSecret => "gatehouse-oauth-client-secret",
            CredentialKind::WebhookSecret => "gatehouse-webhook-secret",
        }
    }

    /// What it is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            CredentialKind::SecretKeyLive => "Gatehouse secret API key (live)",
            CredentialKind::SecretKeyTest => "Gatehouse secret API key (test)",
            CredentialKind::RestrictedKeyLive => "Gatehouse restricted API key (live)",
            CredentialKind::RestrictedKeyTest => "Gatehouse restricted API key (test)",
            CredentialKind::OAuthAccessToken => "Gatehouse OAuth access token",
            CredentialKind::OAuthRefreshToken => "Gatehouse OAuth refresh token",
            CredentialKind::OAuthClientSecret => "Gatehouse OAuth client secret",
            CredentialKind::WebhookSecret => "Gatehouse webhook signing secret",
        }
    }

    /// Whether the format carries a checksum (API keys) rather than being recognised by shape alone.
    pub fn checksummed(self) -> bool {
        matches!(
            self,
            CredentialKind::SecretKeyLive
                | CredentialKind::SecretKeyTest
                | CredentialKind::RestrictedKeyLive
                | CredentialKind::RestrictedKeyTest
        )
    }

    pub fn is_api_key(self) -> bool {
        self.checksummed()
    }

    /// The kind the leak service revokes it as; `None` for webhook signing secrets, which are
    /// rolled, not revoked.
    pub fn reported_kind(self) -> Option<crate::leak::CredentialKind> {
        use crate::leak::CredentialKind as Reported;
        Some(match self {
            CredentialKind::SecretKeyLive
            | CredentialKind::SecretKeyTest
            | CredentialKind::RestrictedKeyLive
            | CredentialKind::RestrictedKeyTest => Reported::ApiKey,
            CredentialKind::OAuthAccessToken => Reported::AccessToken,
            CredentialKind::OAuthRefreshToken => Reported::RefreshToken,
            CredentialKind::OAuthClientSecret => Reported::ClientSecret,
            CredentialKind::WebhookSecret => return None,
        })
    }
}

/// One credential in a haystack: `hay[start..start + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub len: usize,
    pub kind: CredentialKind,
}

impl Found {
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// The credential's text (always ASCII: every format is).
    pub fn text<'h>(&self, hay: &'h [u8]) -> &'h str {
        std::str::from_utf8(&hay[self.start..self.end()]).expect("a found credential is ASCII")
    }
}

/// Random characters of an opaque OAuth token or client secret, and of a webhook secret.
const TOKEN_LEN: usize = 43;
const WHSEC: &[u8] = b"whsec_";
/// The longest credential of any format, for callers that read in chunks: a match plus the byte on
/// either side of it always fits in `MAX_LEN + 2` bytes.
pub const MAX_LEN: usize = 16 + "_sk_live_".len() + RANDOM_LEN + CHECKSUM_LEN;

/// Finds one namespace's credentials. Build once, use from many threads.
#[derive(Debug)]
pub struct Scanner {
    namespace: Namespace,
    prefix: memmem::Finder<'static>,
    whsec: memmem::Finder<'static>,
}

impl Scanner {
    pub fn new(namespace: &Namespace) -> Self {
        let prefix = format!("{}_", namespace.as_str()).into_bytes();
        Self {
            namespace: namespace.clone(),
            prefix: memmem::Finder::new(&prefix).into_owned(),
            whsec: memmem::Finder::new(WHSEC).into_owned(),
        }
    }

    /// The first credential that starts at or after `from`. Bytes before `from` are looked at only
    /// as the left neighbour of a candidate; the end of `hay` counts as a boundary, so a caller
    /// reading in chunks accepts a match only if `found.end() < hay.len()` or the input ended.
    pub fn find(&self, hay: &[u8], from: usize) -> Option<Found> {
        let mut next_prefix = self.next(&self.prefix, hay, from);
        let mut next_whsec = self.next(&self.whsec, hay, from);
        loop {
            let (at, is_whsec) = match (next_prefix, next_whsec) {
                (None, None) => return None,
                (Some(p), Some(w)) if w < p => (w, true),
                (Some(p), _) => (p, false),
                (None, Some(w)) => (w, true),
            };
            let found = if is_whsec { whsec_at(hay, at) } else { self.namespaced_at(hay, at) };
            if found.is_some() {
                return found;
            }
            if is_whsec {
                next_whsec = self.next(&self.whsec, hay, at + 1);
            } else {
                next_prefix = self.next(&self.prefix, hay, at + 1);
            }
        }
    }

    /// Every credential in `hay`, in order, none overlapping.
    pub fn find_all(&self, hay: &[u8]) -> Vec<Found> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(f) = self.find(hay, from) {
            from = f.end();
            out.push(f);
        }
        out
    }

    fn next(&self, finder: &memmem::Finder<'_>, hay: &[u8], from: usize) -> Option<usize> {
        hay.get(from..).and_then(|h| finder.find(h)).map(|i| i + from)
    }

    /// A candidate at `at`, where `{ns}_` starts.
    fn namespaced_at(&self, hay: &[u8], at: usize) -> Option<Found> {
        let rest = &hay[at + self.namespace.as_str().len() + 1..];
        let tag = rest.get(..3)?;
        match tag {
            b"sk_" | b"rk_" => {
                let env_len = if rest[3..].starts_with(b"live_") || rest[3..].starts_with(b"test_") { 5 } else { 0 };
                if env_len == 0 {
                    return None;
                }
                let len = self.namespace.as_str().len() + 1 + 3 + env_len + RANDOM_LEN + CHECKSUM_LEN;
                let candidate = std::str::from_utf8(hay.get(at..at + len)?).ok()?;
                let key = ApiKey::parse(&self.namespace, candidate).ok()?;
                Some(Found { start: at, len, kind: CredentialKind::api_key(key.kind, key.environment) })
            }
            b"at_" | b"rt_" | b"cs_" => {
                let kind = match tag[0] {
                    b'a' => CredentialKind::OAuthAccessToken,
                    b'r' => CredentialKind::OAuthRefreshToken,
                    _ => CredentialKind::OAuthClientSecret,
                };
                let body_start = at + self.namespace.as_str().len() + 4;
                let body = hay.get(body_start..body_start + TOKEN_LEN)?;
                let ok = body.iter().all(|&b| is_base64url(b))
                    && canonical_last(body[TOKEN_LEN - 1])
                    && standalone(hay, at, body_start + TOKEN_LEN, is_base64url);
                ok.then_some(Found { start: at, len: body_start + TOKEN_LEN - at, kind })
            }
            _ => None,
        }
    }
}

/// A webhook secret at `at`, where `whsec_` starts.
fn whsec_at(hay: &[u8], at: usize) -> Option<Found> {
    let body_start = at + WHSEC.len();
    let body = hay.get(body_start..body_start + TOKEN_LEN + 1)?;
    let ok = body[..TOKEN_LEN].iter().all(|&b| is_base64(b))
        && body[TOKEN_LEN] == b'='
        && canonical_last(body[TOKEN_LEN - 1])
        && standalone(hay, at, body_start + TOKEN_LEN + 1, is_base64)
        && hay.get(body_start + TOKEN_LEN + 1) != Some(&b'=');
    ok.then_some(Found { start: at, len: WHSEC.len() + TOKEN_LEN + 1, kind: CredentialKind::WebhookSecret })
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// 32 bytes are 256 bits: the 43rd base64 character carries 4 bits and two zero bits, so it is one
/// of the 16 characters whose alphabet index is a multiple of 4 (same in both alphabets).
fn canonical_last(b: u8) -> bool {
    b"AEIMQUYcgkosw048".contains(&b)
}

/// No token character right before `start` or at `end`: the candidate is not a piece of a longer run.
fn standalone(hay: &[u8], start: usize, end: usize, token_char: fn(u8) -> bool) -> bool {
    let before = start.checked_sub(1).map(|i| hay[i]);
    let after = hay.get(end).copied();
    !before.is_some_and(|b| b.is_ascii_alphanumeric() || token_char(b)) && !after.is_some_and(token_char)
}

/// Counts lines as a scan moves forward through its input, so each match's line and column cost
/// only the bytes since the previous one.
#[derive(Clone, Copy, Debug)]
pub struct LineCounter {
    /// Absolute offset up to which newlines have been counted.
    counted_to: u64,
    /// 1-based line number at `counted_to`.
    line: u64,
    /// Absolute offset of the first byte of that line.
    line_start: u64,
}

impl Default for LineCounter {
    fn default() -> Self {
        Self { counted_to: 0, line: 1, line_start: 0 }
    }
}

impl LineCounter {
    /// Line and 1-based column (in bytes) of absolute offset `at`, where `chunk` holds the input from
    /// absolute offset `chunk_base` and `at` is not before any offset asked for earlier.
    pub fn locate(&mut self, chunk: &[u8], chunk_base: u64, at: u64) -> (u64, u64) {
        self.advance(chunk, chunk_base, at);
        (self.line, at.saturating_sub(self.line_start) + 1)
    }

    /// Counts the newlines of `chunk` (from absolute offset `chunk_base`) before absolute offset `to`
    /// that have not been counted yet: call it before dropping the bytes.
    pub fn advance(&mut self, chunk: &[u8], chunk_base: u64, to: u64) {
        if to <= self.counted_to {
            return;
        }
        let from = usize::try_from(self.counted_to.saturating_sub(chunk_base)).unwrap_or(usize::MAX).min(chunk.len());
        let end = usize::try_from(to.saturating_sub(chunk_base)).unwrap_or(usize::MAX).min(chunk.len());
        let seen = &chunk[from.min(end)..end];
        if let Some(last) = memchr::memrchr(b'\n', seen) {
            self.line += memchr::memchr_iter(b'\n', seen).count() as u64;
            self.line_start = chunk_base + (from + last) as u64 + 1;
        }
        self.counted_to = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::generate;
    use rand::SeedableRng;

    fn key(kind: KeyKind, env: Environment, seed: u64) -> String {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        generate(&Namespace::default(), kind, env, &mut rng).expose().to_owned()
    }

    fn token(tag: &str) -> String {
        // 32 bytes of 0x5a, base64url without padding: ends in a canonical character.
        format!("gth_{tag}_WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo")
    }

    const WH: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

    fn kinds(hay: &str) -> Vec<(usize, CredentialKind)> {
        Scanner::new(&Namespace::default()).find_all(hay.as_bytes()).iter().map(|f| (f.start, f.kind)).collect()
    }

    #[test]
    fn every_format_is_found() {
        let sk = key(KeyKind::Secret, Environment::Live, 1);
        let rkt = key(KeyKind::Restricted, Environment::Test, 2);
        let text = format!("a={sk}\nb=\"{rkt}\" {} {} {} {WH}", token("at"), token("rt"), token("cs"));
        let found = kinds(&text);
        let got: Vec<CredentialKind> = found.iter().map(|f| f.1).collect();
        assert_eq!(
            got,
            [
                CredentialKind::SecretKeyLive,
                CredentialKind::RestrictedKeyTest,
                CredentialKind::OAuthAccessToken,
                CredentialKind::OAuthRefreshToken,
                CredentialKind::OAuthClientSecret,
                CredentialKind::WebhookSecret
            ]
        );
        assert_eq!(found[0].0, 2);
    }

    /// Hostile and near-miss inputs: one row per case, the credentials expected beside it.
    #[test]
    fn hostile_inputs() {
        let sk = key(KeyKind::Secret, Environment::Live, 3);
        let mut bad_sum = sk.clone().into_bytes();
        let last = bad_sum.len() - 1;
        bad_sum[last] = if bad_sum[last] == b'A' { b'B' } else { b'A' };
        let bad_sum = String::from_utf8(bad_sum).unwrap();
        let at = token("at");
        let rows: Vec<(String, Vec<CredentialKind>)> = vec![
            (String::new(), vec![]),
            ("gth_".into(), vec![]),
            ("gth_sk_live_".into(), vec![]),
            (sk[..sk.len() - 1].to_owned(), vec![]),
            (bad_sum.clone(), vec![]),
            (sk.replace("live", "prod"), vec![]),
            (sk.replace("gth_sk", "gth_xk"), vec![]),
            (sk.replace("gth_", "GTH_"), vec![]),
            // Glued to other text on either side: still the key (the checksum is the evidence).
            (format!("x{sk}y"), vec![CredentialKind::SecretKeyLive]),
            (format!("{sk}{sk}"), vec![CredentialKind::SecretKeyLive, CredentialKind::SecretKeyLive]),
            // A prefix repeated, then the real key.
            (format!("gth_gth_sk_gth_sk_live_{sk}"), vec![CredentialKind::SecretKeyLive]),
            (format!("{}\u{e9}", &sk[..20]), vec![]),
            (format!("\u{0}\u{ff}{sk}\u{0}"), vec![CredentialKind::SecretKeyLive]),
            // Unchecksummed formats must stand alone and end canonically.
            (format!("x{at}"), vec![]),
            (format!("{at}A"), vec![]),
            (format!("{at}-"), vec![]),
            (format!("{}B", &at[..at.len() - 1]), vec![]),
            (at[..at.len() - 1].to_owned(), vec![]),
            (format!("\"{at}\""), vec![CredentialKind::OAuthAccessToken]),
            (format!("gth_zz_{}", &at[7..]), vec![]),
            (WH.replace('=', "A"), vec![]),
            (format!("{WH}="), vec![]),
            (format!("+{WH}"), vec![]),
            (format!("secret: {WH}\n"), vec![CredentialKind::WebhookSecret]),
            (format!("WEBHOOK_SECRET={WH}\n"), vec![CredentialKind::WebhookSecret]),
            (format!("TOKEN={at}&x=1"), vec![CredentialKind::OAuthAccessToken]),
        ];
        for (input, want) in rows {
            let got: Vec<CredentialKind> = kinds(&input).into_iter().map(|f| f.1).collect();
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn another_namespace_is_not_ours() {
        let sk = key(KeyKind::Secret, Environment::Live, 4);
        let acme = Namespace::parse("acme").unwrap();
        assert!(Scanner::new(&acme).find_all(sk.as_bytes()).is_empty());
        let theirs = sk.replacen("gth", "acme", 1);
        assert_eq!(Scanner::new(&acme).find_all(theirs.as_bytes()).len(), 1);
    }

    #[test]
    fn lines_and_columns_are_counted_forward() {
        let hay = b"ab\ncd\n\nxyz";
        let mut lc = LineCounter::default();
        assert_eq!(lc.locate(hay, 0, 1), (1, 2));
        assert_eq!(lc.locate(hay, 0, 3), (2, 1));
        assert_eq!(lc.locate(hay, 0, 8), (4, 2));
        // Continuing in a later chunk that overlaps the first.
        let mut lc = LineCounter::default();
        assert_eq!(lc.locate(&hay[..5], 0, 4), (2, 2));
        assert_eq!(lc.locate(&hay[4..], 4, 9), (4, 3));
    }

    #[test]
    fn max_len_covers_every_format() {
        let ns = Namespace::parse("abcdefghijklmnop").unwrap();
        let long = generate(&ns, KeyKind::Secret, Environment::Live, &mut rand::rngs::StdRng::seed_from_u64(5));
        assert_eq!(long.expose().len(), MAX_LEN);
        assert!(WH.len() <= MAX_LEN && token("at").len() <= MAX_LEN);
    }
}
