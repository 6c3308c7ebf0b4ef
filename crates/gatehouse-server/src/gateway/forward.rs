//! Forwarding to an upstream (SPEC §3 "What the upstream receives"): header hygiene, streaming
//! bodies both ways, WebSocket upgrades spliced after the upstream agrees, 502 when the upstream is
//! down and 504 when it is too slow. Static micros are served from their directory.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The pooled HTTP client to upstreams.
pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

pub fn client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Headers a client may never pass through: ours, URL and method overrides that some frameworks route
/// by, and the forwarding headers Gatehouse sets itself (a trusted proxy's `X-Forwarded-For` and
/// `Forwarded` are read before this and carried into the ones we set).
const STRIPPED: &[&str] = &[
    "x-space-app-key",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    // Method overrides would let a request decided as a public GET act as a private write upstream.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Client-supplied addressing headers (SPEC §11): frameworks believe them for the client's address,
/// scheme or host. Removed unless the peer is a trusted proxy, which may have set them itself.
const ADDRESSING: &[&str] = &[
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-server",
    "front-end-https",
    "x-url-scheme",
    "x-host",
    "x-original-host",
];

/// RFC 9110 §7.6.1 hop-by-hop fields (plus the legacy ones proxies still see, and `HTTP2-Settings`,
/// which only means something with an `Upgrade: h2c` that is never forwarded).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

/// A header name as servers behind us may read it: lower case, every run of characters other than
/// letters and digits folded into one `-`, none at either end. `X_Gatehouse_User`, `x-gatehouse.user`
/// and `x-gatehouse~~user` all fold to `x-gatehouse-user` (CGI, WSGI, Rack and some proxies map
/// separators to one another). Allocation-free: it runs for every header of every request.
fn folded(name: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    let mut pending_sep = false;
    std::iter::from_fn(move || loop {
        let b = *name.get(i)?;
        if b.is_ascii_alphanumeric() {
            if pending_sep {
                pending_sep = false;
                return Some(b'-');
            }
            i += 1;
            return Some(b.to_ascii_lowercase());
        }
        i += 1;
        // A separator counts only between two alphanumeric runs (never leading).
        if name[..i - 1].iter().any(u8::is_ascii_alphanumeric) {
            pending_sep = true;
        }
    })
}

fn folded_eq(name: &[u8], ours: &str) -> bool {
    folded(name).eq(ours.bytes())
}

/// Whether a header name, folded, is `x-gatehouse` or starts with `x-gatehouse-`.
fn folds_to_ours(name: &[u8]) -> bool {
    let mut f = folded(name);
    b"x-gatehouse".iter().all(|b| f.next() == Some(*b)) && matches!(f.next(), None | Some(b'-'))
}

/// Whether a client-sent header must not reach the upstream. `trusted_peer`: the connection came
/// from a configured trusted proxy, whose addressing headers are passed on.
pub(crate) fn is_stripped(name: &HeaderName, trusted_peer: bool) -> bool {
    let n = name.as_str().as_bytes();
    folds_to_ours(n)
        || STRIPPED.iter().any(|s| folded_eq(n, s))
        || (!trusted_peer && ADDRESSING.iter().any(|s| folded_eq(n, s)))
}

/// Removes hop-by-hop headers, including those named by `Connection`. Called on a request before
/// Gatehouse sets its own headers, so `Connection: X-Forwarded-For, Host` cannot remove them.
pub(crate) fn remove_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .filter(|n| !HOP_BY_HOP.contains(n))
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        if h.contains_key(name) {
            h.remove(name);
        }
    }
}

