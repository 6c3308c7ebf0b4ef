//! `/v1/webhook_endpoints` and `/v1/events` (SPEC §6): endpoints with their signing secrets, the event
//! log with each event's deliveries and attempts, and manual resend.

use axum::extract::State as AxState;
use axum::Json;
use gatehouse_store::webhooks::{AttemptRecord, DeliveryRecord, EndpointRecord, EventRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::{ListOut, ListQuery};
use super::{ApiJson, ApiPath, ApiQuery, Caller, OptionalJson, State, WebhooksRead, WebhooksWrite};
use crate::error::ApiError;
use crate::error::ErrorOut;
use gatehouse_services::webhooks::NewEndpoint;

/// Body of `POST /v1/webhook_endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEndpointIn {
    /// Where events are POSTed (https; http only with the development switch).
    pub url: String,
    /// Event types to receive, or `["*"]`.
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    /// Also send the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[serde(default)]
    pub standard_webhooks: bool,
}

/// A webhook endpoint. Never includes its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    /// Always `webhook_endpoint`.
    pub object: &'static str,
    pub id: String,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: String,
    pub environment: String,
    pub standard_webhooks: bool,
    /// `enabled` or `disabled`.
    pub status: &'static str,
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs deliveries, after a roll.
    pub previous_secret_expires_at: Option<i64>,
    pub created_at: i64,
}

impl EndpointOut {
    pub fn from_record(e: &EndpointRecord) -> Self {
        let now = gatehouse_core::Timestamp::now();
        EndpointOut {
            object: "webhook_endpoint",
            id: e.id.clone(),
            url: e.url.clone(),
            enabled_events: e.event_types.clone(),
            description: e.description.clone(),
            environment: e.environment.as_str().into(),
            standard_webhooks: e.standard_headers,
            status: if e.disabled_at.is_some() { "disabled" } else { "enabled" },
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_expires_at: e.previous_secret_expires_at.filter(|t| *t > now).map(|t| t.unix_seconds()),
            created_at: e.created_at.unix_seconds(),
        }
    }
}

/// An endpoint with its signing secret: returned once, by create and roll.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// `whsec_…`. Shown only in this response.
    pub secret: String,
    /// After a roll: what the receiver must do, and by when, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_instructions: Option<String>,
}

impl EndpointWithSecret {
    /// The answer to a roll: the endpoint, its new secret, and what the receiver must do.
    pub fn rolled(e: &EndpointRecord, secret: String) -> Self {
        let receiver_instructions =
            Some(gatehouse_services::webhooks::receiver_instructions(e, gatehouse_core::Timestamp::now()));
        EndpointWithSecret { endpoint: EndpointOut::from_record(e), secret, receiver_instructions }
    }
}

/// Body of `POST /v1/webhook_endpoints/{id}/roll_secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollSecretIn {
    /// How long the old secret keeps signing, 0 … 604800 s. Default 86400 (24 h).
    pub overlap_secs: Option<i64>,
}

/// An event, with where it went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventOut {
    /// Always `event`.
    pub object: &'static str,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    /// The exact payload that is signed and sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl EventOut {
    fn from_record(e: &EventRecord) -> Self {
        EventOut {
            object: "event",
            id: e.id.clone(),
            event_type: e.event_type.clone(),
            created: e.created_at.unix_seconds(),
            payload: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One endpoint's delivery of an event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryOut {
    pub endpoint_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptOut {
    pub endpoint_id: String,
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub response_excerpt: Option<String>,
}

/// An event with its deliveries and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventDetailOut {
    #[serde(flatten)]
    pub event: EventOut,
    pub deliveries: Vec<DeliveryOut>,
    pub attempts: Vec<AttemptOut>,
}

fn delivery_out(d: DeliveryRecord) -> DeliveryOut {
    DeliveryOut {
        endpoint_id: d.endpoint_id,
        next_attempt_at: (d.status == "pending").then(|| d.next_attempt_at.unix_seconds()),
        delivered_at: d.delivered_at.map(|t| t.unix_seconds()),
        status: d.status,
        attempts: d.attempts,
    }
}

fn attempt_out(a: AttemptRecord) -> AttemptOut {
    AttemptOut {
        endpoint_id: a.endpoint_id,
        at: a.at.unix_seconds(),
        status_code: a.status_code,
        latency_ms: a.latency_ms,
        error: a.error,
        response_excerpt: a.response_excerpt,
    }
}

/// Register an endpoint in the caller's environment. The signing secret is in this response only.
#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", security(("api_key" = [])), request_body = CreateEndpointIn,
    responses((status = 200, body = EndpointWithSecret), (status = 400, body = ErrorOut), (status = 403, body = ErrorOut)))]
