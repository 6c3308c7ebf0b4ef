//! The guides' examples, each run as written against a real `gatehouse up` or `serve`: Deta Space's
//! auth guide (its Express app and its three Spacefiles) and the API guide (the `curl` with a Bearer
//! key, the restricted-key JSON, the OAuth authorization URL, and the webhook receiver snippet through
//! a whole secret rotation, beside Stripe's Node SDK, Standard Webhooks and `gatehouse-webhook`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_store::testing::{Backend, TestDb};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::oauth_clients::{register, run};
use crate::up::{copy_dir, free_port, get, repo_root, run_browser_script, Up};

/// The Deta guide's first Spacefile: one private micro.
const DETA_SPACEFILE_PRIVATE: &str = r#"# Spacefile Docs: https://go.deta.dev/docs/spacefile/v0
v: 0
app_name: "SpaceAuth"
micros:
  - name: express
    src: ./src/express
    engine: nodejs16
    run: node index.js
    primary: true
"#;

/// The second: `/ping` public.
const DETA_SPACEFILE_PUBLIC_ROUTES: &str = r#"# Spacefile Docs: https://go.deta.dev/docs/spacefile/v0
v: 0
app_name: "SpaceAuth"
micros:
  - name: express
    src: ./src/express
    engine: nodejs16
    run: node index.js
    primary: true
    public_routes:
      - "/ping"
"#;

/// The third, byte for byte as the guide prints it: its micro is indented with a tab, which YAML
/// forbids. `examples/deta-express/Spacefile` is this file indented with spaces.
const DETA_SPACEFILE_API_KEYS_AS_PRINTED: &str = "# Spacefile Docs: https://go.deta.dev/docs/spacefile/v0
v: 0
app_name: \"SpaceAuth\"
micros:
\t- name: express
    src: ./src/express
    engine: nodejs16
    run: node index.js
    primary: true
    public_routes:
      - \"/ping\"
    presets:
      api_keys: true
";

/// The Express app of `examples/deta-express` with `spacefile` in place of its own.
fn deta_app_with(spacefile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/deta-express"), dir.path());
    std::fs::write(dir.path().join("Spacefile"), spacefile).unwrap();
    dir
}

#[tokio::test]
async fn deta_guide_first_spacefile_every_route_is_private_and_a_signed_in_browser_reaches_it() {
    let app = deta_app_with(DETA_SPACEFILE_PRIVATE);
    let up = Up::start_private(app.path()).await;
    for path in ["/", "/ping"] {
        let (s, _, body) = get(&format!("{}{path}", up.app), &[]).await;
        assert_eq!(s, 401, "{path} is private: {body}");
        let (s, h, _) = get(&format!("{}{path}", up.app), &[("accept", "text/html")]).await;
        assert_eq!(s, 302, "a browser is sent to sign in");
        assert!(h["location"].to_str().unwrap().starts_with(&format!("{}/login?return_to=", up.cp)));
    }
    run_browser_script(&up, "guide_private_app.mjs", "").await;
}

#[tokio::test]
async fn deta_guide_second_spacefile_makes_ping_public_and_keeps_the_root_private() {
    let app = deta_app_with(DETA_SPACEFILE_PUBLIC_ROUTES);
    let up = Up::start(app.path(), "/ping").await;
    let (s, _, body) = get(&format!("{}/ping", up.app), &[]).await;
    assert_eq!((s, body.as_str()), (200, "pong"));
    let (s, _, body) = get(&format!("{}/", up.app), &[]).await;
    assert_eq!(s, 401, "the root stays private: {body}");
    // Without the api_keys preset a key opens nothing ("both endpoints would only resolve for the user").
    let (_, key) = up.cli_key(&[]);
    let (s, _, body) = get(&format!("{}/", up.app), &[("x-space-app-key", &key)]).await;
    assert_eq!(s, 401, "{body}");
}

#[tokio::test]
async fn deta_guide_third_spacefile_as_printed_is_refused_at_its_tab_with_the_fix() {
    let app = deta_app_with(DETA_SPACEFILE_API_KEYS_AS_PRINTED);
    let out = crate::gatehouse(app.path(), &["up", ".", "--listen", "127.0.0.1:0"], &[]);
    assert!(!out.status.success(), "a tab-indented Spacefile is not YAML");
    let err = crate::stderr(&out);
    assert!(err.contains("Spacefile:5: indentation: a tab is used for indentation"), "{err}");
    // The same file indented with spaces is the example, run in the next test.
    let fixed = DETA_SPACEFILE_API_KEYS_AS_PRINTED.replace('\t', "  ");
    assert_eq!(fixed, std::fs::read_to_string(repo_root().join("examples/deta-express/Spacefile")).unwrap());
}

