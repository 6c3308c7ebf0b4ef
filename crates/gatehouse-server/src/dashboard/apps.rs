//! Apps in the dashboard (SPEC §12 "Apps"): every app the gateway serves with its hosts and micros,
//! what each micro lets through, request counts by outcome, an app's **Configuration** page with its
//! keys and *Create new API key*, and the decision explainer, which runs the gateway's own pure
//! functions (`NormalizedPath`, `Spacefile::route`, `gateway::decide`) and the verifier.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_core::credentials::{looks_like_api_key, AppKeyHeader};
use gatehouse_core::gateway::{Authorization, Decision, RequestFacts};
use gatehouse_core::path::NormalizedPath;
use gatehouse_core::{Timestamp, VerifyContext};
use gatehouse_store::usage::{Resolution, UsageCounts};
use gatehouse_store::{KeyFilter, Seek};

use super::keys::{self, field, Fields, GridRow, KeyRow};
use super::{render, Form, Layout, Viewer};
use crate::state::{AppInfo, AppState};

type St = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/apps", get(list))
        .route("/dashboard/apps/{name}", get(configuration))
        .route("/dashboard/apps/{name}/keys", post(create_key))
        .route("/dashboard/apps/{name}/explain", post(explain))
}

/// One micro as the apps page shows it.
#[derive(Clone, Debug)]
pub(super) struct MicroRow {
    pub name: String,
    pub mount: String,
    /// What passes with no credential.
    pub public: String,
    /// What the rest needs.
    pub needs: String,
    pub api_keys: bool,
    /// `pattern → scope`, one per route scope.
    pub route_scopes: Vec<(String, String)>,
}

