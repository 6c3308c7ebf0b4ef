use gatehouse_core::Timestamp;
use gatehouse_store::testing::Backend;
use gatehouse_store::usage::{
    CredentialKind, Resolution, UsageCounts, UsageCredential, UsageDelta, UsageStore, UsageSubject,
};

use crate::{fresh, story};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// A whole hour, so minute and hour buckets line up in the assertions.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;

fn key(id: &str) -> UsageCredential {
    UsageCredential { kind: CredentialKind::ApiKey, id: id.into() }
}

fn delta(at: i64, app: &str, credential: Option<UsageCredential>, counts: [u64; 4]) -> UsageDelta {
    UsageDelta { minute: Timestamp(at), app: app.into(), credential, counts: UsageCounts::from_array(counts) }
}

story!(two_writers_add_up_per_minute_and_per_hour);
async fn two_writers_add_up_per_minute_and_per_hour(b: Backend) {
    let (db, node_a) = fresh(b).await;
    // A second node: its own pool on the same database.
    let node_b = db.store().await;
    let k = key("key_a");
    let a = vec![
        delta(T0 + 5_000, "shop", Some(k.clone()), [3, 0, 1, 0]),
        delta(T0 + 10_000, "shop", None, [0, 4, 0, 0]),
        delta(T0 + 2 * MIN, "shop", Some(k.clone()), [1, 0, 0, 2]),
    ];
    let b_batch =
        vec![delta(T0 + 59_999, "shop", Some(k.clone()), [10, 0, 0, 0]), delta(T0, "blog", None, [7, 0, 0, 0])];
    let (ra, rb) = tokio::join!(node_a.add_usage(&a), node_b.add_usage(&b_batch));
    ra.unwrap();
    rb.unwrap();
    // Flushing the same bucket again adds again.
    node_b.add_usage(&[delta(T0 + 1, "shop", Some(k.clone()), [1, 0, 0, 0])]).await.unwrap();

    let minutes =
        node_a.usage_series(UsageSubject::Credential(&k), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 3 * MIN));
    let minutes = minutes.await.unwrap();
    let got: Vec<(i64, [u64; 4])> = minutes
        .iter()
        .map(|p| (p.at.0 - T0, [p.counts.allowed, p.counts.unauthorized, p.counts.forbidden, p.counts.rate_limited]))
        .collect();
    assert_eq!(got, [(0, [14, 0, 1, 0]), (MIN, [0, 0, 0, 0]), (2 * MIN, [1, 0, 0, 2])], "empty minute kept as zeros");

    // The app counts every request, with a credential or without; other apps stay apart.
    let app = node_b
        .usage_series(UsageSubject::App("shop"), Resolution::Minute, Timestamp(T0), Timestamp(T0 + MIN))
        .await
        .unwrap();
    assert_eq!(app.len(), 1);
    assert_eq!(app[0].counts, UsageCounts { allowed: 14, unauthorized: 4, forbidden: 1, rate_limited: 0 });

    let hours = node_a
        .usage_series(UsageSubject::App("shop"), Resolution::Hour, Timestamp(T0 - HOUR), Timestamp(T0 + HOUR))
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|p| (p.at.0 - T0, p.counts.total())).collect::<Vec<_>>(), [(-HOUR, 0), (0, 22)]);
    let key_hours =
        node_a.usage_series(UsageSubject::Credential(&k), Resolution::Hour, Timestamp(T0), Timestamp(T0 + HOUR));
    assert_eq!(key_hours.await.unwrap()[0].counts.total(), 18);

    let by_app = node_a.usage_by_app(Resolution::Hour, Timestamp(T0), Timestamp(T0 + HOUR)).await.unwrap();
    assert_eq!(by_app.iter().map(|(a, c)| (a.as_str(), c.total())).collect::<Vec<_>>(), [("blog", 7), ("shop", 22)]);
    // A credential nobody used has an all-zero series, not an error.
    let none = node_a
        .usage_series(
            UsageSubject::Credential(&key("key_never")),
            Resolution::Minute,
            Timestamp(T0),
            Timestamp(T0 + 2 * MIN),
        )
        .await
        .unwrap();
    assert_eq!(none.iter().map(|p| p.counts.total()).sum::<u64>(), 0);
    assert_eq!(none.len(), 2);
}

