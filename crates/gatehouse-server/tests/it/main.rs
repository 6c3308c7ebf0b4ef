//! Control-plane integration tests: a real server on 127.0.0.1:0 over a fresh database per test,
//! every story on SQLite and on PostgreSQL.

mod access;
mod api_keys;
mod api_users;
mod authority;
mod dashboard_actions;
mod dashboard_audit;
mod dashboard_keys;
mod dashboard_oauth;
mod dashboard_review;
mod dashboard_users;
mod dashboard_webhooks;
mod edge;
mod edge_review;
mod gateway;
mod hostile;
mod input_rejection;
mod limits_redis;
mod login;
mod logs;
mod module_graph;
mod no_html_in_rs;
mod oauth;
mod openapi;
mod path_corpus;
mod resilience;
mod secret_scanning;
mod usage;
mod users;
mod webhooks;
mod webhooks_sdk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::{Environment, KeyKind, KeyRecord, Timestamp};
use gatehouse_server::config::ServerConfig;
use gatehouse_server::state::AppInfo;
use gatehouse_server::App;
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_services::keys::{KeyService, NewKey};
use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::{KeyFilter, KeyStore, PageRequest, SqlStore, Store};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Defines `#[tokio::test]`s named `sqlite` and `postgres` in a module named after the story.
macro_rules! story {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(gatehouse_store::testing::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(gatehouse_store::testing::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use story;

/// A running control plane on a fresh database, with a client and an `sk_live` admin key.
#[derive(Debug)]
pub struct TestApp {
    pub db: TestDb,
    pub store: SqlStore,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub admin: String,
    pub config: ServerConfig,
    pub state: Arc<gatehouse_server::state::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Test timings: revocations and flushes visible in well under a second.
pub fn test_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.cache.poll_interval = Duration::from_millis(100);
    c.cache.max_staleness = Duration::from_millis(500);
    c.cache.last_used_flush = Duration::from_millis(200);
    c.default_rate_limit.limit = 10_000;
    c
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        Self::with_config(backend, test_config()).await
    }

    pub async fn with_config(backend: Backend, config: ServerConfig) -> Self {
        Self::with_app_hosts(backend, config, vec![]).await
    }

    /// A control plane that knows the given app hosts (sign-ins may return there), at its real address.
    pub async fn with_app_hosts(backend: Backend, config: ServerConfig, app_hosts: Vec<String>) -> Self {
        Self::start(backend, config, app_hosts, vec![]).await
    }

    /// A control plane that knows the gateway's apps (hosts, micros, policies), as `gatehouse up` builds it.
    pub async fn with_apps(backend: Backend, config: ServerConfig, apps: Vec<AppInfo>) -> Self {
        let hosts = apps.iter().flat_map(|a| a.hosts.clone()).collect();
        Self::start(backend, config, hosts, apps).await
    }

    async fn start(backend: Backend, mut config: ServerConfig, app_hosts: Vec<String>, apps: Vec<AppInfo>) -> Self {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.public_url = format!("http://{addr}");
        let store_dyn = Arc::new(store.clone()) as Arc<dyn Store>;
        let app = if apps.is_empty() {
            App::build(config.clone(), store_dyn, app_hosts).await.unwrap()
        } else {
            App::build_with_apps(config.clone(), store_dyn, apps).await.unwrap()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = app.state.clone();
        tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut t = TestApp { db, store, addr, client, admin: String::new(), config, state, shutdown: Some(tx) };
        t.admin = t.cli_key(sk(Environment::Live)).await.1;
        // Wait for a change-feed poll so the cache is in its normal state (trusted, the admin key's write seen).
        t.feed_polled().await;
        t
    }

    /// Waits until this node's verifier has read the change feed after now: every key write committed
    /// before the call (by this process or another) is then reflected in its caches.
    pub async fn feed_polled(&self) {
        let within = Duration::from_secs(10);
        assert!(
            self.state.verifier.wait_for_poll_after(within).await,
            "no change-feed poll completed within {within:?} (poll interval {:?})",
            self.config.cache.poll_interval
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Creates a key as the CLI would (straight on the store, full authority).
    pub async fn cli_key(&self, new: NewKey) -> (KeyRecord, String) {
        let svc =
            KeyService::new(Arc::new(self.store.clone()), self.config.namespace.clone(), self.config.workspace.clone());
        let (rec, secret) = svc.create(&Actor::Cli, &RequestMeta::default(), new).await.unwrap();
        (rec, secret.expose().to_owned())
    }

    /// The CLI's key service on a separate store handle, as another process would have.
    pub async fn other_process(&self) -> KeyService {
        let store = self.db.store().await;
        KeyService::new(Arc::new(store), self.config.namespace.clone(), self.config.workspace.clone())
    }

    /// Sends a JSON request with an optional bearer key; returns status, headers and the parsed body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut rb = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    pub async fn key_count(&self) -> usize {
        let filter = KeyFilter { workspace: "default".into(), environment: None, ..Default::default() };
        self.store.list_keys(&filter, &PageRequest { limit: 100, starting_after: None }).await.unwrap().items.len()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn sk(env: Environment) -> NewKey {
    NewKey {
        name: Some("test".into()),
        kind: KeyKind::Secret,
        environment: env,
        scopes: vec![],
        ip_allowlist: vec![],
        expires_at: None,
        app: None,
        rate_limit: None,
        metadata: Default::default(),
    }
}

pub fn rk(env: Environment, scopes: &[&str]) -> NewKey {
    NewKey { kind: KeyKind::Restricted, scopes: scopes.iter().map(|s| s.to_string()).collect(), ..sk(env) }
}

/// The error `code` of a §5 body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

pub fn now() -> Timestamp {
    Timestamp::now()
}
