//! Hostile input at the management API that must be refused with the §5 JSON error: redirect URIs
//! with out-of-range ports and other malformed authorities.

use gatehouse_store::testing::Backend;
use serde_json::json;

use crate::{story, TestApp};

story!(redirect_uris_with_hostile_authorities_are_refused_at_registration);
async fn redirect_uris_with_hostile_authorities_are_refused_at_registration(b: Backend) {
    let app = TestApp::new(b).await;
    let register = |uri: &str| json!({"name": "hostile", "redirect_uris": [uri], "scopes": ["orders:read"]});
    let hostile = [
        "https://app.example.com:65536/cb",
        "http://127.0.0.1:65536/cb",
        "http://[::1]:99999/cb",
        "https://app.example.com:0/cb",
        "https://app.example.com:08443/cb",
        "https://app.example.com:/cb",
        "https://app.example.com:44a/cb",
        "https://:443/cb",
        "https://user@app.example.com/cb",
        "https://app.example.com/cb#frag",
        "https://[fe80::1%25eth0]/cb",
        "https://app%2eexample.com/cb",
        "https:/evil.example://cb",
    ];
    for uri in hostile {
        let (s, _, e) = app.call("POST", "/v1/oauth/clients", Some(&app.admin), Some(register(uri))).await;
        assert_eq!(s, 400, "{uri}: {e}");
        assert_eq!(crate::code(&e), "invalid_request", "{uri}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().starts_with("redirect_uris[0]"), "{uri}: {e}");
    }
    for uri in ["https://app.example.com:65535/cb", "http://127.0.0.1:8080/cb"] {
        let (s, _, e) = app.call("POST", "/v1/oauth/clients", Some(&app.admin), Some(register(uri))).await;
        assert_eq!(s, 200, "{uri}: {e}");
    }
}

/// Sends raw bytes (the path is not re-encoded) and returns status, content type and the parsed body.
async fn raw(app: &TestApp, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, String, serde_json::Value, bool) {
    let mut rb = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(&app.admin);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let has_request_id = resp.headers().contains_key("request-id");
    let text = resp.text().await.unwrap();
    (status, ct, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)), has_request_id)
}

story!(ids_that_are_not_utf8_get_the_json_error_on_every_endpoint);
async fn ids_that_are_not_utf8_get_the_json_error_on_every_endpoint(b: Backend) {
    let app = TestApp::new(b).await;
    let routes = [
        ("GET", "/v1/keys/{}"),
        ("POST", "/v1/keys/{}/revoke"),
        ("POST", "/v1/keys/{}/roll"),
        ("GET", "/v1/oauth/clients/{}"),
        ("POST", "/v1/oauth/clients/{}/rotate_secret"),
        ("POST", "/v1/oauth/clients/{}/disable"),
        ("GET", "/v1/webhook_endpoints/{}"),
        ("POST", "/v1/webhook_endpoints/{}/roll_secret"),
        ("POST", "/v1/webhook_endpoints/{}/disable"),
        ("POST", "/v1/webhook_endpoints/{}/enable"),
        ("GET", "/v1/events/{}"),
        ("POST", "/v1/events/{}/resend"),
    ];
    // A lone continuation byte, a truncated sequence, an overlong `/`, a UTF-16 surrogate, and one
    // hidden after a plausible id.
    let ids = ["%FF", "%C3%28", "%C0%AF", "%ED%A0%80", "key_01abc%FE"];
    for (method, route) in routes {
        for id in ids {
            let path = route.replace("{}", id);
            let (s, ct, e, rid) = raw(&app, method, &path, None).await;
            assert_eq!(s, 400, "{method} {path}: {e}");
            assert!(ct.starts_with("application/json"), "{method} {path}: {ct} {e}");
            assert_eq!(e["error"]["type"], "invalid_request_error", "{method} {path}: {e}");
            assert_eq!(crate::code(&e), "invalid_request", "{method} {path}: {e}");
            assert!(e["error"]["request_id"].as_str().unwrap().starts_with("req_") && rid, "{method} {path}: {e}");
            assert_eq!(e["error"]["message"], "The path parameter `id` is not valid UTF-8 once percent-decoded.");
        }
        // A well-formed unknown id is still a 404, not a 400.
        let (s, _, e, _) = raw(&app, method, &route.replace("{}", "nope"), None).await;
        assert_eq!(s, 404, "{method} {route}: {e}");
    }
    // The signed-in user's own authorizations (a session route): the same error, before any session
    // is looked at, naming its parameter.
    for id in ids {
        let path = format!("/v1/me/authorizations/{id}");
        let (s, ct, e, rid) = raw(&app, "DELETE", &path, None).await;
        assert_eq!(s, 400, "DELETE {path}: {e}");
        assert!(ct.starts_with("application/json"), "DELETE {path}: {ct} {e}");
        assert_eq!(crate::code(&e), "invalid_request", "DELETE {path}: {e}");
        assert!(e["error"]["request_id"].as_str().unwrap().starts_with("req_") && rid, "DELETE {path}: {e}");
        assert_eq!(e["error"]["message"], "The path parameter `client_id` is not valid UTF-8 once percent-decoded.");
    }
    // A well-formed id without a session is still refused for the missing session, not the id.
    let (s, _, e, _) = raw(&app, "DELETE", "/v1/me/authorizations/nope", None).await;
    assert_eq!(s, 401, "{e}");
    // Query strings and bodies: the same JSON error.
    for (method, path, body) in [
        ("GET", "/v1/keys?limit=%FF", None),
        ("GET", "/v1/keys?starting_after=%FF", None),
        ("GET", "/v1/keys?limit=ten", None),
        ("GET", "/v1/events?limit=-1", None),
        ("POST", "/v1/keys", Some(vec![b'{', b'"', b'n', b'a', b'm', b'e', b'"', b':', b'"', 0xFF, b'"', b'}'])),
        ("POST", "/v1/keys/verify", Some(b"{\"key\": 1}".to_vec())),
    ] {
        let (s, ct, e, _) = raw(&app, method, path, body).await;
        assert!(
            s == 400 && ct.starts_with("application/json") && crate::code(&e) == "invalid_request",
            "{method} {path}: {s} {ct} {e}"
        );
    }
}

