//! API keys in the dashboard (SPEC §12 "API keys"): the list with its filters in the URL, create
//! (with the scope grid), a key's page with its settings, audit trail and usage charts, roll, revoke
//! and bulk revoke. Every action calls `state.keys`, as the management API and the CLI do.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use gatehouse_core::id::looks_like;
use gatehouse_core::{Environment, KeyKind, KeyRecord, RateLimitOverride, Scope, Timestamp};
use gatehouse_services::keys::NewKey;
use gatehouse_store::usage::{CredentialKind, Resolution, UsageCredential, UsageSubject};
use gatehouse_store::{AuditEntry, AuditFilter, Cursor, KeyFilter, KeyStatus, Page, PageRequest, Seek, StoreError};

use super::usage::{chart, Chart};
use super::{render, service_failed, Form, Layout, Viewer};
use crate::state::AppState;

type St = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard/keys", get(list).post(create))
        .route("/dashboard/keys/revoke", post(bulk_revoke))
        .route("/dashboard/keys/{id}", get(show))
        .route("/dashboard/keys/{id}/roll", post(roll))
        .route("/dashboard/keys/{id}/revoke", post(revoke))
}

/// The form fields of a post, in order, repeated names kept (checkbox lists, the scope grid).
pub(super) type Fields = Vec<(String, String)>;

pub(super) fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str()).trim()
}

/// How many keys one list page shows.
pub(super) const PAGE_SIZE: u32 = 100;
/// The most keys one bulk revoke takes.
const BULK_LIMIT: usize = 500;
/// How many of a key's own audit entries its page shows (newest first; the audit log has the rest).
const KEY_AUDIT_SHOWN: u32 = 100;
/// The longest search text accepted (names are at most 100 characters, ids 30).
const MAX_SEARCH_LEN: usize = 200;

/// The roll form's choices for the old key's remaining life: (value, label, seconds).
pub(super) const ROLL_CHOICES: [(&str, &str, i64); 5] = [
    ("now", "Now", 0),
    ("1h", "In 1 hour", 3_600),
    ("24h", "In 24 hours", 86_400),
    ("3d", "In 3 days", 259_200),
    ("7d", "In 7 days", 604_800),
];

/// The create form's expiry choices: (value, label, seconds; 0 = never).
pub(super) const EXPIRY_CHOICES: [(&str, &str, i64); 6] = [
    ("", "Never", 0),
    ("1d", "In 1 day", 86_400),
    ("7d", "In 7 days", 604_800),
    ("30d", "In 30 days", 2_592_000),
    ("90d", "In 90 days", 7_776_000),
    ("365d", "In 1 year", 31_536_000),
];

/// One key as the list and the pages show it. Never the secret: its prefix and last four only.
#[derive(Clone, Debug)]
pub(super) struct KeyRow {
    pub id: String,
    pub name: String,
    pub masked: String,
    pub kind: &'static str,
    pub environment: &'static str,
    pub app: String,
    pub status: &'static str,
    pub created: String,
    pub last_used: String,
    pub scopes: String,
    pub ip_allowlist: String,
    pub expires: String,
    pub rate_limit: String,
    pub rolled_to: String,
    /// Where the key was found when it was revoked as leaked (SPEC §13); empty if it was not.
    pub leaked: String,
}

