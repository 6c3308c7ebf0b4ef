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
