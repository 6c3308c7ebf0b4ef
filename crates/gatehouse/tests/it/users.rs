//! `gatehouse users …` on a fresh data dir, and against a running server: disabling a user or
//! changing the password ends the sessions that server holds.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::{gatehouse, json, stderr};

/// Runs `gatehouse` with `input` on standard input.
fn with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child =
        crate::command(dir, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn fails_with(out: &Output, message: &str) {
    assert!(!out.status.success(), "should have failed: {message}");
    assert!(stderr(out).contains(message), "stderr `{}` lacks `{message}`", stderr(out));
}

#[test]
fn create_list_disable_enable_and_refusals_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let owner = json(d, &["users", "create", "--email", " Owner@Example.COM ", "--role", "owner"], &[]);
    assert_eq!(owner["email"], "owner@example.com", "emails are stored trimmed and lower case");
    assert_eq!(owner["role"], "owner");
    let generated = owner["password"].as_str().unwrap();
    assert_eq!(generated.len(), 24, "a generated password is shown once");

    let out = with_stdin(
        d,
        &["users", "create", "--email", "bob@example.com", "--password-stdin", "--json"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bob: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bob["role"], "member");
    assert!(bob.get("password").is_none(), "a password given on stdin is not echoed");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("correct horse"));

    // Refusals: each says why and changes nothing.
    fails_with(&gatehouse(d, &["users", "disable", "owner@example.com"], &[]), "only enabled owner");
    fails_with(
        &with_stdin(
            d,
            &["users", "create", "--email", "bob@example.com", "--password-stdin"],
            "another long password\n",
        ),
        "already exists",
    );
    fails_with(
        &with_stdin(d, &["users", "create", "--email", "no-at-sign", "--password-stdin"], "another long password\n"),
        "not an email address",
    );
    fails_with(
        &with_stdin(d, &["users", "create", "--email", "c@example.com", "--password-stdin"], "short\n"),
        "at least 10 characters",
    );
    fails_with(
        &with_stdin(d, &["users", "create", "--email", "c@example.com", "--password-stdin"], ""),
        "standard input is empty",
    );
    fails_with(
        &with_stdin(d, &["users", "set-password", "bob@example.com", "--password-stdin"], "short\n"),
        "at least 10 characters",
    );
    fails_with(&gatehouse(d, &["users", "enable", "nobody@example.com"], &[]), "no user `nobody@example.com`");
    let list = json(d, &["users", "list"], &[]);
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|u| u["disabled_at"].is_null()));

    let disabled = json(d, &["users", "disable", bob["id"].as_str().unwrap()], &[]);
    assert!(disabled["disabled_at"].is_string(), "by id");
    let enabled = json(d, &["users", "enable", "BOB@example.com"], &[]);
    assert!(enabled["disabled_at"].is_null(), "by email, any case");

    // A second owner makes the first one disableable.
    let out = with_stdin(
        d,
        &["users", "create", "--email", "second@example.com", "--role", "owner", "--password-stdin"],
        "second owner password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json(d, &["users", "disable", "owner@example.com"], &[])["disabled_at"].is_string());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Posts the control plane's sign-in form; answers the status and the client holding any cookie set.
async fn try_sign_in(cp: &str, email: &str, password: &str) -> (u16, reqwest::Client) {
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(format!("{cp}/login")).send().await.unwrap().text().await.unwrap();
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("csrf field").to_owned();
    let resp = client
        .post(format!("{cp}/login"))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password), ("return_to", "")])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), client)
}

async fn sign_in(cp: &str, email: &str, password: &str) -> reqwest::Client {
    let (status, client) = try_sign_in(cp, email, password).await;
    assert_eq!(status, 303, "{email} signs in");
    client
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// Waits until `url` answers `want` to `client` (a cache drops entries within one change-feed poll).
async fn eventually(client: &reqwest::Client, url: &str, want: u16) {
    let start = Instant::now();
    loop {
        let got = status(client, url).await;
        if got == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{url} still answers {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn disabling_a_user_or_setting_a_password_ends_sessions_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (email, role) in [("owner@example.com", "owner"), ("bob@example.com", "member")] {
        let out = with_stdin(
            d,
            &["users", "create", "--email", email, "--role", role, "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let port = free_port();
    std::fs::write(d.join("gatehouse.toml"), format!("listen = \"127.0.0.1:{port}\"\n")).unwrap();
    let mut server = crate::serve(d);
    let cp = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{cp}/healthz")).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let me = format!("{cp}/v1/me/authorizations");
    let bob = sign_in(&cp, "bob@example.com", "a long enough password").await;
    let owner = sign_in(&cp, "owner@example.com", "a long enough password").await;
    assert_eq!(status(&bob, &me).await, 200);
    assert_eq!(status(&owner, &me).await, 200);

    // Disable from the shell while the server runs: Bob's session ends, the owner's does not.
    assert!(gatehouse(d, &["--config", "gatehouse.toml", "users", "disable", "bob@example.com"], &[]).status.success());
    eventually(&bob, &me, 401).await;
    assert_eq!(status(&owner, &me).await, 200);
    assert_ne!(
        try_sign_in(&cp, "bob@example.com", "a long enough password").await.0,
        303,
        "a disabled user cannot sign in"
    );
    // Enabled again, Bob signs in anew (the old session stays ended).
    assert!(gatehouse(d, &["--config", "gatehouse.toml", "users", "enable", "bob@example.com"], &[]).status.success());
    assert_eq!(status(&bob, &me).await, 401);
    let bob = sign_in(&cp, "bob@example.com", "a long enough password").await;
    assert_eq!(status(&bob, &me).await, 200);

    // A new password ends the sessions too, and only the new password signs in.
    let out = with_stdin(
        d,
        &["--config", "gatehouse.toml", "users", "set-password", "bob@example.com", "--password-stdin"],
        "a brand new password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(&bob, &me, 401).await;
    assert_ne!(
        try_sign_in(&cp, "bob@example.com", "a long enough password").await.0,
        303,
        "the old password no longer works"
    );
    let bob = sign_in(&cp, "bob@example.com", "a brand new password").await;
    assert_eq!(status(&bob, &me).await, 200);

    let _ = server.kill();
    let _ = server.wait();
}
