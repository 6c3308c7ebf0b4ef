//! Usage collection (SPEC §12 "Usage"): every gateway request is counted in memory by (minute, app,
//! credential, outcome) and the counts are added to storage in batches every few seconds and at
//! shutdown, never one write per request. Each node adds its own counts; storage adds them up.
//!
//! Counting takes one uncontended lock: the counters are split into shards and each thread sticks to
//! one (the gateway runs one thread per core), and nothing is allocated once a (minute, app,
//! credential) has been seen in the current flush interval. When storage cannot take a batch the
//! counts stay here and go with the next flush; see [`UsageConfig::max_pending_rows`] for the bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_store::usage::{CredentialKind, UsageCounts, UsageCredential, UsageDelta, UsageOutcome};
use gatehouse_store::{Store, StoreError};
use parking_lot::Mutex;

/// Where time comes from (injectable so tests can count into chosen minutes).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Usage collection settings.
#[derive(Clone, Debug)]
pub struct UsageConfig {
    /// Count requests at all. Off: `record` returns at once and nothing is written.
    pub enabled: bool,
    /// How often counts are added to storage.
    pub flush_interval: Duration,
    /// Per-minute buckets are kept this long (SPEC: the last 24 h).
    pub minute_retention: Duration,
    /// Per-hour buckets are kept this long (SPEC: 30 days).
    pub hour_retention: Duration,
    /// How often buckets past their retention are deleted.
    pub prune_interval: Duration,
    /// Upper bound on rows held for storage while it does not answer. Past it, counts of a credential
    /// not already held are kept toward their app only (the app totals stay exact, that credential's
    /// detail for those minutes is lost and counted in [`UsageCollector::detail_dropped`]).
    pub max_pending_rows: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval: Duration::from_secs(5),
            minute_retention: Duration::from_secs(24 * 3600),
            hour_retention: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
            max_pending_rows: 200_000,
        }
    }
}

