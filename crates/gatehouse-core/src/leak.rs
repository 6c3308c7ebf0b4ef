//! Leaked credentials (SPEC §13): recognising a reported string as one of our credentials, and the
//! parsers of what GitHub's secret scanning partner program sends — the batch of matches, the two
//! signature headers, and GitHub's published key list. All of it is untrusted input, parsed here
//! without I/O so it is table-tested and fuzzed (`fuzz/fuzz_targets/secret_scanning.rs`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;

use crate::apikey::{mask, ApiKey, KeyHash, Namespace};

/// Most matches GitHub (or a reporter) may send in one request.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Largest request body of the secret scanning and report-a-leak endpoints.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Longest credential string looked at; ours are at most a JWT's few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Largest published key list accepted.
pub const MAX_KEY_LIST_BYTES: usize = 64 * 1024;
/// Most keys a published list may hold.
pub const MAX_KEYS: usize = 64;

const MAX_TYPE_LEN: usize = 200;
const MAX_URL_LEN: usize = 2048;
const MAX_SOURCE_LEN: usize = 100;

/// Which of our credentials a string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    ApiKey,
    AccessToken,
    RefreshToken,
    ClientSecret,
}

impl CredentialKind {
    /// The name used in audit entries, events and GitHub's `token_type` when none was given.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::AccessToken => "oauth_access_token",
            CredentialKind::RefreshToken => "oauth_refresh_token",
            CredentialKind::ClientSecret => "oauth_client_secret",
        }
    }
}

/// A string that has the shape of one of our credentials (for API keys: the checksum holds too).
/// Whether it was ever issued is for storage to say, looked up by `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recognised {
    pub kind: CredentialKind,
    pub hash: KeyHash,
    /// Safe to log, audit and show: never more than a prefix and four characters.
    pub masked: String,
}

/// Recognises `s` as an API key (format and checksum), an opaque OAuth access or refresh token or
/// client secret (`{ns}_at_`, `{ns}_rt_`, `{ns}_cs_` + 43 base64url characters), or a JWT-shaped
/// access token. Anything else is `None`, without touching storage.
pub fn recognise(namespace: &Namespace, s: &str) -> Option<Recognised> {
    if s.len() > MAX_TOKEN_LEN {
        return None;
    }
    if let Ok(key) = ApiKey::parse(namespace, s) {
        return Some(Recognised { kind: CredentialKind::ApiKey, hash: key.hash(), masked: mask(s) });
    }
    let ns = namespace.as_str();
    let opaque = [
        ("_at_", CredentialKind::AccessToken),
        ("_rt_", CredentialKind::RefreshToken),
        ("_cs_", CredentialKind::ClientSecret),
    ];
    for (tag, kind) in opaque {
        if let Some(rest) = s.strip_prefix(ns).and_then(|r| r.strip_prefix(tag)) {
            if rest.len() == 43 && rest.bytes().all(is_b64url) {
                let masked = format!("{ns}{tag}…{}", &rest[39..]);
                return Some(Recognised { kind, hash: KeyHash::of(s), masked });
            }
            return None;
        }
    }
    if crate::oauth::looks_like_access_token(ns, s) && s.len() >= 16 {
        let masked = format!("{}…{}", &s[..3], &s[s.len() - 4..]);
        return Some(Recognised { kind: CredentialKind::AccessToken, hash: KeyHash::of(s), masked });
    }
    None
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// One match of GitHub's batch: `{"token", "type", "url", "source"}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReportedToken {
    pub token: String,
    #[serde(rename = "type")]
    pub token_type: String,
    /// Where it was found (a commit, issue or gist URL).
    #[serde(default)]
    pub url: String,
    /// What GitHub scanned: `content`, `commit`, `pull_request_description`, `npm`, …
    #[serde(default)]
    pub source: String,
}

impl std::fmt::Display for ReportedToken {
    /// Never shows the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.token_type, self.url)
    }
}

/// Why a batch was refused (nothing in it is acted on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is larger than {MAX_BATCH_BYTES} bytes")]
    TooLarge,
    #[error("the body is not a JSON array of {{\"token\", \"type\", \"url\", \"source\"}} objects: {0}")]
    Malformed(String),
    #[error("the batch holds more than {MAX_BATCH_ITEMS} items")]
    TooMany,
    #[error("item {index}: {field} {problem}")]
    BadField { index: usize, field: &'static str, problem: &'static str },
}

