//! The dashboard (SPEC §12): server-rendered pages at `/dashboard` on the control plane, for signed-in
//! users whose role allows each page. Every action is a form post that works without JavaScript; the
//! vendored `static/dashboard.js` only enhances (copy buttons, confirmations). Pages call the same
//! services as the management API and the CLI — never SQL of their own.
//!
//! The pieces every page shares live here: [`Viewer`] (the signed-in user, their role and the form
//! token), [`Form`] (a CSRF-checked form post), [`Layout`] (navigation for the role) and [`render`]
//! (the page headers, with a CSP that allows only our own script and style).

mod apps;
mod audit;
mod keys;
mod oauth_apps;
mod usage;
mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gatehouse_core::Scope;
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_services::ServiceError;
use gatehouse_store::UserRecord;
use serde::de::DeserializeOwned;

use crate::state::AppState;
use crate::web::{self, set_cookie, CSRF_COOKIE};

mod account;
mod users;

/// The dashboard's routes, merged into the control plane's router.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard", get(landing))
        .route("/dashboard/", get(landing))
        .route("/dashboard/static/{file}", get(asset))
        .merge(apps::routes())
        .merge(keys::routes())
        .merge(audit::routes())
        .merge(oauth_apps::routes())
        .merge(webhooks::routes())
        .merge(users::routes())
        .merge(account::routes())
}

/// `/dashboard`: the first page the role may see.
async fn landing(viewer: Viewer) -> Response {
    let first = viewer.nav().into_iter().next().map_or("/dashboard/account", |l| l.href);
    web::redirect(StatusCode::FOUND, first)
}

/// The script and style of every dashboard page, compiled into the binary (no CDN, no build step).
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match file.as_str() {
        "dashboard.css" => (include_str!("../../static/dashboard.css"), "text/css; charset=utf-8"),
        "dashboard.js" => (include_str!("../../static/dashboard.js"), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// The dashboard's content security policy: our own script and style only, nothing inline, no frames,
/// forms post only to this origin — and, for the sign-out form, may end at the identity providers
/// whose sign-out Gatehouse continues to (`end_session`), given as `sign_out_origins`.
pub fn csp(sign_out_origins: &[String]) -> HeaderValue {
    let mut form_action = String::from("'self'");
    for o in sign_out_origins {
        form_action.push(' ');
        form_action.push_str(o);
    }
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; form-action 'self'"))
}

/// A dashboard page with the page headers of [`web::page`] and the dashboard's CSP; sets the CSRF
/// cookie when the viewer's browser did not have one yet.
pub fn render(viewer: &Viewer, status: StatusCode, page: &impl askama::Template) -> Response {
    let mut resp = web::page(status, page);
    resp.headers_mut().insert("content-security-policy", viewer.csp.clone());
    if let Some(cookie) = &viewer.fresh_csrf_cookie {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, cookie, 86_400, viewer.https));
    }
    resp
}

/// What a role may do, in the words of the management API's scopes (`keys:write`, `audit:read`, …):
/// the role table of SPEC §12, the same one consent uses (`authority::role_may_delegate`).
pub fn role_may(role: &str, scope: &str) -> bool {
    Scope::parse(scope).is_ok_and(|s| gatehouse_core::authority::role_may_delegate(role, &s))
}

/// The signed-in user of a dashboard request. Extracting it redirects a browser with no session to
/// the sign-in page (coming back here after), and answers 503 when storage does not.
#[derive(Debug)]
pub struct Viewer {
    pub user: UserRecord,
    /// The session's id hash, which the form token is bound to.
    pub session: gatehouse_core::KeyHash,
    /// The token every form of this page carries.
    pub csrf: String,
    /// Set with the page when the browser had no CSRF cookie.
    fresh_csrf_cookie: Option<String>,
    pub https: bool,
    /// The request's path, for the active navigation link.
    pub path: String,
    /// The key namespace, to mask any credential that would otherwise reach a page.
    pub namespace: gatehouse_core::Namespace,
    /// The request id and client address every audit entry of this request carries (as the API's do).
    pub meta: RequestMeta,
    /// The dashboard's content security policy (`csp`), as built at start.
    csp: HeaderValue,
}