/// Marks the rows whose keys were revoked as leaked, with where they were found. A failed read
/// leaves the rows as they are: the page still shows the key as revoked.
pub(super) async fn mark_leaked(state: &AppState, rows: &mut [KeyRow]) {
    let ids: Vec<String> = rows.iter().filter(|r| r.status == "revoked").map(|r| r.id.clone()).collect();
    match state.store.leaks_of(state.keys.workspace(), &ids).await {
        Ok(leaks) => {
            for l in leaks {
                if let Some(r) = rows.iter_mut().find(|r| r.id == l.target.id() && r.leaked.is_empty()) {
                    r.leaked = leak_note(&l);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read leaked keys for the dashboard"),
    }
}

/// Where a leak was found, in words.
fn leak_note(l: &gatehouse_store::LeakRecord) -> String {
    let at = l.location.clone().unwrap_or_default();
    let commit = l.commit.as_deref().map(|c| format!(" (commit {c})")).unwrap_or_default();
    match l.source_kind.as_str() {
        "github" => format!("GitHub secret scanning: {at}"),
        "scan" => format!("gatehouse scan: {at}{commit}"),
        _ => "reported by someone holding it".to_owned(),
    }
}

pub(super) fn status_of(k: &KeyRecord, now: Timestamp) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.is_expired(now) {
        "expired"
    } else {
        "active"
    }
}

pub(super) fn row(k: &KeyRecord, now: Timestamp) -> KeyRow {
    let time = |t: Option<Timestamp>, none: &str| t.map_or_else(|| none.to_owned(), short_time);
    KeyRow {
        id: k.id.clone(),
        name: k.name.clone(),
        masked: format!("{}{}", k.display_prefix, k.last4),
        kind: k.kind.as_str(),
        environment: k.environment.as_str(),
        app: k.app.clone().unwrap_or_default(),
        status: status_of(k, now),
        created: short_time(k.created_at),
        last_used: time(k.last_used_at, "never"),
        scopes: match k.kind {
            KeyKind::Secret => "every scope".into(),
            KeyKind::Restricted => k.scopes.to_strings().join(" "),
        },
        ip_allowlist: {
            let ips: Vec<String> = k.ip_allowlist.to_strings();
            if ips.is_empty() {
                "any address".into()
            } else {
                ips.join(" ")
            }
        },
        expires: time(k.expires_at, "never"),
        rate_limit: k
            .rate_limit
            .map_or_else(|| "the default".into(), |r| format!("{} per {} s", r.limit, r.window_secs)),
        rolled_to: k.rolled_to.clone().unwrap_or_default(),
        leaked: String::new(),
    }
}

/// `2026-12-01 21:10 UTC`: what a person reads in a table.
pub(super) fn short_time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// One resource of the scope grid, with the choice already made (for a form shown again).
#[derive(Clone, Debug)]
pub(super) struct GridRow {
    pub resource: String,
    /// The field name, `scope.<resource>`.
    pub field: String,
    /// Ids of the three radio buttons.
    pub id: String,
}

/// Every resource a restricted key may be given: the apps' route scopes (`hello:read` → `hello`)
/// and the management API's resources.
pub(super) fn grid(state: &AppState, app: Option<&str>) -> Vec<GridRow> {
    let mut resources = BTreeSet::new();
    for a in state.web.apps.iter().filter(|a| app.is_none_or(|n| n == a.name)) {
        for m in &a.spacefile.micros {
            for (_, s) in &m.policy.route_scopes {
                if let Some(r) = s.resource() {
                    resources.insert(r.to_owned());
                }
            }
        }
    }
    let mut rows: Vec<String> = resources.into_iter().collect();
    if app.is_none() {
        for r in gatehouse_core::authority::MANAGEMENT_RESOURCES {
            if !rows.iter().any(|x| x == r) {
                rows.push(r.to_owned());
            }
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| GridRow { field: format!("scope.{r}"), id: format!("scope-{i}"), resource: r })
        .collect()
}

/// Plain scope names of apps' route scopes (`read_customers`), offered as a hint beside the text field.
pub(super) fn plain_scopes(state: &AppState) -> Vec<String> {
    let mut v = BTreeSet::new();
    for a in &state.web.apps {
        for m in &a.spacefile.micros {
            for (_, s) in &m.policy.route_scopes {
                if s.resource().is_none() && !s.is_wildcard() {
                    v.insert(s.to_string());
                }
            }
        }
    }
    v.into_iter().collect()
}

/// The create form's values read into a `NewKey`; `app` and `environment` are forced by the app's
/// Configuration page.
pub(super) fn new_key_from(
    fields: &Fields,
    forced: Option<(&str, Environment)>,
    now: Timestamp,
) -> Result<NewKey, String> {
    let name = field(fields, "name");
    let kind = KeyKind::parse(field(fields, "kind")).ok_or("Choose a kind: sk (secret) or rk (restricted).")?;
    let (app, environment) = match forced {
        Some((app, env)) => (Some(app.to_owned()), env),
        None => {
            let env = Environment::parse(field(fields, "environment")).ok_or("Choose an environment: live or test.")?;
            let app = field(fields, "app");
            ((!app.is_empty()).then(|| app.to_owned()), env)
        }
    };
    let mut scopes = vec![];
    if kind == KeyKind::Restricted {
        for (k, v) in fields {
            let Some(resource) = k.strip_prefix("scope.") else { continue };
            match v.as_str() {
                "none" | "" => {}
                "read" | "write" => scopes.push(format!("{resource}:{v}")),
                _ => return Err(format!("The scope grid's choice for `{resource}` is not None, Read or Write.")),
            }
        }
        scopes.extend(split_list(field(fields, "scopes")));
        if scopes.is_empty() {
            return Err(
                "A restricted key needs at least one scope: choose Read or Write in the grid, or name one.".into()
            );
        }
    }
    let expires = field(fields, "expires");
    let expires_at = match EXPIRY_CHOICES.iter().find(|(v, _, _)| *v == expires) {
        Some((_, _, 0)) => None,
        Some((_, _, secs)) => Some(now.plus_millis(secs * 1000)),
        None => return Err("Choose an expiry from the list.".into()),
    };
    let rate = field(fields, "rate_limit");
    let rate_limit = if rate.is_empty() {
        None
    } else {
        let limit: u32 = rate.parse().map_err(|_| "The rate limit is a whole number of requests per minute.")?;
        Some(RateLimitOverride { limit, window_secs: 60 })
    };
    Ok(NewKey {
        name: (!name.is_empty()).then(|| name.to_owned()),
        kind,
        environment,
        scopes,
        ip_allowlist: split_list(field(fields, "ip_allowlist")),
        expires_at,
        app,
        rate_limit,
        metadata: Default::default(),
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ',').filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

/// What the role may hand out (SPEC §12): every scope of the new key through `role_may_delegate`; an
/// `sk` key only when the role may delegate `*`.
pub(super) fn role_may_hand_out(viewer: &Viewer, new: &NewKey) -> Result<(), String> {
    let role = viewer.user.role.as_str();
    let all = Scope::parse("*").expect("the wildcard parses");
    if new.kind == KeyKind::Secret && !gatehouse_core::authority::role_may_delegate(role, &all) {
        return Err(format!(
            "The {role} role may not create secret (sk) keys, which hold every scope; create a restricted key."
        ));
    }
    for s in &new.scopes {
        if let Ok(scope) = Scope::parse(s) {
            if !gatehouse_core::authority::role_may_delegate(role, &scope) {
                return Err(format!("The {role} role may not hand out the scope `{scope}`."));
            }
        }
    }
    Ok(())
}

/// Creates a key from a dashboard form and answers the one-time reveal (200), or the refusal.
pub(super) async fn create_and_reveal(
    state: &AppState,
    viewer: &Viewer,
    fields: &Fields,
    forced: Option<(&str, Environment)>,
    back: (String, String),
) -> Response {
    let new = match new_key_from(fields, forced, Timestamp::now()) {
        Ok(n) => n,
        Err(text) => return render(viewer, StatusCode::BAD_REQUEST, &viewer.message("Not accepted", &text)),
    };
    if let Err(text) = role_may_hand_out(viewer, &new) {
        return render(viewer, StatusCode::FORBIDDEN, &viewer.message("Not allowed", &text));
    }
    match state.keys.create(&viewer.actor(), &viewer.meta, new).await {
        Ok((record, secret)) => {
            let page = Revealed {
                layout: viewer.layout("Your new API key"),
                key: row(&record, Timestamp::now()),
                secret: secret.expose().to_owned(),
                note: "",
                back_href: back.0,
                back_label: back.1,
            };
            render(viewer, StatusCode::OK, &page)
        }
        Err(e) => service_failed(viewer, e),
    }
}

/// The page that shows a new secret, once.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/keys_revealed.html")]
pub(super) struct Revealed {
    pub layout: Layout,
    pub key: KeyRow,
    pub secret: String,
    /// For a roll: when the old key stops working.
    pub note: &'static str,
    pub back_href: String,
    pub back_label: String,
}

/// The list's filters and page cursor, from the URL.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ListQuery {
    pub q: String,
    pub environment: String,
    pub kind: String,
    pub status: String,
    pub app: String,
    /// The id of the last key of the page before (the "Older" link).
    pub after: String,
    /// The id of the first key of the page after (the "Newer" link).
    pub before: String,
}

impl ListQuery {
    /// The store's filter and page for this query (the workspace is the service's), or what is
    /// wrong with it, in words for the page.
    fn filter(&self, now: Timestamp) -> Result<(KeyFilter, Seek), String> {
        let q = self.q.trim();
        if q.chars().count() > MAX_SEARCH_LEN {
            return Err(format!("Search is longer than {MAX_SEARCH_LEN} characters."));
        }
        // No name, id or prefix holds one (the services refuse them in names).
        if q.chars().any(char::is_control) {
            return Err("Search must not contain control characters.".into());
        }
        let environment = match self.environment.as_str() {
            "" => None,
            e => Some(Environment::parse(e).ok_or("Environment must be live or test.")?),
        };
        let kind = match self.kind.as_str() {
            "" => None,
            k => Some(KeyKind::parse(k).ok_or("Kind must be sk or rk.")?),
        };
        let status = match self.status.as_str() {
            "" => None,
            "active" => Some(KeyStatus::Active(now)),
            "revoked" => Some(KeyStatus::Revoked),
            "expired" => Some(KeyStatus::Expired(now)),
            _ => return Err("Status must be active, revoked or expired.".into()),
        };
        if self.app.chars().count() > MAX_SEARCH_LEN || self.app.chars().any(char::is_control) {
            return Err("That is not the name of an app.".into());
        }
        let cursor = match (self.after.trim(), self.before.trim()) {
            ("", "") => None,
            (a, "") if looks_like("key", a) => Some(Cursor::After(a.to_owned())),
            ("", b) if looks_like("key", b) => Some(Cursor::Before(b.to_owned())),
            _ => return Err("That page link is not valid; start from the newest keys.".into()),
        };
        let filter = KeyFilter {
            environment,
            kind,
            status,
            app: (!self.app.is_empty()).then(|| self.app.clone()),
            search: (!q.is_empty()).then(|| q.to_owned()),
            ..Default::default()
        };
        Ok((filter, Seek { limit: PAGE_SIZE, cursor }))
    }

    /// This query's URL with another environment and cursor.
    pub(super) fn href(&self, environment: &str, cursor: Option<&Cursor>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("q", &self.q), ("kind", &self.kind), ("status", &self.status), ("app", &self.app)] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if !environment.is_empty() {
            s.append_pair("environment", environment);
        }
        match cursor {
            Some(Cursor::After(id)) => s.append_pair("after", id),
            Some(Cursor::Before(id)) => s.append_pair("before", id),
            None => &mut s,
        };
        let s = s.finish();
        if s.is_empty() {
            "/dashboard/keys".into()
        } else {
            format!("/dashboard/keys?{s}")
        }
    }
}

/// The "Newer" and "Older" links of a page of keys read from `seek`: (newer, older).
pub(super) fn pager(
    page: &Page<KeyRecord>,
    seek: &Seek,
    href: impl Fn(Option<&Cursor>) -> String,
) -> (Option<String>, Option<String>) {
    let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
        // Nothing on this side of the cursor (a stale link): the way back is the newest page.
        return (seek.cursor.is_some().then(|| href(None)), None);
    };
    let (first, last) = (first.id.clone(), last.id.clone());
    // Reading older keys, a cursor means newer ones exist (the cursor's own key at least); reading
    // newer ones, `has_more` says so. And the other way round for older keys.
    let (newer, older) = match &seek.cursor {
        None => (false, page.has_more),
        Some(Cursor::After(_)) => (true, page.has_more),
        Some(Cursor::Before(_)) => (page.has_more, true),
    };
    (newer.then(|| href(Some(&Cursor::Before(first)))), older.then(|| href(Some(&Cursor::After(last)))))
}

/// A choice in a filter's `<select>`.
#[derive(Clone, Debug)]
pub(super) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(current: &str, list: &[(&str, &str)]) -> Vec<Choice> {
    list.iter()
        .map(|(v, l)| Choice { value: (*v).to_owned(), label: (*l).to_owned(), selected: *v == current })
        .collect()
}

/// `/dashboard/keys`.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/keys_list.html")]
pub(super) struct KeysList {
    pub layout: Layout,
    pub q: String,
    /// The live/test switch: (label, href, current).
    pub switch: Vec<(String, String, bool)>,
    pub environments: Vec<Choice>,
    pub kinds: Vec<Choice>,
    pub statuses: Vec<Choice>,
    pub apps: Vec<Choice>,
    pub keys: Vec<KeyRow>,
    /// The "Newer" and "Older" links, when there are such keys.
    pub newer: Option<String>,
    pub older: Option<String>,
    pub may_write: bool,
    pub grid: Vec<GridRow>,
    pub plain_scopes: String,
    pub expiry: Vec<Choice>,
    pub app_names: Vec<String>,
}

async fn list(State(state): St, viewer: Viewer, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = viewer.require("keys:read") {
        return r;
    }
    let now = Timestamp::now();
    let (filter, seek) = match q.filter(now) {
        Ok(f) => f,
        Err(text) => return render(&viewer, StatusCode::BAD_REQUEST, &viewer.message("Not accepted", &text)),
    };
    let found = match state.keys.search(&viewer.actor(), filter, &seek).await {
        Ok(r) => r,
        Err(e) => return service_failed(&viewer, e),
    };
    let current = Environment::parse(&q.environment).map_or("", |e| e.as_str());
    let (newer, older) = pager(&found, &seek, |c| q.href(current, c));
    let switch = [("All", ""), ("Live", "live"), ("Test", "test")]
        .into_iter()
        .map(|(label, env)| (label.to_owned(), q.href(env, None), env == current))
        .collect();
    let mut apps = vec![Choice { value: String::new(), label: "Any app".into(), selected: q.app.is_empty() }];
    for a in &state.web.apps {
        apps.push(Choice { value: a.name.clone(), label: a.name.clone(), selected: q.app == a.name });
    }
    let mut rows: Vec<KeyRow> = found.items.iter().map(|k| row(k, now)).collect();
    mark_leaked(&state, &mut rows).await;
    let page = KeysList {
        layout: viewer.layout("API keys"),
        q: q.q.clone(),
        switch,
        environments: choices(current, &[("", "Both"), ("live", "Live"), ("test", "Test")]),
        kinds: choices(&q.kind, &[("", "Any kind"), ("sk", "Secret (sk)"), ("rk", "Restricted (rk)")]),
        statuses: choices(
            &q.status,
            &[("", "Any status"), ("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")],
        ),
        apps,
        keys: rows,
        newer,
        older,
        may_write: viewer.may("keys:write"),
        grid: grid(&state, None),
        plain_scopes: plain_scopes(&state).join(" "),
        expiry: expiry_choices(),
        app_names: state.web.apps.iter().map(|a| a.name.clone()).collect(),
    };
    render(&viewer, StatusCode::OK, &page)
}

pub(super) fn expiry_choices() -> Vec<Choice> {
    EXPIRY_CHOICES
        .iter()
        .map(|(v, l, _)| Choice { value: (*v).to_owned(), label: (*l).to_owned(), selected: v.is_empty() })
        .collect()
}

async fn create(State(state): St, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:write") {
        return r;
    }
    create_and_reveal(&state, &viewer, &fields, None, ("/dashboard/keys".into(), "Back to API keys".into())).await
}

/// One audit entry of a key's trail.
#[derive(Clone, Debug)]
pub(super) struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
}

