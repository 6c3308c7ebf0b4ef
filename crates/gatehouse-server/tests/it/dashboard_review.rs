//! Attacks on the dashboard found in review, each against a real running control plane: a hostile
//! audit filter that reached the store, pages a browser could sniff into another type, and
//! set-password links that outlived the account they were issued for.

use gatehouse_store::testing::Backend;
use reqwest::StatusCode;

use crate::dashboard_audit::sign_in_as;
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
