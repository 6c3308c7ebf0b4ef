//! `/dashboard/webhooks`: webhook endpoints (SPEC §12 "Webhooks"). List per environment, create (URL,
//! event types as checkboxes, the Standard Webhooks option; the signing secret shown once), an
//! endpoint's page, roll the secret with an overlap (both secrets sign until its end time), enable and
//! disable. The URL rules (SSRF included) are the service's, as for the API.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_core::{Environment, Timestamp};
use gatehouse_services::error::ServiceError;
use gatehouse_services::webhooks::NewEndpoint;
use gatehouse_store::webhooks::{EndpointDelivery, EndpointRecord, EVENT_TYPES};
use gatehouse_store::PageRequest;

use super::oauth_apps::Empty;
use super::{render, service_failed, Form, Layout, Viewer};
use crate::state::AppState;
use crate::web;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/webhooks", get(list).post(create))
        .route("/dashboard/webhooks/{id}", get(show))
        .route("/dashboard/webhooks/{id}/roll", post(roll))
        .route("/dashboard/webhooks/{id}/disable", post(disable))
        .route("/dashboard/webhooks/{id}/enable", post(enable))
        .route("/dashboard/webhooks/{id}/resend", post(resend))
        .route("/dashboard/webhooks/{id}/test", post(send_test))
}

/// One endpoint as the pages show it (never its secret).
#[derive(Debug)]
pub(super) struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub environment: &'static str,
    pub standard_headers: bool,
    /// Until when the previous secret still signs too, after a roll.
    pub previous_until: String,
    pub created_at: String,
    pub disabled: bool,
    pub disabled_reason: String,
}

impl EndpointView {
    fn of(e: &EndpointRecord, now: Timestamp) -> Self {
        EndpointView {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            environment: e.environment.as_str(),
            standard_headers: e.standard_headers,
            previous_until: e
                .previous_secret_expires_at
                .filter(|t| *t > now && e.previous_secret.is_some())
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            created_at: e.created_at.to_rfc3339(),
            disabled: e.disabled_at.is_some(),
            disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
        }
    }
}

/// The create form as typed. `event_types` repeats, once per checked box.
#[derive(Clone, Debug, Default)]
pub(super) struct CreateForm {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub standard_headers: bool,
    pub environment: String,
}

impl CreateForm {
    /// Reads the form body (repeated `event_types`, which serde's form decoding does not gather).
    fn parse(body: &[(String, String)]) -> Self {
        let mut f = CreateForm::default();
        for (k, v) in body {
            match k.as_str() {
                "url" => f.url = v.trim().to_owned(),
                "description" => f.description = v.clone(),
                "event_types" => f.event_types.push(v.clone()),
                "standard_headers" => f.standard_headers = !v.is_empty(),
                "environment" => f.environment = v.clone(),
                _ => {}
            }
        }
        f
    }
}

/// One checkbox of the event types.
#[derive(Debug)]
pub(super) struct EventBox {
    pub name: &'static str,
    pub id: String,
    pub checked: bool,
}

