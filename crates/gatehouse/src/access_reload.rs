//! Policy changes reach a running node within a second (SPEC §15): the configuration file is read
//! every 250 ms, and when its bytes changed its `[access.<app>]` tables are parsed and checked
//! against the served apps and, if all is well, swapped in whole (`AccessPolicies::replace`). An
//! edit that does not load — TOML that does not parse, an unknown field, a bad entry, a table for an
//! app that is not served — keeps the policy in force and logs why: a broken edit never opens an app.
//! Other settings in the file take effect at the next start.
//!
//! Polling rather than a file watcher: it sees every way a file is replaced (in place, renamed over,
//! a Kubernetes ConfigMap's symlink swap, a network file system) with no platform code, and reading a
//! small file four times a second costs nothing measurable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_services::access::AccessPolicies;

/// How often the file is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Watches `path` until the task is aborted; `apps` are the names policies may be given for.
pub fn spawn(path: PathBuf, apps: Vec<String>, policies: Arc<AccessPolicies>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The file as it was last judged (loaded or refused), so each edit is judged and logged once.
        let mut seen: Option<Vec<u8>> = std::fs::read(&path).ok();
        let mut unreadable = false;
        loop {
            tick.tick().await;
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    if !unreadable {
                        tracing::warn!(file = %path.display(), error = %e, "cannot read the configuration file; the access policies in force stay");
                        unreadable = true;
                    }
                    continue;
                }
            };
            unreadable = false;
            if seen.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            seen = Some(bytes.clone());
            let names: Vec<&str> = apps.iter().map(String::as_str).collect();
            match crate::config::reload_access(&path, &bytes, &names) {
                Ok(table) => {
                    let count = table.len();
                    policies.replace(table);
                    tracing::info!(file = %path.display(), apps_with_policy = count, "access policies reloaded");
                }
                // One line per refusal (a TOML error's own lines are escaped), however long the error.
                Err(e) => tracing::error!(
                    file = %path.display(),
                    error = ?format!("{e:#}"),
                    "the configuration file changed but does not load, so the access policies in force stay"
                ),
            }
        }
    })
}
