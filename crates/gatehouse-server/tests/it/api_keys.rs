//! The key lifecycle over HTTP, as a newcomer would drive it, plus verify, roll, audit and rate limits.

use std::time::{Duration, Instant};

use gatehouse_core::Environment;
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_store::testing::Backend;
use serde_json::json;

use crate::{code, rk, sk, story, TestApp};

story!(create_use_verify_revoke_then_401);
async fn create_use_verify_revoke_then_401(b: Backend) {
    let app = TestApp::new(b).await;
    // The payload shape of the API-platform guide, RFC 3339 expiry included, is accepted as is: scopes
    // without a kind make a restricted key. (The guide's own date is 2027; tests/it/guides.rs in the
    // binary's tests sends it unchanged.)
    let guide = json!({
        "name": "orders-service-prod",
        "scopes": ["orders:read", "orders:write", "customers:read"],
        "ip_allowlist": ["203.0.113.0/24"], "expires_at": "2037-01-01T00:00:00Z"
    });
    let (s, _, restricted) = app.call("POST", "/v1/keys", Some(&app.admin), Some(guide.clone())).await;
    assert_eq!(s, 200, "{restricted}");
    assert_eq!(restricted["expires_at"], 2_114_380_800);
    assert_eq!(restricted["kind"], "rk");
    assert!(restricted["secret"].as_str().unwrap().starts_with("gth_rk_live_"));
    let mut sk = guide;
    sk["kind"] = json!("sk");
    let (s, _, refused) = app.call("POST", "/v1/keys", Some(&app.admin), Some(sk)).await;
    assert_eq!((s.as_u16(), code(&refused)), (400, "invalid_request"), "an explicit sk with scopes: {refused}");
    let (s, _, plain) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "no scopes"}))).await;
    assert_eq!((s.as_u16(), plain["kind"].as_str()), (200, Some("sk")), "no scopes and no kind: an sk key");
    let (s, _, created) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "ci"}))).await;
    assert_eq!(s, 200, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("gth_sk_live_"));
    assert_eq!(created["redacted"], format!("{}…{}", &secret[..16], &secret[secret.len() - 4..]));

    // The new key works on a protected endpoint, and never shows its secret again.
    let (s, _, listed) = app.call("GET", "/v1/keys", Some(&secret), None).await;
    assert_eq!(s, 200);
    assert!(!listed.to_string().contains(&secret[12..]), "list must not contain the secret");
    let (s, _, got) = app.call("GET", &format!("/v1/keys/{id}"), Some(&secret), None).await;
    assert_eq!((s.as_u16(), got["name"].as_str()), (200, Some("ci")));
    assert!(got.get("secret").is_none());

    let (_, _, v) = app.call("POST", "/v1/keys/verify", Some(&app.admin), Some(json!({"key": secret}))).await;
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(true), Some("valid")), "{v}");

    let (s, _, revoked) = app.call("POST", &format!("/v1/keys/{id}/revoke"), Some(&app.admin), None).await;
    assert_eq!((s.as_u16(), revoked["status"].as_str()), (200, Some("revoked")));
    let (s, h, body) = app.call("GET", "/v1/keys", Some(&secret), None).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "api_key_revoked"), "the very next call is refused");
    assert!(h.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("{}…", &secret[..16])), "masked key named");
    assert!(!body.to_string().contains(&secret), "the full key is never echoed");
    let (_, _, v) = app.call("POST", "/v1/keys/verify", Some(&app.admin), Some(json!({"key": secret}))).await;
    assert_eq!(v["code"], "api_key_revoked");
}