story!(error_messages_never_echo_a_presented_secret_beyond_its_masked_form);
async fn error_messages_never_echo_a_presented_secret_beyond_its_masked_form(b: Backend) {
    let app = TestApp::new(b).await;
    // The admin key's random part (beyond the four characters a masked key shows) must never appear,
    // nor any of the junk glued to it.
    let key = app.admin.clone();
    let hidden = &key["gth_sk_live_".len() + 4..key.len() - 4];
    let junk = "hunter2Pa55";
    let cs = format!("gth_cs_{}", "Q".repeat(43));
    let whsec = "whsec_c29tZXRoaW5nIGVsc2UgZW50aXJlbHkgMTIzNDU2Nzg5MA==";
    let tampered = format!("{}{}", &key[..key.len() - 1], if key.ends_with('A') { 'B' } else { 'A' });
    let presented =
        [format!("{key}{junk}"), format!("{key}_{junk}"), format!("{key}-{junk}"), format!("{}{junk}", &key[..30])];
    for bearer in &presented {
        let resp = app.client.get(app.url("/v1/keys")).bearer_auth(bearer).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{bearer}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(hidden) && !text.contains(junk) && !text.contains("Pa55"), "{bearer}: {text}");
        assert!(text.contains("(key gth_sk_live_…)"), "{bearer}: {text}");
    }
    // A well-formed key that fails its checksum still shows the usual masked form, and only that.
    let resp = app.client.get(app.url("/v1/keys")).bearer_auth(&tampered).send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(&format!("(key {}…{})", &tampered[..16], &tampered[tampered.len() - 4..]))
            && !text.contains(hidden),
        "{text}"
    );
    // Credentials pasted where an id or a value is expected, with junk around them.
    let rows = [
        ("GET", format!("/v1/keys/{junk}{key}{junk}"), None, "gth_sk_live_…"),
        ("GET", format!("/v1/keys/{key}"), None, "gth_sk_live_"),
        ("GET", format!("/v1/oauth/clients/{cs}{junk}"), None, "gth_cs_…"),
        ("GET", format!("/v1/webhook_endpoints/{}", whsec.trim_end_matches('=')), None, "whsec_…"),
        ("GET", format!("/v1/events/{junk}{cs}"), None, "gth_cs_…"),
        ("POST", "/v1/keys".to_owned(), Some(json!({"name": "x", "scopes": format!("{cs}{junk}")})), "gth_cs_…"),
        ("POST", "/v1/keys".to_owned(), Some(json!({"name": "x", "scopes": [format!("{junk}{key}")]})), "gth_sk_live_"),
        ("POST", "/v1/keys/verify".to_owned(), Some(json!({"key": [whsec]})), "invalid type"),
        ("POST", "/v1/keys/verify".to_owned(), Some(json!({"key": "x", "ip": whsec})), ""),
        (
            "POST",
            "/v1/webhook_endpoints".to_owned(),
            Some(json!({"url": "https://8.8.8.8/", "enabled_events": [format!("{cs}-{junk}")]})),
            "gth_cs_…",
        ),
        (
            "POST",
            "/v1/oauth/clients".to_owned(),
            Some(json!({"name": "x", "scopes": [format!("{cs}{junk}")]})),
            "gth_cs_…",
        ),
    ];
    for (method, path, body, shown) in rows {
        let (s, _, e) = app.call(method, &path, Some(&app.admin), body.clone()).await;
        assert!(s.is_client_error(), "{method} {path}: {s} {e}");
        let msg = e["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(shown), "{method} {path} {body:?}: {msg}");
        for secret in [hidden, junk, "Pa55", &cs["gth_cs_".len()..], &whsec["whsec_".len()..whsec.len() - 2]] {
            assert!(!msg.contains(secret), "{method} {path} {body:?} echoes `{secret}`: {msg}");
        }
    }
}