fn boxes(checked: &[String]) -> Vec<EventBox> {
    std::iter::once("*")
        .chain(EVENT_TYPES.iter().copied())
        .enumerate()
        .map(|(i, name)| EventBox { name, id: format!("w-ev-{i}"), checked: checked.iter().any(|c| c == name) })
        .collect()
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/webhooks_list.html")]
pub(super) struct ListPage {
    pub layout: Layout,
    pub environment: &'static str,
    pub endpoints: Vec<EndpointView>,
    pub can_write: bool,
    pub form: CreateForm,
    pub boxes: Vec<EventBox>,
    pub error: Option<String>,
    pub older: Option<String>,
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/webhooks_show.html")]
pub(super) struct ShowPage {
    pub layout: Layout,
    pub endpoint: EndpointView,
    pub can_write: bool,
    /// The signing secret, on the one answer that reveals it.
    pub secret: Option<String>,
    pub notice: Option<String>,
    pub deliveries: Vec<DeliveryView>,
    /// The next (older) page of deliveries, if any.
    pub older: Option<String>,
}

/// One delivery to the endpoint, with every attempt.
#[derive(Debug)]
pub(super) struct DeliveryView {
    pub event_id: String,
    pub event_type: String,
    pub created_at: String,
    pub status: String,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug)]
pub(super) struct AttemptView {
    pub at: String,
    pub status: String,
    pub latency_ms: i64,
    /// The receiver's answer (an excerpt) or why no answer came; escaped like every value.
    pub response: String,
}

impl From<&EndpointDelivery> for DeliveryView {
    fn from(d: &EndpointDelivery) -> Self {
        DeliveryView {
            event_id: d.delivery.event_id.clone(),
            event_type: d.event_type.clone(),
            created_at: d.event_created_at.to_rfc3339(),
            status: d.delivery.status.clone(),
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: a.at.to_rfc3339(),
                    status: a.status_code.map_or_else(|| "no answer".to_owned(), |c| c.to_string()),
                    latency_ms: a.latency_ms,
                    response: a.response_excerpt.clone().or_else(|| a.error.clone()).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// Deliveries shown on an endpoint's page.
const DELIVERIES_SHOWN: u32 = 25;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListQuery {
    environment: String,
    after: String,
}

fn environment_of(s: &str) -> Environment {
    Environment::parse(s).unwrap_or(Environment::Live)
}

async fn list(State(state): State<Arc<AppState>>, viewer: Viewer, RawQuery(raw): RawQuery) -> Response {
    if !viewer.may("webhooks:read") {
        return viewer.forbidden();
    }
    let q: ListQuery = web::from_query(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let after = Some(q.after.trim().to_owned()).filter(|a| gatehouse_core::id::looks_like("we", a));
    let env = environment_of(&q.environment);
    let form = CreateForm { environment: env.as_str().to_owned(), ..Default::default() };
    list_page(&state, &viewer, StatusCode::OK, env, form, None, after).await
}

async fn list_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    env: Environment,
    form: CreateForm,
    error: Option<String>,
    after: Option<String>,
) -> Response {
    let page = PageRequest { limit: 50, starting_after: after };
    let found = match state.webhooks.list(env, &page).await {
        Ok(found) => found,
        Err(e) => return service_failed(viewer, e),
    };
    let now = Timestamp::now();
    let older = found
        .has_more
        .then(|| {
            found.items.last().map(|e| {
                format!("/dashboard/webhooks?environment={}&after={}", env.as_str(), crate::login::url_encode(&e.id))
            })
        })
        .flatten();
    let mask = |v: &str| viewer.mask(v);
    let form = CreateForm { url: mask(&form.url), description: mask(&form.description), ..form };
    let page = ListPage {
        layout: viewer.layout("Webhooks"),
        environment: env.as_str(),
        endpoints: found.items.iter().map(|e| EndpointView::of(e, now)).collect(),
        can_write: viewer.may("webhooks:write"),
        boxes: boxes(&form.event_types),
        form,
        error: error.map(|e| mask(&e)),
        older,
    };
    render(viewer, status, &page)
}

/// The most event types one form may carry (every known type and `*` fit many times over).
const MAX_EVENT_TYPES: usize = 64;

async fn create(State(state): State<Arc<AppState>>, Form { viewer, fields }: Form<Vec<(String, String)>>) -> Response {
    if let Err(denied) = viewer.require("webhooks:write") {
        return denied;
    }
    let form = CreateForm::parse(&fields);
    let env = environment_of(&form.environment);
    if form.event_types.len() > MAX_EVENT_TYPES {
        let e = Some("Too many event types.".to_owned());
        return list_page(&state, &viewer, StatusCode::BAD_REQUEST, env, form, e, None).await;
    }
    let new = NewEndpoint {
        url: form.url.clone(),
        event_types: form.event_types.clone(),
        description: Some(form.description.trim().to_owned()).filter(|d| !d.is_empty()),
        standard_headers: form.standard_headers,
    };
    match state.webhooks.create(&viewer.actor(), &viewer.meta, env, new).await {
        Ok((endpoint, secret)) => {
            let notice = "Endpoint added. Copy its signing secret now: it is shown only once.".to_owned();
            show_page(&state, &viewer, &endpoint, Some(secret.expose().to_owned()), Some(notice), None).await
        }
        Err(ServiceError::Invalid(e)) => {
            list_page(&state, &viewer, StatusCode::BAD_REQUEST, env, form, Some(e), None).await
        }
        Err(e) => service_failed(&viewer, e),
    }
}

async fn show_page(
    state: &AppState,
    viewer: &Viewer,
    e: &EndpointRecord,
    secret: Option<String>,
    notice: Option<String>,
    before: Option<&str>,
) -> Response {
    // One more than a page, to know whether there is an older page.
    let mut found = match state.webhooks.deliveries(None, &e.id, before, DELIVERIES_SHOWN + 1).await {
        Ok(d) => d,
        Err(err) => return service_failed(viewer, err),
    };
    let older = (found.len() > DELIVERIES_SHOWN as usize)
        .then(|| {
            found.truncate(DELIVERIES_SHOWN as usize);
            found.last().map(|d| {
                format!(
                    "/dashboard/webhooks/{}?before={}#deliveries",
                    crate::login::url_encode(&e.id),
                    crate::login::url_encode(&d.delivery.event_id)
                )
            })
        })
        .flatten();
    let page = ShowPage {
        deliveries: found.iter().map(DeliveryView::from).collect(),
        older,
        layout: viewer.layout("Webhook endpoint"),
        endpoint: EndpointView::of(e, Timestamp::now()),
        can_write: viewer.may("webhooks:write"),
        secret,
        notice,
    };
    render(viewer, StatusCode::OK, &page)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ShowQuery {
    before: String,
}

async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !viewer.may("webhooks:read") {
        return viewer.forbidden();
    }
    let q: ShowQuery = web::from_query(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let before = Some(q.before.trim()).filter(|b| !b.is_empty());
    match state.webhooks.get(None, &id).await {
        Ok(e) => show_page(&state, &viewer, &e, None, None, before).await,
        Err(e) => service_failed(&viewer, e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RollForm {
    /// Seconds both secrets sign.
    overlap_secs: String,
}

async fn roll(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, fields }: Form<RollForm>,
) -> Response {
    if let Err(denied) = viewer.require("webhooks:write") {
        return denied;
    }
    let Ok(overlap) = fields.overlap_secs.trim().parse::<i64>() else {
        return service_failed(&viewer, ServiceError::Invalid("Choose how long the old secret keeps signing.".into()));
    };
    match state.webhooks.roll(&viewer.actor(), &viewer.meta, None, &id, Some(overlap)).await {
        Ok((e, secret)) => {
            let notice = format!(
                "Secret rolled. Copy the new secret now: it is shown only once. {}",
                gatehouse_services::webhooks::receiver_instructions(&e, Timestamp::now())
            );
            show_page(&state, &viewer, &e, Some(secret.expose().to_owned()), Some(notice), None).await
        }
        Err(e) => service_failed(&viewer, e),
    }
}

async fn set_enabled(state: &AppState, viewer: &Viewer, id: &str, enabled: bool) -> Response {
    if let Err(denied) = viewer.require("webhooks:write") {
        return denied;
    }
    match state.webhooks.set_enabled(&viewer.actor(), &viewer.meta, None, id, enabled).await {
        Ok(e) => {
            web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/webhooks/{}", crate::login::url_encode(&e.id)))
        }
        Err(e) => service_failed(viewer, e),
    }
}

async fn disable(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, .. }: Form<Empty>,
) -> Response {
    set_enabled(&state, &viewer, &id, false).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ResendForm {
    event_id: String,
}

/// Queues one delivery again, to this endpoint alone (the event's other endpoints are not sent it
/// again), and goes back to the endpoint's page, where the new attempt will appear.
async fn resend(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, fields }: Form<ResendForm>,
) -> Response {
    if let Err(denied) = viewer.require("webhooks:write") {
        return denied;
    }
    match state.webhooks.resend_to(&viewer.actor(), &viewer.meta, None, &id, fields.event_id.trim()).await {
        Ok(()) => {
            web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/webhooks/{}", crate::login::url_encode(&id)))
        }
        Err(e) => service_failed(&viewer, e),
    }
}

/// Sends a test event to this endpoint alone; its delivery appears on the page like any other.
async fn send_test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, .. }: Form<Empty>,
) -> Response {
    if let Err(denied) = viewer.require("webhooks:write") {
        return denied;
    }
    match state.webhooks.send_test(&viewer.actor(), &viewer.meta, None, &id).await {
        Ok(_) => {
            web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/webhooks/{}", crate::login::url_encode(&id)))
        }
        Err(e) => service_failed(&viewer, e),
    }
}

async fn enable(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Form { viewer, .. }: Form<Empty>,
) -> Response {
    set_enabled(&state, &viewer, &id, true).await
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::*;

    /// What an attacker would like to see in a page unescaped.
    const HOSTILE: &str = r#"<script>"'&"#;

    fn layout(title: &str) -> Layout {
        Layout {
            title: title.to_owned(),
            email: HOSTILE.to_owned(),
            csrf: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
            nav: vec![crate::dashboard::NavLink { label: "Webhooks", href: "/dashboard/webhooks", current: true }],
        }
    }

    fn endpoint() -> EndpointRecord {
        EndpointRecord {
            id: "we_01".into(),
            workspace: "default".into(),
            environment: Environment::Live,
            url: format!("https://example.com/hook?x={HOSTILE}"),
            event_types: vec!["key.created".into(), "key.revoked".into()],
            description: HOSTILE.into(),
            secret: "whsec_current".into(),
            previous_secret: Some("whsec_previous".into()),
            previous_secret_expires_at: Some(Timestamp(1_764_626_400_000)),
            standard_headers: true,
            created_at: Timestamp(1_764_622_800_000),
            created_by: "usr_01".into(),
            disabled_at: Some(Timestamp(1_764_623_000_000)),
            disabled_reason: Some(HOSTILE.into()),
            failing_since: None,
            signature_last: gatehouse_store::webhooks::SignatureLast::Previous,
        }
    }

    fn checked(html: String) -> String {
        assert!(!html.contains("<script>"), "a hostile value came out unescaped:\n{html}");
        assert!(!html.contains("whsec_current") && !html.contains("whsec_previous"), "no stored secret in a page");
        html
    }

    #[test]
    fn webhooks_list_snapshot() {
        let form = CreateForm {
            url: HOSTILE.into(),
            description: HOSTILE.into(),
            event_types: vec!["key.created".into(), HOSTILE.into()],
            standard_headers: true,
            environment: "live".into(),
        };
        let page = ListPage {
            layout: layout("Webhooks"),
            environment: "live",
            // As of one minute after creation: the previous secret still signs.
            endpoints: vec![EndpointView::of(&endpoint(), Timestamp(1_764_622_860_000))],
            can_write: true,
            boxes: boxes(&form.event_types),
            form,
            error: Some(HOSTILE.into()),
            older: Some("/dashboard/webhooks?environment=live&after=we_01".into()),
        };
        expect_test::expect_file!["snapshots/webhooks_list.html"].assert_eq(&checked(page.render().unwrap()));
    }

    #[test]
    fn webhooks_show_snapshot_with_the_secret_once() {
        let page = ShowPage {
            layout: layout("Webhook endpoint"),
            endpoint: EndpointView::of(&endpoint(), Timestamp(1_764_622_860_000)),
            can_write: true,
            secret: Some(format!("whsec_{HOSTILE}")),
            notice: Some(HOSTILE.into()),
            deliveries: vec![DeliveryView {
                event_id: "evt_01".into(),
                event_type: "key.created".into(),
                created_at: "2025-12-01T21:00:00Z".into(),
                status: "pending".into(),
                attempts: vec![
                    AttemptView {
                        at: "2025-12-01T21:00:01Z".into(),
                        status: "500".into(),
                        latency_ms: 42,
                        response: HOSTILE.into(),
                    },
                    AttemptView {
                        at: "2025-12-01T21:00:31Z".into(),
                        status: "no answer".into(),
                        latency_ms: 10_000,
                        response: "timed out".into(),
                    },
                ],
            }],
            older: Some("/dashboard/webhooks/we_01?before=evt_01#deliveries".into()),
        };
        expect_test::expect_file!["snapshots/webhooks_show.html"].assert_eq(&checked(page.render().unwrap()));
    }

    #[test]
    fn the_create_form_gathers_repeated_event_types() {
        let body: Vec<(String, String)> =
            [("url", " https://a.example/ "), ("event_types", "*"), ("event_types", "key.created")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let f = CreateForm::parse(&body);
        assert_eq!(f.url, "https://a.example/");
        assert_eq!(f.event_types, ["*", "key.created"]);
        assert!(!f.standard_headers);
        assert_eq!(boxes(&f.event_types).iter().filter(|b| b.checked).count(), 2);
    }
}
