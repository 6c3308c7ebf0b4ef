//! The identity headers a proxied request carries upstream (SPEC §3): `X-Gatehouse-*` and the signed
//! assertion. They depend only on the credential (an immutable cached record), the app and the time,
//! so they are built once per credential and app and reused while the assertion has more than half of
//! its life left: a request then copies a few ready `HeaderValue`s instead of building claims, signing
//! or looking up a shared cache by the claims' contents.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use parking_lot::Mutex;

use super::GatewayApp;
use gatehouse_services::assertion::{AssertionSigner, Claims, LIFETIME};
use gatehouse_services::oauth::ActiveToken;
use gatehouse_services::sessions::ActiveSession;
use gatehouse_services::verifier::CachedKey;

/// Who the request was authenticated as.
#[derive(Clone)]
pub(crate) enum Identity {
    Public,
    Key(Arc<CachedKey>),
    Session(Arc<ActiveSession>),
    OAuth(Arc<ActiveToken>),
}

impl Identity {
    /// The address of the cached credential, and how many holders it has.
    fn address(&self) -> Option<(usize, usize)> {
        match self {
            Identity::Public => None,
            Identity::Key(k) => Some((Arc::as_ptr(k) as usize, Arc::strong_count(k))),
            Identity::Session(s) => Some((Arc::as_ptr(s) as usize, Arc::strong_count(s))),
            Identity::OAuth(t) => Some((Arc::as_ptr(t) as usize, Arc::strong_count(t))),
        }
    }
}

/// Ready header lists.
pub(crate) type Headers = Arc<[(HeaderName, HeaderValue)]>;

struct Entry {
    /// Holds the credential, so its address cannot be reused by another one while the entry lives.
    owner: Identity,
    fresh_until: i64,
    /// The signer's generation the assertion was signed in: a rotated key re-signs at once.
    generation: u64,
    headers: Headers,
}

/// Entries are dropped when their credential has left every other cache or their assertion is past
/// half-life, and all of them when that still leaves more than this.
const MAX_ENTRIES: usize = 10_000;

/// Identity headers by (credential, app).
pub(crate) struct IdentityHeaders {
    entries: Mutex<HashMap<(usize, usize), Entry>>,
    /// What every public request carries (the same for all, built once).
    public: Headers,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            public: Arc::new([(name("x-gatehouse-auth"), HeaderValue::from_static("public"))]),
        }
    }
}

impl std::fmt::Debug for IdentityHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityHeaders").field("entries", &self.entries.lock().len()).finish()
    }
}

fn name(n: &'static str) -> HeaderName {
    HeaderName::from_static(n)
}

impl IdentityHeaders {
    /// The headers for `identity` at `app` at unix time `now`.
    pub(crate) fn get(&self, identity: &Identity, app: &GatewayApp, signer: &AssertionSigner, now: i64) -> Headers {
        let Some((addr, _)) = identity.address() else {
            return self.public.clone();
        };
        let key = (addr, app as *const GatewayApp as usize);
        let generation = signer.generation();
        if let Some(e) = self.entries.lock().get(&key) {
            if e.fresh_until > now && e.generation == generation {
                return e.headers.clone();
            }
        }
        let headers: Headers = build(identity, app, signer, now).into();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.fresh_until > now && e.owner.address().is_some_and(|(_, holders)| holders > 1));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let fresh_until = now + LIFETIME.as_secs() as i64 / 2;
        entries.insert(key, Entry { owner: identity.clone(), fresh_until, generation, headers: headers.clone() });
        headers
    }
}

