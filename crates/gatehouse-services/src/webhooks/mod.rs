//! Webhooks (SPEC §6), sending side: endpoint lifecycle (`WebhookService`) and the delivery worker
//! (`worker`; the HTTP sending itself is the server's `delivery`). Events themselves are written by the
//! storage layer in the same transaction as the change they announce (the transactional outbox), so
//! nothing here can lose or invent one.

pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::ids::new_id;
use base64::Engine;
use gatehouse_core::id::looks_like;
use gatehouse_core::{Environment, SecretString, Timestamp};
use gatehouse_store::webhooks::{EndpointRecord, EventRecord, SignatureLast, EVENT_TYPES};
use gatehouse_store::{AuditEntry, Page, PageRequest, Store};

use crate::audit::{Actor, RequestMeta};
use crate::ServiceError;

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `{prefix}-Signature` is the signature header.
    pub header_prefix: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Development only: allow loopback, private and link-local destinations.
    pub allow_private_destinations: bool,
    /// How often the worker looks for due deliveries when idle.
    pub poll_interval: Duration,
    /// Deliveries sent at once by one worker.
    pub concurrency: usize,
    /// An endpoint failing this long is disabled.
    pub disable_after: Duration,
    /// Delays before each retry (the first attempt is immediate), each ±20 %.
    pub schedule: Vec<Duration>,
    /// Default overlap when a signing secret is rolled.
    pub default_roll_overlap: Duration,
    /// An outgoing proxy (`http://host:port`) for deliveries. Proxies from the environment are never
    /// used; this one is, and the SSRF guard judges its address too.
    pub proxy: Option<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let m = |x: u64| Duration::from_secs(x * 60);
        Self {
            header_prefix: "Gatehouse".into(),
            timeout: Duration::from_secs(10),
            allow_private_destinations: false,
            poll_interval: Duration::from_millis(50),
            concurrency: 64,
            disable_after: Duration::from_secs(5 * 86_400),
            schedule: vec![Duration::from_secs(5), m(5), m(30), m(120), m(300), m(600), m(600)],
            default_roll_overlap: Duration::from_secs(86_400),
            proxy: None,
        }
    }
}

/// The type of the events `WebhookService::send_test` sends (never sent to any other endpoint).
pub const TEST_EVENT_TYPE: &str = "webhook_endpoint.test";

/// A new endpoint as asked for by a caller.
#[derive(Clone, Debug, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub standard_headers: bool,
}

/// `whsec_` + base64 of 32 random bytes: one string keys both signature schemes.
pub fn new_secret() -> SecretString {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    SecretString::new(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b)))
}

/// Checks an endpoint URL: absolute http(s), no userinfo or fragment, at most 2000 characters.
/// `http` is accepted only when private destinations are allowed (local development).
pub fn validate_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("url: not an absolute URL ({e})"))?;
    if url.len() > 2000 {
        return Err("url: at most 2000 characters".into());
    }
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(
                "url: use https (plain http is allowed only with webhooks.allow_private_destinations, for development)"
                    .into(),
            )
        }
        s => return Err(format!("url: scheme `{s}` is not http(s)")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: must not contain a user name or password".into());
    }
    if parsed.fragment().is_some() {
        return Err("url: must not contain a fragment".into());
    }
    if parsed.host().is_none() {
        return Err("url: needs a host".into());
    }
    Ok(())
}

