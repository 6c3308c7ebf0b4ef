//! Signing in across hosts (SPEC §3 "Sessions"): the control plane signs the user in, the app host
//! gets its own cookie through `/__gatehouse/callback`; CSRF, no open redirect, throttling, tickets
//! that work once and only on their host, and logout ending the whole login.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_services::users::Users;
use gatehouse_store::testing::Backend;
use gatehouse_store::Store;
use reqwest::StatusCode;

use crate::gateway::Gw;
use crate::story;

const EMAIL: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";

struct Browser {
    client: reqwest::Client,
}

impl Browser {
    fn new() -> Self {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { client }
    }

    async fn get(&self, url: &str) -> (StatusCode, String, String) {
        let r = self.client.get(url).header("accept", "text/html").send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let r = self.client.post(url).form(form).send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// The browser binding the login form carries (the hash of the app host's state cookie).
fn state_of(html: &str) -> String {
    let at = html.find("name=\"state\" value=\"").expect("a state field") + 20;
    html[at..].split('"').next().unwrap().to_owned()
}

fn return_to_of(login_url: &str) -> String {
    let enc = login_url.split("return_to=").nth(1).unwrap().split('&').next().unwrap();
    let mut out = String::new();
    let b = enc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&enc[i + 1..i + 3], 16).unwrap() as char);
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

async fn with_owner(b: Backend) -> Gw {
    let gw = Gw::start(b, None, Duration::from_secs(5)).await;
    let users = Users::new(Arc::new(gw.cp.store.clone()) as Arc<dyn Store>, "default".into());
    users.create_owner(EMAIL, PASSWORD, "test").await.unwrap();
    gw
}

story!(sign_in_on_the_control_plane_lands_on_the_app_and_logout_locks_out);
async fn sign_in_on_the_control_plane_lands_on_the_app_and_logout_locks_out(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (s, login_url, _) = br.get(&gw.url("/account?tab=2")).await;
    assert_eq!(s, 302);
    let (s, _, form) = br.get(&login_url).await;
    assert_eq!(s, 200);
    assert!(form.contains(r#"name="email""#) && form.contains(r#"name="password""#));
    let rt = return_to_of(&login_url);
    let csrf = csrf_of(&form);
    assert_eq!(state_of(&form).len(), 64, "the sign-in is bound to this browser");
    let (s, callback, _) = br
        .post(
            &gw.cp.url("/login"),
            &[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("return_to", &rt),
                ("state", &state_of(&form)),
            ],
        )
        .await;
    assert_eq!(s, 303);
    assert!(callback.starts_with(&format!("http://{}/__gatehouse/callback?ticket=", gw.host)), "{callback}");
    let (s, back, _) = br.get(&callback).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/account?tab=2"), "lands on the page asked for");
    let (s, _, body) = br.get(&gw.url("/account?tab=2")).await;
    assert_eq!(s, 200, "{body}");
    let (_, pq, h) = gw.last_seen();
    assert_eq!(pq, "/account?tab=2");
    assert_eq!((h["x-gatehouse-auth"].to_str().unwrap(), h["x-gatehouse-email"].to_str().unwrap()), ("session", EMAIL));
    assert!(
        h.get("cookie").is_none_or(|c| !c.to_str().unwrap().contains("session")),
        "no session cookie reaches the app"
    );

    // The ticket worked once.
    let (s, _, _) = Browser::new().get(&callback).await;
    assert_eq!(s, 400, "a used ticket is refused");

    // Sign out on the app host: the app session and the control-plane login both end.
    let (_, _, page) = br.get(&gw.url("/__gatehouse/logout")).await;
    let (s, to, _) = br.post(&gw.url("/__gatehouse/logout"), &[("csrf", &csrf_of(&page))]).await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (s, again, _) = br.get(&gw.url("/account")).await;
    assert_eq!(s, 302, "locked out again");
    let (s, _, form) = br.get(&again).await;
    assert_eq!(s, 200, "the control plane asks for the password again rather than bouncing back");
    assert!(form.contains("Sign in"));
}

story!(forged_and_foreign_requests_are_refused);
async fn forged_and_foreign_requests_are_refused(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    // No or wrong CSRF token: refused, and no session.
    let (s, loc, _) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", "00")]).await;
    assert_eq!((s, loc.as_str()), (StatusCode::FORBIDDEN, ""));
    let fresh = Browser::new();
    let (s, _, _) =
        fresh.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a token from another browser is worthless");
    // No open redirect, on GET or POST.
    for evil in ["http://evil.example/", "//evil.example/x", "https://evil.example@127.0.0.1/", "javascript:alert(1)"] {
        let (s, loc, _) =
            br.get(&format!("{}?return_to={}", gw.cp.url("/login"), gatehouse_server::login::url_encode(evil))).await;
        assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""), "{evil}");
        let (s, loc, _) = br
            .post(
                &gw.cp.url("/login"),
                &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf), ("return_to", evil)],
            )
            .await;
        assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""), "{evil}");
    }
    // A ticket for one host does not open a session on another.
    let (_, login_url, _) = br.get(&gw.url("/")).await;
    let (_, _, form) = br.get(&login_url).await;
    let (s, callback, _) = br
        .post(
            &gw.cp.url("/login"),
            &[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("return_to", &gw.url("/")),
                ("state", &state_of(&form)),
            ],
        )
        .await;
    assert_eq!(s, 303);
    let ticket = callback.split("ticket=").nth(1).unwrap().split('&').next().unwrap();
    let other = Browser::new();
    let r = other
        .client
        .get(format!("http://{}/__gatehouse/callback?ticket={ticket}&return_to=/", gw.addr))
        .header("host", "localhost.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown host");
    // The callback never redirects off the app host.
    let (s, back, _) =
        br.get(&format!("{}?ticket={ticket}&return_to=//evil.example/", gw.url("/__gatehouse/callback"))).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/"));
}

