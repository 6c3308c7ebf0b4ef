//! Sending webhook deliveries over HTTP: the [`Sender`] the delivery worker of
//! `gatehouse_services::webhooks::worker` uses. Each attempt is signed afresh and POSTed without
//! following redirects; the SSRF guard judges the address connected to (SPEC §11).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gatehouse_core::destination::forbidden_reason;
use gatehouse_core::Timestamp;
use gatehouse_services::webhooks::worker::{Clock, Observed, Sender, Worker};
use gatehouse_services::webhooks::WebhookConfig;
use gatehouse_store::webhooks::ClaimedDelivery;
use gatehouse_store::Store;

/// The delivery worker of `gatehouse_services`, sending over HTTP with an [`HttpSender`].
pub fn http_worker(store: Arc<dyn Store>, cfg: WebhookConfig, clock: Clock) -> Worker {
    let sender = Arc::new(HttpSender::new(&cfg));
    Worker::new(store, cfg, clock, sender)
}

/// Resolves names for deliveries and refuses forbidden addresses, so the address checked is the address
/// connected to (no DNS rebinding between check and connect).
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow {
                if let Some((ip, why)) = addrs.iter().find_map(|a| forbidden_reason(a.ip()).map(|w| (a.ip(), w))) {
                    return Err(format!("{host} resolves to {ip}, a {why} address; refused (SSRF guard)").into());
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends deliveries with a client that never follows redirects, ignores proxies from the environment
/// and resolves names through the SSRF guard.
pub(crate) struct HttpSender {
    cfg: WebhookConfig,
    http: reqwest::Client,
    signature_header: String,
    /// Why the configured proxy may not be used, if it may not: then nothing is sent.
    proxy_refused: Option<String>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl HttpSender {
    pub(crate) fn new(cfg: &WebhookConfig) -> Self {
        // `no_proxy`: reqwest would otherwise honour HTTP(S)_PROXY / ALL_PROXY from the environment, and
        // a proxy resolves the destination itself, so the guarded resolver below would never run (SPEC §11).
        // A configured proxy's name is resolved by the guarded resolver like any destination.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("Gatehouse-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private: cfg.allow_private_destinations }));
        let mut proxy_refused = None;
        if let Some(url) = &cfg.proxy {
            match gatehouse_services::webhooks::validate_proxy(url, cfg.allow_private_destinations)
                .and_then(|()| reqwest::Proxy::all(url).map_err(|e| e.to_string()))
            {
                Ok(p) => builder = builder.proxy(p),
                // Checked when the config was loaded; a worker built otherwise refuses every delivery.
                Err(e) => proxy_refused = Some(format!("webhooks.proxy: {e}")),
            }
        }
        let http = builder.build().expect("a static client configuration builds");
        let signature_header = format!("{}-Signature", cfg.header_prefix);
        Self { cfg: cfg.clone(), http, signature_header, proxy_refused }
    }

    /// An IP-literal URL never goes through the resolver, so it is checked here.
    fn check_literal(&self, url: &str) -> Result<(), String> {
        if self.cfg.allow_private_destinations {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        let ip: Option<IpAddr> = gatehouse_services::webhooks::literal_ip(&parsed);
        match ip.and_then(|ip| forbidden_reason(ip).map(|w| (ip, w))) {
            Some((ip, why)) => Err(format!("{ip} is a {why} address; refused (SSRF guard)")),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Sender for HttpSender {
    async fn attempt(&self, d: &ClaimedDelivery, now: Timestamp) -> Observed {
        let fail = |e: String| Observed { status: None, error: Some(e), excerpt: None };
        if let Some(e) = &self.proxy_refused {
            return fail(e.clone());
        }
        if let Err(e) = self.check_literal(&d.endpoint.url) {
            return fail(e);
        }
        if self.cfg.proxy.is_some() {
            // Through a proxy the destination is resolved by the proxy, not by the guarded resolver,
            // so it is resolved and judged here first (the proxy may still resolve it differently).
            if let Err(e) =
                gatehouse_services::webhooks::check_destination(&d.endpoint.url, self.cfg.allow_private_destinations)
                    .await
            {
                return fail(e.replacen("url: ", "", 1));
            }
        }
        let body = d.event.body.as_bytes();
        let t = now.unix_seconds();
        let secrets = d.endpoint.live_secrets(now);
        let mut req = self
            .http
            .post(&d.endpoint.url)
            .header("content-type", "application/json")
            .header(self.signature_header.as_str(), gatehouse_webhook::sign_header(&secrets, t, body));
        if d.endpoint.standard_headers {
            let sigs: Vec<String> =
                secrets.iter().filter_map(|s| gatehouse_webhook::standard::sign(s, &d.event.id, t, body)).collect();
            req = req
                .header("webhook-id", &d.event.id)
                .header("webhook-timestamp", t.to_string())
                .header("webhook-signature", sigs.join(" "));
        }
        let resp = match req.body(d.event.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let msg =
                    if e.is_timeout() { format!("timed out after {:?}", self.cfg.timeout) } else { error_chain(&e) };
                return fail(msg);
            }
        };
        let status = resp.status().as_u16();
        let excerpt = first_kib(resp).await;
        Observed { status: Some(status), error: None, excerpt }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.chars().take(500).collect()
}

/// The first KiB of a response body, as text.
async fn first_kib(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(1024);
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}
