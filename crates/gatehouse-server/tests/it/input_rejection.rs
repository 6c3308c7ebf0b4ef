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
