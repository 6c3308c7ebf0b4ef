//! `/dashboard/webhooks` over real HTTP: add an endpoint with event checkboxes (the signing secret
//! shown once), roll with an overlap and its end time, disable and enable; the SSRF rules refuse
//! private destinations; a member's forged posts are 403 and change nothing.

use gatehouse_core::Environment;
use gatehouse_store::testing::Backend;
use gatehouse_store::webhooks::EndpointRecord;
use gatehouse_store::{PageRequest, WebhookStore};
use reqwest::StatusCode;

use crate::dashboard_audit::sign_in_as;
use crate::{story, TestApp};

async fn endpoints(app: &TestApp) -> Vec<EndpointRecord> {
    let page = PageRequest { limit: 100, starting_after: None };
    let mut all = app.store.list_endpoints("default", Environment::Live, &page).await.unwrap().items;
    all.extend(app.store.list_endpoints("default", Environment::Test, &page).await.unwrap().items);
    all
}

fn secret_of(html: &str) -> Option<String> {
    let at = html.find("id=\"signing-secret\" value=\"")? + 27;
    Some(html[at..].split('"').next()?.to_owned())
}

story!(webhooks_add_roll_disable_enable_and_roles);
async fn webhooks_add_roll_disable_enable_and_roles(b: Backend) {
    let app = TestApp::new(b).await;
    let owner = sign_in_as(&app, "owner").await;
    let member = sign_in_as(&app, "member").await;
    let token = owner.csrf().await;
    let add = |url: &str, token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("environment", "live".to_owned()),
            ("url", url.to_owned()),
            ("description", "<script>alert(1)</script>".to_owned()),
            ("event_types", "key.created".to_owned()),
            ("event_types", "key.revoked".to_owned()),
            ("standard_headers", "1".to_owned()),
        ]
    };
    let pairs = |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();

    // A public destination (an IP literal, so no DNS is needed): the secret once, the types checked.
    let form = pairs(&add("https://93.184.215.14/hooks", &token));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = owner.post("/dashboard/webhooks", &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let secret = secret_of(&html).expect("the signing secret, once");
    assert!(secret.starts_with("whsec_"));
    assert!(html.contains("<label for=\"signing-secret\">Signing secret</label>") && !html.contains("<script>alert"));
    let all = endpoints(&app).await;
    assert_eq!(all.len(), 1);
    let e = &all[0];
    assert_eq!(e.event_types, ["key.created", "key.revoked"]);
    assert!(e.standard_headers);
    assert_eq!(e.created_by, owner.user.id);
    let page_path = format!("/dashboard/webhooks/{}", e.id);
    let (status, page) = owner.get(&page_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&secret) && secret_of(&page).is_none(), "the secret is never shown again");
    let (status, list) = owner.get("/dashboard/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("https://93.184.215.14/hooks") && list.contains("value=\"key.leaked\""));

    // A member: pages and posts refused, nothing changed.
    assert_eq!(member.get("/dashboard/webhooks").await.0, StatusCode::FORBIDDEN);
    assert_eq!(member.get(&page_path).await.0, StatusCode::FORBIDDEN);
    let m_token = member.csrf().await;
    let m_add = pairs(&add("https://93.184.215.15/hooks", &m_token));
    let m_add: Vec<(&str, &str)> = m_add.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let roll_path = format!("{page_path}/roll");
    let disable_path = format!("{page_path}/disable");
    let enable_path = format!("{page_path}/enable");
    let actions: [(&str, Vec<(&str, &str)>); 4] = [
        ("/dashboard/webhooks", m_add),
        (&roll_path, vec![("csrf", m_token.as_str()), ("overlap_secs", "0")]),
        (&disable_path, vec![("csrf", m_token.as_str())]),
        (&enable_path, vec![("csrf", m_token.as_str())]),
    ];
    for (path, form) in &actions {
        assert_eq!(member.post(path, form).await.0, StatusCode::FORBIDDEN, "member POST {path}");
    }
    assert_eq!(endpoints(&app).await, all, "a member's posts changed nothing");
    // A viewer reads every page but each post, with the viewer's own valid form token, is refused.
    let viewer = sign_in_as(&app, "viewer").await;
    assert_eq!(viewer.get("/dashboard/webhooks").await.0, StatusCode::OK);
    assert_eq!(viewer.get(&page_path).await.0, StatusCode::OK);
    let v_token = viewer.csrf().await;
    for (path, form) in &actions {
        let form: Vec<(&str, &str)> =
            form.iter().map(|(k, v)| (*k, if *k == "csrf" { v_token.as_str() } else { *v })).collect();
        assert_eq!(viewer.post(path, &form).await.0, StatusCode::FORBIDDEN, "viewer POST {path}");
    }
    assert_eq!(endpoints(&app).await, all, "a viewer's posts changed nothing");
    let (status, _, _) = owner.post(&disable_path, &[("csrf", m_token.as_str())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another session's token");
    assert_eq!(endpoints(&app).await, all);

    // SSRF and other bad URLs: 400 with the reason, nothing stored.
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "javascript:alert(1)",
        "https://user:pw@93.184.215.14/",
        "not a url",
    ] {
        let form = pairs(&add(url, &token));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, html) = owner.post("/dashboard/webhooks", &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert!(html.contains("role=\"alert\""), "{url}: the form says what is wrong");
    }
    let mut unknown = pairs(&add("https://93.184.215.14/x", &token));
    unknown.push(("event_types", "<script>".into()));
    let unknown: Vec<(&str, &str)> = unknown.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = owner.post("/dashboard/webhooks", &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<script>`"));
    assert_eq!(endpoints(&app).await.len(), 1, "no bad endpoint was stored");
    assert_eq!(owner.get("/dashboard/webhooks/we_nonsense").await.0, StatusCode::NOT_FOUND);

    // Roll with a one-hour overlap: a new secret once, the window's end shown, both secrets live.
    let (status, _, html) = owner.post(&roll_path, &[("csrf", &token), ("overlap_secs", "3600")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let rolled = secret_of(&html).expect("the new secret, once");
    assert_ne!(rolled, secret);
    assert!(
        html.contains("Both secrets sign until") && html.contains("Give your receiver the new secret before then"),
        "{html}"
    );
    let after = endpoints(&app).await.remove(0);
    assert_eq!(after.live_secrets(gatehouse_core::Timestamp::now()), [rolled.as_str(), secret.as_str()]);
    let (_, page) = owner.get(&page_path).await;
    assert!(page.contains("still signs until") && !page.contains(&rolled) && !page.contains(&secret));
    let (status, _, _) = owner.post(&roll_path, &[("csrf", &token), ("overlap_secs", "9999999")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an overlap past seven days");

    // Disable, then enable: 303 back to the endpoint's page each time.
    let (status, loc, _) = owner.post(&disable_path, &[("csrf", &token)]).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, page_path.as_str()));
    assert!(endpoints(&app).await[0].disabled_at.is_some());
    let (_, page) = owner.get(&page_path).await;
    assert!(page.contains("Enable endpoint"));
    let (status, _, _) = owner.post(&enable_path, &[("csrf", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(endpoints(&app).await[0].disabled_at.is_none());
}

story!(webhook_deliveries_show_every_attempt_and_resend);
async fn webhook_deliveries_show_every_attempt_and_resend(b: Backend) {
    // A local receiver that refuses every delivery with a hostile body.
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "<script>nope</script>") }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, receiver).await });
    let mut config = crate::test_config();
    config.webhooks.allow_private_destinations = true;
    config.webhooks.poll_interval = std::time::Duration::from_millis(20);
    config.webhook_worker = true;
    let app = TestApp::with_config(b, config).await;
    let owner = sign_in_as(&app, "owner").await;
    let token = owner.csrf().await;
    let url = format!("http://{addr}/hook");
    let form = [("csrf", token.as_str()), ("environment", "live"), ("url", &url), ("event_types", "key.created")];
    let (status, _, html) = owner.post("/dashboard/webhooks", &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let id = endpoints(&app).await.remove(0).id;
    let page_path = format!("/dashboard/webhooks/{id}");
    assert!(owner.get(&page_path).await.1.contains("No deliveries yet."));

    // A key is created: its event is delivered, refused, and the attempt shows (reload until it does).
    app.cli_key(crate::sk(Environment::Live)).await;
    let attempts = |html: &str| html.matches("<td>500</td>").count();
    let mut html = String::new();
    for _ in 0..100 {
        html = owner.get(&page_path).await.1;
        if attempts(&html) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(attempts(&html) >= 1, "an attempt appears: {html}");
    assert!(html.contains("key.created"));
    assert!(html.contains("&#60;script&#62;nope&#60;/script&#62;") && !html.contains("<script>nope"), "escaped");
    assert!(html.contains(" ms</td>"), "with its latency");

    // Resend: 303 back to the page, and another attempt follows.
    let event_at = html.find("name=\"event_id\" value=\"").unwrap() + 23;
    let event_id = html[event_at..].split('"').next().unwrap().to_owned();
    let before = attempts(&html);
    let (status, loc, _) =
        owner.post(&format!("{page_path}/resend"), &[("csrf", &token), ("event_id", &event_id)]).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, page_path.as_str()));
    let mut more = false;
    for _ in 0..100 {
        if attempts(&owner.get(&page_path).await.1) > before {
            more = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(more, "the resent delivery is attempted again");
    let member = sign_in_as(&app, "member").await;
    let m_token = member.csrf().await;
    // Send test event: a real event of the test type, to this endpoint alone, audited; its attempt shows.
    let other_url = format!("http://{addr}/other");
    let other = [("csrf", token.as_str()), ("environment", "live"), ("url", &other_url), ("event_types", "*")];
    assert_eq!(owner.post("/dashboard/webhooks", &other).await.0, StatusCode::OK);
    let other_id = endpoints(&app).await.into_iter().find(|e| e.url == other_url).unwrap().id;
    let (status, loc, _) = owner.post(&format!("{page_path}/test"), &[("csrf", &token)]).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, page_path.as_str()));
    let mut html = String::new();
    for _ in 0..100 {
        html = owner.get(&page_path).await.1;
        if html.contains("webhook_endpoint.test <code>") && html.matches("<td>500</td>").count() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(html.contains("webhook_endpoint.test <code>"), "the test event's delivery is listed: {html}");
    let other_page = owner.get(&format!("/dashboard/webhooks/{other_id}")).await.1;
    assert!(!other_page.contains("webhook_endpoint.test"), "no other endpoint gets the test event");
    let audited = owner.get(&format!("/dashboard/audit?action=webhook_endpoint.test_sent&target={id}")).await.1;
    assert!(audited.contains(owner.user.id.as_str()), "sending a test event is audited with its actor");
    let (status, _, _) = member.post(&format!("{page_path}/test"), &[("csrf", &m_token)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _, _) =
        owner.post(&format!("{page_path}/resend"), &[("csrf", &token), ("event_id", "evt_nonsense")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) =
        member.post(&format!("{page_path}/resend"), &[("csrf", &m_token), ("event_id", &event_id)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
