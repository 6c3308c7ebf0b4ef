//! Verifying Gatehouse webhooks in a receiver (SPEC §6), and the signing the sender does.
//!
//! The `Gatehouse-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`: lowercase hex of
//! HMAC-SHA256 keyed with the secret string's UTF-8 bytes (`whsec_` prefix included) over
//! `"<t>.<raw body>"` — byte-compatible with Stripe's scheme. During a secret rotation one `v1` per
//! live secret is sent; a receiver accepts if any `v1` matches any of its secrets.
//!
//! ```
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"id":"evt_1","type":"key.created"}"#;
//! let header = gatehouse_webhook::sign_header(&[secret], 1767225600, body);
//! assert!(gatehouse_webhook::verify(&header, body, &[secret], 1767225600, gatehouse_webhook::DEFAULT_TOLERANCE_SECS).is_ok());
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Signatures older or newer than this (seconds) are refused.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// At most this many `v1` entries are looked at; a header with more is refused outright.
pub const MAX_SIGNATURES: usize = 16;
/// Headers longer than this are refused before parsing.
const MAX_HEADER_LEN: usize = 4096;

/// Why a delivery was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// Not of the form `t=…,v1=…`: spaces, empty parts, an entry without `=`, an overlong header.
    Malformed,
    /// No `t`.
    MissingTimestamp,
    /// More than one `t`.
    DuplicateTimestamp,
    /// `t` is not a plain decimal number of seconds.
    InvalidTimestamp,
    /// `t` is further in the past than the tolerance.
    TooOld,
    /// `t` is further in the future than the tolerance.
    TooNew,
    /// No `v1` entry.
    NoSignatures,
    /// More than `MAX_SIGNATURES` `v1` entries.
    TooManySignatures,
    /// No `v1` matched any secret.
    NoMatch,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "the signature header is malformed (expected t=<seconds>,v1=<hex>)",
            VerifyError::MissingTimestamp => "the signature header has no t=",
            VerifyError::DuplicateTimestamp => "the signature header has more than one t=",
            VerifyError::InvalidTimestamp => "t= is not a number of seconds",
            VerifyError::TooOld => "the signature is too old (replay protection)",
            VerifyError::TooNew => "the signature's time is too far in the future",
            VerifyError::NoSignatures => "the signature header has no v1=",
            VerifyError::TooManySignatures => "the signature header has too many v1= entries",
            VerifyError::NoMatch => "no signature matches the secret(s)",
        })
    }
}

impl std::error::Error for VerifyError {}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// A signing secret made ready for use: the HMAC key schedule (the inner and outer padded-key
/// blocks) is computed once here instead of on every signature. Senders and receivers that sign or
/// verify many payloads with the same secret keep one `Key` per secret.
#[derive(Clone)]
pub struct Key {
    keyed: Hmac<Sha256>,
}

impl Key {
    /// Prepares the secret string (its UTF-8 bytes, `whsec_` prefix included, are the HMAC key).
    pub fn new(secret: &str) -> Key {
        Key { keyed: mac(secret.as_bytes()) }
    }

    /// HMAC-SHA256 of `"<t>.<body>"`, with `t` given as the exact text that is signed.
    fn digest(&self, t: &[u8], body: &[u8]) -> [u8; 32] {
        let mut m = self.keyed.clone();
        m.update(t);
        m.update(b".");
        m.update(body);
        m.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

/// Decimal text of `t` without allocating.
fn decimal(t: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = t < 0;
    let mut n = t.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, d: &[u8; 32]) {
    let mut buf = [0u8; 64];
    for (i, b) in d.iter().enumerate() {
        buf[2 * i] = HEX[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out.push_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"));
}

/// Lowercase hex (exactly 64 digits) back to bytes; anything else is not a signature we could have made.
fn parse_hex(s: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(s[2 * i])? << 4) | nibble(s[2 * i + 1])?;
    }
    Some(out)
}

/// The `v1` signature: lowercase hex HMAC-SHA256 of `"<t>.<body>"`, keyed with the secret string.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Key::new(secret).digest(decimal(t, &mut [0; 20]), body));
    out
}

/// The whole header value: `t` first, then one `v1` per secret, no spaces.
pub fn sign_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let keys: Vec<Key> = secrets.iter().map(|s| Key::new(s)).collect();
    sign_header_with(&keys, t, body)
}