/// The headers of a credential (never `Identity::Public`, whose headers are fixed).
fn build(identity: &Identity, app: &GatewayApp, signer: &AssertionSigner, now: i64) -> Vec<(HeaderName, HeaderValue)> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(7);
    let mut set = |n: &'static str, v: &str| {
        // Values come from stored records; one that is not a valid header value is left out rather
        // than sent mangled.
        if let Ok(v) = HeaderValue::from_str(v) {
            out.push((name(n), v));
        }
    };
    let environment = app.environment.as_str();
    let claims = match identity {
        Identity::Public => unreachable!("public requests carry the fixed headers"),
        Identity::Key(k) => {
            let r = &k.record;
            let scopes = r.effective_scopes().to_strings();
            set("x-gatehouse-auth", "api_key");
            set("x-gatehouse-key-id", &r.id);
            set("x-gatehouse-scopes", &scopes.join(" "));
            set("x-gatehouse-environment", r.environment.as_str());
            Claims {
                auth: "api_key".into(),
                sub: r.id.clone(),
                email: None,
                key_id: Some(r.id.clone()),
                client_id: None,
                scopes,
                environment: r.environment.as_str().into(),
            }
        }
        Identity::Session(s) => {
            set("x-gatehouse-auth", "session");
            set("x-gatehouse-user", &s.user.id);
            set("x-gatehouse-email", &s.user.email);
            set("x-gatehouse-environment", environment);
            Claims {
                auth: "session".into(),
                sub: s.user.id.clone(),
                email: Some(s.user.email.clone()),
                key_id: None,
                client_id: None,
                scopes: vec![],
                environment: environment.into(),
            }
        }
        Identity::OAuth(t) => {
            let r = &t.record;
            set("x-gatehouse-auth", "oauth");
            set("x-gatehouse-client-id", &r.client_id);
            set("x-gatehouse-scopes", &r.scopes.join(" "));
            set("x-gatehouse-environment", environment);
            if let Some(u) = &t.user {
                set("x-gatehouse-user", &u.id);
                set("x-gatehouse-email", &u.email);
            }
            Claims {
                auth: "oauth".into(),
                sub: r.user_id.clone().unwrap_or_else(|| r.client_id.clone()),
                email: t.user.as_ref().map(|u| u.email.clone()),
                key_id: None,
                client_id: Some(r.client_id.clone()),
                scopes: r.scopes.clone(),
                environment: environment.into(),
            }
        }
    };
    set("x-gatehouse-jwt-assertion", &signer.assertion(&app.name, &claims, now));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::{Environment, KeyKind, ScopeSet};

    fn app(name: &str) -> GatewayApp {
        let sf = gatehouse_core::spacefile::parse(
            "Spacefile",
            "v: 0\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:1\n",
        )
        .unwrap();
        GatewayApp {
            name: name.into(),
            hosts: vec![],
            environment: Environment::Live,
            spacefile: sf,
            upstreams: HashMap::new(),
        }
    }

    fn key(id: &str) -> Identity {
        Identity::Key(crate::gateway::test_key(id, KeyKind::Secret, ScopeSet::default()))
    }

    fn get<'a>(h: &'a Headers, name: &str) -> &'a str {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn headers_are_reused_per_credential_and_app_until_half_life() {
        let signer = AssertionSigner::new(&AssertionSigner::fresh_seed(), "http://cp".into());
        let cache = IdentityHeaders::default();
        let (shop, blog) = (app("shop"), app("blog"));
        let (k1, k2) = (key("key_1"), key("key_2"));
        let now = 1_800_000_000;
        let first = cache.get(&k1, &shop, &signer, now);
        assert_eq!(get(&first, "x-gatehouse-auth"), "api_key");
        assert_eq!(get(&first, "x-gatehouse-key-id"), "key_1");
        let jwt = get(&first, "x-gatehouse-jwt-assertion").to_owned();
        let half = LIFETIME.as_secs() as i64 / 2;
        assert_eq!(
            get(&cache.get(&k1, &shop, &signer, now + half - 1), "x-gatehouse-jwt-assertion"),
            jwt,
            "reused while fresh"
        );
        assert_ne!(
            get(&cache.get(&k1, &shop, &signer, now + half), "x-gatehouse-jwt-assertion"),
            jwt,
            "re-signed at half-life"
        );
        // Another app is another audience; another credential has its own facts.
        let other_app = cache.get(&k1, &blog, &signer, now);
        assert_ne!(get(&other_app, "x-gatehouse-jwt-assertion"), jwt);
        assert_eq!(get(&cache.get(&k2, &shop, &signer, now), "x-gatehouse-key-id"), "key_2");
        assert_eq!(get(&cache.get(&Identity::Public, &shop, &signer, now), "x-gatehouse-auth"), "public");
    }

    #[test]
    fn a_full_cache_drops_credentials_nobody_else_holds() {
        let signer = AssertionSigner::new(&AssertionSigner::fresh_seed(), "http://cp".into());
        let cache = IdentityHeaders::default();
        let shop = app("shop");
        let kept = key("key_kept");
        cache.get(&kept, &shop, &signer, 0);
        for i in 0..MAX_ENTRIES {
            // Each of these is dropped by the caller right away, as when a key leaves the verifier's cache.
            cache.get(&key(&format!("key_{i}")), &shop, &signer, 0);
        }
        let entries = cache.entries.lock();
        assert!(entries.len() < 10, "{} entries left", entries.len());
        assert!(entries.values().any(|e| matches!(&e.owner, Identity::Key(k) if k.record.id == "key_kept")));
    }
}
