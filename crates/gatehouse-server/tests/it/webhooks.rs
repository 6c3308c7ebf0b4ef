//! Webhooks (SPEC §6), sending side: the outbox, signed deliveries, retries on an injected clock,
//! rotation windows, the SSRF guard, row claiming across workers, disabling, resend.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use gatehouse_core::Timestamp;
use gatehouse_server::delivery::http_worker;
use gatehouse_services::webhooks::worker::{Clock, Worker};
use gatehouse_store::testing::Backend;
use gatehouse_store::{Store, WebhookStore};
use serde_json::{json, Value};

use crate::{story, TestApp};

/// What a receiver saw: headers and body of each request.
pub type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A local receiver answering each request with the next status of `statuses` (then 200).
pub async fn receiver(statuses: Vec<u16>) -> (SocketAddr, Received) {
    let seen: Received = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let (s, count, statuses) = (s.clone(), count.clone(), statuses.clone());
        async move {
            let n = count.fetch_add(1, Ordering::SeqCst);
            s.lock().unwrap().push((headers, body));
            let status = statuses.get(n).copied().unwrap_or(200);
            (StatusCode::from_u16(status).unwrap(), "receiver says hello")
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, seen)
}

fn dev_config(worker: bool) -> gatehouse_server::ServerConfig {
    let mut c = crate::test_config();
    c.webhooks.allow_private_destinations = true;
    c.webhooks.poll_interval = Duration::from_millis(20);
    c.webhook_worker = worker;
    c
}

pub async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let (s, _, e) = app
        .call("POST", "/v1/webhook_endpoints", Some(&app.admin), Some(json!({"url": url, "enabled_events": events})))
        .await;
    assert_eq!(s, 200, "{e}");
    (e["id"].as_str().unwrap().to_owned(), e["secret"].as_str().unwrap().to_owned())
}

async fn wait_for(seen: &Received, n: usize) {
    for _ in 0..250 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {n} deliveries, got {}", seen.lock().unwrap().len());
}

fn verify(h: &HeaderMap, body: &str, secrets: &[&str]) -> Result<(), gatehouse_webhook::VerifyError> {
    let sig = h["gatehouse-signature"].to_str().unwrap();
    gatehouse_webhook::verify(sig, body.as_bytes(), secrets, Timestamp::now().unix_seconds(), 300)
}

