//! The dashboard's Apps and API keys pages (SPEC §12) over real HTTP: each role signed in through
//! the sign-in form, every POST action as a role × action table checked against storage afterwards,
//! the one-time secret, the decision explainer, and hostile input.

use std::time::Duration;

use gatehouse_core::{Environment, Timestamp};
use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditEntry, KeyStore, UserRecord, UserStore};
use reqwest::StatusCode;

use crate::gateway::Gw;
use crate::{rk, story};

const PASSWORD: &str = "correct horse battery staple";
/// The roles storage holds today. admin, developer and viewer need migration 0014 (the users work of
/// issue 13); their rows join this table with it. Until then the handlers' decisions for every role are
/// the unit tests in `src/dashboard/keys.rs`.
const ROLES: [&str; 5] = ["owner", "admin", "developer", "viewer", "member"];

/// A browser with its own cookie jar, signed in to the control plane.
struct Person {
    client: reqwest::Client,
    base: String,
}

impl Person {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let r = self.client.post(format!("{}{path}", self.base)).form(form).send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }

    /// The form token of a dashboard page (every page has the sign-out form, even the 403 page).
    async fn csrf(&self) -> String {
        csrf_of(&self.get("/dashboard/apps").await.1)
    }
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Adds a user of `role` straight to storage (the users service creates owners and members only).
async fn add_user(gw: &Gw, role: &str) -> String {
    add_named(gw, role, role).await
}

async fn add_named(gw: &Gw, name: &str, role: &str) -> String {
    let email = format!("{name}@example.com");
    let now = Timestamp::now();
    let user = UserRecord {
        id: format!("usr_{name}{}", now.millis()),
        workspace: "default".into(),
        email: email.clone(),
        password_hash: gatehouse_services::users::hash_password(PASSWORD),
        role: role.into(),
        created_at: now,
        disabled_at: None,
    };
    let audit = AuditEntry {
        id: format!("aud_{name}{}", now.millis()),
        workspace: "default".into(),
        environment: None,
        at: now,
        actor: "test".into(),
        action: "user.created".into(),
        target_type: "user".into(),
        target_id: user.id.clone(),
        request_id: None,
        ip: None,
        details: serde_json::json!({}),
    };
    gw.cp.store.insert_user(&user, &audit).await.unwrap();
    email
}

