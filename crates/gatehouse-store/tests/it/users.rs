use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_store::oauth::{GrantRecord, NewGrant, TokenKind, TokenRecord};
use gatehouse_store::testing::Backend;
use gatehouse_store::{
    AuditStore, KeyStore, OAuthStore, PageRequest, SessionRecord, SessionStore, UserChange, UserRecord, UserStore,
};

use crate::{audit, fresh, story};

fn user(id: &str, email: &str, role: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        workspace: "default".into(),
        email: email.into(),
        password_hash: "$argon2id$placeholder".into(),
        role: role.into(),
        created_at: Timestamp(1_000),
        disabled_at: None,
    }
}

fn session(name: &str, parent: Option<&str>, user_id: &str) -> SessionRecord {
    SessionRecord {
        id_hash: KeyHash::of(name),
        parent_hash: parent.map(KeyHash::of),
        user_id: user_id.into(),
        host: "shop.test".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(1_000_000_000),
        last_seen_at: Timestamp(1_000),
        revoked_at: None,
    }
}

story!(disabling_a_user_ends_their_sessions_and_feeds_their_tokens);
async fn disabling_a_user_ends_their_sessions_and_feeds_their_tokens(b: Backend) {
    let (_db, s) = fresh(b).await;
    s.insert_user(&user("usr_a", "a@example.com", "admin"), &audit("user.created", "usr_a", 1_000)).await.unwrap();
    s.insert_user(&user("usr_b", "b@example.com", "member"), &audit("user.created", "usr_b", 1_001)).await.unwrap();
    for (name, parent, u) in [("cp_a", None, "usr_a"), ("app_a", Some("cp_a"), "usr_a"), ("cp_b", None, "usr_b")] {
        s.insert_session(&session(name, parent, u)).await.unwrap();
    }
    let grant = GrantRecord {
        id: "grant_a".into(),
        workspace: "default".into(),
        client_id: "client_a".into(),
        user_id: Some("usr_a".into()),
        grant_type: "authorization_code".into(),
        scopes: vec![],
        created_at: Timestamp(1_000),
        revoked_at: None,
    };
    let token = TokenRecord {
        hash: KeyHash::of("at_a"),
        kind: TokenKind::Access,
        grant_id: "grant_a".into(),
        client_id: "client_a".into(),
        user_id: Some("usr_a".into()),
        scopes: vec![],
        created_at: Timestamp(1_000),
        expires_at: Timestamp(1_000_000_000),
        parent_hash: None,
        used_at: None,
        retried_at: None,
        revoked_at: None,
    };
    s.insert_grants(&[NewGrant { grant, tokens: vec![token], audit: audit("oauth.grant.created", "grant_a", 1_002) }])
        .await
        .unwrap();
    let head = s.key_changes_head().await.unwrap();

    let done = s
        .update_user("usr_a", &UserChange::Disable { at: Timestamp(5_000) }, &audit("user.disabled", "usr_a", 5_000))
        .await
        .unwrap();
    assert_eq!(done.unwrap().disabled_at, Some(Timestamp(5_000)));
    for name in ["cp_a", "app_a"] {
        assert_eq!(
            s.session_by_hash(&KeyHash::of(name)).await.unwrap().unwrap().revoked_at,
            Some(Timestamp(5_000)),
            "{name}"
        );
    }
    assert_eq!(
        s.session_by_hash(&KeyHash::of("cp_b")).await.unwrap().unwrap().revoked_at,
        None,
        "another user's session stays"
    );
    let fed = s.key_changes_since(head, Timestamp(0)).await.unwrap().hashes;
    for name in ["cp_a", "app_a", "at_a"] {
        assert!(fed.contains(&KeyHash::of(name)), "{name} is on the change feed");
    }
    assert!(!fed.contains(&KeyHash::of("cp_b")));
    assert_eq!(
        s.token_by_hash(&KeyHash::of("at_a")).await.unwrap().unwrap().revoked_at,
        None,
        "tokens are reloaded, not revoked"
    );

    // Disabling again keeps the first time; enabling clears it and ends nothing more.
    let again = s
        .update_user("usr_a", &UserChange::Disable { at: Timestamp(9_000) }, &audit("user.disabled", "usr_a", 9_000))
        .await
        .unwrap();
    assert_eq!(again.unwrap().disabled_at, Some(Timestamp(5_000)));
    let enabled =
        s.update_user("usr_a", &UserChange::Enable, &audit("user.enabled", "usr_a", 9_500)).await.unwrap().unwrap();
    assert_eq!(enabled.disabled_at, None);

    // A new password ends the sessions too, and is what is stored.
    let new_hash = "$argon2id$new".to_owned();
    let change = UserChange::Password { hash: new_hash.clone(), at: Timestamp(10_000) };
    let changed =
        s.update_user("usr_b", &change, &audit("user.password_changed", "usr_b", 10_000)).await.unwrap().unwrap();
    assert_eq!(changed.password_hash, new_hash);
    assert_eq!(s.session_by_hash(&KeyHash::of("cp_b")).await.unwrap().unwrap().revoked_at, Some(Timestamp(10_000)));

    // An unknown user changes nothing and is not audited.
    assert!(s
        .update_user("usr_none", &UserChange::Enable, &audit("user.enabled", "usr_none", 11_000))
        .await
        .unwrap()
        .is_none());
    let log = s.list_audit("default", None, &PageRequest { limit: 20, starting_after: None }).await.unwrap();
    let actions: Vec<_> = log.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.password_changed",
            "user.enabled",
            "user.disabled",
            "user.disabled",
            "oauth.grant.created",
            "user.created",
            "user.created"
        ]
    );
    let listed: Vec<_> = s.list_users("default").await.unwrap().into_iter().map(|u| u.email).collect();
    assert_eq!(listed, ["a@example.com", "b@example.com"]);
    assert!(s.list_users("elsewhere").await.unwrap().is_empty());
}