story!(key_events_are_delivered_signed_from_the_outbox);
async fn key_events_are_delivered_signed_from_the_outbox(b: Backend) {
    let app = TestApp::with_config(b, dev_config(true)).await;
    let (addr, seen) = receiver(vec![]).await;
    let (_, secret) = endpoint(&app, &format!("http://{addr}/hook"), &["key.created", "key.revoked"]).await;
    let (_, _, key) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "hooked"}))).await;
    wait_for(&seen, 1).await;
    let (h, body) = seen.lock().unwrap()[0].clone();
    verify(&h, &body, &[&secret]).expect("our own verifier accepts the delivery");
    assert!(verify(&h, &body, &["whsec_c29tZXRoaW5nIGVsc2UgZW50aXJlbHkgMTIzNDU2Nzg5MA=="]).is_err());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "key.created");
    assert!(v["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(v["environment"], "live");
    assert_eq!(v["data"]["object"]["id"], key["id"]);
    assert!(!body.contains(key["secret"].as_str().unwrap()), "no key secret in an event");
    assert_eq!(h["content-type"], "application/json");
    let (_, _, _) =
        app.call("POST", &format!("/v1/keys/{}/revoke", key["id"].as_str().unwrap()), Some(&app.admin), None).await;
    wait_for(&seen, 2).await;
    let v: Value = serde_json::from_str(&seen.lock().unwrap()[1].1).unwrap();
    assert_eq!(v["type"], "key.revoked");
    // The event log shows the event with its delivery and attempt.
    // The attempt is recorded just after the receiver answered: wait for it.
    let mut detail = Value::Null;
    for _ in 0..100 {
        let (s, _, d) =
            app.call("GET", &format!("/v1/events/{}", v["id"].as_str().unwrap()), Some(&app.admin), None).await;
        assert_eq!(s, 200, "{d}");
        detail = d;
        if detail["deliveries"][0]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(detail["deliveries"][0]["status"], "delivered");
    assert_eq!(detail["attempts"][0]["status_code"], 200);
    assert_eq!(detail["attempts"][0]["response_excerpt"], "receiver says hello");
    let (_, _, metrics) = app.call("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("gatehouse_webhook_attempts_total{code=\"delivered\"} 2"), "{text}");
    assert!(text.contains("gatehouse_webhook_delivery_seconds_count 2"), "{text}");
    // Resend: the same event id arrives again.
    let (s, _, r) =
        app.call("POST", &format!("/v1/events/{}/resend", v["id"].as_str().unwrap()), Some(&app.admin), None).await;
    assert_eq!((s.as_u16(), r["queued"].as_u64()), (200, Some(1)));
    wait_for(&seen, 3).await;
    let again: Value = serde_json::from_str(&seen.lock().unwrap()[2].1).unwrap();
    assert_eq!(again["id"], v["id"]);
}

story!(a_change_that_rolls_back_emits_no_event);
async fn a_change_that_rolls_back_emits_no_event(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, _) = receiver(vec![]).await;
    endpoint(&app, &format!("http://{addr}/hook"), &["*"]).await;
    let (rec, _) = app.cli_key(crate::sk(gatehouse_core::Environment::Live)).await;
    let page = gatehouse_store::PageRequest { limit: 100, starting_after: None };
    let before = app.store.list_events("default", gatehouse_core::Environment::Live, &page).await.unwrap().items.len();
    assert_eq!(before, 2, "the admin key's and this key's key.created");
    // The same hash again: the insert fails, and with it the audit entry and the event.
    let audit = gatehouse_store::AuditEntry {
        id: gatehouse_services::ids::new_id("aud", gatehouse_core::Timestamp(1)),
        workspace: "default".into(),
        environment: Some(gatehouse_core::Environment::Live),
        at: Timestamp::now(),
        actor: "test".into(),
        action: "key.created".into(),
        target_type: "api_key".into(),
        target_id: "key_dup".into(),
        request_id: None,
        ip: None,
        details: json!({}),
    };
    let mut dup = rec.clone();
    dup.id = gatehouse_services::ids::new_id("key", gatehouse_core::Timestamp(2));
    assert!(gatehouse_store::KeyStore::insert_key(&app.store, &dup, &audit).await.is_err());
    let after = app.store.list_events("default", gatehouse_core::Environment::Live, &page).await.unwrap().items.len();
    assert_eq!(before, after, "no event for a change that rolled back");
    assert_eq!(
        app.store.pending_deliveries().await.unwrap(),
        1,
        "one delivery: the only event since the endpoint exists"
    );
}

fn manual_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let n = now.clone();
    (Arc::new(move || Timestamp(n.load(Ordering::SeqCst))), now)
}

story!(retries_follow_the_schedule_on_an_injected_clock_and_resign_each_attempt);
async fn retries_follow_the_schedule_on_an_injected_clock_and_resign_each_attempt(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, seen) = receiver(vec![500, 503]).await;
    let (_, secret) = endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "retry"}))).await;
    let (clock, now) = manual_clock(Timestamp::now().0);
    let worker = http_worker(Arc::new(app.store.clone()) as Arc<dyn Store>, dev_config(false).webhooks, clock);
    assert_eq!(worker.run_once().await.unwrap(), 1, "the first attempt is immediate");
    assert_eq!(worker.run_once().await.unwrap(), 0, "nothing due until the first retry delay (5 s ± 20 %)");
    now.fetch_add(3_900, Ordering::SeqCst);
    assert_eq!(worker.run_once().await.unwrap(), 0, "not before 4 s");
    now.fetch_add(2_200, Ordering::SeqCst);
    assert_eq!(worker.run_once().await.unwrap(), 1, "by 6 s the second attempt went");
    now.fetch_add(3 * 60_000, Ordering::SeqCst);
    assert_eq!(worker.run_once().await.unwrap(), 0, "the next retry is 5 min ± 20 % later");
    now.fetch_add(3 * 60_000, Ordering::SeqCst);
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(worker.run_once().await.unwrap(), 0, "delivered: nothing more");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let ids: Vec<String> =
        got.iter().map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "the event id is stable across attempts");
    let ts: Vec<String> = got
        .iter()
        .map(|(h, _)| h["gatehouse-signature"].to_str().unwrap().split(',').next().unwrap().to_owned())
        .collect();
    assert!(ts[0] != ts[1] && ts[1] != ts[2], "each attempt is signed with a fresh t: {ts:?}");
    for (h, body) in &got {
        let t: i64 = h["gatehouse-signature"].to_str().unwrap()[2..].split(',').next().unwrap().parse().unwrap();
        gatehouse_webhook::verify(h["gatehouse-signature"].to_str().unwrap(), body.as_bytes(), &[&secret], t, 0)
            .unwrap();
    }
    let attempts = app.store.attempts_of(&ids[0]).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), vec![Some(500), Some(503), Some(200)]);
}