story!(failed_sign_ins_are_throttled);
async fn failed_sign_ins_are_throttled(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    for _ in 0..5 {
        let (s, _, page) =
            br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", "wrong password"), ("csrf", &csrf)]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(page.contains("Wrong email or password"));
    }
    let r = br
        .client
        .post(gw.cp.url("/login"))
        .form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "even the right password waits");
    assert!(r.headers().contains_key("retry-after"));
    // Unknown accounts are throttled per IP as well, and answer exactly like wrong passwords.
    let (s, _, page) =
        br.post(&gw.cp.url("/login"), &[("email", "nobody@example.com"), ("password", "x"), ("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "the IP has failed five times");
    assert!(page.contains("Too many failed attempts"));
}

#[tokio::test]
async fn setup_link_creates_the_owner_once() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let br = Browser::new();
    let (s, _, _) = br.get(&gw.cp.url("/setup?token=guess")).await;
    assert_eq!(s, 404, "no setup without the printed token");
    let token = gatehouse_services::sessions::new_token().0;
    *gw.cp.state.web.setup_token.lock() = Some(token.clone());
    let (s, _, form) = br.get(&gw.cp.url(&format!("/setup?token={token}"))).await;
    assert_eq!(s, 200);
    let csrf = csrf_of(&form);
    let (s, _, page) = br
        .post(&gw.cp.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", "short"), ("csrf", &csrf)])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("at least 10 characters"));
    let (s, to, _) = br
        .post(&gw.cp.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)])
        .await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/login"));
    let (s, _, _) = br.get(&gw.cp.url(&format!("/setup?token={token}"))).await;
    assert_eq!(s, 404, "the link works once");
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let (s, to, _) =
        br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form))]).await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/"), "the new owner can sign in");
}

/// A browser holding a valid setup link and its form's CSRF token, on `app`.
async fn setup_form(app: &crate::TestApp) -> (Browser, String, String) {
    let br = Browser::new();
    let token = gatehouse_services::sessions::new_token().0;
    *app.state.web.setup_token.lock() = Some(token.clone());
    let (s, _, form) = br.get(&app.url(&format!("/setup?token={token}"))).await;
    assert_eq!(s, 200);
    let csrf = csrf_of(&form);
    (br, token, csrf)
}

story!(setup_storage_outage_is_503_and_leaks_no_store_internals);
async fn setup_storage_outage_is_503_and_leaks_no_store_internals(b: Backend) {
    let app = crate::TestApp::new(b).await;
    let (br, token, csrf) = setup_form(&app).await;
    app.store.close().await;
    let (s, _, page) = br
        .post(&app.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)])
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "fails closed like every other page: {page}");
    assert!(page.contains("cannot reach its storage"), "{page}");
    for internal in ["storage is unavailable", "pool", "sqlx", "connection", "database", "closed", "role=\"alert\""] {
        assert!(!page.to_lowercase().contains(internal), "the page quotes the store ({internal}): {page}");
    }
    assert!(app.state.web.setup_token.lock().is_some(), "nothing was created, so the link still works");
    // Input the setup can judge without storage is still the caller's to fix: 400 with what is wrong.
    let (s, _, page) = br
        .post(&app.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", "short"), ("csrf", &csrf)])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("at least 10 characters"), "{page}");
    let (s, _, page) = br
        .post(
            &app.url("/setup"),
            &[("token", &token), ("email", "not-an-email"), ("password", PASSWORD), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("is not an email address"), "{page}");
}

story!(setup_while_every_hashing_slot_is_busy_is_503_with_retry_after);
async fn setup_while_every_hashing_slot_is_busy_is_503_with_retry_after(b: Backend) {
    let mut config = crate::test_config();
    config.sign_in.max_concurrent_hashes = 1;
    config.sign_in.hash_wait = Duration::from_millis(1);
    let app = crate::TestApp::with_config(b, config).await;
    // The email is taken, so every setup that gets a hashing slot ends 400 and the link stays usable.
    let users = Users::new(Arc::new(app.store.clone()) as Arc<dyn Store>, "default".into());
    users.create("taken@example.com", PASSWORD, "member", "test").await.unwrap();
    let (br, token, csrf) = setup_form(&app).await;
    let mut answers = vec![];
    for _ in 0..10 {
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (client, url) = (br.client.clone(), app.url("/setup"));
                let form = [
                    ("token", token.clone()),
                    ("email", "taken@example.com".into()),
                    ("password", PASSWORD.into()),
                    ("csrf", csrf.clone()),
                ];
                tokio::spawn(async move {
                    let r = client.post(url).form(&form).send().await.unwrap();
                    (r.status().as_u16(), r.headers().get("retry-after").cloned(), r.text().await.unwrap())
                })
            })
            .collect();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        if answers.iter().any(|a| a.0 == 503) {
            break;
        }
    }
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        !busy.is_empty(),
        "some setups found the only slot taken: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (_, retry_after, page) in &busy {
        assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
        assert!(page.contains("Gatehouse is busy"), "{page}");
    }
    for (status, _, page) in answers.iter().filter(|a| a.0 != 503) {
        assert_eq!(*status, 400, "{page}");
        assert!(page.contains("a user with email taken@example.com already exists"), "{page}");
    }
    assert_eq!(users.list().await.unwrap().len(), 1, "nothing was created");
}