/// Refuses, at registration, a destination the SSRF guard would refuse at delivery (SPEC §11): an IP
/// literal in a guarded range, or a name that resolves now to a guarded address (any of its addresses,
/// as the delivery resolver judges). A name that does not resolve now, or not within two seconds, is
/// accepted: DNS may be down or the name not yet published, and the guard runs again on every attempt.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("url: not an absolute URL ({e})"))?;
    let refuse = |name: Option<&str>, ip: std::net::IpAddr, why: &str| {
        let named = name.map(|n| format!("{n} resolves to {ip}, and ")).unwrap_or_default();
        Err(format!(
            "url: {named}{ip} is a {why} address; webhooks are not sent to loopback, private, link-local, CGNAT, multicast or cloud-metadata addresses (SSRF guard; webhooks.allow_private_destinations allows them for local development)"
        ))
    };
    let name = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => {
            return gatehouse_core::destination::forbidden_reason(v4.into())
                .map_or(Ok(()), |w| refuse(None, v4.into(), w))
        }
        Some(url::Host::Ipv6(v6)) => {
            return gatehouse_core::destination::forbidden_reason(v6.into())
                .map_or(Ok(()), |w| refuse(None, v6.into(), w))
        }
        Some(url::Host::Domain(d)) => d.to_owned(),
        None => return Err("url: needs a host".into()),
    };
    // RFC 6761: `localhost` and every name under it are loopback, whether or not this resolver knows
    // them (the resolver here may not know `localhost.`; one at delivery time may).
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    if bare == "localhost" || bare.ends_with(".localhost") {
        return refuse(
            Some(&name.chars().take(253).collect::<String>()),
            std::net::Ipv4Addr::LOCALHOST.into(),
            "loopback",
        );
    }
    let lookup = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((name.as_str(), 0))).await;
    let Ok(Ok(addrs)) = lookup else { return Ok(()) };
    for a in addrs {
        if let Some(why) = gatehouse_core::destination::forbidden_reason(a.ip()) {
            let shown: String = name.chars().take(253).collect();
            return refuse(Some(&shown), a.ip(), why);
        }
    }
    Ok(())
}

/// Checks an endpoint description: at most 200 characters, and no control or bidirectional-override
/// characters, which would let a stored description rewrite a terminal line or a log line, or display
/// reordered in the dashboard.
pub fn validate_description(d: &str) -> Result<(), String> {
    if d.chars().count() > 200 {
        return Err("description: at most 200 characters".into());
    }
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    };
    if let Some((i, c)) = d.chars().enumerate().find(|(_, c)| hostile(*c)) {
        return Err(format!(
            "description: must not contain control characters (U+{:04X} at character {})",
            c as u32,
            i + 1
        ));
    }
    Ok(())
}

/// Checks a configured delivery proxy: an absolute `http` or `https` URL of a host and port only.
/// Unless private destinations are allowed, an IP literal the SSRF guard refuses is refused here;
/// a name is judged by the guarded resolver each time the proxy is connected to.
pub fn validate_proxy(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", parsed.scheme()));
    }
    if parsed.host().is_none() || parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("give the proxy as scheme://host:port, nothing more".into());
    }
    if !allow_private {
        if let Some(ip) = literal_ip(&parsed) {
            if let Some(why) = gatehouse_core::destination::forbidden_reason(ip) {
                return Err(format!("{ip} is a {why} address; refused (SSRF guard; webhooks.allow_private_destinations allows it for local development)"));
            }
        }
    }
    Ok(())
}

/// The host of `url` when it is an IP literal (such hosts never go through a resolver).
pub fn literal_ip(url: &url::Url) -> Option<std::net::IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    }
}

/// What the receiver of `e` must do after a roll, and by when, in words: the roll's answer says it on
/// the API, the CLI and the dashboard.
pub fn receiver_instructions(e: &EndpointRecord, now: Timestamp) -> String {
    match e.previous_secret_expires_at.filter(|_| e.in_rotation_window(now)) {
        Some(until) => format!(
            "Both secrets sign until {until}: every delivery carries one v1 signature per secret. Give your receiver \
             the new secret before then. A receiver that accepts a delivery when any v1 matches (Stripe's SDKs, \
             gatehouse-webhook, Standard Webhooks) may switch at any moment. One that checks only the last v1 may \
             switch too: the first delivery after its switch is refused once and resent at once with the new \
             secret's signature last. From {until} only the new secret signs, and a receiver still on the old one \
             refuses every delivery.",
            until = until.to_rfc3339()
        ),
        None => "The old secret no longer signs. Give your receiver the new secret now: until it has it, it refuses \
                 every delivery, and each is retried on the usual schedule."
            .into(),
    }
}

/// Endpoint lifecycle and the event log, on one workspace.
#[derive(Clone, Debug)]
pub struct WebhookService {
    store: Arc<dyn Store>,
    workspace: String,
    pub cfg: WebhookConfig,
}

impl WebhookService {
    pub fn new(store: Arc<dyn Store>, workspace: String, cfg: WebhookConfig) -> Self {
        Self { store, workspace, cfg }
    }