/// The signature a receiver that keeps only the last `v1` (the API guide's snippet) checks.
fn last_v1(h: &HeaderMap) -> String {
    let sig = h["gatehouse-signature"].to_str().unwrap();
    sig.split(',').filter_map(|p| p.strip_prefix("v1=")).next_back().unwrap().to_owned()
}

/// `v1` of `secret` over what `h` and `body` carry.
fn v1_of(secret: &str, h: &HeaderMap, body: &str) -> String {
    let t: i64 = h["gatehouse-signature"].to_str().unwrap()[2..].split(',').next().unwrap().parse().unwrap();
    let header = gatehouse_webhook::sign_header(&[secret], t, body.as_bytes());
    header.split_once(",v1=").unwrap().1.to_owned()
}

story!(inside_a_window_a_refusal_is_retried_at_once_with_the_other_order_and_the_order_remembered);
async fn inside_a_window_a_refusal_is_retried_at_once_with_the_other_order_and_the_order_remembered(b: Backend) {
    use gatehouse_store::webhooks::{AttemptOutcome, AttemptRecord, FinishedAttempt, SignatureLast};
    let app = TestApp::with_config(b, dev_config(false)).await;
    // A receiver that checks only the last v1 and has switched to the new secret: it refuses the first
    // order; then it is down (500 to both orders).
    let (addr, seen) = receiver(vec![400, 200, 200, 500, 500]).await;
    let (id, old) = endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    // An endpoint with nobody listening: an attempt without an answer is never reordered.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (silent, _) = endpoint(&app, &format!("http://{closed}/hook"), &["key.revoked"]).await;
    let roll = |id: String| {
        let app = &app;
        async move {
            let path = format!("/v1/webhook_endpoints/{id}/roll_secret");
            let (s, _, r) = app.call("POST", &path, Some(&app.admin), Some(json!({"overlap_secs": 3600}))).await;
            assert_eq!(s, 200, "{r}");
            r
        }
    };
    let rolled = roll(id.clone()).await;
    let new = rolled["secret"].as_str().unwrap().to_owned();
    roll(silent.clone()).await;
    let stored = |id: String| {
        let app = &app;
        async move { app.store.endpoint_by_id("default", &id).await.unwrap().unwrap() }
    };
    assert_eq!(stored(id.clone()).await.signature_last, SignatureLast::Previous, "a roll puts the old secret last");

    let (clock, now) = manual_clock(Timestamp::now().0);
    let worker = http_worker(Arc::new(app.store.clone()) as Arc<dyn Store>, dev_config(false).webhooks, clock);
    // The worker's clock is moved to the wall clock's reading after each event is written.
    let caught_up = || now.store(Timestamp::now().0, Ordering::SeqCst);
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "first"}))).await;
    caught_up();
    assert_eq!(worker.run_once().await.unwrap(), 1, "one delivery, sent twice at once");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(last_v1(&got[0].0), v1_of(&old, &got[0].0, &got[0].1), "first the old secret's signature last");
    assert_eq!(last_v1(&got[1].0), v1_of(&new, &got[1].0, &got[1].1), "then, at once, the new one's");
    let event = serde_json::from_str::<Value>(&got[0].1).unwrap()["id"].as_str().unwrap().to_owned();
    let attempts = app.store.attempts_of(&event).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(400), Some(200)], "both logged");
    assert_eq!(app.store.deliveries_of(&event).await.unwrap()[0].status, "delivered");
    assert_eq!(stored(id.clone()).await.signature_last, SignatureLast::Current, "the accepted order is remembered");

    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "second"}))).await;
    caught_up();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "the remembered order is accepted at the first attempt");
    assert_eq!(last_v1(&got[2].0), v1_of(&new, &got[2].0, &got[2].1));

    // A receiver that refuses both orders: both attempts logged, one try of the schedule (the next in
    // 5 s ± 20 %, not at once), and the remembered order left alone.
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "third"}))).await;
    caught_up();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(seen.lock().unwrap().len(), 5);
    let third = serde_json::from_str::<Value>(&seen.lock().unwrap()[3].1).unwrap()["id"].as_str().unwrap().to_owned();
    let d = app.store.deliveries_of(&third).await.unwrap().remove(0);
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1), "one try of the schedule");
    assert!(d.next_attempt_at.0 >= now.load(Ordering::SeqCst) + 3_900, "{d:?}");
    assert_eq!(worker.run_once().await.unwrap(), 0, "nothing due at once");
    assert_eq!(stored(id.clone()).await.signature_last, SignatureLast::Current);

    // No answer at all: one attempt, not reordered.
    let (_, _, k) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "gone"}))).await;
    app.call("POST", &format!("/v1/keys/{}/revoke", k["id"].as_str().unwrap()), Some(&app.admin), None).await;
    caught_up();
    worker.run_once().await.unwrap();
    let page = gatehouse_store::PageRequest { limit: 100, starting_after: None };
    let events = app.store.list_events("default", gatehouse_core::Environment::Live, &page).await.unwrap();
    let revoked = events.items.iter().find(|e| e.event_type == "key.revoked").unwrap();
    let attempts = app.store.attempts_of(&revoked.id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].status_code.is_none() && attempts[0].error.is_some());

    // An order learnt in one window never lands on the next: a result that arrives after another roll
    // leaves the new window's order as the roll set it.
    let first_window_end = stored(id.clone()).await.previous_secret_expires_at.unwrap();
    roll(id.clone()).await;
    let late = FinishedAttempt {
        refused_order: None,
        attempt: AttemptRecord {
            id: "att_late".into(),
            event_id: event.clone(),
            endpoint_id: id.clone(),
            at: Timestamp::now(),
            status_code: Some(200),
            latency_ms: 1,
            error: None,
            response_excerpt: None,
        },
        outcome: AttemptOutcome::Delivered,
        accepted_order: Some((SignatureLast::Current, first_window_end)),
        disabled_audit: gatehouse_services::audit::audit_entry(
            "default",
            "system",
            &Default::default(),
            "webhook_endpoint.disabled",
            gatehouse_services::audit::AuditTarget { kind: "webhook_endpoint", id: &id, environment: None },
            json!({}),
        ),
    };
    app.store.finish_attempts(&[late], 86_400_000).await.unwrap();
    assert_eq!(stored(id).await.signature_last, SignatureLast::Previous);
}

