//! Gatehouse's HTTP side: the control plane's management API, OAuth endpoints and login pages, the
//! gateway, webhook sending, and the error model of SPEC §5 in one place (`error`). The services they
//! call (keys, users, sessions, OAuth, webhooks, verifier, limiter, metrics) are `gatehouse_services`.
//!
//! The app is constructible in a test: `App::build(config, store, app_hosts)` (or `build_with_apps`) then `router()` /
//! `serve(listener, shutdown)`; the gateway is `gateway::Gateway::new(state, config).router()`.

pub mod api;
pub mod config;
pub(crate) mod credentials;
pub mod dashboard;
pub mod delivery;
pub(crate) mod error;
pub(crate) mod extract;
pub mod gateway;
pub mod idp;
mod leak_intake;
pub mod listener;
pub mod login;
pub(crate) mod netaddr;
pub(crate) mod oauth;
pub(crate) mod pages;
pub mod percore;
pub mod secret_scanning;
pub(crate) mod sso;
pub mod state;
pub mod tls;
pub(crate) mod web;

use std::future::Future;
use std::sync::Arc;

use gatehouse_store::Store;
use state::{AppState, WebState};
use tokio::net::TcpListener;

pub use config::ServerConfig;

/// A running control plane's shared state plus its background tasks' handles.
#[derive(Clone, Debug)]
pub struct App {
    pub state: Arc<AppState>,
}

impl App {
    /// Builds the shared state. Reads (or creates) the deployment's secrets, so storage must answer.
    /// `app_hosts` are the hosts the gateway will serve (empty for a control plane alone).
    pub async fn build(
        config: ServerConfig,
        store: Arc<dyn Store>,
        app_hosts: Vec<String>,
    ) -> Result<Self, gatehouse_store::StoreError> {
        Self::build_inner(config, store, app_hosts, vec![]).await
    }

    /// As [`App::build`], for a control plane that knows the apps the gateway serves (their hosts
    /// and, for the dashboard, their micros and policies).
    pub async fn build_with_apps(
        config: ServerConfig,
        store: Arc<dyn Store>,
        apps: Vec<state::AppInfo>,
    ) -> Result<Self, gatehouse_store::StoreError> {
        let hosts = apps.iter().flat_map(|a| a.hosts.clone()).collect();
        Self::build_inner(config, store, hosts, apps).await
    }

    async fn build_inner(
        config: ServerConfig,
        store: Arc<dyn Store>,
        app_hosts: Vec<String>,
        apps: Vec<state::AppInfo>,
    ) -> Result<Self, gatehouse_store::StoreError> {
        let metrics = gatehouse_services::metrics::Metrics::new(store.backend());
        let verifier = gatehouse_services::verifier::Verifier::new(
            store.clone(),
            config.namespace.clone(),
            config.cache.clone(),
            metrics.clone(),
        );
        let limiter = match &config.redis_url {
            None => gatehouse_services::limiter::RateLimiter::new(config.default_rate_limit),
            Some(url) => {
                let health = gatehouse_services::limiter::SharedHealth {
                    up: metrics.rate_limit_shared.clone(),
                    fallbacks: metrics.rate_limit_fallbacks.clone(),
                };
                let prefix = format!("gatehouse:{}:rl:", config.workspace);
                gatehouse_services::limiter::RateLimiter::shared(
                    config.default_rate_limit,
                    url.expose(),
                    prefix,
                    health,
                )
                .map_err(|e| gatehouse_store::StoreError::Other(e.to_string()))?
            }
        };
        let keys = gatehouse_services::keys::KeyService::new(
            store.clone(),
            config.namespace.clone(),
            config.workspace.clone(),
        )
        .with_cache(verifier.clone())
        .with_default_rate_limit(gatehouse_services::keys::default_as_override(config.default_rate_limit));
        let csrf_key = store.secret("csrf_hmac_key", gatehouse_services::sessions::new_token().0.into_bytes()).await?;
        let signing_keys = gatehouse_services::assertion::load_keys(store.as_ref()).await?;
        let signer = Arc::new(gatehouse_services::assertion::AssertionSigner::with_keys(
            &signing_keys,
            config.public_url.clone(),
        ));
        let sessions =
            gatehouse_services::sessions::Sessions::new(store.clone(), config.sessions.clone(), verifier.clone());
        let users = gatehouse_services::users::Users::with_config(
            store.clone(),
            config.workspace.clone(),
            config.sign_in.clone(),
        );
        let webhooks = gatehouse_services::webhooks::WebhookService::new(
            store.clone(),
            config.workspace.clone(),
            config.webhooks.clone(),
        );
        let oauth_cfg = gatehouse_services::oauth::OAuthConfig {
            default_rate_limit: Some(gatehouse_services::keys::default_as_override(config.default_rate_limit)),
            ..config.oauth.clone()
        };
        let oauth = gatehouse_services::oauth::OAuthService::new(
            store.clone(),
            config.namespace.clone(),
            config.workspace.clone(),
            oauth_cfg,
            verifier.clone(),
        );
        let usage = gatehouse_services::usage::UsageCollector::new(
            store.clone(),
            config.usage.clone(),
            gatehouse_services::usage::system_clock(),
        );
        let leaks = secret_scanning::LeakIntake::new(
            gatehouse_services::leaks::LeakService::new(
                store.clone(),
                config.namespace.clone(),
                config.workspace.clone(),
            )
            .with_cache(verifier.clone(), oauth.clone()),
            config.secret_scanning.clone(),
        );
        let idp = idp::Providers::new(config.identity_providers.clone(), idp::IdpTimings::default());
        let external = gatehouse_services::external::ExternalSignIns::new(store.clone(), config.workspace.clone());
        let cp_host = config
            .public_url
            .split_once("://")
            .map_or(config.public_url.as_str(), |(_, h)| h)
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let web = WebState {
            cp_origin: config.public_url.trim_end_matches('/').to_owned(),
            cp_host,
            app_hosts,
            apps,
            csrf_key,
            signer,
            setup_token: parking_lot::Mutex::new(None),
            dashboard_csp: dashboard::csp(&sign_out_origins(&config.identity_providers)),
        };
        let access = Arc::new(gatehouse_services::access::AccessPolicies::new(config.access.clone()));
        Ok(Self {
            state: Arc::new(AppState {
                config,
                store,
                verifier,
                limiter,
                metrics,
                keys,
                sessions,
                users,
                oauth,
                webhooks,
                usage,
                leaks,
                access,
                idp,
                external,
                web,
                tls: Arc::default(),
            }),
        })
    }

