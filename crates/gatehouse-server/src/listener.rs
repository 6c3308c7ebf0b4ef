//! Serving a router (HTTP/1.1 and h2c, or both over TLS with ALPN) with the edge's time and size limits
//! (SPEC §11): a TLS handshake must complete within `tls_handshake_timeout`, a request
//! head must arrive within `header_read_timeout`, a connection with no request in flight for
//! `idle_timeout` is closed (gracefully: a request in flight still finishes), at most `max_connections`
//! are served at once per listener (more wait in the kernel's backlog), and head sizes are capped.
//!
//! Accept errors (above all `EMFILE` when the process is out of descriptors) are backed off and logged
//! once per episode, so the process keeps answering the connections it has instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The limits of one listener. Config keys: `limits.header_read_timeout_secs`,
/// `limits.idle_timeout_secs`, `limits.max_connections`, `limits.max_header_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a client may take to send a complete request head. hyper starts this clock as soon
    /// as an HTTP/1.1 connection waits for its next request, so it also bounds idle keep-alive there.
    /// Any connection (h2 too) that has not begun a request within it is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Requests count, not bytes:
    /// an h2 client can keep a socket busy forever with PINGs or SETTINGS and never ask anything.
    pub idle_timeout: Duration,
    /// Client connections served at once; beyond it new ones wait to be accepted. Also the requests
    /// in flight at once across the listener: an h2 connection multiplexes up to 200 streams, each
    /// holding an upstream socket, and the descriptor budget assumes one per connection.
    pub max_connections: usize,
    /// Largest request head (HTTP/1.1 buffer, h2 header list), in bytes.
    pub max_header_bytes: usize,
    /// How long a client may take to complete a TLS handshake (listeners with TLS). The
    /// header-read clock starts after it.
    pub tls_handshake_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_header_bytes: 64 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Descriptors kept back from client connections: upstream sockets, database and Redis connections,
/// files (static micros, SQLite) and the listeners themselves.
fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 4).max(128)
}

/// The default connection cap of one listener: what the open-file limit leaves after the reserve,
/// shared by the two listeners a process has (gateway and control plane). Each proxied request holds
/// a client and an upstream socket, hence the halving again.
pub(crate) fn default_max_connections() -> usize {
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    let usable = soft.saturating_sub(reserved_descriptors(soft)) / 4;
    usize::try_from(usable).unwrap_or(usize::MAX).max(16)
}

/// Raises the soft open-file limit to the hard one (a common low default is 1024), so the derived
/// connection cap is as high as the system allows. Returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// One listener's connection allowance, shared by every thread accepting from it, and whether the
/// listener speaks TLS.
#[derive(Clone, Debug)]
pub struct ConnectionGate {
    pub limits: ListenerLimits,
    permits: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    tls: Option<crate::tls::Terminator>,
}

