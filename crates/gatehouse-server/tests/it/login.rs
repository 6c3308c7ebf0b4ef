//! Signing in across hosts (SPEC §3 "Sessions"): the control plane signs the user in, the app host
//! gets its own cookie through `/__gatehouse/callback`; CSRF, no open redirect, throttling, tickets
//! that work once and only on their host, and logout ending the whole login.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_server::users::Users;
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
        let client = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
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

fn return_to_of(login_url: &str) -> String {
    let enc = login_url.split("return_to=").nth(1).unwrap();
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
    let (s, callback, _) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf), ("return_to", &rt)]).await;
    assert_eq!(s, 303);
    assert!(callback.starts_with(&format!("http://{}/__gatehouse/callback?ticket=", gw.host)), "{callback}");
    let (s, back, _) = br.get(&callback).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/account?tab=2"), "lands on the page asked for");
    let (s, _, body) = br.get(&gw.url("/account?tab=2")).await;
    assert_eq!(s, 200, "{body}");
    let (_, pq, h) = gw.last_seen();
    assert_eq!(pq, "/account?tab=2");
    assert_eq!((h["x-gatehouse-auth"].to_str().unwrap(), h["x-gatehouse-email"].to_str().unwrap()), ("session", EMAIL));
    assert!(h.get("cookie").is_none_or(|c| !c.to_str().unwrap().contains("session")), "no session cookie reaches the app");

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
    let (s, _, _) = fresh.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a token from another browser is worthless");
    // No open redirect, on GET or POST.
    for evil in ["http://evil.example/", "//evil.example/x", "https://evil.example@127.0.0.1/", "javascript:alert(1)"] {
        let (s, loc, _) = br.get(&format!("{}?return_to={}", gw.cp.url("/login"), gatehouse_server::login::url_encode(evil))).await;
        assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""), "{evil}");
        let (s, loc, _) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf), ("return_to", evil)]).await;
        assert_eq!((s, loc.as_str()), (StatusCode::BAD_REQUEST, ""), "{evil}");
    }
    // A ticket for one host does not open a session on another.
    let (s, callback, _) = br
        .post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf), ("return_to", &gw.url("/"))])
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
    let (s, back, _) = br.get(&format!("{}?ticket={ticket}&return_to=//evil.example/", gw.url("/__gatehouse/callback"))).await;
    assert_eq!((s, back.as_str()), (StatusCode::FOUND, "/"));
}

story!(failed_sign_ins_are_throttled);
async fn failed_sign_ins_are_throttled(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let csrf = csrf_of(&form);
    for _ in 0..5 {
        let (s, _, page) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", "wrong password"), ("csrf", &csrf)]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(page.contains("Wrong email or password"));
    }
    let r = br.client.post(gw.cp.url("/login")).form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(r.status(), 429, "even the right password waits");
    assert!(r.headers().contains_key("retry-after"));
    // Unknown accounts are throttled per IP as well, and answer exactly like wrong passwords.
    let (s, _, page) = br.post(&gw.cp.url("/login"), &[("email", "nobody@example.com"), ("password", "x"), ("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "the IP has failed five times");
    assert!(page.contains("Too many failed attempts"));
}

#[tokio::test]
async fn setup_link_creates_the_owner_once() {
    let gw = Gw::start(Backend::Sqlite, None, Duration::from_secs(5)).await;
    let br = Browser::new();
    let (s, _, _) = br.get(&gw.cp.url("/setup?token=guess")).await;
    assert_eq!(s, 404, "no setup without the printed token");
    let token = gatehouse_server::sessions::new_token().0;
    *gw.cp.state.web.setup_token.lock() = Some(token.clone());
    let (s, _, form) = br.get(&gw.cp.url(&format!("/setup?token={token}"))).await;
    assert_eq!(s, 200);
    let csrf = csrf_of(&form);
    let (s, _, page) = br.post(&gw.cp.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", "short"), ("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("at least 10 characters"));
    let (s, to, _) = br.post(&gw.cp.url("/setup"), &[("token", &token), ("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf)]).await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/login"));
    let (s, _, _) = br.get(&gw.cp.url(&format!("/setup?token={token}"))).await;
    assert_eq!(s, 404, "the link works once");
    let (_, _, form) = br.get(&gw.cp.url("/login")).await;
    let (s, to, _) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form))]).await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/"), "the new owner can sign in");
}

story!(a_logout_on_another_node_ends_the_session_here_within_a_second);
async fn a_logout_on_another_node_ends_the_session_here_within_a_second(b: Backend) {
    let gw = with_owner(b).await;
    let br = Browser::new();
    let (_, login_url, _) = br.get(&gw.url("/")).await;
    let (_, _, form) = br.get(&login_url).await;
    let rt = return_to_of(&login_url);
    let (_, callback, _) = br.post(&gw.cp.url("/login"), &[("email", EMAIL), ("password", PASSWORD), ("csrf", &csrf_of(&form)), ("return_to", &rt)]).await;
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
    let other = gatehouse_server::App::build(gw.cp.config.clone(), Arc::new(other_store) as Arc<dyn Store>, vec![]).await.unwrap();
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
