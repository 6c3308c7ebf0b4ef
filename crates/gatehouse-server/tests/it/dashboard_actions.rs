//! Dashboard actions over real HTTP, on both backends:
//! - an OAuth app's edit (name, redirect URIs, scopes) and its authorized users with Revoke, for every
//!   role (owner, admin, developer may; viewer and member get 403 and change nothing);
//! - the audit entries dashboard actions write carry the request's id and the client's address;
//! - a webhook Resend re-queues that endpoint's delivery only, and the deliveries list is paginated;
//! - hostile ids (NUL, junk, overlong) in key, OAuth client and webhook endpoint URLs are 404s, never 500s.

use gatehouse_core::{Environment, Timestamp};
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_store::oauth::ClientRecord;
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditFilter, AuditStore, OAuthStore, PageRequest, WebhookStore};
use reqwest::StatusCode;

use crate::dashboard_audit::{csrf_of, sign_in_as, Signed};
use crate::{story, TestApp};

async fn client_by_id(app: &TestApp, id: &str) -> ClientRecord {
    app.store.client_by_id(id).await.unwrap().unwrap()
}

/// Registers an OAuth app as `who` with the API guide's scopes; answers its id.
async fn register(who: &Signed, name: &str) -> String {
    let token = who.csrf().await;
    let form = [
        ("csrf", token.as_str()),
        ("name", name),
        ("client_type", "confidential"),
        ("redirect_uris", "https://example.com/callback"),
        ("scopes", "read_customers write_orders"),
        ("token_format", "opaque"),
        ("environment", "live"),
    ];
    let (status, _, html) = who.post("/dashboard/oauth-apps", &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let at = html.find("<dt>Client ID</dt><dd><code>").expect("the client's id") + 28;
    html[at..].split('<').next().unwrap().to_owned()
}

story!(oauth_app_edit_and_authorized_users_for_every_role);
async fn oauth_app_edit_and_authorized_users_for_every_role(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let id = register(&owner, "Customer portal").await;
    let page = format!("/dashboard/oauth-apps/{id}");
    let edit_path = format!("{page}/edit");
    let revoke_path = format!("{page}/authorizations/revoke");

    // Two users authorized the app: their consents are listed with their emails.
    let alice = sign_in_as(&app, "member").await;
    let bob = sign_in_as(&app, "member").await;
    for u in [&alice, &bob] {
        let scopes = ["read_customers".to_owned()];
        app.store.save_consent(&u.user.id, &id, &scopes, Timestamp::now()).await.unwrap();
    }
    let (status, html) = owner.get(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&alice.user.email) && html.contains(&bob.user.email), "{html}");
    assert!(html.contains("aria-label=\"Revoke "), "the owner gets a Revoke per user");

    // (role, may change): SPEC §12 roles.
    let roles = [("owner", true), ("admin", true), ("developer", true), ("viewer", false), ("member", false)];
    for (i, (role, may)) in roles.into_iter().enumerate() {
        let who = sign_in_as(&app, role).await;
        let token = who.csrf().await;
        let before = client_by_id(&app, &id).await;
        let name = format!("Portal {role}");
        let scopes = if i % 2 == 0 { "read_customers" } else { "read_customers write_orders orders:read" };
        let uris = format!("https://example.com/callback\nhttps://{role}.example.com/cb");
        let form = [("csrf", token.as_str()), ("name", &name), ("redirect_uris", &uris), ("scopes", scopes)];
        let (status, _, html) = who.post(&edit_path, &form).await;
        if may {
            assert_eq!(status, StatusCode::OK, "{role} edits: {html}");
            assert!(html.contains("Changes saved."), "{role}: {html}");
            let after = client_by_id(&app, &id).await;
            assert_eq!(after.name, name);
            assert_eq!(
                after.redirect_uris,
                ["https://example.com/callback".to_owned(), format!("https://{role}.example.com/cb")]
            );
            let mut got = after.scopes.clone();
            got.sort();
            let mut want: Vec<&str> = scopes.split(' ').collect();
            want.sort_unstable();
            assert_eq!(got, want, "{role}: the new scopes");
            assert_eq!(after.secret_hash, before.secret_hash, "an edit never touches the secret");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} may not edit");
            assert_eq!(client_by_id(&app, &id).await, before, "{role}'s edit changed nothing");
        }
        // Revoke one user's authorization (a fresh consent each time the role may).
        let victim = sign_in_as(&app, "member").await;
        app.store.save_consent(&victim.user.id, &id, &["read_customers".to_owned()], Timestamp::now()).await.unwrap();
        let (status, loc, _) =
            who.post(&revoke_path, &[("csrf", token.as_str()), ("user_id", victim.user.id.as_str())]).await;
        let left = app.store.consent(&victim.user.id, &id).await.unwrap();
        if may {
            assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, page.as_str()), "{role} revokes");
            assert_eq!(left, None, "{role}: the consent is gone");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} may not revoke");
            assert!(left.is_some(), "{role}'s revoke changed nothing");
        }
        // A viewer and a member still see what they may: the viewer reads the page without controls.
        let (status, html) = who.get(&page).await;
        match role {
            "member" => assert_eq!(status, StatusCode::FORBIDDEN),
            "viewer" => {
                assert_eq!(status, StatusCode::OK);
                assert!(
                    !html.contains("Save changes") && !html.contains("aria-label=\"Revoke "),
                    "viewer: no controls"
                );
            }
            _ => assert!(html.contains("Save changes")),
        }
    }

    // Refused edits: 400 with the reason in the form, nothing stored, no pasted credential echoed.
    let token = owner.csrf().await;
    let before = client_by_id(&app, &id).await;
    let cases: [(&str, &str, &str, &str); 5] = [
        ("", "https://example.com/cb", "read_customers", "an empty name"),
        ("ok", "javascript:alert(1)", "read_customers", "a script redirect URI"),
        ("ok", "http://evil.example/cb", "read_customers", "plain http off loopback"),
        ("ok", "https://example.com/cb", "*", "the all-scope"),
        ("ok", "https://example.com/cb", &app.admin, "a pasted credential"),
    ];
    for (name, uris, scopes, why) in cases {
        let form = [("csrf", token.as_str()), ("name", name), ("redirect_uris", uris), ("scopes", scopes)];
        let (status, _, html) = owner.post(&edit_path, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {html}");
        assert!(html.contains("role=\"alert\""), "{why}: the form says what is wrong");
        assert!(!html.contains(&app.admin), "{why}: a pasted credential is not echoed");
    }
    assert_eq!(client_by_id(&app, &id).await, before, "no refused edit was stored");
    // Revoking someone who never authorized it, or a junk id, is a 404.
    for junk in [owner.user.id.as_str(), "usr_\0", "'; DROP TABLE users; --"] {
        let (status, _, _) = owner.post(&revoke_path, &[("csrf", token.as_str()), ("user_id", junk)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{junk:?}");
    }
    // The edit and the revocations are audited with their actor.
    let filter = AuditFilter { target: Some(id.clone()), ..AuditFilter::default() };
    let entries =
        app.store.search_audit("default", &filter, &PageRequest { limit: 100, starting_after: None }).await.unwrap();
    let updated = entries.items.iter().filter(|e| e.action == "oauth.client.updated").count();
    let revoked = entries.items.iter().filter(|e| e.action == "oauth.grant.revoked").count();
    assert_eq!((updated, revoked), (3, 3), "one entry per allowed edit and revoke");
    let first = entries.items.iter().find(|e| e.action == "oauth.client.updated").unwrap();
    assert!(first.details["before"]["name"].is_string() && first.details["after"]["scopes"].is_array());
}

story!(dashboard_audit_entries_carry_the_request_id_and_client_ip);
async fn dashboard_audit_entries_carry_the_request_id_and_client_ip(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let token = owner.csrf().await;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let c = owner.client.clone();
        let url = format!("{}{path}", owner.base);
        async move {
            let r = c.post(url).form(&form).send().await.unwrap();
            let status = r.status();
            let rid = r.headers()["request-id"].to_str().unwrap().to_owned();
            (status, rid, r.text().await.unwrap())
        }
    };
    let form = vec![
        ("csrf", token.clone()),
        ("name", "Audited".to_owned()),
        ("redirect_uris", "https://example.com/cb".to_owned()),
        ("scopes", "read_customers".to_owned()),
    ];
    let (status, register_rid, html) = post("/dashboard/oauth-apps".into(), form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let at = html.find("<dt>Client ID</dt><dd><code>").unwrap() + 28;
    let id = html[at..].split('<').next().unwrap().to_owned();
    let (status, rotate_rid, _) = post(
        format!("/dashboard/oauth-apps/{id}/rotate"),
        vec![("csrf", token.clone()), ("grace_period_secs", "0".into())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let wh = vec![
        ("csrf", token.clone()),
        ("environment", "live".to_owned()),
        ("url", "https://93.184.215.14/hooks".to_owned()),
        ("event_types", "key.created".to_owned()),
    ];
    let (status, webhook_rid, html) = post("/dashboard/webhooks".into(), wh).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_ne!(register_rid, rotate_rid);
    let page = PageRequest { limit: 100, starting_after: None };
    let all = app.store.list_audit("default", None, &page).await.unwrap().items;
    for (action, rid) in [
        ("oauth.client.created", &register_rid),
        ("oauth.client.secret_rotated", &rotate_rid),
        ("webhook_endpoint.created", &webhook_rid),
    ] {
        let e = all.iter().find(|e| e.action == action).unwrap_or_else(|| panic!("{action} audited: {all:?}"));
        assert_eq!(e.request_id.as_deref(), Some(rid.as_str()), "{action}: the response's Request-Id");
        assert_eq!(e.ip.as_deref(), Some("127.0.0.1"), "{action}: the client's address");
        assert_eq!(e.actor, owner.user.id, "{action}: the signed-in user");
    }
    // A spoofed X-Forwarded-For from an untrusted peer is not the client's address.
    let r = owner
        .client
        .post(format!("{}/dashboard/oauth-apps/{id}/rotate", owner.base))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("csrf", token.as_str()), ("grace_period_secs", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let all = app.store.list_audit("default", None, &page).await.unwrap().items;
    let newest = all.iter().find(|e| e.action == "oauth.client.secret_rotated").unwrap();
    assert_eq!(newest.ip.as_deref(), Some("127.0.0.1"), "X-Forwarded-For from an untrusted peer is ignored");
}

story!(webhook_resend_requeues_one_endpoint_and_deliveries_are_paginated);
async fn webhook_resend_requeues_one_endpoint_and_deliveries_are_paginated(b: Backend) {
    // No delivery worker: the queue is read straight from storage, so nothing moves but what we do.
    let mut cfg = crate::test_config();
    cfg.webhook_worker = false;
    let app = TestApp::with_config(b, cfg).await;
    let owner = sign_in_as(&app, "owner").await;
    let token = owner.csrf().await;
    let mut ids = vec![];
    for url in ["https://93.184.215.14/hook-a", "https://93.184.215.15/hook-b"] {
        let form = [("csrf", token.as_str()), ("environment", "live"), ("url", url), ("event_types", "key.created")];
        let (status, _, html) = owner.post("/dashboard/webhooks", &form).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let at = html.find("<dt>Endpoint ID</dt><dd><code>").unwrap() + 30;
        ids.push(html[at..].split('<').next().unwrap().to_owned());
    }
    let (a, b_id) = (&ids[0], &ids[1]);
    // One key.created event, delivered (as far as the queue knows) to both; mark both attempted.
    app.cli_key(crate::sk(Environment::Live)).await;
    let events = app
        .store
        .list_events("default", Environment::Live, &PageRequest { limit: 10, starting_after: None })
        .await
        .unwrap()
        .items;
    let event = events.iter().find(|e| e.event_type == "key.created").expect("a key.created event");
    let both = app.store.deliveries_of(&event.id).await.unwrap();
    assert_eq!(both.len(), 2, "one delivery per endpoint: {both:?}");
    // Claim both (as a worker would), so a re-queue is visible as a change of lease and status.
    let claimed = app.store.claim_deliveries(Timestamp::now(), 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let b_before = app.store.deliveries_of(&event.id).await.unwrap().into_iter().find(|d| &d.endpoint_id == b_id);

    let (status, loc, _) = owner
        .post(&format!("/dashboard/webhooks/{a}/resend"), &[("csrf", token.as_str()), ("event_id", event.id.as_str())])
        .await;
    assert_eq!((status, loc), (StatusCode::SEE_OTHER, format!("/dashboard/webhooks/{a}")));
    let after = app.store.deliveries_of(&event.id).await.unwrap();
    let b_after = after.iter().find(|d| &d.endpoint_id == b_id).cloned();
    assert_eq!(b_after, b_before, "the other endpoint's delivery is untouched");
    // A's delivery is due again: a worker claims it at once, and only it.
    let again = app.store.claim_deliveries(Timestamp::now(), 60_000, 10).await.unwrap();
    assert_eq!(again.len(), 1, "only the resent delivery is claimable");
    assert_eq!(&again[0].endpoint.id, a);
    // Resending B's event through A's page for an event A never got, or a junk id: 404, nothing queued.
    let long = "evt_".repeat(500);
    for junk in ["evt_nonsense", "evt_\0", long.as_str()] {
        let (status, _, _) = owner
            .post(&format!("/dashboard/webhooks/{b_id}/resend"), &[("csrf", token.as_str()), ("event_id", junk)])
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{junk:?}");
    }

    // Pagination: 30 test events to B; the page shows 25 and an Older link to the other 5.
    let meta = RequestMeta::default();
    for _ in 0..30 {
        app.state.webhooks.send_test(&Actor::Cli, &meta, None, b_id).await.unwrap();
    }
    let (status, first) = owner.get(&format!("/dashboard/webhooks/{b_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let shown = |html: &str| {
        html.match_indices("name=\"event_id\" value=\"")
            .map(|(i, _)| html[i + 23..].split('"').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let page1 = shown(&first);
    assert_eq!(page1.len(), 25, "one page of deliveries");
    let older = crate::dashboard_audit::link(&first, "Older deliveries").expect("a link to older deliveries");
    let (status, second) = owner.get(&older).await;
    assert_eq!(status, StatusCode::OK);
    let page2 = shown(&second);
    assert_eq!(page2.len(), 6, "the rest: 5 test events and the key.created one");
    assert!(page2.iter().all(|e| !page1.contains(e)), "no delivery on both pages");
    assert!(crate::dashboard_audit::link(&second, "Older deliveries").is_none(), "the last page");
    let mut all: Vec<String> = page1.iter().chain(&page2).cloned().collect();
    let sorted = {
        let mut s = all.clone();
        s.sort();
        s.reverse();
        s
    };
    assert_eq!(all, sorted, "newest first across pages");
    all.dedup();
    assert_eq!(all.len(), 31);
    // A junk cursor is ignored (the first page), never a store error.
    for junk in ["%00", "evt_%00", "'--"] {
        let (status, html) = owner.get(&format!("/dashboard/webhooks/{b_id}?before={junk}")).await;
        assert_eq!(status, StatusCode::OK, "before={junk}");
        assert_eq!(shown(&html), page1);
    }
}

story!(hostile_ids_in_dashboard_urls_are_404s);
async fn hostile_ids_in_dashboard_urls_are_404s(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let token = owner.csrf().await;
    let long = "a".repeat(1000);
    let ids = [
        "%00",
        "key_%00",
        "client_%00abc",
        "we_%00",
        "key_01jd%00000000000000000000",
        "%0A%0D",
        "%E2%80%AE",
        "..%2F..%2Fetc",
        "'%20OR%201=1--",
        long.as_str(),
    ];
    // (GET page, POST actions with valid fields) per kind of id.
    type Actions<'a> = &'a [(&'a str, &'a [(&'a str, &'a str)])];
    let kinds: [(&str, Actions); 3] = [
        ("/dashboard/keys", &[("/roll", &[("old_key_expires", "now")]), ("/revoke", &[])]),
        (
            "/dashboard/oauth-apps",
            &[
                ("/rotate", &[("grace_period_secs", "0")]),
                ("/disable", &[]),
                ("/edit", &[("name", "x"), ("redirect_uris", "https://example.com/cb"), ("scopes", "read_customers")]),
                ("/authorizations/revoke", &[("user_id", "usr_01jd0000000000000000000000")]),
            ],
        ),
        (
            "/dashboard/webhooks",
            &[
                ("/roll", &[("overlap_secs", "0")]),
                ("/disable", &[]),
                ("/enable", &[]),
                ("/test", &[]),
                ("/resend", &[("event_id", "evt_01jd0000000000000000000000")]),
            ],
        ),
    ];
    for (base, actions) in kinds {
        for id in ids {
            let (status, html) = owner.get(&format!("{base}/{id}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "GET {base}/{id}: {html}");
            for (suffix, fields) in actions {
                let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
                form.extend_from_slice(fields);
                let (status, _, html) = owner.post(&format!("{base}/{id}{suffix}"), &form).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "POST {base}/{id}{suffix}: {html}");
            }
        }
    }
    // The session still works: nothing above broke the connection pool or the store.
    let (status, html) = owner.get("/dashboard/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csrf_of(&html), token);
}
