//! Rate limits (SPEC §8): one GCRA state per credential. On a single node the states live in memory,
//! sharded to keep lock hold times short; idle states are swept, and a missing state and an idle one
//! mean the same thing. With `redis_url` the states live in Redis, so a limit holds across every node
//! that shares it: one atomic script per check, timed by Redis's clock. When Redis does not answer, the
//! check is decided in memory on this node (the limit then holds per node), a warning is logged once,
//! and `rate_limit_shared` drops to 0 until Redis answers again; authentication itself never depends on
//! Redis, and a limiter outage never lets a request skip its limit altogether.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::ratelimit::{check, Quota, RateDecision};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

const SHARDS: usize = 64;

/// Why a shared limiter could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterError {
    /// `redis_url` does not parse as a Redis URL. The message never repeats the URL, which may hold a
    /// password.
    #[error("redis_url is not a valid Redis URL (redis://[user:password@]host[:port][/db])")]
    InvalidRedisUrl,
}

/// Why one check could not be decided by Redis (it is then decided in memory; only logged).
#[derive(Debug, thiserror::Error)]
enum RedisFailure {
    /// Redis did not answer within the check's deadline.
    #[error("no answer in time")]
    NoAnswer,
    /// Redis refused the connection or the script, or the connection broke.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Per-credential limits, by credential id (`key_…`, `user:…`, `oauth:client:user`, `ip:…`).
#[derive(Debug)]
pub struct RateLimiter {
    default: Quota,
    epoch: Instant,
    shards: Box<[Mutex<HashMap<String, u64>>]>,
    shared: Option<SharedLimits>,
}

impl RateLimiter {
    /// A single-node limiter.
    pub fn new(default: Quota) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect::<Vec<_>>().into_boxed_slice();
        Self { default, epoch: Instant::now(), shards, shared: None }
    }

    /// A limiter whose states live in Redis at `url`, under keys starting with `prefix`.
    pub fn shared(default: Quota, url: &str, prefix: String, health: SharedHealth) -> Result<Self, LimiterError> {
        let client = redis_client(url)?;
        let mut limiter = Self::new(default);
        limiter.shared = Some(SharedLimits::new(client, prefix, health));
        Ok(limiter)
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

    /// Counts one request for `id` against `quota` (or the default): in Redis when shared and
    /// reachable, else in this node's memory.
    pub async fn check(&self, id: &str, quota: Option<Quota>) -> RateDecision {
        let quota = quota.unwrap_or(self.default);
        if let Some(shared) = &self.shared {
            if let Some(d) = shared.check(id, quota).await {
                return d;
            }
        }
        self.check_local(id, quota)
    }

    fn check_local(&self, id: &str, quota: Quota) -> RateDecision {
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

    /// Drops in-memory states whose quota is whole again.
    pub fn sweep(&self) {
        let now = self.now_ns();
        for shard in self.shards.iter() {
            shard.lock().retain(|_, tat| *tat > now);
        }
    }
}

/// Checks a `redis_url` without connecting (for configuration checks).
pub fn check_redis_url(url: &str) -> Result<(), LimiterError> {
    redis_client(url).map(drop)
}

/// The parser's own error is dropped: it may quote the URL, which may hold a password.
fn redis_client(url: &str) -> Result<redis::Client, LimiterError> {
    redis::Client::open(url).map_err(|_| LimiterError::InvalidRedisUrl)
}

/// Where the shared limiter reports whether Redis answers.
#[derive(Clone, Debug, Default)]
pub struct SharedHealth {
    /// 1 while Redis answers.
    pub up: Gauge,
    /// Checks decided in memory because Redis did not answer.
    pub fallbacks: Counter,
}

/// How long one check may wait for Redis before it is decided in memory.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After Redis failed, checks go straight to memory for this long before Redis is tried again, so an
/// outage does not add a timeout to every request.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The GCRA of `gatehouse_core::ratelimit::check`, in microseconds, atomically in Redis. KEYS[1] is the
/// state (the theoretical arrival time); ARGV are the limit and the window in milliseconds. Answers
/// {allowed, remaining, reset_secs, retry_after_secs}. A refusal leaves the state unchanged.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = math.max(tonumber(ARGV[1]), 1)
local window = math.max(tonumber(ARGV[2]), 1) * 1000
local interval = math.max(math.floor(window / limit), 1)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil((tat - now) / 1000000), math.max(math.ceil((allow_at - now) / 1000000), 1)}
end
local used = new_tat - now
local remaining = math.min(math.floor((window - math.min(used, window)) / interval), limit)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(used / 1000) + 1000)
return {1, remaining, math.ceil(used / 1000000), 0}
"#;

