//! `gatehouse keys …`: key lifecycle straight on the data dir, through the same service the API uses.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use gatehouse_core::time::parse_duration_secs;
use gatehouse_core::{ApiKey, Environment, KeyKind, RateLimitOverride, Scope, Timestamp, VerifyContext};
use gatehouse_server::api::dto::{KeyOut, KeyWithSecret, VerifyOut};
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_services::keys::{KeyService, NewKey};
use gatehouse_services::metrics::Metrics;
use gatehouse_services::verifier::{Verifier, VerifyError};
use gatehouse_services::ServiceError;
use gatehouse_store::{PageRequest, Store};

use crate::config::Config;
use crate::output;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Sk,
    Rk,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EnvArg {
    Live,
    Test,
}

impl From<EnvArg> for Environment {
    fn from(e: EnvArg) -> Self {
        match e {
            EnvArg::Live => Environment::Live,
            EnvArg::Test => Environment::Test,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once).
    Create(CreateArgs),
    /// List keys, newest first.
    List {
        #[arg(long = "env", value_enum)]
        environment: Option<EnvArg>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        starting_after: Option<String>,
    },
    /// Show one key.
    Get { id: String },
    /// Revoke a key, effective immediately.
    Revoke {
        id: String,
        /// Recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Issue a successor; the old key keeps working for the grace period.
    Roll {
        id: String,
        /// How long the old key keeps working: 0s … 7d.
        #[arg(long, default_value = "0s")]
        grace: String,
    },
    /// Check a key as the gateway would (does not count against its rate limit).
    Verify(VerifyArgs),
}

// The flags of `gatehouse keys create` (the variant's doc comment is its help).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A label for people.
    #[arg(long)]
    pub name: Option<String>,
    /// sk: every scope of its environment; rk: only the --scope values.
    #[arg(long, value_enum, default_value = "sk")]
    pub kind: KindArg,
    #[arg(long = "env", value_enum, default_value = "live")]
    pub environment: EnvArg,
    /// A scope for an rk key (repeatable), e.g. orders:read.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// An allowed client address or CIDR (repeatable).
    #[arg(long = "ip", value_name = "CIDR")]
    pub ip_allowlist: Vec<String>,
    /// Expiry as an RFC 3339 time (2030-01-31T00:00:00Z).
    #[arg(long, conflicts_with = "expires_in")]
    pub expires_at: Option<String>,
    /// Expiry from now: 30m, 24h, 90d.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Restrict the key to one app.
    #[arg(long)]
    pub app: Option<String>,
    /// Rate limit override as LIMIT/WINDOW, e.g. 1000/60s.
    #[arg(long, value_name = "LIMIT/WINDOW")]
    pub rate_limit: Option<String>,
    /// Metadata entry key=value (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
}

impl CreateArgs {
    /// The key to create, with expiry, metadata and rate limit parsed from their flags.
    fn into_new_key(self, now: Timestamp) -> Result<NewKey> {
        let expires_at = match (self.expires_at, self.expires_in) {
            (Some(t), _) => Some(Timestamp::parse_rfc3339(&t).map_err(|e| anyhow!("--expires-at: {e}"))?),
            (None, Some(d)) => {
                Some(now.plus_millis(parse_duration_secs(&d).map_err(|e| anyhow!("--expires-in: {e}"))? * 1000))
            }
            (None, None) => None,
        };
        let mut meta_map = serde_json::Map::new();
        for entry in self.metadata {
            let (k, v) = entry.split_once('=').ok_or_else(|| anyhow!("--metadata `{entry}`: use KEY=VALUE"))?;
            meta_map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        }
        Ok(NewKey {
            name: self.name,
            kind: match self.kind {
                KindArg::Sk => KeyKind::Secret,
                KindArg::Rk => KeyKind::Restricted,
            },
            environment: self.environment.into(),
            scopes: self.scopes,
            ip_allowlist: self.ip_allowlist,
            expires_at,
            app: self.app,
            rate_limit: self.rate_limit.as_deref().map(parse_rate_limit).transpose()?,
            metadata: meta_map,
        })
    }
}

// The flags of `gatehouse keys verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub key: String,
    /// Environment to check in; default the key's own.
    #[arg(long = "env", value_enum)]
    pub environment: Option<EnvArg>,
    #[arg(long)]
    pub scope: Option<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub app: Option<String>,
}

fn parse_rate_limit(s: &str) -> Result<RateLimitOverride> {
    let (limit, window) =
        s.split_once('/').ok_or_else(|| anyhow!("--rate-limit `{s}`: use LIMIT/WINDOW, e.g. 100/1s"))?;
    let limit: u32 = limit.parse().map_err(|_| anyhow!("--rate-limit `{s}`: `{limit}` is not a number"))?;
    let secs = parse_duration_secs(window).map_err(|e| anyhow!("--rate-limit: {e}"))?;
    Ok(RateLimitOverride {
        limit,
        window_secs: u32::try_from(secs).map_err(|_| anyhow!("--rate-limit: window too long"))?,
    })
}

/// A lifecycle error as the CLI says it (shared by the keys, oauth and webhooks commands).
pub fn service_error(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Store(s) => anyhow!("storage: {s}"),
        other => anyhow!("{other}"),
    }
}