/// `/dashboard/keys/{id}`.
#[derive(Debug, askama::Template)]
#[template(path = "dashboard/keys_show.html")]
pub(super) struct KeyPage {
    pub layout: Layout,
    pub key: KeyRow,
    pub may_write: bool,
    pub roll_choices: Vec<Choice>,
    pub audit: Vec<AuditRow>,
    pub charts: Vec<Chart>,
}

/// The key's own audit entries, newest first, read through the audit log's target index.
async fn key_audit(state: &AppState, id: &str) -> Result<Vec<AuditEntry>, StoreError> {
    let filter = AuditFilter { target: Some(id.to_owned()), ..Default::default() };
    let page = PageRequest { limit: KEY_AUDIT_SHOWN, starting_after: None };
    let found = state.store.search_audit(state.keys.workspace(), &filter, &page).await?;
    Ok(found.items.into_iter().filter(|e| e.target_type == "api_key").collect())
}

async fn show(State(state): St, viewer: Viewer, Path(id): Path<String>) -> Response {
    if let Err(r) = viewer.require("keys:read") {
        return r;
    }
    let record = match state.keys.get(&viewer.actor(), &id).await {
        Ok(r) => r,
        Err(e) => return service_failed(&viewer, e),
    };
    let audit = match key_audit(&state, &record.id).await {
        Ok(a) => a,
        Err(e) => return super::store_failed(&viewer, &e),
    };
    let now = Timestamp::now();
    let credential = UsageCredential { kind: CredentialKind::ApiKey, id: record.id.clone() };
    let mut charts = vec![];
    for (title, res, span) in [
        ("Requests per minute, last 24 hours", Resolution::Minute, 86_400_000),
        ("Requests per hour, last 30 days", Resolution::Hour, 30 * 86_400_000),
    ] {
        let to = res.floor(now).plus_millis(res.millis());
        let from = to.plus_millis(-span);
        match state.store.usage_series(UsageSubject::Credential(&credential), res, from, to).await {
            Ok(points) => charts.push(chart(title, &points)),
            Err(e) => return super::store_failed(&viewer, &e),
        }
    }
    let mut key = [row(&record, now)];
    mark_leaked(&state, &mut key).await;
    let [key] = key;
    let page = KeyPage {
        layout: viewer.layout(&format!("API key {}", if record.name.is_empty() { &record.id } else { &record.name })),
        key,
        may_write: viewer.may("keys:write") && record.revoked_at.is_none() && !record.is_expired(now),
        roll_choices: ROLL_CHOICES
            .iter()
            .map(|(v, l, _)| Choice { value: (*v).to_owned(), label: (*l).to_owned(), selected: *v == "24h" })
            .collect(),
        audit: audit
            .iter()
            .map(|e| AuditRow { at: short_time(e.at), actor: e.actor.clone(), action: e.action.clone() })
            .collect(),
        charts,
    };
    render(&viewer, StatusCode::OK, &page)
}

