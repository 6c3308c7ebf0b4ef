//! The OpenAPI document is generated from the routes: every documented operation answers, with auth,
//! something other than 404/405, and the document declares OpenAPI 3.1.

use gatehouse_store::testing::Backend;

use crate::TestApp;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (s, _, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    // The document says what a body with scopes and no kind creates (the API guide's restricted key).
    let create = doc["paths"]["/v1/keys"]["post"].to_string();
    assert!(create.contains("a body with `scopes` creates a restricted (`rk`) key"), "{create}");
    let kind = doc["components"]["schemas"]["CreateKeyIn"]["properties"]["kind"].to_string();
    assert!(kind.contains("`rk` (restricted) when `scopes` is given"), "{kind}");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = vec![];
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.replace("{id}", "key_00000000000000000000000000")));
        }
    }
    operations.sort();
    let expected = [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/keys/key_00000000000000000000000000"),
        ("POST", "/v1/keys"),
        ("POST", "/v1/keys/key_00000000000000000000000000/revoke"),
        ("POST", "/v1/keys/key_00000000000000000000000000/roll"),
        ("POST", "/v1/keys/verify"),
        ("GET", "/v1/oauth/clients"),
        ("GET", "/v1/oauth/clients/key_00000000000000000000000000"),
        ("POST", "/v1/oauth/clients"),
        ("POST", "/v1/oauth/clients/key_00000000000000000000000000/disable"),
        ("POST", "/v1/oauth/clients/key_00000000000000000000000000/rotate_secret"),
        ("GET", "/v1/webhook_endpoints"),
        ("POST", "/v1/webhook_endpoints"),
        ("GET", "/v1/webhook_endpoints/key_00000000000000000000000000"),
        ("POST", "/v1/webhook_endpoints/key_00000000000000000000000000/roll_secret"),
        ("POST", "/v1/webhook_endpoints/key_00000000000000000000000000/disable"),
        ("POST", "/v1/webhook_endpoints/key_00000000000000000000000000/enable"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/key_00000000000000000000000000"),
        ("POST", "/v1/events/key_00000000000000000000000000/resend"),
        ("GET", "/v1/users"),
        ("POST", "/v1/users"),
        ("POST", "/v1/users/key_00000000000000000000000000/disable"),
        ("POST", "/v1/users/key_00000000000000000000000000/enable"),
        ("POST", "/v1/users/key_00000000000000000000000000/role"),
    ];
    let got: Vec<(&str, &str)> = operations.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(got, want);
    for (method, path) in &operations {
        let (s, _, body) = app.call(method, path, Some(&app.admin), Some(serde_json::json!({"key": "x"}))).await;
        let routed =
            s != 405 && !(s == 404 && body["error"]["message"].as_str().unwrap_or("").starts_with("No such endpoint"));
        assert!(routed, "{method} {path} is documented but not routed ({s})");
    }
}