story!(a_rolled_secret_signs_alongside_the_old_one_during_the_overlap);
async fn a_rolled_secret_signs_alongside_the_old_one_during_the_overlap(b: Backend) {
    let app = TestApp::with_config(b, dev_config(true)).await;
    let (addr, seen) = receiver(vec![]).await;
    let (id, old) = endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    let (s, _, rolled) =
        app.call("POST", &format!("/v1/webhook_endpoints/{id}/roll_secret"), Some(&app.admin), None).await;
    assert_eq!(s, 200, "{rolled}");
    let new = rolled["secret"].as_str().unwrap().to_owned();
    assert!(
        rolled["previous_secret_expires_at"].as_i64().unwrap() > Timestamp::now().unix_seconds() + 86_000,
        "default overlap 24 h"
    );
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "a"}))).await;
    wait_for(&seen, 1).await;
    let (h, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(h["gatehouse-signature"].to_str().unwrap().matches("v1=").count(), 2);
    verify(&h, &body, &[&old]).expect("the old secret alone verifies during the overlap");
    verify(&h, &body, &[&new]).expect("the new secret alone verifies");
    // A roll with no overlap: only the newest secret signs.
    let (_, _, rolled) = app
        .call(
            "POST",
            &format!("/v1/webhook_endpoints/{id}/roll_secret"),
            Some(&app.admin),
            Some(json!({"overlap_secs": 0})),
        )
        .await;
    let newest = rolled["secret"].as_str().unwrap().to_owned();
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "b"}))).await;
    wait_for(&seen, 2).await;
    let (h, body) = seen.lock().unwrap()[1].clone();
    assert_eq!(h["gatehouse-signature"].to_str().unwrap().matches("v1=").count(), 1);
    verify(&h, &body, &[&newest]).unwrap();
    assert!(verify(&h, &body, &[&new]).is_err());
}

