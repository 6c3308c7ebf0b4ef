//! The handlers' role decisions for every role of SPEC §12, and snapshots of the Apps and API keys
//! pages (`UPDATE_EXPECT=1 cargo test -p gatehouse-server dashboard` rewrites them). Every
//! interpolated field holds a hostile value to show it comes out escaped.

use askama::Template;
use expect_test::expect_file;
use gatehouse_core::{Environment, KeyKind, Timestamp};
use gatehouse_services::keys::NewKey;
use gatehouse_store::usage::{UsageCounts, UsagePoint};
use gatehouse_store::UserRecord;

use super::super::apps::{AppRow, AppsList, Configuration, Explained, MicroRow};
use super::super::usage::chart;
use super::super::Viewer;
use super::*;

const HOSTILE: &str = r#"<script>"'&"#;
const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn viewer(role: &str) -> Viewer {
    Viewer {
        user: UserRecord {
            id: "usr_1".into(),
            workspace: "default".into(),
            email: HOSTILE.into(),
            password_hash: String::new(),
            role: role.into(),
            created_at: Timestamp(0),
            disabled_at: None,
        },
        session: gatehouse_core::KeyHash([0; 32]),
        csrf: CSRF.into(),
        fresh_csrf_cookie: None,
        https: false,
        path: "/dashboard/keys".into(),
        namespace: gatehouse_core::Namespace::default(),
        meta: gatehouse_services::audit::RequestMeta::default(),
        csp: crate::dashboard::csp(&[]),
    }
}

fn new_key(kind: KeyKind, scopes: &[&str]) -> NewKey {
    NewKey {
        name: None,
        kind,
        environment: Environment::Live,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ip_allowlist: vec![],
        expires_at: None,
        app: None,
        rate_limit: None,
        metadata: Default::default(),
    }
}

#[test]
fn each_role_may_write_keys_and_hand_out_only_what_it_may_use() {
    // (role, may keys:write, sk, rk hello:read, rk keys:write, rk users:read, rk audit:write)
    let table = [
        ("owner", true, true, true, true, true, true),
        ("admin", true, true, true, true, true, true),
        ("developer", true, false, true, true, false, false),
        ("viewer", false, false, true, false, true, false),
        ("member", false, false, true, false, false, false),
    ];
    for (role, write, sk, app, keys, users, audit) in table {
        let v = viewer(role);
        assert_eq!(v.may("keys:write"), write, "{role} keys:write");
        assert_eq!(v.require("keys:write").is_ok(), write, "{role} require keys:write");
        assert_eq!(v.may("keys:read"), role != "member", "{role} keys:read");
        let rows = [
            (new_key(KeyKind::Secret, &[]), sk),
            (new_key(KeyKind::Restricted, &["hello:read"]), app),
            (new_key(KeyKind::Restricted, &["keys:write"]), keys),
            (new_key(KeyKind::Restricted, &["users:read"]), users),
            (new_key(KeyKind::Restricted, &["read_customers", "audit:write"]), audit),
        ];
        for (new, allowed) in rows {
            assert_eq!(role_may_hand_out(&v, &new).is_ok(), allowed, "{role} {:?} {:?}", new.kind, new.scopes);
        }
    }
}

