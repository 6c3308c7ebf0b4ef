//! `/dashboard/oauth-apps`: the OAuth clients (SPEC §12 "OAuth apps"). List, register (the secret is
//! shown once), a client's page, rotate its secret with a grace window, disable. Every scope a person
//! hands a client must be one their role may delegate (`role_may_delegate`), checked here before the
//! service is called, as the consent page does for users.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_core::{Environment, Scope};
use gatehouse_services::error::ServiceError;
use gatehouse_services::oauth::NewClient;
use gatehouse_store::oauth::{ClientEdit, ClientRecord};
use gatehouse_store::PageRequest;

use super::{render, service_failed, Form, Layout, Viewer};
use crate::state::AppState;
use crate::web;

/// The most redirect URIs or scopes one client may list.
const MAX_LINES: usize = 100;
/// The longest redirect URI or scope accepted.
const MAX_LINE_LEN: usize = 2048;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/oauth-apps", get(list).post(register))
        .route("/dashboard/oauth-apps/{id}", get(show))
        .route("/dashboard/oauth-apps/{id}/rotate", post(rotate))
        .route("/dashboard/oauth-apps/{id}/disable", post(disable))
        .route("/dashboard/oauth-apps/{id}/edit", post(edit))
        .route("/dashboard/oauth-apps/{id}/authorizations/revoke", post(revoke_authorization))
}

/// One client as the pages show it (never its secret; its last four characters at most).
#[derive(Debug)]
pub(super) struct ClientView {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub token_format: String,
    pub environment: &'static str,
    pub app: String,
    pub secret_last4: String,
    /// Until when the previous secret still works, after a rotation.
    pub previous_until: String,
    pub created_at: String,
    pub disabled: bool,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        let now = gatehouse_core::Timestamp::now();
        ClientView {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: if c.confidential { "confidential" } else { "public" },
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            token_format: c.token_format.clone(),
            environment: c.environment.as_str(),
            app: c.app.clone().unwrap_or_default(),
            secret_last4: c.secret_last4.clone().unwrap_or_default(),
            previous_until: c
                .previous_secret_expires_at
                .filter(|t| *t > now)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            created_at: c.created_at.to_rfc3339(),
            disabled: c.disabled_at.is_some(),
        }
    }
}

/// The register form as typed (kept to fill the form again after an error).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct RegisterForm {
    pub name: String,
    pub client_type: String,
    /// One per line.
    pub redirect_uris: String,
    /// Separated by spaces, commas or new lines.
    pub scopes: String,
    pub token_format: String,
    pub environment: String,
    pub app: String,
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/oauth_apps_list.html")]
pub(super) struct ListPage {
    pub layout: Layout,
    pub clients: Vec<ClientView>,
    pub can_write: bool,
    pub form: RegisterForm,
    pub error: Option<String>,
    pub older: Option<String>,
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/oauth_apps_show.html")]
pub(super) struct ShowPage {
    pub layout: Layout,
    pub client: ClientView,
    pub can_write: bool,
    /// The secret, on the one answer that reveals it.
    pub secret: Option<String>,
    pub notice: Option<String>,
    /// The edit form's values: the client's own, or what was typed when it was refused.
    pub edit: EditForm,
    /// Why the edit was refused.
    pub error: Option<String>,
    /// The users who authorized the app.
    pub authorized: Vec<AuthorizedUser>,
}

/// One user who authorized the app, as its page lists them.
#[derive(Debug)]
pub(super) struct AuthorizedUser {
    pub user_id: String,
    /// The user's email (their id when the account no longer exists).
    pub email: String,
    pub scopes: String,
    pub granted_at: String,
}

/// The edit form as typed.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct EditForm {
    pub name: String,
    /// One per line.
    pub redirect_uris: String,
    /// Separated by spaces, commas or new lines.
    pub scopes: String,
}

