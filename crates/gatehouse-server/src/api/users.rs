//! `/v1/users`: the people who sign in (SPEC §12 Users). A key manages users within its own authority
//! (`users::actor_may_manage`: never an owner, never a role beyond the key's scopes) and only from the
//! live environment, since people are not per environment. No response contains a password hash.

use axum::extract::State as AxState;
use axum::Json;
use gatehouse_core::{DenyReason, Environment};
use gatehouse_services::users::{generate_password, PASSWORD_LINK_TTL};
use gatehouse_store::UserRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::ListOut;
use super::{ApiJson, ApiPath, Caller, State, UsersRead, UsersWrite};
use crate::error::ApiError;

/// A user as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserOut {
    pub id: String,
    /// Always `user`.
    pub object: &'static str,
    pub email: String,
    /// `owner`, `admin`, `developer`, `viewer` or `member`.
    pub role: String,
    /// `active` or `disabled`.
    pub status: &'static str,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl UserOut {
    pub(crate) fn from_record(u: &UserRecord) -> Self {
        UserOut {
            id: u.id.clone(),
            object: "user",
            email: u.email.clone(),
            role: u.role.clone(),
            status: if u.disabled_at.is_some() { "disabled" } else { "active" },
            created_at: u.created_at.0,
            disabled_at: u.disabled_at.map(|t| t.0),
        }
    }
}

/// How a new user gets their first password.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Delivery {
    /// A generated password, in this response only.
    #[default]
    Password,
    /// A one-time set-password link, in this response only.
    Link,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserIn {
    pub email: String,
    /// Default `member`.
    pub role: Option<String>,
    /// Default `password`.
    #[serde(default)]
    pub delivery: Delivery,
}

/// A new user, with their first password or set-password link (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserCreated {
    pub user: UserOut,
    /// The generated password (`delivery: password`).
    pub password: Option<String>,
    /// The one-time link (`delivery: link`), valid 24 hours.
    pub set_password_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleIn {
    pub role: String,
}

/// Users are not per environment: only a live key manages them.
fn live_only<S>(caller: &Caller<S>) -> Result<(), ApiError> {
    if caller.key.record.environment == Environment::Live {
        Ok(())
    } else {
        Err(ApiError::denied(DenyReason::EnvironmentMismatch))
    }
}

/// The set-password page for `token` on this control plane.
pub(crate) fn set_password_url(state: &State, token: &str) -> String {
    format!("{}/set-password?token={token}", state.config.public_url.trim_end_matches('/'))
}

/// List every user of the workspace, oldest first.
#[utoipa::path(
    get, path = "/v1/users", tag = "users", security(("api_key" = [])),
    responses(
        (status = 200, description = "Every user", body = ListOut<UserOut>),
        (status = 401, body = crate::error::ErrorOut),
        (status = 403, body = crate::error::ErrorOut),
    )
)]
pub(crate) async fn list_users(
    AxState(state): AxState<State>,
    caller: Caller<UsersRead>,
) -> Result<Json<ListOut<UserOut>>, ApiError> {
    live_only(&caller)?;
    let users = state.users.list().await?;
    Ok(Json(ListOut {
        object: "list",
        data: users.iter().map(UserOut::from_record).collect(),
        has_more: false,
        next_cursor: None,
    }))
}

/// Create a user. Their first password (or a one-time set-password link) is in this response only.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", security(("api_key" = [])),
    request_body = CreateUserIn,
    responses(
        (status = 200, description = "The new user", body = UserCreated),
        (status = 400, body = crate::error::ErrorOut),
        (status = 401, body = crate::error::ErrorOut),
        (status = 403, description = "Beyond the key's authority (an owner, or a role with more than the key)", body = crate::error::ErrorOut),
        (status = 409, description = "The email is taken", body = crate::error::ErrorOut),
    )
)]
pub(crate) async fn create_user(
    AxState(state): AxState<State>,
    caller: Caller<UsersWrite>,
    ApiJson(body): ApiJson<CreateUserIn>,
) -> Result<Json<UserCreated>, ApiError> {
    live_only(&caller)?;
    let actor = caller.actor();
    let role = body.role.as_deref().unwrap_or("member");
    // With a link, the account starts with a random password nobody is shown.
    let password = generate_password();
    let user = state.users.create_as(&actor, &body.email, &password, role).await?;
    let (password, set_password_url) = match body.delivery {
        Delivery::Password => (Some(password), None),
        Delivery::Link => {
            let token = state.users.create_password_link(&actor, &user.id, PASSWORD_LINK_TTL).await?;
            (None, Some(set_password_url(&state, &token)))
        }
    };
    Ok(Json(UserCreated { user: UserOut::from_record(&user), password, set_password_url }))
}

/// Disable a user: they cannot sign in and their sessions end at once. The last enabled owner cannot be disabled.
#[utoipa::path(
    post, path = "/v1/users/{id}/disable", tag = "users", security(("api_key" = [])),
    params(("id" = String, Path, description = "A user id, `usr_…`, or an email")),
    responses((status = 200, body = UserOut), (status = 403, body = crate::error::ErrorOut), (status = 404, body = crate::error::ErrorOut), (status = 409, body = crate::error::ErrorOut))
)]
pub(crate) async fn disable_user(
    AxState(state): AxState<State>,
    caller: Caller<UsersWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserOut>, ApiError> {
    live_only(&caller)?;
    Ok(Json(UserOut::from_record(&state.users.disable_as(&caller.actor(), &id).await?)))
}

/// Let a disabled user sign in again.
#[utoipa::path(
    post, path = "/v1/users/{id}/enable", tag = "users", security(("api_key" = [])),
    params(("id" = String, Path, description = "A user id, `usr_…`, or an email")),
    responses((status = 200, body = UserOut), (status = 403, body = crate::error::ErrorOut), (status = 404, body = crate::error::ErrorOut))
)]
pub(crate) async fn enable_user(
    AxState(state): AxState<State>,
    caller: Caller<UsersWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserOut>, ApiError> {
    live_only(&caller)?;
    Ok(Json(UserOut::from_record(&state.users.enable_as(&caller.actor(), &id).await?)))
}

/// Give a user another role; it applies to their live sessions at once. The last enabled owner keeps the role.
#[utoipa::path(
    post, path = "/v1/users/{id}/role", tag = "users", security(("api_key" = [])),
    params(("id" = String, Path, description = "A user id, `usr_…`, or an email")),
    request_body = RoleIn,
    responses((status = 200, body = UserOut), (status = 400, body = crate::error::ErrorOut), (status = 403, body = crate::error::ErrorOut), (status = 404, body = crate::error::ErrorOut), (status = 409, body = crate::error::ErrorOut))
)]
pub(crate) async fn set_user_role(
    AxState(state): AxState<State>,
    caller: Caller<UsersWrite>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RoleIn>,
) -> Result<Json<UserOut>, ApiError> {
    live_only(&caller)?;
    Ok(Json(UserOut::from_record(&state.users.set_role(&caller.actor(), &id, &body.role).await?)))
}
