//! Prometheus metrics (SPEC §10), one registry per app so tests can run several apps in one process.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub app: String,
    /// `public`, `api_key`, `session`, `redirect`, `refused` or `invalid`.
    pub decision: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// `cert_file`, or the host name of an ACME certificate.
    pub certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeLabels {
    pub host: String,
    /// `issued` or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: &'static str,
}

/// Handles to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    /// Gateway requests by app, decision and status.
    pub gateway_requests: Family<GatewayLabels, Counter>,
    /// Key verifications by outcome code (`valid` or a §5 code, or `unavailable`).
    pub verifications: Family<CodeLabel, Counter>,
    pub verify_seconds: Histogram,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_negative_hits: Counter,
    pub rate_limited: Counter,
    /// 1 while rate limits are shared through Redis, 0 while decided per node (no `redis_url`, or Redis unreachable).
    pub rate_limit_shared: Gauge,
    /// Rate-limit checks decided per node because Redis did not answer.
    pub rate_limit_fallbacks: Counter,
    pub store_errors: Counter,
    /// 1 while the change feed is fresh enough to trust the key cache.
    pub cache_trusted: Gauge,
    /// 1 while storage is known to be unreachable, so calls that need it fail at once (503).
    pub storage_down: Gauge,
    /// Deliveries waiting (refreshed every few seconds).
    pub webhook_pending: Gauge,
    /// Webhook attempts by outcome (`delivered`, `retry`, `failed`).
    pub webhook_attempts: Family<CodeLabel, Counter>,
    /// From the event's commit to its successful delivery.
    pub webhook_delivery_seconds: Histogram,
    /// When each served certificate expires (Unix seconds).
    pub tls_certificate_expiry: Family<CertLabel, Gauge>,
    /// Reloads of `[tls] cert_file` by outcome (`loaded`, `rejected`).
    pub tls_reloads: Family<CodeLabel, Counter>,
    /// ACME orders by host and outcome.
    pub acme_orders: Family<AcmeLabels, Counter>,
    /// 1 while the last ACME attempt for a host failed.
    pub acme_failing: Family<CertLabel, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(backend: &'static str) -> Self {
        let mut r = Registry::with_prefix("gatehouse");
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "Control-plane HTTP requests by route and status (gateway traffic is in gateway_requests)",
            http_requests.clone(),
        );
        let gateway_requests = Family::<GatewayLabels, Counter>::default();
        r.register("gateway_requests", "Gateway requests by app, decision and status", gateway_requests.clone());
        let verifications = Family::<CodeLabel, Counter>::default();
        r.register("key_verifications", "API key verifications by outcome code", verifications.clone());
        let verify_seconds = Histogram::new(exponential_buckets(0.000_001, 4.0, 12));
        r.register("key_verification_seconds", "Time to verify an API key", verify_seconds.clone());
        let cache_hits = Counter::default();
        r.register("key_cache_hits", "Key lookups answered from the cache", cache_hits.clone());
        let cache_misses = Counter::default();
        r.register("key_cache_misses", "Key lookups that went to storage", cache_misses.clone());
        let cache_negative_hits = Counter::default();
        r.register("key_cache_negative_hits", "Unknown keys answered from the cache", cache_negative_hits.clone());
        let rate_limited = Counter::default();
        r.register("rate_limited", "Requests refused with 429", rate_limited.clone());
        let rate_limit_shared = Gauge::default();
        r.register(
            "rate_limit_shared",
            "1 while rate limits are shared through Redis across nodes",
            rate_limit_shared.clone(),
        );
        let rate_limit_fallbacks = Counter::default();
        r.register(
            "rate_limit_fallbacks",
            "Rate-limit checks decided per node because Redis did not answer",
            rate_limit_fallbacks.clone(),
        );
        let store_errors = Counter::default();
        r.register("store_errors", "Storage failures seen while serving", store_errors.clone());
        let cache_trusted = Gauge::default();
        r.register("key_cache_trusted", "1 while the key change feed is fresh", cache_trusted.clone());
        let storage_down = Gauge::default();
        r.register(
            "storage_down",
            "1 while storage is known to be unreachable and calls fail at once until a probe succeeds",
            storage_down.clone(),
        );
        let webhook_pending = Gauge::default();
        r.register("webhook_pending_deliveries", "Webhook deliveries waiting to be sent", webhook_pending.clone());
        let webhook_attempts = Family::<CodeLabel, Counter>::default();
        r.register("webhook_attempts", "Webhook delivery attempts by outcome", webhook_attempts.clone());
        let webhook_delivery_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 12));
        r.register(
            "webhook_delivery_seconds",
            "Time from an event's commit to its delivery",
            webhook_delivery_seconds.clone(),
        );
        let tls_certificate_expiry = Family::<CertLabel, Gauge>::default();
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each served TLS certificate expires (Unix time)",
            tls_certificate_expiry.clone(),
        );
        let tls_reloads = Family::<CodeLabel, Counter>::default();
        r.register("tls_reloads", "Reloads of the TLS certificate files by outcome", tls_reloads.clone());
        let acme_orders = Family::<AcmeLabels, Counter>::default();
        r.register("acme_orders", "ACME certificate orders by host and outcome", acme_orders.clone());
        let acme_failing = Family::<CertLabel, Gauge>::default();
        r.register("acme_failing", "1 while the last ACME attempt for a host failed", acme_failing.clone());
        let info = Family::<BackendLabel, Gauge>::default();
        info.get_or_create(&BackendLabel { backend }).set(1);
        r.register("storage_backend", "The storage backend in use", info);
        Self {
            registry: Arc::new(r),
            http_requests,
            gateway_requests,
            verifications,
            verify_seconds,
            cache_hits,
            cache_misses,
            cache_negative_hits,
            rate_limited,
            rate_limit_shared,
            rate_limit_fallbacks,
            store_errors,
            cache_trusted,
            storage_down,
            webhook_pending,
            webhook_attempts,
            webhook_delivery_seconds,
            tls_certificate_expiry,
            tls_reloads,
            acme_orders,
            acme_failing,
        }
    }

    /// Records when the certificate `name` now served expires.
    pub fn tls_certificate_expiry(&self, name: &str, not_after: i64) {
        self.tls_certificate_expiry.get_or_create(&CertLabel { certificate: name.to_owned() }).set(not_after);
    }

    /// Counts a reload of the certificate files.
    pub fn tls_reloads(&self, loaded: bool) {
        let code = if loaded { "loaded" } else { "rejected" };
        self.tls_reloads.get_or_create(&CodeLabel { code }).inc();
    }

    /// Counts an ACME order for `host` and marks the host failing or not.
    pub fn acme_order(&self, host: &str, issued: bool) {
        let outcome = if issued { "issued" } else { "failed" };
        self.acme_orders.get_or_create(&AcmeLabels { host: host.to_owned(), outcome }).inc();
        self.acme_failing.get_or_create(&CertLabel { certificate: host.to_owned() }).set(i64::from(!issued));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
