//! The state every handler shares: the configuration, storage, the services and what the pages need.

use std::sync::Arc;

use gatehouse_store::Store;

use crate::config::ServerConfig;

/// Everything a request handler may use, shared behind one `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub verifier: gatehouse_services::verifier::Verifier,
    pub limiter: gatehouse_services::limiter::RateLimiter,
    pub metrics: gatehouse_services::metrics::Metrics,
    pub keys: gatehouse_services::keys::KeyService,
    pub sessions: Arc<gatehouse_services::sessions::Sessions>,
    pub users: gatehouse_services::users::Users,
    pub oauth: Arc<gatehouse_services::oauth::OAuthService>,
    pub webhooks: gatehouse_services::webhooks::WebhookService,
    pub usage: gatehouse_services::usage::UsageCollector,
    /// Leaked-credential reports (SPEC §13): the revoking service and GitHub's key list.
    pub leaks: crate::leak_intake::LeakIntake,
    /// Who may open which app (SPEC §15); swapped whole when the configuration file changes.
    pub access: Arc<gatehouse_services::access::AccessPolicies>,
    /// The identity providers people may sign in with (SPEC §15), with their cached metadata and keys.
    pub idp: crate::idp::Providers,
    /// Which user a provider account signs in as.
    pub external: gatehouse_services::external::ExternalSignIns,
    pub web: WebState,
    /// The certificates served with `[tls]`, as `/readyz` reports them (empty without TLS).
    pub tls: Arc<crate::tls::TlsStatus>,
}

/// What the browser-facing pages need: origins, keys, and the one-time setup token.
#[derive(Debug)]
pub struct WebState {
    /// The control plane's public origin, e.g. `http://127.0.0.1:4455`.
    pub cp_origin: String,
    /// Its `host[:port]`, lower case.
    pub cp_host: String,
    /// Every app host the gateway serves (sign-ins may return there).
    pub app_hosts: Vec<String>,
    /// The apps the gateway serves, as the dashboard shows them (empty for a control plane alone, or
    /// when the caller only gave hosts).
    pub apps: Vec<AppInfo>,
    /// HMAC key of CSRF tokens, shared by every node through storage.
    pub csrf_key: Vec<u8>,
    /// Reloaded from storage in the background, so a key rotation reaches every process.
    pub signer: Arc<gatehouse_services::assertion::AssertionSigner>,
    /// While no owner exists and no owner was configured: the token of the printed setup link.
    pub setup_token: parking_lot::Mutex<Option<String>>,
    /// The dashboard's content security policy; its sign-out form may end at the identity providers
    /// that sign out there too.
    pub dashboard_csp: axum::http::HeaderValue,
}

/// An app the gateway serves, as the control plane knows it: its name, hosts, environment and the
/// Spacefile its micros, public routes, presets and route scopes come from.
#[derive(Clone, Debug)]
pub struct AppInfo {
    pub name: String,
    /// `host[:port]` values, lower case.
    pub hosts: Vec<String>,
    /// Keys of this environment are accepted.
    pub environment: gatehouse_core::Environment,
    pub spacefile: gatehouse_core::spacefile::Spacefile,
}

impl WebState {
    /// The app named `name`, if the gateway serves it.
    pub(crate) fn app(&self, name: &str) -> Option<&AppInfo> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// Hosts a sign-in may return to.
    pub(crate) fn known_hosts(&self) -> Vec<String> {
        let mut v = self.app_hosts.clone();
        v.push(self.cp_host.clone());
        v
    }
}
