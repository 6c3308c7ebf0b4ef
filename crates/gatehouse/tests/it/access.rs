//! Who may open which app (SPEC §15) against a real `gatehouse serve` and a real upstream: a user of
//! the listed domain gets through, one of another domain gets the 403 page (browser) or 403
//! `app_not_allowed` (API client), an API key is not judged by the policy, *Switch account* signs out
//! into a new sign-in, and edits of the running server's config file apply to existing sessions
//! within a second — unless they do not load, when the policy in force stays.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::servers::{free_port, NodeDir};
use crate::{gatehouse, stderr};

/// An upstream that answers every request with the identity Gatehouse forwarded.
async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let email = headers.get("x-gatehouse-email").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        let auth = headers.get("x-gatehouse-auth").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        format!("upstream saw {auth} {email}")
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

/// The node's whole configuration with `access` as its access tables.
fn config(cp_port: u16, gw_port: u16, access: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{cp_port}\"\ndata_dir = \"data\"\nlog_level = \"info\"\n\
         gateway_listen = \"127.0.0.1:{gw_port}\"\n\n\
         [[apps]]\nname = \"shop\"\nhosts = [\"127.0.0.1:{gw_port}\"]\nspacefile = \"Spacefile\"\n\n{access}"
    )
}

const HTML: &str = "text/html,application/xhtml+xml";

/// A browser: cookies kept, redirects followed (sign-in hops between the app host and the control plane).
fn browser() -> reqwest::Client {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    reqwest::Client::builder().cookie_provider(jar).build().unwrap()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
    html[at..].split('"').next().unwrap().replace("&#38;", "&").replace("&#34;", "\"")
}

/// Opens `url` on the app host as a browser, signs in at the control plane where it is sent, and
/// answers what the app host finally gave (after the callback).
async fn sign_in_at_app(br: &reqwest::Client, url: &str, email: &str, password: &str) -> reqwest::Response {
    let login = br.get(url).header("accept", HTML).send().await.unwrap();
    let at = login.url().clone();
    assert!(at.path() == "/login", "sent to the sign-in page, not {at}");
    let page = login.text().await.unwrap();
    let form = [
        ("csrf", hidden(&page, "csrf")),
        ("return_to", hidden(&page, "return_to")),
        ("state", hidden(&page, "state")),
        ("email", email.to_owned()),
        ("password", password.to_owned()),
    ];
    let cp = format!("{}://{}", at.scheme(), at.authority());
    br.post(format!("{cp}/login")).header("accept", HTML).form(&form).send().await.unwrap()
}