fn tokens<'a>(h: &'a HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    h.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Whether the request is a WebSocket opening handshake (RFC 6455 §4.1): GET, `Connection: upgrade`
/// and `Upgrade: websocket`. This is the only protocol switch the gateway forwards (SPEC §11); any
/// other `Upgrade` (`h2c` above all, which would let one public request carry private HTTP/2 streams
/// past the decision) is removed with the other hop-by-hop headers.
pub(crate) fn is_websocket_upgrade(method: &http::Method, h: &HeaderMap) -> bool {
    method == http::Method::GET
        && tokens(h, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(h, header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// Removes every `Set-Cookie` of the upstream's response that names one of Gatehouse's cookies
/// (compared case-insensitively), so an app cannot plant or clear a session or CSRF cookie.
pub(crate) fn drop_our_set_cookies(h: &mut HeaderMap, ours: &[&str]) {
    let is_ours = |v: &HeaderValue| {
        let name = v.as_bytes().split(|b| *b == b'=').next().unwrap_or_default().trim_ascii();
        ours.iter().any(|o| name.eq_ignore_ascii_case(o.as_bytes()))
    };
    if !h.get_all(header::SET_COOKIE).iter().any(is_ours) {
        return;
    }
    let kept: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().filter(|v| !is_ours(v)).cloned().collect();
    h.remove(header::SET_COOKIE);
    for v in kept {
        h.append(header::SET_COOKIE, v);
    }
}

/// A gateway failure to reach the upstream.
#[derive(Debug)]
pub enum UpstreamError {
    /// Could not connect or the connection broke: 502.
    Unreachable(String),
    /// No response head within the timeout: 504.
    Timeout,
    /// The client's own request body was malformed (bad chunk size, bare LF, overflow) or broke off:
    /// a client error (400), not the upstream's fault.
    ClientBody(String),
}

/// Sends `req` to `authority` with `path_and_query`, streaming. Its headers are final: hop-by-hop
/// ones were removed before Gatehouse set its own. `websocket`: the request is a WebSocket handshake
/// that was judged like any other; it is the one upgrade forwarded, and a `101` is spliced only then.
/// `tunnel_idle`: a spliced tunnel with no bytes either way for this long is closed.
pub async fn forward(
    client: &UpstreamClient,
    authority: &str,
    path_and_query: &str,
    mut req: Request<Body>,
    websocket: bool,
    timeout: Duration,
    tunnel_idle: Duration,
) -> Result<Response<Body>, UpstreamError> {
    let client_upgrade = if websocket { Some(hyper::upgrade::on(&mut req)) } else { None };
    let uri: Uri = format!("http://{authority}{path_and_query}")
        .parse()
        .map_err(|_| UpstreamError::Unreachable("bad upstream URI".into()))?;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    if websocket {
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    // Remember whether the body failed on the client's side, to tell a bad request from a bad upstream.
    let client_body_error: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let (parts, body) = req.into_parts();
    let seen = client_body_error.clone();
    let body = http_body_util::BodyExt::map_err(body, move |e| {
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        e
    });
    let req = Request::from_parts(parts, Body::new(body));
    let result = tokio::time::timeout(timeout, client.request(req)).await;
    if let Some(cause) = client_body_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        if !matches!(result, Ok(Ok(_))) {
            return Err(UpstreamError::ClientBody(cause));
        }
    }
    let mut resp = match result {
        Err(_) => return Err(UpstreamError::Timeout),
        Ok(Err(e)) => return Err(UpstreamError::Unreachable(e.to_string())),
        Ok(Ok(r)) => r,
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let agreed = tokens(resp.headers(), header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"));
        let Some(client_upgrade) = client_upgrade.filter(|_| agreed) else {
            // A switch nobody asked for (or to another protocol): never hand the client a raw socket.
            return Err(UpstreamError::Unreachable(
                "the upstream switched protocols without a WebSocket handshake".into(),
            ));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((c, u)) => splice(TokioIo::new(c), TokioIo::new(u), tunnel_idle).await,
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Copies both ways until either side closes, or until no byte has moved for `idle`: the listener's
/// idle timeout no longer sees a socket once hyper has handed it over, so the tunnel keeps its own.
async fn splice<C, U>(c: C, u: U, idle: Duration)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let started = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut c = Counted { inner: c, started, last: last.clone() };
    let mut u = Counted { inner: u, started, last: last.clone() };
    let copying = tokio::io::copy_bidirectional(&mut c, &mut u);
    let mut copying = std::pin::pin!(copying);
    loop {
        let deadline = started + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            _ = copying.as_mut() => return,
            () = tokio::time::sleep_until(deadline) => {
                if started.elapsed() >= Duration::from_millis(last.load(Ordering::Relaxed)) + idle {
                    tracing::debug!(idle_secs = idle.as_secs(), "closing an idle WebSocket tunnel");
                    return;
                }
            }
        }
    }
}

/// One side of a tunnel: every byte read from it (all bytes moved are read first) marks activity.
struct Counted<T> {
    inner: T,
    started: tokio::time::Instant,
    last: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves a file of a static micro. `path` is normalized (no `..`), and the resolved file must stay
/// inside `root` even through symlinks.
pub(crate) async fn serve_static(root: &Path, path: &str) -> Response<Body> {
    let not_found = || {
        let mut r = Response::new(Body::from("Not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    let Ok(root) = tokio::fs::canonicalize(root).await else { return not_found() };
    let mut candidate: PathBuf = root.join(path.trim_start_matches('/'));
    if path.ends_with('/') || tokio::fs::metadata(&candidate).await.is_ok_and(|m| m.is_dir()) {
        candidate = candidate.join("index.html");
    }
    let Ok(file) = tokio::fs::canonicalize(&candidate).await else { return not_found() };
    if !file.starts_with(&root) {
        return not_found();
    }
    let Ok(bytes) = tokio::fs::read(&file).await else { return not_found() };
    let ct = match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    };
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_headers_are_recognized_in_every_spelling() {
        let always = [
            "X-Gatehouse-User",
            "x-gatehouse-user",
            "X_Gatehouse_User",
            "x_GATEHOUSE-email",
            "x-gatehouse.jwt-assertion",
            "x-gatehouse~jwt-assertion",
            "x-gatehouse--user",
            "x.gatehouse.auth",
            "-x-gatehouse-auth",
            "x-gatehouse",
            "x_gatehouse",
            "X-Space-App-Key",
            "x_space_app_key",
            "x.space.app.key",
            "X-Original-URL",
            "x.original.url",
            "Forwarded",
            "X-Forwarded-For",
            "x_forwarded_for",
            "X-Real-IP",
            "x-http-method-override",
            "x-forwarded-proto",
            "x-forwarded-host",
        ];
        for name in always {
            let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_stripped(&n, false) && is_stripped(&n, true), "{name}");
        }
        let addressing = [
            "True-Client-IP",
            "X-Client-IP",
            "CF-Connecting-IP",
            "cf_connecting_ip",
            "Fastly-Client-IP",
            "X-Cluster-Client-IP",
            "X-Forwarded-Ssl",
            "x_forwarded_ssl",
            "X-Forwarded-Scheme",
            "Front-End-Https",
            "X-Url-Scheme",
            "X-Host",
            "X-Original-Host",
            "x.original.host",
            "X-Forwarded-Server",
            "X-Forwarded-Port",
        ];
        for name in addressing {
            let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_stripped(&n, false), "{name} from an untrusted peer");
            assert!(!is_stripped(&n, true), "{name} from a trusted proxy");
        }
        for name in [
            "x-gatehousex",
            "x-gatehouse2-user",
            "xgatehouse-user",
            "x-requested-with",
            "authorization",
            "cookie",
            "x-hostname",
            "x-client-ipx",
        ] {
            assert!(!is_stripped(&HeaderName::from_bytes(name.as_bytes()).unwrap(), false), "{name}");
        }
    }

    #[test]
    fn only_websocket_upgrades_are_recognized() {
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let rows: &[Row] = &[
            ("GET", &[("connection", "Upgrade"), ("upgrade", "websocket")], true),
            ("GET", &[("connection", "keep-alive, upgrade"), ("upgrade", "WebSocket")], true),
            (
                "GET",
                &[
                    ("connection", "Upgrade, HTTP2-Settings"),
                    ("upgrade", "h2c"),
                    ("http2-settings", "AAMAAABkAAQAAP__"),
                ],
                false,
            ),
            ("GET", &[("connection", "upgrade"), ("upgrade", "h2c, websocket")], true),
            ("GET", &[("connection", "upgrade"), ("upgrade", "TLS/1.2")], false),
            ("GET", &[("upgrade", "websocket")], false),
            ("GET", &[("connection", "upgrade")], false),
            ("POST", &[("connection", "upgrade"), ("upgrade", "websocket")], false),
        ];
        for (method, headers, want) in rows {
            let mut h = HeaderMap::new();
            for (k, v) in *headers {
                h.append(*k, v.parse().unwrap());
            }
            assert_eq!(is_websocket_upgrade(&method.parse().unwrap(), &h), *want, "{method} {headers:?}");
        }
    }

    #[test]
    fn upstream_set_cookies_of_ours_are_dropped() {
        let mut h = HeaderMap::new();
        for v in [
            "gatehouse_session=evil; Path=/",
            "app=1",
            " GATEHOUSE_CSRF=x",
            "gatehouse_sessionx=2",
            "gatehouse_cp_session=; Max-Age=0",
        ] {
            h.append(header::SET_COOKIE, v.parse().unwrap());
        }
        drop_our_set_cookies(&mut h, &["gatehouse_session", "gatehouse_cp_session", "gatehouse_csrf"]);
        let left: Vec<_> = h.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(left, ["app=1", "gatehouse_sessionx=2"]);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }
}
