//! OAuth clients nobody here wrote (SPEC §7): `openid-client` from npm and Authlib from PyPI run the
//! whole flow against a real `gatehouse up` of the hello example — discovery, sign-in and consent
//! through the HTML forms, code exchange with PKCE, a call through the gateway, refresh,
//! introspection, revocation. The `oauth2` crate runs the same flow in gatehouse-server's tests.
//!
//! The scripts live in tests/oauth-clients; scripts/test.sh installs their packages.

use std::path::Path;
use std::process::Command;

use crate::up::{repo_root, Up, OWNER_EMAIL, OWNER_PASSWORD};

/// Registers a client on `up`'s data dir with the CLI; returns its id and secret.
pub(crate) fn register(up: &Up, name: &str, redirect: &str, scopes: &[&str]) -> (String, String) {
    let d = up.data_dir();
    let mut args =
        vec!["--data-dir", d.as_str(), "oauth", "clients", "create", "--name", name, "--redirect-uri", redirect];
    for s in scopes {
        args.extend(["--scope", *s]);
    }
    let v = crate::json(up.dir.path(), &args, &[]);
    (v["id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned())
}

/// Runs `cmd` in tests/oauth-clients against `up` with the client and the owner in `GH_*`; it must
/// exit 0 and say "all checks passed".
pub(crate) fn run(up: &Up, mut cmd: Command, client: (String, String), what: &str) {
    let out = cmd
        .current_dir(repo_root().join("tests/oauth-clients"))
        .env("GH_CP", &up.cp)
        .env("GH_APP", &up.app)
        .env("GH_CLIENT_ID", client.0)
        .env("GH_CLIENT_SECRET", client.1)
        .env("GH_EMAIL", OWNER_EMAIL)
        .env("GH_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start ({e}); run scripts/test.sh, which installs it"));
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{what} failed:\n{text}\n--- gatehouse log ---\n{}",
        std::fs::read_to_string(&up.log).unwrap_or_default()
    );
    assert!(text.contains("all checks passed"), "{text}");
    println!("{text}");
}

#[tokio::test]
async fn openid_client_from_npm_completes_the_flow() {
    let dir = repo_root().join("tests/oauth-clients");
    assert!(
        dir.join("node_modules/openid-client").is_dir(),
        "tests/oauth-clients/node_modules is missing: run scripts/test.sh"
    );
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    let client = register(&up, "Third-party check", "http://127.0.0.1/callback", &["hello:read"]);
    let mut cmd = Command::new("node");
    cmd.arg("openid_client_flow.mjs");
    run(&up, cmd, client, "openid-client");
}

#[tokio::test]
async fn authlib_from_pypi_completes_the_flow() {
    let python = repo_root().join("tests/oauth-clients/.venv/bin/python");
    assert!(Path::new(&python).exists(), "tests/oauth-clients/.venv is missing: run scripts/test.sh");
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    let client = register(&up, "Third-party check", "http://127.0.0.1/cb", &["hello:read"]);
    let mut cmd = Command::new(python);
    // Authlib refuses plain HTTP unless told; the test server has no TLS.
    cmd.arg("authlib_flow.py").env("AUTHLIB_INSECURE_TRANSPORT", "1");
    run(&up, cmd, client, "authlib");
}
