//! `/dashboard/oauth-apps` over real HTTP: register with RFC 6749 scope tokens (the secret shown once),
//! rotate with a grace window, disable; a member's forged posts are 403 and change nothing; hostile
//! input (scripts in names, 10k redirect URIs, bad URIs, forged CSRF) is refused without side effects.

use gatehouse_store::oauth::ClientRecord;
use gatehouse_store::testing::Backend;
use gatehouse_store::{OAuthStore, PageRequest};
use reqwest::StatusCode;

use crate::dashboard_audit::sign_in_as;
use crate::{story, TestApp};

async fn clients(app: &TestApp) -> Vec<ClientRecord> {
    app.store.list_clients("default", None, &PageRequest { limit: 100, starting_after: None }).await.unwrap().items
}

/// The value of the read-only secret field, if the page has one.
fn secret_of(html: &str) -> Option<String> {
    let at = html.find("id=\"client-secret\" value=\"")? + 26;
    Some(html[at..].split('"').next()?.to_owned())
}

story!(oauth_apps_register_rotate_disable_and_roles);
async fn oauth_apps_register_rotate_disable_and_roles(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let member = sign_in_as(&app, "member").await;
    let token = owner.csrf().await;

    // Register as the API guide's example does: scopes read_customers and write_orders.
    let register = |name: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("name", name.to_owned()),
            ("client_type", "confidential".to_owned()),
            ("redirect_uris", "https://example.com/callback\nhttp://127.0.0.1/cb".to_owned()),
            ("scopes", "read_customers write_orders".to_owned()),
            ("token_format", "opaque".to_owned()),
            ("environment", "live".to_owned()),
            ("app", String::new()),
        ]
    };
    let form = register("<script>alert(1)</script>");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = owner.post("/dashboard/oauth-apps", &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let secret = secret_of(&html).expect("the secret, once");
    assert!(secret.starts_with("gth_cs_"), "{secret}");
    assert!(html.contains("<label for=\"client-secret\">Client secret</label>"));
    assert!(html.contains("data-copy=\"client-secret\""));
    assert!(!html.contains("<script>alert"), "the name is escaped");
    let all = clients(&app).await;
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert_eq!(c.scopes, ["read_customers", "write_orders"]);
    assert_eq!(c.redirect_uris, ["https://example.com/callback", "http://127.0.0.1/cb"]);
    assert_eq!(c.created_by, owner.user.id, "the dashboard user is the actor");

    // The list and the client's page never show the secret again.
    let (status, list) = owner.get("/dashboard/oauth-apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(&c.id) && !list.contains(&secret));
    let page_path = format!("/dashboard/oauth-apps/{}", c.id);
    let (status, page) = owner.get(&page_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&secret) && secret_of(&page).is_none());
    assert!(page.contains("read_customers write_orders"));

    // A member: every page and every post is refused, and nothing changes.
    assert_eq!(member.get("/dashboard/oauth-apps").await.0, StatusCode::FORBIDDEN);
    assert_eq!(member.get(&page_path).await.0, StatusCode::FORBIDDEN);
    let m_token = member.csrf().await;
    let m_form = register("member's app");
    let mut m_form: Vec<(&str, &str)> = m_form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    m_form[0].1 = &m_token;
    let rotate_path = format!("{page_path}/rotate");
    let disable_path = format!("{page_path}/disable");
    let actions: [(&str, Vec<(&str, &str)>); 3] = [
        ("/dashboard/oauth-apps", m_form.clone()),
        (&rotate_path, vec![("csrf", m_token.as_str()), ("grace_period_secs", "0")]),
        (&disable_path, vec![("csrf", m_token.as_str())]),
    ];
    for (path, form) in &actions {
        let (status, _, _) = member.post(path, form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "member POST {path}");
    }
    assert_eq!(clients(&app).await, all, "a member's posts changed nothing");
    // A viewer reads every page but each post, with the viewer's own valid form token, is refused.
    let viewer = sign_in_as(&app, "viewer").await;
    assert_eq!(viewer.get("/dashboard/oauth-apps").await.0, StatusCode::OK);
    assert_eq!(viewer.get(&page_path).await.0, StatusCode::OK);
    let v_token = viewer.csrf().await;
    for (path, form) in &actions {
        let form: Vec<(&str, &str)> =
            form.iter().map(|(k, v)| (*k, if *k == "csrf" { v_token.as_str() } else { *v })).collect();
        assert_eq!(viewer.post(path, &form).await.0, StatusCode::FORBIDDEN, "viewer POST {path}");
    }
    assert_eq!(clients(&app).await, all, "a viewer's posts changed nothing");

    // Forged tokens: another session's token, or none, is refused and changes nothing.
    for bad in [m_token.as_str(), "", "00"] {
        let (status, _, _) = owner.post(&disable_path, &[("csrf", bad)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "csrf {bad:?}");
    }
    assert_eq!(clients(&app).await, all);

    // Hostile registrations: 400 with the reason, nothing stored.
    let huge = "https://example.com/cb\n".repeat(10_000);
    let many = "https://a.example/\n".repeat(1_000);
    let cases: [(&str, &str, &str, StatusCode); 6] = [
        ("redirect_uris", &huge, "10k redirect URIs (past the form's size limit)", StatusCode::PAYLOAD_TOO_LARGE),
        ("redirect_uris", &many, "1k redirect URIs", StatusCode::BAD_REQUEST),
        ("redirect_uris", "http://evil.example/cb", "plain http off loopback", StatusCode::BAD_REQUEST),
        ("redirect_uris", "javascript:alert(1)", "a script URI", StatusCode::BAD_REQUEST),
        ("scopes", "*", "the all-scope", StatusCode::BAD_REQUEST),
        ("scopes", &app.admin, "a pasted credential", StatusCode::BAD_REQUEST),
    ];
    for (field, value, why, expected) in cases {
        let mut form = register("hostile");
        for (k, v) in form.iter_mut() {
            if *k == field {
                *v = value.to_owned();
            }
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, html) = owner.post("/dashboard/oauth-apps", &form).await;
        assert_eq!(status, expected, "{why}: {html}");
        assert!(!html.contains(&app.admin), "{why}: a pasted credential is not echoed");
        if expected == StatusCode::BAD_REQUEST {
            assert!(html.contains("role=\"alert\""), "{why}: the form says what is wrong");
        }
    }
    assert_eq!(clients(&app).await.len(), 1, "no hostile registration was stored");
    assert_eq!(owner.get("/dashboard/oauth-apps/client_nonsense").await.0, StatusCode::NOT_FOUND);
    assert_eq!(owner.get("/dashboard/oauth-apps/%3Cscript%3E").await.0, StatusCode::NOT_FOUND);

    // Rotate with a one-hour grace: a new secret once, the old one's end time shown.
    let (status, _, html) =
        owner.post(&format!("{page_path}/rotate"), &[("csrf", &token), ("grace_period_secs", "3600")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let rotated = secret_of(&html).expect("the new secret, once");
    assert_ne!(rotated, secret);
    assert!(html.contains("the old one keeps working until"), "{html}");
    let after = clients(&app).await.remove(0);
    assert_ne!(after.secret_hash, c.secret_hash);
    assert_eq!(after.previous_secret_hash, c.secret_hash);
    let (status, _, _) =
        owner.post(&format!("{page_path}/rotate"), &[("csrf", &token), ("grace_period_secs", "99999999")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a grace window past the maximum");

    // Disable: 303 back to the app's page, which says so and offers no more actions.
    let (status, loc, _) = owner.post(&format!("{page_path}/disable"), &[("csrf", &token)]).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, page_path.as_str()));
    assert!(clients(&app).await[0].disabled_at.is_some());
    let (_, page) = owner.get(&page_path).await;
    assert!(page.contains("status-disabled") && !page.contains("Rotate secret"));
}