impl EditForm {
    fn of(c: &ClientRecord) -> Self {
        EditForm { name: c.name.clone(), redirect_uris: c.redirect_uris.join("\n"), scopes: c.scopes.join(" ") }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListQuery {
    after: String,
}

async fn list(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    if !viewer.may("oauth_clients:read") {
        return viewer.forbidden();
    }
    let q: ListQuery = web::from_query(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let after = Some(q.after.trim().to_owned()).filter(|a| !a.is_empty());
    list_page(&state, &viewer, StatusCode::OK, RegisterForm::default(), None, after).await
}

async fn list_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: RegisterForm,
    error: Option<String>,
    after: Option<String>,
) -> Response {
    let actor = viewer.actor();
    let page = PageRequest { limit: 50, starting_after: after };
    let found = match state.oauth.list_clients(&actor, None, &page).await {
        Ok(found) => found,
        Err(e) => return service_failed(viewer, e),
    };
    let older = found
        .has_more
        .then(|| found.items.last().map(|c| format!("/dashboard/oauth-apps?after={}", crate::login::url_encode(&c.id))))
        .flatten();
    // What was typed comes back into the form, with any credential pasted into it masked.
    let mask = |v: &str| viewer.mask(v);
    let form = RegisterForm {
        name: mask(&form.name),
        client_type: form.client_type,
        redirect_uris: mask(&form.redirect_uris),
        scopes: mask(&form.scopes),
        token_format: form.token_format,
        environment: form.environment,
        app: mask(&form.app),
    };
    let error = error.map(|e| mask(&e));
    let page = ListPage {
        layout: viewer.layout("OAuth apps"),
        clients: found.items.iter().map(ClientView::from).collect(),
        can_write: viewer.may("oauth_clients:write"),
        form,
        error,
        older,
    };
    render(viewer, status, &page)
}

/// Splits a textarea into its non-empty lines (or scope tokens), bounded.
fn lines(text: &str, what: &str, split_spaces: bool) -> Result<Vec<String>, String> {
    let items: Vec<String> = text
        .split(|c: char| c == '\n' || c == '\r' || (split_spaces && (c == ' ' || c == ',' || c == '\t')))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if items.len() > MAX_LINES {
        return Err(format!("At most {MAX_LINES} {what} per app."));
    }
    if items.iter().any(|l| l.len() > MAX_LINE_LEN) {
        return Err(format!("Each of the {what} must be at most {MAX_LINE_LEN} characters."));
    }
    Ok(items)
}

/// Every scope must be one the viewer's role may hand out.
fn check_delegable(viewer: &Viewer, scopes: &[String]) -> Result<(), String> {
    for s in scopes {
        let scope = Scope::parse(s).map_err(|e| format!("Scope `{}`: {e}", s.chars().take(60).collect::<String>()))?;
        if !gatehouse_core::authority::role_may_delegate(&viewer.user.role, &scope) {
            return Err(format!("Your role may not hand out the scope `{s}`."));
        }
    }
    Ok(())
}

impl RegisterForm {
    fn to_new(&self, viewer: &Viewer) -> Result<NewClient, String> {
        let confidential = match self.client_type.as_str() {
            "" | "confidential" => true,
            "public" => false,
            _ => return Err("Client type must be confidential or public.".into()),
        };
        let redirect_uris = lines(&self.redirect_uris, "redirect URIs", false)?;
        let scopes = lines(&self.scopes, "scopes", true)?;
        check_delegable(viewer, &scopes)?;
        let environment = match self.environment.as_str() {
            "" => None,
            e => Some(Environment::parse(e).ok_or("Environment must be live or test.")?),
        };
        let token_format = match self.token_format.as_str() {
            "" => None,
            f => Some(f.to_owned()),
        };
        Ok(NewClient {
            name: self.name.clone(),
            confidential,
            redirect_uris,
            scopes,
            token_format,
            environment,
            app: Some(self.app.trim().to_owned()).filter(|a| !a.is_empty()),
        })
    }
}

async fn register(State(state): State<Arc<AppState>>, Form { viewer, fields }: Form<RegisterForm>) -> Response {
    if let Err(denied) = viewer.require("oauth_clients:write") {
        return denied;
    }
    let new = match fields.to_new(&viewer) {
        Ok(new) => new,
        Err(e) => return list_page(&state, &viewer, StatusCode::BAD_REQUEST, fields, Some(e), None).await,
    };
    match state.oauth.create_client(&viewer.actor(), &viewer.meta, new).await {
        Ok((client, secret)) => {
            let notice = Some(match &secret {
                Some(_) => "App registered. Copy its client secret now: it is shown only once.".to_owned(),
                None => "App registered. A public client has no secret.".to_owned(),
            });
            let shown = Shown { secret: secret.map(|s| s.expose().to_owned()), notice, ..Shown::default() };
            show_page(&state, &viewer, StatusCode::OK, &client, shown).await
        }
        Err(ServiceError::Invalid(e)) => {
            list_page(&state, &viewer, StatusCode::BAD_REQUEST, fields, Some(e), None).await
        }
        Err(e) => service_failed(&viewer, e),
    }
}

/// What a client's page shows besides the client: a secret once, a notice, or a refused edit.
#[derive(Debug, Default)]
struct Shown {
    secret: Option<String>,
    notice: Option<String>,
    edit: Option<EditForm>,
    error: Option<String>,
}

async fn show_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    client: &ClientRecord,
    shown: Shown,
) -> Response {
    let consents = match state.oauth.authorized_users(&viewer.actor(), &client.id).await {
        Ok(c) => c,
        Err(e) => return service_failed(viewer, e),
    };
    let users = match state.users.list().await {
        Ok(u) => u,
        Err(e) => return super::store_failed(viewer, &e),
    };
    let authorized = consents
        .into_iter()
        .map(|c| AuthorizedUser {
            email: users.iter().find(|u| u.id == c.user_id).map_or_else(|| c.user_id.clone(), |u| u.email.clone()),
            user_id: c.user_id,
            scopes: c.scopes.join(" "),
            granted_at: c.granted_at.to_rfc3339(),
        })
        .collect();
    // What was typed comes back into the form, with any credential pasted into it masked.
    let edit = match shown.edit {
        Some(f) => EditForm {
            name: viewer.mask(&f.name),
            redirect_uris: viewer.mask(&f.redirect_uris),
            scopes: viewer.mask(&f.scopes),
        },
        None => EditForm::of(client),
    };
    let page = ShowPage {
        layout: viewer.layout(&format!("OAuth app {}", client.name)),
        client: ClientView::from(client),
        can_write: viewer.may("oauth_clients:write"),
        secret: shown.secret,
        notice: shown.notice,
        edit,
        error: shown.error.map(|e| viewer.mask(&e)),
        authorized,
    };
    render(viewer, status, &page)
}

async fn show(State(state): State<Arc<AppState>>, viewer: Viewer, Path(id): Path<String>) -> Response {
    if !viewer.may("oauth_clients:read") {
        return viewer.forbidden();
    }
    match state.oauth.client_for(&viewer.actor(), &id).await {
        Ok(client) => show_page(&state, &viewer, StatusCode::OK, &client, Shown::default()).await,
        Err(e) => service_failed(&viewer, e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RotateForm {
    /// Seconds the old secret keeps working.
    grace_period_secs: String,
}

async fn rotate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, fields }: Form<RotateForm>,
) -> Response {
    if let Err(denied) = viewer.require("oauth_clients:write") {
        return denied;
    }
    let Ok(grace) = fields.grace_period_secs.trim().parse::<i64>() else {
        return service_failed(&viewer, ServiceError::Invalid("Choose how long the old secret keeps working.".into()));
    };
    let actor = viewer.actor();
    // The new secret is the client's whole authority: the role must be able to hand out each scope.
    match state.oauth.client_for(&actor, &id).await {
        Ok(c) => {
            if let Err(e) = check_delegable(&viewer, &c.scopes) {
                return render(&viewer, StatusCode::FORBIDDEN, &viewer.message("Not allowed", &e));
            }
        }
        Err(e) => return service_failed(&viewer, e),
    }
    match state.oauth.rotate_secret(&actor, &viewer.meta, &id, grace).await {
        Ok((client, secret)) => {
            let notice = Some(match grace {
                0 => "Secret rotated; the old one no longer works. Copy the new secret now: it is shown only once."
                    .to_owned(),
                _ => format!(
                    "Secret rotated; the old one keeps working until {}. Copy the new secret now: it is shown only once.",
                    ClientView::from(&client).previous_until
                ),
            });
            let shown = Shown { secret: Some(secret.expose().to_owned()), notice, ..Shown::default() };
            show_page(&state, &viewer, StatusCode::OK, &client, shown).await
        }
        Err(e) => service_failed(&viewer, e),
    }
}

/// A form with nothing but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Empty {}

async fn disable(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, .. }: Form<Empty>,
) -> Response {
    if let Err(denied) = viewer.require("oauth_clients:write") {
        return denied;
    }
    match state.oauth.disable_client(&viewer.actor(), &viewer.meta, &id).await {
        Ok(c) => {
            web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/oauth-apps/{}", crate::login::url_encode(&c.id)))
        }
        Err(e) => service_failed(&viewer, e),
    }
}

/// Saves a new name, redirect URIs and scopes (each scope one the viewer's role may hand out).
async fn edit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, fields }: Form<EditForm>,
) -> Response {
    if let Err(denied) = viewer.require("oauth_clients:write") {
        return denied;
    }
    let actor = viewer.actor();
    let client = match state.oauth.client_for(&actor, &id).await {
        Ok(c) => c,
        Err(e) => return service_failed(&viewer, e),
    };
    let refused = |error: String| Shown { edit: Some(fields.clone()), error: Some(error), ..Shown::default() };
    let parsed = lines(&fields.redirect_uris, "redirect URIs", false).and_then(|uris| {
        let scopes = lines(&fields.scopes, "scopes", true)?;
        check_delegable(&viewer, &scopes)?;
        Ok((uris, scopes))
    });
    let (redirect_uris, scopes) = match parsed {
        Ok(p) => p,
        Err(e) => return show_page(&state, &viewer, StatusCode::BAD_REQUEST, &client, refused(e)).await,
    };
    let change = ClientEdit { name: fields.name.clone(), redirect_uris, scopes };
    match state.oauth.update_client(&actor, &viewer.meta, &id, change).await {
        Ok(updated) => {
            let shown = Shown { notice: Some("Changes saved.".to_owned()), ..Shown::default() };
            show_page(&state, &viewer, StatusCode::OK, &updated, shown).await
        }
        Err(ServiceError::Invalid(e)) => show_page(&state, &viewer, StatusCode::BAD_REQUEST, &client, refused(e)).await,
        Err(e) => service_failed(&viewer, e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RevokeAuthorizationForm {
    user_id: String,
}

/// Revokes one user's authorization of the app (their consent and every token descended from it).
async fn revoke_authorization(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, fields }: Form<RevokeAuthorizationForm>,
) -> Response {
    if let Err(denied) = viewer.require("oauth_clients:write") {
        return denied;
    }
    let user_id = fields.user_id.trim();
    match state.oauth.revoke_authorization(&viewer.actor(), &viewer.meta, &id, user_id, "revoked_in_dashboard").await {
        Ok(true) => {
            web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/oauth-apps/{}", crate::login::url_encode(&id)))
        }
        Ok(false) => service_failed(&viewer, ServiceError::NotFound("That user has not authorized this app.".into())),
        Err(e) => service_failed(&viewer, e),
    }
}

#[cfg(test)]
mod tests {
    use askama::Template;
    use gatehouse_core::{KeyHash, Timestamp};

    use super::*;

    /// What an attacker would like to see in a page unescaped.
    const HOSTILE: &str = r#"<script>"'&"#;

    fn layout(title: &str) -> Layout {
        Layout {
            title: title.to_owned(),
            email: HOSTILE.to_owned(),
            csrf: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
            nav: vec![crate::dashboard::NavLink { label: "OAuth apps", href: "/dashboard/oauth-apps", current: true }],
        }
    }

    fn client() -> ClientRecord {
        ClientRecord {
            id: "client_01".into(),
            workspace: "default".into(),
            name: HOSTILE.into(),
            confidential: true,
            secret_hash: Some(KeyHash::of("x")),
            secret_last4: Some("abcd".into()),
            previous_secret_hash: Some(KeyHash::of("y")),
            // Far in the future, so the snapshot does not depend on today's date.
            previous_secret_expires_at: Some(Timestamp(32_503_680_000_000)),
            redirect_uris: vec![format!("https://example.com/cb?x={HOSTILE}")],
            scopes: vec!["read_customers".into(), "write_orders".into()],
            token_format: "opaque".into(),
            created_at: Timestamp(1_764_622_800_000),
            created_by: "usr_01".into(),
            disabled_at: None,
            environment: Environment::Live,
            app: Some(HOSTILE.into()),
        }
    }

    fn checked(html: String) -> String {
        assert!(!html.contains("<script>"), "a hostile value came out unescaped:\n{html}");
        html
    }

    #[test]
    fn oauth_apps_list_snapshot() {
        let form = RegisterForm {
            name: HOSTILE.into(),
            client_type: "public".into(),
            redirect_uris: HOSTILE.into(),
            scopes: HOSTILE.into(),
            token_format: "jwt".into(),
            environment: "test".into(),
            app: HOSTILE.into(),
        };
        let page = ListPage {
            layout: layout("OAuth apps"),
            clients: vec![ClientView::from(&client())],
            can_write: true,
            form,
            error: Some(HOSTILE.into()),
            older: Some("/dashboard/oauth-apps?after=client_01".into()),
        };
        expect_test::expect_file!["snapshots/oauth_apps_list.html"].assert_eq(&checked(page.render().unwrap()));
    }

    #[test]
    fn oauth_apps_show_snapshot_with_the_secret_once() {
        let page = ShowPage {
            layout: layout("OAuth app"),
            client: ClientView::from(&client()),
            can_write: true,
            secret: Some(format!("gth_cs_{HOSTILE}")),
            notice: Some(HOSTILE.into()),
            edit: EditForm::of(&client()),
            error: Some(HOSTILE.into()),
            authorized: vec![AuthorizedUser {
                user_id: "usr_01".into(),
                email: HOSTILE.into(),
                scopes: "read_customers write_orders".into(),
                granted_at: "2025-12-01T21:00:00Z".into(),
            }],
        };
        expect_test::expect_file!["snapshots/oauth_apps_show.html"].assert_eq(&checked(page.render().unwrap()));
    }

    #[test]
    fn form_lines_are_bounded_and_scopes_split() {
        assert_eq!(lines(" a \n\r\nb\n", "x", false).unwrap(), ["a", "b"]);
        assert_eq!(lines("read_customers write_orders,orders:read", "x", true).unwrap().len(), 3);
        assert!(lines(&"https://a.example/\n".repeat(10_000), "x", false).is_err());
        assert!(lines(&"a".repeat(MAX_LINE_LEN + 1), "x", false).is_err());
    }
}
