//! `/dashboard/account` (SPEC §12 Account): every signed-in user, `member` included — who they are and
//! changing their own password (the current one is checked like a sign-in, throttle included).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_services::users::{SignIn, UserError};
use serde::Deserialize;

use super::{render, Form, Layout, Viewer};
use crate::state::AppState;
use crate::web;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/account", get(show))
        .route("/dashboard/account/password", post(change_password))
        .route("/dashboard/account/sessions", post(end_others))
        .route("/dashboard/account/authorizations/{client_id}/withdraw", post(withdraw))
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/account.html")]
pub struct Account {
    pub layout: Layout,
    pub role: String,
    pub error: Option<String>,
    /// What the last action did, when it says so.
    pub notice: Option<&'static str>,
    pub sessions: Vec<SessionRow>,
    pub apps: Vec<AppRow>,
}

/// One OAuth app the viewer authorized.
#[derive(Debug)]
pub struct AppRow {
    pub client_id: String,
    pub name: String,
    /// Space-separated.
    pub scopes: String,
    pub authorized_at: String,
}

/// One live login of the viewer.
#[derive(Debug)]
pub struct SessionRow {
    pub created: String,
    pub last_seen: String,
    /// The session this page was loaded with.
    pub current: bool,
}

async fn page(state: &AppState, viewer: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    page_with(state, viewer, status, error, None).await
}

async fn page_with(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let logins = match state.sessions.logins_of(&viewer.user.id).await {
        Ok(l) => l,
        Err(e) => return crate::login::unavailable(e),
    };
    let sessions = logins
        .iter()
        .map(|s| SessionRow {
            created: s.created_at.to_rfc3339(),
            last_seen: s.last_seen_at.to_rfc3339(),
            current: s.id_hash == viewer.session,
        })
        .collect();
    let apps = match crate::oauth::endpoints::authorized_apps(state, &viewer.user.id).await {
        Ok(a) => a,
        Err(e) => return crate::login::unavailable(e),
    };
    let apps = apps
        .into_iter()
        .map(|a| AppRow {
            client_id: a.client_id,
            name: a.name,
            scopes: a.scopes.join(" "),
            authorized_at: a.authorized_at.to_rfc3339(),
        })
        .collect();
    let account =
        Account { layout: viewer.layout("Account"), role: viewer.user.role.clone(), error, notice, sessions, apps };
    render(viewer, status, &account)
}

async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let notice = (raw.as_deref() == Some("password=changed"))
        .then_some("Password changed. Your other sessions have been signed out.");
    page_with(&state, &viewer, StatusCode::OK, None, notice).await
}

#[derive(Debug, Deserialize)]
struct NoFields {}

/// Ends every session of the viewer but this one.
async fn end_others(State(state): State<Arc<AppState>>, form: Form<NoFields>) -> Response {
    let viewer = form.viewer;
    match state.sessions.end_others(&viewer.user.id, &viewer.session).await {
        Ok(_) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/account"),
        Err(e) => crate::login::unavailable(e),
    }
}

/// Withdraws the viewer's consent to an OAuth app and revokes its tokens for them.
async fn withdraw(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(client_id): axum::extract::Path<String>,
    form: Form<NoFields>,
) -> Response {
    let viewer = form.viewer;
    let meta = &viewer.meta;
    match crate::oauth::endpoints::withdraw(&state, &viewer.user.id, &client_id, meta).await {
        Ok(true) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/account"),
        Ok(false) => {
            let m = viewer.message("Not found", "You have not authorized that app.");
            render(&viewer, StatusCode::NOT_FOUND, &m)
        }
        Err(e) => crate::login::unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

/// Changes the viewer's own password; every other session of theirs ends, this one stays signed in.
async fn change_password(State(state): State<Arc<AppState>>, form: Form<PasswordForm>) -> Response {
    let Form { viewer, fields } = form;
    if fields.new != fields.confirm {
        return page(&state, &viewer, StatusCode::BAD_REQUEST, Some("The two new passwords differ.".into())).await;
    }
    if let Err(rule) = gatehouse_services::users::check_password(&fields.new) {
        return page(&state, &viewer, StatusCode::BAD_REQUEST, Some(rule.to_string())).await;
    }
    match state.users.sign_in(&viewer.user.email, &fields.current, None).await {
        Ok(SignIn::Ok(_)) => {}
        Ok(SignIn::Wrong) => {
            let m = "The current password is not right.".to_owned();
            return page(&state, &viewer, StatusCode::BAD_REQUEST, Some(m)).await;
        }
        Ok(SignIn::Throttled(_)) | Ok(SignIn::Busy) => {
            let m = "Too many attempts or the server is busy; try again later.".to_owned();
            return page(&state, &viewer, StatusCode::TOO_MANY_REQUESTS, Some(m)).await;
        }
        Err(e) => return crate::login::unavailable(e),
    }
    match state.users.change_own_password(&viewer.user.id, &fields.new, &viewer.session).await {
        Ok(_) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/account?password=changed"),
        Err(UserError::Store(e)) => crate::login::unavailable(e),
        Err(e) => page(&state, &viewer, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::NavLink;
    use askama::Template;
    use expect_test::expect_file;

    #[test]
    fn account() {
        let hostile = r#"<script>"'&"#;
        let page = Account {
            layout: Layout {
                title: "Account".into(),
                email: hostile.into(),
                csrf: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                nav: vec![NavLink { label: "Account", href: "/dashboard/account", current: true }],
            },
            role: hostile.into(),
            error: Some(hostile.into()),
            notice: Some("Password changed. Your other sessions have been signed out."),
            sessions: vec![
                SessionRow {
                    created: "2026-12-01T00:00:00Z".into(),
                    last_seen: "2026-12-01T01:00:00Z".into(),
                    current: true,
                },
                SessionRow {
                    created: "2026-11-30T00:00:00Z".into(),
                    last_seen: "2026-11-30T02:00:00Z".into(),
                    current: false,
                },
            ],
            apps: vec![AppRow {
                client_id: "client_1".into(),
                name: hostile.into(),
                scopes: "orders:read".into(),
                authorized_at: "2026-12-01T00:00:00Z".into(),
            }],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        expect_file!["snapshots/account.html"].assert_eq(&html);
    }
}
