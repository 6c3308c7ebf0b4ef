//! Usage collection over real storage: the gateway counts allowed/401/403/429 per key and per app,
//! two nodes add up, pruning keeps each resolution's retention, and counts survive a storage outage.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::{Environment, RateLimitOverride, Timestamp};
use gatehouse_services::keys::NewKey;
use gatehouse_services::usage::{Clock, CredentialRef, UsageCollector, UsageConfig};
use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::usage::{
    CredentialKind, Resolution, UsageCounts, UsageCredential, UsageOutcome, UsageStore, UsageSubject,
};
use gatehouse_store::Store;

use crate::gateway::Gw;
use crate::{rk, sk, story};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;

fn api_key(id: &str) -> UsageCredential {
    UsageCredential { kind: CredentialKind::ApiKey, id: id.into() }
}

/// Sums a series of the last few minutes (requests may straddle a minute boundary).
async fn recent(store: &dyn Store, subject: UsageSubject<'_>) -> UsageCounts {
    let now = Timestamp::now().0;
    let series = store.usage_series(subject, Resolution::Minute, Timestamp(now - 5 * MIN), Timestamp(now + MIN));
    let mut sum = UsageCounts::default();
    for p in series.await.unwrap() {
        sum.add(&p.counts);
    }
    sum
}

fn counts(allowed: u64, unauthorized: u64, forbidden: u64, rate_limited: u64) -> UsageCounts {
    UsageCounts { allowed, unauthorized, forbidden, rate_limited }
}

story!(the_gateway_counts_each_outcome_per_key_and_per_app);
async fn the_gateway_counts_each_outcome_per_key_and_per_app(b: Backend) {
    let mut config = crate::test_config();
    // Only the explicit flush below writes, so the test sees one batch.
    config.usage.flush_interval = Duration::from_secs(3600);
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let limited = NewKey {
        app: Some("shop".into()),
        rate_limit: Some(RateLimitOverride { limit: 3, window_secs: 60 }),
        ..sk(Environment::Live)
    };
    let (key, secret) = gw.cp.cli_key(limited).await;
    let (reader, reader_secret) = gw.cp.cli_key(rk(Environment::Live, &["orders:read"])).await;
    let with = |s: &str| [("x-space-app-key", s.to_owned())];
    for _ in 0..3 {
        assert_eq!(gw.get("/", &[("x-space-app-key", &secret)]).await.0, 200);
    }
    let h = with(&secret);
    assert_eq!(gw.get("/", &[(h[0].0, &h[0].1)]).await.0, 429);
    assert_eq!(gw.get("/orders/1", &[("x-space-app-key", &reader_secret)]).await.0, 200);
    // A restricted key on a route that declares no scope: refused after verification.
    assert_eq!(gw.get("/elsewhere", &[("x-space-app-key", &reader_secret)]).await.0, 403);
    // Refused by the key checks themselves (scope): the verifier gives no credential, the app counts it.
    assert_eq!(gw.client_post("/orders/1", &reader_secret).await.0, 403);
    assert_eq!(gw.get("/", &[]).await.0, 401);
    assert_eq!(gw.get("/", &[("x-space-app-key", "gth_sk_live_garbage")]).await.0, 401);
    assert_eq!(gw.get("/ping", &[]).await.0, 200, "public routes count as allowed toward the app");
    // Not one of the four classes: not counted.
    assert_eq!(gw.get("/", &[("x-space-app-key", &secret), ("authorization", "Bearer x")]).await.0, 400);

    let store = gw.cp.state.store.clone();
    assert_eq!(recent(store.as_ref(), UsageSubject::App("shop")).await, UsageCounts::default(), "nothing written yet");
    let rows = gw.cp.state.usage.flush().await.unwrap();
    assert!(rows >= 3, "{rows}");

    assert_eq!(recent(store.as_ref(), UsageSubject::Credential(&api_key(&key.id))).await, counts(3, 0, 0, 1));
    assert_eq!(recent(store.as_ref(), UsageSubject::Credential(&api_key(&reader.id))).await, counts(1, 0, 1, 0));
    assert_eq!(recent(store.as_ref(), UsageSubject::App("shop")).await, counts(5, 2, 2, 1));
    let now = Timestamp::now().0;
    let hours =
        store.usage_series(UsageSubject::App("shop"), Resolution::Hour, Timestamp(now - HOUR), Timestamp(now + 1));
    let total: u64 = hours.await.unwrap().iter().map(|p| p.counts.total()).sum();
    assert_eq!(total, 10, "the hour buckets hold the same requests");
    // A second flush with nothing new adds nothing.
    gw.cp.state.usage.flush().await.unwrap();
    assert_eq!(recent(store.as_ref(), UsageSubject::App("shop")).await, counts(5, 2, 2, 1));
}

