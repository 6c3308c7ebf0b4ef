//! The users service (SPEC §12 Users): the five roles, what an admin and a key may do to whom, the
//! last owner, role changes reaching live sessions, and one-time set-password links. Every story on
//! both backends.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::Environment;
use gatehouse_services::audit::Actor;
use gatehouse_services::users::{actor_may_manage, UserError, ROLES};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditStore, UserRecord};

use crate::{rk, sk, story, TestApp};

const PW: &str = "a long enough password";

async fn person(app: &TestApp, email: &str, role: &str) -> UserRecord {
    app.state.users.create(email, PW, role, "test").await.unwrap()
}

fn user(u: &UserRecord) -> Actor {
    Actor::User(Arc::new(u.clone()))
}

story!(every_role_is_stored_and_an_unknown_one_is_refused);
async fn every_role_is_stored_and_an_unknown_one_is_refused(b: Backend) {
    let app = TestApp::new(b).await;
    for role in ROLES {
        let u = person(&app, &format!("{role}@example.com"), role).await;
        assert_eq!(app.state.users.find(&u.id).await.unwrap().unwrap().role, role);
    }
    let e = app.state.users.create("x@example.com", PW, "root", "test").await.unwrap_err();
    assert!(matches!(e, UserError::InvalidRole(_)), "{e}");
    assert_eq!(app.state.users.list().await.unwrap().len(), 5, "nothing else was created");
}

story!(an_admin_manages_everyone_but_owners);
async fn an_admin_manages_everyone_but_owners(b: Backend) {
    let app = TestApp::new(b).await;
    let users = &app.state.users;
    let owner = person(&app, "owner@example.com", "owner").await;
    let admin = person(&app, "admin@example.com", "admin").await;
    let dev = person(&app, "dev@example.com", "developer").await;
    let a = user(&admin);

    // Not on an owner: no create, change, disable, enable, reset, link; nobody made owner.
    let refused = [
        users.create_as(&a, "o2@example.com", PW, "owner").await.err(),
        users.disable_as(&a, &owner.id).await.err(),
        users.enable_as(&a, &owner.id).await.err(),
        users.set_password_as(&a, &owner.id, "another long password").await.err(),
        users.set_role(&a, &owner.id, "member").await.err(),
        users.set_role(&a, &dev.id, "owner").await.err(),
        users.create_password_link(&a, &owner.id, Duration::from_secs(60)).await.err(),
    ];
    for (i, e) in refused.into_iter().enumerate() {
        assert!(matches!(e, Some(UserError::NotAllowed(_))), "case {i}: {e:?}");
    }
    let o = users.find(&owner.id).await.unwrap().unwrap();
    assert_eq!((o.role.as_str(), o.disabled_at, o.password_hash), ("owner", None, owner.password_hash.clone()));
    assert_eq!(users.find(&dev.id).await.unwrap().unwrap().role, "developer");
    assert!(users.find("o2@example.com").await.unwrap().is_none());

    // Everyone else: yes.
    let v = users.create_as(&a, "viewer@example.com", PW, "viewer").await.unwrap();
    assert_eq!(users.set_role(&a, &v.id, "admin").await.unwrap().role, "admin");
    assert!(users.disable_as(&a, &dev.id).await.unwrap().disabled_at.is_some());
    assert!(users.enable_as(&a, &dev.id).await.unwrap().disabled_at.is_none());
    users.set_password_as(&a, &dev.id, "another long password").await.unwrap();

    // The role change is audited with what it was and what it became, by the admin.
    let page = gatehouse_store::PageRequest { limit: 100, starting_after: None };
    let entries = app.store.list_audit("default", None, &page).await.unwrap().items;
    let changed = entries.iter().find(|e| e.action == "user.role_changed").expect("audited");
    assert_eq!((changed.actor.as_str(), changed.target_id.as_str()), (admin.id.as_str(), v.id.as_str()));
    assert_eq!((changed.details["from"].as_str(), changed.details["to"].as_str()), (Some("viewer"), Some("admin")));
    assert_eq!(entries.iter().filter(|e| e.action == "user.role_changed").count(), 1, "refusals wrote nothing");

    // Developer, viewer and member manage nobody; an owner manages everyone.
    for role in ["developer", "viewer", "member"] {
        let someone = UserRecord { role: role.into(), ..admin.clone() };
        for target in ROLES {
            assert!(!actor_may_manage(&user(&someone), target), "{role} → {target}");
        }
    }
    for target in ROLES {
        assert!(actor_may_manage(&user(&owner), target), "owner → {target}");
        assert_eq!(actor_may_manage(&a, target), target != "owner", "admin → {target}");
    }
    // A disabled admin manages nobody.
    let gone = UserRecord { disabled_at: Some(gatehouse_core::Timestamp(1)), ..admin.clone() };
    assert!(!actor_may_manage(&user(&gone), "member"));
}