story!(verify_reports_every_code_in_order);
async fn verify_reports_every_code_in_order(b: Backend) {
    let app = TestApp::new(b).await;
    let verify = |body: serde_json::Value| {
        let app = &app;
        async move {
            let (s, _, v) = app.call("POST", "/v1/keys/verify", Some(&app.admin), Some(body)).await;
            assert_eq!(s, 200, "{v}");
            (v["valid"].as_bool().unwrap(), v["code"].as_str().unwrap().to_owned())
        }
    };
    let (_, plain) = app.cli_key(sk(Environment::Live)).await;
    let (_, test_key) = app.cli_key(sk(Environment::Test)).await;
    let (_, orders) = app.cli_key(rk(Environment::Live, &["orders:write"])).await;
    let (_, ipkey) = app
        .cli_key(gatehouse_services::keys::NewKey { ip_allowlist: vec!["10.0.0.0/8".into()], ..sk(Environment::Live) })
        .await;
    let (_, appkey) =
        app.cli_key(gatehouse_services::keys::NewKey { app: Some("shop".into()), ..sk(Environment::Live) }).await;
    let (_, limited) = app
        .cli_key(gatehouse_services::keys::NewKey {
            rate_limit: Some(gatehouse_core::RateLimitOverride { limit: 1, window_secs: 60 }),
            ..sk(Environment::Live)
        })
        .await;
    let mut bad_checksum = plain.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let unknown =
        gatehouse_services::ids::new_key(&Default::default(), gatehouse_core::KeyKind::Secret, Environment::Live);

    let rows = [
        (json!({"key": plain}), (true, "valid")),
        (json!({"key": bad_checksum}), (false, "invalid_api_key")),
        (json!({"key": "not a key"}), (false, "invalid_api_key")),
        (json!({"key": unknown.expose()}), (false, "invalid_api_key")),
        (json!({"key": test_key}), (false, "environment_mismatch")),
        (json!({"key": orders, "scope": "orders:read"}), (true, "valid")),
        (json!({"key": orders, "scope": "customers:read"}), (false, "insufficient_scope")),
        (json!({"key": ipkey, "ip": "10.2.3.4"}), (true, "valid")),
        (json!({"key": ipkey, "ip": "192.0.2.1"}), (false, "ip_not_allowed")),
        (json!({"key": ipkey}), (false, "ip_not_allowed")),
        (json!({"key": appkey, "app": "shop"}), (true, "valid")),
        (json!({"key": appkey, "app": "blog"}), (false, "app_not_allowed")),
        (json!({"key": appkey}), (false, "app_not_allowed")),
        (json!({"key": limited}), (true, "valid")),
        (json!({"key": limited}), (false, "rate_limited")),
        // Rate limiting comes last: a refused scope on a limited key is still a scope refusal.
        (json!({"key": test_key, "scope": "x:read"}), (false, "environment_mismatch")),
    ];
    for (body, want) in rows {
        let got = verify(body.clone()).await;
        assert_eq!((got.0, got.1.as_str()), want, "{body}");
    }
}

story!(roll_keeps_the_old_key_for_the_grace_period);
async fn roll_keeps_the_old_key_for_the_grace_period(b: Backend) {
    let app = TestApp::new(b).await;
    let (old, old_secret) = app.cli_key(sk(Environment::Live)).await;
    let (s, _, rolled) = app
        .call("POST", &format!("/v1/keys/{}/roll", old.id), Some(&app.admin), Some(json!({"grace_period_secs": 3600})))
        .await;
    assert_eq!(s, 200, "{rolled}");
    let new_secret = rolled["new_key"]["secret"].as_str().unwrap();
    assert_eq!(rolled["old_key"]["rolled_to"], rolled["new_key"]["id"]);
    let exp = rolled["old_key"]["expires_at"].as_i64().unwrap();
    let expected = crate::now().unix_seconds() + 3600;
    assert!((expected - 5..=expected + 1).contains(&exp), "old key expires in an hour: {exp} vs {expected}");
    assert_eq!(app.call("GET", "/v1/keys", Some(&old_secret), None).await.0, 200, "old key works in the grace period");
    assert_eq!(app.call("GET", "/v1/keys", Some(new_secret), None).await.0, 200);

    // A roll with no grace ends the old key at once.
    let new_id = rolled["new_key"]["id"].as_str().unwrap();
    let (s, _, rolled2) = app.call("POST", &format!("/v1/keys/{new_id}/roll"), Some(&app.admin), None).await;
    assert_eq!(s, 200, "{rolled2}");
    let (s, _, body) = app.call("GET", "/v1/keys", Some(new_secret), None).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "api_key_expired"));
    let (s, _, body) = app.call("POST", &format!("/v1/keys/{new_id}/roll"), Some(&app.admin), None).await;
    assert_eq!((s.as_u16(), code(&body)), (409, "conflict"), "a rolled key cannot be rolled twice");
}

story!(rate_limit_answers_429_with_headers_after_auth);
async fn rate_limit_answers_429_with_headers_after_auth(b: Backend) {
    let app = TestApp::new(b).await;
    let limited = gatehouse_services::keys::NewKey {
        rate_limit: Some(gatehouse_core::RateLimitOverride { limit: 2, window_secs: 60 }),
        ..rk(Environment::Live, &["keys:read"])
    };
    let (rec, key) = app.cli_key(limited).await;
    let (s, h, _) = app.call("GET", "/v1/keys", Some(&key), None).await;
    assert_eq!(s, 200);
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "1");
    assert_eq!(app.call("GET", "/v1/keys", Some(&key), None).await.0, 200);
    let (s, h, body) = app.call("GET", "/v1/keys", Some(&key), None).await;
    assert_eq!(
        (s.as_u16(), code(&body), body["error"]["type"].as_str()),
        (429, "rate_limited", Some("rate_limit_error"))
    );
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-remaining"], "0");
    // An unauthorized request on the same key is a 403, not a 429, and spends nothing.
    let (s, _, body) = app.call("POST", "/v1/keys", Some(&key), Some(json!({}))).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"));
    // Revocation beats the limit too.
    app.other_process().await.revoke(&Actor::Cli, &RequestMeta::default(), &rec.id, None).await.unwrap();
    app.feed_polled().await;
    let (s, _, body) = app.call("GET", "/v1/keys", Some(&key), None).await;
    assert_eq!((s.as_u16(), code(&body)), (401, "api_key_revoked"));
}

