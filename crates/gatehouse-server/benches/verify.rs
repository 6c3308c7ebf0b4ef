//! In-process verification of cached keys (parse + checksum + SHA-256 + cache lookup + §4.3 checks),
//! with 1,000 and 1,000,000 keys stored and cached, against a baseline of parse + hash alone.
//! Run: `cargo bench -p gatehouse-server --bench verify`. Method and results: BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse_core::{ApiKey, Environment, Namespace, Timestamp, VerifyContext};
use gatehouse_services::metrics::Metrics;
use gatehouse_services::verifier::CacheConfig;
use gatehouse_services::verifier::Verifier;
use gatehouse_store::testing::{seed_keys, Backend, TestDb};
use gatehouse_store::Store;

struct Fixture {
    _db: TestDb,
    verifier: Verifier,
    secrets: Vec<String>,
}

fn fixture(rt: &tokio::runtime::Runtime, count: usize) -> Fixture {
    rt.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let secrets = seed_keys(&db.url, count, Environment::Live).await;
        let store: Arc<dyn Store> = Arc::new(db.store().await);
        // Trust the cache for the whole run: the bench measures the hot path, not feed polling.
        let cfg = CacheConfig {
            max_staleness: Duration::from_secs(3600),
            positive_ttl: Duration::from_secs(3600),
            max_entries: 2 * count.max(1000),
            ..CacheConfig::default()
        };
        let verifier = Verifier::new(store, Namespace::default(), cfg, Metrics::new("sqlite"));
        verifier.poll_changes().await.expect("feed");
        let ctx = VerifyContext { environment: Environment::Live, ip: None, app: None, scope: None };
        for s in &secrets {
            verifier.verify(s, &ctx).await.expect("seeded keys verify");
        }
        Fixture { _db: db, verifier, secrets }
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let ns = Namespace::default();
    let ctx = VerifyContext { environment: Environment::Live, ip: None, app: None, scope: None };
    let mut group = c.benchmark_group("verify_cached");
    group.throughput(Throughput::Elements(1));
    for count in [1_000usize, 1_000_000] {
        let f = fixture(&rt, count);
        // Walk a fixed sample spread over the whole cache, so a large cache is not measured on one hot entry.
        let step = (count / 1024).max(1);
        let sample: Vec<&str> = f.secrets.iter().step_by(step).take(1024).map(String::as_str).collect();
        group.bench_with_input(BenchmarkId::new("baseline_parse_and_hash", count), &sample, |b, sample| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % sample.len();
                let k = ApiKey::parse(&ns, sample[i]).unwrap();
                std::hint::black_box(k.hash())
            })
        });
        group.bench_with_input(BenchmarkId::new("full", count), &sample, |b, sample| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % sample.len();
                let r = f.verifier.verify_cached(sample[i], &ctx, Timestamp::now()).expect("cached");
                std::hint::black_box(r.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