/// The credential a request was counted for, borrowed from the request (no allocation to count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialRef<'a> {
    ApiKey(&'a str),
    OAuthClient(&'a str),
}

/// Counters by credential kind (0: none, 1: API key, 2: OAuth client), then id.
type ByCredential = [HashMap<String, [u64; 4]>; 3];
/// Minute start (ms) → app → counters.
type ShardMap = HashMap<i64, HashMap<String, ByCredential>>;
/// What waits for storage: one row per (minute, app, credential).
type Pending = HashMap<(i64, String, Option<UsageCredential>), [u64; 4]>;

const KINDS: [Option<CredentialKind>; 3] = [None, Some(CredentialKind::ApiKey), Some(CredentialKind::OAuthClient)];

struct Inner {
    cfg: UsageConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    shards: Box<[Mutex<ShardMap>]>,
    pending: Mutex<Pending>,
    /// One flush at a time, so a failed batch is put back before the next one is taken.
    flushing: tokio::sync::Mutex<()>,
    flushes: tokio::sync::watch::Sender<u64>,
    detail_dropped: AtomicU64,
    /// The bound was reached since the last successful flush (logged once per episode).
    bound_reached: AtomicBool,
}

/// The in-memory usage counters of one node. Cheap to clone.
#[derive(Clone)]
pub struct UsageCollector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UsageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageCollector").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each thread counts into one shard, assigned round robin on first use.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

impl UsageCollector {
    pub fn new(store: Arc<dyn Store>, cfg: UsageConfig, clock: Clock) -> Self {
        let n = std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(4, 64) * 2;
        let shards = (0..n).map(|_| Mutex::new(ShardMap::new())).collect::<Vec<_>>().into_boxed_slice();
        let (flushes, _) = tokio::sync::watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                clock,
                shards,
                pending: Mutex::new(Pending::new()),
                flushing: tokio::sync::Mutex::new(()),
                flushes,
                detail_dropped: AtomicU64::new(0),
                bound_reached: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &UsageConfig {
        &self.inner.cfg
    }

    /// Counts one request of `app`. `credential` is the valid credential it carried, if any.
    pub fn record(&self, app: &str, credential: Option<CredentialRef<'_>>, outcome: UsageOutcome) {
        if !self.inner.cfg.enabled {
            return;
        }
        let now = (self.inner.clock)().0;
        let minute = now - now.rem_euclid(60_000);
        let (kind, id) = match credential {
            None => (0, ""),
            Some(CredentialRef::ApiKey(id)) => (1, id),
            Some(CredentialRef::OAuthClient(id)) => (2, id),
        };
        let shard = SHARD.with(|s| *s) % self.inner.shards.len();
        let mut map = self.inner.shards[shard].lock();
        let apps = map.entry(minute).or_default();
        if !apps.contains_key(app) {
            apps.insert(app.to_owned(), ByCredential::default());
        }
        let ids = &mut apps.get_mut(app).expect("inserted above")[kind];
        if !ids.contains_key(id) {
            ids.insert(id.to_owned(), [0; 4]);
        }
        ids.get_mut(id).expect("inserted above")[outcome.index()] += 1;
    }

    /// Adds everything counted so far to storage in one batch. On failure the counts are kept for the
    /// next flush. Answers how many rows were written.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let _one = self.inner.flushing.lock().await;
        let taken = {
            let mut pending = self.inner.pending.lock();
            for shard in self.inner.shards.iter() {
                let map = std::mem::take(&mut *shard.lock());
                self.merge(&mut pending, map);
            }
            std::mem::take(&mut *pending)
        };
        if taken.is_empty() {
            self.inner.flushes.send_modify(|n| *n += 1);
            return Ok(0);
        }
        let batch: Vec<UsageDelta> = taken
            .iter()
            .map(|((minute, app, credential), counts)| UsageDelta {
                minute: Timestamp(*minute),
                app: app.clone(),
                credential: credential.clone(),
                counts: UsageCounts::from_array(*counts),
            })
            .collect();
        match self.inner.store.add_usage(&batch).await {
            Ok(()) => {
                self.inner.bound_reached.store(false, Ordering::Relaxed);
                self.inner.flushes.send_modify(|n| *n += 1);
                Ok(batch.len())
            }
            Err(e) => {
                // Put the batch back; counts that arrived meanwhile are still in the shards.
                let mut pending = self.inner.pending.lock();
                for (k, counts) in taken {
                    add(pending.entry(k).or_insert([0; 4]), &counts);
                }
                Err(e)
            }
        }
    }

    fn merge(&self, pending: &mut Pending, map: ShardMap) {
        let max = self.inner.cfg.max_pending_rows;
        for (minute, apps) in map {
            for (app, by_kind) in apps {
                for (kind, ids) in KINDS.iter().zip(by_kind) {
                    for (id, counts) in ids {
                        let credential = kind.map(|kind| UsageCredential { kind, id });
                        let mut key = (minute, app.clone(), credential);
                        if key.2.is_some() && pending.len() >= max && !pending.contains_key(&key) {
                            // Over the bound: keep the app's count, drop this credential's detail.
                            key.2 = None;
                            self.inner.detail_dropped.fetch_add(counts.iter().sum(), Ordering::Relaxed);
                            if !self.inner.bound_reached.swap(true, Ordering::Relaxed) {
                                tracing::warn!(
                                    rows = pending.len(),
                                    "usage waiting for storage reached its bound; new credentials count toward their app only"
                                );
                            }
                        }
                        add(pending.entry(key).or_insert([0; 4]), &counts);
                    }
                }
            }
        }
    }

    /// Deletes buckets past their retention. Answers how many rows went.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let now = (self.inner.clock)().0;
        let cfg = &self.inner.cfg;
        let minutes = Timestamp(now - cfg.minute_retention.as_millis() as i64);
        let hours = Timestamp(now - cfg.hour_retention.as_millis() as i64);
        self.inner.store.prune_usage(minutes, hours).await
    }

    /// A receiver whose value goes up after every flush that reached storage (or had nothing to write).
    pub fn flushes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.flushes.subscribe()
    }

    /// Rows waiting for storage (after a failed flush).
    pub fn pending_rows(&self) -> usize {
        self.inner.pending.lock().len()
    }

    /// Requests whose credential detail was dropped at the memory bound (their app still counted them).
    pub fn detail_dropped(&self) -> u64 {
        self.inner.detail_dropped.load(Ordering::Relaxed)
    }

    /// Flushes every `flush_interval` and prunes every `prune_interval`, until aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if !this.inner.cfg.enabled {
                return;
            }
            // A zero interval would make `interval` panic; a few milliseconds is the floor.
            let floor = Duration::from_millis(10);
            let mut flush = tokio::time::interval(this.inner.cfg.flush_interval.max(floor));
            let mut prune = tokio::time::interval(this.inner.cfg.prune_interval.max(floor));
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = flush.tick() => match this.flush().await {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("usage counts reach storage again");
                        }
                        Ok(_) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, rows = this.pending_rows(), "could not write usage counts; keeping them and retrying");
                        }
                        Err(_) => {}
                    },
                    _ = prune.tick() => match this.prune().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(rows = n, "usage buckets past their retention deleted"),
                        Err(e) => tracing::warn!(error = %e, "could not delete old usage buckets; will retry"),
                    },
                }
            }
        })
    }
}

fn add(into: &mut [u64; 4], counts: &[u64; 4]) {
    for (a, b) in into.iter_mut().zip(counts) {
        *a += b;
    }
}