/// One app with its usage.
#[derive(Clone, Debug)]
pub(super) struct AppRow {
    pub name: String,
    /// `/dashboard/apps/<name>`, the Configuration page.
    pub href: String,
    pub environment: &'static str,
    pub hosts: String,
    pub micros: Vec<MicroRow>,
    pub counts: UsageCounts,
    /// Who may sign in to it (SPEC §15), one `(list, entries)` per non-empty list of its access
    /// policy; empty: the app has none, every enabled user may.
    pub access: Vec<(&'static str, String)>,
}

fn micro_rows(app: &AppInfo) -> Vec<MicroRow> {
    app.spacefile
        .micros
        .iter()
        .map(|m| {
            let p = &m.policy;
            let public = if p.public {
                "everything (public: true)".to_owned()
            } else if p.public_routes.is_empty() {
                "nothing".to_owned()
            } else {
                p.public_routes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            let needs = if p.public {
                "nothing".to_owned()
            } else if p.api_keys {
                "a signed-in session, an API key (X-Space-App-Key or Authorization: Bearer) or an OAuth token"
                    .to_owned()
            } else {
                "a signed-in session or an OAuth token (API keys are not enabled)".to_owned()
            };
            MicroRow {
                name: m.name.clone(),
                mount: m.mount.clone(),
                public,
                needs,
                api_keys: p.api_keys,
                route_scopes: p.route_scopes.iter().map(|(r, s)| (r.to_string(), s.to_string())).collect(),
            }
        })
        .collect()
}

/// The app's access policy as the pages list it.
fn access_rows(state: &AppState, app: &str) -> Vec<(&'static str, String)> {
    let Some(policy) = state.access.policy_of(app) else { return vec![] };
    let lists = policy.lists();
    [("Emails", lists.emails), ("Domains", lists.domains), ("Roles", lists.roles), ("Groups", lists.groups)]
        .into_iter()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(what, entries)| (what, entries.join(", ")))
        .collect()
}

fn app_row(state: &AppState, app: &AppInfo, usage: &HashMap<String, UsageCounts>) -> AppRow {
    AppRow {
        access: access_rows(state, &app.name),
        name: app.name.clone(),
        href: format!("/dashboard/apps/{}", crate::login::url_encode(&app.name)),
        environment: app.environment.as_str(),
        hosts: app.hosts.join(", "),
        micros: micro_rows(app),
        counts: usage.get(&app.name).copied().unwrap_or_default(),
    }
}

/// Every app's totals over the last 24 hours.
async fn usage_24h(state: &AppState) -> Result<HashMap<String, UsageCounts>, gatehouse_store::StoreError> {
    let now = Timestamp::now();
    let to = Resolution::Hour.floor(now).plus_millis(Resolution::Hour.millis());
    let from = now.plus_millis(-86_400_000);
    Ok(state.store.usage_by_app(Resolution::Hour, from, to).await?.into_iter().collect())
}

/// `/dashboard/apps`.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/apps_list.html")]
pub(super) struct AppsList {
    pub layout: Layout,
    pub apps: Vec<AppRow>,
}

async fn list(State(state): St, viewer: Viewer) -> Response {
    if let Err(r) = viewer.require("keys:read") {
        return r;
    }
    let usage = match usage_24h(&state).await {
        Ok(u) => u,
        Err(e) => return super::store_failed(&viewer, &e),
    };
    let apps = state.web.apps.iter().map(|a| app_row(&state, a, &usage)).collect();
    render(&viewer, StatusCode::OK, &AppsList { layout: viewer.layout("Apps"), apps })
}

/// What the explainer found.
#[derive(Clone, Debug, Default)]
pub(super) struct Explained {
    pub method: String,
    pub path: String,
    /// The credential as shown back: masked.
    pub credential: String,
    pub normalized: String,
    pub micro: String,
    pub relative: String,
    pub rule: String,
    pub answer: String,
    /// The user asked about (an email), or empty.
    pub user: String,
    /// Whether the app's access policy lets that user in, and why; empty when no user was asked about.
    pub access: String,
}

/// `/dashboard/apps/{name}`: the app's Configuration page.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/apps_configuration.html")]
pub(super) struct Configuration {
    pub layout: Layout,
    pub app: AppRow,
    pub keys: Vec<KeyRow>,
    /// The key table's pager (see `keys::pager`): this page shows the newest; "Older" goes on in the key list.
    pub newer: Option<String>,
    pub older: Option<String>,
    pub may_write: bool,
    pub grid: Vec<GridRow>,
    pub expiry: Vec<keys::Choice>,
    pub explained: Option<Explained>,
    pub methods: Vec<keys::Choice>,
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

async fn configuration_page(
    state: &AppState,
    viewer: &Viewer,
    app: &AppInfo,
    explained: Option<Explained>,
) -> Response {
    let usage = match usage_24h(state).await {
        Ok(u) => u,
        Err(e) => return super::store_failed(viewer, &e),
    };
    let filter = KeyFilter { environment: Some(app.environment), app: Some(app.name.clone()), ..Default::default() };
    let seek = Seek { limit: keys::PAGE_SIZE, cursor: None };
    let found = match state.keys.search(&viewer.actor(), filter, &seek).await {
        Ok(r) => r,
        Err(e) => return super::service_failed(viewer, e),
    };
    // More of the app's keys continue in the key list, filtered to the app.
    let list = keys::ListQuery {
        app: app.name.clone(),
        environment: app.environment.as_str().to_owned(),
        ..Default::default()
    };
    let (_, older) = keys::pager(&found, &seek, |c| list.href(app.environment.as_str(), c));
    let now = Timestamp::now();
    let current = explained.as_ref().map_or("GET", |e| e.method.as_str()).to_owned();
    let page = Configuration {
        layout: viewer.layout(&format!("{} · Configuration", app.name)),
        app: app_row(state, app, &usage),
        keys: found.items.iter().map(|k| keys::row(k, now)).collect(),
        newer: None,
        older,
        may_write: viewer.may("keys:write"),
        grid: keys::grid(state, Some(&app.name)),
        expiry: keys::expiry_choices(),
        explained,
        methods: METHODS
            .iter()
            .map(|m| keys::Choice { value: (*m).to_owned(), label: (*m).to_owned(), selected: *m == current })
            .collect(),
    };
    render(viewer, StatusCode::OK, &page)
}

#[allow(clippy::result_large_err)] // the early answer is the page itself, returned at once by `?`
fn find_app<'a>(state: &'a AppState, viewer: &Viewer, name: &str) -> Result<&'a AppInfo, Response> {
    state.web.app(name).ok_or_else(|| {
        let m = viewer.message("Not found", "The gateway serves no app by that name.");
        render(viewer, StatusCode::NOT_FOUND, &m)
    })
}

async fn configuration(State(state): St, viewer: Viewer, Path(name): Path<String>) -> Response {
    if let Err(r) = viewer.require("keys:read") {
        return r;
    }
    let app = match find_app(&state, &viewer, &name) {
        Ok(a) => a,
        Err(r) => return r,
    };
    configuration_page(&state, &viewer, app, None).await
}

