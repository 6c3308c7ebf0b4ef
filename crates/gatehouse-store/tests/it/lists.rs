//! The dashboard's lists in SQL: every key filter against a reference computed over the inserted
//! keys, keyset paging both ways across pages of keys and audit entries created in the same
//! millisecond, and hostile filter values that must neither fail nor match more than they say.

use gatehouse_core::{Environment, KeyKind, KeyRecord, Timestamp};
use gatehouse_store::testing::Backend;
use gatehouse_store::{
    AuditEntry, AuditFilter, AuditStore, Cursor, KeyFilter, KeyStatus, KeyStore, Page, Seek, SqlStore, StoreError,
};

use crate::{audit, fresh, new_key, story};

/// The instant statuses are judged at; keys expire before or after it.
const NOW: i64 = 1_000_000;

/// Reads every page of `filter` forward with `limit`, checking each page's size and `has_more`.
async fn all_pages(s: &SqlStore, filter: &KeyFilter, limit: u32) -> Vec<String> {
    let mut out = vec![];
    let mut cursor = None;
    loop {
        let page = s.seek_keys(filter, &Seek { limit, cursor: cursor.clone() }).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        assert!(!page.has_more || page.items.len() == limit as usize, "a short page says nothing follows");
        out.extend(page.items.iter().map(|k| k.id.clone()));
        match page.items.last() {
            Some(last) if page.has_more => cursor = Some(Cursor::After(last.id.clone())),
            _ => return out,
        }
    }
}

/// Twenty-four keys over every combination of environment, kind, app (two apps and none) and status.
async fn seed(s: &SqlStore) -> Vec<KeyRecord> {
    let mut keys = vec![];
    let mut i = 0;
    for env in [Environment::Live, Environment::Test] {
        for kind in [KeyKind::Secret, KeyKind::Restricted] {
            for app in [Some("shop"), Some("blog"), None] {
                for status in ["active", "revoked"] {
                    i += 1;
                    let mut k = new_key(env, kind, 1_000 + i);
                    k.app = app.map(str::to_owned);
                    k.name = format!("key {i} {}", if i % 3 == 0 { "Payments" } else { "reports" });
                    // Some keys expired before NOW (revoked ones among them); every fifth never expires.
                    k.expires_at = match i {
                        i if i % 4 == 1 || i % 7 == 0 => Some(Timestamp(NOW - 1)),
                        i if i % 5 == 0 => None,
                        _ => Some(Timestamp(NOW + 1)),
                    };
                    s.insert_key(&k, &audit("key.created", &k.id, 1_000 + i)).await.unwrap();
                    if status == "revoked" {
                        let at = Timestamp(2_000 + i);
                        k = s
                            .revoke_key("default", &k.id, at, &audit("key.revoked", &k.id, 2_000 + i))
                            .await
                            .unwrap()
                            .unwrap();
                    }
                    keys.push(k);
                }
            }
        }
    }
    keys
}

/// Which of the seeded keys a filter should find.
type Keep = Box<dyn Fn(&KeyRecord) -> bool>;

fn status_at(k: &KeyRecord, now: Timestamp) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.is_expired(now) {
        "expired"
    } else {
        "active"
    }
}

