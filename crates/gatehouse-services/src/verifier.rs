//! Key verification (SPEC §4.3) with an in-process cache.
//!
//! The cache maps a key's SHA-256 to its record (or to "unknown", briefly). It is trusted only while the
//! change feed has been read recently: every key write (create, revoke, roll) appends the key's hash to
//! the feed in the same transaction, and a poller drops those entries here. If the feed cannot be read
//! for `max_staleness`, lookups go to storage, so a dead database answers 503 instead of a stale "valid".
//! The node that revokes also drops its own entry at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::{ApiKey, DenyReason, KeyHash, KeyRecord, Namespace, Timestamp, VerifyContext};
use gatehouse_store::Store;
use parking_lot::{Mutex, RwLock};

use crate::metrics::{CodeLabel, Metrics};

const SHARDS: usize = 32;

/// Key-cache tuning.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How often the change feed is polled for revocations and other key writes.
    pub poll_interval: Duration,
    /// If the feed could not be read for this long, the cache is bypassed (and a dead store then answers 503).
    pub max_staleness: Duration,
    /// How long a found key is trusted before it is re-read, even without a change.
    pub positive_ttl: Duration,
    /// How long an unknown hash is remembered as unknown.
    pub negative_ttl: Duration,
    /// Upper bound on cached entries (found and unknown together).
    pub max_entries: usize,
    /// How often `last_used_at` is written back, in one batch.
    pub last_used_flush: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_staleness: Duration::from_secs(2),
            positive_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_entries: 1_000_000,
            last_used_flush: Duration::from_secs(10),
        }
    }
}

/// Why a verification did not produce a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A §5 refusal (401 or 403).
    Denied(DenyReason),
    /// Storage could not be asked; never treated as valid.
    Unavailable,
}

impl From<DenyReason> for VerifyError {
    fn from(d: DenyReason) -> Self {
        VerifyError::Denied(d)
    }
}

/// Another cache that must forget credentials the change feed reports (e.g. sessions).
pub trait ChangeSink: Send + Sync {
    fn invalidate(&self, hash: &KeyHash);
    fn invalidate_all(&self);
}

/// A cached key record plus its pending `last_used_at`.
#[derive(Debug)]
pub struct CachedKey {
    pub record: KeyRecord,
    dirty: AtomicBool,
    last_used_ms: AtomicI64,
}

impl CachedKey {
    /// A credential that is not a stored key but acts like a restricted one (an OAuth access token
    /// calling the management API): it never enters the key cache and records no last-used time.
    pub fn synthetic(record: KeyRecord) -> Self {
        Self { record, dirty: AtomicBool::new(false), last_used_ms: AtomicI64::new(0) }
    }
}

#[derive(Clone, Debug)]
enum Entry {
    Found { key: Arc<CachedKey>, at_ms: u64 },
    Missing { at_ms: u64 },
}

/// Key hashes are uniformly random, so their first eight bytes are already a good hash.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
}

type ShardMap = HashMap<KeyHash, Entry, BuildHasherDefault<PrefixHasher>>;

#[derive(Default)]
struct Shard {
    map: ShardMap,
    /// Bumped on every invalidation, so a fill that raced with it is not stored.
    generation: u64,
}

struct Inner {
    store: Arc<dyn Store>,
    namespace: Namespace,
    cfg: CacheConfig,
    metrics: Metrics,
    shards: Box<[RwLock<Shard>]>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last successful feed read; 0 = never.
    synced_at_ms: AtomicU64,
    feed_seq: AtomicI64,
    pending_used: Mutex<Vec<Arc<CachedKey>>>,
    sinks: RwLock<Vec<Arc<dyn ChangeSink>>>,
    /// Change-feed reads begun so far; each read takes the next number as its ticket.
    polls_started: AtomicU64,
    /// The highest ticket of a read that completed (and was applied), for `wait_for_poll_after`.
    polls_done: tokio::sync::watch::Sender<u64>,
}