/// Parses GitHub's batch of matches: a JSON array (at most [`MAX_BATCH_ITEMS`]) of objects with a
/// string `token` and `type` and optional string `url` and `source`, each bounded in length, the
/// descriptive fields free of control characters (they are written to the audit log). Unknown
/// fields are ignored, as GitHub may add some.
pub fn parse_github_batch(body: &[u8]) -> Result<Vec<ReportedToken>, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge);
    }
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if items.len() > MAX_BATCH_ITEMS {
        return Err(BatchError::TooMany);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let t: ReportedToken =
                serde_json::from_value(v).map_err(|e| BatchError::Malformed(format!("item {index}: {e}")))?;
            let bad = |field, problem| BatchError::BadField { index, field, problem };
            if t.token.is_empty() {
                return Err(bad("token", "is empty"));
            }
            if t.token.len() > MAX_TOKEN_LEN {
                return Err(bad("token", "is too long"));
            }
            for (field, value, max) in [
                ("type", &t.token_type, MAX_TYPE_LEN),
                ("url", &t.url, MAX_URL_LEN),
                ("source", &t.source, MAX_SOURCE_LEN),
            ] {
                if value.len() > max {
                    return Err(bad(field, "is too long"));
                }
                if value.chars().any(char::is_control) {
                    return Err(bad(field, "contains control characters"));
                }
            }
            Ok(t)
        })
        .collect()
}

/// Parses a report-a-leak body, `{"credentials": ["…", …]}` (at most [`MAX_BATCH_ITEMS`] strings).
/// Strings of any content are accepted (the point is not to tell the reporter which are ours);
/// only the shape is checked.
pub fn parse_leak_report(body: &[u8]) -> Result<Vec<String>, BatchError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Report {
        credentials: Vec<String>,
    }
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge);
    }
    let r: Report = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if r.credentials.len() > MAX_BATCH_ITEMS {
        return Err(BatchError::TooMany);
    }
    Ok(r.credentials)
}

/// The two headers GitHub signs a batch with, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubSignature {
    /// `Github-Public-Key-Identifier`: which published key signed.
    pub key_id: String,
    /// `Github-Public-Key-Signature`, base64-decoded: an ASN.1 DER ECDSA signature.
    pub der: Vec<u8>,
}

/// Why the signature headers were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureHeaderError {
    #[error("the Github-Public-Key-Identifier header is missing")]
    MissingKeyId,
    #[error("the Github-Public-Key-Signature header is missing")]
    MissingSignature,
    #[error("the Github-Public-Key-Identifier header is not 1 to 128 letters, digits, `-` or `_`")]
    BadKeyId,
    #[error("the Github-Public-Key-Signature header is not base64 of a DER ECDSA signature")]
    BadSignature,
}

/// Parses the raw header values (`None`: absent). The identifier is 1–128 of `A-Za-z0-9_-`
/// (GitHub's are 64 hex digits); the signature is standard base64 of 8–72 bytes that form one DER
/// SEQUENCE with its length (a P-256 signature is at most 72 bytes). The signature itself is checked later,
/// against the key the identifier names.
pub fn parse_signature_headers(
    key_id: Option<&[u8]>,
    signature: Option<&[u8]>,
) -> Result<GithubSignature, SignatureHeaderError> {
    let key_id = key_id.ok_or(SignatureHeaderError::MissingKeyId)?;
    let signature = signature.ok_or(SignatureHeaderError::MissingSignature)?;
    if !(1..=128).contains(&key_id.len()) || !key_id.iter().copied().all(is_b64url) {
        return Err(SignatureHeaderError::BadKeyId);
    }
    if signature.len() > 100 {
        return Err(SignatureHeaderError::BadSignature);
    }
    let der = B64.decode(signature).map_err(|_| SignatureHeaderError::BadSignature)?;
    // A SEQUENCE whose short-form length covers exactly the rest: anything else is not one signature.
    if !(8..=72).contains(&der.len()) || der[0] != 0x30 || usize::from(der[1]) != der.len() - 2 {
        return Err(SignatureHeaderError::BadSignature);
    }
    let key_id = String::from_utf8(key_id.to_vec()).map_err(|_| SignatureHeaderError::BadKeyId)?;
    Ok(GithubSignature { key_id, der })
}

