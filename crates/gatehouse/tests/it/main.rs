//! The binary as a newcomer uses it: CLI commands on a fresh data dir, `serve` as a real process,
//! on SQLite and (by changing one setting) PostgreSQL.

mod access;
mod cli;
mod cluster;
mod config_apps;
mod dashboard_flows;
mod dashboard_keys;
mod dashboard_users;
mod disk_full;
mod guides;
mod newcomer;
mod oauth_clients;
mod oauth_config;
mod redis_outage;
mod scan;
mod servers;
mod sigkill;
mod signing_key;
mod sso;
mod storage_outage;
mod tls;
mod tls_acme;

mod up;
mod users;
mod webhooks_crash;
mod webhooks_proxy;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs `gatehouse` with `args` in `dir`, with a clean `GATEHOUSE_*` environment plus `env`.
pub fn gatehouse(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(dir, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run gatehouse")
}

/// `gatehouse` with `args` in `dir`, with no `GATEHOUSE_*` variable from the test's environment.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
        cmd.env_remove(k);
    }
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and parses `--json` output, failing with stderr on a non-zero exit.
pub fn json(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = gatehouse(dir, &all, env);
    assert!(out.status.success(), "gatehouse {args:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

/// Starts `gatehouse --config gatehouse.toml serve` in `dir`, its output discarded.
pub fn serve(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["--config", "gatehouse.toml", "serve"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gatehouse serve")
}

/// A data dir whose config (on a free port, with the development switch for loopback receivers) has one
/// webhook endpoint for `key.created` pointing at `http://{receiver}/hooks`.
pub fn dir_with_webhook_endpoint(receiver: std::net::SocketAddr) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!("listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nlog_level = \"warn\"\n[webhooks]\nallow_private_destinations = true\n"),
    )
    .unwrap();
    let url = format!("http://{receiver}/hooks");
    json(
        dir.path(),
        &["--config", "gatehouse.toml", "webhooks", "endpoints", "create", "--url", &url, "--event", "key.created"],
        &[],
    );
    dir
}