story!(a_logout_on_another_node_ends_the_session_here_within_a_second);
async fn a_logout_on_another_node_ends_the_session_here_within_a_second(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, login_url, _) = br.get(&gw.url("/")).await;
    let (_, _, form) = br.get(&login_url).await;
    let rt = return_to_of(&login_url);
    let fields = [
        ("email", EMAIL),
        ("password", PASSWORD),
        ("csrf", &csrf_of(&form)),
        ("return_to", &rt),
        ("state", &state_of(&form)),
    ];
    let (_, callback, _) = br.post(&gw.cp.url("/login"), &fields).await;
    let r = br.client.get(&callback).send().await.unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|c| c.strip_prefix("gatehouse_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(br.get(&gw.url("/")).await.0, 200, "signed in and cached");
    // Another node: its own state on the same database.
    let other_store = gw.cp.db.store().await;
    let other = gatehouse_server::App::build(gw.cp.config.clone(), Arc::new(other_store) as Arc<dyn Store>, vec![])
        .await
        .unwrap();
    other.state.sessions.end(&cookie).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let (s, _, _) = br.get(&gw.url("/")).await;
        if s == 302 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "the other node's logout was not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- SPEC §11 "Sign-in": the throttle is atomic, shared through storage, and hashing is capped. ----

/// Posts `n` sign-ins at once from `br`, each with `(email, password, x-forwarded-for)` from `attempt(i)`;
/// returns the statuses.
async fn burst(
    gw: &Gw,
    br: &Browser,
    csrf: &str,
    n: usize,
    attempt: impl Fn(usize) -> (String, String, Option<String>),
) -> Vec<u16> {
    let mut tasks = vec![];
    for i in 0..n {
        let (email, password, xff) = attempt(i);
        let client = br.client.clone();
        let url = gw.cp.url("/login");
        let csrf = csrf.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rb = client.post(url).form(&[
                ("email", email.as_str()),
                ("password", password.as_str()),
                ("csrf", csrf.as_str()),
            ]);
            if let Some(x) = xff {
                rb = rb.header("x-forwarded-for", x);
            }
            rb.send().await.unwrap().status().as_u16()
        }));
    }
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

story!(throttle_race_a_concurrent_burst_of_wrong_passwords_spends_only_the_allowance);
async fn throttle_race_a_concurrent_burst_of_wrong_passwords_spends_only_the_allowance(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    let before = gw.cp.state.users.password_checks();
    let statuses = burst(&gw, &br, &csrf, 40, |_| (EMAIL.into(), "wrong password".into(), None)).await;
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (5, 35),
        "as five sequential failures then waits: {statuses:?}"
    );
    assert_eq!(gw.cp.state.users.password_checks() - before, 5, "only the allowance was evaluated by Argon2");
    // Two more failures, each once its wait is over, take the account's lock from 1 s to 4 s, so the next burst
    // cannot outlast the lock on a loaded machine.
    for _ in 0..2 {
        loop {
            match gw.cp.state.users.sign_in(EMAIL, "wrong password", None).await.unwrap() {
                gatehouse_services::users::SignIn::Throttled(wait) => tokio::time::sleep(wait).await,
                gatehouse_services::users::SignIn::Wrong => break,
                other => panic!("a wrong password after the wait: {other:?}"),
            }
        }
    }
    // Another burst right away, now with the right password: still nothing is evaluated.
    let statuses = burst(&gw, &br, &csrf, 10, |_| (EMAIL.into(), PASSWORD.into(), None)).await;
    assert_eq!(count(&statuses, 429), 10, "{statuses:?}");
    assert_eq!(
        gw.cp.state.users.password_checks() - before,
        7,
        "the two waited-for failures, and nothing of the burst"
    );
    // A different account from another address is untouched by this account's lock.
    let cfg_check =
        gw.cp.state.users.sign_in("nobody@example.com", "x", Some("203.0.113.9".parse().unwrap())).await.unwrap();
    assert!(matches!(cfg_check, gatehouse_services::users::SignIn::Wrong), "{cfg_check:?}");
}

story!(throttle_state_survives_a_restart_and_is_shared_by_nodes_on_one_database);
async fn throttle_state_survives_a_restart_and_is_shared_by_nodes_on_one_database(b: Backend) {
    use gatehouse_services::users::SignIn;
    let gw = with_owner(b).await;
    let ip = Some("198.51.100.7".parse().unwrap());
    // Node A takes three failures, node B (its own state, same database) two more.
    let node_b =
        gatehouse_server::App::build(gw.cp.config.clone(), Arc::new(gw.cp.db.store().await) as Arc<dyn Store>, vec![])
            .await
            .unwrap();
    for _ in 0..3 {
        assert!(matches!(gw.cp.state.users.sign_in(EMAIL, "wrong password", ip).await.unwrap(), SignIn::Wrong));
    }
    for _ in 0..2 {
        assert!(matches!(node_b.state.users.sign_in(EMAIL, "wrong password", ip).await.unwrap(), SignIn::Wrong));
    }
    // The allowance of five is spent across both nodes: each refuses the right password now.
    for node in [&gw.cp.state, &node_b.state] {
        let r = node.users.sign_in(EMAIL, PASSWORD, Some("192.0.2.1".parse().unwrap())).await.unwrap();
        assert!(matches!(r, SignIn::Throttled(_)), "the account is locked on every node: {r:?}");
    }
    // A restart (a new App on the same database) keeps the lock; so does the real server over HTTP.
    drop(node_b);
    let restarted =
        gatehouse_server::App::build(gw.cp.config.clone(), Arc::new(gw.cp.db.store().await) as Arc<dyn Store>, vec![])
            .await
            .unwrap();
    let r = restarted.state.users.sign_in(EMAIL, PASSWORD, None).await.unwrap();
    assert!(matches!(r, SignIn::Throttled(_)), "a restart does not clear the lock: {r:?}");
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let r = br
        .client
        .post(gw.cp.url("/login"))
        .form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "one second after the fifth failure: {wait}");
    // Once the wait is over, the right password works and the account starts over.
    // A sleep on purpose: the lock is a span of time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(restarted.state.users.sign_in(EMAIL, PASSWORD, None).await.unwrap(), SignIn::Ok(_)));
    assert!(
        matches!(gw.cp.state.users.sign_in(EMAIL, "wrong password", None).await.unwrap(), SignIn::Wrong),
        "a fresh allowance"
    );
}

