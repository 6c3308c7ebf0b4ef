//! Three `gatehouse serve` nodes (real processes) on one PostgreSQL database and one Redis (SPEC §9,
//! §16): what node A ends — a key, an OAuth token, a session, a user, a webhook endpoint — B and C
//! refuse within the second the spec allows; a key's rate limit holds across all three; failed
//! sign-ins are counted together wherever they were tried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_store::testing::{Backend, TestDb};
use serde_json::{json, Value};

use crate::servers::{free_port, receiver, Node, NodeDir, OwnRedis};

/// Everything the nodes share is in the database and Redis; the test reaches them over HTTP only.
struct Cluster {
    dirs: Vec<NodeDir>,
    _nodes: Vec<Node>,
    admin: String,
    http: reqwest::Client,
}

impl Cluster {
    fn base(&self, node: usize) -> &str {
        &self.dirs[node].base
    }

    async fn call(&self, node: usize, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base(node));
        let mut req = self.http.request(method.parse().unwrap(), url).bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    /// Waits until `check` holds on node `node`, at most the 1 s of SPEC §9 (plus the request itself).
    async fn within_a_second<F, Fut>(&self, node: usize, what: &str, check: F)
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !check(node).await {
            assert!(start.elapsed() < Duration::from_secs(1), "node {node}: {what} not seen within 1 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A browser: cookies kept (in the jar returned beside it), redirects not followed.
fn browser() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http =
        reqwest::Client::builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build();
    (http.unwrap(), jar)
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// Signs in on `base`; answers the status of the POST (303 on success).
async fn sign_in(br: &reqwest::Client, base: &str, email: &str, password: &str) -> u16 {
    let form = br.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let fields = [("email", email), ("password", password), ("csrf", &csrf_of(&form))];
    br.post(format!("{base}/login")).form(&fields).send().await.unwrap().status().as_u16()
}

/// The cookies a browser holds for `base`, as one `Cookie` header.
fn cookie_of(jar: &reqwest::cookie::Jar, base: &str) -> reqwest::header::HeaderValue {
    reqwest::cookie::CookieStore::cookies(jar, &base.parse().unwrap()).expect("signed in: a session cookie")
}

/// The Account page on `base`, asked for host `host` with `cookie` (200 when signed in).
async fn account_page(base: &str, host: &str, cookie: &reqwest::header::HeaderValue) -> u16 {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{base}/dashboard/account")).header("host", host).header("cookie", cookie.clone());
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_node_a_ends_nodes_b_and_c_refuse_and_limits_hold_across_all_three() {
    let db = TestDb::new(Backend::Postgres).await;
    let redis = OwnRedis::start();
    let (hooks, delivered) = receiver().await;
    // One public URL for all three, as behind a load balancer: sessions are bound to that host.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let settings = format!(
        "public_url = \"http://127.0.0.1:{}\"\ndatabase_url = \"{}\"\nredis_url = \"{}\"\n\
         [webhooks]\nallow_private_destinations = true\n",
        ports[0],
        db.url,
        redis.url()
    );
    let dirs: Vec<NodeDir> = ports.iter().map(|p| NodeDir::at(*p, &settings)).collect();
    let a = &dirs[0];
    let admin = a.cli(&["keys", "create", "--name", "admin"])["secret"].as_str().unwrap().to_owned();
    let victim = a.cli(&["keys", "create", "--name", "victim"]);
    let limited = a.cli(&["keys", "create", "--name", "limited", "--rate-limit", "10/60s"]);
    let client = a.cli(&["oauth", "clients", "create", "--name", "machine", "--scope", "keys:read"]);
    let (client_id, client_secret) =
        (client["id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().unwrap().to_owned());
    let user = a.cli(&["users", "create", "--email", "ada@example.com"]);
    let password = user["password"].as_str().unwrap().to_owned();
    let other = a.cli(&["users", "create", "--email", "grace@example.com"]);
    let other_password = other["password"].as_str().unwrap().to_owned();
    let mut endpoints = vec![];
    for path in ["keep", "drop"] {
        let url = format!("http://{hooks}/{path}");
        endpoints.push(a.cli(&["webhooks", "endpoints", "create", "--url", &url, "--event", "key.created"]));
    }
    let mut nodes = vec![];
    for d in &dirs {
        nodes.push(d.serve().await);
    }
    let cluster = Cluster { dirs, _nodes: nodes, admin, http: reqwest::Client::new() };
    let c = &cluster;
    let keys_page = "/v1/keys?limit=1";

    // A key revoked on A.
    let victim_secret = victim["secret"].as_str().unwrap();
    for n in 0..3 {
        assert_eq!(c.call(n, "GET", keys_page, victim_secret, None).await.0, 200, "node {n}");
    }
    let path = format!("/v1/keys/{}/revoke", victim["id"].as_str().unwrap());
    assert_eq!(c.call(0, "POST", &path, &c.admin, None).await.0, 200);
    for n in [1, 2] {
        c.within_a_second(n, "the revoked key", |n| async move {
            let (s, body) = c.call(n, "GET", keys_page, victim_secret, None).await;
            s == 401 && body["error"]["code"] == "api_key_revoked"
        })
        .await;
    }

    // An OAuth token revoked on A.
    let token: Value = c
        .http
        .post(format!("{}/oauth/token", c.base(0)))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "keys:read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap_or_else(|| panic!("no token: {token}")).to_owned();
    for n in 0..3 {
        assert_eq!(c.call(n, "GET", keys_page, &access, None).await.0, 200, "token on node {n}");
    }
    let revoked = c
        .http
        .post(format!("{}/oauth/revoke", c.base(0)))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    for n in [1, 2] {
        let access = access.as_str();
        c.within_a_second(n, "the revoked token", |n| async move {
            c.call(n, "GET", keys_page, access, None).await.0 == 401
        })
        .await;
    }

    // A session ended on A (sign-out), and a user disabled on A. Behind a load balancer every node
    // sees the public host name, so each request names it.
    let host = c.base(0).trim_start_matches("http://").to_owned();
    let (br, jar) = browser();
    assert_eq!(sign_in(&br, c.base(0), "ada@example.com", &password).await, 303);
    // The browser forgets its cookie on sign-out; keep a copy, as a thief holding one would.
    let ada = cookie_of(&jar, c.base(0));
    for n in 0..3 {
        assert_eq!(account_page(c.base(n), &host, &ada).await, 200, "session on node {n}");
    }
    let page = br.get(format!("{}/dashboard/account", c.base(0))).send().await.unwrap().text().await.unwrap();
    let out = br.post(format!("{}/logout", c.base(0))).form(&[("csrf", csrf_of(&page))]).send().await.unwrap();
    assert!(out.status().is_redirection(), "sign-out: {}", out.status());
    for n in [1, 2] {
        let (host, ada) = (&host, &ada);
        c.within_a_second(n, "the ended session", |n| async move { account_page(c.base(n), host, ada).await != 200 })
            .await;
    }
    let (br, jar) = browser();
    assert_eq!(sign_in(&br, c.base(0), "grace@example.com", &other_password).await, 303);
    let grace_cookie = cookie_of(&jar, c.base(0));
    for n in 0..3 {
        assert_eq!(account_page(c.base(n), &host, &grace_cookie).await, 200, "second session on node {n}");
    }
    let grace = other["id"].as_str().unwrap();
    assert_eq!(c.call(0, "POST", &format!("/v1/users/{grace}/disable"), &c.admin, None).await.0, 200);
    for n in [1, 2] {
        let (host, grace_cookie) = (&host, &grace_cookie);
        c.within_a_second(n, "the disabled user's session", |n| async move {
            account_page(c.base(n), host, grace_cookie).await != 200
        })
        .await;
    }

    // A webhook endpoint disabled on A: events written through B and C reach only the other one.
    let drop_id = endpoints[1]["id"].as_str().unwrap();
    let (s, _) = c.call(0, "POST", &format!("/v1/webhook_endpoints/{drop_id}/disable"), &c.admin, None).await;
    assert_eq!(s, 200);
    let mut created = vec![];
    for n in [1, 2] {
        let (s, body) = c.call(n, "POST", "/v1/keys", &c.admin, Some(json!({"name": format!("via {n}")}))).await;
        assert_eq!(s, 200, "{body}");
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    let start = Instant::now();
    while !created.iter().all(|id| delivered.lock().unwrap().contains(&("/keep".to_owned(), id.clone()))) {
        assert!(start.elapsed() < Duration::from_secs(20), "events not delivered to the enabled endpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &created {
        assert!(
            !delivered.lock().unwrap().contains(&("/drop".to_owned(), id.clone())),
            "{id} reached a disabled endpoint"
        );
    }
    let (_, events) = c.call(2, "GET", &format!("/v1/webhook_endpoints/{drop_id}"), &c.admin, None).await;
    assert_eq!(events["status"], "disabled", "{events}");

    // A rate limit of 10 per minute, spent round-robin over three nodes: 10 in all, not 10 per node.
    let limited = limited["secret"].as_str().unwrap();
    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..30 {
        match c.call(i % 3, "GET", keys_page, limited, None).await.0 {
            200 => allowed += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((allowed, refused), (10, 20), "the limit must hold across the nodes");
    for n in 0..3 {
        let metrics = c.http.get(format!("{}/metrics", c.base(n))).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("gatehouse_rate_limit_shared 1"), "node {n} shares limits through Redis");
    }

    // Failed sign-ins count together: five wrong passwords spread over the nodes, then even the
    // right one waits, on any node.
    let (br, _) = browser();
    for n in [0, 1, 2, 0, 1] {
        assert_eq!(sign_in(&br, c.base(n), "ada@example.com", "wrong password").await, 401, "node {n}");
    }
    for n in 0..3 {
        assert_eq!(sign_in(&br, c.base(n), "ada@example.com", &password).await, 429, "node {n} must throttle");
    }
}
