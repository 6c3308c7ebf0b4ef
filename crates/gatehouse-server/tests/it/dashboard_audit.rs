//! `/dashboard/audit` over real HTTP: who may read it, newest first, every filter from the URL, the
//! "Older" cursor, escaped details, no secret, and hostile queries answered 400 without a store error.

use gatehouse_core::{Environment, Timestamp};
use gatehouse_services::users::hash_password;
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditEntry, UserRecord, UserStore};
use reqwest::StatusCode;

use crate::{sk, story, TestApp};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A browser signed in at the control plane (its cookie jar holds the CSRF and session cookies).
pub(crate) struct Signed {
    pub client: reqwest::Client,
    pub base: String,
    pub user: UserRecord,
}

impl Signed {
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form to `path`; `(status, location, body)`.
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let r = self.client.post(format!("{}{path}", self.base)).form(form).send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }

    /// The form token of a dashboard page.
    pub(crate) async fn csrf(&self) -> String {
        // Any dashboard page carries it (a 403 page too: its layout has the sign-out form).
        let (_, html) = self.get("/dashboard/oauth-apps").await;
        csrf_of(&html)
    }
}

pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// Creates a user with `role` straight in storage and signs them in with a fresh browser.
pub(crate) async fn sign_in_as(app: &TestApp, role: &str) -> Signed {
    let now = Timestamp::now();
    let id = gatehouse_services::ids::new_id("usr", now);
    let user = UserRecord {
        id: id.clone(),
        workspace: "default".into(),
        email: format!("{role}-{}@example.com", &id[id.len() - 6..]).to_lowercase(),
        password_hash: hash_password(PASSWORD),
        role: role.into(),
        created_at: now,
        disabled_at: None,
    };
    let audit = AuditEntry {
        id: gatehouse_services::ids::new_id("aud", now),
        workspace: "default".into(),
        environment: None,
        at: now,
        actor: "cli".into(),
        action: "user.created".into(),
        target_type: "user".into(),
        target_id: id,
        request_id: None,
        ip: None,
        details: serde_json::json!({"role": role}),
    };
    app.store.insert_user(&user, &audit).await.unwrap();
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", app.addr);
    let login = client.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let r = client
        .post(format!("{base}/login"))
        .form(&[("email", user.email.as_str()), ("password", PASSWORD), ("csrf", &csrf_of(&login))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{role} signs in");
    Signed { client, base, user }
}

/// The `href` of the link whose text is `label`, `&amp;` decoded.
pub(crate) fn link(html: &str, label: &str) -> Option<String> {
    let end = html.find(&format!("\">{label}</a>"))?;
    let start = html[..end].rfind("href=\"")? + 6;
    let href = html[start..end].split('"').next()?;
    Some(href.replace("&#38;", "&").replace("&amp;", "&"))
}

story!(audit_log_roles_filters_and_pages);
async fn audit_log_roles_filters_and_pages(b: Backend) {
    let app = TestApp::new(b).await;
    let mut hostile = sk(Environment::Live);
    hostile.name = Some("<script>alert(1)</script>".into());
    let (hostile_key, hostile_secret) = app.cli_key(hostile).await;
    let mut ids = vec![];
    for _ in 0..55 {
        // Ids sort by time to the millisecond; a tick apart, their order is the order of creation.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        ids.push(app.cli_key(sk(Environment::Test)).await.0.id);
    }

    // Who may read: the owner; a member gets 403; nobody signed in goes to sign in. (Storage knows
    // only these two roles so far; the role table itself is `dashboard::role_may`'s unit test.)
    let owner = sign_in_as(&app, "owner").await;
    let (status, html) = owner.get("/dashboard/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("key.created"), "the owner sees entries");
    let (status, html) = sign_in_as(&app, "member").await.get("/dashboard/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!html.contains("key.created"), "a member sees no entry");
    let r = app.client.get(app.url("/dashboard/audit?actor=cli")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?return_to="));

    // Newest first, 50 a page, "Older" goes on from the cursor with the filters kept.
    let (status, first) = owner.get("/dashboard/audit?action=key.created").await;
    assert_eq!(status, StatusCode::OK);
    let pos = |html: &str, id: &str| html.find(id);
    assert!(pos(&first, &ids[54]).unwrap() < pos(&first, &ids[53]).unwrap(), "newest first");
    assert!(pos(&first, &ids[5]).is_some() && pos(&first, &ids[4]).is_none(), "50 on the first page");
    assert!(link(&first, "Newest").is_none());
    let older = link(&first, "Older").expect("an Older link");
    assert!(older.contains("action=key.created") && older.contains("after=aud_"), "{older}");
    let (status, second) = owner.get(&older).await;
    assert_eq!(status, StatusCode::OK);
    for id in &ids[..5] {
        assert!(second.contains(id.as_str()), "{id} on the second page");
    }
    assert!(second.contains(hostile_key.id.as_str()));
    assert!(!second.contains(ids[5].as_str()), "no entry on two pages");
    assert!(link(&second, "Older").is_none(), "the last page");
    assert_eq!(link(&second, "Newest").as_deref(), Some("/dashboard/audit?action=key.created"));

    // Each filter narrows: target, actor, action, environment, time range.
    let (_, html) = owner.get(&format!("/dashboard/audit?target={}", ids[7])).await;
    assert!(html.contains(ids[7].as_str()) && !html.contains(ids[8].as_str()));
    let (_, html) = owner.get(&format!("/dashboard/audit?actor={}", owner.user.id)).await;
    assert!(html.contains("No audit entries match."), "the owner has done nothing yet");
    let (_, html) = owner.get("/dashboard/audit?action=user.created").await;
    assert!(html.contains("user.created") && !html.contains("key.created</td>"));
    let (_, html) = owner.get("/dashboard/audit?environment=live").await;
    assert!(html.contains(hostile_key.id.as_str()) && !html.contains(ids[0].as_str()));
    let (_, html) = owner.get("/dashboard/audit?until=2000-01-01T00:00").await;
    assert!(html.contains("No audit entries match."));
    let (_, html) = owner.get("/dashboard/audit?since=2000-01-01T00:00&action=key.created").await;
    assert!(html.contains(ids[54].as_str()));

    // Details are escaped text; no secret anywhere.
    let (_, html) = owner.get(&format!("/dashboard/audit?target={}", hostile_key.id)).await;
    assert!(!html.contains("<script>alert"), "details are escaped");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
    assert!(!html.contains(&hostile_secret) && !html.contains(&app.admin), "no secret in the log");

    // Hostile queries: 400 with the reason, never a store error.
    let long = "a".repeat(10_000);
    for q in [
        "after=nonsense".to_owned(),
        "after=%27%20OR%201%3D1".to_owned(),
        "since=yesterday".to_owned(),
        "environment=prod".to_owned(),
        format!("actor={long}"),
    ] {
        let (status, html) = owner.get(&format!("/dashboard/audit?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(html.contains("role=\"alert\""), "{q}: the page says what is wrong");
    }
    let (status, html) = owner.get("/dashboard/audit?actor=%3Cscript%3E&action=%27%20OR%201%3D1%20--").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No audit entries match.") && !html.contains("<script>"));
}
