//! `/dashboard/users` and `/dashboard/account` over real HTTP, signed in as each role: who sees what,
//! and for every POST a role × action table (allowed, or 403 with nothing changed). Hostile input too.

use gatehouse_store::testing::Backend;
use gatehouse_store::UserRecord;
use reqwest::StatusCode;

use crate::{story, TestApp};

const PW: &str = "a long enough password";

/// A signed-in browser on the control plane: its cookies and the form token of its session.
struct Signed {
    cookie: String,
    csrf: String,
}

fn cookie_of(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

async fn sign_in(app: &TestApp, email: &str) -> Signed {
    let r = app.client.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = cookie_of(r.headers(), "gatehouse_csrf");
    let token = csrf_of(&r.text().await.unwrap());
    let r = app
        .client
        .post(app.url("/login"))
        .header("cookie", format!("gatehouse_csrf={csrf_cookie}"))
        .form(&[("email", email), ("password", PW), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{email} signs in");
    let login = cookie_of(r.headers(), "gatehouse_cp_session");
    let cookie = format!("gatehouse_csrf={csrf_cookie}; gatehouse_cp_session={login}");
    let r = app.client.get(app.url("/dashboard/account")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf = csrf_of(&r.text().await.unwrap());
    Signed { cookie, csrf }
}

impl Signed {
    async fn get(&self, app: &TestApp, path: &str) -> (StatusCode, String) {
        let r = app.client.get(app.url(path)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        let r = app.client.post(app.url(path)).header("cookie", &self.cookie).form(&form).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }
}

async fn people(app: &TestApp) -> Vec<UserRecord> {
    let mut out = vec![];
    for role in ["owner", "admin", "developer", "viewer", "member"] {
        out.push(app.state.users.create(&format!("{role}@example.com"), PW, role, "test").await.unwrap());
    }
    out
}

story!(who_sees_the_users_page);
async fn who_sees_the_users_page(b: Backend) {
    let app = TestApp::new(b).await;
    people(&app).await;
    // (role, list status, sees the create form)
    for (role, status, controls) in [
        ("owner", 200, true),
        ("admin", 200, true),
        ("developer", 403, false),
        ("viewer", 200, false),
        ("member", 403, false),
    ] {
        let s = sign_in(&app, &format!("{role}@example.com")).await;
        let (got, page) = s.get(&app, "/dashboard/users").await;
        assert_eq!(got.as_u16(), status, "{role}: {page}");
        assert_eq!(page.contains("Create user"), controls, "{role}");
        assert_eq!(page.contains("Change role"), controls, "{role}");
        if status == 200 {
            assert!(page.contains("member@example.com") && !page.contains("argon2"), "{role}");
        }
        // Every role has its Account page.
        let (got, page) = s.get(&app, "/dashboard/account").await;
        assert_eq!(got, 200, "{role}");
        assert!(page.contains(&format!("{role}@example.com")));
    }
    // An admin sees the owner but gets no controls for them, and cannot offer the owner role.
    let s = sign_in(&app, "admin@example.com").await;
    let (_, page) = s.get(&app, "/dashboard/users").await;
    assert!(page.contains("Only an owner can change this user."));
    assert!(!page.contains("<option value=\"owner\""), "an admin cannot make an owner");
}

/// (path, form fields, status when allowed)
type Action<'a> = (String, Vec<(&'a str, &'a str)>, u16);

story!(every_users_post_by_role);
async fn every_users_post_by_role(b: Backend) {
    let app = TestApp::new(b).await;
    people(&app).await;
    let users = &app.state.users;
    for role in ["owner", "admin", "developer", "viewer", "member"] {
        let allowed = matches!(role, "owner" | "admin");
        let s = sign_in(&app, &format!("{role}@example.com")).await;
        let target = users.create(&format!("target-{role}@example.com"), PW, "member", "test").await.unwrap();
        let t = &target.id;
        let email = format!("made-by-{role}@example.com");
        let actions: Vec<Action> = vec![
            ("/dashboard/users".into(), vec![("email", &email), ("role", "viewer"), ("delivery", "password")], 200),
            (format!("/dashboard/users/{t}/role"), vec![("role", "viewer")], 303),
            (format!("/dashboard/users/{t}/reset"), vec![("delivery", "password")], 200),
            (format!("/dashboard/users/{t}/disable"), vec![], 303),
            (format!("/dashboard/users/{t}/enable"), vec![], 303),
        ];
        for (path, fields, ok) in actions {
            let (got, page) = s.post(&app, &path, &fields).await;
            let want = if allowed { ok } else { 403 };
            assert_eq!(got.as_u16(), want, "{role} POST {path}: {page}");
            if want == 200 {
                assert!(page.contains("readonly") && page.contains("data-copy=\"user-secret\""), "shown once");
            }
        }
        let after = users.find(t).await.unwrap().unwrap();
        let made = users.find(&email).await.unwrap();
        if allowed {
            assert_eq!(after.role, "viewer", "{role}");
            assert_ne!(after.password_hash, target.password_hash, "{role}");
            assert!(after.disabled_at.is_none());
            assert_eq!(made.map(|u| u.role), Some("viewer".into()));
        } else {
            assert_eq!(after, target, "{role}: nothing changed");
            assert!(made.is_none(), "{role}: nobody created");
        }
    }
}

story!(an_admin_cannot_touch_an_owner_from_the_dashboard);
async fn an_admin_cannot_touch_an_owner_from_the_dashboard(b: Backend) {
    let app = TestApp::new(b).await;
    let all = people(&app).await;
    let owner = &all[0];
    let s = sign_in(&app, "admin@example.com").await;
    let o = &owner.id;
    for (path, fields) in [
        (format!("/dashboard/users/{o}/role"), vec![("role", "member")]),
        (format!("/dashboard/users/{o}/reset"), vec![("delivery", "password")]),
        (format!("/dashboard/users/{o}/reset"), vec![("delivery", "link")]),
        (format!("/dashboard/users/{o}/disable"), vec![]),
        (format!("/dashboard/users/{}/role", all[2].id), vec![("role", "owner")]),
        ("/dashboard/users".into(), vec![("email", "new-owner@example.com"), ("role", "owner")]),
    ] {
        let (got, page) = s.post(&app, &path, &fields).await;
        assert_eq!(got, 403, "POST {path} {fields:?}: {page}");
    }
    assert_eq!(&app.state.users.find(o).await.unwrap().unwrap(), owner, "the owner is untouched");
    assert_eq!(app.state.users.find(&all[2].id).await.unwrap().unwrap().role, "developer");
    assert!(app.state.users.find("new-owner@example.com").await.unwrap().is_none());
}

story!(hostile_users_posts_change_nothing);
async fn hostile_users_posts_change_nothing(b: Backend) {
    let app = TestApp::new(b).await;
    let all = people(&app).await;
    let member = &all[4];
    let owner = sign_in(&app, "owner@example.com").await;
    let other = sign_in(&app, "admin@example.com").await;
    let path = format!("/dashboard/users/{}/disable", member.id);
    // No token, a wrong token, a token of another session.
    for csrf in ["", "0".repeat(64).as_str(), other.csrf.as_str()] {
        let r = app
            .client
            .post(app.url(&path))
            .header("cookie", &owner.cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "csrf {csrf:?}");
    }
    // Bad ids, a bad role, a huge email, a huge form.
    let (s, _) = owner.post(&app, "/dashboard/users/usr_nobody/disable", &[]).await;
    assert_eq!(s, 404);
    let (s, _) = owner.post(&app, "/dashboard/users/%00%2F..%2F/role", &[("role", "viewer")]).await;
    assert_eq!(s, 404);
    let (s, page) = owner.post(&app, &format!("/dashboard/users/{}/role", member.id), &[("role", "root")]).await;
    assert_eq!(s, 400, "{page}");
    let huge = format!("{}@example.com", "a".repeat(100_000));
    let (s, page) = owner.post(&app, "/dashboard/users", &[("email", &huge), ("role", "member")]).await;
    assert_eq!(s, 400);
    assert!(!page.contains(&"a".repeat(1000)), "the page does not echo the whole field");
    let (s, _) = owner.post(&app, "/dashboard/users", &[("email", &"b".repeat(300_000))]).await;
    assert_eq!(s, 413);
    assert_eq!(&app.state.users.find(&member.id).await.unwrap().unwrap(), member);
    assert_eq!(app.state.users.list().await.unwrap().len(), 5);
}

story!(account_password_change_checks_the_current_one);
async fn account_password_change_checks_the_current_one(b: Backend) {
    let app = TestApp::new(b).await;
    let all = people(&app).await;
    let member = &all[4];
    let s = sign_in(&app, "member@example.com").await;
    for (current, new, confirm, want) in [
        ("wrong password!", "the next password", "the next password", 400),
        (PW, "the next password", "another password", 400),
        (PW, "short", "short", 400),
    ] {
        let (got, page) = s
            .post(&app, "/dashboard/account/password", &[("current", current), ("new", new), ("confirm", confirm)])
            .await;
        assert_eq!(got.as_u16(), want, "{page}");
        assert_eq!(&app.state.users.find(&member.id).await.unwrap().unwrap(), member, "unchanged");
    }
    // Another browser signed in with the old password.
    let other = sign_in(&app, "member@example.com").await;
    assert_eq!(other.get(&app, "/dashboard/account").await.0, 200);
    let fields = [("current", PW), ("new", "the next password"), ("confirm", "the next password")];
    let (got, _) = s.post(&app, "/dashboard/account/password", &fields).await;
    assert_eq!(got, 303);
    assert!(matches!(
        app.state.users.sign_in("member@example.com", "the next password", None).await.unwrap(),
        gatehouse_services::users::SignIn::Ok(_)
    ));
    // Every other session ended with the old password (in storage at once, on every node within a
    // poll of the change feed); the one it was changed from stays signed in.
    app.feed_polled().await;
    let (got, _) = other.get(&app, "/dashboard/account").await;
    assert_eq!(got, 302, "the other browser is signed out");
    let (got, page) = s.get(&app, "/dashboard/account?password=changed").await;
    assert_eq!(got, 200, "the current browser stays signed in: {page}");
    assert!(page.contains("Password changed. Your other sessions have been signed out."), "{page}");
    assert_eq!(app.state.sessions.logins_of(&member.id).await.unwrap().len(), 1, "one live session: this one");
}

story!(a_set_password_link_page_works_once);
async fn a_set_password_link_page_works_once(b: Backend) {
    let app = TestApp::new(b).await;
    let all = people(&app).await;
    let owner = sign_in(&app, "owner@example.com").await;
    let (s, page) = owner
        .post(&app, "/dashboard/users", &[("email", "linked@example.com"), ("role", "viewer"), ("delivery", "link")])
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Set-password link"));
    let at = page.find("/set-password?token=").unwrap() + 20;
    let token = page[at..at + 43].to_owned();
    let r = app.client.get(app.url(&format!("/set-password?token={token}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = cookie_of(r.headers(), "gatehouse_csrf");
    let csrf = csrf_of(&r.text().await.unwrap());
    let post = |pw: &'static str, confirm: &'static str| {
        let cookie = format!("gatehouse_csrf={csrf_cookie}");
        let fields =
            [("csrf", csrf.clone()), ("token", token.clone()), ("password", pw.into()), ("confirm", confirm.into())];
        let req = app.client.post(app.url("/set-password")).header("cookie", cookie).form(&fields);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("the chosen password", "does not match it").await, 400);
    assert_eq!(post("the chosen password", "the chosen password").await, 303);
    assert_eq!(post("the chosen password", "the chosen password").await, 404, "used once");
    let r = app.client.get(app.url(&format!("/set-password?token={token}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(matches!(
        app.state.users.sign_in("linked@example.com", "the chosen password", None).await.unwrap(),
        gatehouse_services::users::SignIn::Ok(_)
    ));
    let _ = all;
}

story!(sign_out_other_sessions_keeps_this_one);
async fn sign_out_other_sessions_keeps_this_one(b: Backend) {
    let app = TestApp::new(b).await;
    people(&app).await;
    let here = sign_in(&app, "viewer@example.com").await;
    let there = sign_in(&app, "viewer@example.com").await;
    let someone_else = sign_in(&app, "member@example.com").await;
    let (_, page) = here.get(&app, "/dashboard/account").await;
    assert_eq!((page.matches("This session").count(), page.matches("Another browser").count()), (1, 1), "{page}");
    // A wrong token changes nothing.
    let r = app
        .client
        .post(app.url("/dashboard/account/sessions"))
        .header("cookie", &here.cookie)
        .form(&[("csrf", there.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(there.get(&app, "/dashboard/account").await.0, 200);
    let (s, _) = here.post(&app, "/dashboard/account/sessions", &[]).await;
    assert_eq!(s, 303);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(there.get(&app, "/dashboard/account").await.0, 302, "the other browser is signed out");
    let (s, page) = here.get(&app, "/dashboard/account").await;
    assert_eq!(s, 200, "this one stays");
    assert!(!page.contains("Another browser"));
    assert_eq!(someone_else.get(&app, "/dashboard/account").await.0, 200, "another user's session stays");
}

story!(account_lists_no_apps_and_withdrawing_an_unknown_one_is_404);
async fn account_lists_no_apps_and_withdrawing_an_unknown_one_is_404(b: Backend) {
    let app = TestApp::new(b).await;
    people(&app).await;
    let s = sign_in(&app, "member@example.com").await;
    let (_, page) = s.get(&app, "/dashboard/account").await;
    assert!(page.contains("You have not authorized any OAuth app."), "{page}");
    for id in ["client_nobody", "%00"] {
        let (got, _) = s.post(&app, &format!("/dashboard/account/authorizations/{id}/withdraw"), &[]).await;
        assert_eq!(got, 404, "{id}");
    }
}
