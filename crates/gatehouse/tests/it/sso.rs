//! Sign-in with an identity provider (SPEC §15), end to end against a real OpenID Provider
//! (`oidc-provider`, tests/oidc-provider/server.mjs) and `gatehouse up` in front of examples/hello,
//! with headless Chromium clicking through (tests/oidc-provider/signin.mjs).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::up::{free_port, repo_root, Up};
use crate::{gatehouse, stdout};

const CLIENT_SECRET: &str = "test-client-secret-0123456789";

/// A running oidc-provider, stopped on drop.
struct Idp {
    _child: tokio::process::Child,
    issuer: String,
}

impl Idp {
    /// Starts the provider with a client whose redirect URI is Gatehouse's on `cp_port`.
    async fn start(cp_port: u16) -> Idp {
        let dir = repo_root().join("tests/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc-provider/node_modules: run scripts/test.sh"
        );
        let port = free_port();
        let mut child = tokio::process::Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", "gatehouse")
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", format!("http://127.0.0.1:{cp_port}/login/testidp/callback"))
            .env("POST_LOGOUT_REDIRECT_URI", format!("http://127.0.0.1:{cp_port}/login"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return issuer.to_owned();
                }
            }
            panic!("the provider exited before listening");
        })
        .await
        .expect("the provider starts within 30 s");
        // Keep reading its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp { _child: child, issuer }
    }

    /// Makes a new signing key and signs with it from now on; the old keys are no longer published.
    async fn rotate_keys(&self) -> String {
        let r = reqwest::Client::new().post(format!("{}/__test/rotate?retire=1", self.issuer)).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["kid"].as_str().unwrap().to_owned()
    }
}

fn config(issuer: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[identity_providers]]\nid = \"testidp\"\ndisplay_name = \"Test IdP\"\nissuer = \"{issuer}\"\n\
         client_id = \"gatehouse\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\nauto_create_users = true\nend_session = true\n"
    )
}

async fn gatehouse_with_idp(extra: &str) -> (Idp, Up) {
    let cp_port = free_port();
    let idp = Idp::start(cp_port).await;
    let up =
        Up::start_configured(&repo_root().join("examples/hello"), "/ping", &config(&idp.issuer, extra), cp_port).await;
    (idp, up)
}

/// Runs the browser through a provider sign-in as `login`; `expect` is `in` or the refusal's words.
async fn browser_signs_in(up: &Up, login: &str, email: &str, expect: &str) {
    browser_run(up, login, email, expect, false).await
}

/// As `browser_signs_in`, then signs out (at Gatehouse and, `end_session` being on, at the provider).
async fn browser_signs_in_and_out(up: &Up, login: &str, email: &str) {
    browser_run(up, login, email, "in", true).await
}

async fn browser_run(up: &Up, login: &str, email: &str, expect: &str, sign_out: bool) {
    let dir = repo_root().join("tests/oidc-provider");
    let out = tokio::process::Command::new("node")
        .arg("signin.mjs")
        .current_dir(&dir)
        .env("APP_URL", &up.app)
        .env("CP_URL", &up.cp)
        .env("BUTTON", "Continue with Test IdP")
        .env("LOGIN", login)
        .env("EMAIL", email)
        .env("EXPECT", expect)
        .env("SIGN_OUT", if sign_out { "1" } else { "0" })
        .output()
        .await
        .expect("node runs (scripts/test.sh installs Chromium and the packages)");
    assert!(
        out.status.success(),
        "the provider sign-in of {login} (expecting {expect}) failed:\n{}\n{}\n--- gatehouse log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&up.log).unwrap_or_default()
    );
}

fn cli(up: &Up, args: &[&str]) -> String {
    let d = up.data_dir();
    let mut all = vec!["--data-dir", d.as_str()];
    all.extend_from_slice(args);
    let out = gatehouse(up.dir.path(), &all, &[]);
    assert!(out.status.success(), "gatehouse {args:?}: {}", crate::stderr(&out));
    stdout(&out)
}

