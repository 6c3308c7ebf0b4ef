//! `gatehouse up` end to end, as a new user would run it: real processes (the gateway and the app's
//! micros), real HTTP, the CLI on the same data dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{json, stdout};

pub const OWNER_EMAIL: &str = "owner@example.com";
pub const OWNER_PASSWORD: &str = "correct horse battery staple";

/// A running `gatehouse up`, stopped with SIGTERM on drop.
pub struct Up {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub app: String,
    pub cp: String,
    pub log: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "node_modules" || name == ".gatehouse" || name == ".venv" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

impl Up {
    /// Copies `example` to a temp dir and runs `gatehouse up` on it; waits until `ready_path` answers.
    pub async fn start(example: &Path, ready_path: &str) -> Up {
        Self::start_under(example, ready_path, &[]).await
    }

    /// As `start`, with `gatehouse` run by `wrapper` (e.g. `prlimit --nofile=256:256 --`) when not empty.
    pub async fn start_under(example: &Path, ready_path: &str, wrapper: &[&str]) -> Up {
        Self::start_with(example, ready_path, wrapper, &[]).await
    }

    /// As `start_under`, with these `GATEHOUSE_…` settings in the environment (every other one removed).
    pub async fn start_with(example: &Path, ready_path: &str, wrapper: &[&str], env: &[(&str, &str)]) -> Up {
        let up = Self::launch(example, wrapper, env);
        let client = reqwest::Client::new();
        let url = format!("{}{ready_path}", up.app);
        up.wait_until(&format!("{ready_path} answering 200"), || async {
            client.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        up
    }

    /// Runs `gatehouse up` on a copy of `example` whose routes are all private: waits for its banner,
    /// which is printed once every micro accepts connections and the listeners are bound.
    pub async fn start_private(example: &Path) -> Up {
        let up = Self::launch(example, &[], &[]);
        up.wait_until("the banner", || async {
            std::fs::read_to_string(&up.log).is_ok_and(|l| l.contains("Gatehouse is up"))
        })
        .await;
        up
    }

    /// Waits (at most 180 s: the first `npm install` may be slow) until `ready` says so.
    async fn wait_until<F: std::future::Future<Output = bool>>(&self, what: &str, ready: impl Fn() -> F) {
        let start = Instant::now();
        while !ready().await {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "gatehouse up did not get to {what} in time:\n{}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default(),
                std::fs::read_to_string(self.dir.path().join("up.err")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `gatehouse --config gatehouse.toml up` on a copy of `example` with `config` as that file and
    /// the control plane on `cp_port`; waits until `ready_path` answers 200.
    pub async fn start_configured(example: &Path, ready_path: &str, config: &str, cp_port: u16) -> Up {
        let up = Self::launch_on(example, &[], &[], Some(config), (free_port(), cp_port));
        let client = reqwest::Client::new();
        let url = format!("{}{ready_path}", up.app);
        up.wait_until(&format!("{ready_path} answering 200"), || async {
            client.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        up
    }

    fn launch(example: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> Up {
        Self::launch_on(example, wrapper, env, None, (free_port(), free_port()))
    }

    fn launch_on(
        example: &Path,
        wrapper: &[&str],
        env: &[(&str, &str)],
        config: Option<&str>,
        (app_port, cp_port): (u16, u16),
    ) -> Up {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(example, dir.path());
        let log = dir.path().join("up.log");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_gatehouse")),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_gatehouse"));
                c
            }
        };
        if let Some(text) = config {
            std::fs::write(dir.path().join("gatehouse.toml"), text).unwrap();
            cmd.args(["--config", "gatehouse.toml"]);
        }
        cmd.args([
            "up",
            ".",
            "--listen",
            &format!("127.0.0.1:{app_port}"),
            "--control-plane",
            &format!("127.0.0.1:{cp_port}"),
        ])
        .current_dir(dir.path())
        .env("GATEHOUSE_OWNER_EMAIL", OWNER_EMAIL)
        .env("GATEHOUSE_OWNER_PASSWORD", OWNER_PASSWORD)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("up.err")).unwrap());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
            cmd.env_remove(k);
        }
        cmd.env("GATEHOUSE_OWNER_EMAIL", OWNER_EMAIL).env("GATEHOUSE_OWNER_PASSWORD", OWNER_PASSWORD);
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().unwrap();
        Up { child, dir, app: format!("http://127.0.0.1:{app_port}"), cp: format!("http://127.0.0.1:{cp_port}"), log }
    }

    pub fn data_dir(&self) -> String {
        self.dir.path().join(".gatehouse").display().to_string()
    }

    /// A key made with the CLI on the running app's data dir.
    pub fn cli_key(&self, extra: &[&str]) -> (String, String) {
        let d = self.data_dir();
        let mut args = vec!["--data-dir", d.as_str(), "keys", "create", "--name", "e2e"];
        args.extend_from_slice(extra);
        let v = json(self.dir.path(), &args, &[]);
        (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    }
}

pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut rb = client.get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.text().await.unwrap())
}

#[tokio::test]
async fn a_python_micro_gets_its_requirements_in_a_venv() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python-micro");
    let up = Up::start(&fixture, "/version").await;
    let (status, _, body) = get(&format!("{}/version", up.app), &[]).await;
    assert_eq!(status, 200);
    let venv = up.dir.path().canonicalize().unwrap().join(".venv");
    assert!(body.starts_with("six 1.16.0 from "), "{body}");
    assert!(body.contains(&venv.display().to_string()), "six must come from {}: {body}", venv.display());
    let log = std::fs::read_to_string(&up.log).unwrap();
    assert!(log.contains("[api] $ python3 -m venv .venv"), "{log}");
    assert!(log.contains("pip install --disable-pip-version-check -r requirements.txt"), "{log}");
    // Everything but the public route stays private.
    assert_eq!(get(&format!("{}/other", up.app), &[]).await.0, 401);
}

