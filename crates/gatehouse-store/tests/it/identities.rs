//! Provider sign-ins in storage (SPEC §15): a link is made once and never moved, a user and its link are
//! created together or not at all, a pending sign-in is spent once, even by two callbacks at once.

use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_store::testing::Backend;
use gatehouse_store::{ExternalIdentity, IdentityStore, PendingLogin, StoreError, UserRecord, UserStore};

use crate::{audit, fresh, story};

fn user(id: &str, email: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        workspace: "default".into(),
        email: email.into(),
        password_hash: "!external".into(),
        role: "member".into(),
        created_at: Timestamp(1_000),
        disabled_at: None,
    }
}

fn link(subject: &str, user_id: &str) -> ExternalIdentity {
    ExternalIdentity {
        workspace: "default".into(),
        issuer: "https://idp.example.com".into(),
        subject: subject.into(),
        user_id: user_id.into(),
        provider_id: "corp".into(),
        email: Some("a@example.com".into()),
        created_at: Timestamp(2_000),
    }
}

fn pending(state: &str) -> PendingLogin {
    PendingLogin {
        state_hash: KeyHash::of(state),
        provider_id: "corp".into(),
        nonce: "nonce".into(),
        code_verifier: "verifier".into(),
        return_to: "/dashboard".into(),
        app_browser: Some(KeyHash::of("app")),
        browser_hash: KeyHash::of("browser"),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(601_000),
    }
}

story!(links_are_made_once_and_pending_sign_ins_are_spent_once);
async fn links_are_made_once_and_pending_sign_ins_are_spent_once(b: Backend) {
    let (_db, s) = fresh(b).await;
    let iss = "https://idp.example.com";
    s.insert_user(&user("usr_a", "a@example.com"), &audit("user.created", "usr_a", 1_000)).await.unwrap();
    assert_eq!(s.user_of_identity("default", iss, "sub-1").await.unwrap(), None);
    s.link_identity(&link("sub-1", "usr_a"), &audit("user.identity_linked", "usr_a", 2_000)).await.unwrap();
    assert_eq!(s.user_of_identity("default", iss, "sub-1").await.unwrap().unwrap().id, "usr_a");
    assert_eq!(s.user_of_identity("other", iss, "sub-1").await.unwrap(), None, "per workspace");
    assert_eq!(s.user_of_identity("default", "https://evil.example", "sub-1").await.unwrap(), None, "per issuer");
    // The same account cannot be linked again, to anyone.
    s.insert_user(&user("usr_b", "b@example.com"), &audit("user.created", "usr_b", 1_000)).await.unwrap();
    let again = s.link_identity(&link("sub-1", "usr_b"), &audit("user.identity_linked", "usr_b", 3_000)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(s.user_of_identity("default", iss, "sub-1").await.unwrap().unwrap().id, "usr_a", "never moved");
    // A new user with a taken email: neither the user nor the link is written.
    let taken = s
        .insert_user_with_identity(
            &user("usr_c", "a@example.com"),
            &link("sub-2", "usr_c"),
            &audit("user.created", "usr_c", 4_000),
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(s.user_of_identity("default", iss, "sub-2").await.unwrap(), None);
    assert_eq!(s.user_by_id("usr_c").await.unwrap(), None);
    s.insert_user_with_identity(
        &user("usr_d", "d@example.com"),
        &link("sub-3", "usr_d"),
        &audit("user.created", "usr_d", 4_000),
    )
    .await
    .unwrap();
    assert_eq!(s.user_of_identity("default", iss, "sub-3").await.unwrap().unwrap().email, "d@example.com");
    assert_eq!(s.identities_of("usr_d").await.unwrap().len(), 1);

    // A pending sign-in is returned once, whole.
    s.insert_pending_login(&pending("state-1")).await.unwrap();
    assert_eq!(s.take_pending_login(&KeyHash::of("state-1")).await.unwrap(), Some(pending("state-1")));
    assert_eq!(s.take_pending_login(&KeyHash::of("state-1")).await.unwrap(), None);
    // Two callbacks with the same state at once: one gets it.
    s.insert_pending_login(&pending("state-2")).await.unwrap();
    let h = KeyHash::of("state-2");
    let (x, y) = tokio::join!(s.take_pending_login(&h), s.take_pending_login(&h));
    assert_eq!([x.unwrap().is_some(), y.unwrap().is_some()].iter().filter(|g| **g).count(), 1);
    // Expired rows are pruned; live ones stay.
    s.insert_pending_login(&pending("state-3")).await.unwrap();
    s.insert_provider_login(&KeyHash::of("login"), "corp", "header.payload.sig", Timestamp(5_000)).await.unwrap();
    assert_eq!(s.prune_provider_logins(Timestamp(4_000)).await.unwrap(), 0);
    assert_eq!(
        s.take_provider_login(&KeyHash::of("login")).await.unwrap(),
        Some(("corp".into(), "header.payload.sig".into()))
    );
    assert_eq!(s.take_provider_login(&KeyHash::of("login")).await.unwrap(), None);
    assert_eq!(s.prune_provider_logins(Timestamp(700_000)).await.unwrap(), 1);
    assert_eq!(s.take_pending_login(&KeyHash::of("state-3")).await.unwrap(), None);
}