/// *Create new API key* on the Configuration page: a key restricted to this app, in its environment.
async fn create_key(State(state): St, Path(name): Path<String>, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:write") {
        return r;
    }
    let app = match find_app(&state, &viewer, &name) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let back = (format!("/dashboard/apps/{}", crate::login::url_encode(&app.name)), format!("Back to {}", app.name));
    keys::create_and_reveal(&state, &viewer, &fields, Some((&app.name, app.environment)), back).await
}

/// The longest path the explainer takes (the gateway's own limit is checked by `NormalizedPath`).
const MAX_EXPLAIN_INPUT: usize = 8 * 1024;

/// The decision explainer: what the gateway would do with this method, path and credential.
async fn explain(State(state): St, Path(name): Path<String>, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:read") {
        return r;
    }
    let app = match find_app(&state, &viewer, &name) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let method = field(&fields, "method").to_ascii_uppercase();
    let path = field(&fields, "path");
    let credential = field(&fields, "credential");
    if !METHODS.contains(&method.as_str()) || path.len() > MAX_EXPLAIN_INPUT || credential.len() > MAX_EXPLAIN_INPUT {
        let m = viewer.message("Not accepted", "Choose a method from the list and give a path of at most 8 KiB.");
        return render(&viewer, StatusCode::BAD_REQUEST, &m);
    }
    let browser = field(&fields, "browser") == "on";
    let user = field(&fields, "user").trim();
    let mut explained = run_explainer(&state, app, &method, path, credential, browser).await;
    if !user.is_empty() {
        explained.user = user.chars().take(320).collect();
        explained.access = explain_access(&state, &viewer, app, user).await;
    }
    configuration_page(&state, &viewer, app, Some(explained)).await
}

/// Whether the app's access policy (SPEC §15) lets the user with this email in, and why — the
/// gateway's own `access::decide`, with the groups of the user's newest sign-in (groups come from the
/// identity provider's claim at sign-in; a user with no live login is judged without any).
async fn explain_access(state: &AppState, viewer: &Viewer, app: &AppInfo, email: &str) -> String {
    if !viewer.may("users:read") {
        return "not shown: looking a user up needs users:read".into();
    }
    let user = match state.users.find(email).await {
        Ok(Some(u)) => u,
        Ok(None) => return format!("no user has the email `{}`", email.chars().take(320).collect::<String>()),
        Err(_) => return "503: storage is unavailable, so the user could not be looked up".into(),
    };
    let groups = match state.sessions.logins_of(&user.id).await {
        Ok(logins) => logins.into_iter().next().map(|l| l.groups).unwrap_or_default(),
        Err(_) => return "503: storage is unavailable, so the user's sign-ins could not be read".into(),
    };
    let policy = state.access.policy_of(&app.name);
    let subject = gatehouse_core::access::Subject {
        email: &user.email,
        role: &user.role,
        groups: &groups,
        enabled: user.disabled_at.is_none(),
    };
    let decision = gatehouse_core::access::decide(policy.as_deref(), &subject);
    let groups = if groups.is_empty() { "no groups".to_owned() } else { format!("groups {}", groups.join(", ")) };
    let answer = if decision.is_allowed() {
        "the gateway lets them in"
    } else {
        "the gateway answers 403 app_not_allowed (a browser gets the page naming the account, with Switch account)"
    };
    format!("{} (role {}, {groups}): {decision}; {answer}", user.email, user.role)
}

/// Which part of the micro's policy matched: for the page's "rule" line.
fn rule_for(micro: &gatehouse_core::spacefile::Micro, method: &str, rel: &str, decision: &Decision<'_>) -> String {
    let p = &micro.policy;
    let scope = p.route_scopes.iter().find(|(r, _)| r.matches(method, rel));
    let scope_text = scope.map_or_else(
        || "no route scope matches, so any valid credential may call it".to_owned(),
        |(r, s)| format!("route scope `{r}` → `{s}`"),
    );
    match decision {
        Decision::Public if p.public => format!("micro `{}` has public: true", micro.name),
        Decision::Public => {
            let r = p.public_routes.iter().find(|r| r.matches(method, rel)).map(ToString::to_string);
            format!("public route `{}`", r.unwrap_or_default())
        }
        Decision::ApiKey { .. } => format!("presets.api_keys: true, an API key was given; {scope_text}"),
        Decision::BearerToken { .. } => format!("a bearer token that is not an API key (OAuth); {scope_text}"),
        Decision::Session { .. } => format!("the session cookie; {scope_text}"),
        Decision::RedirectToLogin => "not public, no credential, a browser navigation".to_owned(),
        Decision::MissingCredentials => "not public and no credential".to_owned(),
        Decision::ApiKeysNotEnabled => format!("micro `{}` does not have presets.api_keys: true", micro.name),
        Decision::MultipleCredentials => "more than one credential".to_owned(),
    }
}