    fn audit(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        e: &EndpointRecord,
        details: serde_json::Value,
    ) -> AuditEntry {
        let target =
            crate::audit::AuditTarget { kind: "webhook_endpoint", id: &e.id, environment: Some(e.environment) };
        crate::audit::audit_entry(&self.workspace, &actor.id(), meta, action, target, details)
    }

    pub async fn create(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        env: Environment,
        req: NewEndpoint,
    ) -> Result<(EndpointRecord, SecretString), ServiceError> {
        let invalid = ServiceError::Invalid;
        validate_url(&req.url, self.cfg.allow_private_destinations).map_err(invalid)?;
        if req.event_types.is_empty() {
            return Err(invalid("event_types: list the event types to receive, or [\"*\"] for all".into()));
        }
        for t in &req.event_types {
            if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
                return Err(invalid(format!(
                    "event_types: unknown type `{}`; known: {}",
                    t.chars().take(60).collect::<String>(),
                    EVENT_TYPES.join(", ")
                )));
            }
        }
        let description = req.description.unwrap_or_default();
        validate_description(&description).map_err(invalid)?;
        if let Actor::Key(k) = actor {
            if k.environment != env {
                return Err(ServiceError::Denied(gatehouse_core::DenyReason::EnvironmentMismatch));
            }
        }
        // Last of the checks: it may wait on DNS.
        check_destination(&req.url, self.cfg.allow_private_destinations).await.map_err(invalid)?;
        let now = Timestamp::now();
        let secret = new_secret();
        let mut types = req.event_types;
        types.sort();
        types.dedup();
        let e = EndpointRecord {
            id: new_id("we", now),
            workspace: self.workspace.clone(),
            environment: env,
            url: req.url,
            event_types: types,
            description,
            secret: secret.expose().to_owned(),
            previous_secret: None,
            previous_secret_expires_at: None,
            standard_headers: req.standard_headers,
            created_at: now,
            created_by: actor.id(),
            disabled_at: None,
            disabled_reason: None,
            failing_since: None,
            signature_last: SignatureLast::Previous,
        };
        let audit = self.audit(
            actor,
            meta,
            "webhook_endpoint.created",
            &e,
            serde_json::json!({"url": e.url, "event_types": e.event_types}),
        );
        self.store.insert_endpoint(&e, &audit).await?;
        Ok((e, secret))
    }

    /// An endpoint of this workspace in `env` (an endpoint of the other environment looks absent).
    pub async fn get(&self, env: Option<Environment>, id: &str) -> Result<EndpointRecord, ServiceError> {
        let nf = || {
            ServiceError::NotFound(format!(
                "No webhook endpoint with id `{}`.",
                id.chars().take(60).collect::<String>()
            ))
        };
        if !looks_like("we", id) {
            return Err(nf());
        }
        match self.store.endpoint_by_id(&self.workspace, id).await? {
            Some(e) if env.is_none_or(|v| v == e.environment) => Ok(e),
            _ => Err(nf()),
        }
    }

    pub async fn list(&self, env: Environment, page: &PageRequest) -> Result<Page<EndpointRecord>, ServiceError> {
        Ok(self.store.list_endpoints(&self.workspace, env, page).await?)
    }

    /// A new secret; the old one keeps signing for `overlap` (default 24 h, at most 7 days).
    pub async fn roll(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        env: Option<Environment>,
        id: &str,
        overlap_secs: Option<i64>,
    ) -> Result<(EndpointRecord, SecretString), ServiceError> {
        let overlap = overlap_secs.unwrap_or(self.cfg.default_roll_overlap.as_secs() as i64);
        if !(0..=7 * 86_400).contains(&overlap) {
            return Err(ServiceError::Invalid("overlap_secs: between 0 and 604800".into()));
        }
        let e = self.get(env, id).await?;
        let secret = new_secret();
        let audit =
            self.audit(actor, meta, "webhook_endpoint.secret_rolled", &e, serde_json::json!({"overlap_secs": overlap}));
        let until = Timestamp::now().plus_millis(overlap * 1000);
        let e = self
            .store
            .roll_endpoint_secret(&self.workspace, id, secret.expose(), until, &audit)
            .await?
            .ok_or_else(|| ServiceError::NotFound("gone".into()))?;
        Ok((e, secret))
    }

    pub async fn set_enabled(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        env: Option<Environment>,
        id: &str,
        enabled: bool,
    ) -> Result<EndpointRecord, ServiceError> {
        let e = self.get(env, id).await?;
        let action = if enabled { "webhook_endpoint.enabled" } else { "webhook_endpoint.disabled_by_user" };
        let audit = self.audit(actor, meta, action, &e, serde_json::json!({}));
        let reason = (!enabled).then_some("disabled by a user");
        self.store
            .set_endpoint_disabled(&self.workspace, id, Timestamp::now(), reason, &audit)
            .await?
            .ok_or_else(|| ServiceError::NotFound("gone".into()))
    }

    pub async fn events(&self, env: Environment, page: &PageRequest) -> Result<Page<EventRecord>, ServiceError> {
        Ok(self.store.list_events(&self.workspace, env, page).await?)
    }

    pub async fn event(&self, env: Environment, id: &str) -> Result<EventRecord, ServiceError> {
        let nf = || ServiceError::NotFound(format!("No event with id `{}`.", id.chars().take(60).collect::<String>()));
        if !looks_like("evt", id) {
            return Err(nf());
        }
        match self.store.event_by_id(&self.workspace, id).await? {
            Some(e) if e.environment == env.as_str() => Ok(e),
            _ => Err(nf()),
        }
    }

    /// Sends a test event (type [`TEST_EVENT_TYPE`]) to this endpoint alone, whatever types it
    /// subscribes to: a real event, signed and delivered like any other, audited as
    /// `webhook_endpoint.test_sent`. Returns the event's id.
    pub async fn send_test(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        env: Option<Environment>,
        id: &str,
    ) -> Result<String, ServiceError> {
        let e = self.get(env, id).await?;
        if e.disabled_at.is_some() {
            return Err(ServiceError::Conflict("the endpoint is disabled; enable it to send a test event".into()));
        }
        let audit = self.audit(
            actor,
            meta,
            "webhook_endpoint.test_sent",
            &e,
            serde_json::json!({"event_type": TEST_EVENT_TYPE}),
        );
        self.store
            .insert_test_event(&self.workspace, id, TEST_EVENT_TYPE, &audit)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the endpoint changed; try again".into()))
    }

    /// One page of the deliveries to an endpoint (`actor`'s view, as `get`), newest first, of events
    /// older than `before` when given.
    pub async fn deliveries(
        &self,
        env: Option<Environment>,
        endpoint_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<gatehouse_store::webhooks::EndpointDelivery>, ServiceError> {
        let e = self.get(env, endpoint_id).await?;
        let before = before.filter(|b| looks_like("evt", b));
        Ok(self.store.deliveries_to(&e.id, before, limit).await?)
    }

    /// Queues one delivery again: the event `event_id` to the endpoint `endpoint_id` alone (never to the
    /// event's other endpoints), audited as `webhook_endpoint.delivery_resent`.
    pub async fn resend_to(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        env: Option<Environment>,
        endpoint_id: &str,
        event_id: &str,
    ) -> Result<(), ServiceError> {
        let e = self.get(env, endpoint_id).await?;
        let nf = || {
            ServiceError::NotFound(format!(
                "No delivery of event `{}` to this endpoint.",
                event_id.chars().take(60).collect::<String>()
            ))
        };
        if !looks_like("evt", event_id) {
            return Err(nf());
        }
        if e.disabled_at.is_some() {
            return Err(ServiceError::Conflict("the endpoint is disabled; enable it to resend".into()));
        }
        let audit =
            self.audit(actor, meta, "webhook_endpoint.delivery_resent", &e, serde_json::json!({"event_id": event_id}));
        if self.store.resend_delivery(&self.workspace, &e.id, event_id, &audit).await? {
            Ok(())
        } else {
            Err(nf())
        }
    }

    /// Queues an event again for every enabled endpoint that wants it; returns how many.
    pub async fn resend(&self, env: Environment, id: &str) -> Result<u64, ServiceError> {
        self.event(env, id).await?;
        Ok(self.store.resend_event(&self.workspace, id, Timestamp::now()).await?)
    }
}
