//! The plain-HTTP listener (`http_redirect_listen`, SPEC §14): every request is answered with a
//! redirect to the same host, path and query over HTTPS — for a host Gatehouse serves; any other
//! `Host` is a 400 or 404 with no `Location` (the decision is `gatehouse_core::https_redirect`, with
//! its table of hostile hosts) — except the ACME HTTP-01 challenges of `/.well-known/acme-challenge/`,
//! answered with the key authorization of a pending challenge.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::https_redirect::{HttpsHosts, RedirectRefusal};
use parking_lot::RwLock;

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending HTTP-01 challenges: token → key authorization. Shared by the ACME manager (which adds a
/// token before telling the CA it is ready and removes it when the authorization is decided) and the
/// plain-HTTP listener.
#[derive(Debug, Default)]
pub struct Http01Tokens(RwLock<HashMap<String, String>>);

impl Http01Tokens {
    pub(crate) fn insert(&self, token: &str, key_authorization: &str) {
        self.0.write().insert(token.to_owned(), key_authorization.to_owned());
    }

    pub(crate) fn remove(&self, token: &str) {
        self.0.write().remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0.read().get(token).cloned()
    }
}

#[derive(Debug)]
struct Redirects {
    hosts: HttpsHosts,
    tokens: Arc<Http01Tokens>,
}

/// The plain-HTTP listener's router.
pub fn router(hosts: HttpsHosts, tokens: Arc<Http01Tokens>) -> axum::Router {
    axum::Router::new().fallback(answer).with_state(Arc::new(Redirects { hosts, tokens }))
}

async fn answer(State(r): State<Arc<Redirects>>, req: Request) -> Response {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match r.tokens.get(token) {
            Some(key_auth) if req.method() == Method::GET || req.method() == Method::HEAD => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], key_auth).into_response()
            }
            _ => text(StatusCode::NOT_FOUND, "No such challenge.\n"),
        };
    }
    let hosts: Vec<&[u8]> = req.headers().get_all(header::HOST).iter().map(HeaderValue::as_bytes).collect();
    let target = req.uri().authority().map(|a| a.as_str().as_bytes());
    let path_and_query = req.uri().path_and_query().map_or("", |p| p.as_str());
    match r.hosts.location(&hosts, target, path_and_query.as_bytes()) {
        Ok(location) => {
            // A GET or HEAD may be answered 301; every other method keeps its method and body (308).
            let status = if req.method() == Method::GET || req.method() == Method::HEAD {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            match HeaderValue::from_str(&location) {
                Ok(v) => (status, [(header::LOCATION, v)], "Moved to HTTPS.\n").into_response(),
                Err(_) => text(StatusCode::BAD_REQUEST, "The request target is not valid.\n"),
            }
        }
        Err(RedirectRefusal::UnknownHost) => text(StatusCode::NOT_FOUND, "No app is served at this host.\n"),
        Err(RedirectRefusal::NoHost) => text(StatusCode::BAD_REQUEST, "A Host header is required.\n"),
        Err(RedirectRefusal::ManyHosts) => text(StatusCode::BAD_REQUEST, "Send one Host header.\n"),
        Err(RedirectRefusal::BadHost) => text(StatusCode::BAD_REQUEST, "The Host header is not valid.\n"),
        Err(RedirectRefusal::BadTarget) => text(StatusCode::BAD_REQUEST, "The request target is not valid.\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
