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
        groups: vec![],
    }
}

story!(a_session_keeps_the_groups_it_was_created_with);
async fn a_session_keeps_the_groups_it_was_created_with(b: Backend) {
    let (_db, s) = fresh(b).await;
    s.insert_user(&user("usr_g", "g@example.com", "member"), &audit("user.created", "usr_g", 1_000)).await.unwrap();
    // Group names are the provider's: any text, quotes, slashes and non-ASCII included, kept exactly.
    let groups = vec!["eng".to_owned(), "/platform/ops".to_owned(), "Ünal's \"team\"".to_owned()];
    s.insert_session(&SessionRecord { groups: groups.clone(), ..session("with", None, "usr_g") }).await.unwrap();
    s.insert_session(&session("without", None, "usr_g")).await.unwrap();
    assert_eq!(s.session_by_hash(&KeyHash::of("with")).await.unwrap().unwrap().groups, groups);
    assert_eq!(s.session_by_hash(&KeyHash::of("without")).await.unwrap().unwrap().groups, Vec::<String>::new());
    let logins = s.user_logins("usr_g", Timestamp(2_000)).await.unwrap();
    let mut sizes: Vec<usize> = logins.iter().map(|l| l.groups.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![0, 3], "the account page's list of logins reads them too");
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

story!(the_store_refuses_to_remove_the_last_enabled_owner_in_one_statement);
async fn the_store_refuses_to_remove_the_last_enabled_owner_in_one_statement(b: Backend) {
    let (_db, s) = fresh(b).await;
    for (id, email, role) in [("usr_a", "a@example.com", "owner"), ("usr_b", "b@example.com", "owner")] {
        s.insert_user(&user(id, email, role), &audit("user.created", id, 1_000)).await.unwrap();
    }
    s.insert_session(&session("cp_b", None, "usr_b")).await.unwrap();
    // No caller checks anything here: the store alone keeps one enabled owner.
    let demote = |role: &str| UserChange::Role { role: role.into(), at: Timestamp(2_000) };
    let a = s.update_user("usr_a", &demote("admin"), &audit("user.role_changed", "usr_a", 2_000)).await.unwrap();
    assert_eq!(a.unwrap().role, "admin");
    let cases = [
        (UserChange::Disable { at: Timestamp(3_000) }, "disable"),
        (demote("member"), "demote"),
        (demote("viewer"), "demote to viewer"),
    ];
    for (change, what) in &cases {
        let e = s.update_user("usr_b", change, &audit("user.changed", "usr_b", 3_000)).await.unwrap_err();
        assert!(
            matches!(&e, gatehouse_store::StoreError::Conflict(m) if m == gatehouse_store::LAST_OWNER),
            "{what}: {e}"
        );
    }
    let b_now = s.user_by_id("usr_b").await.unwrap().unwrap();
    assert_eq!((b_now.role.as_str(), b_now.disabled_at), ("owner", None), "the last owner is untouched");
    assert!(s.session_by_hash(&KeyHash::of("cp_b")).await.unwrap().unwrap().revoked_at.is_none(), "their session too");
    let entries = s.list_audit("default", None, &PageRequest { limit: 100, starting_after: None }).await.unwrap();
    assert!(!entries.items.iter().any(|e| e.action == "user.changed"), "a refused change writes no audit entry");
    // Re-promoting needs no guard, and then the other owner may go.
    s.update_user("usr_a", &demote("owner"), &audit("user.role_changed", "usr_a", 4_000)).await.unwrap();
    let disable = UserChange::Disable { at: Timestamp(5_000) };
    let b = s.update_user("usr_b", &disable, &audit("user.disabled", "usr_b", 5_000)).await.unwrap();
    assert!(b.unwrap().disabled_at.is_some());
    // A disabled owner is no longer guarded, and does not count as the other owner.
    let e = s.update_user("usr_a", &demote("member"), &audit("user.changed", "usr_a", 6_000)).await.unwrap_err();
    assert!(matches!(e, gatehouse_store::StoreError::Conflict(_)), "{e}");
    let b = s.update_user("usr_b", &demote("member"), &audit("user.role_changed", "usr_b", 6_000)).await.unwrap();
    assert_eq!(b.unwrap().role, "member");
}
