//! Bad input gets a clear answer and changes nothing: one row per hostile request, the expected status
//! and code beside it, and the number of stored keys checked after every row. Error bodies are pinned
//! by snapshots.

use expect_test::expect;
use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use serde_json::Value;

use crate::{code, rk, sk, story, TestApp};

enum Auth<'a> {
    Admin,
    None,
    Key(&'a str),
    Raw(&'a [&'a str]),
}

struct Row<'a> {
    what: &'a str,
    method: &'a str,
    path: &'a str,
    auth: Auth<'a>,
    content_type: Option<&'a str>,
    body: Option<String>,
    want: (u16, &'a str),
}

async fn send(app: &TestApp, row: &Row<'_>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = app.client.request(row.method.parse().unwrap(), app.url(row.path));
    match &row.auth {
        Auth::Admin => rb = rb.bearer_auth(&app.admin),
        Auth::Key(k) => rb = rb.bearer_auth(k),
        Auth::Raw(values) => {
            for v in *values {
                rb = rb.header("authorization", *v);
            }
        }
        Auth::None => {}
    }
    if let Some(ct) = row.content_type {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = &row.body {
        rb = rb.body(b.clone());
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

story!(hostile_requests_get_clear_errors_and_write_nothing);
async fn hostile_requests_get_clear_errors_and_write_nothing(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, test_admin) = app.cli_key(sk(Environment::Test)).await;
    let (_, reader) = app.cli_key(rk(Environment::Live, &["keys:read"])).await;
    let (_, ip_key) = app
        .cli_key(gatehouse_services::keys::NewKey {
            ip_allowlist: vec!["192.0.2.0/24".into()],
            ..sk(Environment::Live)
        })
        .await;
    let (_, app_key) =
        app.cli_key(gatehouse_services::keys::NewKey { app: Some("shop".into()), ..sk(Environment::Live) }).await;
    let mut bad_checksum = app.admin.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'z' { 'y' } else { 'z' });
    let bearer_bad = format!("Bearer {bad_checksum}");
    let bearer_admin = format!("Bearer {}", app.admin);
    let two_headers = [bearer_admin.as_str(), bearer_bad.as_str()];
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let json = Some("application/json");
    let j = |s: &str| Some(s.to_owned());
    let before = app.key_count().await;
    let past = crate::now().unix_seconds() - 60;
    let rows = vec![
        Row {
            what: "malformed JSON",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j("{\"name\": "),
            want: (400, "invalid_request"),
        },
        Row {
            what: "not an object",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j("[1,2]"),
            want: (400, "invalid_request"),
        },
        Row {
            what: "empty body",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(""),
            want: (400, "invalid_request"),
        },
        Row {
            what: "wrong type",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"name": 5}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "wrong nested type",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"rate_limit": {"limit": "many", "window_secs": 1}}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown field",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"nmae": "x"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown kind",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"kind": "pk"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown environment",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"environment": "prod"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "oversized body",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: Some(huge),
            want: (413, "request_too_large"),
        },
        Row {
            what: "form body",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: Some("application/x-www-form-urlencoded"),
            body: j("name=x"),
            want: (400, "invalid_request"),
        },
        Row {
            what: "invalid CIDR",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"ip_allowlist": ["10.0.0.0/33"]}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "CIDR with host bits",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"ip_allowlist": ["10.0.0.1/8"]}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "expiry in the past",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: Some(format!(r#"{{"expires_at": {past}}}"#)),
            want: (400, "invalid_request"),
        },
        Row {
            what: "expiry not a time",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"expires_at": "next tuesday"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "expiry past year 9999",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"expires_at": 99999999999999}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "expiry as an object",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"expires_at": {"s": 1}}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "malformed scope",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"kind": "rk", "scopes": ["or ders"]}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "rk without scopes",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"kind": "rk"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "sk with scopes",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"kind": "sk", "scopes": ["orders:read"]}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "bad app name",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"app": "../etc"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "zero rate limit",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"rate_limit": {"limit": 0, "window_secs": 1}}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "control chars in name",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"name": "a\u0000b"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "key with a bad checksum",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Key(&bad_checksum),
            content_type: json,
            body: j("{}"),
            want: (401, "invalid_api_key"),
        },
        Row {
            what: "no credentials",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::None,
            content_type: json,
            body: j("{}"),
            want: (401, "missing_credentials"),
        },
        Row {
            what: "unknown auth scheme",
            method: "GET",
            path: "/v1/keys",
            auth: Auth::Raw(&["Token abc"]),
            content_type: None,
            body: None,
            want: (401, "invalid_api_key"),
        },
        Row {
            what: "two Authorization headers",
            method: "GET",
            path: "/v1/keys",
            auth: Auth::Raw(&two_headers),
            content_type: None,
            body: None,
            want: (400, "multiple_credentials"),
        },
        Row {
            what: "key of the wrong environment",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Key(&test_admin),
            content_type: json,
            body: j(r#"{"environment": "live"}"#),
            want: (403, "environment_mismatch"),
        },
        Row {
            what: "read-only key writing",
            method: "POST",
            path: "/v1/keys",
            auth: Auth::Key(&reader),
            content_type: json,
            body: j("{}"),
            want: (403, "insufficient_scope"),
        },
        Row {
            what: "allowlisted key from elsewhere",
            method: "GET",
            path: "/v1/keys",
            auth: Auth::Key(&ip_key),
            content_type: None,
            body: None,
            want: (403, "ip_not_allowed"),
        },
        Row {
            what: "app key on the management API",
            method: "GET",
            path: "/v1/keys",
            auth: Auth::Key(&app_key),
            content_type: None,
            body: None,
            want: (403, "app_not_allowed"),
        },
        Row {
            what: "limit out of range",
            method: "GET",
            path: "/v1/keys?limit=0",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (400, "invalid_request"),
        },
        Row {
            what: "limit not a number",
            method: "GET",
            path: "/v1/keys?limit=ten",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown query parameter",
            method: "GET",
            path: "/v1/keys?sort=asc",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (400, "invalid_request"),
        },
        Row {
            what: "junk cursor",
            method: "GET",
            path: "/v1/keys?starting_after=%27%3B--",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown key id",
            method: "GET",
            path: "/v1/keys/key_00000000000000000000000000",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (404, "resource_missing"),
        },
        Row {
            what: "path traversal id",
            method: "GET",
            path: "/v1/keys/..%2F..%2Fetc",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (404, "resource_missing"),
        },
        Row {
            what: "revoke unknown key",
            method: "POST",
            path: "/v1/keys/key_00000000000000000000000000/revoke",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (404, "resource_missing"),
        },
        Row {
            what: "roll with too long a grace",
            method: "POST",
            path: "/v1/keys/key_00000000000000000000000000/roll",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"grace_period_secs": 999999999}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "roll with negative grace",
            method: "POST",
            path: "/v1/keys/key_00000000000000000000000000/roll",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"grace_period_secs": -1}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "verify with a malformed scope",
            method: "POST",
            path: "/v1/keys/verify",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"key": "x", "scope": "a b"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "verify with a bad ip",
            method: "POST",
            path: "/v1/keys/verify",
            auth: Auth::Admin,
            content_type: json,
            body: j(r#"{"key": "x", "ip": "300.1.1.1"}"#),
            want: (400, "invalid_request"),
        },
        Row {
            what: "verify without key",
            method: "POST",
            path: "/v1/keys/verify",
            auth: Auth::Admin,
            content_type: json,
            body: j("{}"),
            want: (400, "invalid_request"),
        },
        Row {
            what: "unknown route",
            method: "GET",
            path: "/v1/nothing",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (404, "resource_missing"),
        },
        Row {
            what: "wrong method",
            method: "DELETE",
            path: "/v1/keys",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            want: (405, "method_not_allowed"),
        },
    ];
    for row in &rows {
        let (status, headers, body) = send(&app, row).await;
        assert_eq!((status, code(&body)), row.want, "{}: {body}", row.what);
        assert!(headers.contains_key("request-id"), "{}: Request-Id on every response", row.what);
        assert_eq!(body["error"]["request_id"].as_str(), headers["request-id"].to_str().ok(), "{}", row.what);
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(msg.len() > 10, "{}: a message a person can act on: {msg:?}", row.what);
        assert!(!body.to_string().contains(&app.admin[12..]), "{}: no secret echoed", row.what);
        if status == 401 {
            assert!(headers.contains_key("www-authenticate"), "{}: 401 carries WWW-Authenticate", row.what);
        }
        assert_eq!(app.key_count().await, before, "{}: nothing written", row.what);
    }
}

