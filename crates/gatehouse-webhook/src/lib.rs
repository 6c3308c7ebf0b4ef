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

/// The `v1` signature: lowercase hex HMAC-SHA256 of `"<t>.<body>"`, keyed with the secret string.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The whole header value: `t` first, then one `v1` per secret, no spaces.
pub fn sign_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut h = format!("t={t}");
    for s in secrets {
        h.push_str(",v1=");
        h.push_str(&sign(s, t, body));
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
    if header.len() > MAX_HEADER_LEN || header.is_empty() || header.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(VerifyError::Malformed);
    }
    let mut t: Option<&str> = None;
    let mut sigs: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" => {
                if t.replace(v).is_some() {
                    return Err(VerifyError::DuplicateTimestamp);
                }
            }
            "v1" => {
                if sigs.len() == MAX_SIGNATURES {
                    return Err(VerifyError::TooManySignatures);
                }
                sigs.push(v);
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
    if sigs.is_empty() {
        return Err(VerifyError::NoSignatures);
    }
    // Sign with the received `t` text exactly, so what is compared is what was signed.
    any_matches(
        secrets.iter().map(|secret| {
            let mut m = mac(secret.as_bytes());
            m.update(t.as_bytes());
            m.update(b".");
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        }),
        &sigs,
    )
}

/// Whether any expected signature equals any presented one, compared in constant time (every pair is
/// compared, so the time does not tell which secret or position matched).
fn any_matches(expected: impl Iterator<Item = String>, presented: &[&str]) -> Result<(), VerifyError> {
    let mut any = subtle::Choice::from(0u8);
    for e in expected {
        for s in presented {
            any |= e.as_bytes().ct_eq(s.as_bytes());
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

    /// The `webhook-signature` value for one secret: `v1,<base64>`.
    pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let mut m = mac(&key(secret)?);
        m.update(format!("{id}.{timestamp}.").as_bytes());
        m.update(body);
        Some(format!("v1,{}", B64.encode(m.finalize().into_bytes())))
    }

    /// Verifies a delivery: any space-separated `v1,<base64>` matching any secret, within the tolerance.
    pub fn verify(id: &str, timestamp: &str, signature: &str, body: &[u8], secrets: &[&str], now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) || timestamp.is_empty() || timestamp.len() > 12 {
            return Err(VerifyError::InvalidTimestamp);
        }
        let ts = check_window(timestamp, now, tolerance_secs)?;
        let sigs: Vec<&str> = signature.split(' ').filter_map(|s| s.strip_prefix("v1,")).collect();
        if sigs.is_empty() {
            return Err(VerifyError::NoSignatures);
        }
        if sigs.len() > MAX_SIGNATURES {
            return Err(VerifyError::TooManySignatures);
        }
        // `sign` answers `v1,<base64>`; the presented entries had their `v1,` taken off.
        any_matches(secrets.iter().filter_map(|s| sign(s, id, ts, body)).map(|e| e[3..].to_owned()), &sigs)
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
        let rows: Vec<(String, &[u8], i64, Result<(), VerifyError>)> = vec![
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
        ];
        for (i, (h, body, now, want)) in rows.iter().enumerate() {
            assert_eq!(verify(h, body, &[S], *now, DEFAULT_TOLERANCE_SECS), *want, "row {i}: {}", &h[..h.len().min(80)]);
        }
        // Under the length cap, many signatures are still refused by count.
        let many = format!("t={T},{}", vec!["v1=00"; 17].join(","));
        assert_eq!(verify(&many, BODY, &[S], T, 300), Err(VerifyError::TooManySignatures));
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