pub async fn run(cmd: KeysCommand, cfg: &Config, store: Arc<dyn Store>, json: bool) -> Result<ExitCode> {
    let service = KeyService::new(store.clone(), cfg.server.namespace.clone(), cfg.server.workspace.clone());
    let meta = RequestMeta::default();
    let now = Timestamp::now();
    match cmd {
        KeysCommand::Create(args) => {
            let (record, secret) =
                service.create(&Actor::Cli, &meta, args.into_new_key(now)?).await.map_err(service_error)?;
            let out = KeyWithSecret { key: KeyOut::from_record(&record, now), secret: secret.expose().to_owned() };
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", output::created(&out));
            }
        }
        KeysCommand::List { environment, limit, starting_after } => {
            list(&service, environment, &PageRequest { limit, starting_after }, now, json).await?;
        }
        KeysCommand::Get { id } => {
            let record = service.get(&Actor::Cli, &id).await.map_err(service_error)?;
            print_key(&KeyOut::from_record(&record, now), json, |out| print!("{}", output::details(out)))?;
        }
        KeysCommand::Revoke { id, reason } => {
            let record = service.revoke(&Actor::Cli, &meta, &id, reason).await.map_err(service_error)?;
            print_key(&KeyOut::from_record(&record, now), json, |out| {
                println!("Revoked {} ({}). Requests with it now get 401 api_key_revoked.", out.id, out.redacted);
            })?;
        }
        KeysCommand::Roll { id, grace } => roll(&service, &meta, &id, &grace, now, json).await?,
        KeysCommand::Verify(args) => return verify(cfg, store, args, now, json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// One key as JSON, or as `human` prints it.
fn print_key(out: &KeyOut, json: bool, human: impl FnOnce(&KeyOut)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        human(out);
    }
    Ok(())
}

async fn list(
    service: &KeyService,
    environment: Option<EnvArg>,
    page: &PageRequest,
    now: Timestamp,
    json: bool,
) -> Result<()> {
    if !(1..=100).contains(&page.limit) {
        bail!("--limit must be between 1 and 100");
    }
    let page = service.list(&Actor::Cli, environment.map(Into::into), page).await.map_err(service_error)?;
    let keys: Vec<KeyOut> = page.items.iter().map(|k| KeyOut::from_record(k, now)).collect();
    if json {
        let next = if page.has_more { keys.last().map(|k| k.id.clone()) } else { None };
        println!(
            "{}",
            serde_json::json!({"object": "list", "data": keys, "has_more": page.has_more, "next_cursor": next})
        );
    } else {
        print!("{}", output::table(&keys, page.has_more));
    }
    Ok(())
}

async fn roll(
    service: &KeyService,
    meta: &RequestMeta,
    id: &str,
    grace: &str,
    now: Timestamp,
    json: bool,
) -> Result<()> {
    let grace_secs = parse_duration_secs(grace).map_err(|e| anyhow!("--grace: {e}"))?;
    let (rolled, secret) = service.roll(&Actor::Cli, meta, id, grace_secs).await.map_err(service_error)?;
    let new = KeyWithSecret { key: KeyOut::from_record(&rolled.new, now), secret: secret.expose().to_owned() };
    let old = KeyOut::from_record(&rolled.old, now);
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"new_key": new, "old_key": old}))?);
    } else {
        print!("{}", output::created(&new));
        let until = rolled.old.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        println!("The old key {} keeps working until {until}.", old.id);
    }
    Ok(())
}

/// Checks a key as the gateway would; exit code 1 when it is not valid.
async fn verify(cfg: &Config, store: Arc<dyn Store>, args: VerifyArgs, now: Timestamp, json: bool) -> Result<ExitCode> {
    let VerifyArgs { key, environment, scope, ip, app } = args;
    let scope = scope.as_deref().map(Scope::parse).transpose().map_err(|e| anyhow!("--scope: {e}"))?;
    let ip = ip.as_deref().map(str::parse).transpose().map_err(|_| anyhow!("--ip: not an IP address"))?;
    let env = match environment {
        Some(e) => e.into(),
        None => ApiKey::parse(&cfg.server.namespace, &key).map_or(Environment::Live, |k| k.environment),
    };
    // A verifier that never trusts its cache: every answer comes from storage.
    let verifier = Verifier::new(store, cfg.server.namespace.clone(), cfg.server.cache.clone(), Metrics::new("cli"));
    let ctx = VerifyContext { environment: env, ip, app: app.as_deref(), scope: scope.as_ref() };
    let out = match verifier.verify(&key, &ctx).await {
        Ok(k) => VerifyOut {
            valid: true,
            code: "valid",
            message: None,
            retry_after: None,
            key: Some(KeyOut::from_record(&k.record, now)),
        },
        Err(VerifyError::Denied(d)) => {
            VerifyOut { valid: false, code: d.code(), message: Some(d.to_string()), retry_after: None, key: None }
        }
        Err(VerifyError::Unavailable) => bail!("storage is unavailable; cannot verify"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if let Some(k) = &out.key {
        println!("valid: {} {} ({:?}, {:?})", k.id, k.redacted, k.kind, k.environment);
    } else {
        println!("invalid: {} — {}", out.code, out.message.as_deref().unwrap_or(""));
    }
    Ok(if out.valid { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
