//! Audit search stories: every filter narrows, together they intersect, pages stay newest first.

use gatehouse_core::{Environment, Timestamp};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditFilter, AuditStore, KeyStore, PageRequest};

use crate::{audit, fresh, new_key, story};

story!(search_filters_by_actor_action_target_and_time);
async fn search_filters_by_actor_action_target_and_time(b: Backend) {
    let (_db, s) = fresh(b).await;
    // Six keys created at 1_000.._6_000; the even ones by `usr_a`, the odd ones by `cli`; the last one
    // in the test environment; the first one revoked at 7_000.
    let mut ids = vec![];
    for i in 1..=6_i64 {
        let env = if i == 6 { Environment::Test } else { Environment::Live };
        let k = new_key(env, gatehouse_core::KeyKind::Secret, i * 1_000);
        let mut a = audit("key.created", &k.id, i * 1_000);
        a.environment = Some(env);
        if i % 2 == 0 {
            a.actor = "usr_a".into();
        }
        s.insert_key(&k, &a).await.unwrap();
        ids.push(k.id);
    }
    s.revoke_key("default", &ids[0], Timestamp(7_000), &audit("key.revoked", &ids[0], 7_000)).await.unwrap();

    let all = PageRequest { limit: 100, starting_after: None };
    let targets = |f: AuditFilter| {
        let s = &s;
        let all = all.clone();
        async move {
            let page = s.search_audit("default", &f, &all).await.unwrap();
            page.items.into_iter().map(|a| (a.action, a.target_id)).collect::<Vec<_>>()
        }
    };
    let created = |i: usize| ("key.created".to_owned(), ids[i].clone());
    let revoked = ("key.revoked".to_owned(), ids[0].clone());

    assert_eq!(
        targets(AuditFilter::default()).await,
        [revoked.clone(), created(5), created(4), created(3), created(2), created(1), created(0)],
        "no filter: everything, newest first"
    );
    let by_actor = AuditFilter { actor: Some("usr_a".into()), ..Default::default() };
    assert_eq!(targets(by_actor).await, [created(5), created(3), created(1)]);
    let by_action = AuditFilter { action: Some("key.revoked".into()), ..Default::default() };
    assert_eq!(targets(by_action).await, std::slice::from_ref(&revoked));
    let by_target = AuditFilter { target: Some(ids[0].clone()), ..Default::default() };
    assert_eq!(targets(by_target).await, [revoked.clone(), created(0)]);
    let by_time = AuditFilter { since: Some(Timestamp(2_000)), until: Some(Timestamp(4_000)), ..Default::default() };
    assert_eq!(targets(by_time).await, [created(2), created(1)], "since is inclusive, until exclusive");
    let by_env = AuditFilter { environment: Some(Environment::Test), ..Default::default() };
    assert_eq!(targets(by_env).await, [created(5)]);
    let together = AuditFilter {
        actor: Some("cli".into()),
        action: Some("key.created".into()),
        since: Some(Timestamp(2_000)),
        ..Default::default()
    };
    assert_eq!(targets(together).await, [created(4), created(2)]);
    let nothing = AuditFilter { actor: Some("usr_none".into()), ..Default::default() };
    assert!(targets(nothing).await.is_empty());
    // A hostile filter value is data, not SQL.
    let hostile = AuditFilter { action: Some("' OR 1=1 --".into()), ..Default::default() };
    assert!(targets(hostile).await.is_empty());
    assert!(s.search_audit("elsewhere", &AuditFilter::default(), &all).await.unwrap().items.is_empty());

    // Pages of two under a filter: cursor after the last id, every entry once, in order.
    let f = AuditFilter { action: Some("key.created".into()), ..Default::default() };
    let mut seen = vec![];
    let mut cursor = None;
    loop {
        let page =
            s.search_audit("default", &f, &PageRequest { limit: 2, starting_after: cursor.clone() }).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.target_id.clone()));
        if !page.has_more {
            break;
        }
        cursor = page.items.last().map(|a| a.id.clone());
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
}