story!(the_background_task_flushes_without_being_asked);
async fn the_background_task_flushes_without_being_asked(b: Backend) {
    let mut config = crate::test_config();
    config.usage.flush_interval = Duration::from_millis(100);
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let (key, secret) = gw.cp.cli_key(sk(Environment::Live)).await;
    let mut flushes = gw.cp.state.usage.flushes();
    assert_eq!(gw.get("/", &[("x-space-app-key", &secret)]).await.0, 200);
    // The flush after the request has written it: wait for two flush events (one may have begun before).
    for _ in 0..2 {
        flushes.borrow_and_update();
        tokio::time::timeout(Duration::from_secs(10), flushes.changed()).await.expect("a flush").unwrap();
    }
    let store = gw.cp.state.store.clone();
    assert_eq!(recent(store.as_ref(), UsageSubject::Credential(&api_key(&key.id))).await, counts(1, 0, 0, 0));
}

fn fixed_clock(at: &Arc<AtomicI64>) -> Clock {
    let at = at.clone();
    Arc::new(move || Timestamp(at.load(Ordering::Relaxed)))
}

story!(two_nodes_add_up_and_pruning_keeps_each_retention);
async fn two_nodes_add_up_and_pruning_keeps_each_retention(b: Backend) {
    let db = TestDb::new(b).await;
    let now = Arc::new(AtomicI64::new(T0 + 1_000));
    let cfg = UsageConfig::default();
    let node = |store: gatehouse_store::SqlStore| {
        UsageCollector::new(Arc::new(store) as Arc<dyn Store>, cfg.clone(), fixed_clock(&now))
    };
    let (a, b2) = (node(db.store().await), node(db.store().await));
    for _ in 0..3 {
        a.record("shop", Some(CredentialRef::ApiKey("key_1")), UsageOutcome::Allowed);
    }
    b2.record("shop", Some(CredentialRef::ApiKey("key_1")), UsageOutcome::Allowed);
    b2.record("shop", Some(CredentialRef::OAuthClient("key_1")), UsageOutcome::RateLimited);
    b2.record("shop", None, UsageOutcome::Unauthorized);
    // Recorded from many threads at once: every count arrives.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    a.record("blog", None, UsageOutcome::Forbidden);
                }
            });
        }
    });
    now.store(T0 + MIN + 5, Ordering::Relaxed);
    a.record("shop", Some(CredentialRef::ApiKey("key_1")), UsageOutcome::Forbidden);
    let (ra, rb) = tokio::join!(a.flush(), b2.flush());
    ra.unwrap();
    rb.unwrap();

    let store = db.store().await;
    let k = api_key("key_1");
    let series =
        store.usage_series(UsageSubject::Credential(&k), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 3 * MIN));
    let got: Vec<UsageCounts> = series.await.unwrap().into_iter().map(|p| p.counts).collect();
    assert_eq!(got, [counts(4, 0, 0, 0), counts(0, 0, 1, 0), counts(0, 0, 0, 0)]);
    let client = UsageCredential { kind: CredentialKind::OAuthClient, id: "key_1".into() };
    let series =
        store.usage_series(UsageSubject::Credential(&client), Resolution::Hour, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(series.await.unwrap()[0].counts, counts(0, 0, 0, 1));
    let apps = store.usage_by_app(Resolution::Hour, Timestamp(T0), Timestamp(T0 + HOUR)).await.unwrap();
    assert_eq!(apps, [("blog".to_owned(), counts(0, 0, 4000, 0)), ("shop".to_owned(), counts(4, 1, 1, 1))]);

    // Two days later: the minutes are past their 24 h, the hours are kept for 30 days.
    now.store(T0 + 48 * HOUR, Ordering::Relaxed);
    assert!(a.prune().await.unwrap() > 0);
    let minutes =
        store.usage_series(UsageSubject::App("shop"), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 2 * MIN));
    assert!(minutes.await.unwrap().iter().all(|p| p.counts.total() == 0));
    let hours = store.usage_series(UsageSubject::App("shop"), Resolution::Hour, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(hours.await.unwrap()[0].counts.total(), 7);
    now.store(T0 + 31 * 24 * HOUR, Ordering::Relaxed);
    a.prune().await.unwrap();
    assert!(store.usage_by_app(Resolution::Hour, Timestamp(T0), Timestamp(T0 + HOUR)).await.unwrap().is_empty());
}