impl Viewer {
    /// Whether the viewer's role allows `scope` (e.g. `keys:write`).
    pub fn may(&self, scope: &str) -> bool {
        self.user.disabled_at.is_none() && role_may(&self.user.role, scope)
    }

    /// `Ok` when the role allows `scope`, else the 403 page. Every state-changing handler calls this
    /// before acting: what the page hides, the server also refuses.
    #[allow(clippy::result_large_err)] // the early answer is the page itself, returned at once by `?`
    pub fn require(&self, scope: &str) -> Result<(), Response> {
        if self.may(scope) {
            Ok(())
        } else {
            Err(self.forbidden())
        }
    }

    /// The 403 page for an action the role does not allow.
    pub fn forbidden(&self) -> Response {
        let layout = self.layout("Not allowed");
        render(
            self,
            StatusCode::FORBIDDEN,
            &Message { layout, message: "Your role does not allow this. Ask an owner or an admin." },
        )
    }

    /// The navigation links this role sees (SPEC §12 names them), in order.
    pub fn nav(&self) -> Vec<NavLink> {
        let links: [(&'static str, &'static str, &'static str); 7] = [
            ("Apps", "/dashboard/apps", "keys:read"),
            ("API keys", "/dashboard/keys", "keys:read"),
            ("OAuth apps", "/dashboard/oauth-apps", "oauth_clients:read"),
            ("Webhooks", "/dashboard/webhooks", "webhooks:read"),
            ("Audit log", "/dashboard/audit", "audit:read"),
            ("Users", "/dashboard/users", "users:read"),
            ("Account", "/dashboard/account", ""),
        ];
        links
            .into_iter()
            .filter(|(_, _, scope)| scope.is_empty() || self.may(scope))
            .map(|(label, href, _)| NavLink {
                label,
                href,
                current: self.path == href || self.path.starts_with(&format!("{href}/")),
            })
            .collect()
    }

    /// The dashboard user as the services' actor.
    pub fn actor(&self) -> Actor {
        Actor::User(Arc::new(self.user.clone()))
    }

    /// Masks every credential of this namespace in `text` (form values typed back, error messages).
    pub fn mask(&self, text: &str) -> String {
        gatehouse_core::apikey::mask_keys_in(text, &self.namespace)
    }

    /// The layout of a page titled `title`.
    pub fn layout(&self, title: &str) -> Layout {
        Layout { title: title.to_owned(), email: self.user.email.clone(), csrf: self.csrf.clone(), nav: self.nav() }
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let https = crate::login::secure_context(state, &parts.headers, peer);
        let login = match crate::login::current_login(state, &parts.headers).await {
            Ok(Some(login)) => login,
            Ok(None) => {
                let back = parts.uri.path_and_query().map_or("/dashboard", |p| p.as_str());
                let to = format!("/login?return_to={}", crate::login::url_encode(back));
                return Err(web::redirect(StatusCode::FOUND, &to));
            }
            Err(e) => return Err(crate::login::unavailable(e)),
        };
        let (cookie, fresh) = crate::login::csrf_cookie(&parts.headers);
        let csrf = web::csrf_token_for(&state.web.csrf_key, &cookie, Some(&login.session.id_hash));
        Ok(Viewer {
            user: login.user.clone(),
            session: login.session.id_hash,
            csrf,
            fresh_csrf_cookie: fresh.then_some(cookie),
            https,
            path: parts.uri.path().to_owned(),
            namespace: state.config.namespace.clone(),
            meta: RequestMeta {
                request_id: Some(crate::error::current_request_id()),
                ip: crate::netaddr::client_of(parts, &state.config.trusted_proxies).map(|ip| ip.to_string()),
            },
            csp: state.web.dashboard_csp.clone(),
        })
    }
}

/// A form post from a dashboard page: the viewer, and the form's fields once its CSRF token (bound to
/// the viewer's session) checked out. A form without a valid token gets a 403 page and does nothing.
#[derive(Debug)]
pub struct Form<T> {
    pub viewer: Viewer,
    pub fields: T,
}

/// The largest dashboard form (a bulk revoke of a few hundred keys fits).
const MAX_FORM_BYTES: usize = 256 * 1024;

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
            render(&viewer, StatusCode::PAYLOAD_TOO_LARGE, &viewer.message("Too large", "This form is too large."))
        })?;
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        let token = form_urlencoded::parse(text.as_bytes()).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        if !csrf_ok(state, &parts.headers, &viewer, token.as_deref().unwrap_or("")) {
            let m = viewer.message("Form expired", "This form has expired. Go back, reload the page and try again.");
            return Err(render(&viewer, StatusCode::FORBIDDEN, &m));
        }
        match web::from_query::<T>(text) {
            Ok(fields) => Ok(Form { viewer, fields }),
            Err(e) => {
                let text = format!("This form could not be read: {e}.");
                Err(render(&viewer, StatusCode::BAD_REQUEST, &viewer.message("Invalid form", &text)))
            }
        }
    }
}