story!(a_key_gives_no_role_beyond_its_own_scopes);
async fn a_key_gives_no_role_beyond_its_own_scopes(b: Backend) {
    let app = TestApp::new(b).await;
    let users = &app.state.users;
    let (sk_key, _) = app.cli_key(sk(Environment::Live)).await;
    let (rk_users, _) = app.cli_key(rk(Environment::Live, &["users:write"])).await;
    let (rk_reader, _) = app
        .cli_key(rk(
            Environment::Live,
            &["users:write", "keys:read", "oauth_clients:read", "webhooks:read", "audit:read"],
        ))
        .await;
    let sk_a = Actor::Key(Arc::new(sk_key));
    let users_only = Actor::Key(Arc::new(rk_users));
    let reader = Actor::Key(Arc::new(rk_reader));
    // (actor, role, allowed)
    let table = [
        (&sk_a, "owner", false),
        (&sk_a, "admin", true),
        (&sk_a, "developer", true),
        (&sk_a, "member", true),
        (&users_only, "member", true),
        (&users_only, "viewer", false),
        (&users_only, "developer", false),
        (&users_only, "admin", false),
        (&reader, "viewer", true),
        (&reader, "developer", false),
    ];
    for (i, (actor, role, allowed)) in table.into_iter().enumerate() {
        assert_eq!(actor_may_manage(actor, role), allowed, "row {i}: {role}");
        let r = users.create_as(actor, &format!("k{i}@example.com"), PW, role).await;
        assert_eq!(r.is_ok(), allowed, "row {i}: {role}: {r:?}");
        assert_eq!(users.find(&format!("k{i}@example.com")).await.unwrap().is_some(), allowed);
    }
}

story!(the_last_enabled_owner_keeps_the_role);
async fn the_last_enabled_owner_keeps_the_role(b: Backend) {
    let app = TestApp::new(b).await;
    let users = &app.state.users;
    let owner = person(&app, "owner@example.com", "owner").await;
    let e = users.set_role(&Actor::Cli, &owner.id, "admin").await.unwrap_err();
    assert!(matches!(e, UserError::LastOwner(_)), "{e}");
    assert!(matches!(users.disable_as(&user(&owner), &owner.id).await, Err(UserError::LastOwner(_))));
    // A disabled second owner does not count.
    let second = person(&app, "second@example.com", "owner").await;
    users.disable(&second.id, "test").await.unwrap();
    assert!(matches!(users.set_role(&Actor::Cli, &owner.id, "member").await, Err(UserError::LastOwner(_))));
    assert_eq!(users.find(&owner.id).await.unwrap().unwrap().role, "owner");
    // Once another owner is enabled, the first may step down.
    users.enable(&second.id, "test").await.unwrap();
    assert_eq!(users.set_role(&user(&owner), &owner.id, "admin").await.unwrap().role, "admin");
    assert!(matches!(users.set_role(&Actor::Cli, &second.id, "viewer").await, Err(UserError::LastOwner(_))));
}

