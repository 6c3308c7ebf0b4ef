//! CLI behaviour on a data dir with no server: output snapshots, exit codes, config errors.

use expect_test::expect;

use crate::{gatehouse, json, stderr, stdout};

/// Replaces the parts of CLI output that change every run (ids, secrets, times).
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace()) {
        let spaced = word.trim_end();
        let ws = &word[spaced.len()..];
        let trimmed = spaced.trim_end_matches(['.', ',']);
        let punct = &spaced[trimmed.len()..];
        let replaced = if trimmed.starts_with("key_") && trimmed.len() == 30 {
            "key_<id>".to_owned()
        } else if trimmed.starts_with("gth_") && trimmed.len() == 48 {
            "gth_<secret>".to_owned()
        } else if trimmed.starts_with("gth_") && trimmed.contains('…') {
            format!("{}…<last4>", &trimmed[..12])
        } else if trimmed.len() == 20 && trimmed.ends_with('Z') && trimmed.contains('T') {
            "<time>".to_owned()
        } else {
            trimmed.to_owned()
        };
        out.push_str(&replaced);
        out.push_str(punct);
        out.push_str(ws);
    }
    out
}

#[test]
fn create_list_get_revoke_verify_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = gatehouse(d, &["keys", "create", "--name", "deploy bot"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    expect![[r#"
        Created sk key key_<id> (live)

            gth_<secret>

        This secret is shown once. Store it now: Gatehouse keeps only its SHA-256.
    "#]]
    .assert_eq(&normalize(&stdout(&out)));
    assert!(d.join(".gatehouse/gatehouse.db").exists(), "SQLite lives in the default data dir");

    let created = json(
        d,
        &[
            "keys",
            "create",
            "--kind",
            "rk",
            "--scope",
            "orders:read",
            "--env",
            "test",
            "--ip",
            "10.0.0.0/8",
            "--expires-in",
            "30d",
            "--metadata",
            "team=billing",
        ],
        &[],
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], serde_json::json!(["orders:read"]));
    assert_eq!(created["metadata"]["team"], "billing");

    let listed = gatehouse(d, &["keys", "list"], &[]);
    expect![[r#"
        ID                              NAME                  KIND  ENV   STATUS   KEY                     LAST USED
        key_<id>  -                     rk    test  active   gth_rk_test_…<last4>   -
        key_<id>  deploy bot            sk    live  active   gth_sk_live_…<last4>   -
    "#]]
    .assert_eq(&normalize(&stdout(&listed)));
    assert!(!stdout(&listed).contains(&secret), "list never shows a secret");

    let shown = gatehouse(d, &["keys", "get", &id], &[]);
    assert!(stdout(&shown).contains("orders:read") && stdout(&shown).contains("10.0.0.0/8"), "{}", stdout(&shown));

    let ok = gatehouse(d, &["keys", "verify", &secret, "--scope", "orders:read", "--ip", "10.1.2.3"], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let wrong_ip = gatehouse(d, &["keys", "verify", &secret, "--ip", "192.0.2.1", "--json"], &[]);
    assert_eq!(wrong_ip.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&wrong_ip.stdout).unwrap();
    assert_eq!((verdict["valid"].as_bool(), verdict["code"].as_str()), (Some(false), Some("ip_not_allowed")));

    let revoked = gatehouse(d, &["keys", "revoke", &id, "--reason", "rotating"], &[]);
    assert!(revoked.status.success());
    let after = gatehouse(d, &["keys", "verify", &secret, "--ip", "10.1.2.3"], &[]);
    assert_eq!(after.status.code(), Some(1), "a refused key exits 1");
    assert_eq!(normalize(&stdout(&after)), "invalid: api_key_revoked — The API key has been revoked.\n");

    let mut typo = secret.clone();
    typo.replace_range(20..21, if &secret[20..21] == "a" { "b" } else { "a" });
    let out = gatehouse(d, &["keys", "verify", &typo], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("invalid: invalid_api_key"));
}

#[test]
fn roll_prints_the_new_secret_and_the_old_keys_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let created = json(d, &["keys", "create", "--name", "a"], &[]);
    let id = created["id"].as_str().unwrap();
    let out = gatehouse(d, &["keys", "roll", id, "--grace", "24h"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = normalize(&stdout(&out));
    assert!(text.starts_with("Created sk key key_<id> (live)"), "{text}");
    assert!(text.ends_with("The old key key_<id> keeps working until <time>.\n"), "{text}");
    let again = gatehouse(d, &["keys", "roll", id], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already rolled"), "{}", stderr(&again));
}

#[test]
fn bad_input_is_refused_with_a_reason_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows: &[(&[&str], &str)] = &[
        (&["keys", "create", "--ip", "10.0.0.0/33"], "not a valid CIDR"),
        (&["keys", "create", "--kind", "rk"], "needs at least one scope"),
        (&["keys", "create", "--scope", "orders:read"], "an sk key holds every scope"),
        (&["keys", "create", "--expires-at", "2001-01-01T00:00:00Z"], "is in the past"),
        (&["keys", "create", "--expires-in", "3w"], "unknown unit"),
        (&["keys", "create", "--rate-limit", "fast"], "LIMIT/WINDOW"),
        (&["keys", "roll", "key_00000000000000000000000000", "--grace", "8d"], "between 0 and 604800"),
        (&["keys", "get", "key_nope"], "No API key"),
    ];
    for (args, want) in rows {
        let out = gatehouse(d, args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let listed = json(d, &["keys", "list"], &[]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[test]
fn configuration_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("gatehouse.toml"), "listen = \"127.0.0.1:4455\"\n[rate_limit]\nlimt = 5\n").unwrap();
    let out = gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gatehouse.toml") && err.contains("line 3") && err.contains("limt"), "{err}");
    let out = gatehouse(d, &["config", "check"], &[("GATEHOUSE_DATA_DIRR", "x")]);
    assert!(stderr(&out).contains("unknown environment variable GATEHOUSE_DATA_DIRR"), "{}", stderr(&out));
    let out = gatehouse(d, &["config", "check"], &[("GATEHOUSE_DATABASE_URL", "postgres://u:pw-secret@127.0.0.1:1/x")]);
    assert!(out.status.success());
    assert!(!stdout(&out).contains("pw-secret"), "passwords are never printed: {}", stdout(&out));
}

#[test]
fn config_check_reports_every_spacefile_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("Spacefile"),
        "v: 0\nmicros:\n  - name: web\n    src: .\n    run: node a.js\n    public: true\n    public_routes: [\"/x\"]\n  - name: web\n    src: .\n    run: node b.js\n",
    )
    .unwrap();
    let out = gatehouse(d, &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Spacefile:7: micros[0].public_routes: cannot be used together with `public`"), "{err}");
    assert!(err.contains("Spacefile:8: micros[1].name: `web` is used by another micro"), "{err}");
    assert!(err.contains("exactly one needs `primary: true`"), "{err}");
    std::fs::write(d.join("Spacefile"), "v: 0\nmicros:\n  - name: web\n    src: .\n    run: node a.js\n").unwrap();
    let out = gatehouse(d, &["config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Spacefile Spacefile is valid."));
}

#[test]
fn webhooks_verify_from_the_shell() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"id":"evt_1","type":"key.created"}"#;
    let header = gatehouse_webhook::sign_header(&[secret], 1_767_225_600, body);
    let run = |header: &str, now: &str, body: &[u8]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["webhooks", "verify", "--secret", "whsec_old", "--secret", secret, "--header", header, "--now", now])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    assert_eq!(run(&header, "1767225600", body), (Some(0), "valid".into()));
    assert_eq!(
        run(&header, "1767226000", body),
        (Some(1), "invalid: the signature is too old (replay protection)".into())
    );
    assert_eq!(run(&header, "1767225600", b"{}"), (Some(1), "invalid: no signature matches the secret(s)".into()));
}

#[test]
fn oauth_clients_belong_to_an_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let live = json(d, &["oauth", "clients", "create", "--name", "Live tool", "--scope", "orders:read"], &[]);
    assert_eq!(
        (&live["environment"], &live["app"]),
        (&serde_json::json!("live"), &serde_json::Value::Null),
        "live by default: {live}"
    );
    let test = json(
        d,
        &[
            "oauth",
            "clients",
            "create",
            "--name",
            "Test tool",
            "--scope",
            "orders:read",
            "--env",
            "test",
            "--app",
            "shop",
        ],
        &[],
    );
    assert_eq!(
        (&test["environment"], &test["app"]),
        (&serde_json::json!("test"), &serde_json::json!("shop")),
        "{test}"
    );
    let only_test = json(d, &["oauth", "clients", "list", "--env", "test"], &[]);
    let ids: Vec<&str> = only_test["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [test["id"].as_str().unwrap()], "{only_test}");
    let all = json(d, &["oauth", "clients", "list"], &[]);
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let out = gatehouse(d, &["oauth", "clients", "create", "--name", "x", "--env", "staging"], &[]);
    assert!(!out.status.success());
}

/// Starts `gatehouse serve` in a fresh dir with `env`, waits until it answers, stops it, and answers
/// everything it wrote to stderr.
async fn serve_stderr(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = crate::command(dir.path(), &["serve", "--listen", &listen]);
    cmd.env_remove("RUST_LOG").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    while client.get(format!("http://{listen}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("server did not become ready: {}", stderr(&child.wait_with_output().unwrap()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    stderr(&child.wait_with_output().unwrap())
}

/// An unsafe development switch set from the environment is announced when the server starts: the
/// warning used to be logged while loading, before logging existed, so nobody ever saw it.
#[tokio::test]
async fn unsafe_webhook_switch_warns_on_stderr_at_startup() {
    let on = serve_stderr(&[("GATEHOUSE_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "true")]).await;
    let warning = "webhooks.allow_private_destinations is on";
    assert_eq!(on.matches(warning).count(), 1, "once, as a warning: {on}");
    assert!(on.lines().any(|l| l.contains(warning) && l.contains("WARN")), "{on}");
    for off in [vec![], vec![("GATEHOUSE_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "false")]] {
        let err = serve_stderr(&off).await;
        assert!(!err.contains(warning), "{off:?}: {err}");
    }
    // Logged through the configured format: as JSON when asked.
    let json_on =
        serve_stderr(&[("GATEHOUSE_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "true"), ("GATEHOUSE_LOG_FORMAT", "json")])
            .await;
    let line = json_on.lines().find(|l| l.contains(warning)).unwrap_or_else(|| panic!("{json_on}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
}