async fn run_explainer(
    state: &AppState,
    app: &AppInfo,
    method: &str,
    path: &str,
    credential: &str,
    browser: bool,
) -> Explained {
    let ns = &state.config.namespace;
    let mut out = Explained {
        method: method.to_owned(),
        path: path.to_owned(),
        credential: if credential.is_empty() { String::new() } else { gatehouse_core::apikey::mask(credential) },
        ..Default::default()
    };
    let normalized = match NormalizedPath::parse(path) {
        Ok(p) => p,
        Err(e) => {
            out.normalized = "—".into();
            out.rule = "SPEC §3 path safety".into();
            out.answer = format!("400 ambiguous_path: {e}");
            return out;
        }
    };
    out.normalized = normalized.as_str().to_owned();
    let (micro, rel) = app.spacefile.route(&normalized);
    out.micro = format!("{} (mounted at {})", micro.name, micro.mount);
    out.relative = rel.as_str().to_owned();
    let is_key = !credential.is_empty() && looks_like_api_key(ns, credential);
    let facts = RequestFacts {
        method,
        path: rel.as_str(),
        app_key: if is_key { AppKeyHeader::One(credential) } else { AppKeyHeader::Absent },
        authorization: if credential.is_empty() || is_key {
            Authorization::Absent
        } else {
            Authorization::Bearer(credential)
        },
        has_session_cookie: false,
        browser_navigation: browser,
        bearer_is_api_key: false,
    };
    let decision = gatehouse_core::gateway::decide(&micro.policy, &facts);
    out.rule = rule_for(micro, method, rel.as_str(), &decision);
    out.answer = match &decision {
        Decision::Public => "forwarded to the micro with no credential check".into(),
        Decision::ApiKey { key, scope } => {
            let ctx =
                VerifyContext { environment: app.environment, ip: None, app: Some(&app.name), scope: scope.as_ref() };
            match state.verifier.verify(key, &ctx).await {
                Ok(k) if scope.is_none() && k.record.kind == gatehouse_core::KeyKind::Restricted => {
                    let d = gatehouse_core::DenyReason::RouteHasNoScope;
                    format!("403 {}: {d} (a restricted key may call only routes with a route scope)", d.code())
                }
                Ok(k) => format!("forwarded: the key `{}{}` is valid here", k.record.display_prefix, k.record.last4),
                Err(gatehouse_services::verifier::VerifyError::Denied(d)) => {
                    let status = match d.class() {
                        gatehouse_core::DenyClass::Authentication => 401,
                        gatehouse_core::DenyClass::Permission => 403,
                        gatehouse_core::DenyClass::RateLimit => 429,
                    };
                    let text = gatehouse_core::apikey::mask_keys_in(&d.to_string(), ns);
                    let ip = if d == gatehouse_core::DenyReason::IpNotAllowed {
                        " (the explainer has no client address, which an IP allowlist refuses)"
                    } else {
                        ""
                    };
                    format!("{status} {}: {text}{ip}", d.code())
                }
                Err(gatehouse_services::verifier::VerifyError::Unavailable) => {
                    "503: storage is unavailable, so the key could not be checked".into()
                }
            }
        }
        // As the gateway does: a live OAuth access token, of this app's environment, allowed on this
        // app, holding the route's scope (a token is restricted: a route with no scope refuses it).
        Decision::BearerToken { token, scope } => {
            let target = crate::credentials::TokenTarget::App { name: &app.name, environment: app.environment };
            let checked = match crate::credentials::authenticate_token(state, token).await {
                Ok(t) => crate::credentials::authorize_token(&t, target, scope.as_ref()).map(|()| t),
                Err(e) => Err(e),
            };
            match checked {
                Ok(t) => format!(
                    "forwarded: an OAuth access token of the client `{}` with the scopes `{}` is valid here",
                    t.record.client_id,
                    t.record.scopes.join(" ")
                ),
                Err(e) => gatehouse_core::apikey::mask_keys_in(&e.summary(), ns),
            }
        }
        Decision::Session { .. } => "the gateway checks the session cookie".into(),
        Decision::RedirectToLogin => "302 to the sign-in page".into(),
        Decision::MissingCredentials => "401 missing_credentials".into(),
        Decision::ApiKeysNotEnabled => "401: API keys are not accepted by this micro".into(),
        Decision::MultipleCredentials => "400 multiple_credentials".into(),
    };
    out
}