story!(argon2_flood_hashing_is_capped_and_a_full_cap_answers_503);
async fn argon2_flood_hashing_is_capped_and_a_full_cap_answers_503(b: Backend) {
    let mut config = crate::test_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.sign_in.max_concurrent_hashes = 2;
    config.sign_in.hash_wait = Duration::from_secs(30);
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    let rss_before = vm_kib("VmRSS");
    // Forty different accounts from forty addresses: no throttle applies, so every one is hashed —
    // but never more than two at a time.
    let statuses = burst(&gw, &br, &csrf, 40, |i| {
        (format!("user{i}@example.com"), "guess".into(), Some(format!("203.0.113.{}", i + 1)))
    })
    .await;
    assert_eq!(count(&statuses, 401), 40, "{statuses:?}");
    assert_eq!(gw.cp.state.users.password_checks(), 40);
    assert_eq!(gw.cp.state.users.peak_concurrent_hashes(), 2, "the cap held");
    // 40 hashes at once would be 40 × 19 MiB; the cap keeps the peak near 2 × 19 MiB.
    if let (Some(before), Some(peak)) = (rss_before, vm_kib("VmHWM")) {
        assert!(peak.saturating_sub(before) < 200 * 1024, "memory grew by {} MiB", (peak - before) / 1024);
    }

    // With one slot and a short wait, a flood gets 503 (Retry-After) instead of queueing without bound,
    // and the attempts it could not check are not counted against anyone.
    let mut config = crate::test_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.sign_in.max_concurrent_hashes = 1;
    config.sign_in.hash_wait = Duration::from_millis(1);
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    let statuses =
        burst(&gw, &br, &csrf, 30, |i| (format!("user{i}@example.com"), "guess".into(), Some("198.51.100.1".into())))
            .await;
    let busy = count(&statuses, 503);
    assert!(busy > 0, "some attempts found the slot taken: {statuses:?}");
    assert_eq!(count(&statuses, 401) + count(&statuses, 429) + busy, 30, "{statuses:?}");
    assert!(count(&statuses, 401) <= 5, "the address's allowance still holds: {statuses:?}");
    assert_eq!(gw.cp.state.users.peak_concurrent_hashes(), 1);
}

/// A `/proc/self/status` figure in KiB (Linux), if there is one.
fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

