//! Base62 (`0-9A-Za-z`) helpers for key material and checksums.

/// The alphabet in value order: digits, then upper case, then lower case.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes `value` as exactly `N` base62 digits, most significant first, zero-padded.
/// Returns `None` when the value needs more than `N` digits.
pub fn encode_fixed<const N: usize>(mut value: u64) -> Option<[u8; N]> {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    (value == 0).then_some(out)
}

/// Decodes base62 digits into a number; `None` on a character outside the alphabet or overflow.
pub fn decode(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &c| {
        let d = digit_value(c)?;
        acc.checked_mul(62)?.checked_add(u64::from(d))
    })
}

/// The value of one base62 digit.
pub fn digit_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        assert_eq!(&encode_fixed::<6>(0).unwrap(), b"000000");
        assert_eq!(&encode_fixed::<6>(61).unwrap(), b"00000z");
        assert_eq!(&encode_fixed::<6>(62).unwrap(), b"000010");
        assert_eq!(decode(b"2C8GjS"), Some(2011552642));
        assert_eq!(&encode_fixed::<6>(u64::from(u32::MAX)).unwrap(), b"4gfFC3");
        assert_eq!(encode_fixed::<2>(62 * 62), None);
        assert_eq!(decode(b"ab-"), None);
    }
}
