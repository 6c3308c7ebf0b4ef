//! Leaked credentials (SPEC §13) against a running server: GitHub's secret scanning partner
//! endpoint, signed exactly as GitHub signs (its own P-256 key pair, the key list served by a local
//! HTTP server), and report-a-leak.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use gatehouse_core::leak::pem_of_p256_point;
use gatehouse_core::{Environment, KeyHash};
use gatehouse_server::secret_scanning::KeySource;
use gatehouse_server::{App, ServerConfig};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditFilter, AuditStore, KeyStore, LeakStore, PageRequest, Store, WebhookStore};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};

use crate::webhooks::{endpoint, receiver};
use crate::{sk, story, TestApp};

/// A signer playing GitHub: a P-256 key pair and its identifier.
pub struct GithubSigner {
    pair: EcdsaKeyPair,
    pub id: String,
}

impl GithubSigner {
    pub fn new(id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Self { pair, id: id.to_owned() }
    }

    /// The base64 DER signature over the raw body, as in `Github-Public-Key-Signature`.
    pub fn sign(&self, body: &[u8]) -> String {
        B64.encode(self.pair.sign(&SystemRandom::new(), body).unwrap().as_ref())
    }

    pub fn entry(&self, is_current: bool) -> Value {
        json!({"key_identifier": self.id, "key": pem_of_p256_point(self.pair.public_key().as_ref()), "is_current": is_current})
    }
}

/// A local HTTP server publishing a key list that the test may change; counts the fetches.
pub struct KeyServer {
    pub url: String,
    pub list: Arc<Mutex<Value>>,
    pub fetches: Arc<AtomicUsize>,
}