fn pairs(items: &[(&str, &str)]) -> Fields {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn the_create_form_becomes_a_new_key_or_a_plain_refusal() {
    let now = Timestamp(1_000_000);
    let k = new_key_from(
        &pairs(&[
            ("name", " shop "),
            ("kind", "rk"),
            ("environment", "test"),
            ("scope.keys", "write"),
            ("scope.hello", "none"),
            ("scope.orders", "read"),
            ("scopes", "read_customers, write_orders"),
            ("ip_allowlist", "10.0.0.0/8 192.0.2.1"),
            ("expires", "1d"),
            ("rate_limit", "120"),
            ("app", "hello"),
        ]),
        None,
        now,
    )
    .unwrap();
    assert_eq!(k.name.as_deref(), Some("shop"));
    assert_eq!((k.kind, k.environment, k.app.as_deref()), (KeyKind::Restricted, Environment::Test, Some("hello")));
    assert_eq!(k.scopes, ["keys:write", "orders:read", "read_customers", "write_orders"]);
    assert_eq!(k.ip_allowlist, ["10.0.0.0/8", "192.0.2.1"]);
    assert_eq!(k.expires_at, Some(now.plus_millis(86_400_000)));
    assert_eq!(k.rate_limit, Some(RateLimitOverride { limit: 120, window_secs: 60 }));
    // The app's Configuration page forces the app and its environment.
    let forced = new_key_from(
        &pairs(&[("kind", "sk"), ("environment", "test"), ("app", "other"), ("expires", "")]),
        Some(("hello", Environment::Live)),
        now,
    )
    .unwrap();
    assert_eq!(
        (forced.app.as_deref(), forced.environment, forced.expires_at),
        (Some("hello"), Environment::Live, None)
    );
    for bad in [
        &[("kind", "xk"), ("environment", "live"), ("expires", "")][..],
        &[("kind", "sk"), ("environment", "prod"), ("expires", "")],
        &[("kind", "rk"), ("environment", "live"), ("expires", "")],
        &[("kind", "rk"), ("environment", "live"), ("expires", ""), ("scope.keys", "admin")],
        &[("kind", "sk"), ("environment", "live"), ("expires", "forever")],
        &[("kind", "sk"), ("environment", "live"), ("expires", ""), ("rate_limit", "-1")],
    ] {
        assert!(new_key_from(&pairs(bad), None, now).is_err(), "{bad:?}");
    }
}

fn render(t: &impl Template) -> String {
    let html = t.render().unwrap();
    assert!(!html.contains("<script>"), "a hostile value came out unescaped:\n{html}");
    html
}

fn key_row() -> KeyRow {
    KeyRow {
        id: "key_01".into(),
        name: HOSTILE.into(),
        masked: "gth_rk_live_4eC3…ab12".into(),
        kind: "rk",
        environment: "live",
        app: HOSTILE.into(),
        status: "active",
        created: "2026-12-01 21:10 UTC".into(),
        last_used: "never".into(),
        scopes: HOSTILE.into(),
        ip_allowlist: "any address".into(),
        expires: "never".into(),
        rate_limit: "the default".into(),
        rolled_to: String::new(),
        leaked: String::new(),
    }
}

fn app_row() -> AppRow {
    AppRow {
        name: HOSTILE.into(),
        href: "/dashboard/apps/%3Cscript%3E".into(),
        environment: "live",
        hosts: HOSTILE.into(),
        micros: vec![MicroRow {
            name: HOSTILE.into(),
            mount: "/".into(),
            public: HOSTILE.into(),
            needs: "a signed-in session".into(),
            api_keys: true,
            route_scopes: vec![(HOSTILE.into(), HOSTILE.into())],
        }],
        counts: UsageCounts { allowed: 5, unauthorized: 4, forbidden: 3, rate_limited: 2 },
        access: vec![("Domains", HOSTILE.into()), ("Groups", HOSTILE.into())],
    }
}

fn grid_rows() -> Vec<GridRow> {
    vec![GridRow { resource: HOSTILE.into(), field: "scope.x".into(), id: "scope-0".into() }]
}

#[test]
fn apps_list() {
    let v = viewer("owner");
    let every = AppRow { access: vec![], ..app_row() };
    let page = AppsList { layout: v.layout("Apps"), apps: vec![app_row(), every] };
    expect_file!["../snapshots/apps_list.html"].assert_eq(&render(&page));
}

#[test]
fn apps_configuration() {
    let v = viewer("owner");
    let page = Configuration {
        layout: v.layout("Configuration"),
        app: app_row(),
        keys: vec![key_row()],
        newer: None,
        older: Some("/dashboard/keys?app=%3Cscript%3E&after=key_01".into()),
        may_write: true,
        grid: grid_rows(),
        expiry: expiry_choices(),
        explained: Some(Explained {
            method: "GET".into(),
            path: HOSTILE.into(),
            credential: "gth_sk_live_4eC3…ab12".into(),
            normalized: HOSTILE.into(),
            micro: HOSTILE.into(),
            relative: HOSTILE.into(),
            rule: HOSTILE.into(),
            answer: HOSTILE.into(),
            user: HOSTILE.into(),
            access: HOSTILE.into(),
        }),
        methods: vec![Choice { value: "GET".into(), label: "GET".into(), selected: true }],
    };
    expect_file!["../snapshots/apps_configuration.html"].assert_eq(&render(&page));
}

#[test]
fn keys_list() {
    let v = viewer("developer");
    let page = KeysList {
        layout: v.layout("API keys"),
        q: HOSTILE.into(),
        switch: vec![
            ("All".into(), "/dashboard/keys?q=%3C".into(), true),
            ("Live".into(), "/dashboard/keys".into(), false),
        ],
        environments: vec![Choice { value: HOSTILE.into(), label: HOSTILE.into(), selected: true }],
        kinds: vec![],
        statuses: vec![],
        apps: vec![],
        keys: vec![key_row()],
        newer: Some("/dashboard/keys?q=%3C&before=key_01".into()),
        older: Some("/dashboard/keys?q=%3C&after=key_02".into()),
        may_write: true,
        grid: grid_rows(),
        plain_scopes: HOSTILE.into(),
        expiry: expiry_choices(),
        app_names: vec![HOSTILE.into()],
    };
    expect_file!["../snapshots/keys_list.html"].assert_eq(&render(&page));
}

#[test]
fn keys_show() {
    let v = viewer("viewer");
    let p = |m: i64, a: u64| UsagePoint {
        at: Timestamp(m * 60_000),
        counts: UsageCounts { allowed: a, unauthorized: 1, forbidden: 0, rate_limited: 0 },
    };
    let page = KeyPage {
        layout: v.layout("API key"),
        key: KeyRow { rolled_to: HOSTILE.into(), status: "revoked", leaked: HOSTILE.into(), ..key_row() },
        may_write: true,
        roll_choices: vec![Choice { value: "now".into(), label: "Now".into(), selected: true }],
        audit: vec![AuditRow { at: "2026-12-01 21:10 UTC".into(), actor: HOSTILE.into(), action: HOSTILE.into() }],
        charts: vec![chart(HOSTILE, &[p(0, 3), p(1, 0), p(2, 6)])],
    };
    expect_file!["../snapshots/keys_show.html"].assert_eq(&render(&page));
}

#[test]
fn keys_revealed() {
    let v = viewer("owner");
    let page = Revealed {
        layout: v.layout("Your new API key"),
        key: key_row(),
        secret: HOSTILE.into(),
        note: "The old key stopped working now.",
        back_href: "/dashboard/keys".into(),
        back_label: HOSTILE.into(),
    };
    expect_file!["../snapshots/keys_revealed.html"].assert_eq(&render(&page));
}
