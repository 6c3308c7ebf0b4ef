//! Attacks on the dashboard found in review, each against a real running control plane: a hostile
//! audit filter that reached the store, pages a browser could sniff into another type, and
//! set-password links that outlived the account they were issued for.

use gatehouse_services::users::{SignIn, UserError};
use gatehouse_store::testing::Backend;
use reqwest::StatusCode;

use crate::dashboard_audit::{csrf_of, sign_in_as, Signed, PASSWORD};
use crate::{story, TestApp};

story!(audit_filters_with_control_characters_are_a_400_not_a_store_error);
async fn audit_filters_with_control_characters_are_a_400_not_a_store_error(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    // PostgreSQL refuses a NUL byte in text: a filter that reached it was a 500 there.
    for q in ["actor=%00", "action=key%00.created", "target=%00", "actor=a%0Db", "target=%1B%5B2J"] {
        let (status, html) = owner.get(&format!("/dashboard/audit?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {html}");
        assert!(html.contains("must not contain control characters"), "{q}: the page says what is wrong");
    }
    let (status, _) = owner.get("/dashboard/audit?actor=caf%C3%A9&target=%E2%80%AE").await;
    assert_eq!(status, StatusCode::OK, "other unicode is only a filter that matches nothing");
}

story!(no_page_can_be_sniffed_into_another_content_type);
async fn no_page_can_be_sniffed_into_another_content_type(b: Backend) {
    let app = TestApp::new(b).await;
    let member = sign_in_as(&app, "member").await;
    // Pages that echo what a visitor typed (the sign-in form, a dashboard 403, an invalid link) and
    // pages that show secrets: every one says `nosniff`, like the static files do.
    for (path, status) in [
        ("/login", 200),
        ("/login?return_to=//evil.example", 400),
        ("/set-password?token=nonsense", 404),
        ("/dashboard/account", 200),
        ("/dashboard/keys", 403),
        ("/dashboard/static/dashboard.js", 200),
    ] {
        let r = member.client.get(format!("{}{path}", member.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(r.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{path}");
    }
}

/// The one-time link on a set-password page shown to `who`.
fn link_token(html: &str) -> String {
    let at = html.find("/set-password?token=").expect("a set-password link") + 20;
    html[at..at + 43].to_owned()
}

/// `who` asks for a set-password link for `user_id` from the Users page.
async fn link_for(who: &Signed, user_id: &str) -> String {
    let csrf = who.csrf().await;
    let (status, _, html) =
        who.post(&format!("/dashboard/users/{user_id}/reset"), &[("csrf", &csrf), ("delivery", "link")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    link_token(&html)
}

/// Presents a link in a fresh browser: (status of its page, status of setting `password` with it).
async fn redeem(app: &TestApp, token: &str, password: &str) -> (u16, u16) {
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(app.url(&format!("/set-password?token={token}"))).send().await.unwrap();
    let shown = page.status().as_u16();
    // The form token of any page of Gatehouse's own (an invalid link's page has no form).
    let login = client.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let fields = [
        ("csrf", csrf_of(&login)),
        ("token", token.into()),
        ("password", password.into()),
        ("confirm", password.into()),
    ];
    let set = client.post(app.url("/set-password")).form(&fields).send().await.unwrap().status().as_u16();
    (shown, set)
}

async fn password_is(app: &TestApp, email: &str, password: &str) -> bool {
    matches!(app.state.users.sign_in(email, password, None).await.unwrap(), SignIn::Ok(_))
}

story!(a_set_password_link_dies_with_a_reset_a_role_change_or_another_link);
async fn a_set_password_link_dies_with_a_reset_a_role_change_or_another_link(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let admin = sign_in_as(&app, "admin").await;
    let users = &app.state.users;
    let taken = "the attacker's password";

    // A link leaks; the owner resets the password to lock the account again: the leaked link must
    // not set it back.
    let dev = users.create("dev@example.com", PASSWORD, "developer", "test").await.unwrap();
    let leaked = link_for(&admin, &dev.id).await;
    let csrf = owner.csrf().await;
    let (status, _, html) = owner.post(&format!("/dashboard/users/{}/reset", dev.id), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(redeem(&app, &leaked, taken).await, (404, 404), "a reset spends the open link");
    assert!(!password_is(&app, "dev@example.com", taken).await);

    // An admin keeps the link it issued for a developer; an owner promotes the developer to owner.
    // The admin, who may not touch owners, must not reach the owner's account through it.
    let lead = users.create("lead@example.com", PASSWORD, "developer", "test").await.unwrap();
    let kept = link_for(&admin, &lead.id).await;
    let csrf = owner.csrf().await;
    let (status, loc, _) =
        owner.post(&format!("/dashboard/users/{}/role", lead.id), &[("csrf", &csrf), ("role", "owner")]).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, "/dashboard/users"));
    assert_eq!(redeem(&app, &kept, taken).await, (404, 404), "a role change spends the open link");
    assert!(password_is(&app, "lead@example.com", PASSWORD).await, "the new owner's password is theirs");

    // Disabling spends links too: enabling the account again does not bring an old link back.
    let ops = users.create("ops@example.com", PASSWORD, "viewer", "test").await.unwrap();
    let old = link_for(&admin, &ops.id).await;
    for action in ["disable", "enable"] {
        let csrf = admin.csrf().await;
        let (status, _, _) = admin.post(&format!("/dashboard/users/{}/{action}", ops.id), &[("csrf", &csrf)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{action}");
    }
    assert_eq!(redeem(&app, &old, taken).await, (404, 404), "disabling spends the open link");

    // Two links for one user: using one spends the other.
    let first = link_for(&admin, &ops.id).await;
    let second = link_for(&admin, &ops.id).await;
    assert_eq!(redeem(&app, &second, "the user's own password").await, (200, 303));
    assert_eq!(redeem(&app, &first, taken).await, (404, 404), "the other link is spent with it");
    assert!(password_is(&app, "ops@example.com", "the user's own password").await);

    // A link nobody spent still works once (the rule above is not "links never work").
    let fresh = link_for(&admin, &ops.id).await;
    assert_eq!(redeem(&app, &fresh, "a second own password").await, (200, 303));
}

story!(two_owners_demoting_each_other_at_once_leave_one_owner);
async fn two_owners_demoting_each_other_at_once_leave_one_owner(b: Backend) {
    let app = TestApp::new(b).await;
    let (a, z) = (sign_in_as(&app, "owner").await, sign_in_as(&app, "owner").await);
    let users = &app.state.users;
    let enabled_owners = || async {
        users.list().await.unwrap().into_iter().filter(|u| u.role == "owner" && u.disabled_at.is_none()).count()
    };
    // Each owner takes the other's role at the same moment, again and again: the check that one
    // owner stays ran before the write, so both could pass it and leave nobody to manage users.
    for round in 0..10 {
        let (ta, tz) = (a.csrf().await, z.csrf().await);
        let (pa, pz) = (format!("/dashboard/users/{}/role", z.user.id), format!("/dashboard/users/{}/role", a.user.id));
        let (fa, fz) = ([("csrf", ta.as_str()), ("role", "admin")], [("csrf", tz.as_str()), ("role", "admin")]);
        let (ra, rz) = tokio::join!(a.post(&pa, &fa), z.post(&pz, &fz));
        assert_eq!(enabled_owners().await, 1, "round {round}: {} and {}", ra.0, rz.0);
        let mut got = [ra.0.as_u16(), rz.0.as_u16()];
        got.sort();
        // One demotion wins; the other is the last-owner refusal (or 403 once the loser's session
        // already carries its new role).
        assert!(matches!(got, [303, 403] | [303, 409]), "round {round}: {got:?}");
        for who in [&a.user, &z.user] {
            users.set_role(&gatehouse_services::audit::Actor::Cli, &who.id, "owner").await.unwrap();
        }
        app.feed_polled().await;
    }
    // The same through the services, and for disabling: never zero owners.
    for round in 0..10 {
        let (xa, xz) = (
            gatehouse_services::audit::Actor::User(std::sync::Arc::new(users.find(&a.user.id).await.unwrap().unwrap())),
            gatehouse_services::audit::Actor::User(std::sync::Arc::new(users.find(&z.user.id).await.unwrap().unwrap())),
        );
        let (da, dz) = tokio::join!(users.disable_as(&xa, &z.user.id), users.disable_as(&xz, &a.user.id));
        assert_eq!(enabled_owners().await, 1, "round {round}: {da:?} {dz:?}");
        let refused = [&da, &dz].into_iter().filter(|r| matches!(r, Err(UserError::LastOwner(_)))).count();
        assert_eq!(refused, 1, "round {round}: one of them is refused as the last owner");
        for who in [&a.user, &z.user] {
            users.enable(&who.id, "test").await.unwrap();
        }
    }
}

story!(a_session_cannot_reset_its_own_password_without_the_current_one);
async fn a_session_cannot_reset_its_own_password_without_the_current_one(b: Backend) {
    let app = TestApp::new(b).await;
    // Someone holding an owner's or an admin's session (an unlocked laptop, a stolen cookie) must not
    // get the account's password from the Users page: the Account page asks for the current one.
    for role in ["owner", "admin"] {
        let me = sign_in_as(&app, role).await;
        let (_, list) = me.get("/dashboard/users").await;
        assert!(!list.contains(&format!("/dashboard/users/{}/reset", me.user.id)), "{role}: no reset form for oneself");
        for (target, delivery) in [(me.user.id.clone(), "password"), (me.user.email.to_uppercase(), "link")] {
            let csrf = me.csrf().await;
            let (status, _, html) =
                me.post(&format!("/dashboard/users/{target}/reset"), &[("csrf", &csrf), ("delivery", delivery)]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} {delivery}: {html}");
            assert!(html.contains("Account page") && !html.contains("user-secret"), "{role} {delivery}");
            assert!(!html.contains("/set-password?token="), "{role} {delivery}: no link");
        }
        assert!(password_is(&app, &me.user.email, PASSWORD).await, "{role}: the password is unchanged");
        let (status, _) = me.get("/dashboard/account").await;
        assert_eq!(status, StatusCode::OK, "{role}: the session lives on");
    }
}
