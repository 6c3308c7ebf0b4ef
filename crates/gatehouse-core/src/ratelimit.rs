//! Rate-limit arithmetic (GCRA): a limit of `limit` requests per `window`, bursts up to `limit`.
//! Pure: the caller owns the state (one `u64` per credential) and the clock, both in nanoseconds so
//! that limits far above one request per millisecond keep their meaning.

/// A limit: `limit` requests per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window_ms: u64,
}

/// The outcome of one check, with what the `RateLimit-*` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the quota is whole again (rounded up).
    pub reset_secs: u64,
    /// Seconds until one more request would be allowed (0 when allowed; rounded up, at least 1 when refused).
    pub retry_after_secs: u64,
}

/// Checks one request at `now_ns` against the theoretical arrival time `tat_ns` (0 = never seen).
/// Returns the decision and the state to store (unchanged when refused, so refusals spend nothing).
pub fn check(quota: Quota, tat_ns: u64, now_ns: u64) -> (RateDecision, u64) {
    let limit = quota.limit.max(1);
    let window = quota.window_ms.max(1).saturating_mul(1_000_000);
    let interval = (window / u64::from(limit)).max(1);
    let tat = tat_ns.max(now_ns);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(window);
    let ceil_secs = |ns: u64| ns.div_ceil(1_000_000_000);
    if now_ns < allow_at {
        let used = tat - now_ns;
        let decision = RateDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_secs: ceil_secs(used),
            retry_after_secs: ceil_secs(allow_at - now_ns).max(1),
        };
        return (decision, tat_ns);
    }
    let used = new_tat - now_ns;
    let remaining = ((window - used.min(window)) / interval) as u32;
    let decision = RateDecision {
        allowed: true,
        limit,
        remaining: remaining.min(limit),
        reset_secs: ceil_secs(used),
        retry_after_secs: 0,
    };
    (decision, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_recover() {
        let q = Quota { limit: 3, window_ms: 3000 };
        let mut tat = 0;
        let mut remaining = vec![];
        const MS: u64 = 1_000_000;
        for _ in 0..3 {
            let (d, t) = check(q, tat, 10_000 * MS);
            assert!(d.allowed);
            remaining.push(d.remaining);
            tat = t;
        }
        assert_eq!(remaining, vec![2, 1, 0]);
        let (d, t) = check(q, tat, 10_000 * MS);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        assert_eq!(t, tat, "a refusal spends nothing");
        let (d, _) = check(q, tat, 11_000 * MS);
        assert!(d.allowed, "one interval later one request fits");
    }

    #[test]
    fn limits_above_one_per_millisecond_hold() {
        let q = Quota { limit: 10_000_000, window_ms: 1000 };
        let mut tat = 0;
        let mut allowed = 0;
        // 50,000 requests within one millisecond: all inside the burst of ten million.
        for i in 0..50_000u64 {
            let (d, t) = check(q, tat, 1_000_000_000 + i * 20);
            allowed += u32::from(d.allowed);
            tat = t;
        }
        assert_eq!(allowed, 50_000);
    }

    #[test]
    fn steady_rate_at_the_limit_is_allowed() {
        let q = Quota { limit: 10, window_ms: 1000 };
        let mut tat = 0;
        for i in 0..100 {
            let (d, t) = check(q, tat, (5_000 + i * 100) * 1_000_000);
            assert!(d.allowed, "request {i}");
            tat = t;
        }
    }
}
