//! Prefixed, time-sortable identifiers (`key_…`, `aud_…`, `req_…`): 48-bit milliseconds + 80 random bits,
//! Crockford-free base32 so that string order is creation order, which cursor pagination relies on.

use rand::RngCore;

use crate::Timestamp;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Makes `{prefix}_{26 characters}` from the clock reading `now` and 80 bits of `rng`. Core reads
/// neither the clock nor the OS's randomness; callers pass both (`gatehouse_services::ids` in production).
pub fn new_id(prefix: &str, now: Timestamp, rng: &mut impl RngCore) -> String {
    let mut random = [0u8; 10];
    rng.fill_bytes(&mut random);
    let mut value: u128 = (now.0.max(0) as u128 & ((1 << 48) - 1)) << 80;
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

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = new_id("key", Timestamp(1_000), &mut rng);
        let b = new_id("key", Timestamp(2_000), &mut rng);
        assert!(a < b);
        assert!(looks_like("key", &a));
        assert!(!looks_like("aud", &a));
        assert!(!looks_like("key", "key_../../etc"));
        assert!(!looks_like("key", "key_"));
    }

    #[test]
    fn an_id_is_its_time_then_its_randomness() {
        let id = |seed| new_id("aud", Timestamp(1_764_619_200_000), &mut StdRng::seed_from_u64(seed));
        assert_eq!(id(1), id(1), "same inputs, same id");
        assert_ne!(id(1), id(2));
        assert_eq!(&id(1)[..14], &id(2)[..14], "the first 10 characters after the prefix are the time");
        assert_eq!(id(1), "aud_01kbdr09g0c4c31mv439mfjjk9");
        // Zero randomness leaves only the time: 48 bits of milliseconds, then zeros.
        let zeros = new_id("req", Timestamp(1), &mut rand::rngs::mock::StepRng::new(0, 0));
        assert_eq!(zeros, "req_00000000010000000000000000");
    }
}