async fn roll(State(state): St, Path(id): Path<String>, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:write") {
        return r;
    }
    let choice = field(&fields, "old_key_expires");
    let Some((_, _, grace)) = ROLL_CHOICES.iter().find(|(v, _, _)| *v == choice) else {
        let m = viewer.message("Not accepted", "Choose when the old key stops working from the list.");
        return render(&viewer, StatusCode::BAD_REQUEST, &m);
    };
    let a = viewer.actor();
    // The successor has the old key's settings: the role must be able to hand them out.
    let old = match state.keys.get(&a, &id).await {
        Ok(k) => k,
        Err(e) => return service_failed(&viewer, e),
    };
    let as_new = NewKey {
        name: None,
        kind: old.kind,
        environment: old.environment,
        scopes: old.scopes.to_strings(),
        ip_allowlist: vec![],
        expires_at: None,
        app: None,
        rate_limit: None,
        metadata: Default::default(),
    };
    if let Err(text) = role_may_hand_out(&viewer, &as_new) {
        return render(&viewer, StatusCode::FORBIDDEN, &viewer.message("Not allowed", &text));
    }
    match state.keys.roll(&a, &viewer.meta, &id, *grace).await {
        Ok((rolled, secret)) => {
            let page = Revealed {
                layout: viewer.layout("Your rolled API key"),
                key: row(&rolled.new, Timestamp::now()),
                secret: secret.expose().to_owned(),
                note: if *grace == 0 {
                    "The old key stopped working now."
                } else {
                    "The old key keeps working until the time you chose."
                },
                back_href: format!("/dashboard/keys/{}", rolled.new.id),
                back_label: "Go to the new key".into(),
            };
            render(&viewer, StatusCode::OK, &page)
        }
        Err(e) => service_failed(&viewer, e),
    }
}