async fn get(br: &reqwest::Client, url: &str, accept: &str) -> (u16, String) {
    let r = br.get(url).header("accept", accept).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until `check` holds, and answers how long that took; fails after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, check: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Rewrites the config file as an operator's editor does: a new file renamed over the old one.
fn edit(dir: &Path, text: &str) {
    let tmp = dir.join("gatehouse.toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("gatehouse.toml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_lets_in_whom_it_lists_and_edits_reach_running_sessions_within_a_second() {
    let up = upstream().await;
    let (cp_port, gw_port) = (free_port(), free_port());
    let node = NodeDir::at(cp_port, "");
    let d = node.path();
    std::fs::write(
        d.join("Spacefile"),
        format!("v: 0\nmicros:\n  - name: main\n    upstream: http://{up}\n    presets:\n      api_keys: true\n"),
    )
    .unwrap();
    std::fs::write(d.join("gatehouse.toml"), config(cp_port, gw_port, "[access.shop]\ndomains = [\"example.com\"]\n"))
        .unwrap();
    let password = |v: Value| v["password"].as_str().unwrap().to_owned();
    let ada_pw = password(node.cli(&["users", "create", "--email", "ada@example.com"]));
    let eve_pw = password(node.cli(&["users", "create", "--email", "eve@other.test"]));
    let key = node.cli(&["keys", "create", "--name", "server"])["secret"].as_str().unwrap().to_owned();
    let serving = node.serve().await;
    let app = format!("http://127.0.0.1:{gw_port}");
    let hello = format!("{app}/hello?x=1");

    // Ada's domain is listed: through to the upstream, as herself.
    let ada = browser();
    let r = sign_in_at_app(&ada, &hello, "ada@example.com", &ada_pw).await;
    assert_eq!(r.status(), 200, "{}", serving.log());
    assert_eq!(r.text().await.unwrap(), "upstream saw session ada@example.com");

    // Eve is signed in, but her domain is not listed: the page names her and offers to switch.
    let eve = browser();
    let r = sign_in_at_app(&eve, &hello, "eve@other.test", &eve_pw).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("You are signed in as <strong>eve@other.test</strong>"), "{page}");
    assert!(page.contains("may not open <strong>shop</strong>"), "{page}");
    assert!(page.contains(">Switch account</button>"), "{page}");
    assert_eq!(hidden(&page, "return_to"), "/hello?x=1");
    assert!(!page.contains("upstream saw"), "nothing of the app reached her");
    // The same session from a script: the JSON error of SPEC §5.
    let r = eve.get(&hello).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().contains_key("request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert_eq!(body["error"]["code"], "app_not_allowed", "{body}");
    assert!(body["error"]["request_id"].as_str().unwrap().starts_with("req_"), "{body}");
    // The refusal is logged with who and why, and no cookie.
    let log = serving.log();
    let line = log.lines().find(|l| l.contains("access policy refused")).expect("a log line");
    assert!(line.contains("eve@other.test") && line.contains("not_in_policy"), "{line}");
    assert!(!line.contains("gatehouse_session"), "{line}");

    // An API key is judged by its own restrictions, not by who may sign in.
    let api = reqwest::Client::new();
    let r = api.get(&hello).header("x-space-app-key", &key).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "upstream saw api_key -".to_owned()));

    // The operator lets other.test in instead: Eve's existing session gets in, Ada's no longer.
    edit(d, &config(cp_port, gw_port, "[access.shop]\ndomains = [\"other.test\"]\n"));
    let took = within(Duration::from_secs(1), "the edited policy", || async {
        get(&eve, &hello, HTML).await.0 == 200 && get(&ada, &hello, HTML).await.0 == 403
    })
    .await;
    eprintln!("access policy edit applied to existing sessions after {took:?}");
    assert_eq!(get(&eve, &hello, HTML).await.1, "upstream saw session eve@other.test");

    // Edits that do not load keep the policy in force (never "every user"): each is judged once and logged.
    let broken = [
        ("[access.shop]\ndomainz = [\"example.com\"]\n", "unknown field `domainz`"),
        ("[access.shop]\ndomains = [\"*.example.com\"]\n", "wildcards"),
        ("[access.shop]\n", "lists no one"),
        ("[access.shp]\ndomains = [\"example.com\"]\n", "[access.shp] names no app"),
        ("[access.shop\ndomains = [\"example.com\"]\n", "invalid table header"),
    ];
    for (access, why) in broken {
        edit(d, &config(cp_port, gw_port, access));
        within(Duration::from_secs(2), &format!("the refusal of {access:?} in the log"), || async {
            serving.log().lines().any(|l| l.contains("does not load") && l.contains(why))
        })
        .await;
        assert_eq!(get(&eve, &hello, HTML).await.0, 200, "{access:?}: the policy in force stays");
        let (status, body) = get(&ada, &hello, "application/json").await;
        assert_eq!(status, 403, "{access:?}: {body}");
    }
    // No table at all: every enabled user.
    edit(d, &config(cp_port, gw_port, ""));
    within(Duration::from_secs(1), "no policy", || async { get(&ada, &hello, HTML).await.0 == 200 }).await;

    // Switch account: Ada (refused again) signs out from the 403 page and lands on a fresh sign-in
    // that will come back to the page she asked for.
    edit(d, &config(cp_port, gw_port, "[access.shop]\nemails = [\"Eve@Other.test\"]\n"));
    within(Duration::from_secs(1), "the email policy", || async { get(&ada, &hello, HTML).await.0 == 403 }).await;
    let page = get(&ada, &hello, HTML).await.1;
    let form = [("csrf", hidden(&page, "csrf")), ("return_to", hidden(&page, "return_to"))];
    let r = ada.post(format!("{app}/__gatehouse/logout")).header("accept", HTML).form(&form).send().await.unwrap();
    assert_eq!(r.url().path(), "/login", "signed out and sent to sign in: {}", r.url());
    let back = r.url().query_pairs().find(|(k, _)| k == "return_to").map(|(_, v)| v.into_owned());
    assert_eq!(back, Some(format!("{app}/hello?x=1")), "{}", r.url());
    let r = ada.get(&hello).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401, "the session ended");
    // Signing in as someone the policy lists gets her back to where she was.
    let r = sign_in_at_app(&ada, &hello, "eve@other.test", &eve_pw).await;
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "upstream saw session eve@other.test".to_owned()));
}

#[test]
fn a_policy_for_an_app_that_is_not_served_stops_config_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("Spacefile"), "v: 0\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:9\n").unwrap();
    let (cp, gw) = (free_port(), free_port());
    let rows = [
        (
            "[access.sohp]\nroles = [\"owner\"]\n",
            "gatehouse.toml: [access.sohp] names no app that is served (apps: shop)",
        ),
        (
            "\n[access.shop]\nemails = [\"x@y.z\"]\nrole = [\"owner\"]\n",
            "gatehouse.toml:12: [access.shop]: unknown field `role`",
        ),
    ];
    for (access, want) in rows {
        std::fs::write(d.join("gatehouse.toml"), config(cp, gw, access)).unwrap();
        for args in [&["--config", "gatehouse.toml", "config", "check"][..], &["--config", "gatehouse.toml", "serve"]] {
            let out = gatehouse(d, args, &[]);
            assert_eq!(out.status.code(), Some(1), "{args:?} {access}");
            assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        }
    }
}

#[test]
fn under_up_a_policy_names_the_spacefiles_app_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spacefile = "v: 0\napp_name: notes\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:9\n";
    std::fs::write(d.join("Spacefile"), spacefile).unwrap();
    std::fs::write(d.join("gatehouse.toml"), "[access.shop]\nroles = [\"owner\"]\n").unwrap();
    let (app, cp) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let args = ["--config", "gatehouse.toml", "up", ".", "--listen", &app, "--control-plane", &cp];
    let out = gatehouse(d, &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("gatehouse.toml: [access.shop] names no app that is served (apps: notes)"),
        "{}",
        stderr(&out)
    );
    // `config check` run where `up` would run knows the same name.
    let out = gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[access.shop] names no app that is served (apps: notes)"), "{}", stderr(&out));
    std::fs::write(d.join("gatehouse.toml"), "[access.notes]\nroles = [\"owner\"]\n").unwrap();
    let out = gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