/// Error bodies are part of the contract: pin their exact shape (request ids normalized).
#[tokio::test]
async fn error_json_snapshots() {
    let app = TestApp::new(Backend::Sqlite).await;
    // Pins the bytes on the wire (field order included), with the request id normalized.
    let raw = |method: &'static str, path: &'static str, key: Option<String>, body: Option<Value>| {
        let app = &app;
        async move {
            let mut rb = app.client.request(method.parse().unwrap(), app.url(path));
            if let Some(k) = key {
                rb = rb.bearer_auth(k);
            }
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            let text = rb.send().await.unwrap().text().await.unwrap();
            let start = text.find("\"req_").expect("a request id") + 1;
            let end = start + text[start..].find('"').unwrap();
            format!("{}req_…{}", &text[..start], &text[end..])
        }
    };
    let missing = raw("GET", "/v1/keys", None, None).await;
    expect![[r#"{"error":{"type":"authentication_error","code":"missing_credentials","message":"No credentials were provided.","request_id":"req_…"}}"#]]
    .assert_eq(&missing);
    let admin = Some(app.admin.clone());
    let unknown_field = raw("POST", "/v1/keys", admin.clone(), Some(serde_json::json!({"nmae": 1}))).await;
    expect![[r#"{"error":{"type":"invalid_request_error","code":"invalid_request","message":"Invalid JSON body at `nmae`: unknown field `nmae`, expected one of `name`, `kind`, `environment`, `scopes`, `ip_allowlist`, `expires_at`, `app`, `rate_limit`, `metadata` at line 1 column 7.","request_id":"req_…"}}"#]]
    .assert_eq(&unknown_field);
    let wrong_type = raw(
        "POST",
        "/v1/keys",
        admin.clone(),
        Some(serde_json::json!({"rate_limit": {"limit": "x", "window_secs": 1}})),
    )
    .await;
    expect![[r#"{"error":{"type":"invalid_request_error","code":"invalid_request","message":"Invalid JSON body at `rate_limit.limit`: invalid type: string \"x\", expected u32 at line 1 column 26.","request_id":"req_…"}}"#]]
    .assert_eq(&wrong_type);
    let (_, reader) = app.cli_key(rk(Environment::Live, &["keys:read"])).await;
    let scope = raw("POST", "/v1/keys", Some(reader), Some(serde_json::json!({}))).await;
    expect![[r#"{"error":{"type":"permission_error","code":"insufficient_scope","message":"This request needs the scope `keys:write`, which the credential does not hold.","request_id":"req_…"}}"#]]
    .assert_eq(&scope);
    let (_, _, echoed) = app
        .call(
            "POST",
            "/v1/keys",
            Some(&app.admin),
            Some(serde_json::json!({"kind": "rk", "scopes": [format!("{} ", app.admin)]})),
        )
        .await;
    let msg = echoed["error"]["message"].as_str().unwrap();
    assert!(!msg.contains(&app.admin[16..]), "a key pasted into another field is masked in the message: {msg}");
}