story!(revocation_by_another_process_lands_within_a_second);
async fn revocation_by_another_process_lands_within_a_second(b: Backend) {
    let app = TestApp::new(b).await;
    let (rec, key) = app.cli_key(sk(Environment::Live)).await;
    assert_eq!(app.call("GET", "/v1/keys", Some(&key), None).await.0, 200, "cached now");
    app.other_process().await.revoke(&Actor::Cli, &RequestMeta::default(), &rec.id, None).await.unwrap();
    let start = Instant::now();
    loop {
        let (s, _, body) = app.call("GET", "/v1/keys", Some(&key), None).await;
        if s == 401 {
            assert_eq!(code(&body), "api_key_revoked");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "still accepted {:?} after the revoke", start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

story!(restricted_keys_cannot_mint_stronger_keys);
async fn restricted_keys_cannot_mint_stronger_keys(b: Backend) {
    let app = TestApp::new(b).await;
    let (_, writer) = app.cli_key(rk(Environment::Live, &["keys:write", "orders:read"])).await;
    let (s, _, body) = app.call("POST", "/v1/keys", Some(&writer), Some(json!({"kind": "sk"}))).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"), "{body}");
    let (s, _, body) =
        app.call("POST", "/v1/keys", Some(&writer), Some(json!({"kind": "rk", "scopes": ["orders:write"]}))).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("orders:write"), "names the scope");
    let (s, _, body) =
        app.call("POST", "/v1/keys", Some(&writer), Some(json!({"kind": "rk", "scopes": ["orders:read"]}))).await;
    assert_eq!(s, 200, "{body}");
    // Test keys manage test keys only; live keys are invisible to them.
    let (_, test_admin) = app.cli_key(sk(Environment::Test)).await;
    let (s, _, body) = app.call("POST", "/v1/keys", Some(&test_admin), Some(json!({"environment": "live"}))).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "environment_mismatch"));
    let (s, _, body) = app.call("GET", "/v1/keys", Some(&test_admin), None).await;
    assert_eq!(s, 200);
    assert!(body["data"].as_array().unwrap().iter().all(|k| k["environment"] == "test"));
}

story!(audit_log_records_who_what_when_without_secrets);
async fn audit_log_records_who_what_when_without_secrets(b: Backend) {
    let app = TestApp::new(b).await;
    let (s, h, created) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "audited"}))).await;
    assert_eq!(s, 200);
    let request_id = h["request-id"].to_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    app.call("POST", &format!("/v1/keys/{id}/roll"), Some(&app.admin), Some(json!({"grace_period_secs": 60}))).await;
    app.call("POST", &format!("/v1/keys/{id}/revoke"), Some(&app.admin), Some(json!({"reason": "test"}))).await;
    let (s, _, log) = app.call("GET", "/v1/audit?limit=3", Some(&app.admin), None).await;
    assert_eq!(s, 200, "{log}");
    let actions: Vec<_> = log["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.revoked", "key.rolled", "key.created"]);
    let created_entry = &log["data"][2];
    assert_eq!(created_entry["target_id"], id);
    assert_eq!(created_entry["request_id"], request_id.as_str());
    assert_eq!(created_entry["ip"], "127.0.0.1");
    assert!(created_entry["actor"].as_str().unwrap().starts_with("key_"));
    assert!(!log.to_string().contains(&secret[12..]), "no secret in the audit log");
    // A key without audit:read may not read it.
    let (_, reader) = app.cli_key(rk(Environment::Live, &["keys:read"])).await;
    let (s, _, body) = app.call("GET", "/v1/audit", Some(&reader), None).await;
    assert_eq!((s.as_u16(), code(&body)), (403, "insufficient_scope"));
    assert!(body["error"]["message"].as_str().unwrap().contains("audit:read"));
}

story!(last_used_is_written_in_batches_not_per_request);
async fn last_used_is_written_in_batches_not_per_request(b: Backend) {
    let app = TestApp::new(b).await;
    let (rec, key) = app.cli_key(sk(Environment::Live)).await;
    for _ in 0..5 {
        assert_eq!(app.call("GET", "/v1/keys", Some(&key), None).await.0, 200);
    }
    let mut seen = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _, got) = app.call("GET", &format!("/v1/keys/{}", rec.id), Some(&app.admin), None).await;
        if let Some(t) = got["last_used_at"].as_i64() {
            seen = Some(t);
            break;
        }
    }
    let t = seen.expect("last_used_at is flushed within the flush interval");
    assert!((crate::now().unix_seconds() - t).abs() < 10);
}