story!(failed_sign_ins_are_audited_in_summary_and_a_lock_is_audited_once);
async fn failed_sign_ins_are_audited_in_summary_and_a_lock_is_audited_once(b: Backend) {
    use gatehouse_store::{AuditStore, PageRequest};
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    let secret_guess = "hunter2-the-guessed-password";
    let statuses = burst(&gw, &br, &csrf, 30, |_| (EMAIL.into(), secret_guess.into(), None)).await;
    assert_eq!(count(&statuses, 401), 5);
    // Unknown accounts are not audited (a flood of invented emails must not fill the log).
    burst(&gw, &br, &csrf, 3, |i| (format!("ghost{i}@example.com"), secret_guess.into(), Some("1.2.3.4".into()))).await;
    let page =
        gw.cp.store.list_audit("default", None, &PageRequest { limit: 100, starting_after: None }).await.unwrap();
    let ours: Vec<_> =
        page.items.iter().filter(|e| e.action.starts_with("user.") && e.action != "user.created").collect();
    let mut summary: Vec<(String, i64)> =
        ours.iter().map(|e| (e.action.clone(), e.details["failures"].as_i64().unwrap())).collect();
    summary.sort_by_key(|(action, n)| (*n, action.clone()));
    assert_eq!(
        summary,
        [
            ("user.sign_in_failed".to_owned(), 1),
            ("user.sign_in_failed".to_owned(), 2),
            ("user.sign_in_failed".to_owned(), 4),
            ("user.locked".to_owned(), 5)
        ],
        "thirty attempts, four entries"
    );
    for e in &ours {
        assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(e.details["email"], EMAIL);
        assert!(!format!("{e:?}").contains(secret_guess), "no password in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_logged_without_what_was_typed() {
    let (capture, installed) = crate::logs::Capture::install();
    let gw = with_owner(Backend::Sqlite).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    let typed_password = "s3cret-typed-into-the-password-field";
    let typed_email = "s3cret-typed-into-the-email-field";
    br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", typed_password), ("csrf", &csrf)]).await;
    br.post(&gw.cp.url("/login"), &[("email", typed_email), ("password", typed_password), ("csrf", &csrf)]).await;
    let owner = gw.cp.state.users.find(EMAIL).await.unwrap().unwrap();
    let text = capture.text();
    if installed {
        assert!(
            text.contains("sign-in failed") && text.contains(&owner.id),
            "failures are logged with the account id:\n{text}"
        );
        assert!(text.contains("unknown or disabled account"), "{text}");
    }
    assert!(!text.contains(typed_password) && !text.contains(typed_email), "nothing typed reaches the logs");
}

// ---- SPEC §11 "The cross-host ticket": bound to the browser that started the sign-in; local paths only. ----

/// Signs `br` in at the control plane through the app host (as a browser sent from `/private` would
/// be) and returns the callback URL with its ticket, not yet followed.
async fn ticket_for(gw: &Gw, br: &Browser, email: &str, password: &str) -> String {
    let (s, login_url, _) = br.get(&gw.url("/__gatehouse/signin?return_to=%2Fprivate")).await;
    assert_eq!(s, 302);
    let (s, callback, form) = br.get(&login_url).await;
    if s == StatusCode::SEE_OTHER {
        return callback; // already signed in at the control plane
    }
    let fields = [
        ("email", email),
        ("password", password),
        ("csrf", &csrf_of(&form)),
        ("return_to", &return_to_of(&login_url)),
        ("state", &state_of(&form)),
    ];
    let (s, callback, _) = br.post(&gw.cp.url("/login"), &fields).await;
    assert_eq!(s, 303);
    assert!(callback.contains("/__gatehouse/callback?ticket="), "{callback}");
    callback
}

story!(login_csrf_an_attackers_ticket_does_not_sign_in_another_browser);
async fn login_csrf_an_attackers_ticket_does_not_sign_in_another_browser(b: Backend) {
    let gw = with_owner(b).await;
    let users = Users::new(Arc::new(gw.cp.store.clone()) as Arc<dyn Store>, "default".into());
    users.create("attacker@example.com", "attacker password 1", "member", "test").await.unwrap();
    let attacker = Browser::new();
    // The victim: a fresh browser, and one that has started a sign-in of its own (its own state cookie).
    for victim_started in [false, true] {
        let planted = ticket_for(&gw, &attacker, "attacker@example.com", "attacker password 1").await;
        let victim = Browser::new();
        if victim_started {
            let (s, _, _) = victim.get(&gw.url("/private")).await;
            assert_eq!(s, 302, "the victim's own sign-in sets its state cookie");
        }
        let r = victim.client.get(&planted).header("accept", "text/html").send().await.unwrap();
        assert_eq!(r.status(), 400, "victim_started={victim_started}");
        assert!(
            !r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("gatehouse_session=")),
            "no app session is opened for the attacker's account"
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("started in another browser"), "{page}");
        let (s, _, _) = victim.get(&gw.url("/private")).await;
        assert_eq!(s, 302, "the victim is not signed in as anyone");
        // The planted ticket is spent: not even its owner can use it now.
        let (s, _, _) = attacker.get(&planted).await;
        assert_eq!(s, 400);
    }
    // The attacker's own browser, with its own ticket, is signed in as usual.
    let mine = ticket_for(&gw, &attacker, "attacker@example.com", "attacker password 1").await;
    let (s, back, _) = attacker.get(&mine).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/private"));
    let r = attacker.client.get(gw.url("/private")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.last_seen().2["x-gatehouse-email"], "attacker@example.com");
    // The state cookie is single use and only ever sent to /__gatehouse/ (never to the app).
    let (s, _, _) = attacker.get(&mine).await;
    assert_eq!(s, 400);
    assert!(gw
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|(_, _, h)| h.get("cookie").is_none_or(|c| !c.to_str().unwrap().contains("gatehouse_state"))));
}

