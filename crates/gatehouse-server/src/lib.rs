//! Gatehouse's HTTP side: the control plane's management API, key verification with its cache,
//! the rate limiter, metrics, and the error model of SPEC §5 in one place (`error`).
//!
//! The app is constructible in a test: `App::new(config, store)` then `router()` / `serve(listener, shutdown)`.

pub mod api;
pub mod config;
pub mod error;
pub mod limiter;
pub mod metrics;
pub mod netaddr;
pub mod service;
pub mod verifier;

use std::future::Future;
use std::sync::Arc;

use gatehouse_store::Store;
use tokio::net::TcpListener;

pub use config::ServerConfig;

/// Everything a request handler may use, shared behind one `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub verifier: verifier::Verifier,
    pub limiter: limiter::RateLimiter,
    pub metrics: metrics::Metrics,
    pub keys: service::KeyService,
}

/// A running control plane's shared state plus its background tasks' handles.
#[derive(Clone, Debug)]
pub struct App {
    pub state: Arc<AppState>,
}

impl App {
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Self {
        let metrics = metrics::Metrics::new(store.backend());
        let verifier = verifier::Verifier::new(store.clone(), config.namespace.clone(), config.cache.clone(), metrics.clone());
        let limiter = limiter::RateLimiter::new(config.default_rate_limit);
        let keys = service::KeyService::new(store.clone(), config.namespace.clone(), config.workspace.clone())
            .with_cache(verifier.clone());
        Self { state: Arc::new(AppState { config, store, verifier, limiter, metrics, keys }) }
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
        let state = self.state.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                state.limiter.sweep();
            }
        }));
        BackgroundTasks { handles, state: self.state.clone() }
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests up to
    /// `shutdown_grace` to finish, and flushes pending writes.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use std::future::IntoFuture;
        let background = self.start_background().await;
        let router = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = fired_tx.send(());
        };
        let server = axum::serve(listener, router).with_graceful_shutdown(signal).into_future();
        let grace = self.state.config.shutdown_grace;
        let deadline = async move {
            if fired_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            r = server => r,
            _ = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; closing them");
                Ok(())
            }
        };
        background.shutdown().await;
        result
    }
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
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}