story!(a_credential_used_with_two_apps_sums_over_both);
async fn a_credential_used_with_two_apps_sums_over_both(b: Backend) {
    let (_db, s) = fresh(b).await;
    let client = UsageCredential { kind: CredentialKind::OAuthClient, id: "cli_1".into() };
    s.add_usage(&[
        delta(T0, "shop", Some(client.clone()), [2, 0, 0, 0]),
        delta(T0, "blog", Some(client.clone()), [0, 0, 3, 0]),
        // Same id, other kind: a different credential.
        delta(T0, "shop", Some(key("cli_1")), [100, 0, 0, 0]),
    ])
    .await
    .unwrap();
    let series =
        s.usage_series(UsageSubject::Credential(&client), Resolution::Minute, Timestamp(T0), Timestamp(T0 + MIN));
    assert_eq!(series.await.unwrap()[0].counts, UsageCounts { allowed: 2, forbidden: 3, ..Default::default() });
}

story!(pruning_drops_old_minutes_and_hours_by_their_own_retention);
async fn pruning_drops_old_minutes_and_hours_by_their_own_retention(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = key("key_p");
    let day = 24 * HOUR;
    s.add_usage(&[
        delta(T0 - 31 * day, "shop", Some(k.clone()), [1, 0, 0, 0]),
        delta(T0 - 2 * day, "shop", Some(k.clone()), [2, 0, 0, 0]),
        delta(T0 - MIN, "shop", Some(k.clone()), [4, 0, 0, 0]),
    ])
    .await
    .unwrap();
    let deleted = s.prune_usage(Timestamp(T0 - day), Timestamp(T0 - 30 * day)).await.unwrap();
    // Minutes: two old buckets × (key row + app row); hours: one old bucket × two rows.
    assert_eq!(deleted, 6);
    let total = |r: Resolution, from: i64| {
        let s = &s;
        let k = &k;
        async move {
            s.usage_series(UsageSubject::Credential(k), r, Timestamp(from), Timestamp(T0))
                .await
                .unwrap()
                .iter()
                .map(|p| p.counts.allowed)
                .sum::<u64>()
        }
    };
    assert_eq!(total(Resolution::Minute, T0 - 40 * day).await, 4, "only the last day's minutes remain");
    assert_eq!(total(Resolution::Hour, T0 - 40 * day).await, 6, "hours of the last 30 days remain");
    assert_eq!(s.prune_usage(Timestamp(T0 - day), Timestamp(T0 - 30 * day)).await.unwrap(), 0);
}

story!(large_counts_and_many_rows_fit_one_batch);
async fn large_counts_and_many_rows_fit_one_batch(b: Backend) {
    let (_db, s) = fresh(b).await;
    // More rows than one INSERT carries, so the chunking is exercised.
    let batch: Vec<UsageDelta> =
        (0..1_200).map(|i| delta(T0, "shop", Some(key(&format!("key_{i:04}"))), [1, 0, 0, 0])).collect();
    s.add_usage(&batch).await.unwrap();
    s.add_usage(&[delta(T0, "shop", None, [u64::from(u32::MAX) * 4, 0, 0, 0])]).await.unwrap();
    let app = s.usage_series(UsageSubject::App("shop"), Resolution::Minute, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(app.await.unwrap()[0].counts.allowed, 1_200 + u64::from(u32::MAX) * 4);
    let k999 = key("key_0999");
    let one = s.usage_series(UsageSubject::Credential(&k999), Resolution::Hour, Timestamp(T0), Timestamp(T0 + 1));
    assert_eq!(one.await.unwrap()[0].counts.allowed, 1);
}
