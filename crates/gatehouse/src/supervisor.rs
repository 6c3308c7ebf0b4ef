//! Runs a Spacefile's micros for `gatehouse up`: each `run` command in its `src` directory with `PORT`
//! and Deta's environment variables, output prefixed with the micro's name, readiness by TCP connect,
//! restarts with backoff after a crash, and a clean stop (SIGTERM to the process group, then SIGKILL).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// One micro to run.
#[derive(Clone, Debug)]
pub struct MicroProcess {
    pub name: String,
    pub command: String,
    pub dir: PathBuf,
    pub port: u16,
    pub env: Vec<(String, String)>,
}

/// A free port on loopback, chosen by the kernel.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pipe_lines<R: AsyncRead + Unpin + Send + 'static>(name: String, reader: R, to_stderr: bool) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to_stderr {
                eprintln!("[{name}] {line}");
            } else {
                println!("[{name}] {line}");
            }
        }
    });
}

fn spawn(m: &MicroProcess) -> Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&m.command)
        .current_dir(&m.dir)
        .env("PORT", m.port.to_string())
        .envs(m.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start micro `{}` (`{}` in {})", m.name, m.command, m.dir.display()))?;
    if let Some(out) = child.stdout.take() {
        pipe_lines(m.name.clone(), out, false);
    }
    if let Some(err) = child.stderr.take() {
        pipe_lines(m.name.clone(), err, true);
    }
    Ok(child)
}

/// Stops a child and everything it started: SIGTERM to its group, SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

/// Keeps one micro running until `shutdown` turns true.
pub async fn supervise(m: MicroProcess, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let mut child = match spawn(&m) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("[{}] {e:#}", m.name);
                return;
            }
        };
        tokio::select! {
            status = child.wait() => {
                if *shutdown.borrow() {
                    return;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_secs(1);
                }
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!("[{}] exited ({status}); restarting in {} s", m.name, backoff.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            _ = shutdown.changed() => {
                stop(&mut child, Duration::from_secs(5)).await;
                return;
            }
        }
    }
}

/// Waits until something accepts connections on the port (or the deadline passes).
pub async fn wait_ready(port: u16, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Runs a one-off build step (`npm install`, the micro's `commands`) in `dir`, prefixing its output.
pub async fn run_step(name: &str, command: &str, dir: &std::path::Path, env: &[(String, String)]) -> Result<()> {
    println!("[{name}] $ {command}");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{command}` for micro `{name}`"))?;
    if let Some(out) = child.stdout.take() {
        pipe_lines(name.to_owned(), out, false);
    }
    if let Some(err) = child.stderr.take() {
        pipe_lines(name.to_owned(), err, true);
    }
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "`{command}` for micro `{name}` failed ({status})");
    Ok(())
}
