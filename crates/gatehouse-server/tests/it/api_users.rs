//! `/v1/users` (SPEC §12): scopes `users:read|write` (401 and 403 apart), a key bounded by its own
//! authority, one-time passwords and links, and no password hash in any response.

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::json;

use crate::{code, rk, story, TestApp};

fn no_hash(body: &serde_json::Value) {
    let text = body.to_string();
    assert!(!text.contains("argon2") && !text.contains("password_hash"), "{text}");
}

story!(users_api_scopes_and_lifecycle);
async fn users_api_scopes_and_lifecycle(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = app.state.users.create("owner@example.com", "a long enough password", "owner", "test").await.unwrap();
    let (_, reader) = app.cli_key(rk(Environment::Live, &["users:read"])).await;
    let (_, keys_only) = app.cli_key(rk(Environment::Live, &["keys:write"])).await;
    let (_, test_sk) = app.cli_key(crate::sk(Environment::Test)).await;

    // 401 without a credential, 403 without the scope.
    let (s, _, body) = app.call("GET", "/v1/users", None, None).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "missing_credentials"));
    let (s, _, body) = app.call("GET", "/v1/users", Some(&keys_only), None).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"));
    let (s, _, body) = app.call("POST", "/v1/users", Some(&reader), Some(json!({"email": "x@example.com"}))).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"));
    assert!(app.state.users.find("x@example.com").await.unwrap().is_none());
    // People are not per environment: a test key manages none.
    let (s, _, body) = app.call("GET", "/v1/users", Some(&test_sk), None).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "environment_mismatch"));

    // Read.
    let (s, _, body) = app.call("GET", "/v1/users", Some(&reader), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"][0]["email"], "owner@example.com");
    assert_eq!(body["data"][0]["role"], "owner");
    no_hash(&body);

    // Create with a generated password, shown once; it signs in.
    let (s, _, body) = app
        .call("POST", "/v1/users", Some(&app.admin), Some(json!({"email": "Dev@Example.com", "role": "developer"})))
        .await;
    assert_eq!(s, 200, "{body}");
    no_hash(&body);
    assert_eq!(
        (body["user"]["email"].as_str(), body["user"]["role"].as_str()),
        (Some("dev@example.com"), Some("developer"))
    );
    let pw = body["password"].as_str().unwrap().to_owned();
    assert_eq!(pw.len(), 24);
    assert!(body["set_password_url"].is_null());
    let dev_id = body["user"]["id"].as_str().unwrap().to_owned();
    assert!(matches!(
        app.state.users.sign_in("dev@example.com", &pw, None).await.unwrap(),
        gatehouse_services::users::SignIn::Ok(_)
    ));

    // Create with a one-time link.
    let (s, _, body) = app
        .call(
            "POST",
            "/v1/users",
            Some(&app.admin),
            Some(json!({"email": "v@example.com", "role": "viewer", "delivery": "link"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["password"].is_null());
    let url = body["set_password_url"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/set-password?token=")), "{url}");
    let token = url.split("token=").nth(1).unwrap();
    app.state.users.redeem_password_link(token, "chosen by the viewer").await.unwrap();

    // Bad input.
    for (input, want) in [
        (json!({"email": "not-an-email"}), 400),
        (json!({"email": "a@example.com", "role": "root"}), 400),
        (json!({"email": "a@example.com", "password_hash": "x"}), 400),
        (json!({"email": "dev@example.com"}), 409),
        (json!({"email": "o2@example.com", "role": "owner"}), 403),
    ] {
        let (s, _, body) = app.call("POST", "/v1/users", Some(&app.admin), Some(input.clone())).await;
        assert_eq!(s.as_u16(), want, "{input} → {body}");
    }
    assert!(app.state.users.find("o2@example.com").await.unwrap().is_none(), "no key makes an owner");

    // Role, disable, enable.
    let (s, _, body) =
        app.call("POST", &format!("/v1/users/{dev_id}/role"), Some(&app.admin), Some(json!({"role": "admin"}))).await;
    assert_eq!((s.as_u16(), body["role"].as_str()), (200, Some("admin")), "{body}");
    let (s, _, body) = app.call("POST", &format!("/v1/users/{dev_id}/disable"), Some(&app.admin), None).await;
    assert_eq!((s.as_u16(), body["status"].as_str()), (200, Some("disabled")), "{body}");
    let (s, _, body) = app.call("POST", &format!("/v1/users/{dev_id}/enable"), Some(&app.admin), None).await;
    assert_eq!((s.as_u16(), body["status"].as_str()), (200, Some("active")), "{body}");
    no_hash(&body);

    // A key never touches an owner.
    for action in ["disable", "enable", "role"] {
        let (s, _, body) = app
            .call(
                "POST",
                &format!("/v1/users/{}/{action}", owner.id),
                Some(&app.admin),
                Some(json!({"role": "member"})),
            )
            .await;
        assert_eq!(s, 403, "{action}: {body}");
    }
    let o = app.state.users.find(&owner.id).await.unwrap().unwrap();
    assert_eq!((o.role.as_str(), o.disabled_at), ("owner", None));
    // Unknown ids.
    let (s, _, _) = app.call("POST", "/v1/users/usr_nobody/disable", Some(&app.admin), None).await;
    assert_eq!(s, 404);
    let (s, _, _) =
        app.call("POST", &format!("/v1/users/{dev_id}/role"), Some(&reader), Some(json!({"role": "member"}))).await;
    assert_eq!(s, 403);
    assert_eq!(app.state.users.find(&dev_id).await.unwrap().unwrap().role, "admin", "the refused change did nothing");
}