story!(each_key_filter_matches_exactly_its_keys);
async fn each_key_filter_matches_exactly_its_keys(b: Backend) {
    let (_db, s) = fresh(b).await;
    let keys = seed(&s).await;
    let now = Timestamp(NOW);
    let base = KeyFilter { workspace: "default".into(), ..Default::default() };
    let filters: Vec<(KeyFilter, Keep)> = vec![
        (base.clone(), Box::new(|_| true)),
        (
            KeyFilter { environment: Some(Environment::Test), ..base.clone() },
            Box::new(|k| k.environment == Environment::Test),
        ),
        (KeyFilter { kind: Some(KeyKind::Restricted), ..base.clone() }, Box::new(|k| k.kind == KeyKind::Restricted)),
        (KeyFilter { kind: Some(KeyKind::Secret), ..base.clone() }, Box::new(|k| k.kind == KeyKind::Secret)),
        (KeyFilter { app: Some("shop".into()), ..base.clone() }, Box::new(|k| k.app.as_deref() == Some("shop"))),
        (
            KeyFilter { status: Some(KeyStatus::Active(now)), ..base.clone() },
            Box::new(move |k| status_at(k, now) == "active"),
        ),
        (
            KeyFilter { status: Some(KeyStatus::Revoked), ..base.clone() },
            Box::new(move |k| status_at(k, now) == "revoked"),
        ),
        (
            KeyFilter { status: Some(KeyStatus::Expired(now)), ..base.clone() },
            Box::new(move |k| status_at(k, now) == "expired"),
        ),
        (KeyFilter { search: Some("PAYMENTS".into()), ..base.clone() }, Box::new(|k| k.name.contains("Payments"))),
        (
            KeyFilter {
                environment: Some(Environment::Live),
                kind: Some(KeyKind::Secret),
                app: Some("blog".into()),
                status: Some(KeyStatus::Active(now)),
                ..base.clone()
            },
            Box::new(move |k| {
                k.environment == Environment::Live
                    && k.kind == KeyKind::Secret
                    && k.app.as_deref() == Some("blog")
                    && status_at(k, now) == "active"
            }),
        ),
        (KeyFilter { workspace: "other".into(), ..Default::default() }, Box::new(|_| false)),
    ];
    for (filter, keep) in &filters {
        let mut expected: Vec<String> = keys.iter().filter(|k| keep(k)).map(|k| k.id.clone()).collect();
        expected.sort();
        expected.reverse();
        assert_eq!(all_pages(&s, filter, 3).await, expected, "{filter:?}");
    }
    // Every status filter together covers every key once.
    let counts: usize = [KeyStatus::Active(now), KeyStatus::Revoked, KeyStatus::Expired(now)]
        .into_iter()
        .map(|st| keys.iter().filter(|k| status_at(k, now) == status_name(st)).count())
        .sum();
    assert_eq!(counts, keys.len());
    assert!(keys.iter().any(|k| status_at(k, now) == "expired"), "the seed has expired keys");

    // The search reads the id and the shown prefix…last4 too, in any letter case.
    let k = &keys[7];
    for needle in [
        k.id.to_lowercase(),
        k.id[k.id.len() - 8..].to_owned(),
        k.last4.clone(),
        format!("{}{}", k.display_prefix, k.last4),
    ] {
        let found = all_pages(&s, &KeyFilter { search: Some(needle.clone()), ..base.clone() }, 100).await;
        assert!(found.contains(&k.id), "{needle} finds the key");
        assert!(found.len() < keys.len() / 2, "{needle} narrows the list");
    }
}

fn status_name(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active(_) => "active",
        KeyStatus::Revoked => "revoked",
        KeyStatus::Expired(_) => "expired",
    }
}

story!(key_pages_lose_and_repeat_nothing_in_either_direction);
async fn key_pages_lose_and_repeat_nothing_in_either_direction(b: Backend) {
    let (_db, s) = fresh(b).await;
    // Twenty-three keys created in the same millisecond: only the id tells them apart.
    let mut ids = vec![];
    for _ in 0..23 {
        let k = new_key(Environment::Live, KeyKind::Secret, 5_000);
        s.insert_key(&k, &audit("key.created", &k.id, 5_000)).await.unwrap();
        ids.push(k.id);
    }
    ids.sort();
    ids.reverse();
    let filter = KeyFilter { workspace: "default".into(), ..Default::default() };
    assert_eq!(all_pages(&s, &filter, 4).await, ids, "forward: every key once, newest first");

    // Backward from the oldest: "Newer" pages, each newest first, together every key once.
    let mut back: Vec<Vec<String>> = vec![];
    let mut cursor = Cursor::Before(ids.last().unwrap().clone());
    loop {
        let page: Page<KeyRecord> =
            s.seek_keys(&filter, &Seek { limit: 4, cursor: Some(cursor.clone()) }).await.unwrap();
        let page_ids: Vec<String> = page.items.iter().map(|k| k.id.clone()).collect();
        let mut sorted = page_ids.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(page_ids, sorted, "a page read backward is still newest first");
        let first = page_ids.first().cloned();
        back.push(page_ids);
        match first {
            Some(f) if page.has_more => cursor = Cursor::Before(f),
            _ => break,
        }
    }
    back.reverse();
    let back: Vec<String> = back.concat();
    assert_eq!(back, ids[..ids.len() - 1], "backward: every key but the cursor's own, once");

    // Older then Newer comes back to exactly the page before.
    let second = s.seek_keys(&filter, &Seek { limit: 4, cursor: Some(Cursor::After(ids[3].clone())) }).await.unwrap();
    let newer = Seek { limit: 4, cursor: Some(Cursor::Before(second.items[0].id.clone())) };
    let first: Vec<String> = s.seek_keys(&filter, &newer).await.unwrap().items.into_iter().map(|k| k.id).collect();
    assert_eq!(first, ids[..4]);
}

