//! The dashboard's API keys in Chromium against `gatehouse up` on `examples/hello`
//! (`tests/browser/dashboard_keys.mjs`): Configuration → Create new API key → the gateway.

use crate::up::{repo_root, Up, OWNER_EMAIL, OWNER_PASSWORD};

#[tokio::test]
async fn browser_keys_in_chromium() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    let out = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser/dashboard_keys.mjs"))
        .current_dir(repo_root().join("tests/browser"))
        .env("APP_URL", &up.app)
        .env("CP_URL", &up.cp)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("SCREENSHOT_DIR", repo_root().join("target/screenshots/dashboard_keys"))
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
