//! The single-node rate limiter (SPEC §8): one GCRA state per credential, in memory, sharded to keep
//! lock hold times short. Idle states are swept; a missing state and an idle one mean the same thing.

use std::collections::HashMap;
use std::time::Instant;

use gatehouse_core::ratelimit::{check, Quota, RateDecision};
use parking_lot::Mutex;

const SHARDS: usize = 64;

/// Per-credential limits, by credential id (`key_…`, later `user_…`, `client+user`).
#[derive(Debug)]
pub struct RateLimiter {
    default: Quota,
    epoch: Instant,
    shards: Box<[Mutex<HashMap<String, u64>>]>,
}

impl RateLimiter {
    pub fn new(default: Quota) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect::<Vec<_>>().into_boxed_slice();
        Self { default, epoch: Instant::now(), shards }
    }

    pub fn default_quota(&self) -> Quota {
        self.default
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, u64>> {
        // FNV-1a over the id: ids are random enough, this only spreads them.
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        &self.shards[(h as usize) % SHARDS]
    }

    /// Counts one request for `id` against `quota` (or the default).
    pub fn check(&self, id: &str, quota: Option<Quota>) -> RateDecision {
        let quota = quota.unwrap_or(self.default);
        let now = self.now_ns();
        let mut shard = self.shard(id).lock();
        let tat = shard.get(id).copied().unwrap_or(0);
        let (decision, new_tat) = check(quota, tat, now);
        if decision.allowed {
            match shard.get_mut(id) {
                Some(slot) => *slot = new_tat,
                None => {
                    shard.insert(id.to_owned(), new_tat);
                }
            }
        }
        decision
    }

    /// Drops states whose quota is whole again.
    pub fn sweep(&self) {
        let now = self.now_ns();
        for shard in self.shards.iter() {
            shard.lock().retain(|_, tat| *tat > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_counted_separately_and_overrides_apply() {
        let l = RateLimiter::new(Quota { limit: 2, window_ms: 60_000 });
        assert!(l.check("key_a", None).allowed);
        assert!(l.check("key_a", None).allowed);
        assert!(!l.check("key_a", None).allowed);
        assert!(l.check("key_b", None).allowed, "another credential has its own quota");
        let big = Quota { limit: 10, window_ms: 60_000 };
        assert!(l.check("key_c", Some(big)).allowed);
        assert_eq!(l.check("key_c", Some(big)).remaining, 8);
    }
}
