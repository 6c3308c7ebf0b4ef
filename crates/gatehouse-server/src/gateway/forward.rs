//! Forwarding to an upstream (SPEC §3 "What the upstream receives"): header hygiene, streaming
//! bodies both ways, WebSocket upgrades spliced after the upstream agrees, 502 when the upstream is
//! down and 504 when it is too slow. Static micros are served from their directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The pooled HTTP client to upstreams.
pub type UpstreamClient = Client<HttpConnector, Body>;

pub fn client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build(connector)
}

/// Headers a client may not pass through: ours (any case, `_` or `-`), URL overrides that some
/// frameworks route by, and forwarding headers we set ourselves.
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
    "x-forwarded-port",
    "x-forwarded-server",
    "forwarded",
    "x-real-ip",
    // Method overrides would let a request decided as a public GET act as a private write upstream.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// RFC 9110 §7.6.1 hop-by-hop fields (plus the legacy ones proxies still see).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Header-name equality where `_` and `-` are the same (`x_gatehouse_user` and `X-Gatehouse-User` are
/// one header to many upstreams: CGI, WSGI, nginx). `HeaderName`s are already lower case.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (matches!(x, b'_' | b'-') && matches!(y, b'_' | b'-')))
}

/// Whether a client-sent header must not reach the upstream. Allocation-free: it runs for every header.
pub fn is_stripped(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    let ours = n.len() >= 11 && same_name(&n[..11], b"x-gatehouse") && (n.len() == 11 || matches!(n[11], b'-' | b'_'));
    ours || STRIPPED.iter().any(|s| same_name(n, s.as_bytes()))
}

/// Removes hop-by-hop headers, including those named by `Connection`. Allocates only when a
/// `Connection` header names other fields.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
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

/// Whether the request asks for a WebSocket (or other) upgrade.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    let connection_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && h.contains_key(header::UPGRADE)
}

/// A gateway failure to reach the upstream.
#[derive(Debug)]
pub enum UpstreamError {
    /// Could not connect or the connection broke: 502.
    Unreachable(String),
    /// No response head within the timeout: 504.
    Timeout,
}

/// Sends `req` (headers already cleaned and set) to `authority` with `path_and_query`, streaming.
pub async fn forward(
    client: &UpstreamClient,
    authority: &str,
    path_and_query: &str,
    mut req: Request<Body>,
    timeout: Duration,
) -> Result<Response<Body>, UpstreamError> {
    let upgrade = wants_upgrade(req.headers());
    let upgrade_value = req.headers().get(header::UPGRADE).cloned();
    let client_upgrade = if upgrade { Some(hyper::upgrade::on(&mut req)) } else { None };
    let uri: Uri = format!("http://{authority}{path_and_query}").parse().map_err(|_| UpstreamError::Unreachable("bad upstream URI".into()))?;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    remove_hop_by_hop(req.headers_mut());
    if let (true, Some(v)) = (upgrade, upgrade_value.clone()) {
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, v);
    }
    let mut resp = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => return Err(UpstreamError::Timeout),
        Ok(Err(e)) => return Err(UpstreamError::Unreachable(e.to_string())),
        Ok(Ok(r)) => r,
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            let (mut parts, _) = resp.into_parts();
            let upgrade_header = parts.headers.get(header::UPGRADE).cloned();
            remove_hop_by_hop(&mut parts.headers);
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(u) = upgrade_header.or(upgrade_value) {
                parts.headers.insert(header::UPGRADE, u);
            }
            return Ok(Response::from_parts(parts, Body::empty()));
        }
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Serves a file of a static micro. `path` is normalized (no `..`), and the resolved file must stay
/// inside `root` even through symlinks.
pub async fn serve_static(root: &Path, path: &str) -> Response<Body> {
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
        for name in ["X-Gatehouse-User", "x-gatehouse-user", "X_Gatehouse_User", "x_GATEHOUSE-email", "X-Space-App-Key", "x_space_app_key", "X-Original-URL", "Forwarded", "X-Forwarded-For"] {
            assert!(is_stripped(&HeaderName::from_bytes(name.as_bytes()).unwrap()), "{name}");
        }
        for name in ["x-gatehousex", "x-requested-with", "authorization", "cookie"] {
            assert!(!is_stripped(&HeaderName::from_bytes(name.as_bytes()).unwrap()), "{name}");
        }
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