fn csrf_ok(state: &AppState, headers: &HeaderMap, viewer: &Viewer, submitted: &str) -> bool {
    web::cookies(headers, CSRF_COOKIE)
        .any(|c| web::csrf_ok_for(&state.web.csrf_key, Some(c), Some(&viewer.session), submitted))
}

impl Viewer {
    /// A page with one paragraph of text, in the dashboard's layout.
    pub fn message<'a>(&self, title: &str, message: &'a str) -> Message<'a> {
        Message { layout: self.layout(title), message }
    }
}

/// Storage failed during a dashboard request: 503 when it is unreachable, else 500, with a plain
/// sentence; the cause goes to the log only, never into the page.
pub(crate) fn store_failed(viewer: &Viewer, e: &gatehouse_store::StoreError) -> Response {
    tracing::warn!(error = %e, "storage failed during a dashboard request");
    let (status, text) = match e {
        gatehouse_store::StoreError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "Gatehouse cannot reach its storage right now. Nothing was changed.")
        }
        gatehouse_store::StoreError::Full(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "Gatehouse's storage is full right now. Nothing was changed.")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. Nothing was changed."),
    };
    render(viewer, status, &viewer.message("Try again shortly", text))
}

/// A service error as a page, the one way every dashboard handler shows one: 400/403/404/409 with the
/// service's own words (any credential in them masked), 503 when storage is unreachable, a generic 500
/// otherwise (the cause is logged, never shown).
pub(crate) fn service_failed(viewer: &Viewer, e: ServiceError) -> Response {
    let (status, title) = match &e {
        ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "Not accepted"),
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ServiceError::Conflict(_) => (StatusCode::CONFLICT, "Not possible"),
        ServiceError::Denied(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        ServiceError::Store(s) => return store_failed(viewer, s),
    };
    let text = viewer.mask(&e.to_string());
    render(viewer, status, &viewer.message(title, &text))
}

/// One navigation link.
#[derive(Clone, Debug)]
pub struct NavLink {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// What `templates/dashboard/layout.html` needs: the title, who is signed in, the sign-out form's token
/// and the role's navigation.
#[derive(Clone, Debug)]
pub struct Layout {
    pub title: String,
    pub email: String,
    pub csrf: String,
    pub nav: Vec<NavLink>,
}

/// A dashboard page with one paragraph of text.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/message.html")]
pub struct Message<'a> {
    pub layout: Layout,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_decides_what_each_role_may_do() {
        // (role, scope, allowed): SPEC §12 roles.
        let table = [
            ("owner", "users:write", true),
            ("admin", "users:write", true),
            ("developer", "keys:write", true),
            ("developer", "webhooks:write", true),
            ("developer", "audit:read", true),
            ("developer", "audit:write", false),
            ("developer", "users:read", false),
            ("viewer", "keys:read", true),
            ("viewer", "keys:write", false),
            ("viewer", "users:read", true),
            ("member", "keys:read", false),
            ("member", "audit:read", false),
            ("nobody", "keys:read", false),
        ];
        for (role, scope, allowed) in table {
            assert_eq!(role_may(role, scope), allowed, "{role} {scope}");
        }
    }
}