story!(ssrf_destinations_are_refused_when_the_endpoint_is_created);
async fn ssrf_destinations_are_refused_when_the_endpoint_is_created(b: Backend) {
    let mut cfg = crate::test_config();
    cfg.webhook_worker = false;
    let app = TestApp::with_config(b, cfg).await;
    let (addr, _) = receiver(vec![]).await;
    let (s, _, e) = app
        .call(
            "POST",
            "/v1/webhook_endpoints",
            Some(&app.admin),
            Some(json!({"url": format!("http://{addr}/"), "enabled_events": ["*"]})),
        )
        .await;
    assert_eq!(s, 400, "plain http is refused without the development switch: {e}");
    for bad in [
        json!({"url": "https://user:pw@example.com/", "enabled_events": ["*"]}),
        json!({"url": "https://example.com/#x", "enabled_events": ["*"]}),
        json!({"url": "ftp://example.com/", "enabled_events": ["*"]}),
        json!({"url": "https://example.com/", "enabled_events": ["key.exploded"]}),
        json!({"url": "https://example.com/", "enabled_events": []}),
    ] {
        let (s, _, e) = app.call("POST", "/v1/webhook_endpoints", Some(&app.admin), Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    let port = addr.port();
    // (url, the kind of address the message names); every literal spelling the URL parser accepts.
    let refused = [
        (format!("https://127.0.0.1:{port}/"), "loopback"),
        ("https://127.1/".to_owned(), "loopback"),
        ("https://2130706433/".to_owned(), "loopback"),
        ("https://0x7f.0.0.1/".to_owned(), "loopback"),
        ("https://[::1]/".to_owned(), "loopback"),
        (format!("https://[::ffff:127.0.0.1]:{port}/"), "loopback"),
        ("https://10.0.0.1/".to_owned(), "private"),
        ("https://192.168.1.1/".to_owned(), "private"),
        ("https://172.16.0.1/".to_owned(), "private"),
        ("https://[fd00::1]/".to_owned(), "unique local"),
        ("https://169.254.169.254/latest/meta-data/".to_owned(), "cloud metadata"),
        ("https://[::ffff:169.254.169.254]/".to_owned(), "cloud metadata"),
        ("https://[64:ff9b::a9fe:a9fe]/".to_owned(), "cloud metadata"),
        ("https://169.254.1.1/".to_owned(), "link-local"),
        ("https://[fe80::1]/".to_owned(), "link-local"),
        ("https://100.64.0.1/".to_owned(), "carrier-grade NAT"),
        ("https://224.0.0.1/".to_owned(), "multicast"),
        ("https://0.0.0.0/".to_owned(), "unspecified"),
        // Names are resolved at creation: `localhost` is loopback whatever it is spelled like.
        (format!("https://localhost:{port}/"), "loopback"),
        ("https://LOCALHOST./".to_owned(), "loopback"),
        ("https://api.localhost/".to_owned(), "loopback"),
    ];
    for (url, kind) in &refused {
        let (s, _, e) = app
            .call(
                "POST",
                "/v1/webhook_endpoints",
                Some(&app.admin),
                Some(json!({"url": url, "enabled_events": ["key.created"]})),
            )
            .await;
        assert_eq!(s, 400, "{url} must be refused at creation: {e}");
        assert_eq!(crate::code(&e), "invalid_request", "{url}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("SSRF guard") && msg.contains(kind), "{url}: {msg}");
    }
    // Public literals pass; a name that does not resolve now passes too (DNS may be down; the guard
    // runs again at every delivery).
    for url in ["https://8.8.8.8/hook", "https://[2606:4700::1111]/hook", "https://no-such-host.invalid/hook"] {
        let (s, _, e) = app
            .call(
                "POST",
                "/v1/webhook_endpoints",
                Some(&app.admin),
                Some(json!({"url": url, "enabled_events": ["key.created"]})),
            )
            .await;
        assert_eq!(s, 200, "{url}: {e}");
    }
    let (_, _, list) = app.call("GET", "/v1/webhook_endpoints?limit=100", Some(&app.admin), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "none of the refused ones was stored: {list}");
}

story!(private_destinations_are_accepted_only_with_the_development_switch);
async fn private_destinations_are_accepted_only_with_the_development_switch(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, _) = receiver(vec![]).await;
    for url in
        [format!("http://{addr}/"), format!("https://localhost:{}/", addr.port()), "https://10.0.0.1/".to_owned()]
    {
        let (s, _, e) = app
            .call(
                "POST",
                "/v1/webhook_endpoints",
                Some(&app.admin),
                Some(json!({"url": url, "enabled_events": ["key.created"]})),
            )
            .await;
        assert_eq!(s, 200, "{url}: {e}");
    }
}

story!(the_ssrf_guard_still_refuses_at_delivery);
async fn the_ssrf_guard_still_refuses_at_delivery(b: Backend) {
    // Endpoints that passed at creation but point at loopback now (a name whose DNS changed, or one
    // registered while the development switch was on): the worker must still refuse them.
    let mut cfg = crate::test_config();
    cfg.webhook_worker = false;
    let app = TestApp::with_config(b, cfg.clone()).await;
    let (addr, seen) = receiver(vec![]).await;
    let port = addr.port();
    let lax = gatehouse_services::webhooks::WebhookService::new(
        Arc::new(app.store.clone()),
        "default".into(),
        dev_config(false).webhooks,
    );
    for url in [
        format!("https://127.0.0.1:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://localhost:{port}/"),
    ] {
        let new = gatehouse_services::webhooks::NewEndpoint {
            url,
            event_types: vec!["key.created".into()],
            ..Default::default()
        };
        lax.create(&gatehouse_services::audit::Actor::Cli, &Default::default(), gatehouse_core::Environment::Live, new)
            .await
            .unwrap();
    }
    let (_, _, key) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "x"}))).await;
    let worker = http_worker(
        Arc::new(app.store.clone()) as Arc<dyn Store>,
        cfg.webhooks.clone(),
        gatehouse_services::webhooks::worker::system_clock(),
    );
    assert_eq!(worker.run_once().await.unwrap(), 3);
    let events = app
        .store
        .list_events(
            "default",
            gatehouse_core::Environment::Live,
            &gatehouse_store::PageRequest { limit: 10, starting_after: None },
        )
        .await
        .unwrap();
    let ev = events.items.iter().find(|e| e.body.contains(key["id"].as_str().unwrap())).unwrap();
    let attempts = app.store.attempts_of(&ev.id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    for a in &attempts {
        assert_eq!(a.status_code, None);
        assert!(a.error.as_deref().unwrap_or("").contains("SSRF guard"), "{:?}", a.error);
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the loopback receiver");
}

story!(descriptions_with_control_characters_are_refused);
async fn descriptions_with_control_characters_are_refused(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, _) = receiver(vec![]).await;
    let url = format!("http://{addr}/hook");
    let refused = [
        ("line\nbreak", "U+000A"),
        ("carriage\rreturn", "U+000D"),
        ("tab\there", "U+0009"),
        ("\u{1b}[31mred\u{1b}[0m", "U+001B"),
        ("nul\0byte", "U+0000"),
        ("delete\u{7f}", "U+007F"),
        ("c1 next line\u{85}", "U+0085"),
        ("bidi \u{202e}txt.exe", "U+202E"),
        ("isolate \u{2066}x\u{2069}", "U+2066"),
        ("line separator\u{2028}", "U+2028"),
    ];
    for (d, shown) in refused {
        let (s, _, e) = app
            .call(
                "POST",
                "/v1/webhook_endpoints",
                Some(&app.admin),
                Some(json!({"url": url, "enabled_events": ["*"], "description": d})),
            )
            .await;
        assert_eq!(s, 400, "{d:?}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("description: must not contain control characters") && msg.contains(shown),
            "{d:?}: {msg}"
        );
    }
    for d in ["Orders – payments ✓", "Bestellungen (live)", "注文の通知", ""] {
        let (s, _, e) = app
            .call(
                "POST",
                "/v1/webhook_endpoints",
                Some(&app.admin),
                Some(json!({"url": url, "enabled_events": ["*"], "description": d})),
            )
            .await;
        assert_eq!(s, 200, "{d:?}: {e}");
        assert_eq!(e["description"], d);
    }
    let (s, _, _) = app
        .call(
            "POST",
            "/v1/webhook_endpoints",
            Some(&app.admin),
            Some(json!({"url": url, "enabled_events": ["*"], "description": "x".repeat(201)})),
        )
        .await;
    assert_eq!(s, 400);
}

