//! `/v1/oauth/clients`: register, list, get, rotate the secret of, and disable OAuth clients (SPEC §7).

use axum::extract::State as AxState;
use axum::Json;
use gatehouse_store::oauth::ClientRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::{ListOut, ListQuery};
use super::{ApiJson, ApiPath, ApiQuery, Caller, OAuthClientsRead, OAuthClientsWrite, OptionalJson, State};
use crate::error::ApiError;
use crate::error::ErrorOut;
use gatehouse_services::oauth::NewClient;

/// `confidential` clients keep a secret (server-side apps); `public` ones cannot (SPAs, mobile, CLIs).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    #[default]
    Confidential,
    Public,
}

/// Body of `POST /v1/oauth/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateClientIn {
    /// Shown to users on the consent screen (1 … 100 characters).
    pub name: String,
    #[serde(default)]
    pub client_type: ClientType,
    /// Exact redirect URIs; `http://127.0.0.1/…`, `http://[::1]/…` and `http://localhost/…` match any port.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Scopes the client may request: `resource:action` or any RFC 6749 scope token (`read_customers`);
    /// `*` is not allowed.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `opaque` (default) or `jwt` (RFC 9068) access tokens.
    pub token_format: Option<String>,
    /// Where the client's tokens act. Default: the calling key's environment (a key registers clients only in its own).
    pub environment: Option<super::dto::Env>,
    /// Restrict the client's tokens to one app (by name); an app-restricted key's clients are restricted to its app.
    pub app: Option<String>,
}

/// An OAuth client. Never includes its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientOut {
    /// Always `oauth_client`.
    pub object: &'static str,
    /// The `client_id`.
    pub id: String,
    pub name: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub token_format: String,
    /// The only environment its tokens act in.
    pub environment: super::dto::Env,
    /// The only app its tokens may be used on, if restricted.
    pub app: Option<String>,
    /// Last 4 characters of the current secret (confidential clients).
    pub secret_last4: Option<String>,
    /// Until when the previous secret is still accepted, after a rotation.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub disabled_at: Option<String>,
}

impl ClientOut {
    pub fn from_record(c: &ClientRecord) -> Self {
        ClientOut {
            object: "oauth_client",
            id: c.id.clone(),
            name: c.name.clone(),
            client_type: if c.confidential { ClientType::Confidential } else { ClientType::Public },
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            token_format: c.token_format.clone(),
            environment: c.environment.into(),
            app: c.app.clone(),
            secret_last4: c.secret_last4.clone(),
            previous_secret_expires_at: c
                .previous_secret_expires_at
                .filter(|t| *t > gatehouse_core::Timestamp::now())
                .map(|t| t.to_rfc3339()),
            created_at: c.created_at.to_rfc3339(),
            disabled_at: c.disabled_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A client with its secret: returned once, by create and rotate.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientOut,
    /// Shown only in this response (confidential clients); store it now.
    pub client_secret: Option<String>,
}

/// Body of `POST /v1/oauth/clients/{id}/rotate_secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecretIn {
    /// How long the old secret keeps working, 0 … 604800 seconds (7 days). Default 0.
    #[serde(default)]
    pub grace_period_secs: i64,
}

/// Register a client.
#[utoipa::path(
    post, path = "/v1/oauth/clients", tag = "oauth", security(("api_key" = [])),
    request_body = CreateClientIn,
    responses((status = 200, body = ClientWithSecret), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut), (status = 403, body = ErrorOut))
)]
pub(crate) async fn create_client(
    AxState(state): AxState<State>,
    caller: Caller<OAuthClientsWrite>,
    ApiJson(body): ApiJson<CreateClientIn>,
) -> Result<Json<ClientWithSecret>, ApiError> {
    let new = NewClient {
        name: body.name,
        confidential: body.client_type == ClientType::Confidential,
        redirect_uris: body.redirect_uris,
        scopes: body.scopes,
        token_format: body.token_format,
        environment: body.environment.map(Into::into),
        app: body.app,
    };
    let (client, secret) = state.oauth.create_client(&caller.actor(), &caller.meta(), new).await?;
    Ok(Json(ClientWithSecret {
        client: ClientOut::from_record(&client),
        client_secret: secret.map(|s| s.expose().to_owned()),
    }))
}

/// List clients, newest first.
#[utoipa::path(
    get, path = "/v1/oauth/clients", tag = "oauth", security(("api_key" = [])),
    params(ListQuery),
    responses((status = 200, body = ListOut<ClientOut>), (status = 400, body = ErrorOut))
)]
pub(crate) async fn list_clients(
    AxState(state): AxState<State>,
    caller: Caller<OAuthClientsRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListOut<ClientOut>>, ApiError> {
    let page = state.oauth.list_clients(&caller.actor(), None, &q.page()?).await?;
    Ok(Json(ListOut::from_page(&page, |r| r.id.as_str(), ClientOut::from_record)))
}

/// Get one client.
#[utoipa::path(
    get, path = "/v1/oauth/clients/{id}", tag = "oauth", security(("api_key" = [])),
    params(("id" = String, Path, description = "A client id, `client_…`")),
    responses((status = 200, body = ClientOut), (status = 404, body = ErrorOut))
)]
pub(crate) async fn get_client(
    AxState(state): AxState<State>,
    caller: Caller<OAuthClientsRead>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ClientOut>, ApiError> {
    Ok(Json(ClientOut::from_record(&state.oauth.client_for(&caller.actor(), &id).await?)))
}

/// Rotate a confidential client's secret; the old one keeps working for the grace period.
#[utoipa::path(
    post, path = "/v1/oauth/clients/{id}/rotate_secret", tag = "oauth", security(("api_key" = [])),
    params(("id" = String, Path, description = "A client id, `client_…`")),
    request_body(content = Option<RotateSecretIn>, description = "Grace period for the old secret"),
    responses((status = 200, body = ClientWithSecret), (status = 400, body = ErrorOut), (status = 404, body = ErrorOut))
)]
pub(crate) async fn rotate_secret(
    AxState(state): AxState<State>,
    caller: Caller<OAuthClientsWrite>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RotateSecretIn>,
) -> Result<Json<ClientWithSecret>, ApiError> {
    let (client, secret) =
        state.oauth.rotate_secret(&caller.actor(), &caller.meta(), &id, body.grace_period_secs).await?;
    Ok(Json(ClientWithSecret {
        client: ClientOut::from_record(&client),
        client_secret: Some(secret.expose().to_owned()),
    }))
}

/// Disable a client: its tokens stop working at once and it can get no more.
#[utoipa::path(
    post, path = "/v1/oauth/clients/{id}/disable", tag = "oauth", security(("api_key" = [])),
    params(("id" = String, Path, description = "A client id, `client_…`")),
    responses((status = 200, body = ClientOut), (status = 404, body = ErrorOut))
)]
pub(crate) async fn disable_client(
    AxState(state): AxState<State>,
    caller: Caller<OAuthClientsWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ClientOut>, ApiError> {
    Ok(Json(ClientOut::from_record(&state.oauth.disable_client(&caller.actor(), &caller.meta(), &id).await?)))
}
