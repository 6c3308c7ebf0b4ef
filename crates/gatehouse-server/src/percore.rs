//! Serving a router on one single-threaded runtime per core, all accepting from one listening socket.
//!
//! A proxied request touches two tasks: the one serving the client's connection and the one driving
//! the pooled upstream connection. On a work-stealing runtime these often sit on different threads, so
//! every request pays for cross-thread wake-ups. Here each thread has its own runtime, its own router
//! (and so its own upstream pool, see `gateway::Gateway::new`), and the connections it accepted: a
//! request is served start to end on one thread. Shared state (`AppState`) is the same for all.
//!
//! The runtimes are kept alive after their servers stop until [`PerCore::close`]: storage connections
//! opened while serving are bound to the runtime that opened them, and the final flushes on shutdown
//! may still use them.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;

/// The running per-core servers.
#[derive(Debug)]
pub struct PerCore {
    threads: Vec<std::thread::JoinHandle<()>>,
    stopped: Vec<oneshot::Receiver<std::io::Result<()>>>,
    release: Vec<oneshot::Sender<()>>,
}

/// Starts `threads` servers of `make_router()` on `listener`, each until its `shutdown()` resolves,
/// with `grace` for in-flight requests (as [`crate::serve_router`]). The threads share `gate`: the
/// connection cap is the listener's, not each thread's.
pub fn serve<R, S, F>(
    make_router: R,
    listener: std::net::TcpListener,
    gate: crate::listener::ConnectionGate,
    threads: usize,
    grace: Duration,
    shutdown: S,
) -> std::io::Result<PerCore>
where
    R: Fn() -> axum::Router,
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let mut running = PerCore { threads: vec![], stopped: vec![], release: vec![] };
    for i in 0..threads.max(1) {
        let socket = listener.try_clone()?;
        let router = make_router();
        let signal = shutdown();
        let gate = gate.clone();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name(format!("gateway-{i}")).spawn(move || {
            runtime.block_on(async move {
                let result = match tokio::net::TcpListener::from_std(socket) {
                    Ok(l) => crate::listener::serve(router, l, gate, grace, signal).await,
                    Err(e) => Err(e),
                };
                let _ = stopped_tx.send(result);
                let _ = release_rx.await;
            });
        })?;
        running.threads.push(thread);
        running.stopped.push(stopped_rx);
        running.release.push(release_tx);
    }
    Ok(running)
}

impl PerCore {
    /// Resolves when every server has stopped accepting and finished (or given up on) its requests;
    /// the first error of any of them, if one failed.
    pub async fn stopped(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        for rx in self.stopped.drain(..) {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(std::io::Error::other("a gateway thread ended unexpectedly"))),
            }
        }
        result
    }

    /// Ends the runtimes (after the last storage use) and waits for their threads.
    pub fn close(self) {
        drop(self.release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
