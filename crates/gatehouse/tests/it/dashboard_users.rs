//! The Users dashboard in Debian's Chromium against `gatehouse up` (tests/browser/dashboard_users.mjs).

use crate::up::{repo_root, run_browser_script, Up};

#[tokio::test]
async fn users_in_chromium() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    run_browser_script(&up, "dashboard_users.mjs", "").await;
}
