//! Key storage stories: round trips, uniqueness, pagination, revoke, roll, last-used batching, change feed, outages.

use gatehouse_core::{Environment, KeyKind, Timestamp};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditStore, KeyFilter, KeyStore, PageRequest, Store, StoreError};

use crate::{audit, fresh, new_key, story};

story!(round_trip_every_field);
async fn round_trip_every_field(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Restricted, 1_000);
    s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
    assert_eq!(s.key_by_hash(&k.hash).await.unwrap().as_ref(), Some(&k));
    assert_eq!(s.key_by_id("default", &k.id).await.unwrap().as_ref(), Some(&k));
    assert_eq!(s.key_by_id("other", &k.id).await.unwrap(), None, "workspaces are separate");
    let other = new_key(Environment::Live, KeyKind::Secret, 1_000);
    assert_eq!(s.key_by_hash(&other.hash).await.unwrap(), None);
    assert_eq!(s.backend(), if b == Backend::Sqlite { "sqlite" } else { "postgres" });
}

story!(duplicate_hash_is_a_conflict_and_writes_nothing);
async fn duplicate_hash_is_a_conflict_and_writes_nothing(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 1_000);
    s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
    let mut dup = new_key(Environment::Live, KeyKind::Secret, 2_000);
    dup.hash = k.hash;
    let err = s.insert_key(&dup, &audit("key.created", &dup.id, 2_000)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.key_by_id("default", &dup.id).await.unwrap(), None);
    let log = s.list_audit("default", None, &PageRequest { limit: 10, starting_after: None }).await.unwrap();
    assert_eq!(log.items.len(), 1, "the failed insert's audit entry rolled back with it");
}

story!(list_pages_newest_first_with_environment_filter);
async fn list_pages_newest_first_with_environment_filter(b: Backend) {
    let (_db, s) = fresh(b).await;
    let mut live_ids = vec![];
    for i in 0..5 {
        let k = new_key(Environment::Live, KeyKind::Secret, 1_000 + i);
        s.insert_key(&k, &audit("key.created", &k.id, 1_000 + i)).await.unwrap();
        live_ids.push(k.id);
        let t = new_key(Environment::Test, KeyKind::Secret, 1_000 + i);
        s.insert_key(&t, &audit("key.created", &t.id, 1_000 + i)).await.unwrap();
    }
    live_ids.reverse();
    let filter = KeyFilter { workspace: "default".into(), environment: Some(Environment::Live), ..Default::default() };
    let mut seen = vec![];
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.list_keys(&filter, &PageRequest { limit: 2, starting_after: cursor.clone() }).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|k| k.id.clone()));
        assert!(page.items.iter().all(|k| k.environment == Environment::Live));
        if !page.has_more {
            break;
        }
        cursor = page.items.last().map(|k| k.id.clone());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, live_ids);
    let all = KeyFilter { workspace: "default".into(), environment: None, ..Default::default() };
    assert_eq!(s.list_keys(&all, &PageRequest { limit: 100, starting_after: None }).await.unwrap().items.len(), 10);
}

story!(revoke_is_idempotent_audited_and_fed);
async fn revoke_is_idempotent_audited_and_fed(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 1_000);
    s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
    let head = s.key_changes_head().await.unwrap();
    let r = s.revoke_key("default", &k.id, Timestamp(5_000), &audit("key.revoked", &k.id, 5_000)).await.unwrap();
    assert_eq!(r.unwrap().revoked_at, Some(Timestamp(5_000)));
    let again = s.revoke_key("default", &k.id, Timestamp(9_000), &audit("key.revoked", &k.id, 9_000)).await.unwrap();
    assert_eq!(again.unwrap().revoked_at, Some(Timestamp(5_000)), "the first revocation time stands");
    assert!(s
        .revoke_key("default", "key_missing", Timestamp(9_000), &audit("key.revoked", "x", 9_000))
        .await
        .unwrap()
        .is_none());
    let changes = s.key_changes_since(head, Timestamp(0)).await.unwrap();
    assert!(changes.hashes.contains(&k.hash));
    assert!(changes.next_seq > head);
    let log = s.list_audit("default", None, &PageRequest { limit: 10, starting_after: None }).await.unwrap();
    let actions: Vec<_> = log.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["key.revoked", "key.revoked", "key.created"]);
}