story!(two_workers_never_deliver_the_same_attempt_twice);
async fn two_workers_never_deliver_the_same_attempt_twice(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, seen) = receiver(vec![]).await;
    endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    for i in 0..40 {
        app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": format!("k{i}")}))).await;
    }
    let mut cfg = dev_config(false).webhooks;
    cfg.concurrency = 7;
    // Two nodes: separate connections to the same database.
    let w1 = Arc::new(http_worker(
        Arc::new(app.store.clone()) as Arc<dyn Store>,
        cfg.clone(),
        gatehouse_services::webhooks::worker::system_clock(),
    ));
    let w2 = Arc::new(http_worker(
        Arc::new(app.db.store().await) as Arc<dyn Store>,
        cfg,
        gatehouse_services::webhooks::worker::system_clock(),
    ));
    let run = |w: Arc<Worker>| tokio::spawn(async move { while w.run_once().await.unwrap() > 0 {} });
    let (a, b2) = (run(w1), run(w2));
    a.await.unwrap();
    b2.await.unwrap();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for (_, body) in seen.lock().unwrap().iter() {
        *per_event
            .entry(serde_json::from_str::<Value>(body).unwrap()["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), 40, "every event arrived");
    assert!(per_event.values().all(|n| *n == 1), "none twice: {per_event:?}");
}

story!(an_endpoint_failing_for_five_days_is_disabled_and_says_so);
async fn an_endpoint_failing_for_five_days_is_disabled_and_says_so(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, _) = receiver(vec![500; 100]).await;
    let (id, _) = endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    let (watcher, _) = receiver(vec![]).await;
    let (watch_id, _) = endpoint(&app, &format!("http://{watcher}/watch"), &["webhook_endpoint.disabled"]).await;
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "x"}))).await;
    let (clock, now) = manual_clock(Timestamp::now().0);
    let worker = http_worker(Arc::new(app.store.clone()) as Arc<dyn Store>, dev_config(false).webhooks, clock);
    worker.run_once().await.unwrap();
    for _ in 0..6 {
        now.fetch_add(24 * 3_600_000, Ordering::SeqCst);
        worker.run_once().await.unwrap();
    }
    let (_, _, e) = app.call("GET", &format!("/v1/webhook_endpoints/{id}"), Some(&app.admin), None).await;
    assert_eq!(e["status"], "disabled", "{e}");
    assert_eq!(e["disabled_reason"], "failing for too long");
    let (_, _, w) = app.call("GET", &format!("/v1/webhook_endpoints/{watch_id}"), Some(&app.admin), None).await;
    assert_eq!(w["status"], "enabled", "the healthy endpoint stays enabled");
    let (_, _, events) = app.call("GET", "/v1/events?limit=100", Some(&app.admin), None).await;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "webhook_endpoint.disabled" && e["payload"]["data"]["object"]["id"] == id.as_str()),
        "{events}"
    );
    let (_, _, audit) = app.call("GET", "/v1/audit?limit=100", Some(&app.admin), None).await;
    assert!(audit["data"].as_array().unwrap().iter().any(|a| a["action"] == "webhook_endpoint.disabled"));
}

