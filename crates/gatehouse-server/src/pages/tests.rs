//! Snapshots of every page from fixed inputs (`UPDATE_EXPECT=1 cargo test -p gatehouse-server pages`
//! rewrites them). Each interpolated field holds a hostile value to show it comes out escaped.

use askama::Template;
use expect_test::expect_file;

use super::*;

/// What an attacker would like to see in a page unescaped.
const HOSTILE: &str = r#"<script>"'&"#;
/// A CSRF token as the handlers make them (64 hex digits).
const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn render(t: &impl Template) -> String {
    let html = t.render().unwrap();
    assert!(!html.contains("<script>"), "a hostile value came out unescaped:\n{html}");
    html
}

#[test]
fn message() {
    expect_file!["snapshots/message.html"].assert_eq(&render(&Message { title: HOSTILE, message: HOSTILE }));
}

#[test]
fn login() {
    let page = Login {
        title: "Sign in",
        error: Some(HOSTILE),
        csrf: CSRF,
        return_to: HOSTILE,
        state: HOSTILE,
        providers: &[],
        password_login: true,
    };
    expect_file!["snapshots/login.html"].assert_eq(&render(&page));
}

#[test]
fn login_with_identity_providers() {
    let providers = [
        ProviderButton { href: format!("/login/corp?return_to={HOSTILE}"), name: HOSTILE.into() },
        ProviderButton { href: "/login/google".into(), name: "Google".into() },
    ];
    let page = Login {
        title: "Sign in",
        error: None,
        csrf: CSRF,
        return_to: "",
        state: "",
        providers: &providers,
        password_login: true,
    };
    expect_file!["snapshots/login_providers.html"].assert_eq(&render(&page));
    let page = Login { password_login: false, ..page };
    let html = render(&page);
    assert!(!html.contains("<form") && !html.contains("password"), "{html}");
    expect_file!["snapshots/login_providers_only.html"].assert_eq(&html);
}

#[test]
fn login_without_an_error() {
    let page = Login {
        title: "Sign in",
        error: None,
        csrf: CSRF,
        return_to: "/reports?month=11",
        state: "",
        providers: &[],
        password_login: true,
    };
    expect_file!["snapshots/login_no_error.html"].assert_eq(&render(&page));
}

#[test]
fn setup() {
    let page = Setup { title: "Set up Gatehouse", error: Some(HOSTILE), csrf: CSRF, token: HOSTILE };
    expect_file!["snapshots/setup.html"].assert_eq(&render(&page));
}

#[test]
fn setup_without_an_error() {
    let page = Setup { title: "Set up Gatehouse", error: None, csrf: CSRF, token: "setup-token" };
    expect_file!["snapshots/setup_no_error.html"].assert_eq(&render(&page));
}

#[test]
fn set_password() {
    let page = SetPassword { title: "Set your password", error: Some(HOSTILE), csrf: CSRF, token: HOSTILE };
    expect_file!["snapshots/set_password.html"].assert_eq(&render(&page));
}

#[test]
fn app_logout() {
    expect_file!["snapshots/app_logout.html"].assert_eq(&render(&AppLogout { title: "Sign out", csrf: HOSTILE }));
}

#[test]
fn app_not_allowed() {
    let page = AppNotAllowed { title: "No access", email: HOSTILE, app: HOSTILE, csrf: CSRF, return_to: HOSTILE };
    expect_file!["snapshots/app_not_allowed.html"].assert_eq(&render(&page));
}

#[test]
fn other_browser() {
    expect_file!["snapshots/other_browser.html"].assert_eq(&render(&OtherBrowser { title: "Sign in", back: HOSTILE }));
}

#[test]
fn consent() {
    let scopes = ["keys:read".to_owned(), HOSTILE.to_owned()];
    let page = Consent {
        title: "Authorize an application",
        client: HOSTILE,
        email: HOSTILE,
        scopes: &scopes,
        host: HOSTILE,
        fields: vec![("csrf", CSRF), ("client_id", HOSTILE), ("state", HOSTILE)],
    };
    expect_file!["snapshots/consent.html"].assert_eq(&render(&page));
}
