//! `/dashboard/audit`: the audit log, newest first, narrowed by actor, action, target, environment and
//! time range from a GET form (so the filters live in the URL), one page at a time with an "Older"
//! link that carries the cursor. Entries hold no secret (the services mask what they write); their
//! details are rendered as escaped JSON text.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use gatehouse_core::id::looks_like;
use gatehouse_core::{Environment, Timestamp};
use gatehouse_store::{AuditEntry, AuditFilter, PageRequest};

use super::{render, Layout, Viewer};
use crate::state::AppState;

/// Entries per page.
const PAGE_SIZE: u32 = 50;
/// The longest filter value accepted (ids and action names are far shorter).
const MAX_FILTER_LEN: usize = 200;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/dashboard/audit", get(audit_page))
}

/// The filter form's fields, as they arrive in the query string.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub environment: String,
    /// RFC 3339, or a `datetime-local` value (`2026-12-01T21:00`) read as UTC.
    pub since: String,
    pub until: String,
    /// The id of the last entry of the previous page.
    pub after: String,
}

impl AuditQuery {
    /// The store's filter, or what is wrong with the form.
    fn filter(&self) -> Result<AuditFilter, String> {
        for (name, v) in [
            ("Actor", &self.actor),
            ("Action", &self.action),
            ("Target", &self.target),
            ("From", &self.since),
            ("Until", &self.until),
        ] {
            if v.len() > MAX_FILTER_LEN {
                return Err(format!("{name} is longer than {MAX_FILTER_LEN} characters."));
            }
            // No id, action or time holds one, and PostgreSQL refuses a NUL byte in text as an error.
            if v.chars().any(char::is_control) {
                return Err(format!("{name} must not contain control characters."));
            }
        }
        let text = |v: &str| Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
        let environment = match self.environment.as_str() {
            "" => None,
            e => Some(Environment::parse(e).ok_or("Environment must be live or test.")?),
        };
        Ok(AuditFilter {
            environment,
            actor: text(&self.actor),
            action: text(&self.action),
            target: text(&self.target),
            since: parse_time("From", &self.since)?,
            until: parse_time("Until", &self.until)?,
        })
    }

    /// This query with another cursor, as a URL of this page.
    fn href(&self, after: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("environment", &self.environment),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(after) = after {
            q.append_pair("after", after);
        }
        let q = q.finish();
        if q.is_empty() {
            "/dashboard/audit".to_owned()
        } else {
            format!("/dashboard/audit?{q}")
        }
    }
}

/// A time filter: empty, RFC 3339, or a browser's `datetime-local` value (minutes or seconds), in UTC.
fn parse_time(name: &str, v: &str) -> Result<Option<Timestamp>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let candidates = [v.to_owned(), format!("{v}Z"), format!("{v}:00Z")];
    candidates
        .iter()
        .find_map(|c| Timestamp::parse_rfc3339(c).ok())
        .map(Some)
        .ok_or_else(|| format!("{name} must be a date and time such as 2026-12-01T21:00 (UTC)."))
}

/// One row of the table.
#[derive(Debug)]
pub(super) struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub environment: &'static str,
    pub ip: String,
    /// The details as JSON text (escaped by the template like every value).
    pub details: String,
}

