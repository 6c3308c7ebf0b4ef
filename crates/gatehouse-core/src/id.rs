//! Prefixed, time-sortable identifiers (`key_…`, `aud_…`, `req_…`): 48-bit milliseconds + 80 random bits,
//! Crockford-free base32 so that string order is creation order, which cursor pagination relies on.

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Makes `{prefix}_{26 characters}`.
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut value: u128 = (now_ms.max(0) as u128 & ((1 << 48) - 1)) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(ALPHABET[((value >> (5 * i)) & 31) as usize] as char);
    }
    out
}

/// Whether `s` is shaped like an id of this prefix (used to reject junk cursors and path ids early).
pub fn looks_like(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.len() == 26 && r.bytes().all(|b| ALPHABET.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = new_id("key", 1_000);
        let b = new_id("key", 2_000);
        assert!(a < b);
        assert!(looks_like("key", &a));
        assert!(!looks_like("aud", &a));
        assert!(!looks_like("key", "key_../../etc"));
        assert!(!looks_like("key", "key_"));
    }
}
