//! Real processes a fault or cluster test owns: a PostgreSQL server (`initdb` + `pg_ctl` on a free
//! port, so the test may stop and start it), a `redis-server` (killed and restarted), and
//! `gatehouse serve` nodes. Each is stopped when its guard drops, even on panic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether this process runs as root (PostgreSQL refuses to, so its tools then run as `postgres`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn pg_bin(tool: &str) -> PathBuf {
    let on_path = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
    if let Ok(o) = on_path {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if o.status.success() && !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin").join(tool)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("{tool} not found: install PostgreSQL's server binaries"))
}

/// A PostgreSQL server of the test's own, trust auth, user `postgres`, on 127.0.0.1 and a free port.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl OwnPostgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown of the PostgreSQL test dir failed");
        }
        let data = dir.path().join("data");
        let out = Self::tool("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let pg = OwnPostgres { dir, port: free_port() };
        pg.start_again();
        pg
    }

    fn tool(name: &str) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin(name));
            c
        } else {
            Command::new(pg_bin(name))
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = Self::tool("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data())
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("server.log"))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start failed: {}{}", String::from_utf8_lossy(&out.stderr), self.log());
    }

    /// Stops the server the way an operator does (`-m fast`: connections are ended, nothing waits).
    pub fn stop(&self) {
        let out = Self::tool("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Self::tool("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of the test's own on a free port, no persistence.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let mut r = OwnRedis { port: free_port(), child: None };
        r.start_again();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: Redis vanishes mid-conversation, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A data dir with a `gatehouse.toml` (free port, the settings given) for one `gatehouse serve` node.
pub struct NodeDir {
    pub dir: tempfile::TempDir,
    pub base: String,
}

impl NodeDir {
    /// `settings` is TOML appended after `listen`, `data_dir` and `log_level`.
    pub fn new(settings: &str) -> Self {
        Self::at(free_port(), settings)
    }

    /// As `new`, listening on `port`.
    pub fn at(port: u16, settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gatehouse.toml"),
            format!("listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nlog_level = \"info\"\n{settings}\n"),
        )
        .unwrap();
        NodeDir { dir, base: format!("http://127.0.0.1:{port}") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A CLI command on this node's config, answering its `--json` output.
    pub fn cli(&self, args: &[&str]) -> Value {
        let mut all = vec!["--config", "gatehouse.toml"];
        all.extend_from_slice(args);
        crate::json(self.path(), &all, &[])
    }

    /// Starts `gatehouse serve` (stderr to `serve.err`) and waits for `/readyz`.
    pub async fn serve(&self) -> Node {
        let mut cmd = crate::command(self.path(), &["--config", "gatehouse.toml", "serve"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path().join("serve.err")).unwrap());
        let node = Node { child: cmd.spawn().expect("start gatehouse serve"), log: self.path().join("serve.err") };
        let client = reqwest::Client::new();
        let start = Instant::now();
        while client.get(format!("{}/readyz", self.base)).send().await.map(|r| r.status() != 200).unwrap_or(true) {
            assert!(start.elapsed() < Duration::from_secs(30), "node did not become ready: {}", node.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }
}

/// A running `gatehouse serve`; SIGKILLed when dropped.
pub struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts `cmd`, whose stderr goes to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Node {
        Node { child: cmd.spawn().expect("start gatehouse"), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events a [`receiver`] accepted, as (request path, `data.object.id`).
pub type Received = Arc<Mutex<HashSet<(String, String)>>>;

/// A webhook receiver on a free port that answers 200 to everything and records what it got.
pub async fn receiver() -> (std::net::SocketAddr, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let g = g.clone();
        async move {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(id) = v["data"]["object"]["id"].as_str() {
                g.lock().unwrap().insert((uri.path().to_owned(), id.to_owned()));
            }
            axum::http::StatusCode::OK
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, got)
}