/// A "proxy" that records the request line of every connection and answers 200.
async fn recording_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                s.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned());
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    (addr, seen)
}

story!(a_configured_proxy_carries_deliveries_and_the_ssrf_guard_judges_its_address);
async fn a_configured_proxy_carries_deliveries_and_the_ssrf_guard_judges_its_address(b: Backend) {
    let app = TestApp::with_config(b, dev_config(false)).await;
    let (addr, seen) = receiver(vec![]).await;
    let (proxy, through_proxy) = recording_proxy().await;
    endpoint(&app, &format!("http://{addr}/hook"), &["key.created"]).await;
    let lax = gatehouse_services::webhooks::WebhookService::new(
        Arc::new(app.store.clone()),
        "default".into(),
        dev_config(false).webhooks,
    );
    let new = gatehouse_services::webhooks::NewEndpoint {
        url: "https://8.8.8.8/hook".into(),
        event_types: vec!["key.created".into()],
        ..Default::default()
    };
    let (public, _) = lax
        .create(&gatehouse_services::audit::Actor::Cli, &Default::default(), gatehouse_core::Environment::Live, new)
        .await
        .unwrap();
    let store = || Arc::new(app.store.clone()) as Arc<dyn Store>;
    // Development: a loopback proxy is allowed, and the delivery goes through it.
    let mut cfg = dev_config(false).webhooks;
    cfg.proxy = Some(format!("http://{proxy}"));
    app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "via proxy"}))).await;
    let worker = http_worker(store(), cfg, gatehouse_services::webhooks::worker::system_clock());
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let lines = through_proxy.lock().unwrap().clone();
    assert!(
        lines.contains(&format!("POST http://{addr}/hook HTTP/1.1")),
        "the plain-http delivery went through the proxy: {lines:?}"
    );
    assert!(lines.contains(&"CONNECT 8.8.8.8:443 HTTP/1.1".to_owned()), "the https one tunnels through it: {lines:?}");
    assert!(seen.lock().unwrap().is_empty(), "nothing went around the proxy");
    // With the guard on, a proxy at a guarded address (literal or by name) is never contacted.
    for proxy_url in [
        format!("http://{proxy}"),
        format!("http://localhost:{}", proxy.port()),
        format!("http://[::ffff:127.0.0.1]:{}", proxy.port()),
    ] {
        through_proxy.lock().unwrap().clear();
        let mut cfg = crate::test_config().webhooks;
        cfg.proxy = Some(proxy_url.clone());
        let (_, _, key) = app.call("POST", "/v1/keys", Some(&app.admin), Some(json!({"name": "guarded"}))).await;
        let worker = http_worker(store(), cfg, gatehouse_services::webhooks::worker::system_clock());
        assert_eq!(worker.run_once().await.unwrap(), 2, "{proxy_url}");
        assert!(through_proxy.lock().unwrap().is_empty(), "{proxy_url}: {:?}", through_proxy.lock().unwrap());
        let events = app
            .store
            .list_events(
                "default",
                gatehouse_core::Environment::Live,
                &gatehouse_store::PageRequest { limit: 100, starting_after: None },
            )
            .await
            .unwrap();
        let ev = events.items.iter().find(|e| e.body.contains(key["id"].as_str().unwrap())).unwrap();
        for a in app.store.attempts_of(&ev.id).await.unwrap() {
            assert_eq!(a.status_code, None, "{proxy_url}");
            let error = a.error.unwrap_or_default();
            assert!(error.contains("SSRF guard"), "{proxy_url}: {error}");
            if a.endpoint_id == public.id {
                // The destination is public: what was refused is the proxy.
                assert!(error.contains("127.0.0.1") || error.contains("localhost"), "{proxy_url}: {error}");
            }
        }
    }
}
