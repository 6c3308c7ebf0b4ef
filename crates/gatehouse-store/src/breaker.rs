//! The circuit breaker around the database (SPEC §16 "Storage down").
//!
//! Without it, every call made while the database is down waits the pool's whole `acquire_timeout`
//! (seconds) for a connection before it fails: under load that piles up waiting requests, memory and
//! connection attempts. Once one call has shown that storage is unreachable (`StoreError::Unavailable`),
//! the breaker opens: every call fails at once with `Unavailable`, and a single background probe asks
//! the database (`SELECT 1`, bounded by `probe_timeout`) every `probe_interval` whether it is back. The
//! first probe that succeeds closes the breaker; nothing has to be restarted.
//!
//! Failing closed is unchanged: an open breaker is an error, never an answer, so a caller that needed
//! storage answers 503 exactly as it would after the timeout, only sooner.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::StoreError;

/// The state shared by every clone of one store.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
    /// Times the breaker opened since the store was opened (for logs and tests).
    trips: AtomicU64,
    /// Unix seconds of the last "storage is full" log line (0: never).
    full_logged_at: AtomicU64,
}

/// What `observe` saw: whether this call is the one that opened the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    Unchanged,
}

impl Breaker {
    /// `Err(Unavailable)` at once while the breaker is open.
    pub(crate) fn admit(&self) -> Result<(), StoreError> {
        if self.open.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "storage is unreachable (waiting for it to answer a probe before trying again)".into(),
            ));
        }
        Ok(())
    }

    /// Opens the breaker on an `Unavailable` result; answers whether this call opened it (then the
    /// caller starts the probe, so there is one probe per outage).
    pub(crate) fn observe<T>(&self, result: &Result<T, StoreError>) -> Transition {
        match result {
            Err(StoreError::Unavailable(_)) if !self.open.swap(true, Ordering::AcqRel) => {
                self.trips.fetch_add(1, Ordering::Relaxed);
                Transition::Opened
            }
            _ => Transition::Unchanged,
        }
    }

    /// Closes the breaker (a probe succeeded).
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Whether a "storage is full" error should be logged now: at most once every 10 s, so a full
    /// disk under load is one clear line, not a line per request.
    pub(crate) fn full_should_log(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.full_logged_at.load(Ordering::Relaxed);
        (last == 0 || now >= last + 10)
            && self.full_logged_at.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// How the probe runs while the breaker is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between probes; also the longest a recovered database waits to be used again.
    pub interval: Duration,
    /// How long one probe may take before it counts as a failure.
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { interval: Duration::from_millis(250), timeout: Duration::from_secs(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_opens_and_only_the_first_opener_is_told() {
        let b = Breaker::default();
        let rows: [(Result<(), StoreError>, Transition, bool); 5] = [
            (Ok(()), Transition::Unchanged, false),
            (Err(StoreError::Conflict("dup".into())), Transition::Unchanged, false),
            (Err(StoreError::Other("syntax".into())), Transition::Unchanged, false),
            (Err(StoreError::Unavailable("refused".into())), Transition::Opened, true),
            (Err(StoreError::Unavailable("refused again".into())), Transition::Unchanged, true),
        ];
        for (result, transition, open_after) in rows {
            assert_eq!(b.observe(&result), transition, "{result:?}");
            assert_eq!(b.is_open(), open_after, "{result:?}");
        }
        assert!(matches!(b.admit(), Err(StoreError::Unavailable(_))));
        assert_eq!(b.trips(), 1);
        b.close();
        assert!(b.admit().is_ok());
        assert_eq!(b.observe(&Err::<(), _>(StoreError::Unavailable("down".into()))), Transition::Opened);
        assert_eq!(b.trips(), 2);
    }
}
