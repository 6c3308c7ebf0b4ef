//! Human-readable CLI output. Pinned by snapshot tests; `--json` is the format for scripts.

use std::fmt::Write;

use gatehouse_core::Timestamp;
use gatehouse_server::api::dto::{KeyOut, KeyWithSecret};

fn when(secs: Option<i64>) -> String {
    secs.map_or_else(|| "-".to_owned(), |s| Timestamp::from_unix_seconds(s).to_rfc3339())
}

fn kind(k: &KeyOut) -> &'static str {
    match k.kind {
        gatehouse_server::api::dto::Kind::Sk => "sk",
        gatehouse_server::api::dto::Kind::Rk => "rk",
    }
}

fn env(k: &KeyOut) -> &'static str {
    match k.environment {
        gatehouse_server::api::dto::Env::Live => "live",
        gatehouse_server::api::dto::Env::Test => "test",
    }
}

/// After create and roll: the secret, once, with a warning.
pub fn created(k: &KeyWithSecret) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Created {} key {} ({})", kind(&k.key), k.key.id, env(&k.key));
    let _ = writeln!(s);
    let _ = writeln!(s, "    {}", k.secret);
    let _ = writeln!(s);
    let _ = writeln!(s, "This secret is shown once. Store it now: Gatehouse keeps only its SHA-256.");
    s
}

/// One key in detail.
pub fn details(k: &KeyOut) -> String {
    let mut s = String::new();
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    let rows = [
        ("id", k.id.clone()),
        ("name", if k.name.is_empty() { "-".into() } else { k.name.clone() }),
        ("key", k.redacted.clone()),
        ("kind", kind(k).into()),
        ("environment", env(k).into()),
        ("status", k.status.into()),
        ("scopes", list(&k.scopes)),
        ("ip allowlist", list(&k.ip_allowlist)),
        ("app", k.app.clone().unwrap_or_else(|| "-".into())),
        ("rate limit", k.rate_limit.map_or("default".into(), |r| format!("{}/{}s", r.limit, r.window_secs))),
        ("expires", when(k.expires_at)),
        ("created", format!("{} by {}", when(Some(k.created_at)), k.created_by)),
        ("last used", when(k.last_used_at)),
        ("revoked", when(k.revoked_at)),
        ("rolled to", k.rolled_to.clone().unwrap_or_else(|| "-".into())),
    ];
    for (label, value) in rows {
        let _ = writeln!(s, "{label:<13}{value}");
    }
    s
}

/// Keys as a table.
pub fn table(keys: &[KeyOut], has_more: bool) -> String {
    if keys.is_empty() {
        return "No keys yet. Create one with: gatehouse keys create --name NAME\n".to_owned();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<30}  {:<20}  {:<4}  {:<4}  {:<7}  {:<22}  LAST USED",
        "ID", "NAME", "KIND", "ENV", "STATUS", "KEY"
    );
    for k in keys {
        let name: String = if k.name.is_empty() { "-".into() } else { k.name.chars().take(20).collect() };
        let _ = writeln!(
            s,
            "{:<30}  {:<20}  {:<4}  {:<4}  {:<7}  {:<22}  {}",
            k.id,
            name,
            kind(k),
            env(k),
            k.status,
            k.redacted,
            when(k.last_used_at)
        );
    }
    if has_more {
        let _ = writeln!(s, "More keys follow: --starting-after {}", keys.last().map(|k| k.id.as_str()).unwrap_or(""));
    }
    s
}