/// One key of GitHub's published list, as an uncompressed P-256 point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedKey {
    pub key_identifier: String,
    /// `0x04 ‖ X ‖ Y`.
    pub point: Vec<u8>,
    /// GitHub marks keys it no longer signs with `false`; those are refused.
    pub is_current: bool,
}

/// What a key list held: the usable keys, and how many entries were skipped (not P-256).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyList {
    pub keys: Vec<PublishedKey>,
    pub skipped: usize,
}

/// Why a key list was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("the key list is larger than {MAX_KEY_LIST_BYTES} bytes")]
    TooLarge,
    #[error("the key list is not {{\"public_keys\": [{{\"key_identifier\", \"key\", \"is_current\"}}]}}: {0}")]
    Malformed(String),
    #[error("the key list holds more than {MAX_KEYS} keys")]
    TooMany,
}

/// Parses GitHub's key list (`{"public_keys": [{"key_identifier", "key", "is_current"}]}`, every
/// field required). An entry whose key is not a PEM P-256 public key (SPKI, uncompressed point) or
/// whose identifier is malformed is skipped and counted, so a new key type GitHub may add does not
/// break verification with the others.
pub fn parse_key_list(body: &[u8]) -> Result<KeyList, KeyListError> {
    #[derive(Deserialize)]
    struct Entry {
        key_identifier: String,
        key: String,
        is_current: bool,
    }
    #[derive(Deserialize)]
    struct List {
        public_keys: Vec<Entry>,
    }
    if body.len() > MAX_KEY_LIST_BYTES {
        return Err(KeyListError::TooLarge);
    }
    let list: List = serde_json::from_slice(body).map_err(|e| KeyListError::Malformed(e.to_string()))?;
    if list.public_keys.len() > MAX_KEYS {
        return Err(KeyListError::TooMany);
    }
    let mut out = KeyList::default();
    for e in list.public_keys {
        let id_ok = (1..=128).contains(&e.key_identifier.len()) && e.key_identifier.bytes().all(is_b64url);
        match p256_point_of_pem(&e.key) {
            Some(point) if id_ok => {
                out.keys.push(PublishedKey { key_identifier: e.key_identifier, point, is_current: e.is_current })
            }
            _ => out.skipped += 1,
        }
    }
    Ok(out)
}