impl ConnectionGate {
    pub fn new(limits: ListenerLimits) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let requests = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Self { limits, permits, requests, tls: None }
    }

    /// The same listener, serving HTTPS: every accepted connection completes a TLS handshake (within
    /// `limits.tls_handshake_timeout`, holding its connection permit meanwhile) before HTTP starts.
    pub fn with_tls(mut self, certs: Arc<crate::tls::Certificates>, alpn_challenges: bool) -> Self {
        self.tls = Some(crate::tls::Terminator::new(certs, alpn_challenges, self.limits.tls_handshake_timeout));
        self
    }

    /// Connections being served now.
    pub(crate) fn open_connections(&self) -> usize {
        self.limits.max_connections.max(1) - self.permits.available_permits()
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting, lets open connections finish
/// their requests for up to `grace`, and returns.
pub async fn serve(
    router: axum::Router,
    listener: TcpListener,
    gate: ConnectionGate,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(5);
    let mut open = 0usize;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    loop {
        let permit = tokio::select! {
            p = gate.permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(error = %e, open_connections = gate.open_connections(), "cannot accept connections; backing off");
                    failing_since = Some(Instant::now());
                }
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(since) = failing_since.take() {
            tracing::info!(after_ms = since.elapsed().as_millis() as u64, "accepting connections again");
            backoff = Duration::from_millis(5);
        }
        let _ = stream.set_nodelay(true);
        while done_rx.try_recv().is_ok() {
            open -= 1;
        }
        open += 1;
        let router = router.clone();
        let limits = gate.limits.clone();
        let stop = stop_rx.clone();
        let done = done_tx.clone();
        let requests = gate.requests.clone();
        let tls = gate.tls.clone();
        tokio::spawn(async move {
            let stream = Permitted { inner: stream, _permit: permit };
            match tls {
                None => serve_connection(stream, peer, router, requests, &limits, stop).await,
                Some(tls) => match tls.accept(stream).await {
                    // A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3): no HTTP on it.
                    Ok(stream) if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {}
                    Ok(stream) => serve_connection(stream, peer, router, requests, &limits, stop).await,
                    Err(e) => tracing::debug!(error = %e, %peer, "TLS connection not established"),
                },
            }
            let _ = done.send(());
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    while done_rx.try_recv().is_ok() {
        open -= 1;
    }
    let drained = async {
        while open > 0 && done_rx.recv().await.is_some() {
            open -= 1;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; closing them");
    }
    Ok(())
}

/// Errors that concern only the connection being accepted (it was reset before we got to it).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: axum::Router,
    requests: Arc<Semaphore>,
    limits: &ListenerLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity =
        Activity { started: Instant::now(), last: Arc::default(), in_flight: Arc::default(), asked: Arc::default() };
    let io = TokioIo::new(stream);
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        // In flight from the head until the response body is done (or the exchange is dropped).
        let mut guard = tracker.begin();
        let router = router.clone();
        let requests = requests.clone();
        async move {
            // Waiting here holds no upstream socket; only a permitted request is routed.
            guard.1 = Some(requests.acquire_owned().await.expect("the semaphore is never closed"));
            let resp = router.oneshot(req.map(axum::body::Body::new)).await?;
            Ok::<_, std::convert::Infallible>(
                resp.map(|body| axum::body::Body::new(InFlightBody { inner: body, _guard: guard })),
            )
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let idle_deadline =
            tokio::time::Instant::from_std(activity.started + activity.last() + activity.allowance(limits));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_deadline), if !closing => {
                let now = activity.started.elapsed();
                if activity.in_flight.load(Ordering::Acquire) == 0 && now >= activity.last() + activity.allowance(limits) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            r = stop.changed(), if !closing => {
                if r.is_err() || *stop.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A client socket that holds its connection permit: the permit goes when the socket does. A WebSocket
/// tunnel outlives hyper's connection (the socket moves into the splice), and must still count
/// against `max_connections`, or every open tunnel would be a client and an upstream socket beyond the cap.
struct Permitted {
    inner: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Permitted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's requests: how many are in flight, and when one last began or ended
/// (milliseconds since `started`).
#[derive(Clone)]
struct Activity {
    started: Instant,
    last: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    /// Whether a request has begun yet.
    asked: Arc<std::sync::atomic::AtomicBool>,
}

impl Activity {
    fn touch(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Release);
    }

    fn last(&self) -> Duration {
        Duration::from_millis(self.last.load(Ordering::Acquire))
    }

    /// How long the connection may go without a request: the header-read timeout until its first one
    /// (hyper times only HTTP/1.1 heads; an h2 client could otherwise sit on a connection for the whole
    /// idle timeout with its preface and PINGs), the idle timeout after.
    fn allowance(&self, limits: &ListenerLimits) -> Duration {
        if self.asked.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_read_timeout.min(limits.idle_timeout)
        }
    }

    fn begin(&self) -> InFlight {
        self.asked.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone(), None)
    }
}

/// One request in flight, with its share of the listener's request allowance once it has one; ends when dropped.
struct InFlight(Activity, Option<OwnedSemaphorePermit>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
struct InFlightBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl hyper::body::Body for InFlightBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_keeps_descriptors_in_reserve() {
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        let cap = default_max_connections() as u64;
        // Two listeners, each connection with an upstream socket, still leave the reserve free.
        assert!(cap * 4 + reserved_descriptors(soft) <= soft.max(16 * 4 + 128), "cap {cap} for a limit of {soft}");
        assert!(cap >= 16);
    }
}
