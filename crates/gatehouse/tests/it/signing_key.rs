//! Rotating the assertion signing key (`gatehouse signing-key rotate`) under a running `serve`: the
//! server picks the new key up within a reload interval, assertions signed before the rotation still
//! verify against the JWKS during the overlap, and new ones carry the new `kid`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

use crate::{gatehouse, json, stderr};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kid_of(jwt: &str) -> String {
    let header: Value = serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Verifies `jwt` with the JWKS key named by its `kid`; an error says why not.
fn verify_with(jwks: &Value, jwt: &str) -> Result<(), String> {
    let kid = kid_of(jwt);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or(format!("kid {kid} is not in the JWKS"))?;
    let x: [u8; 32] = B64.decode(key["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let sig = Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_reaches_a_running_server_and_old_assertions_keep_verifying() {
    // The upstream answers with the assertion it received.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let upstream = tokio::spawn(async move {
        let app = axum::Router::new().fallback(|h: axum::http::HeaderMap| async move {
            h.get("x-gatehouse-jwt-assertion").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
        });
        axum::serve(listener, app).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("shop")).unwrap();
    let sf = format!("v: 0\napp_name: shop\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:{up_port}\n    presets:\n      api_keys: true\n");
    std::fs::write(d.join("shop/Spacefile"), sf).unwrap();
    let (cp_port, gw_port) = (free_port(), free_port());
    std::fs::write(
        d.join("gatehouse.toml"),
        format!("listen = \"127.0.0.1:{cp_port}\"\ngateway_listen = \"127.0.0.1:{gw_port}\"\ndata_dir = \"data\"\nlog_level = \"warn\"\n\n[[apps]]\nname = \"shop\"\nhosts = [\"shop.test\"]\nspacefile = \"shop/Spacefile\"\n"),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", "gatehouse.toml"];
        all.extend_from_slice(args);
        json(d, &all, &[])
    };
    let key = cli(&["keys", "create", "--name", "before"])["secret"].as_str().unwrap().to_owned();
    let mut server = crate::serve(d);
    let client = reqwest::Client::new();
    let assertion = |key: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{gw_port}/x"))
                .header("host", "shop.test")
                .header("x-space-app-key", key)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r.text().await.ok()?)
        }
    };
    let jwks = || {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{cp_port}/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let start = Instant::now();
    let before = loop {
        if let Some(a) = assertion(key.clone()).await {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let old_kid = kid_of(&before);
    let published = jwks().await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 1, "{published}");
    verify_with(&published, &before).unwrap();

    let rotated = cli(&["signing-key", "rotate"]);
    let new_kid = rotated["signing"]["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["previous"]["kid"], old_kid.as_str());
    assert!(rotated["previous"]["published_until"].is_string(), "{rotated}");

    // The running server switches within its reload interval (1 s), with some slack for a loaded machine.
    let start = Instant::now();
    let after = loop {
        let a = assertion(key.clone()).await.unwrap();
        if kid_of(&a) == new_kid {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the server still signs with {old_kid}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let published = jwks().await;
    let kids: Vec<&str> = published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(
        kids,
        vec![new_kid.as_str(), old_kid.as_str()],
        "the signing key first, the previous one still published"
    );
    verify_with(&published, &before).expect("an assertion signed before the rotation verifies during the overlap");
    verify_with(&published, &after).expect("a new assertion verifies with the new key");
    // The same credential's cached assertion was re-signed at once; a new credential gets the new kid too.
    let other = cli(&["keys", "create", "--name", "after"])["secret"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&assertion(other).await.unwrap()), new_kid);

    let listed = cli(&["signing-key", "list"]);
    let statuses: Vec<(&str, &str)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![(new_kid.as_str(), "signing"), (old_kid.as_str(), "retired")]);
    // An overlap shorter than an assertion's life is refused, and nothing changes.
    let out = gatehouse(d, &["--config", "gatehouse.toml", "signing-key", "rotate", "--overlap", "1m"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--overlap: between 300 and"), "{}", stderr(&out));
    assert_eq!(cli(&["signing-key", "list"])["data"].as_array().unwrap().len(), 2);

    let _ = std::process::Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    upstream.abort();
}
