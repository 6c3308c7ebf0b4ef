//! The dashboard's API keys in Chromium against `gatehouse up` on `examples/hello`
//! (`tests/browser/dashboard_keys.mjs`): Configuration → Create new API key → the gateway.

use crate::up::{repo_root, run_browser_script, Up};

#[tokio::test]
async fn browser_keys_in_chromium() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    run_browser_script(&up, "dashboard_keys.mjs", "dashboard_keys").await;
}