impl From<&AuditEntry> for AuditRow {
    fn from(a: &AuditEntry) -> Self {
        AuditRow {
            at: a.at.to_rfc3339(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: if a.target_type.is_empty() {
                a.target_id.clone()
            } else {
                format!("{} {}", a.target_type, a.target_id)
            },
            environment: a.environment.map_or("", Environment::as_str),
            ip: a.ip.clone().unwrap_or_default(),
            details: serde_json::to_string(&a.details).unwrap_or_default(),
        }
    }
}

#[derive(Debug, askama::Template)]
#[template(path = "dashboard/audit_list.html")]
pub(super) struct AuditPage {
    pub layout: Layout,
    pub q: AuditQuery,
    pub error: Option<String>,
    pub entries: Vec<AuditRow>,
    /// The "Older" link, when more entries follow.
    pub older: Option<String>,
    /// The link back to the newest page, when this is not it.
    pub newest: Option<String>,
}

async fn audit_page(State(state): State<Arc<AppState>>, viewer: Viewer, RawQuery(raw): RawQuery) -> Response {
    if !viewer.may("audit:read") {
        return viewer.forbidden();
    }
    let layout = viewer.layout("Audit log");
    let q: AuditQuery = crate::web::from_query(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let after = Some(q.after.trim()).filter(|a| !a.is_empty());
    let checked = q.filter().and_then(|f| match after {
        Some(a) if !looks_like("aud", a) => Err("That page link is not valid; start from the newest entries.".into()),
        _ => Ok(f),
    });
    let filter = match checked {
        Ok(f) => f,
        Err(error) => {
            let page = AuditPage { layout, q, error: Some(error), entries: vec![], older: None, newest: None };
            return render(&viewer, StatusCode::BAD_REQUEST, &page);
        }
    };
    let request = PageRequest { limit: PAGE_SIZE, starting_after: after.map(str::to_owned) };
    let found = match state.store.search_audit(state.keys.workspace(), &filter, &request).await {
        Ok(found) => found,
        Err(e) => return super::store_failed(&viewer, &e),
    };
    let older = found.has_more.then(|| found.items.last().map(|a| q.href(Some(&a.id)))).flatten();
    let newest = after.is_some().then(|| q.href(None));
    let entries = found.items.iter().map(AuditRow::from).collect();
    render(&viewer, StatusCode::OK, &AuditPage { layout, q, error: None, entries, older, newest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_bounded_and_kept_in_links() {
        let q = AuditQuery {
            actor: " usr_a ".into(),
            action: "key.created".into(),
            since: "2026-12-01T21:00".into(),
            until: "2026-12-02T00:00:00Z".into(),
            ..Default::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.actor.as_deref(), Some("usr_a"));
        assert_eq!(f.action.as_deref(), Some("key.created"));
        assert_eq!(f.target, None);
        assert_eq!(f.since, Some(Timestamp::parse_rfc3339("2026-12-01T21:00:00Z").unwrap()));
        assert_eq!(f.until, Some(Timestamp::parse_rfc3339("2026-12-02T00:00:00Z").unwrap()));
        assert_eq!(
            q.href(Some("aud_1")),
            "/dashboard/audit?actor=+usr_a+&action=key.created&since=2026-12-01T21%3A00&until=2026-12-02T00%3A00%3A00Z&after=aud_1"
        );
        assert_eq!(AuditQuery::default().href(None), "/dashboard/audit");
        for bad in [
            AuditQuery { since: "yesterday".into(), ..Default::default() },
            AuditQuery { environment: "prod".into(), ..Default::default() },
            AuditQuery { actor: "a".repeat(MAX_FILTER_LEN + 1), ..Default::default() },
        ] {
            assert!(bad.filter().is_err(), "{bad:?}");
        }
    }

    /// What an attacker would like to see in a page unescaped.
    const HOSTILE: &str = r#"<script>"'&"#;

    fn layout(title: &str) -> Layout {
        Layout {
            title: title.to_owned(),
            email: HOSTILE.to_owned(),
            csrf: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
            nav: vec![crate::dashboard::NavLink { label: "Audit log", href: "/dashboard/audit", current: true }],
        }
    }

    #[test]
    fn audit_list_snapshot() {
        use askama::Template;
        let q = AuditQuery { actor: HOSTILE.into(), action: "key.created".into(), ..Default::default() };
        let entry = AuditEntry {
            id: "aud_01".into(),
            workspace: "default".into(),
            environment: Some(Environment::Live),
            at: Timestamp(1_764_622_800_000),
            actor: HOSTILE.into(),
            action: "key.created".into(),
            target_type: "api_key".into(),
            target_id: HOSTILE.into(),
            request_id: None,
            ip: Some("203.0.113.7".into()),
            details: serde_json::json!({"name": HOSTILE}),
        };
        let page = AuditPage {
            layout: layout("Audit log"),
            q: q.clone(),
            error: Some(HOSTILE.into()),
            entries: vec![AuditRow::from(&entry)],
            older: Some(q.href(Some("aud_01"))),
            newest: Some(q.href(None)),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"), "a hostile value came out unescaped:\n{html}");
        expect_test::expect_file!["snapshots/audit_list.html"].assert_eq(&html);
    }
}
