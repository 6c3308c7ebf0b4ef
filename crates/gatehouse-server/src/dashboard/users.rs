//! `/dashboard/users` (SPEC §12 Users): the list, create (a password shown once or a one-time link),
//! disable/enable, reset password and change role. `users:read` sees the list, `users:write` acts, and
//! within that the users service decides whom (`actor_may_manage`: an admin never touches an owner).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_services::users::{actor_may_manage, generate_password, UserError, PASSWORD_LINK_TTL, ROLES};
use serde::Deserialize;

use super::{render, Form, Layout, Viewer};
use crate::state::AppState;
use crate::web;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/users", get(list).post(create))
        .route("/dashboard/users/{id}/disable", post(disable))
        .route("/dashboard/users/{id}/enable", post(enable))
        .route("/dashboard/users/{id}/role", post(role))
        .route("/dashboard/users/{id}/reset", post(reset))
}

/// One row of the list.
#[derive(Debug)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: &'static str,
    pub created: String,
    /// Whether this viewer may act on this user.
    pub manageable: bool,
    /// The viewer themselves (whose password changes on the Account page only).
    pub is_self: bool,
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/users_list.html")]
pub struct UsersList<'a> {
    pub layout: Layout,
    pub rows: Vec<UserRow>,
    pub can_write: bool,
    /// The roles this viewer may give.
    pub roles: Vec<&'a str>,
    pub error: Option<String>,
}

/// A password or link, shown once.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/users_secret.html")]
pub struct UserSecret {
    pub layout: Layout,
    pub what: &'static str,
    pub label: &'static str,
    pub email: String,
    pub secret: String,
}

async fn list_page(state: &AppState, viewer: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    let users = match state.users.list().await {
        Ok(u) => u,
        Err(e) => return crate::login::unavailable(e),
    };
    let me = viewer.actor();
    let can_write = viewer.may("users:write");
    let rows = users
        .iter()
        .map(|u| UserRow {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role.clone(),
            status: if u.disabled_at.is_some() { "disabled" } else { "active" },
            created: u.created_at.to_rfc3339(),
            manageable: can_write && actor_may_manage(&me, &u.role),
            is_self: u.id == viewer.user.id,
        })
        .collect();
    let roles = ROLES.into_iter().filter(|r| can_write && actor_may_manage(&me, r)).collect();
    render(viewer, status, &UsersList { layout: viewer.layout("Users"), rows, can_write, roles, error })
}

async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    if let Err(page) = viewer.require("users:read") {
        return page;
    }
    list_page(&state, &viewer, StatusCode::OK, None).await
}

/// A refused or failed change: the list again with the reason, or 503 when storage is down.
async fn failed(state: &AppState, viewer: &Viewer, e: UserError) -> Response {
    let status = match &e {
        UserError::NotAllowed(_) => StatusCode::FORBIDDEN,
        UserError::NoSuchUser(_) => StatusCode::NOT_FOUND,
        UserError::EmailTaken(_) | UserError::LastOwner(_) => StatusCode::CONFLICT,
        UserError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        UserError::Store(_) => {
            let m = viewer.message("Storage unavailable", "Storage is unavailable right now; nothing was changed.");
            return render(viewer, StatusCode::SERVICE_UNAVAILABLE, &m);
        }
        _ => StatusCode::BAD_REQUEST,
    };
    list_page(state, viewer, status, Some(e.to_string())).await
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    delivery: String,
}

fn reveal(state: &AppState, viewer: &Viewer, email: String, link: Option<String>, password: String) -> Response {
    let page = match link {
        Some(token) => UserSecret {
            layout: viewer.layout("Set-password link"),
            what: "A one-time set-password link",
            label: "Set-password link",
            email,
            secret: format!("{}/set-password?token={token}", state.config.public_url.trim_end_matches('/')),
        },
        None => UserSecret {
            layout: viewer.layout("New password"),
            what: "A new password",
            label: "Password",
            email,
            secret: password,
        },
    };
    render(viewer, StatusCode::OK, &page)
}

async fn create(State(state): State<Arc<AppState>>, form: Form<CreateForm>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(page) = viewer.require("users:write") {
        return page;
    }
    let me = viewer.actor();
    let password = generate_password();
    let user = match state.users.create_as(&me, &fields.email, &password, &fields.role).await {
        Ok(u) => u,
        Err(e) => return failed(&state, &viewer, e).await,
    };
    let link = if fields.delivery == "link" {
        match state.users.create_password_link(&me, &user.id, PASSWORD_LINK_TTL).await {
            Ok(t) => Some(t),
            Err(e) => return failed(&state, &viewer, e).await,
        }
    } else {
        None
    };
    reveal(&state, &viewer, user.email, link, password)
}