#[tokio::test]
async fn a_static_micro_serves_its_directory_and_nothing_outside_it() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/static-site");
    let up = Up::start(&fixture, "/").await;
    let (status, h, body) = get(&format!("{}/", up.app), &[]).await;
    assert_eq!((status, h["content-type"].to_str().unwrap()), (200, "text/html; charset=utf-8"));
    assert!(body.contains("static site index"));
    let (status, h, body) = get(&format!("{}/app.js", up.app), &[]).await;
    assert_eq!((status, h["content-type"].to_str().unwrap()), (200, "text/javascript; charset=utf-8"));
    assert!(body.contains("static site script"));
    assert_eq!(get(&format!("{}/missing.html", up.app), &[]).await.0, 404);
    assert_eq!(get(&format!("{}/secret.txt", up.app), &[]).await.0, 404, "src is not served, only serve");
    // A symlink inside the served directory pointing out of it is not followed out.
    let dist = up.dir.path().join("site/dist");
    std::os::unix::fs::symlink(up.dir.path().join("site/secret.txt"), dist.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(up.dir.path().join("site"), dist.join("up")).unwrap();
    let (status, _, body) = get(&format!("{}/leak.txt", up.app), &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(get(&format!("{}/up/secret.txt", up.app), &[]).await.0, 404);
    let post = reqwest::Client::new().post(format!("{}/", up.app)).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405, "files are read-only");
}