story!(audit_pages_by_target_lose_and_repeat_nothing);
async fn audit_pages_by_target_lose_and_repeat_nothing(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 7_000);
    s.insert_key(&k, &audit("key.created", &k.id, 7_000)).await.unwrap();
    let other = new_key(Environment::Live, KeyKind::Secret, 7_000);
    s.insert_key(&other, &audit("key.created", &other.id, 7_000)).await.unwrap();
    // Many revocations of both keys in the same millisecond (revoking again is allowed and audited).
    for _ in 0..9 {
        for key in [&k, &other] {
            s.revoke_key("default", &key.id, Timestamp(8_000), &audit("key.revoked", &key.id, 8_000)).await.unwrap();
        }
    }
    let filter = AuditFilter { target: Some(k.id.clone()), ..Default::default() };
    let every = s.seek_audit("default", &filter, &Seek { limit: 100, cursor: None }).await.unwrap().items;
    assert_eq!(every.len(), 10);
    assert!(every.iter().all(|a| a.target_id == k.id));
    let mut forward: Vec<AuditEntry> = vec![];
    let mut cursor = None;
    loop {
        let page = s.seek_audit("default", &filter, &Seek { limit: 3, cursor }).await.unwrap();
        forward.extend(page.items.iter().cloned());
        if !page.has_more {
            break;
        }
        cursor = page.items.last().map(|a| Cursor::After(a.id.clone()));
    }
    assert_eq!(forward, every, "pages of three: every entry once, in order");
    let newest = Seek { limit: 3, cursor: Some(Cursor::Before(every[3].id.clone())) };
    assert_eq!(s.seek_audit("default", &filter, &newest).await.unwrap().items, every[..3]);
}

story!(hostile_filter_values_neither_fail_nor_match_more);
async fn hostile_filter_values_neither_fail_nor_match_more(b: Backend) {
    let (_db, s) = fresh(b).await;
    let mut by_name = std::collections::HashMap::new();
    for (i, name) in ["100% off", "a_b", "axb", "o'brien", "back\\slash", "plain", "ab"].into_iter().enumerate() {
        let mut k = new_key(Environment::Live, KeyKind::Secret, 1_000 + i as i64);
        k.name = name.into();
        s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
        by_name.insert(name, k.id);
    }
    let base = KeyFilter { workspace: "default".into(), ..Default::default() };
    let search = |needle: String| {
        let s = &s;
        let f = KeyFilter { search: Some(needle), ..base.clone() };
        async move {
            let page = s.seek_keys(&f, &Seek { limit: 100, cursor: None }).await;
            let mut names: Vec<String> =
                page.expect("a hostile value is not an error").items.into_iter().map(|k| k.name).collect();
            names.sort();
            names
        }
    };
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // Pattern characters and quotes match themselves only.
    assert_eq!(search("%".into()).await, names(&["100% off"]));
    assert_eq!(search("1%f".into()).await, names(&[]), "% is not a wildcard");
    assert_eq!(search("a_b".into()).await, names(&["a_b"]), "_ is not a wildcard");
    assert_eq!(search("_".into()).await.len(), 7, "every id (`key_…`) holds a `_`");
    assert_eq!(search("'".into()).await, names(&["o'brien"]));
    assert_eq!(search("\\".into()).await, names(&["back\\slash"]));
    assert_eq!(search("\\s".into()).await, names(&["back\\slash"]));
    assert_eq!(search("a%b".into()).await, names(&[]));
    assert_eq!(search("' OR '1'='1".into()).await, names(&[]));
    assert_eq!(search("'; DROP TABLE api_keys; --".into()).await, names(&[]));
    // Control characters, NUL (which PostgreSQL refuses in text) and very long text match nothing.
    for needle in ["\0", "plain\0", "\u{1}", "\t", "\r\n", "\u{7f}"] {
        assert_eq!(search(needle.into()).await, names(&[]), "{needle:?}");
    }
    for len in [gatehouse_store::MAX_SEARCH_LEN, gatehouse_store::MAX_SEARCH_LEN + 1, 100_000] {
        assert_eq!(search("a".repeat(len)).await, names(&[]), "{len} characters");
    }
    assert_eq!(search("é".repeat(300)).await, names(&[]));
    assert_eq!(search("PLAIN".into()).await, names(&["plain"]));
    // The store is still answering (no error opened the breaker) and the table is intact.
    assert_eq!(all_pages(&s, &base, 100).await.len(), 7);

    // Hostile app names and audit filters: exact matches, never patterns or errors.
    for app in ["%", "_", "shop' OR '1'='1", "\0", &"x".repeat(100_000)] {
        let f = KeyFilter { app: Some(app.to_owned()), ..base.clone() };
        assert!(all_pages(&s, &f, 100).await.is_empty(), "app {app:.20?}");
    }
    for v in ["%", "cli' OR '1'='1", "\0", "\u{1}", &"x".repeat(100_000)] {
        for filter in [
            AuditFilter { actor: Some(v.to_owned()), ..Default::default() },
            AuditFilter { action: Some(v.to_owned()), ..Default::default() },
            AuditFilter { target: Some(v.to_owned()), ..Default::default() },
        ] {
            let page = s.seek_audit("default", &filter, &Seek { limit: 100, cursor: None }).await;
            let page: Result<Page<AuditEntry>, StoreError> = page;
            assert!(page.expect("not an error").items.is_empty(), "{filter:.40?}");
        }
    }
    let cli = AuditFilter { actor: Some("cli".into()), ..Default::default() };
    assert_eq!(s.seek_audit("default", &cli, &Seek { limit: 100, cursor: None }).await.unwrap().items.len(), 7);
}