/// A key created on the control plane with `body`, as the API guide's JSON is sent.
async fn post_key(up: &Up, admin: &str, body: &Value) -> (u16, Value) {
    let r =
        reqwest::Client::new().post(format!("{}/v1/keys", up.cp)).bearer_auth(admin).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn deta_express_app_with_the_api_guide_examples() {
    let up = Up::start(&repo_root().join("examples/deta-express"), "/ping").await;
    // Deta's guide, last Spacefile: `/` private, `/ping` public, keys open private routes.
    let (s, _, body) = get(&format!("{}/", up.app), &[]).await;
    assert_eq!(s, 401, "the root is private: {body}");
    let (s, _, body) = get(&format!("{}/ping", up.app), &[]).await;
    assert_eq!((s, body.as_str()), (200, "pong"), "the public route needs nothing");
    let (_, key) = up.cli_key(&[]);
    let (s, _, body) = get(&format!("{}/", up.app), &[("x-space-app-key", &key)]).await;
    assert_eq!((s, body.as_str()), (200, "Hello world using Express."), "the key opens private routes");
    let (s, _, body) = get(&format!("{}/ping", up.app), &[("x-space-app-key", "not-a-key")]).await;
    assert_eq!((s, body.as_str()), (200, "pong"), "public routes take precedence over api_keys");

    // The API guide's curl, with this app in place of api.spalce.dev: the key as a Bearer token.
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("{}/", up.app), "-H", &format!("Authorization: Bearer {key}")])
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello world using Express.\n200");
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("{}/", up.app), "-H", "Authorization: Bearer sk_live_8vN3..."])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n401") && text.contains("invalid_token"), "anything else is a 401: {text}");

    // The API guide's restricted-key JSON, exactly: scopes without a kind make an rk key.
    let guide = json!({
        "name": "orders-service-prod",
        "scopes": ["orders:read", "orders:write", "customers:read"],
        "ip_allowlist": ["203.0.113.0/24"],
        "expires_at": "2027-01-01T00:00:00Z"
    });
    // The guide's expiry is a fixed date: once it has passed, the JSON is refused for that reason
    // alone, and the rest of this test goes on with the same JSON a year after today.
    let mut guide = guide;
    let guide_expiry = 1_798_761_600;
    let mut expires = guide_expiry;
    if gatehouse_core::Timestamp::now().unix_seconds() >= guide_expiry {
        let (s, refused) = post_key(&up, &key, &guide).await;
        assert_eq!(s, 400, "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("expires_at"), "{refused}");
        expires = gatehouse_core::Timestamp::now().unix_seconds() + 365 * 86_400;
        guide["expires_at"] = json!(expires);
    }
    let (s, created) = post_key(&up, &key, &guide).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["kind"], "rk", "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("gth_rk_live_"), "{created}");
    assert_eq!(created["scopes"], json!(["customers:read", "orders:read", "orders:write"]));
    assert_eq!(created["ip_allowlist"], json!(["203.0.113.0/24"]));
    assert_eq!(created["expires_at"], expires);
    let rk = created["secret"].as_str().unwrap();
    let verify = |body: Value| {
        let (cp, admin) = (up.cp.clone(), key.clone());
        async move {
            let r = reqwest::Client::new().post(format!("{cp}/v1/keys/verify")).bearer_auth(admin).json(&body);
            r.send().await.unwrap().json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(verify(json!({"key": rk, "scope": "orders:write", "ip": "203.0.113.9"})).await, "valid");
    assert_eq!(verify(json!({"key": rk, "scope": "keys:write", "ip": "203.0.113.9"})).await, "insufficient_scope");
    assert_eq!(verify(json!({"key": rk, "scope": "orders:read", "ip": "198.51.100.1"})).await, "ip_not_allowed");
    // An explicit sk with scopes is still refused, and says how to get what was meant.
    let mut sk = guide.clone();
    sk["kind"] = json!("sk");
    let (s, refused) = post_key(&up, &key, &sk).await;
    assert_eq!(s, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("an sk key holds every scope"), "{refused}");

    // The API guide's authorization URL, for a client registered with its scopes and redirect URI.
    let client = register(&up, "Acme", "https://acme.com/callback", &["read_customers", "write_orders"]);
    let mut cmd = std::process::Command::new("node");
    cmd.arg("guide_authorize.mjs");
    run(&up, cmd, client, "the guide's authorization URL");
}

// ---- The API guide's webhook receiver through a secret rotation ----

/// What a receiver saw of one delivery attempt.
#[derive(Clone, Debug)]
struct Seen {
    /// The event id, when the delivery verified.
    verified: Option<String>,
    detail: String,
}

/// A receiver process or task and what it has seen so far.
struct Receiver {
    name: &'static str,
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _process: Option<tokio::process::Child>,
}

impl Receiver {
    fn verified(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().iter().filter_map(|s| s.verified.clone()).collect()
    }

    fn refused(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().filter(|s| s.verified.is_none()).map(|s| s.detail.clone()).collect()
    }

    /// A Node receiver from tests/webhook-receivers; `secret_env` names the variable holding its file.
    async fn node(name: &'static str, script: &str, env: &[(&str, &Path)]) -> Receiver {
        let dir = repo_root().join("tests/webhook-receivers");
        assert!(dir.join("node_modules/stripe").is_dir(), "tests/webhook-receivers/node_modules: run scripts/test.sh");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the receiver prints its port");
        let port = first.strip_prefix("listening ").expect("listening <port>").to_owned();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap_or(json!({"error": line}));
                // guide_receiver.mjs says `verified`; receiver.mjs lists its failed checks in `errors`.
                let ok = match v["receiver"].as_str() {
                    Some("guide") => v["verified"] == true,
                    _ => v["errors"] == json!([]) && v["stripe_verified"] == 1 && v["standard_verified"] == 1,
                };
                let verified = if ok { v["id"].as_str().map(str::to_owned) } else { None };
                s.lock().unwrap().push(Seen { verified, detail: line });
            }
        });
        Receiver { name, url: format!("http://127.0.0.1:{port}/hooks"), seen, _process: Some(child) }
    }

    /// A receiver in this process that verifies with `gatehouse-webhook` against the one secret in `secret`.
    async fn rust(secret: Arc<Mutex<String>>) -> Receiver {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (s, secret) = (s.clone(), secret.clone());
            async move {
                let header = headers.get("gatehouse-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let key = secret.lock().unwrap().clone();
                let now = gatehouse_core::Timestamp::now().unix_seconds();
                let result = gatehouse_webhook::verify(
                    &header,
                    &body,
                    &[key.as_str()],
                    now,
                    gatehouse_webhook::DEFAULT_TOLERANCE_SECS,
                );
                let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
                let ok = result.is_ok();
                s.lock().unwrap().push(Seen { verified: id.filter(|_| ok), detail: format!("{result:?} {header}") });
                if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::BAD_REQUEST
                }
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { name: "gatehouse-webhook", url, seen, _process: None }
    }
}