pub async fn key_server(entries: Vec<Value>) -> KeyServer {
    let list = Arc::new(Mutex::new(json!({ "public_keys": entries })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (l, f) = (list.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/meta/public_keys/secret_scanning",
        axum::routing::get(move || {
            let (l, f) = (l.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let v = l.lock().unwrap().clone();
                axum::Json(v)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    KeyServer { url: format!("http://{addr}/meta/public_keys/secret_scanning"), list, fetches }
}

pub fn scanning_config(keys_url: &str, refresh: Duration, refetch: Duration) -> ServerConfig {
    let mut c = crate::test_config();
    c.webhooks.allow_private_destinations = true;
    c.webhooks.poll_interval = Duration::from_millis(20);
    c.secret_scanning.keys = KeySource::Url(keys_url.to_owned());
    c.secret_scanning.refresh_interval = refresh;
    c.secret_scanning.min_refetch_interval = refetch;
    c
}

/// Posts a batch to the GitHub endpoint with the given headers (`None`: header left out).
pub async fn post_github(app: &TestApp, body: &[u8], key_id: Option<&str>, sig: Option<&str>) -> (u16, Value) {
    let mut rb = app.client.post(app.url("/v1/secret_scanning/github")).header("content-type", "application/json");
    if let Some(k) = key_id {
        rb = rb.header("Github-Public-Key-Identifier", k);
    }
    if let Some(s) = sig {
        rb = rb.header("Github-Public-Key-Signature", s);
    }
    let r = rb.body(body.to_vec()).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn leak_audit(app: &TestApp) -> Vec<gatehouse_store::AuditEntry> {
    let filter = AuditFilter { action: Some("key.leaked".into()), ..Default::default() };
    app.store.search_audit("default", &filter, &PageRequest { limit: 100, starting_after: None }).await.unwrap().items
}

async fn verify_code(addr: SocketAddr, admin: &str, key: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/keys/verify"))
        .bearer_auth(admin)
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["code"].as_str().unwrap_or_default().to_owned()
}

/// An OAuth client (scope `keys:read`) and a client_credentials access token of it.
async fn client_and_token(app: &TestApp, name: &str) -> (String, String, String) {
    let body = json!({"name": name, "client_type": "confidential", "redirect_uris": ["http://127.0.0.1/cb"], "scopes": ["keys:read"]});
    let (s, _, c) = app.call("POST", "/v1/oauth/clients", Some(&app.admin), Some(body)).await;
    assert_eq!(s, 200, "{c}");
    let (id, secret) = (c["id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned());
    let (status, token) = client_credentials(app, &id, &secret).await;
    assert_eq!(status, 200, "{token}");
    (id, secret, token["access_token"].as_str().unwrap().to_owned())
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "keys:read")])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A second control plane on the same database, serving on its own port.
async fn second_node(app: &TestApp) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store = Arc::new(app.db.store().await) as Arc<dyn Store>;
    let node = App::build(app.config.clone(), store, vec![]).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(node.serve(listener, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

story!(a_signed_github_batch_revokes_what_is_ours_and_live_once);
async fn a_signed_github_batch_revokes_what_is_ours_and_live_once(b: Backend) {
    let github = GithubSigner::new("4f3a9c1e8d2b7a60c5e4f3a9c1e8d2b7a60c5e4f3a9c1e8d2b7a60c5e4f3a9c1");
    let keys = key_server(vec![github.entry(true)]).await;
    let app =
        TestApp::with_config(b, scanning_config(&keys.url, Duration::from_secs(3600), Duration::from_secs(60))).await;
    let (hook, seen) = receiver(vec![]).await;
    let (_, _) = endpoint(&app, &format!("http://{hook}/hook"), &["key.leaked"]).await;

    let (live, live_secret) = app.cli_key(sk(Environment::Live)).await;
    let (test_env, test_secret) = app.cli_key(sk(Environment::Test)).await;
    let (dead, dead_secret) = app.cli_key(sk(Environment::Live)).await;
    let (s, _, _) = app.call("POST", &format!("/v1/keys/{}/revoke", dead.id), Some(&app.admin), None).await;
    assert_eq!(s, 200);
    let dead_revoked_at = app.store.key_by_id("default", &dead.id).await.unwrap().unwrap().revoked_at;
    let (_, _, token) = client_and_token(&app, "Token holder").await;
    let (cs_client, cs_secret, cs_token) = client_and_token(&app, "Secret holder").await;
    assert_eq!(app.call("GET", "/v1/keys", Some(&token), None).await.0, 200, "the token works before the report");
    // A second node that has the live key cached as valid.
    let (node_b, _stop_b) = second_node(&app).await;
    assert_eq!(verify_code(node_b, &app.admin, &live_secret).await, "valid");
    // A peer key revoked through the management API, for the same measurement (`bench/leak_latency.sh`).
    let (peer, peer_secret) = app.cli_key(sk(Environment::Live)).await;
    assert_eq!(verify_code(node_b, &app.admin, &peer_secret).await, "valid");

    let mut bad_checksum = live_secret.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == '0' { '1' } else { '0' });
    let foreign = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    let unknown_key = {
        let ns = gatehouse_core::Namespace::default();
        gatehouse_core::apikey::generate(
            &ns,
            gatehouse_core::KeyKind::Secret,
            Environment::Live,
            &mut rand::thread_rng(),
        )
        .expose()
        .to_owned()
    };
    let url = "https://github.com/octo/app/blob/1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e/config/.env";
    let items = [
        (live_secret.as_str(), true),
        (test_secret.as_str(), true),
        (dead_secret.as_str(), true),
        (bad_checksum.as_str(), false),
        (foreign, false),
        (unknown_key.as_str(), false),
        (token.as_str(), true),
        (cs_secret.as_str(), true),
    ];
    let batch: Vec<Value> = items
        .iter()
        .map(|(t, _)| json!({"token": t, "type": "gatehouse_api_key", "url": url, "source": "content"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let sig = github.sign(&body);
    let reported = Instant::now();
    let (status, labels) = post_github(&app, &body, Some(&github.id), Some(&sig)).await;
    assert_eq!(status, 200, "{labels}");
    let want: Vec<Value> = items
        .iter()
        .map(|(t, ours)| {
            json!({"token_hash": KeyHash::of(t).to_hex(), "token_type": "gatehouse_api_key",
                   "label": if *ours { "true_positive" } else { "false_positive" }})
        })
        .collect();
    assert_eq!(labels, Value::Array(want), "one label per item, in order");

    // Both nodes refuse the revoked key within a second of the answer (SPEC §13).
    let answered = reported.elapsed();
    assert_eq!(verify_code(app.addr, &app.admin, &live_secret).await, "api_key_revoked", "at once on node A");
    let leak_latency = refused_within_a_second(node_b, &app.admin, &live_secret, reported).await;
    // Revocations: both keys, the token's grant, the client's secret (and the tokens it minted).
    assert_eq!(verify_code(app.addr, &app.admin, &live_secret).await, "api_key_revoked");
    assert!(app.store.key_by_id("default", &test_env.id).await.unwrap().unwrap().revoked_at.is_some(), "test keys too");
    assert_eq!(app.call("GET", "/v1/keys", Some(&token), None).await.0, 401, "the leaked token's grant is revoked");
    assert_eq!(app.call("GET", "/v1/keys", Some(&cs_token), None).await.0, 401, "tokens the leaked secret minted");
    let (status, err) = client_credentials(&app, &cs_client, &cs_secret).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client")),
        "the leaked client secret stops working"
    );
    assert_eq!(
        app.store.key_by_id("default", &dead.id).await.unwrap().unwrap().revoked_at,
        dead_revoked_at,
        "an already revoked key is left as it was"
    );
    let (_, _, admin_still) = app.call("GET", "/v1/keys?limit=1", Some(&app.admin), None).await;
    assert!(admin_still.get("data").is_some(), "keys nobody reported keep working: {admin_still}");

    // Audit: one `key.leaked` entry per revoked credential, with where it was found, never the secret.
    let audit = leak_audit(&app).await;
    let mut targets: Vec<(&str, &str)> = audit.iter().map(|a| (a.target_type.as_str(), a.actor.as_str())).collect();
    targets.sort();
    assert_eq!(
        targets,
        vec![
            ("api_key", "github_secret_scanning"),
            ("api_key", "github_secret_scanning"),
            ("oauth_client", "github_secret_scanning"),
            ("oauth_grant", "github_secret_scanning")
        ]
    );
    let live_entry = audit.iter().find(|a| a.target_id == live.id).expect("the live key's entry");
    assert_eq!(live_entry.details["source"]["url"], url);
    assert_eq!(live_entry.details["source"]["kind"], "github");
    assert_eq!(live_entry.details["source"]["github_source"], "content");
    assert_eq!(live_entry.details["masked"], live.display_prefix.clone() + &live.last4);
    assert_eq!(audit.iter().find(|a| a.target_id == test_env.id).unwrap().environment, Some(Environment::Test));
    let all = serde_json::to_string(&audit.iter().map(|a| a.details.clone()).collect::<Vec<_>>()).unwrap();
    for (secret, _) in &items {
        assert!(!all.contains(secret), "no reported string in the audit log");
    }
    let leak = app.store.leak_by_hash(&KeyHash::of(&live_secret)).await.unwrap().expect("the leak is remembered");
    assert_eq!((leak.source_kind.as_str(), leak.location.as_deref()), ("github", Some(url)));

    // The webhook: a signed `key.leaked` event for the live-environment credentials.
    let mut events: Vec<Value> = Vec::new();
    for _ in 0..250 {
        events = seen.lock().unwrap().iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = events.iter().find(|e| e["data"]["object"]["id"] == live.id.as_str()).expect("the live key's event");
    assert_eq!(ev["type"], "key.leaked");
    assert_eq!(ev["data"]["object"]["object"], "api_key");
    assert_eq!(ev["data"]["object"]["reason"], "leaked");
    assert_eq!(ev["data"]["object"]["source"]["url"], url);
    let bodies: String = seen.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    for (secret, _) in &items {
        assert!(!bodies.contains(secret), "no reported string in an event");
    }

    // The same report again: the same labels, and nothing changes.
    let events_before = app
        .store
        .list_events("default", Environment::Live, &PageRequest { limit: 100, starting_after: None })
        .await
        .unwrap()
        .items
        .len();
    let (status, again) = post_github(&app, &body, Some(&github.id), Some(&sig)).await;
    assert_eq!((status, &again), (200, &labels));
    assert_eq!(leak_audit(&app).await.len(), 4, "no new audit entries");
    let events_after = app
        .store
        .list_events("default", Environment::Live, &PageRequest { limit: 100, starting_after: None })
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(events_after, events_before, "no new events");
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 1, "the key list was fetched once and cached");

    // The peer: an ordinary revocation, measured the same way.
    let revoked = Instant::now();
    let (s, _, _) = app.call("POST", &format!("/v1/keys/{}/revoke", peer.id), Some(&app.admin), None).await;
    assert_eq!(s, 200);
    let peer_latency = refused_within_a_second(node_b, &app.admin, &peer_secret, revoked).await;
    eprintln!(
        "leak_latency backend={b:?} report_answer_ms={:.1} report_to_refused_node_b_ms={:.1} revoke_to_refused_node_b_ms={:.1}",
        answered.as_secs_f64() * 1e3,
        leak_latency.as_secs_f64() * 1e3,
        peer_latency.as_secs_f64() * 1e3
    );
}

/// Waits until `node` refuses `key` as revoked; fails if that takes a second or more from `since`.
async fn refused_within_a_second(node: SocketAddr, admin: &str, key: &str, since: Instant) -> Duration {
    loop {
        if verify_code(node, admin, key).await == "api_key_revoked" {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(1), "the second node still accepts the revoked key after 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

story!(unsigned_tampered_or_wrongly_keyed_reports_are_refused_and_revoke_nothing);
async fn unsigned_tampered_or_wrongly_keyed_reports_are_refused_and_revoke_nothing(b: Backend) {
    let current = GithubSigner::new("current");
    let retired = GithubSigner::new("retired");
    let stranger = GithubSigner::new("stranger");
    let keys = key_server(vec![current.entry(true), retired.entry(false)]).await;
    // Every request may reload the list, so a key taken out of it is refused at once.
    let app = TestApp::with_config(b, scanning_config(&keys.url, Duration::ZERO, Duration::ZERO)).await;
    let (_, secret) = app.cli_key(sk(Environment::Live)).await;
    let body = serde_json::to_vec(
        &json!([{"token": secret, "type": "gatehouse_api_key", "url": "https://github.com/o/r", "source": "content"}]),
    )
    .unwrap();
    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 0x01;
    let good = current.sign(&body);
    let mut bad_der = B64.decode(&good).unwrap();
    let n = bad_der.len();
    bad_der[n - 1] ^= 0x01;
    let malformed = br#"[{"token": 5}]"#;
    type Row<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<String>, u16);
    let rows: Vec<Row> = vec![
        ("no headers", body.clone(), None, None, 401),
        ("no signature", body.clone(), Some("current"), None, 401),
        ("no key id", body.clone(), None, Some(good.clone()), 401),
        ("tampered body", tampered, Some("current"), Some(good.clone()), 401),
        ("signature of another body", body.clone(), Some("current"), Some(current.sign(b"[]")), 401),
        ("flipped signature byte", body.clone(), Some("current"), Some(B64.encode(&bad_der)), 401),
        ("signature not base64", body.clone(), Some("current"), Some("%%%".into()), 401),
        ("wrong key id", body.clone(), Some("stranger"), Some(stranger.sign(&body)), 401),
        ("right signer, other id", body.clone(), Some("retired"), Some(current.sign(&body)), 401),
        ("key not current", body.clone(), Some("retired"), Some(retired.sign(&body)), 401),
        ("signed but malformed", malformed.to_vec(), Some("current"), Some(current.sign(malformed)), 400),
        ("oversized", vec![b' '; gatehouse_core::leak::MAX_BATCH_BYTES + 1], Some("current"), Some(good.clone()), 413),
    ];
    for (what, body, id, sig, want) in rows {
        let (status, err) = post_github(&app, &body, id, sig.as_deref()).await;
        assert_eq!(status, want, "{what}: {err}");
        assert_eq!(verify_code(app.addr, &app.admin, &secret).await, "valid", "{what}: nothing revoked");
    }
    assert!(leak_audit(&app).await.is_empty());
    // A key GitHub takes out of its list is refused from then on.
    let (status, _) = post_github(&app, &body, Some("current"), Some(&good)).await;
    assert_eq!(status, 200);
    let (_, second) = app.cli_key(sk(Environment::Live)).await;
    let body2 = serde_json::to_vec(&json!([{"token": second, "type": "gatehouse_api_key"}])).unwrap();
    *keys.list.lock().unwrap() = json!({"public_keys": [retired.entry(false)]});
    let (status, err) = post_github(&app, &body2, Some("current"), Some(&current.sign(&body2))).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(verify_code(app.addr, &app.admin, &second).await, "valid");
}

story!(unknown_key_ids_refetch_the_list_at_most_once_per_interval);
async fn unknown_key_ids_refetch_the_list_at_most_once_per_interval(b: Backend) {
    const REFETCH: Duration = Duration::from_millis(1500);
    let old = GithubSigner::new("old");
    let new = GithubSigner::new("new");
    let keys = key_server(vec![old.entry(true)]).await;
    let app = TestApp::with_config(b, scanning_config(&keys.url, Duration::from_secs(3600), REFETCH)).await;
    let body = b"[]".to_vec();
    assert_eq!(post_github(&app, &body, Some("old"), Some(&old.sign(&body))).await.0, 200);
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 1);
    // A flood of unknown identifiers costs one fetch per interval, not one per request. (Sleeps: the
    // interval itself is what is tested; it is long enough that the 20 requests fit in it on a loaded
    // machine.)
    tokio::time::sleep(REFETCH + Duration::from_millis(100)).await;
    let flood = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(post_github(&app, &body, Some("new"), Some(&new.sign(&body))).await.0, 401);
    }
    let took = flood.elapsed();
    assert!(took < REFETCH, "the flood took {took:?}, longer than the interval it tests");
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 2, "one refetch for the first unknown id, then none");
    // GitHub publishes a new key: after the interval, its first report loads the list again.
    keys.list.lock().unwrap()["public_keys"].as_array_mut().unwrap().push(new.entry(true));
    tokio::time::sleep(REFETCH + Duration::from_millis(100)).await;
    assert_eq!(post_github(&app, &body, Some("new"), Some(&new.sign(&body))).await.0, 200);
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 3);
}

story!(a_key_list_that_cannot_be_loaded_is_a_503_and_revokes_nothing);
async fn a_key_list_that_cannot_be_loaded_is_a_503_and_revokes_nothing(b: Backend) {
    let github = GithubSigner::new("k");
    let app = TestApp::with_config(
        b,
        scanning_config("http://127.0.0.1:9/nothing-here", Duration::from_secs(60), Duration::ZERO),
    )
    .await;
    let (_, secret) = app.cli_key(sk(Environment::Live)).await;
    let body = serde_json::to_vec(&json!([{"token": secret, "type": "t"}])).unwrap();
    let (status, err) = post_github(&app, &body, Some("k"), Some(&github.sign(&body))).await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(verify_code(app.addr, &app.admin, &secret).await, "valid");
}

story!(a_key_list_file_works_like_the_url);
async fn a_key_list_file_works_like_the_url(b: Backend) {
    let github = GithubSigner::new("from-file");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, json!({"public_keys": [github.entry(true)]}).to_string()).unwrap();
    let mut config = crate::test_config();
    config.secret_scanning.keys = KeySource::File(path);
    let app = TestApp::with_config(b, config).await;
    let (key, secret) = app.cli_key(sk(Environment::Live)).await;
    let body = serde_json::to_vec(&json!([{"token": secret, "type": "t", "url": "u", "source": "commit"}])).unwrap();
    let (status, labels) = post_github(&app, &body, Some("from-file"), Some(&github.sign(&body))).await;
    assert_eq!((status, labels[0]["label"].as_str()), (200, Some("true_positive")));
    assert!(app.store.key_by_id("default", &key.id).await.unwrap().unwrap().revoked_at.is_some());
}

async fn post_report(app: &TestApp, body: &Value) -> (u16, String) {
    let r = app.client.post(app.url("/v1/credentials/report_leak")).json(body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

story!(report_a_leak_answers_202_alike_and_revokes_only_the_real_one);
async fn report_a_leak_answers_202_alike_and_revokes_only_the_real_one(b: Backend) {
    let mut config = crate::test_config();
    config.secret_scanning.report_limit = gatehouse_core::ratelimit::Quota { limit: 6, window_ms: 3_600_000 };
    let app = TestApp::with_config(b, config).await;
    let (live, live_secret) = app.cli_key(sk(Environment::Live)).await;
    let (dead, dead_secret) = app.cli_key(sk(Environment::Live)).await;
    app.call("POST", &format!("/v1/keys/{}/revoke", dead.id), Some(&app.admin), None).await;
    let (bystander, _) = app.cli_key(sk(Environment::Live)).await;
    let garbage = format!("{}x", &live_secret[..20]);
    // One credential per request: valid, invalid, already revoked — the same status and body.
    let mut answers = HashMap::new();
    for c in [&live_secret, &garbage, &dead_secret] {
        let (s, body) = post_report(&app, &json!({"credentials": [c]})).await;
        answers.insert((s, body), ());
    }
    assert_eq!(answers.into_keys().collect::<Vec<_>>(), vec![(202, r#"{"received":1}"#.to_owned())]);
    let (s, body) = post_report(&app, &json!({"credentials": [garbage, dead_secret, live_secret]})).await;
    assert_eq!((s, body.as_str()), (202, r#"{"received":3}"#));
    // Processed after the answer: wait for it.
    let mut revoked = None;
    for _ in 0..250 {
        revoked = app.store.key_by_id("default", &live.id).await.unwrap().unwrap().revoked_at;
        if revoked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revoked.is_some(), "the real credential is revoked");
    assert!(app.store.key_by_id("default", &bystander.id).await.unwrap().unwrap().revoked_at.is_none());
    let audit = leak_audit(&app).await;
    assert_eq!(audit.len(), 1, "one revocation, reported twice: {audit:?}");
    assert_eq!((audit[0].actor.as_str(), audit[0].ip.as_deref()), ("leak_report", Some("127.0.0.1")));
    assert_eq!(audit[0].details["source"]["kind"], "report");
    // Malformed shapes are a 400 (they say nothing about any credential).
    let (s, _) = post_report(&app, &json!(["not", "an", "object"])).await;
    assert_eq!(s, 400);
    // The limit (6 per address) is spent by requests, whatever they hold: the 7th is a 429 for a
    // real credential and for junk alike.
    let (_, fresh) = app.cli_key(sk(Environment::Live)).await;
    let (s, _) = post_report(&app, &json!({"credentials": ["junk"]})).await;
    assert_eq!(s, 202, "the 6th request is still within the limit");
    for c in [fresh.as_str(), "junk"] {
        let r = app
            .client
            .post(app.url("/v1/credentials/report_leak"))
            .json(&json!({"credentials": [c]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert!(r.headers().contains_key("retry-after"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(verify_code(app.addr, &app.admin, &fresh).await, "valid", "a refused report revokes nothing");
}
