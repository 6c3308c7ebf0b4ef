//! The Users dashboard in Debian's Chromium against `gatehouse up` (tests/browser/dashboard_users.mjs).

use crate::up::{repo_root, Up, OWNER_EMAIL, OWNER_PASSWORD};

#[tokio::test]
async fn users_in_chromium() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    let script = repo_root().join("tests/browser/dashboard_users.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(repo_root().join("tests/browser"))
        .env("CP_URL", &up.cp)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("SCREENSHOT_DIR", repo_root().join("target/screenshots"))
        .output()
        .await
        .expect("node runs (scripts/test.sh installs the browser test's packages and Chromium)");
    assert!(
        out.status.success(),
        "the browser flow failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