struct SharedLimits {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    health: SharedHealth,
    /// Milliseconds since `epoch` before which Redis is not tried (after a failure).
    skip_until_ms: AtomicU64,
    epoch: Instant,
    /// Whether the last attempt reached Redis (for logging transitions once).
    reachable: AtomicBool,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("prefix", &self.prefix)
            .field("reachable", &self.reachable)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    fn new(client: redis::Client, prefix: String, health: SharedHealth) -> Self {
        // Until the first answer the limits are per node; the first check connects.
        health.up.set(0);
        Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            script: redis::Script::new(GCRA),
            prefix,
            health,
            skip_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            reachable: AtomicBool::new(true),
        }
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, RedisFailure> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let c = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The decision from Redis, or `None` when Redis did not answer (the caller decides in memory).
    async fn check(&self, id: &str, quota: Quota) -> Option<RateDecision> {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            self.health.fallbacks.inc();
            return None;
        }
        let attempt = async {
            let mut conn = self.connection().await?;
            let mut call = self.script.key(format!("{}{id}", self.prefix));
            call.arg(quota.limit).arg(quota.window_ms);
            Ok::<_, RedisFailure>(call.invoke_async::<(i64, i64, i64, i64)>(&mut conn).await?)
        };
        let answer = match tokio::time::timeout(REDIS_TIMEOUT * 2, attempt).await {
            Ok(r) => r,
            Err(_) => Err(RedisFailure::NoAnswer),
        };
        match answer {
            Ok((allowed, remaining, reset, retry_after)) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: rate limits are shared across nodes");
                }
                self.health.up.set(1);
                Some(RateDecision {
                    allowed: allowed == 1,
                    limit: quota.limit.max(1),
                    remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                    reset_secs: reset.max(0) as u64,
                    retry_after_secs: retry_after.max(0) as u64,
                })
            }
            Err(cause) => {
                self.skip_until_ms.store(now_ms + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %cause, "Redis does not answer: rate limits are enforced per node until it does");
                }
                self.health.up.set(0);
                self.health.fallbacks.inc();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_are_counted_separately_and_overrides_apply() {
        let l = RateLimiter::new(Quota { limit: 2, window_ms: 60_000 });
        assert!(l.check("key_a", None).await.allowed);
        assert!(l.check("key_a", None).await.allowed);
        assert!(!l.check("key_a", None).await.allowed);
        assert!(l.check("key_b", None).await.allowed, "another credential has its own quota");
        let big = Quota { limit: 10, window_ms: 60_000 };
        assert!(l.check("key_c", Some(big)).await.allowed);
        assert_eq!(l.check("key_c", Some(big)).await.remaining, 8);
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_repeating_it() {
        for url in ["", "not a url", "http://cache:6379", "redis://user:hunter2@[::1"] {
            let err = check_redis_url(url).unwrap_err();
            assert_eq!(err, LimiterError::InvalidRedisUrl, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        for url in ["redis://127.0.0.1:6379", "redis://user:pw@cache:6380/2", "redis+unix:///run/redis.sock"] {
            assert_eq!(check_redis_url(url), Ok(()), "{url}");
        }
    }
}