#[tokio::test]
async fn hello_example_private_by_default_with_keys_and_identity() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    let banner = std::fs::read_to_string(&up.log).unwrap();
    assert!(banner.contains("Gatehouse is up · hello") && banner.contains(&up.app), "{banner}");

    let (s, h, body) = get(&format!("{}/", up.app), &[]).await;
    assert_eq!(s, 401, "{body}");
    assert!(h.contains_key("www-authenticate"));
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "missing_credentials");
    let (s, h, _) = get(&format!("{}/", up.app), &[("accept", "text/html")]).await;
    assert_eq!(s, 302);
    assert!(h["location"].to_str().unwrap().starts_with(&format!("{}/login?return_to=", up.cp)));
    assert_eq!(get(&format!("{}/ping", up.app), &[]).await.2, "pong");

    let (id, key) = up.cli_key(&[]);
    let (s, _, who) =
        get(&format!("{}/api/whoami", up.app), &[("x-space-app-key", &key), ("x-gatehouse-user", "usr_spoofed")]).await;
    assert_eq!(s, 200, "{who}");
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["auth"], "api_key");
    assert_eq!(who["key_id"], id.as_str());
    assert_eq!(who["user"], Value::Null, "a spoofed identity header never reaches the app");
    assert_eq!(who["client_ip"], "127.0.0.1");
    assert_eq!(who["has_assertion"], true);

    let out = crate::gatehouse(up.dir.path(), &["--data-dir", &up.data_dir(), "keys", "revoke", &id], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
    let start = Instant::now();
    loop {
        let (s, _, body) = get(&format!("{}/api/whoami", up.app), &[("x-space-app-key", &key)]).await;
        if s == 401 {
            assert!(body.contains("api_key_revoked"));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "a CLI revocation reaches the running gateway within 1 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_crashed_micro_is_restarted_and_says_so() {
    let up = Up::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crashy"), "/").await;
    let (_, _, first) = get(&format!("{}/", up.app), &[]).await;
    assert_eq!(get(&format!("{}/crash", up.app), &[]).await.2, "bye");
    let start = Instant::now();
    loop {
        let (s, _, body) = get(&format!("{}/", up.app), &[]).await;
        if s == 200 && body != first {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the micro was not restarted (last: {s} {body})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = std::fs::read_to_string(up.dir.path().join("up.err")).unwrap();
    assert!(err.contains("[crashy] exited") && err.contains("restarting"), "{err}");
}

/// Runs `tests/browser/{script}` in node against `up` (APP_URL, CP_URL, the owner's EMAIL and PASSWORD,
/// screenshots under `target/screenshots/{screenshots}`) and fails with its output if it fails.
pub(crate) async fn run_browser_script(up: &Up, script: &str, screenshots: &str) {
    let out = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .current_dir(repo_root().join("tests/browser"))
        .env("APP_URL", &up.app)
        .env("CP_URL", &up.cp)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("SCREENSHOT_DIR", repo_root().join("target/screenshots").join(screenshots))
        .output()
        .await
        .expect("node runs (scripts/test.sh installs the browser test's packages and Chromium)");
    assert!(
        out.status.success(),
        "the browser flow {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn browser_login_in_chromium() {
    let up = Up::start(&repo_root().join("examples/hello"), "/ping").await;
    run_browser_script(&up, "login.mjs", "").await;
}

#[tokio::test]
async fn serve_runs_several_apps_by_host_in_front_of_running_upstreams() {
    // A running upstream, listening before its port is written anywhere (no free-port race).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let upstream = tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "upstream" });
        axum::serve(listener, app).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (app, extra) in [("alpha", "    public_routes: [\"/open\"]\n"), ("beta", "")] {
        std::fs::create_dir_all(d.join(app)).unwrap();
        let sf = format!(
            "v: 0\napp_name: {app}\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:{up_port}\n{extra}    presets:\n      api_keys: true\n"
        );
        std::fs::write(d.join(app).join("Spacefile"), sf).unwrap();
    }
    // The server's own ports are picked free and released; if another process takes one in between,
    // the server exits at once and is started again on new ports.
    let (mut server, gw_port) = 'start: {
        for _ in 0..5 {
            let (cp_port, gw_port) = (free_port(), free_port());
            let config = format!(
                "listen = \"127.0.0.1:{cp_port}\"\ngateway_listen = \"127.0.0.1:{gw_port}\"\n\n[[apps]]\nname = \"alpha\"\nhosts = [\"alpha.test\"]\nspacefile = \"alpha/Spacefile\"\n\n[[apps]]\nname = \"beta\"\nhosts = [\"beta.test\"]\nspacefile = \"beta/Spacefile\"\n"
            );
            std::fs::write(d.join("gatehouse.toml"), config).unwrap();
            let mut server = crate::serve(d);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if server.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_ok() {
                    break 'start (server, gw_port);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        panic!("serve did not come up in five attempts");
    };
    let client = reqwest::Client::new();
    let gw = format!("http://127.0.0.1:{gw_port}");
    let call = |host: &'static str, path: &'static str, key: Option<String>| {
        let client = client.clone();
        let gw = gw.clone();
        async move {
            let mut rb = client.get(format!("{gw}{path}")).header("host", host);
            if let Some(k) = key {
                rb = rb.header("x-space-app-key", k);
            }
            rb.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    let start = Instant::now();
    while call("alpha.test", "/open", None).await != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call("beta.test", "/open", None).await, 401, "beta has no public routes");
    assert_eq!(call("gamma.test", "/open", None).await, 404, "unknown host");
    let v = json(d, &["keys", "create", "--app", "alpha"], &[]);
    let key = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(call("alpha.test", "/x", Some(key.clone())).await, 200);
    assert_eq!(call("beta.test", "/x", Some(key)).await, 403, "an app-restricted key works only on its app");
    let _ = server.kill();
    let _ = server.wait();
    upstream.abort();
}

/// SPEC §11 limits: with the process at a low open-file limit, a flood of idle connections to the
/// gateway never exhausts its descriptors — the control plane keeps answering, the gateway serves again
/// as soon as the flood goes, and the log carries no per-attempt accept errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_at_the_open_file_limit_never_stalls_the_process() {
    let up =
        Up::start_under(&repo_root().join("examples/hello"), "/ping", &["prlimit", "--nofile=256:256", "--"]).await;
    let app_addr = up.app.trim_start_matches("http://").to_owned();
    let mut flood = vec![];
    // More than the process has descriptors: beyond the gateway's cap they wait in the kernel's backlog
    // (and past it, their connect times out), instead of the process running out of descriptors.
    for _ in 0..400 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(20), tokio::net::TcpStream::connect(&app_addr)).await
        {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 150, "the flood opened {} connections", flood.len());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let health = client.get(format!("{}/healthz", up.cp)).send().await.map(|r| r.status().as_u16());
    assert_eq!(health.ok(), Some(200), "the control plane answers during a gateway flood");
    drop(flood);
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{}/ping", up.app)).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the gateway did not serve again after the flood");
    }
    let err = std::fs::read_to_string(up.dir.path().join("up.err")).unwrap_or_default()
        + &std::fs::read_to_string(&up.log).unwrap_or_default();
    assert!(err.matches("Too many open files").count() <= 1, "accept errors are logged once per episode:\n{err}");
}