/// How long the old secret keeps signing in the rotation test: long enough for two phases of events
/// on a busy machine, short enough not to make the test slow.
const WINDOW_SECS: i64 = 12;

async fn the_guide_receiver_through_a_rotation(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env: Vec<(&str, &str)> = match backend {
        Backend::Sqlite => vec![],
        Backend::Postgres => vec![("GATEHOUSE_DATABASE_URL", db.url.as_str())],
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    std::fs::write(
        d.join("gatehouse.toml"),
        format!("listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nlog_level = \"warn\"\n[webhooks]\nallow_private_destinations = true\n"),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", "gatehouse.toml"];
        all.extend_from_slice(args);
        crate::json(d, &all, &env)
    };

    // The receivers, each with one secret it switches by hand, as a person would: the guide's snippet,
    // Stripe's Node SDK with standardwebhooks, `gatehouse-webhook`, and the snippet with README's change.
    let files: Vec<_> = ["guide", "stripe", "rust", "every-v1"].iter().map(|n| d.join(format!("{n}.secret"))).collect();
    for f in &files {
        std::fs::write(f, "").unwrap();
    }
    let rust_secret: Arc<Mutex<String>> = Arc::default();
    let receivers = [
        Receiver::node("the guide's snippet", "guide_receiver.mjs", &[("SECRET_FILE", &files[0])]).await,
        Receiver::node("Stripe's Node SDK + standardwebhooks", "receiver.mjs", &[("SECRETS_FILE", &files[1])]).await,
        Receiver::rust(rust_secret.clone()).await,
        Receiver::node(
            "the snippet with README's one-line change",
            "guide_receiver.mjs",
            &[("SECRET_FILE", &files[3]), ("VERIFY", Path::new("every-v1"))],
        )
        .await,
    ];
    let set_secret = |i: usize, secret: &str| match i {
        2 => *rust_secret.lock().unwrap() = secret.to_owned(),
        _ => std::fs::write(&files[i], secret).unwrap(),
    };
    let mut ids = vec![];
    for (i, r) in receivers.iter().enumerate() {
        let mut args = vec!["webhooks", "endpoints", "create", "--url", &r.url, "--event", "key.created"];
        if i == 1 {
            args.push("--standard-webhooks");
        }
        let e = cli(&args);
        ids.push(e["id"].as_str().unwrap().to_owned());
        set_secret(i, e["secret"].as_str().unwrap());
    }

    let mut cmd = crate::command(d, &["--config", "gatehouse.toml", "serve"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let err_file = d.join("serve.err");
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&err_file).unwrap());
    let server = Server(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{base}/readyz")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each phase: two events, one at a time (an event is created once the one before has been
    // verified by every receiver), and the refusals each receiver counted so far.
    let mut events = 0;
    let mut phase = async |name: &str| {
        for i in 0..2 {
            cli(&["keys", "create", "--name", &format!("{name}-{i}")]);
            events += 1;
            let start = Instant::now();
            while receivers.iter().any(|r| r.verified().len() < events) {
                if start.elapsed() > Duration::from_secs(30) {
                    let counts: Vec<_> = receivers.iter().map(|r| (r.name, r.verified().len(), r.refused())).collect();
                    panic!(
                        "{name}: not every event verified by every receiver (want {events}): {counts:#?}\n{}",
                        std::fs::read_to_string(&err_file).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        receivers.iter().map(|r| r.refused().len()).collect::<Vec<_>>()
    };

    let before = phase("before the roll").await;
    assert_eq!(before, [0, 0, 0, 0], "no refusal before any roll");

    // Roll every endpoint: the guide's from the CLI's words, the others as JSON.
    let out = crate::gatehouse(
        d,
        &[
            "--config",
            "gatehouse.toml",
            "webhooks",
            "endpoints",
            "roll-secret",
            &ids[0],
            "--overlap",
            &format!("{WINDOW_SECS}s"),
        ],
        &env,
    );
    let text = crate::stdout(&out);
    assert!(out.status.success(), "{text}{}", crate::stderr(&out));
    assert!(
        text.contains("Both secrets sign until") && text.contains("Give your receiver the new secret before then"),
        "{text}"
    );
    let mut new_secrets =
        vec![text.lines().find_map(|l| l.trim().strip_prefix("whsec_")).map(|s| format!("whsec_{s}")).unwrap()];
    for id in &ids[1..] {
        let rolled = cli(&["webhooks", "endpoints", "roll-secret", id, "--overlap", &format!("{WINDOW_SECS}s")]);
        let until = rolled["previous_secret_expires_at"].as_i64().unwrap();
        let said = rolled["receiver_instructions"].as_str().unwrap();
        let until_text = gatehouse_core::Timestamp::from_unix_seconds(until).to_rfc3339();
        assert!(said.contains(&format!("Both secrets sign until {until_text}")), "{said}");
        assert!(said.contains("checks only the last v1"), "{said}");
        new_secrets.push(rolled["secret"].as_str().unwrap().to_owned());
    }

    let listed = cli(&["webhooks", "endpoints", "list"]);
    let ends = listed["data"].as_array().unwrap().iter().map(|e| e["previous_secret_expires_at"].as_i64().unwrap());
    let (window_start, window_end) = (ends.clone().min().unwrap(), ends.max().unwrap());

    let in_window_old = phase("in the window, receivers still on the old secret").await;
    assert_eq!(in_window_old, [0, 0, 0, 0], "the old secret's signature is last until the receiver switches");

    for (i, s) in new_secrets.iter().enumerate() {
        set_secret(i, s);
    }
    let in_window_new = phase("in the window, receivers switched to the new secret").await;
    println!("refused attempts after the switch: {in_window_new:?}; the guide's: {:#?}", receivers[0].refused());
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    assert!(now < window_start, "the machine was too slow: a window ended before its last phase did");
    assert!(in_window_new[0] <= 1, "at most one refused attempt at the switch: {:#?}", receivers[0].refused());
    assert_eq!(&in_window_new[1..], [0, 0, 0], "receivers that check every v1 refuse nothing");

    // After the window: only the new secret signs.
    while gatehouse_core::Timestamp::now().unix_seconds() <= window_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = phase("after the window").await;
    assert_eq!(after, in_window_new, "nothing refused after the window");
    for r in &receivers {
        assert_eq!(r.verified().len(), 8, "{}: every event verified once", r.name);
    }
    drop(server);
}

/// `serve`, stopped with SIGTERM when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_receiver_snippet_through_a_secret_rotation_on_sqlite() {
    the_guide_receiver_through_a_rotation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_receiver_snippet_through_a_secret_rotation_on_postgres() {
    the_guide_receiver_through_a_rotation(Backend::Postgres).await;
}