fn create_user(up: &Up, email: &str) {
    let d = up.data_dir();
    let mut child =
        crate::command(up.dir.path(), &["--data-dir", &d, "users", "create", "--email", email, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    assert!(child.wait().unwrap().success(), "users create {email}");
}

#[tokio::test]
async fn chromium_signs_in_through_a_real_provider_and_is_refused_where_it_must_be() {
    let (_idp, up) = gatehouse_with_idp("").await;
    create_user(&up, "bob@example.com");
    create_user(&up, "carol@example.com");
    // No Gatehouse user yet, verified email, auto_create_users: created with the default role.
    browser_signs_in(&up, "alice", "alice@example.com", "in").await;
    let users = cli(&up, &["users", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&users).unwrap();
    let alice =
        list["data"].as_array().unwrap().iter().find(|u| u["email"] == "alice@example.com").expect("alice was created");
    assert_eq!(alice["role"], "member", "{alice}");
    // Signing in again uses the link, not the email; signing out ends the session at the provider too.
    browser_signs_in_and_out(&up, "alice", "alice@example.com").await;
    // An existing user, but the provider does not vouch for the email: not linked, not signed in.
    browser_signs_in(&up, "bob", "bob@example.com", "did not confirm that your email address is verified").await;
    // An existing user with a verified email: linked and signed in; once disabled, refused.
    browser_signs_in(&up, "carol", "carol@example.com", "in").await;
    cli(&up, &["users", "disable", "carol@example.com"]);
    browser_signs_in(&up, "carol", "carol@example.com", "This Gatehouse user is disabled.").await;
    let log =
        std::fs::read_to_string(&up.log).unwrap() + &std::fs::read_to_string(up.dir.path().join("up.err")).unwrap();
    assert!(!log.contains(CLIENT_SECRET), "the client secret is never logged");
}

/// The access policy of SPEC §15 judges what the provider says: `[access.hello]` lets the `eng` group in
/// (alice), and an account of another group (dave, `sales`) is signed in but lands on the app's 403 page,
/// which names the account and offers Switch account.
#[tokio::test]
async fn the_apps_access_policy_judges_the_providers_groups() {
    let (_idp, up) = gatehouse_with_idp("[access.hello]\ngroups = [\"eng\"]\n").await;
    browser_signs_in(&up, "alice", "alice@example.com", "in").await;
    browser_signs_in(&up, "dave", "dave@example.com", "forbidden:may not open").await;
}

/// The `state` parameter: a made-up one, one from another browser (no binding cookie) and a spent one
/// are refused before any code is exchanged; a bad code is refused by the provider. Also: with
/// `password_login = false` the form is gone and its POST refused.
#[tokio::test]
async fn a_tampered_foreign_or_spent_state_is_refused() {
    let (_idp, up) = gatehouse_with_idp("password_login = false").await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{}/login", up.cp)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Continue with Test IdP") && !page.contains("type=\"password\""), "{page}");
    let r = http
        .post(format!("{}/login", up.cp))
        .form(&[("email", "a@example.com"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the password form is refused");

    let start = || async {
        let r = http.get(format!("{}/login/testidp?return_to=%2Fdashboard", up.cp)).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!((q["code_challenge_method"].as_str(), q["response_type"].as_str()), ("S256", "code"));
        assert!(q["nonce"].len() >= 43 && q["code_challenge"].len() == 43, "{q:?}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("gatehouse_oidc="), "{cookie}");
        (q["state"].clone(), cookie)
    };
    let callback = |state: String, cookie: Option<String>, code: &'static str| {
        let mut rb =
            http.get(format!("{}/login/testidp/callback", up.cp)).query(&[("code", code), ("state", state.as_str())]);
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let set_session = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("gatehouse_cp_session="));
            (status, set_session, r.text().await.unwrap())
        }
    };
    let (state, cookie) = start().await;
    let mut tampered = state.clone();
    tampered.replace_range(..1, if state.starts_with('A') { "B" } else { "A" });
    let rows = [
        ("a tampered state", callback(tampered, Some(cookie.clone()), "c").await, "unknown or was already used"),
        (
            "the right state from another browser",
            callback(state.clone(), None, "c").await,
            "started in another browser",
        ),
        (
            "the same state again, now spent",
            callback(state.clone(), Some(cookie.clone()), "c").await,
            "unknown or was already used",
        ),
        ("a made-up state", callback("x".repeat(43), Some(cookie.clone()), "c").await, "unknown or was already used"),
    ];
    for (what, (status, session, body), want) in rows {
        assert_eq!((status, session), (400, false), "{what}: {body}");
        assert!(body.contains(want), "{what}: {body}");
        assert!(!body.contains(&state), "{what}: the state is never shown");
    }
    let (state, cookie) = start().await;
    let (status, session, body) = callback(state, Some(cookie), "not-a-code-the-provider-issued").await;
    assert_eq!((status, session), (400, false), "{body}");
    assert!(body.contains("did not accept this sign-in") && !body.contains("not-a-code"), "{body}");
}

/// The provider rotates its signing key: a token under the new key id is refused while the keys were
/// loaded less than 30 s ago (a flood of unknown key ids cannot make Gatehouse hammer the provider),
/// then accepted once the refetch is allowed and finds it.
#[tokio::test]
async fn a_key_rotation_at_the_provider_is_picked_up_by_refetching_its_keys() {
    let (idp, up) = gatehouse_with_idp("").await;
    browser_signs_in(&up, "dave", "dave@example.com", "in").await;
    let loaded = std::time::Instant::now();
    idp.rotate_keys().await;
    browser_signs_in(&up, "dave", "dave@example.com", "answer could not be verified").await;
    tokio::time::sleep(Duration::from_secs(31).saturating_sub(loaded.elapsed())).await;
    browser_signs_in(&up, "dave", "dave@example.com", "in").await;
}