story!(roll_links_old_to_new_once);
async fn roll_links_old_to_new_once(b: Backend) {
    let (_db, s) = fresh(b).await;
    let old = new_key(Environment::Test, KeyKind::Restricted, 1_000);
    s.insert_key(&old, &audit("key.created", &old.id, 1_000)).await.unwrap();
    let new = new_key(Environment::Test, KeyKind::Restricted, 2_000);
    let rolled = s
        .roll_key("default", &old.id, &new, Timestamp(3_000), &audit("key.rolled", &old.id, 2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rolled.old.expires_at, Some(Timestamp(3_000)));
    assert_eq!(rolled.old.rolled_to.as_deref(), Some(new.id.as_str()));
    assert_eq!(s.key_by_hash(&new.hash).await.unwrap().unwrap().id, new.id);
    let newer = new_key(Environment::Test, KeyKind::Restricted, 4_000);
    let err = s
        .roll_key("default", &old.id, &newer, Timestamp(5_000), &audit("key.rolled", &old.id, 4_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    assert_eq!(s.key_by_id("default", &newer.id).await.unwrap(), None, "the refused roll inserted nothing");
    assert!(s
        .roll_key("default", "key_nope", &newer, Timestamp(5_000), &audit("key.rolled", "x", 4_000))
        .await
        .unwrap()
        .is_none());
}

story!(last_used_keeps_the_latest_time);
async fn last_used_keeps_the_latest_time(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 1_000);
    s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
    s.touch_last_used(&[(k.id.clone(), Timestamp(8_000))]).await.unwrap();
    s.touch_last_used(&[(k.id.clone(), Timestamp(7_000)), ("key_gone".into(), Timestamp(9_000))]).await.unwrap();
    assert_eq!(s.key_by_id("default", &k.id).await.unwrap().unwrap().last_used_at, Some(Timestamp(8_000)));
}

story!(change_feed_reports_a_gap_after_pruning);
async fn change_feed_reports_a_gap_after_pruning(b: Backend) {
    let (_db, s) = fresh(b).await;
    for i in 0..3 {
        let k = new_key(Environment::Live, KeyKind::Secret, 1_000 + i);
        s.insert_key(&k, &audit("key.created", &k.id, 1_000 + i)).await.unwrap();
    }
    let head = s.key_changes_head().await.unwrap();
    assert_eq!(s.key_changes_since(head, Timestamp(0)).await.unwrap().hashes.len(), 0);
    // Prune everything but the newest entry, then ask from the very first position.
    s.key_changes_since(head, Timestamp(i64::MAX)).await.unwrap();
    let from_start = s.key_changes_since(1, Timestamp(0)).await.unwrap();
    assert!(from_start.gap, "entries 2.. were pruned, so a reader at 1 missed some");
}

story!(audit_log_refuses_updates_and_deletes);
async fn audit_log_refuses_updates_and_deletes(b: Backend) {
    let (db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 1_000);
    s.insert_key(&k, &audit("key.created", &k.id, 1_000)).await.unwrap();
    let url = if b == Backend::Sqlite { format!("sqlite://{}", db.url) } else { db.url.clone() };
    let errs = match b {
        Backend::Sqlite => {
            let p = sqlx::SqlitePool::connect(&url).await.unwrap();
            (
                sqlx::query("UPDATE audit_log SET actor = 'x'").execute(&p).await.is_err(),
                sqlx::query("DELETE FROM audit_log").execute(&p).await.is_err(),
            )
        }
        Backend::Postgres => {
            let p = sqlx::PgPool::connect(&url).await.unwrap();
            (
                sqlx::query("UPDATE audit_log SET actor = 'x'").execute(&p).await.is_err(),
                sqlx::query("DELETE FROM audit_log").execute(&p).await.is_err(),
            )
        }
    };
    assert_eq!(errs, (true, true));
    assert_eq!(
        s.list_audit("default", None, &PageRequest { limit: 5, starting_after: None }).await.unwrap().items.len(),
        1
    );
}

story!(closed_storage_is_unavailable_not_empty);
async fn closed_storage_is_unavailable_not_empty(b: Backend) {
    let (_db, s) = fresh(b).await;
    let k = new_key(Environment::Live, KeyKind::Secret, 1_000);
    s.close().await;
    let err = s.key_by_hash(&k.hash).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(matches!(s.ping().await.unwrap_err(), StoreError::Unavailable(_)));
}