pub(crate) async fn create_endpoint(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksWrite>,
    ApiJson(body): ApiJson<CreateEndpointIn>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let new = NewEndpoint {
        url: body.url,
        event_types: body.enabled_events,
        description: body.description,
        standard_headers: body.standard_webhooks,
    };
    let (e, secret) =
        state.webhooks.create(&caller.actor(), &caller.meta(), caller.key.record.environment, new).await?;
    Ok(Json(EndpointWithSecret {
        endpoint: EndpointOut::from_record(&e),
        secret: secret.expose().to_owned(),
        receiver_instructions: None,
    }))
}

/// List the endpoints of the caller's environment, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks", security(("api_key" = [])), params(ListQuery),
    responses((status = 200, body = ListOut<EndpointOut>)))]
pub(crate) async fn list_endpoints(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListOut<EndpointOut>>, ApiError> {
    let page = state.webhooks.list(caller.key.record.environment, &q.page()?).await?;
    Ok(Json(ListOut::from_page(&page, |r| r.id.as_str(), EndpointOut::from_record)))
}

/// Get one endpoint.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An endpoint id, `we_…`")), responses((status = 200, body = EndpointOut), (status = 404, body = ErrorOut)))]
pub(crate) async fn get_endpoint(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksRead>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(EndpointOut::from_record(&state.webhooks.get(Some(caller.key.record.environment), &id).await?)))
}

/// Roll the signing secret; during the overlap every delivery carries one `v1=` per live secret, the
/// signature of the secret the endpoint last accepted last (for receivers that read only the last `v1`),
/// and a delivery refused inside the overlap is resent at once with the other order.
/// `receiver_instructions` says in words what the receiver must do, and by when.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/roll_secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An endpoint id, `we_…`")), request_body(content = Option<RollSecretIn>),
    responses((status = 200, body = EndpointWithSecret), (status = 404, body = ErrorOut)))]
pub(crate) async fn roll_secret(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksWrite>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RollSecretIn>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let (e, secret) = state
        .webhooks
        .roll(&caller.actor(), &caller.meta(), Some(caller.key.record.environment), &id, body.overlap_secs)
        .await?;
    Ok(Json(EndpointWithSecret::rolled(&e, secret.expose().to_owned())))
}

/// Disable an endpoint: nothing is delivered to it until it is enabled again.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/disable", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An endpoint id, `we_…`")), responses((status = 200, body = EndpointOut), (status = 404, body = ErrorOut)))]
pub(crate) async fn disable_endpoint(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(EndpointOut::from_record(
        &state
            .webhooks
            .set_enabled(&caller.actor(), &caller.meta(), Some(caller.key.record.environment), &id, false)
            .await?,
    )))
}

/// Enable an endpoint again; pending deliveries resume.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/enable", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An endpoint id, `we_…`")), responses((status = 200, body = EndpointOut), (status = 404, body = ErrorOut)))]
pub(crate) async fn enable_endpoint(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(EndpointOut::from_record(
        &state
            .webhooks
            .set_enabled(&caller.actor(), &caller.meta(), Some(caller.key.record.environment), &id, true)
            .await?,
    )))
}

/// List the events of the caller's environment, newest first.
#[utoipa::path(get, path = "/v1/events", tag = "webhooks", security(("api_key" = [])), params(ListQuery), responses((status = 200, body = ListOut<EventOut>)))]
pub(crate) async fn list_events(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListOut<EventOut>>, ApiError> {
    let page = state.webhooks.events(caller.key.record.environment, &q.page()?).await?;
    Ok(Json(ListOut::from_page(&page, |r| r.id.as_str(), EventOut::from_record)))
}

/// Get one event with its deliveries and every attempt.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An event id, `evt_…`")), responses((status = 200, body = EventDetailOut), (status = 404, body = ErrorOut)))]
pub(crate) async fn get_event(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksRead>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EventDetailOut>, ApiError> {
    let e = state.webhooks.event(caller.key.record.environment, &id).await?;
    let deliveries = state.store.deliveries_of(&e.id).await?.into_iter().map(delivery_out).collect();
    let attempts = state.store.attempts_of(&e.id).await?.into_iter().map(attempt_out).collect();
    Ok(Json(EventDetailOut { event: EventOut::from_record(&e), deliveries, attempts }))
}

/// Answer of a resend.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResendOut {
    /// How many endpoints the event was queued for.
    pub queued: u64,
}

/// Send an event again, now, to every enabled endpoint that wants its type (same event id).
#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "An event id, `evt_…`")), responses((status = 200, body = ResendOut), (status = 404, body = ErrorOut)))]
pub(crate) async fn resend_event(
    AxState(state): AxState<State>,
    caller: Caller<WebhooksWrite>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ResendOut>, ApiError> {
    Ok(Json(ResendOut { queued: state.webhooks.resend(caller.key.record.environment, &id).await? }))
}