/// Makes the database refuse writes until `give_back`: SQLite by another connection holding the write
/// lock, PostgreSQL by refusing connections and ending the open ones.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres(String),
}

async fn take_storage_away(db: &TestDb) -> Outage {
    use sqlx::Connection;
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.url)).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await.unwrap();
            Outage::Sqlite(c)
        }
        Backend::Postgres => {
            let name = db.url.rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::PgConnection::connect(&gatehouse_store::testing::postgres_admin_url()).await.unwrap();
            sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).execute(&mut admin).await.unwrap();
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(&name)
                .execute(&mut admin)
                .await
                .unwrap();
            Outage::Postgres(name)
        }
    }
}

async fn give_back(outage: Outage) {
    use sqlx::Connection;
    match outage {
        Outage::Sqlite(mut c) => {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        Outage::Postgres(name) => {
            let mut admin = sqlx::PgConnection::connect(&gatehouse_store::testing::postgres_admin_url()).await.unwrap();
            sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).execute(&mut admin).await.unwrap();
        }
    }
}

story!(counts_wait_out_a_storage_outage_within_their_bound);
async fn counts_wait_out_a_storage_outage_within_their_bound(b: Backend) {
    let db = TestDb::new(b).await;
    let now = Arc::new(AtomicI64::new(T0));
    let opts = gatehouse_store::StoreOptions { acquire_timeout: Duration::from_secs(1), ..Default::default() };
    let store = gatehouse_store::SqlStore::open(&db.url, &opts).await.unwrap();
    let cfg = UsageConfig { max_pending_rows: 4, ..UsageConfig::default() };
    let usage = UsageCollector::new(Arc::new(store) as Arc<dyn Store>, cfg, fixed_clock(&now));
    usage.record("shop", Some(CredentialRef::ApiKey("key_a")), UsageOutcome::Allowed);
    usage.flush().await.unwrap();

    let outage = take_storage_away(&db).await;
    for id in ["key_a", "key_b", "key_c"] {
        usage.record("shop", Some(CredentialRef::ApiKey(id)), UsageOutcome::Allowed);
    }
    assert!(usage.flush().await.is_err(), "storage refuses the batch");
    assert_eq!(usage.pending_rows(), 3, "kept for the next flush");
    // More traffic while storage is away, up to the bound of 4 rows: a held credential keeps its detail,
    // one new credential fits, the other two count toward the app only.
    usage.record("shop", Some(CredentialRef::ApiKey("key_a")), UsageOutcome::Allowed);
    for id in ["key_d", "key_e", "key_f"] {
        usage.record("shop", Some(CredentialRef::ApiKey(id)), UsageOutcome::Forbidden);
    }
    assert!(usage.flush().await.is_err());
    assert_eq!(usage.pending_rows(), 5, "four credential rows and the app's own");
    assert_eq!(usage.detail_dropped(), 2);
    give_back(outage).await;

    // Nothing lost at the app level; every credential still held is exact. The store answers again
    // once its background probe has seen it back (a few hundred milliseconds).
    let back = std::time::Instant::now();
    while let Err(e) = usage.flush().await {
        assert!(back.elapsed() < std::time::Duration::from_secs(10), "storage never came back: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(usage.pending_rows(), 0);
    let reader = db.store().await;
    let app = reader.usage_series(UsageSubject::App("shop"), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(app.await.unwrap()[0].counts, counts(5, 0, 3, 0));
    let a = api_key("key_a");
    let key_a = reader.usage_series(UsageSubject::Credential(&a), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(key_a.await.unwrap()[0].counts, counts(3, 0, 0, 0), "key_a was held before the bound was reached");
}