async fn revoke(State(state): St, Path(id): Path<String>, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:write") {
        return r;
    }
    let reason = field(&fields, "reason");
    let reason = (!reason.is_empty()).then(|| reason.to_owned());
    match state.keys.revoke(&viewer.actor(), &viewer.meta, &id, reason).await {
        Ok(k) => crate::web::redirect(StatusCode::SEE_OTHER, &format!("/dashboard/keys/{}", k.id)),
        Err(e) => service_failed(&viewer, e),
    }
}

async fn bulk_revoke(State(state): St, form: Form<Fields>) -> Response {
    let Form { viewer, fields } = form;
    if let Err(r) = viewer.require("keys:write") {
        return r;
    }
    let ids: Vec<&str> = fields.iter().filter(|(k, _)| k == "ids").map(|(_, v)| v.as_str()).collect();
    if ids.is_empty() {
        let m = viewer.message("Nothing chosen", "Tick the keys to revoke first.");
        return render(&viewer, StatusCode::BAD_REQUEST, &m);
    }
    if ids.len() > BULK_LIMIT {
        let text = format!("At most {BULK_LIMIT} keys can be revoked at once.");
        return render(&viewer, StatusCode::BAD_REQUEST, &viewer.message("Too many", &text));
    }
    let a = viewer.actor();
    for id in ids {
        if let Err(e) = state.keys.revoke(&a, &viewer.meta, id, Some("bulk revoke".into())).await {
            return service_failed(&viewer, e);
        }
    }
    crate::web::redirect(StatusCode::SEE_OTHER, "/dashboard/keys?status=revoked")
}

#[cfg(test)]
mod tests;