    /// The axum router of the control plane.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Starts the background tasks (cache invalidation, last-used flushing, limiter sweeping).
    /// They stop when the returned guard is dropped.
    pub async fn start_background(&self) -> BackgroundTasks {
        let mut handles = vec![];
        handles.push(self.state.verifier.spawn_background().await);
        handles.push(self.state.web.signer.clone().spawn_reload(self.state.store.clone()));
        let state = self.state.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                state.limiter.sweep();
                state.sessions.flush_activity().await;
                if let Ok(n) = state.store.pending_deliveries().await {
                    state.metrics.webhook_pending.set(n);
                }
            }
        }));
        handles.push(self.state.usage.spawn());
        if self.state.config.webhook_worker {
            let worker = delivery::http_worker(
                self.state.store.clone(),
                self.state.config.webhooks.clone(),
                gatehouse_services::webhooks::worker::system_clock(),
            )
            .with_metrics(self.state.metrics.clone());
            handles.push(Arc::new(worker).spawn());
        }
        let state = self.state.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
            loop {
                tick.tick().await;
                match state.oauth.cleanup().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rows = n, "expired OAuth codes and tokens deleted"),
                    Err(e) => tracing::warn!(error = %e, "could not delete expired OAuth codes and tokens; will retry"),
                }
                if let Err(e) = state.store.prune_provider_logins(gatehouse_core::Timestamp::now()).await {
                    tracing::warn!(error = %e, "could not delete expired provider sign-ins; will retry");
                }
            }
        }));
        BackgroundTasks { handles, state: self.state.clone() }
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests up to
    /// `shutdown_grace` to finish, and flushes pending writes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let background = self.start_background().await;
        let gate = listener::ConnectionGate::new(self.state.config.listener.clone());
        let result = listener::serve(self.router(), listener, gate, self.state.config.shutdown_grace, shutdown).await;
        background.shutdown().await;
        result
    }
}

/// The origins (of the issuers) of the identity providers whose sign-out Gatehouse continues to.
fn sign_out_origins(providers: &[config::IdentityProviderConfig]) -> Vec<String> {
    providers
        .iter()
        .filter(|p| p.end_session)
        .filter_map(|p| url::Url::parse(&p.issuer).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect()
}

/// Serves `router` (HTTP/1.1 and h2c) until `shutdown`, then gives in-flight requests `grace` to
/// finish, with the default listener limits (see [`listener`]).
pub async fn serve_router(
    router: axum::Router,
    listener: TcpListener,
    grace: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(
        router,
        listener,
        listener::ConnectionGate::new(listener::ListenerLimits::default()),
        grace,
        shutdown,
    )
    .await
}

/// Handles of the background tasks; `shutdown` stops them and flushes what they hold.
#[derive(Debug)]
pub struct BackgroundTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<AppState>,
}

impl BackgroundTasks {
    pub async fn shutdown(mut self) {
        for h in self.handles.drain(..) {
            h.abort();
        }
        self.state.verifier.flush_last_used().await;
        self.state.sessions.flush_activity().await;
        if let Err(e) = self.state.usage.flush().await {
            tracing::warn!(error = %e, rows = self.state.usage.pending_rows(), "usage counts not written at shutdown");
        }
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}
