//! Access policies at the gateway (SPEC §15), on both backends: the groups given at sign-in travel
//! from the control-plane login through the one-time ticket to the app host's session, where the
//! policy judges them; public routes and API keys are not judged by it; a replaced table applies to
//! the next request of an existing session.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::access::{AccessPolicy, PolicyLists};
use gatehouse_services::access::PolicyTable;
use gatehouse_store::testing::Backend;
use gatehouse_store::{Store, UserRecord};
use serde_json::Value;

use crate::gateway::Gw;
use crate::story;

fn table(app: &str, lists: PolicyLists) -> PolicyTable {
    PolicyTable::from([(app.to_owned(), Arc::new(AccessPolicy::parse(&lists).unwrap()))])
}

/// Signs `user` in at the control plane with `groups` (as an identity provider's claim would give
/// them) and carries the login to the app host through its callback, as a browser does: answers the
/// app host's session cookie.
async fn app_session(gw: &Gw, user: &UserRecord, groups: &[&str]) -> String {
    let sessions = &gw.cp.state.sessions;
    let groups = groups.iter().map(|g| (*g).to_owned()).collect();
    let (_, login) = sessions.create_login(user, &gw.cp.state.web.cp_host, groups).await.unwrap();
    let (state, browser) = gatehouse_services::sessions::new_token();
    let ticket = sessions.issue_ticket(&login, &gw.host, &browser).await.unwrap();
    let (status, headers, _) = gw
        .get(
            &format!("/__gatehouse/callback?ticket={ticket}&return_to=/"),
            &[("cookie", &format!("gatehouse_state={state}"))],
        )
        .await;
    assert_eq!(status, 302, "the ticket opens an app session");
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("gatehouse_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .find(|v| !v.is_empty())
        .expect("an app session cookie")
}

story!(groups_from_the_sign_in_reach_the_app_session_and_the_policy_judges_them);
async fn groups_from_the_sign_in_reach_the_app_session_and_the_policy_judges_them(b: Backend) {
    let mut config = crate::test_config();
    config.access =
        table("shop", PolicyLists { groups: vec!["eng".into(), "/platform/ops".into()], ..Default::default() });
    let gw = Gw::start_with(b, None, Duration::from_secs(5), config).await;
    let users =
        gatehouse_services::users::Users::new(Arc::new(gw.cp.store.clone()) as Arc<dyn Store>, "default".into());
    let ada = users.create("ada@example.com", "correct horse battery", "member", "test").await.unwrap();
    let json = [("accept", "application/json")];
    let rows: [(&[&str], u16); 6] = [
        (&["ops", "eng"], 200),
        (&["/platform/ops"], 200),
        (&["ops"], 403),
        (&[], 403),
        (&["Eng"], 403),
        (&["eng "], 403),
    ];
    let mut refused = String::new();
    for (groups, want) in rows {
        let cookie = format!("gatehouse_session={}", app_session(&gw, &ada, groups).await);
        let (status, _, body) = gw.get("/orders/1", &[("cookie", &cookie), json[0]]).await;
        assert_eq!(status, want, "groups {groups:?}: {body}");
        if want == 403 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "app_not_allowed", "{body}");
            refused = cookie;
        } else {
            assert_eq!(gw.last_seen().1, "/orders/1", "through to the upstream");
        }
    }
    // Public routes are public whatever the policy; a refused session does not change that.
    assert_eq!(gw.get("/ping", &[]).await.0, 200);
    assert_eq!(gw.get("/ping", &[("cookie", &refused)]).await.0, 200);
    // A key restricted to the app is judged by its own restrictions only.
    let mut new = crate::rk(gatehouse_core::Environment::Live, &["orders:read"]);
    new.app = Some("shop".into());
    let (_, key) = gw.cp.cli_key(new).await;
    assert_eq!(gw.get("/orders/1", &[("x-space-app-key", &key)]).await.0, 200);
    // A new table reaches the refused session's next request: roles now, which Ada's member role is.
    gw.cp.state.access.replace(table("shop", PolicyLists { roles: vec!["member".into()], ..Default::default() }));
    assert_eq!(gw.get("/orders/1", &[("cookie", &refused), json[0]]).await.0, 200);
    // Another app's policy does not bind this one.
    gw.cp.state.access.replace(table("blog", PolicyLists { roles: vec!["owner".into()], ..Default::default() }));
    assert_eq!(gw.get("/orders/1", &[("cookie", &refused), json[0]]).await.0, 200);
}