async fn sign_in(gw: &Gw, email: &str) -> Person {
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let p = Person { client, base: gw.cp.url("") };
    let (_, html) = p.get("/login").await;
    let (status, _, _) = p.post("/login", &[("email", email), ("password", PASSWORD), ("csrf", &csrf_of(&html))]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{email} signs in");
    p
}

async fn start(b: Backend) -> Gw {
    Gw::start(b, None, Duration::from_secs(5)).await
}

/// A restricted key for app `shop`, made as the CLI would.
async fn shop_key(gw: &Gw) -> (gatehouse_core::KeyRecord, String) {
    let mut new = rk(Environment::Live, &["orders:read"]);
    new.app = Some("shop".into());
    gw.cp.cli_key(new).await
}

async fn key(gw: &Gw, id: &str) -> gatehouse_core::KeyRecord {
    gw.cp.store.key_by_id("default", id).await.unwrap().unwrap()
}

fn allowed(role: &str) -> bool {
    matches!(role, "owner" | "admin" | "developer")
}

story!(every_key_action_is_allowed_or_refused_by_role_and_a_refusal_changes_nothing);
async fn every_key_action_is_allowed_or_refused_by_role_and_a_refusal_changes_nothing(b: Backend) {
    let gw = start(b).await;
    for role in ROLES {
        let email = add_user(&gw, role).await;
        let p = sign_in(&gw, &email).await;
        let reads = if role == "member" { StatusCode::FORBIDDEN } else { StatusCode::OK };
        for page in ["/dashboard/apps", "/dashboard/apps/shop", "/dashboard/keys"] {
            let (status, html) = p.get(page).await;
            assert_eq!(status, reads, "{role} GET {page}");
            if role == "member" {
                assert!(!html.contains("shop"), "a member sees nothing of the apps");
            }
        }
        let csrf = p.csrf().await;

        // Create new API key on the app's Configuration page.
        let before = gw.cp.key_count().await;
        let (status, _, html) = p
            .post(
                "/dashboard/apps/shop/keys",
                &[
                    ("csrf", &csrf),
                    ("name", "from the dashboard"),
                    ("kind", "rk"),
                    ("scope.orders", "read"),
                    ("expires", ""),
                ],
            )
            .await;
        if allowed(role) {
            assert_eq!(status, StatusCode::OK, "{role} create: {html}");
            assert!(html.contains("Secret key"), "{role}: the secret is shown");
            assert_eq!(gw.cp.key_count().await, before + 1, "{role} created a key");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} create");
            assert_eq!(gw.cp.key_count().await, before, "{role} created nothing");
        }

        // Create on the keys page (rk, with an expiry, an allowlist and a rate limit).
        let before = gw.cp.key_count().await;
        let (status, _, _) = p
            .post(
                "/dashboard/keys",
                &[
                    ("csrf", &csrf),
                    ("name", "grid"),
                    ("kind", "rk"),
                    ("environment", "test"),
                    ("scope.keys", "read"),
                    ("scopes", "read_customers"),
                    ("ip_allowlist", "10.0.0.0/8"),
                    ("expires", "7d"),
                    ("rate_limit", "60"),
                    ("app", ""),
                ],
            )
            .await;
        let expected = if allowed(role) { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(status, expected, "{role} create on the keys page");
        assert_eq!(gw.cp.key_count().await, before + usize::from(allowed(role)), "{role}");

        // Roll.
        let (old, _) = shop_key(&gw).await;
        let (status, _, html) =
            p.post(&format!("/dashboard/keys/{}/roll", old.id), &[("csrf", &csrf), ("old_key_expires", "1h")]).await;
        let rolled = key(&gw, &old.id).await.rolled_to;
        if allowed(role) {
            assert_eq!(status, StatusCode::OK, "{role} roll: {html}");
            assert!(html.contains("Secret key") && rolled.is_some(), "{role} rolled");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} roll");
            assert_eq!(rolled, None, "{role} rolled nothing");
        }

        // Revoke.
        let (k, _) = shop_key(&gw).await;
        let (status, loc, _) = p.post(&format!("/dashboard/keys/{}/revoke", k.id), &[("csrf", &csrf)]).await;
        let revoked = key(&gw, &k.id).await.revoked_at.is_some();
        if allowed(role) {
            assert_eq!(
                (status, loc.as_str(), revoked),
                (StatusCode::SEE_OTHER, &*format!("/dashboard/keys/{}", k.id), true)
            );
        } else {
            assert_eq!((status, revoked), (StatusCode::FORBIDDEN, false), "{role} revoke");
        }

        // Bulk revoke.
        let (a, _) = shop_key(&gw).await;
        let (c, _) = shop_key(&gw).await;
        let (status, _, _) = p.post("/dashboard/keys/revoke", &[("csrf", &csrf), ("ids", &a.id), ("ids", &c.id)]).await;
        let both = [key(&gw, &a.id).await.revoked_at.is_some(), key(&gw, &c.id).await.revoked_at.is_some()];
        if allowed(role) {
            assert_eq!((status, both), (StatusCode::SEE_OTHER, [true, true]), "{role} bulk revoke");
        } else {
            assert_eq!((status, both), (StatusCode::FORBIDDEN, [false, false]), "{role} bulk revoke");
        }
    }
}

story!(a_member_may_not_create_any_key);
async fn a_member_may_not_create_any_key(b: Backend) {
    let gw = start(b).await;
    let p = sign_in(&gw, &add_user(&gw, "member").await).await;
    let csrf = p.csrf().await;
    let before = gw.cp.key_count().await;
    for form in [
        vec![("kind", "sk"), ("environment", "live")],
        vec![("kind", "rk"), ("environment", "live"), ("scope.users", "read")],
        vec![("kind", "rk"), ("environment", "live"), ("scope.audit", "write")],
    ] {
        let mut f = vec![("csrf", csrf.as_str()), ("name", "x"), ("expires", "")];
        f.extend(form.clone());
        let (status, _, _) = p.post("/dashboard/keys", &f).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form:?}");
    }
    assert_eq!(gw.cp.key_count().await, before);
}