/// [`sign_header`] with prepared keys.
pub fn sign_header_with(keys: &[Key], t: i64, body: &[u8]) -> String {
    let mut buf = [0u8; 20];
    let ts = decimal(t, &mut buf);
    let mut h = String::with_capacity(2 + ts.len() + keys.len() * 68);
    h.push_str("t=");
    h.push_str(std::str::from_utf8(ts).expect("decimal digits are ASCII"));
    for k in keys {
        h.push_str(",v1=");
        push_hex(&mut h, &k.digest(ts, body));
    }
    h
}

/// Parses decimal seconds (already checked to be digits) and checks them against `now` ± tolerance.
fn check_window(t: &str, now: i64, tolerance_secs: u64) -> Result<i64, VerifyError> {
    let ts: i64 = t.parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let tol = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if now.saturating_sub(ts) > tol {
        return Err(VerifyError::TooOld);
    }
    if ts.saturating_sub(now) > tol {
        return Err(VerifyError::TooNew);
    }
    Ok(ts)
}

/// Verifies a `Gatehouse-Signature` header against the raw body and the receiver's secrets (the
/// current one, plus the previous one during a rotation), at `now` (Unix seconds).
pub fn verify(header: &str, body: &[u8], secrets: &[&str], now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    let keys: Vec<Key> = secrets.iter().map(|s| Key::new(s)).collect();
    verify_with(header, body, &keys, now, tolerance_secs)
}

/// [`verify`] with prepared keys.
pub fn verify_with(header: &str, body: &[u8], keys: &[Key], now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    if header.len() > MAX_HEADER_LEN
        || header.is_empty()
        || header.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(VerifyError::Malformed);
    }
    let mut t: Option<&str> = None;
    // Presented signatures, decoded; one that is not 64 lowercase hex digits can match nothing.
    let mut sigs = [None; MAX_SIGNATURES];
    let mut n = 0;
    for part in header.split(',') {
        let (k, v) = part.split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" => {
                if t.replace(v).is_some() {
                    return Err(VerifyError::DuplicateTimestamp);
                }
            }
            "v1" => {
                if n == MAX_SIGNATURES {
                    return Err(VerifyError::TooManySignatures);
                }
                sigs[n] = parse_hex(v);
                n += 1;
            }
            // Other schemes (v0, future versions) are ignored, as Stripe's verifiers do.
            _ if !k.is_empty() => {}
            _ => return Err(VerifyError::Malformed),
        }
    }
    let t = t.ok_or(VerifyError::MissingTimestamp)?;
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    check_window(t, now, tolerance_secs)?;
    if n == 0 {
        return Err(VerifyError::NoSignatures);
    }
    // Sign with the received `t` text exactly, so what is compared is what was signed.
    any_matches(keys.iter().map(|k| k.digest(t.as_bytes(), body)), sigs[..n].iter().flatten())
}