#[derive(Debug, Deserialize)]
struct NoFields {}

async fn disable(State(state): State<Arc<AppState>>, Path(id): Path<String>, form: Form<NoFields>) -> Response {
    let viewer = form.viewer;
    if let Err(page) = viewer.require("users:write") {
        return page;
    }
    match state.users.disable_as(&viewer.actor(), &id).await {
        Ok(_) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/users"),
        Err(e) => failed(&state, &viewer, e).await,
    }
}

async fn enable(State(state): State<Arc<AppState>>, Path(id): Path<String>, form: Form<NoFields>) -> Response {
    let viewer = form.viewer;
    if let Err(page) = viewer.require("users:write") {
        return page;
    }
    match state.users.enable_as(&viewer.actor(), &id).await {
        Ok(_) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/users"),
        Err(e) => failed(&state, &viewer, e).await,
    }
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn role(State(state): State<Arc<AppState>>, Path(id): Path<String>, form: Form<RoleForm>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(page) = viewer.require("users:write") {
        return page;
    }
    match state.users.set_role(&viewer.actor(), &id, &fields.role).await {
        Ok(_) => web::redirect(StatusCode::SEE_OTHER, "/dashboard/users"),
        Err(e) => failed(&state, &viewer, e).await,
    }
}

#[derive(Debug, Deserialize)]
struct ResetForm {
    #[serde(default)]
    delivery: String,
}

async fn reset(State(state): State<Arc<AppState>>, Path(id): Path<String>, form: Form<ResetForm>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(page) = viewer.require("users:write") {
        return page;
    }
    let me = viewer.actor();
    let user = match state.users.find(&id).await {
        Ok(Some(u)) => u,
        Ok(None) => return failed(&state, &viewer, UserError::NoSuchUser(id.chars().take(64).collect())).await,
        Err(e) => return failed(&state, &viewer, e.into()).await,
    };
    // Your own password changes on the Account page, which asks for the current one: a borrowed or
    // stolen session must not turn into the account's password here.
    if user.id == viewer.user.id {
        let m = "Change your own password on the Account page (it asks for the current one).".to_owned();
        return failed(&state, &viewer, UserError::NotAllowed(m)).await;
    }
    // A link leaves the old password working until it is used; a new password replaces it (and ends
    // every session) now.
    if fields.delivery == "link" {
        return match state.users.create_password_link(&me, &user.id, PASSWORD_LINK_TTL).await {
            Ok(t) => reveal(&state, &viewer, user.email, Some(t), String::new()),
            Err(e) => failed(&state, &viewer, e).await,
        };
    }
    let password = generate_password();
    match state.users.set_password_as(&me, &user.id, &password).await {
        Ok(u) => reveal(&state, &viewer, u.email, None, password),
        Err(e) => failed(&state, &viewer, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::NavLink;
    use askama::Template;
    use expect_test::expect_file;

    const HOSTILE: &str = r#"<script>"'&"#;

    fn layout(title: &str) -> Layout {
        Layout {
            title: title.into(),
            email: HOSTILE.into(),
            csrf: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            nav: vec![NavLink { label: "Users", href: "/dashboard/users", current: true }],
        }
    }

    #[test]
    fn users_list() {
        let row = |id: &str, role: &str, status, manageable| UserRow {
            id: id.into(),
            email: HOSTILE.into(),
            role: role.into(),
            status,
            created: "2026-12-01T00:00:00Z".into(),
            manageable,
            is_self: false,
        };
        let page = UsersList {
            layout: layout("Users"),
            rows: vec![row("usr_1", "owner", "active", false), row("usr_2", "viewer", "disabled", true)],
            can_write: true,
            roles: vec!["admin", "developer", "viewer", "member"],
            error: Some(HOSTILE.into()),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        expect_file!["snapshots/users_list.html"].assert_eq(&html);
    }

    #[test]
    fn users_secret() {
        let page = UserSecret {
            layout: layout("New password"),
            what: "A new password",
            label: "Password",
            email: HOSTILE.into(),
            secret: HOSTILE.into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        expect_file!["snapshots/users_secret.html"].assert_eq(&html);
    }
}