story!(a_role_change_reaches_live_sessions_at_once);
async fn a_role_change_reaches_live_sessions_at_once(b: Backend) {
    let app = TestApp::new(b).await;
    let _owner = person(&app, "owner@example.com", "owner").await;
    let dev = person(&app, "dev@example.com", "developer").await;
    let (cookie, _) = app.state.sessions.create_login(&dev, "cp.test", vec![]).await.unwrap();
    let seen = app.state.sessions.lookup(&cookie, "cp.test").await.unwrap().unwrap();
    assert_eq!(seen.user.role, "developer", "cached now");
    app.state.users.set_role(&Actor::Cli, &dev.id, "viewer").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let s = app.state.sessions.lookup(&cookie, "cp.test").await.unwrap().expect("the session stays");
        if s.user.role == "viewer" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cached session still says {}", s.user.role);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

story!(a_set_password_link_works_once_and_expires);
async fn a_set_password_link_works_once_and_expires(b: Backend) {
    let app = TestApp::new(b).await;
    let users = &app.state.users;
    let dev = person(&app, "dev@example.com", "developer").await;
    let (cookie, _) = app.state.sessions.create_login(&dev, "cp.test", vec![]).await.unwrap();
    let token = users.create_password_link(&Actor::Cli, &dev.id, Duration::from_secs(600)).await.unwrap();
    assert_eq!(token.len(), 43);
    assert!(users.password_link_valid(&token).await.unwrap());
    // Too short a password spends nothing.
    assert!(matches!(users.redeem_password_link(&token, "short").await, Err(UserError::Password(_))));
    let after = users.redeem_password_link(&token, "the new password is long").await.unwrap();
    assert_ne!(after.password_hash, dev.password_hash);
    assert!(matches!(
        users.sign_in("dev@example.com", "the new password is long", None).await.unwrap(),
        gatehouse_services::users::SignIn::Ok(_)
    ));
    // Single use.
    assert!(!users.password_link_valid(&token).await.unwrap());
    assert!(matches!(users.redeem_password_link(&token, "yet another password").await, Err(UserError::InvalidLink)));
    // The user's sessions ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.state.sessions.lookup(&cookie, "cp.test").await.unwrap().is_none());

    // Expired links and made-up tokens are refused.
    let short = users.create_password_link(&Actor::Cli, &dev.id, Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!users.password_link_valid(&short).await.unwrap());
    assert!(matches!(users.redeem_password_link(&short, "yet another password").await, Err(UserError::InvalidLink)));
    for bad in ["", "x", &"A".repeat(43), &"A".repeat(10_000)] {
        assert!(matches!(users.redeem_password_link(bad, "yet another password").await, Err(UserError::InvalidLink)));
    }
    let now = users.find(&dev.id).await.unwrap().unwrap();
    assert_eq!(now.password_hash, after.password_hash, "nothing changed after the first use");
}

story!(two_admins_removing_the_two_owners_at_once_leave_one);
async fn two_admins_removing_the_two_owners_at_once_leave_one(b: Backend) {
    let app = TestApp::new(b).await;
    let users = &app.state.users;
    let enabled_owners = || async {
        let all = users.list().await.unwrap();
        all.into_iter().filter(|u| u.role == "owner" && u.disabled_at.is_none()).collect::<Vec<_>>()
    };
    let mut survivor: Option<String> = None;
    for round in 0..10 {
        let a = person(&app, &format!("a{round}@example.com"), "owner").await;
        let o = person(&app, &format!("o{round}@example.com"), "owner").await;
        // The last round's survivor steps down, so these two are the only enabled owners.
        if let Some(s) = survivor.take() {
            users.set_role(&Actor::Cli, &s, "member").await.unwrap();
        }
        assert_eq!(enabled_owners().await.len(), 2);
        // Both service checks can pass before either write; the store's conditional write decides.
        let (r1, r2) = tokio::join!(users.set_role(&Actor::Cli, &a.id, "admin"), users.disable(&o.id, "test"));
        assert_eq!([&r1, &r2].iter().filter(|r| r.is_err()).count(), 1, "round {round}: one refused: {r1:?} {r2:?}");
        for e in [r1.err(), r2.err()].into_iter().flatten() {
            assert!(matches!(e, UserError::LastOwner(_)), "round {round}: {e}");
        }
        let left = enabled_owners().await;
        assert_eq!(left.len(), 1, "round {round}: one enabled owner is left");
        survivor = Some(left[0].id.clone());
    }
}