/// Whether any expected signature equals any presented one, compared in constant time (every pair is
/// compared, so the time does not tell which secret or position matched).
fn any_matches<'a, E: AsRef<[u8]>>(
    expected: impl Iterator<Item = E>,
    presented: impl Iterator<Item = &'a [u8; 32]> + Clone,
) -> Result<(), VerifyError> {
    let mut any = subtle::Choice::from(0u8);
    for e in expected {
        for s in presented.clone() {
            any |= e.as_ref().ct_eq(s);
        }
    }
    if bool::from(any) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

/// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`): the HMAC key
/// is the base64-decoded part of the secret after `whsec_`; the content is `"<id>.<timestamp>.<body>"`.
pub mod standard {
    use super::*;

    fn key(secret: &str) -> Option<Vec<u8>> {
        B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()
    }

    fn digest(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<[u8; 32]> {
        let mut m = mac(&key(secret)?);
        m.update(id.as_bytes());
        m.update(b".");
        m.update(decimal(timestamp, &mut [0; 20]));
        m.update(b".");
        m.update(body);
        Some(m.finalize().into_bytes().into())
    }

    /// The `webhook-signature` value for one secret: `v1,<base64>`.
    pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        digest(secret, id, timestamp, body).map(|d| format!("v1,{}", B64.encode(d)))
    }

    /// Verifies a delivery: any space-separated `v1,<base64>` matching any secret, within the tolerance.
    pub fn verify(
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        secrets: &[&str],
        now: i64,
        tolerance_secs: u64,
    ) -> Result<(), VerifyError> {
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) || timestamp.is_empty() || timestamp.len() > 12 {
            return Err(VerifyError::InvalidTimestamp);
        }
        let ts = check_window(timestamp, now, tolerance_secs)?;
        let presented: Vec<&str> = signature.split(' ').filter_map(|s| s.strip_prefix("v1,")).collect();
        if presented.is_empty() {
            return Err(VerifyError::NoSignatures);
        }
        if presented.len() > MAX_SIGNATURES {
            return Err(VerifyError::TooManySignatures);
        }
        // Decoded; an entry that is not base64 of 32 bytes can match nothing.
        let sigs: Vec<[u8; 32]> = presented.iter().filter_map(|s| B64.decode(s).ok()?.try_into().ok()).collect();
        any_matches(secrets.iter().filter_map(|s| digest(s, id, ts, body)), sigs.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const T: i64 = 1_767_225_600;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"key.created"}"#;

    #[test]
    fn hostile_headers_table() {
        let good = sign(S, T, BODY);
        let upper = good.to_uppercase();
        let thousand = format!("t={T},{}", vec![format!("v1={good}"); 1000].join(","));
        type Row<'a> = (String, &'a [u8], i64, Result<(), VerifyError>);
        let rows: Vec<Row> = vec![
            (format!("t={T},v1={good}"), BODY, T, Ok(())),
            (format!("v1={good},t={T}"), BODY, T, Ok(())),
            (format!("t={T},v1={good}"), BODY, T + 300, Ok(())),
            (format!("t={T},v1={good}"), BODY, T + 301, Err(VerifyError::TooOld)),
            (format!("t={T},v1={good}"), BODY, T - 301, Err(VerifyError::TooNew)),
            (format!("t={T},v1={}", sign("whsec_wrong", T, BODY)), BODY, T, Err(VerifyError::NoMatch)),
            (format!("v1={good}"), BODY, T, Err(VerifyError::MissingTimestamp)),
            (format!("t={T},t={T},v1={good}"), BODY, T, Err(VerifyError::DuplicateTimestamp)),
            (format!("t={T}, v1={good}"), BODY, T, Err(VerifyError::Malformed)),
            (format!(" t={T},v1={good}"), BODY, T, Err(VerifyError::Malformed)),
            (format!("t={T},v1={upper}"), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t=abc,v1={good}"), BODY, T, Err(VerifyError::InvalidTimestamp)),
            (format!("t=-5,v1={good}"), BODY, T, Err(VerifyError::InvalidTimestamp)),
            (format!("t=1e9,v1={good}"), BODY, T, Err(VerifyError::InvalidTimestamp)),
            (format!("t=,v1={good}"), BODY, T, Err(VerifyError::InvalidTimestamp)),
            (format!("t={T}"), BODY, T, Err(VerifyError::NoSignatures)),
            (format!("t={T},v1"), BODY, T, Err(VerifyError::Malformed)),
            (format!("t={T},,v1={good}"), BODY, T, Err(VerifyError::Malformed)),
            (thousand, BODY, T, Err(VerifyError::Malformed)),
            (format!("t={T},v1={good}"), br#"{"id":"evt_1","type":"key.createD"}"#, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1={good}"), b"", T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1={}", sign(S, T, b"")), b"", T, Ok(())),
            (format!("t={T},v0=abc,v1={good}"), BODY, T, Ok(())),
            (String::new(), BODY, T, Err(VerifyError::Malformed)),
            (format!("t=0{T},v1={good}"), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1={}", &good[..63]), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1={good}0"), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1={}g", &good[..63]), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1=+{}", &good[1..]), BODY, T, Err(VerifyError::NoMatch)),
            (format!("t={T},v1=zz,v1={good}"), BODY, T, Ok(())),
            (format!("t={T},v1="), BODY, T, Err(VerifyError::NoMatch)),
        ];
        for (i, (h, body, now, want)) in rows.iter().enumerate() {
            assert_eq!(
                verify(h, body, &[S], *now, DEFAULT_TOLERANCE_SECS),
                *want,
                "row {i}: {}",
                &h[..h.len().min(80)]
            );
        }
        // Under the length cap, many signatures are still refused by count.
        let many = format!("t={T},{}", vec!["v1=00"; 17].join(","));
        assert_eq!(verify(&many, BODY, &[S], T, 300), Err(VerifyError::TooManySignatures));
    }

    #[test]
    fn prepared_keys_sign_and_verify_like_secret_strings() {
        let keys = [Key::new(S), Key::new("whsec_other")];
        assert_eq!(sign_header_with(&keys, T, BODY), sign_header(&[S, "whsec_other"], T, BODY));
        assert!(verify_with(&sign_header(&[S], T, BODY), BODY, &keys[..1], T, 300).is_ok());
        assert_eq!(format!("{:?}", keys[0]), "Key(…)");
        for t in [0, 7, -7, i64::MAX, i64::MIN] {
            assert_eq!(decimal(t, &mut [0; 20]), t.to_string().as_bytes());
        }
    }

    #[test]
    fn standard_hostile_signatures_table() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let good = standard::sign(secret, "msg_1", T, BODY).unwrap();
        let b64 = &good[3..];
        let ts = T.to_string();
        type Row<'a> = (&'a str, String, &'a str, Result<(), VerifyError>);
        let rows: Vec<Row> = vec![
            ("msg_1", ts.clone(), good.as_str(), Ok(())),
            ("msg_2", ts.clone(), good.as_str(), Err(VerifyError::NoMatch)),
            ("msg_1", (T + 1).to_string(), good.as_str(), Err(VerifyError::NoMatch)),
            ("msg_1", ts.clone(), "v1,AAAA", Err(VerifyError::NoMatch)),
            ("msg_1", ts.clone(), "v2,abc", Err(VerifyError::NoSignatures)),
            ("msg_1", ts.clone(), "", Err(VerifyError::NoSignatures)),
            ("msg_1", "12a".into(), good.as_str(), Err(VerifyError::InvalidTimestamp)),
            ("msg_1", "".into(), good.as_str(), Err(VerifyError::InvalidTimestamp)),
            ("msg_1", (T - 301).to_string(), good.as_str(), Err(VerifyError::TooOld)),
        ];
        let with_other = format!("v1,!!!! {good}");
        let lower = format!("v1,{}", b64.to_lowercase());
        let mut rows = rows;
        rows.push(("msg_1", ts.clone(), with_other.as_str(), Ok(())));
        if lower != good {
            rows.push(("msg_1", ts.clone(), lower.as_str(), Err(VerifyError::NoMatch)));
        }
        for (i, (id, t, sig, want)) in rows.iter().enumerate() {
            assert_eq!(standard::verify(id, t, sig, BODY, &[secret], T, 300), *want, "row {i}: {sig}");
        }
        let many = vec![good.as_str(); 17].join(" ");
        assert_eq!(standard::verify("msg_1", &ts, &many, BODY, &[secret], T, 300), Err(VerifyError::TooManySignatures));
    }

    #[test]
    fn rotation_each_secret_alone_verifies() {
        let new = "whsec_second_secret_for_rotation_0001";
        let h = sign_header(&[S, new], T, BODY);
        assert!(verify(&h, BODY, &[S], T, 300).is_ok());
        assert!(verify(&h, BODY, &[new], T, 300).is_ok());
        assert_eq!(verify(&h, BODY, &["whsec_other"], T, 300), Err(VerifyError::NoMatch));
    }
}
