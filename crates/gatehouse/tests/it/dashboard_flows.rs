//! The dashboard's OAuth apps, webhooks, usage charts and a viewer in Chromium against `gatehouse up`
//! on `examples/hello` (`tests/browser/dashboard_flows.mjs`): the API guide's authorization URL through
//! sign-in and consent, a webhook delivery to a local receiver, gateway traffic in a key's chart, and a
//! viewer's read-only pages and refused forged posts.

use crate::up::{repo_root, run_browser_script, Up};

#[tokio::test]
async fn flows_in_chromium() {
    let env = [
        // A short flush, so the charts show the traffic within a second or two.
        ("GATEHOUSE_USAGE__FLUSH_INTERVAL_SECS", "1"),
        // The test's webhook receiver listens on loopback.
        ("GATEHOUSE_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "true"),
    ];
    let up = Up::start_with(&repo_root().join("examples/hello"), "/ping", &[], &env).await;
    run_browser_script(&up, "dashboard_flows.mjs", "dashboard_flows").await;
}