story!(login_csrf_a_ticket_from_another_tab_is_refused_with_a_way_on);
async fn login_csrf_a_ticket_from_another_tab_is_refused_with_a_way_on(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let first = ticket_for(&gw, &br, EMAIL, PASSWORD).await;
    // A second tab starts another sign-in: its state cookie replaces the first one.
    let (s, _, _) = br.get(&gw.url("/other")).await;
    assert_eq!(s, 302);
    let (s, _, page) = br.get(&first).await;
    assert_eq!(s, 400);
    assert!(page.contains(r#"<a href="/private">Continue</a>"#), "{page}");
    // Following the way on signs in at once (the control plane still has the login).
    let again = ticket_for(&gw, &br, EMAIL, PASSWORD).await;
    let (s, back, _) = br.get(&again).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/private"));
}

story!(a_sign_in_started_on_the_control_plane_is_bound_through_the_app_host);
async fn a_sign_in_started_on_the_control_plane_is_bound_through_the_app_host(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    // A bookmark of the control plane's login page with an app address to return to: no state.
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let fields =
        [("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form)), ("return_to", &gw.url("/orders?x=1"))];
    let (s, start, _) = br.post(&gw.cp.url("/login"), &fields).await;
    assert_eq!(s, 303);
    assert_eq!(
        start,
        format!("http://{}/__gatehouse/signin?return_to=/orders%3Fx%3D1", gw.host),
        "no unbound ticket: the app host starts the sign-in"
    );
    let (s, login_url, _) = br.get(&start).await;
    assert_eq!(s, 302);
    assert!(login_url.contains("&state="), "{login_url}");
    let (s, callback, _) = br.get(&login_url).await;
    assert_eq!(s, 303, "already signed in at the control plane");
    let (s, back, _) = br.get(&callback).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/orders?x=1"));
    assert_eq!(br.get(&gw.url("/orders?x=1")).await.0, 200);
    // The sign-in start page keeps to local paths too.
    let r = br.client.get(gw.url("/__gatehouse/signin?return_to=%2F%09%2Fevil.example")).send().await.unwrap();
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.contains(&format!("return_to=http%3A//{}/&state=", gw.host.replace(':', "%3A"))), "{to}");
}

story!(open_redirect_hostile_return_to_at_the_callback_lands_on_the_root);
async fn open_redirect_hostile_return_to_at_the_callback_lands_on_the_root(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    // Query-encoded as an attacker would put them into the callback link.
    let hostile = [
        "%2F%09%2Fevil.example", // `/\t/evil.example`: a browser drops the tab → `//evil.example`
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%0d/evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",        // `/\evil.example`
        "%2F%255Cevil.example",    // `/%5Cevil.example`, decoded by the browser's reader
        "%2F%252F%2Fevil.example", // `/%2F/evil.example`
        "%2F.%2F%2Fevil.example",  // `/.//evil.example`
        "https%3A%2F%2Fevil.example%2F",
        "evil.example",
        "%2F%00",
        "%2F%25zz",
    ];
    for raw in hostile {
        let callback = ticket_for(&gw, &br, EMAIL, PASSWORD).await;
        let ticket = callback.split("ticket=").nth(1).unwrap().split('&').next().unwrap();
        let (s, back, _) =
            br.get(&format!("{}?ticket={ticket}&return_to={raw}", gw.url("/__gatehouse/callback"))).await;
        assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/"), "{raw}");
    }
    // The control plane refuses the same paths inside an app URL.
    for raw in ["/%09/evil.example", "/%2F/evil.example", "/%5Cevil.example"] {
        let url = format!(
            "{}?return_to={}",
            gw.cp.url("/login"),
            gatehouse_server::login::url_encode(&format!("http://{}{raw}", gw.host))
        );
        let (s, _, _) = br.get(&url).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw}");
    }
}

// ---- SPEC §11 "TLS": on HTTPS, return URLs are https, cookies Secure, HSTS sent. ----

/// A control plane whose public URL is https (TLS ends at a proxy in front), knowing app host `shop.test`.
async fn https_control_plane(
    b: Backend,
) -> (gatehouse_store::testing::TestDb, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let db = gatehouse_store::testing::TestDb::new(b).await;
    let store = db.store().await;
    Users::new(Arc::new(store.clone()) as Arc<dyn Store>, "default".into())
        .create_owner(EMAIL, PASSWORD, "test")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = crate::test_config();
    config.public_url = "https://gatehouse.test".into();
    let app = gatehouse_server::App::build(config, Arc::new(store) as Arc<dyn Store>, vec!["shop.test".into()])
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    (db, addr, tx)
}

fn set_cookies(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// Whether a `Set-Cookie` value carries the `Secure` attribute (wherever it stands in the list).
fn secure(set_cookie: &str) -> bool {
    cookie::Cookie::parse(set_cookie).unwrap().secure() == Some(true)
}

story!(tls_downgrade_return_to_http_on_an_https_deployment_goes_to_https);
async fn tls_downgrade_return_to_http_on_an_https_deployment_goes_to_https(b: Backend) {
    let (_db, addr, _stop) = https_control_plane(b).await;
    let br = Browser::new();
    let state = "ab".repeat(32);
    let r = br
        .client
        .get(format!("http://{addr}/login?return_to=http%3A%2F%2Fshop.test%2Fx&state={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000", "HSTS on the control plane's pages");
    assert!(set_cookies(r.headers()).iter().all(|c| secure(c)), "{:?}", set_cookies(r.headers()));
    let form = r.text().await.unwrap();
    for rt in ["http://shop.test/x", "https://shop.test/x"] {
        let fields =
            [("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form)), ("return_to", rt), ("state", &state)];
        let r = br.client.post(format!("http://{addr}/login")).form(&fields).send().await.unwrap();
        assert_eq!(r.status(), 303, "{rt}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(
            to.starts_with("https://shop.test/__gatehouse/callback?ticket="),
            "the ticket never travels over plain HTTP: {rt} → {to}"
        );
        assert!(set_cookies(r.headers()).iter().any(|c| c.starts_with("gatehouse_cp_session=") && secure(c)));
        assert!(r.headers().contains_key("strict-transport-security"));
        // Unbound (started here): the app host is sent to start the sign-in over https too.
        let fields = [("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form)), ("return_to", rt)];
        let r = br.client.post(format!("http://{addr}/login")).form(&fields).send().await.unwrap();
        assert!(r.headers()["location"].to_str().unwrap().starts_with("https://shop.test/__gatehouse/signin?"), "{rt}");
    }
    // API answers carry HSTS too (it is the host that is HTTPS).
    let r = br.client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert!(r.headers().contains_key("strict-transport-security"));
}

story!(tls_over_a_trusted_proxy_secures_cookies_return_urls_and_sends_hsts);
async fn tls_over_a_trusted_proxy_secures_cookies_return_urls_and_sends_hsts(b: Backend) {
    let mut config = crate::test_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let users = Users::new(Arc::new(gw.cp.store.clone()) as Arc<dyn Store>, "default".into());
    users.create_owner(EMAIL, PASSWORD, "test").await.unwrap();
    let br = Browser::new();
    let send = |url: String, headers: &'static [(&'static str, &'static str)]| {
        let mut rb = br.client.get(url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    const TLS: &[(&str, &str)] = &[("accept", "text/html"), ("x-forwarded-proto", "https")];
    const PLAIN: &[(&str, &str)] = &[("accept", "text/html")];
    // Over TLS: the gateway's redirect names an https return URL, its state cookie is Secure, HSTS is sent.
    let r = send(gw.url("/x"), TLS).await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.contains("return_to=https%3A//"), "{loc}");
    assert!(set_cookies(r.headers()).iter().any(|c| c.starts_with("gatehouse_state=") && secure(c)));
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = send(gw.url("/__gatehouse/logout"), TLS).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("strict-transport-security"), "gateway-own pages");
    assert!(set_cookies(r.headers()).iter().all(|c| secure(c)));
    let r = send(gw.cp.url("/login"), TLS).await.unwrap();
    assert!(r.headers().contains_key("strict-transport-security"), "control-plane pages");
    // Plain HTTP on a plain deployment: no HSTS, no Secure (the cookie would never come back).
    for url in [gw.url("/x"), gw.url("/__gatehouse/logout"), gw.cp.url("/login")] {
        let r = send(url.clone(), PLAIN).await.unwrap();
        assert!(!r.headers().contains_key("strict-transport-security"), "{url}");
        assert!(set_cookies(r.headers()).iter().all(|c| !c.contains("Secure")), "{url}");
    }
}

// ---- Finding 17: CSRF tokens are bound to the session once there is one. ----

/// The value a response sets for cookie `name`.
fn cookie_set(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    set_cookies(h)
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_owned()))
        .filter(|v| !v.is_empty())
}

/// Signs in at the control plane with a cookie-less client: (CSRF cookie, login cookie, the sign-out token of
/// the dashboard's Account page, where `/` leads once signed in).
async fn cp_sign_in(gw: &Gw) -> (String, String, String) {
    let c = &gw.cp.client;
    let r = c.get(gw.cp.url("/login")).send().await.unwrap();
    let csrf_cookie = cookie_set(r.headers(), "gatehouse_csrf").unwrap();
    let token = csrf_of(&r.text().await.unwrap());
    let r = c
        .post(gw.cp.url("/login"))
        .header("cookie", format!("gatehouse_csrf={csrf_cookie}"))
        .form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let login = cookie_set(r.headers(), "gatehouse_cp_session").unwrap();
    let both = format!("gatehouse_csrf={csrf_cookie}; gatehouse_cp_session={login}");
    let r = c.get(gw.cp.url("/")).header("cookie", &both).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (302, "/dashboard"));
    let r = c.get(gw.cp.url("/dashboard/account")).header("cookie", &both).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(EMAIL), "the Account page names the signed-in user");
    let signout = csrf_of(&page);
    assert_ne!(signout, token, "the signed-in token differs from the pre-login one");
    (csrf_cookie, login, signout)
}

/// 200 when `/dashboard/account` shows this login's user (signed in), else its status (302 to the sign-in page).
async fn account_status(gw: &Gw, csrf: &str, login: &str) -> u16 {
    let cookie = format!("gatehouse_csrf={csrf}; gatehouse_cp_session={login}");
    let r = gw.cp.client.get(gw.cp.url("/dashboard/account")).header("cookie", cookie).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert!(r.text().await.unwrap().contains(EMAIL), "signed in as the owner");
    }
    status
}

story!(csrf_pair_planted_from_another_session_is_refused);
async fn csrf_pair_planted_from_another_session_is_refused(b: Backend) {
    let gw = with_owner(b).await;
    let c = &gw.cp.client;
    let (attacker_cookie, _attacker_login, attacker_token) = cp_sign_in(&gw).await;
    let (victim_cookie, victim_login, victim_token) = cp_sign_in(&gw).await;
    // A pre-login pair the attacker got from the login page.
    let r =
        c.get(gw.cp.url("/login")).header("cookie", format!("gatehouse_csrf={attacker_cookie}")).send().await.unwrap();
    let attacker_prelogin = csrf_of(&r.text().await.unwrap());
    // The attacker plants their CSRF cookie in the victim's browser (an app on the same host name can)
    // and submits their own valid token with the victim's session: refused, the victim stays signed in.
    for token in [&attacker_token, &attacker_prelogin] {
        let r = c
            .post(gw.cp.url("/logout"))
            .header("cookie", format!("gatehouse_csrf={attacker_cookie}; gatehouse_cp_session={victim_login}"))
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(account_status(&gw, &victim_cookie, &victim_login).await, 200, "the victim is still signed in");
    }
    // The victim's own pair works.
    let r = c
        .post(gw.cp.url("/logout"))
        .header("cookie", format!("gatehouse_csrf={victim_cookie}; gatehouse_cp_session={victim_login}"))
        .form(&[("csrf", victim_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(account_status(&gw, &victim_cookie, &victim_login).await, 302, "signed out");
}

story!(csrf_pair_from_another_browser_cannot_sign_out_an_app_session);
async fn csrf_pair_from_another_browser_cannot_sign_out_an_app_session(b: Backend) {
    let gw = with_owner(b).await;
    let victim = Browser::new();
    let callback = ticket_for(&gw, &victim, EMAIL, PASSWORD).await;
    let r = victim.client.get(&callback).send().await.unwrap();
    let app_session = cookie_set(r.headers(), "gatehouse_session").unwrap();
    assert_eq!(victim.get(&gw.url("/private")).await.0, 200);
    // The attacker's pair from the app host's sign-out page (no session of theirs).
    let r = gw.cp.client.get(gw.url("/__gatehouse/logout")).send().await.unwrap();
    let attacker_cookie = cookie_set(r.headers(), "gatehouse_csrf").unwrap();
    let attacker_token = csrf_of(&r.text().await.unwrap());
    // A sign-out with the attacker's token and these cookies.
    let (token, gw) = (attacker_token.as_str(), &gw);
    let sign_out = |cookie: String| async move {
        let form = [("csrf", token)];
        gw.cp.client.post(gw.url("/__gatehouse/logout")).header("cookie", cookie).form(&form).send().await.unwrap()
    };
    let r = sign_out(format!("gatehouse_csrf={attacker_cookie}; gatehouse_session={app_session}")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(victim.get(&gw.url("/private")).await.0, 200, "the victim's app session survives");
    // Without a session the sign-out page's pre-login pair still clears the cookie.
    let r = sign_out(format!("gatehouse_csrf={attacker_cookie}")).await;
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_memory_is_reused_while_busy_and_given_back_when_idle() {
    let gw = with_owner(Backend::Sqlite).await;
    let users = &gw.cp.state.users;
    assert_eq!(users.hash_buffers_held(), 0);
    assert!(matches!(users.sign_in(EMAIL, PASSWORD, None).await.unwrap(), gatehouse_services::users::SignIn::Ok(_)));
    assert_eq!(users.hash_buffers_held(), 1, "kept for the next attempt");
    // A sleep on purpose: the buffer is released after an idle span (users::IDLE_RELEASE), which is what is tested.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(users.hash_buffers_held(), 0, "an idle server keeps no Argon2 memory");
}

story!(throttle_a_success_costs_the_address_nothing_and_resets_the_account);
async fn throttle_a_success_costs_the_address_nothing_and_resets_the_account(b: Backend) {
    use gatehouse_services::users::SignIn;
    let gw = with_owner(b).await;
    let users = &gw.cp.state.users;
    let ip = Some("198.51.100.20".parse().unwrap());
    for i in 0..4 {
        assert!(matches!(users.sign_in(&format!("ghost{i}@example.com"), "x", ip).await.unwrap(), SignIn::Wrong));
    }
    for _ in 0..3 {
        assert!(
            matches!(users.sign_in(EMAIL, PASSWORD, ip).await.unwrap(), SignIn::Ok(_)),
            "successes are not failures"
        );
    }
    assert!(
        matches!(users.sign_in("ghost9@example.com", "x", ip).await.unwrap(), SignIn::Wrong),
        "the fifth failure of the address"
    );
    assert!(matches!(users.sign_in(EMAIL, PASSWORD, ip).await.unwrap(), SignIn::Throttled(_)), "now the address waits");
    // The account itself starts over after a success: four failures from elsewhere, then a success, then four more.
    let elsewhere = |n: u8| Some(std::net::IpAddr::from([192, 0, 2, n]));
    for n in 0..4 {
        assert!(matches!(users.sign_in(EMAIL, "wrong password", elsewhere(n)).await.unwrap(), SignIn::Wrong));
    }
    assert!(matches!(users.sign_in(EMAIL, PASSWORD, elsewhere(50)).await.unwrap(), SignIn::Ok(_)));
    for n in 4..8 {
        assert!(matches!(users.sign_in(EMAIL, "wrong password", elsewhere(n)).await.unwrap(), SignIn::Wrong), "{n}");
    }
}

/// Signs `br` in on the app host through the control plane.
async fn signed_in_on_the_app(gw: &Gw, br: &Browser) {
    let (_, login_url, _) = br.get(&gw.url("/account")).await;
    let (_, _, form) = br.get(&login_url).await;
    let (rt, csrf, state) = (return_to_of(&login_url), csrf_of(&form), state_of(&form));
    let fields = [("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf), ("return_to", &rt), ("state", &state)];
    let (s, callback, _) = br.post(&gw.cp.url("/login"), &fields).await;
    assert_eq!(s, 303);
    let (s, _, _) = br.get(&callback).await;
    assert_eq!(s, StatusCode::FOUND);
    let (s, _, _) = br.get(&gw.url("/account")).await;
    assert_eq!(s, 200, "signed in");
}

story!(a_sign_out_form_body_is_read_as_a_form_not_as_a_made_up_uri);
async fn a_sign_out_form_body_is_read_as_a_form_not_as_a_made_up_uri(b: Backend) {
    let gw = with_owner(b).await;
    // A sign-out form posted as these raw bytes.
    let sign_out = |br: &Browser, body: String| {
        let r = br.client.post(gw.url("/__gatehouse/logout"));
        r.header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    // The old parser put the body behind `/?`: a raw `#` ended it and a raw space made it unparsable,
    // so the CSRF field that followed was lost and the sign-out refused.
    for before in ["note=%23", "note=#", "note=a b", "note=a+b&note=%26"] {
        let br = Browser::new();
        signed_in_on_the_app(&gw, &br).await;
        let (_, _, page) = br.get(&gw.url("/__gatehouse/logout")).await;
        let body = format!("{before}&csrf={}", csrf_of(&page));
        let r = sign_out(&br, body.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{body}");
        let (s, _, _) = br.get(&gw.url("/account")).await;
        assert_eq!(s, 302, "signed out: {body}");
    }
    // Without the right CSRF token nothing ends, whatever surrounds it.
    let br = Browser::new();
    signed_in_on_the_app(&gw, &br).await;
    for body in ["csrf=", "note=#&csrf=0000", "csrf=%zz"] {
        let r = sign_out(&br, body.to_owned()).await.unwrap();
        assert_ne!(r.status(), StatusCode::SEE_OTHER, "{body}");
    }
    let (s, _, _) = br.get(&gw.url("/account")).await;
    assert_eq!(s, 200, "still signed in");
}
