//! OAuth storage stories: batched grants, and refresh rotation inside one batch (the same token twice,
//! a retry and a reuse), on both backends.

use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_store::oauth::{GrantRecord, NewGrant, RefreshOutcome, RefreshRequest, TokenKind, TokenRecord};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditStore, OAuthStore, PageRequest};

use crate::{audit, fresh, story};

fn grant(id: &str, at: i64) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        workspace: "default".into(),
        client_id: "client_a".into(),
        user_id: Some("usr_1".into()),
        grant_type: "authorization_code".into(),
        scopes: vec!["orders:read".into()],
        created_at: Timestamp(at),
        revoked_at: None,
    }
}

fn token(name: &str, kind: TokenKind, grant: &str, parent: Option<&str>, at: i64) -> TokenRecord {
    TokenRecord {
        hash: KeyHash::of(name),
        kind,
        grant_id: grant.into(),
        client_id: "client_a".into(),
        user_id: Some("usr_1".into()),
        scopes: vec!["orders:read".into()],
        created_at: Timestamp(at),
        expires_at: Timestamp(at + 3_600_000),
        parent_hash: parent.map(KeyHash::of),
        used_at: None,
        retried_at: None,
        revoked_at: None,
    }
}

fn present(name: &str, pair: (&str, &str), now: i64, window: i64) -> RefreshRequest {
    RefreshRequest {
        hash: KeyHash::of(name),
        client_id: "client_a".into(),
        now: Timestamp(now),
        race_window_ms: window,
        new_pair: vec![
            token(pair.0, TokenKind::Access, "grant_1", Some(name), now),
            token(pair.1, TokenKind::Refresh, "grant_1", Some(name), now),
        ],
        reuse_audit: audit("oauth.refresh_token.reused", "grant_1", now),
    }
}

story!(grants_are_stored_in_batches_with_their_audit_entries);
async fn grants_are_stored_in_batches_with_their_audit_entries(b: Backend) {
    let (_db, s) = fresh(b).await;
    let items: Vec<NewGrant> = (0..300)
        .map(|i| NewGrant {
            grant: grant(&format!("grant_{i}"), 1_000),
            tokens: vec![token(&format!("at_{i}"), TokenKind::Access, &format!("grant_{i}"), None, 1_000)],
            audit: audit("oauth.grant.created", &format!("grant_{i}"), 1_000 + i),
        })
        .collect();
    s.insert_grants(&items).await.unwrap();
    for i in [0, 150, 299] {
        let t = s.token_by_hash(&KeyHash::of(&format!("at_{i}"))).await.unwrap().unwrap();
        assert_eq!(t.grant_id, format!("grant_{i}"));
        assert_eq!(s.grant_by_id(&format!("grant_{i}")).await.unwrap().unwrap().scopes, vec!["orders:read".to_owned()]);
    }
    let mut seen = 0;
    let mut page = PageRequest { limit: 100, starting_after: None };
    loop {
        let p = s.list_audit("default", None, &page).await.unwrap();
        seen += p.items.len();
        if !p.has_more {
            break;
        }
        page.starting_after = p.items.last().map(|a| a.id.clone());
    }
    assert_eq!(seen, 300, "one audit entry per grant");
}

story!(one_batch_rotates_a_token_once_and_detects_reuse);
async fn one_batch_rotates_a_token_once_and_detects_reuse(b: Backend) {
    let (_db, s) = fresh(b).await;
    let item = NewGrant {
        grant: grant("grant_1", 1_000),
        tokens: vec![token("r1", TokenKind::Refresh, "grant_1", None, 1_000)],
        audit: audit("oauth.grant.created", "grant_1", 1_000),
    };
    s.insert_grants(&[item]).await.unwrap();
    // The same token twice in one batch: one rotation, one concurrent refusal; a token nobody issued is invalid.
    let out = s
        .refresh_many(&[
            present("r1", ("a2", "r2"), 2_000, 1_000),
            present("r1", ("a2x", "r2x"), 2_000, 1_000),
            present("nope", ("a", "r"), 2_000, 1_000),
        ])
        .await
        .unwrap();
    assert_eq!(out, vec![RefreshOutcome::Rotated, RefreshOutcome::Concurrent, RefreshOutcome::Invalid]);
    assert!(s.token_by_hash(&KeyHash::of("r2")).await.unwrap().is_some());
    assert!(s.token_by_hash(&KeyHash::of("r2x")).await.unwrap().is_none(), "the refused one stored nothing");
    // After the window, with r2 unused: the lost-response retry, once; the replaced pair is revoked.
    let out = s.refresh_many(&[present("r1", ("a3", "r3"), 5_000, 1_000)]).await.unwrap();
    assert_eq!(out, vec![RefreshOutcome::Retried]);
    assert!(s.token_by_hash(&KeyHash::of("r2")).await.unwrap().unwrap().revoked_at.is_some());
    // r3 used, then r1 again: reuse, the whole grant is revoked.
    let out = s
        .refresh_many(&[present("r3", ("a4", "r4"), 6_000, 1_000), present("r1", ("a5", "r5"), 9_000, 1_000)])
        .await
        .unwrap();
    assert_eq!(out, vec![RefreshOutcome::Rotated, RefreshOutcome::Reused { grant_id: "grant_1".into() }]);
    assert!(
        s.token_by_hash(&KeyHash::of("r4")).await.unwrap().is_none(),
        "a pair rotated in the same batch as the reuse is never stored"
    );
    assert!(s.token_by_hash(&KeyHash::of("a3")).await.unwrap().unwrap().revoked_at.is_some());
    assert!(s.grant_by_id("grant_1").await.unwrap().unwrap().revoked_at.is_some());
}

story!(expired_codes_and_tokens_are_cleaned_up);
async fn expired_codes_and_tokens_are_cleaned_up(b: Backend) {
    use gatehouse_store::oauth::CodeRecord;
    let (_db, s) = fresh(b).await;
    let mut old = token("old", TokenKind::Access, "grant_1", None, 1_000);
    old.expires_at = Timestamp(2_000);
    let live = token("live", TokenKind::Refresh, "grant_1", None, 1_000);
    s.insert_grants(&[NewGrant {
        grant: grant("grant_1", 1_000),
        tokens: vec![old, live],
        audit: audit("oauth.grant.created", "grant_1", 1_000),
    }])
    .await
    .unwrap();
    let code = |name: &str, exp: i64| CodeRecord {
        code_hash: KeyHash::of(name),
        client_id: "client_a".into(),
        user_id: "usr_1".into(),
        redirect_uri: "https://a.example/cb".into(),
        redirect_given: true,
        scopes: vec!["orders:read".into()],
        code_challenge: "x".repeat(43),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(exp),
        used_at: None,
        grant_id: None,
    };
    s.insert_code(&code("c_old", 2_000)).await.unwrap();
    s.insert_code(&code("c_live", 9_000_000)).await.unwrap();
    assert_eq!(s.delete_expired_oauth(Timestamp(3_000)).await.unwrap(), 2);
    assert!(s.token_by_hash(&KeyHash::of("old")).await.unwrap().is_none());
    assert!(s.token_by_hash(&KeyHash::of("live")).await.unwrap().is_some());
    assert!(s.code_by_hash(&KeyHash::of("c_old")).await.unwrap().is_none());
    assert_eq!(s.code_by_hash(&KeyHash::of("c_live")).await.unwrap().unwrap().redirect_uri, "https://a.example/cb");
}