story!(the_secret_is_shown_once_and_the_new_key_opens_the_app_until_revoked);
async fn the_secret_is_shown_once_and_the_new_key_opens_the_app_until_revoked(b: Backend) {
    let gw = start(b).await;
    let p = sign_in(&gw, &add_user(&gw, "owner").await).await;
    let csrf = p.csrf().await;
    let (status, _, html) = p
        .post("/dashboard/apps/shop/keys", &[("csrf", &csrf), ("name", "deta"), ("kind", "sk"), ("expires", "")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let field = html.split("id=\"secret-key\"").nth(1).expect("the Secret key field");
    let secret = field.split("value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(secret.starts_with("gth_sk_live_"), "{secret}");
    let (status, _, _) = gw.get("/orders/1", &[("x-space-app-key", &secret)]).await;
    assert_eq!(status, 200, "the new key opens the app");
    let stored = gw.cp.store.key_by_hash(&gatehouse_core::KeyHash::of(&secret)).await.unwrap().unwrap();
    assert_eq!((stored.app.as_deref(), stored.environment), (Some("shop"), Environment::Live));
    for page in ["/dashboard/apps/shop", "/dashboard/keys", &format!("/dashboard/keys/{}", stored.id)] {
        let (status, html) = p.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(!html.contains(&secret), "{page} shows the secret again");
        assert!(html.contains(&stored.last4), "{page} lists the key");
        // Shown masked exactly as everywhere else (`gth_sk_live_4eC3…ab12`), one ellipsis.
        let masked = gatehouse_core::apikey::mask(&secret);
        assert!(html.contains(&masked), "{page} shows {masked}");
        assert!(!html.contains("……"), "{page} doubles the ellipsis");
    }
    let (status, _, _) = p.post(&format!("/dashboard/keys/{}/revoke", stored.id), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = gw.get("/orders/1", &[("x-space-app-key", &secret)]).await;
    assert_eq!(status, 401, "a revoked key is refused at once on this node");
}

story!(the_explainer_runs_the_gateways_decision_and_never_echoes_the_credential);
async fn the_explainer_runs_the_gateways_decision_and_never_echoes_the_credential(b: Backend) {
    let gw = start(b).await;
    let p = sign_in(&gw, &add_user(&gw, "owner").await).await;
    let csrf = p.csrf().await;
    let (_, secret) = shop_key(&gw).await;
    // An OAuth access token (client_credentials) holding orders:read, as the gateway would take it.
    let (status, client) =
        crate::authority::register(&gw.cp, &gw.cp.admin, serde_json::json!({"scopes": ["orders:read"], "app": "shop"}))
            .await;
    assert_eq!(status, StatusCode::OK, "{client}");
    let (cid, csecret) = (client["id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let token = crate::authority::cc_token(&gw.cp, cid, csecret, "orders:read").await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let unknown = format!("{}x", &token[..token.len() - 1]);
    // (method, path, credential) → what the answer says.
    let rows: [(&str, &str, &str, &str); 10] = [
        ("GET", "/ping", "", "forwarded to the micro with no credential check"),
        ("GET", "/orders/1", "", "401 missing_credentials"),
        ("GET", "/orders/1", &secret, "forwarded: the key"),
        ("POST", "/orders/1", &secret, "403 insufficient_scope"),
        ("GET", "/api/x/..%2F..%2Fetc", "", "400 ambiguous_path"),
        ("GET", "/nokeys/x", &secret, "401: API keys are not accepted by this micro"),
        ("GET", "/orders/1", &token, "forwarded: an OAuth access token of the client"),
        ("POST", "/orders/1", &token, "403 insufficient_scope"),
        ("GET", "/orders/1", &unknown, "401 invalid_token"),
        ("GET", "/orders/1", "not-a-token-at-all", "401 invalid_token"),
    ];
    for (method, path, credential, answer) in rows {
        let (status, _, html) = p
            .post(
                "/dashboard/apps/shop/explain",
                &[("csrf", &csrf), ("method", method), ("path", path), ("credential", credential)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{method} {path}");
        assert!(html.contains(answer), "{method} {path}: expected {answer:?} in\n{html}");
        assert!(secret.is_empty() || !html.contains(&secret), "the credential is never echoed");
        assert!(!html.contains(&token) && !html.contains(&unknown), "no access token is echoed");
    }
}

story!(the_explainer_says_whether_the_access_policy_lets_a_user_in_and_why);
async fn the_explainer_says_whether_the_access_policy_lets_a_user_in_and_why(b: Backend) {
    use gatehouse_core::access::{AccessPolicy, PolicyLists};
    let gw = start(b).await;
    let owner = add_user(&gw, "owner").await;
    let p = sign_in(&gw, &owner).await;
    let csrf = p.csrf().await;
    let member = add_named(&gw, "grace", "member").await;
    let explain = |user: String| {
        let (p, csrf) = (&p, csrf.clone());
        async move {
            let form = [("csrf", csrf.as_str()), ("method", "GET"), ("path", "/orders/1"), ("user", user.as_str())];
            let (status, _, html) = p.post("/dashboard/apps/shop/explain", &form).await;
            assert_eq!(status, StatusCode::OK);
            html
        }
    };
    // No policy: the page says so, and every enabled user gets in.
    let (_, page) = p.get("/dashboard/apps/shop").await;
    assert!(page.contains("Every enabled user"), "{page}");
    assert!(explain(member.clone()).await.contains("allowed: the app has no access policy"));
    // Every test user is @example.com: the domain listed is another one, so roles decide.
    let lists = PolicyLists { domains: vec!["example.org".into()], roles: vec!["owner".into()], ..Default::default() };
    let policy = std::sync::Arc::new(AccessPolicy::parse(&lists).unwrap());
    gw.cp.state.access.replace([("shop".to_owned(), policy)].into());
    let (_, page) = p.get("/dashboard/apps/shop").await;
    assert!(page.contains("<li>Domains: example.org</li><li>Roles: owner</li>"), "{page}");
    let (_, list) = p.get("/dashboard/apps").await;
    assert!(list.contains("<li>Domains: example.org</li>"), "{list}");
    let rows = [
        (owner.clone(), "allowed: the role `owner` is listed in `roles`"),
        (member.clone(), "refused: the account matches none of the app&#39;s emails, domains, roles or groups"),
        (member.clone(), "403 app_not_allowed"),
        ("nobody@example.com".to_owned(), "no user has the email `nobody@example.com`"),
        ("<script>@example.com".to_owned(), "no user has the email `&#60;script&#62;@example.com`"),
    ];
    for (user, want) in rows {
        let html = explain(user.clone()).await;
        assert!(html.contains(want), "{user}: expected {want:?} in\n{html}");
        assert!(!html.contains("<script>@"), "escaped");
    }
}

story!(hostile_posts_are_refused_and_change_nothing);
async fn hostile_posts_are_refused_and_change_nothing(b: Backend) {
    let gw = start(b).await;
    let owner = sign_in(&gw, &add_user(&gw, "owner").await).await;
    let other = sign_in(&gw, &add_named(&gw, "second-owner", "owner").await).await;
    let csrf = owner.csrf().await;
    let foreign = other.csrf().await;
    let (k, _) = shop_key(&gw).await;
    let revoke = format!("/dashboard/keys/{}/revoke", k.id);
    for (who, token) in [("no token", ""), ("wrong token", "0000"), ("another session's token", foreign.as_str())] {
        let (status, _, _) = owner.post(&revoke, &[("csrf", token)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
    }
    assert_eq!(key(&gw, &k.id).await.revoked_at, None, "nothing was revoked");
    let before = gw.cp.key_count().await;
    let huge = "x".repeat(300 * 1024);
    let (status, _, _) = owner.post("/dashboard/keys", &[("csrf", &csrf), ("name", &huge), ("kind", "sk")]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let long = "n".repeat(1000);
    let bad_forms: [&[(&str, &str)]; 6] = [
        &[("name", &long), ("kind", "sk"), ("environment", "live"), ("expires", "")],
        &[("name", "x"), ("kind", "xk"), ("environment", "live"), ("expires", "")],
        &[("name", "x"), ("kind", "rk"), ("environment", "live"), ("expires", "")],
        &[("name", "x"), ("kind", "rk"), ("environment", "live"), ("expires", ""), ("scope.keys", "all")],
        &[("name", "x"), ("kind", "sk"), ("environment", "live"), ("expires", "forever")],
        &[("name", "x"), ("kind", "sk"), ("environment", "live"), ("expires", ""), ("ip_allowlist", "<script>")],
    ];
    for form in bad_forms {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(form);
        let (status, _, html) = owner.post("/dashboard/keys", &f).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert!(!html.contains("<script>"), "input is escaped");
    }
    assert_eq!(gw.cp.key_count().await, before, "no key was created");
    for id in ["key_nope", "../etc/passwd", "%3Cscript%3E"] {
        let (status, html) = owner.get(&format!("/dashboard/keys/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert!(!html.contains("<script>"));
        let (status, _, _) = owner.post(&format!("/dashboard/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }
    let (status, _) = owner.get("/dashboard/apps/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ids: Vec<(&str, &str)> = std::iter::repeat_n(("ids", k.id.as_str()), 501).collect();
    let mut f = vec![("csrf", csrf.as_str())];
    f.extend(ids);
    let (status, _, _) = owner.post("/dashboard/keys/revoke", &f).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too many ids at once");
    assert_eq!(key(&gw, &k.id).await.revoked_at, None);
}

/// The key ids a list page links to, in page order.
fn listed_ids(html: &str) -> Vec<String> {
    html.split("<a href=\"/dashboard/keys/key_").skip(1).map(|s| format!("key_{}", &s[..26])).collect()
}

/// The href of the pager link labelled `label` (`Newer` / `Older`), unescaped.
fn pager_link(html: &str, label: &str) -> Option<String> {
    let rel = if label == "Newer" { "prev" } else { "next" };
    let end = html.find(&format!("\" rel=\"{rel}\">{label}</a>"))?;
    let start = html[..end].rfind("<a href=\"")? + 9;
    Some(html[start..end].replace("&#38;", "&"))
}

story!(the_key_list_filters_in_storage_and_pages_both_ways_with_the_filter_kept);
async fn the_key_list_filters_in_storage_and_pages_both_ways_with_the_filter_kept(b: Backend) {
    let gw = start(b).await;
    let p = sign_in(&gw, &add_user(&gw, "viewer").await).await;
    let mut shop_rk = vec![];
    for _ in 0..105 {
        shop_rk.push(shop_key(&gw).await.0.id);
    }
    let mut other = rk(Environment::Live, &["orders:read"]);
    other.name = Some("Needle 100%_off".into());
    let (needle, _) = gw.cp.cli_key(other).await;
    gw.cp.cli_key(crate::sk(Environment::Test)).await;
    // Newest first is id order (ids are time-sortable; keys made in the same millisecond go by the
    // random rest of the id).
    shop_rk.sort();
    shop_rk.reverse();

    let (status, html) = p.get("/dashboard/keys?app=shop&kind=rk&status=active").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_ids(&html), shop_rk[..100], "the newest hundred of the app's keys");
    assert_eq!(pager_link(&html, "Newer"), None);
    let older = pager_link(&html, "Older").expect("an Older link");
    assert!(older.contains("app=shop") && older.contains("kind=rk") && older.contains("status=active"), "{older}");
    assert!(older.contains(&format!("after={}", shop_rk[99])), "{older}");

    let (status, html) = p.get(&older).await;
    assert_eq!(status, StatusCode::OK, "{older}: {html}");
    assert_eq!(listed_ids(&html), shop_rk[100..], "the rest, none repeated");
    assert_eq!(pager_link(&html, "Older"), None);
    let newer = pager_link(&html, "Newer").expect("a Newer link");
    let (_, html) = p.get(&newer).await;
    assert_eq!(listed_ids(&html), shop_rk[..100], "Newer leads back to the first page");

    // Search: any letter case, pattern characters literally, across name, id and prefix…last4.
    let masked = format!("{}{}", needle.display_prefix, needle.last4);
    for q in ["needle", "NEEDLE 100%25_", &needle.id, &masked] {
        let (status, html) = p.get(&format!("/dashboard/keys?q={q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert_eq!(listed_ids(&html), std::slice::from_ref(&needle.id), "{q}");
    }
    let (_, html) = p.get("/dashboard/keys?environment=test").await;
    assert_eq!(listed_ids(&html).len(), 1, "the live/test switch");
    for q in ["%25", "1%25o", "'%20OR%20'1'='1"] {
        let (status, html) = p.get(&format!("/dashboard/keys?q={q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert!(listed_ids(&html).len() <= 1, "{q} is no wildcard");
    }

    // What no list can be filtered by is refused in words, never a 500.
    let long = "a".repeat(201);
    for bad in [
        "q=%00".to_owned(),
        "q=a%01b".to_owned(),
        format!("q={long}"),
        "kind=xk".to_owned(),
        "status=gone".to_owned(),
        "environment=prod".to_owned(),
        "after=key_nope".to_owned(),
        "before=%27%20OR%201%3D1".to_owned(),
        format!("after={}&before={}", shop_rk[0], shop_rk[1]),
        "app=%00".to_owned(),
    ] {
        let (status, html) = p.get(&format!("/dashboard/keys?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!html.contains("<script>"));
    }
    assert!(!gatehouse_store::Store::known_down(&gw.cp.store), "no hostile filter reached storage as an error");
}