story!(the_last_enabled_owner_is_kept_inside_the_write);
async fn the_last_enabled_owner_is_kept_inside_the_write(b: Backend) {
    let (_db, s) = fresh(b).await;
    s.insert_user(&user("usr_o", "o@example.com", "owner"), &audit("user.created", "usr_o", 1_000)).await.unwrap();
    s.insert_user(&user("usr_p", "p@example.com", "owner"), &audit("user.created", "usr_p", 1_001)).await.unwrap();
    let disable = UserChange::Disable { at: Timestamp(2_000) };
    let demote = UserChange::Role { role: "admin".into(), at: Timestamp(2_000) };
    // With two owners, one may go; then the other is the last and stays, whatever the change.
    assert!(s.update_user("usr_p", &disable, &audit("user.disabled", "usr_p", 2_000)).await.unwrap().is_some());
    for change in [&disable, &demote] {
        let refused = s.update_user("usr_o", change, &audit("user.changed", "usr_o", 2_001)).await;
        assert!(matches!(refused, Err(gatehouse_store::StoreError::Conflict(_))), "{change:?}: {refused:?}");
    }
    let kept = s.user_by_id("usr_o").await.unwrap().unwrap();
    assert_eq!((kept.role.as_str(), kept.disabled_at), ("owner", None), "nothing changed");
    assert!(
        AuditStore::list_audit(&s, "default", None, &PageRequest { limit: 100, starting_after: None })
            .await
            .unwrap()
            .items
            .iter()
            .all(|a| a.action != "user.changed"),
        "no audit entry for a refused change"
    );
    // A password change and re-enabling are no loss of an owner.
    let pw = UserChange::Password { hash: "$argon2id$other".into(), at: Timestamp(3_000) };
    assert!(s.update_user("usr_o", &pw, &audit("user.password_changed", "usr_o", 3_000)).await.unwrap().is_some());
    assert!(s
        .update_user("usr_p", &UserChange::Enable, &audit("user.enabled", "usr_p", 3_001))
        .await
        .unwrap()
        .is_some());
    // Two enabled owners again: now either may be demoted.
    assert!(s.update_user("usr_o", &demote, &audit("user.role_changed", "usr_o", 3_002)).await.unwrap().is_some());
}
