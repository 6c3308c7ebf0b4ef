//! The per-request cost of usage counting: `record` for a credential already counted in this flush
//! interval (the steady state: no allocation, one uncontended lock), for requests without a
//! credential, and with collection disabled. Run: `cargo bench -p gatehouse-server --bench usage`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_services::usage::{system_clock, CredentialRef, UsageCollector, UsageConfig};
use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::usage::UsageOutcome;
use gatehouse_store::Store;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_db, store) = rt.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let store: Arc<dyn Store> = Arc::new(db.store().await);
        (db, store)
    });
    let on = UsageCollector::new(store.clone(), UsageConfig::default(), system_clock());
    let off = UsageCollector::new(store, UsageConfig { enabled: false, ..UsageConfig::default() }, system_clock());
    // 1,000 keys in rotation, as a busy gateway sees within one flush interval.
    let ids: Vec<String> = (0..1000).map(|i| format!("key_{i:026}")).collect();
    let mut group = c.benchmark_group("usage_record");
    group.throughput(Throughput::Elements(1));
    for (name, usage) in [("enabled", &on), ("disabled", &off)] {
        let mut i = 0;
        group.bench_function(format!("{name}/api_key"), |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                usage.record("shop", Some(CredentialRef::ApiKey(&ids[i])), UsageOutcome::Allowed);
            })
        });
    }
    group.bench_function("enabled/no_credential", |b| b.iter(|| on.record("shop", None, UsageOutcome::Unauthorized)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