/// Verifies keys against storage through the cache. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(store: Arc<dyn Store>, namespace: Namespace, cfg: CacheConfig, metrics: Metrics) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect::<Vec<_>>().into_boxed_slice();
        Self {
            inner: Arc::new(Inner {
                store,
                namespace,
                cfg,
                metrics,
                shards,
                epoch: Instant::now(),
                synced_at_ms: AtomicU64::new(0),
                feed_seq: AtomicI64::new(0),
                pending_used: Mutex::new(Vec::new()),
                sinks: RwLock::new(Vec::new()),
                polls_started: AtomicU64::new(0),
                polls_done: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64 + 1
    }

    fn shard(&self, hash: &KeyHash) -> &RwLock<Shard> {
        &self.inner.shards[hash.0[31] as usize % SHARDS]
    }

    /// Registers another cache to be told about changed credentials.
    pub fn subscribe(&self, sink: Arc<dyn ChangeSink>) {
        self.inner.sinks.write().push(sink);
    }

    /// Whether cached credentials may be used now (the change feed was read recently).
    pub fn cache_trusted(&self) -> bool {
        self.trusted_at(self.now_ms())
    }

    fn trusted_at(&self, now_ms: u64) -> bool {
        let synced = self.inner.synced_at_ms.load(Ordering::Acquire);
        synced != 0 && now_ms.saturating_sub(synced) <= self.inner.cfg.max_staleness.as_millis() as u64
    }

    /// Verifies from the cache alone: `None` when the answer needs storage.
    /// This is the hot path: parse + checksum + SHA-256 + one read-locked lookup + the checks.
    pub fn verify_cached(
        &self,
        key: &str,
        ctx: &VerifyContext<'_>,
        now: Timestamp,
    ) -> Option<Result<Arc<CachedKey>, VerifyError>> {
        let parsed = match ApiKey::parse(&self.inner.namespace, key) {
            Ok(p) => p,
            Err(_) => return Some(Err(DenyReason::InvalidApiKey.into())),
        };
        let hash = parsed.hash();
        let found = self.cached(&hash)?;
        Some(self.finish(&hash, found, ctx, now))
    }

    fn cached(&self, hash: &KeyHash) -> Option<Option<Arc<CachedKey>>> {
        let now_ms = self.now_ms();
        if !self.trusted_at(now_ms) {
            return None;
        }
        let shard = self.shard(hash).read();
        match shard.map.get(hash)? {
            Entry::Found { key, at_ms } if now_ms - at_ms < self.inner.cfg.positive_ttl.as_millis() as u64 => {
                self.inner.metrics.cache_hits.inc();
                Some(Some(key.clone()))
            }
            Entry::Missing { at_ms } if now_ms - at_ms < self.inner.cfg.negative_ttl.as_millis() as u64 => {
                self.inner.metrics.cache_negative_hits.inc();
                Some(None)
            }
            _ => None,
        }
    }

    fn finish(
        &self,
        hash: &KeyHash,
        found: Option<Arc<CachedKey>>,
        ctx: &VerifyContext<'_>,
        now: Timestamp,
    ) -> Result<Arc<CachedKey>, VerifyError> {
        let key = match found {
            Some(k) if k.record.hash.ct_eq(hash) => k,
            _ => return Err(DenyReason::InvalidApiKey.into()),
        };
        key.record.check(ctx, now)?;
        self.mark_used(&key, now);
        Ok(key)
    }

    /// Verifies a presented key: parse + checksum (no storage touched on failure) → lookup → §4.3 checks.
    /// The rate limit, the last step of §4.3, is the caller's (it depends on the credential kind).
    pub async fn verify(&self, key: &str, ctx: &VerifyContext<'_>) -> Result<Arc<CachedKey>, VerifyError> {
        let start = Instant::now();
        let now = Timestamp::now();
        let result = match self.verify_cached(key, ctx, now) {
            Some(r) => r,
            None => self.verify_from_store(key, ctx, now).await,
        };
        let m = &self.inner.metrics;
        m.verify_seconds.observe(start.elapsed().as_secs_f64());
        let code = match &result {
            Ok(_) => "valid",
            Err(VerifyError::Denied(d)) => d.code(),
            Err(VerifyError::Unavailable) => "unavailable",
        };
        m.verifications.get_or_create(&CodeLabel { code }).inc();
        result
    }

    async fn verify_from_store(
        &self,
        key: &str,
        ctx: &VerifyContext<'_>,
        now: Timestamp,
    ) -> Result<Arc<CachedKey>, VerifyError> {
        let parsed = ApiKey::parse(&self.inner.namespace, key).map_err(|_| DenyReason::InvalidApiKey)?;
        let hash = parsed.hash();
        self.inner.metrics.cache_misses.inc();
        let generation = self.shard(&hash).read().generation;
        let record = self.inner.store.key_by_hash(&hash).await.map_err(|e| {
            self.inner.metrics.store_errors.inc();
            tracing::warn!(error = %e, "key lookup failed; refusing with 503");
            VerifyError::Unavailable
        })?;
        let found = record.map(|record| {
            Arc::new(CachedKey {
                last_used_ms: AtomicI64::new(record.last_used_at.map_or(0, |t| t.0)),
                record,
                dirty: AtomicBool::new(false),
            })
        });
        self.fill(hash, found.clone(), generation);
        self.finish(&hash, found, ctx, now)
    }

    fn fill(&self, hash: KeyHash, found: Option<Arc<CachedKey>>, generation: u64) {
        let at_ms = self.now_ms();
        let mut shard = self.shard(&hash).write();
        if shard.generation != generation {
            return;
        }
        // Bounded memory without LRU bookkeeping on the read path: a full shard first forgets unknown
        // hashes, then an arbitrary eighth of its entries (hash order is effectively random); refills are
        // one indexed query each.
        let cap = (self.inner.cfg.max_entries / SHARDS).max(8);
        if shard.map.len() >= cap {
            shard.map.retain(|_, e| matches!(e, Entry::Found { .. }));
            if shard.map.len() >= cap {
                let evict: Vec<KeyHash> = shard.map.keys().take(cap / 8).copied().collect();
                for h in evict {
                    shard.map.remove(&h);
                }
            }
        }
        let entry = match found {
            Some(key) => Entry::Found { key, at_ms },
            None => Entry::Missing { at_ms },
        };
        shard.map.insert(hash, entry);
    }

    /// Drops one key from the cache (used at once by the node that revokes or rolls it).
    pub fn invalidate(&self, hash: &KeyHash) {
        let mut shard = self.shard(hash).write();
        shard.generation += 1;
        shard.map.remove(hash);
    }

    /// Drops everything (used when the feed reports a gap).
    pub fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            let mut s = shard.write();
            s.generation += 1;
            s.map.clear();
        }
    }

    fn mark_used(&self, key: &Arc<CachedKey>, now: Timestamp) {
        key.last_used_ms.fetch_max(now.0, Ordering::Relaxed);
        if !key.dirty.swap(true, Ordering::AcqRel) {
            self.inner.pending_used.lock().push(key.clone());
        }
    }

    /// Writes pending `last_used_at` values in one batch; on failure they stay pending for the next try.
    pub async fn flush_last_used(&self) {
        let pending = std::mem::take(&mut *self.inner.pending_used.lock());
        if pending.is_empty() {
            return;
        }
        let batch: Vec<(String, Timestamp)> = pending
            .iter()
            .map(|k| {
                k.dirty.store(false, Ordering::Release);
                (k.record.id.clone(), Timestamp(k.last_used_ms.load(Ordering::Relaxed)))
            })
            .collect();
        if let Err(e) = self.inner.store.touch_last_used(&batch).await {
            tracing::warn!(error = %e, keys = batch.len(), "could not record last_used_at; will retry");
            let mut again = self.inner.pending_used.lock();
            for k in pending {
                if !k.dirty.swap(true, Ordering::AcqRel) {
                    again.push(k);
                }
            }
        }
    }

    /// Reads the change feed once and drops what changed. Marks the cache trusted on success.
    pub async fn poll_changes(&self) -> Result<usize, gatehouse_store::StoreError> {
        let ticket = self.inner.polls_started.fetch_add(1, Ordering::AcqRel) + 1;
        let seq = self.inner.feed_seq.load(Ordering::Acquire);
        let retain_before = Timestamp::now().plus_millis(-3_600_000);
        let started_ms = self.now_ms();
        let changes = self.inner.store.key_changes_since(seq, retain_before).await?;
        let sinks = self.inner.sinks.read().clone();
        if changes.gap {
            tracing::warn!("credential change feed has a gap; dropping every credential cache");
            self.invalidate_all();
            sinks.iter().for_each(|s| s.invalidate_all());
        }
        for h in &changes.hashes {
            self.invalidate(h);
            sinks.iter().for_each(|s| s.invalidate(h));
        }
        self.inner.feed_seq.store(changes.next_seq, Ordering::Release);
        // Trust extends from when the read started: anything committed before then has been seen.
        self.inner.synced_at_ms.store(started_ms, Ordering::Release);
        self.inner.polls_done.send_if_modified(|done| {
            let newer = ticket > *done;
            if newer {
                *done = ticket;
            }
            newer
        });
        Ok(changes.hashes.len())
    }

    /// Waits until a change-feed read that began after this call has completed and been applied, so
    /// every key write committed before the call is reflected in this cache. `false` if none completed
    /// within `within` (the feed cannot be read, or no poller runs). For tests, instead of sleeping a
    /// poll interval.
    pub async fn wait_for_poll_after(&self, within: Duration) -> bool {
        let mut done = self.inner.polls_done.subscribe();
        let after = self.inner.polls_started.load(Ordering::Acquire);
        tokio::time::timeout(within, done.wait_for(|&d| d > after)).await.is_ok_and(|r| r.is_ok())
    }

    /// Starts the feed poller and the last-used flusher.
    pub async fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        match this.inner.store.key_changes_head().await {
            Ok(head) => this.inner.feed_seq.store(head, Ordering::Release),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the key change feed yet; the cache stays off until it can")
            }
        }
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(this.inner.cfg.poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut flush = tokio::time::interval(this.inner.cfg.last_used_flush);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // On PostgreSQL another node's commit is pushed (LISTEN/NOTIFY): read the feed at once.
            // The interval stays as the backstop for lost notifications and for SQLite.
            let mut notices = this.inner.store.key_change_notices();
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = poll.tick() => this.poll_and_report(&mut failing).await,
                    Some(()) = next_notice(&mut notices) => this.poll_and_report(&mut failing).await,
                    _ = flush.tick() => this.flush_last_used().await,
                }
            }
        })
    }

    async fn poll_and_report(&self, failing: &mut bool) {
        match self.poll_changes().await {
            Ok(_) => {
                if std::mem::take(failing) {
                    tracing::info!("key change feed readable again; cache back on");
                }
            }
            Err(e) => {
                if !*failing {
                    tracing::warn!(error = %e, "cannot read the key change feed; the key cache is bypassed until it can");
                    *failing = true;
                }
            }
        }
        let m = &self.inner.metrics;
        m.cache_trusted.set(i64::from(self.cache_trusted()));
        m.storage_down.set(i64::from(self.inner.store.known_down()));
    }
}

/// The next change-feed notice; never resolves where there are none (or their sender has gone).
async fn next_notice(notices: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match notices {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *notices = None;
                return std::future::pending().await;
            }
            Some(())
        }
        None => std::future::pending().await,
    }
}