/// DER of `SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 }` up to the BIT STRING's contents:
/// every uncompressed P-256 public key in SPKI form begins with exactly these 26 bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed point of a PEM `PUBLIC KEY` holding a P-256 key, or `None`.
pub fn p256_point_of_pem(pem: &str) -> Option<Vec<u8>> {
    let body = pem.trim().strip_prefix("-----BEGIN PUBLIC KEY-----")?.strip_suffix("-----END PUBLIC KEY-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if b64.len() > 200 {
        return None;
    }
    let der = B64.decode(b64).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

/// The PEM `PUBLIC KEY` of an uncompressed P-256 point (for tests and tools that publish a list).
pub fn pem_of_p256_point(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::default()
    }

    fn key() -> String {
        crate::apikey::generate(&ns(), crate::KeyKind::Secret, crate::Environment::Live, &mut rand::thread_rng())
            .expose()
            .to_owned()
    }

    #[test]
    fn recognises_each_kind_and_rejects_near_misses() {
        let k = key();
        let t43 = "A".repeat(43);
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz";
        let mut flipped = k.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        let rows: Vec<(String, Option<CredentialKind>)> = vec![
            (k.clone(), Some(CredentialKind::ApiKey)),
            (flipped, None),
            (k[..k.len() - 1].to_owned(), None),
            (format!("{k}x"), None),
            (format!("gth_at_{t43}"), Some(CredentialKind::AccessToken)),
            (format!("gth_rt_{t43}"), Some(CredentialKind::RefreshToken)),
            (format!("gth_cs_{t43}"), Some(CredentialKind::ClientSecret)),
            (format!("gth_cs_{}", &t43[1..]), None),
            (format!("gth_cs_{t43}A"), None),
            (format!("gth_cs_{}!", &t43[1..]), None),
            (format!("xyz_at_{t43}"), None),
            (jwt.to_owned(), Some(CredentialKind::AccessToken)),
            ("a.b.c".to_owned(), None),
            (String::new(), None),
            ("whsec_c2VjcmV0".to_owned(), None),
            ("A".repeat(MAX_TOKEN_LEN + 1), None),
            ("ghp_0123456789abcdefghijABCDEFGHIJ012345".to_owned(), None),
        ];
        for (s, want) in rows {
            let got = recognise(&ns(), &s);
            assert_eq!(got.as_ref().map(|r| r.kind), want, "{s:.60}");
            if let Some(r) = got {
                assert_eq!(r.hash, KeyHash::of(&s));
                assert!(!r.masked.contains(&s[..s.len().min(20)][8..]), "masked form hides the secret: {}", r.masked);
                assert!(r.masked.chars().count() <= 24, "{}", r.masked);
            }
        }
        assert_eq!(recognise(&ns(), &format!("gth_at_{t43}")).unwrap().masked, "gth_at_…AAAA");
    }

    #[test]
    fn hostile_batches_are_refused_whole() {
        let ok = br#"[{"token":"x","type":"gatehouse_api_key","url":"https://github.com/o/r/blob/abc/f","source":"content"}]"#;
        assert_eq!(parse_github_batch(ok).unwrap().len(), 1);
        assert_eq!(parse_github_batch(b"[]").unwrap(), vec![]);
        assert_eq!(
            parse_github_batch(br#"[{"token":"x","type":"t","extra":[1,2]}]"#).unwrap()[0],
            ReportedToken { token: "x".into(), token_type: "t".into(), url: String::new(), source: String::new() }
        );
        let long_token = format!(r#"[{{"token":"{}","type":"t"}}]"#, "a".repeat(MAX_TOKEN_LEN + 1));
        let long_url = format!(r#"[{{"token":"x","type":"t","url":"{}"}}]"#, "u".repeat(MAX_URL_LEN + 1));
        let many = format!("[{}]", vec![r#"{"token":"x","type":"t"}"#; MAX_BATCH_ITEMS + 1].join(","));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let huge = vec![b' '; MAX_BATCH_BYTES + 1];
        let rows: Vec<(&[u8], &str)> = vec![
            (b"", "Malformed"),
            (b"{}", "Malformed"),
            (b"null", "Malformed"),
            (b"[1]", "Malformed"),
            (b"[{\"type\":\"t\"}]", "Malformed"),
            (b"[{\"token\":5,\"type\":\"t\"}]", "Malformed"),
            (b"[{\"token\":\"x\"}]", "Malformed"),
            (b"[{\"token\":\"x\",\"type\":\"t\",\"url\":null}]", "Malformed"),
            (b"[{\"token\":\"\",\"type\":\"t\"}]", "BadField"),
            (b"[{\"token\":\"x\",\"type\":\"t\\u0000\"}]", "BadField"),
            (b"[{\"token\":\"x\",\"type\":\"t\",\"url\":\"a\\nb\"}]", "BadField"),
            (b"[{\"token\":\"x\",\"type\":\"t\"}] trailing", "Malformed"),
            (b"\xff\xfe[]", "Malformed"),
            (long_token.as_bytes(), "BadField"),
            (long_url.as_bytes(), "BadField"),
            (many.as_bytes(), "TooMany"),
            (deep.as_bytes(), "Malformed"),
            (&huge, "TooLarge"),
        ];
        for (body, want) in rows {
            let err = parse_github_batch(body).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "{:?} -> {err:?}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
        }
    }

    #[test]
    fn leak_reports_accept_any_strings_but_only_the_shape() {
        assert_eq!(parse_leak_report(br#"{"credentials":["a","b"]}"#).unwrap(), vec!["a", "b"]);
        for bad in
            [&b"[]"[..], b"{}", br#"{"credentials":"a"}"#, br#"{"credentials":[1]}"#, br#"{"credentials":[],"x":1}"#]
        {
            assert!(parse_leak_report(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many = format!(r#"{{"credentials":[{}]}}"#, vec!["\"x\""; MAX_BATCH_ITEMS + 1].join(","));
        assert_eq!(parse_leak_report(many.as_bytes()), Err(BatchError::TooMany));
    }

    #[test]
    fn signature_headers() {
        let sig = b"MEUCIQDfLvT8/zM8F1aB3cM0ZwyeWF1m5YR6IhcUIv1OKQYL0wIgBZ5lVXB3gHK+dT8+xt0WgRVLqvsTPFiDO9QP/7eJ4yE=";
        let id = b"f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d";
        let ok = parse_signature_headers(Some(id), Some(sig)).unwrap();
        assert_eq!(ok.key_id.as_bytes(), id);
        assert_eq!(ok.der.len(), 71);
        use SignatureHeaderError::*;
        let long_id = vec![b'a'; 129];
        type Row<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, SignatureHeaderError);
        let rows: Vec<Row> = vec![
            (None, Some(sig), MissingKeyId),
            (Some(id), None, MissingSignature),
            (Some(b""), Some(sig), BadKeyId),
            (Some(&long_id), Some(sig), BadKeyId),
            (Some(b"abc def"), Some(sig), BadKeyId),
            (Some(b"../../etc"), Some(sig), BadKeyId),
            (Some("é".as_bytes()), Some(sig), BadKeyId),
            (Some(id), Some(b""), BadSignature),
            (Some(id), Some(b"not base64!"), BadSignature),
            (Some(id), Some(b"MEUCIQDfLvT8"), BadSignature),
            (Some(id), Some(b"AAAAAAAAAAAAAAAA"), BadSignature),
            (Some(id), Some(&[b'A'; 200]), BadSignature),
            (
                Some(id),
                Some(
                    b"MEUCIQDfLvT8/zM8F1aB3cM0ZwyeWF1m5YR6IhcUIv1OKQYL0wIgBZ5lVXB3gHK+dT8+xt0WgRVLqvsTPFiDO9QP/7eJ4yE",
                ),
                BadSignature,
            ),
        ];
        for (i, s, want) in rows {
            assert_eq!(parse_signature_headers(i, s), Err(want.clone()), "{want:?}");
        }
    }

    #[test]
    fn key_lists() {
        let point: Vec<u8> = std::iter::once(4u8).chain(1..=64).collect();
        let pem = pem_of_p256_point(&point);
        assert_eq!(p256_point_of_pem(&pem), Some(point.clone()));
        let list = serde_json::json!({"public_keys": [
            {"key_identifier": "k1", "key": pem, "is_current": true},
            {"key_identifier": "k2", "key": pem, "is_current": false},
            {"key_identifier": "k3", "key": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----", "is_current": true},
            {"key_identifier": "bad id", "key": pem, "is_current": true},
        ]});
        let parsed = parse_key_list(list.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.skipped, 2);
        assert_eq!(
            parsed.keys.iter().map(|k| (k.key_identifier.as_str(), k.is_current)).collect::<Vec<_>>(),
            vec![("k1", true), ("k2", false)]
        );
        let compressed: Vec<u8> = std::iter::once(2u8).chain(1..=64).collect();
        for bad_pem in [
            String::new(),
            pem.replace("PUBLIC KEY", "PRIVATE KEY"),
            pem_of_p256_point(&compressed),
            pem_of_p256_point(&point[..64]),
            format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----", "A".repeat(400)),
        ] {
            assert_eq!(p256_point_of_pem(&bad_pem), None, "{bad_pem}");
        }
        let many = serde_json::json!({"public_keys": vec![serde_json::json!({"key_identifier": "k", "key": "x", "is_current": true}); MAX_KEYS + 1]});
        for (body, want) in [
            (b"[]".to_vec(), "Malformed"),
            (br#"{"public_keys":[{"key_identifier":"k","key":"x"}]}"#.to_vec(), "Malformed"),
            (br#"{"public_keys":null}"#.to_vec(), "Malformed"),
            (many.to_string().into_bytes(), "TooMany"),
            (vec![b' '; MAX_KEY_LIST_BYTES + 1], "TooLarge"),
        ] {
            let err = parse_key_list(&body).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
    }
}
