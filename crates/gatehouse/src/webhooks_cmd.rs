//! `gatehouse webhooks endpoints …` and `gatehouse webhooks resend`: endpoint lifecycle and resends
//! straight on the data dir, through the same service the management API uses.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use gatehouse_core::time::parse_duration_secs;
use gatehouse_server::api::webhooks::{EndpointOut, EndpointWithSecret};
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_services::webhooks::{NewEndpoint, WebhookService};
use gatehouse_store::{PageRequest, Store};

use crate::config::Config;
use crate::keys_cmd::service_error;
use crate::keys_cmd::EnvArg;

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint and print its signing secret (shown once).
    Create {
        #[arg(long)]
        url: String,
        /// An event type to receive (repeatable), or `*`.
        #[arg(long = "event", value_name = "TYPE", required = true)]
        events: Vec<String>,
        #[arg(long = "env", value_enum, default_value = "live")]
        environment: EnvArg,
        #[arg(long)]
        description: Option<String>,
        /// Also send the Standard Webhooks headers.
        #[arg(long)]
        standard_webhooks: bool,
    },
    /// List endpoints, newest first.
    List {
        #[arg(long = "env", value_enum, default_value = "live")]
        environment: EnvArg,
    },
    /// Issue a new signing secret; the old one keeps signing for the overlap.
    RollSecret {
        id: String,
        /// How long the old secret keeps signing: 0s … 7d.
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
    /// Stop delivering to an endpoint.
    Disable { id: String },
    /// Resume delivering to an endpoint.
    Enable { id: String },
}

fn show(e: &EndpointOut) {
    println!("{}  {}  {}  [{}]  {}", e.id, e.status, e.environment, e.enabled_events.join(","), e.url);
}

pub async fn endpoints(cmd: EndpointsCommand, cfg: &Config, store: Arc<dyn Store>, json: bool) -> Result<ExitCode> {
    let svc = WebhookService::new(store, cfg.server.workspace.clone(), cfg.server.webhooks.clone());
    let meta = RequestMeta::default();
    match cmd {
        EndpointsCommand::Create { url, events, environment, description, standard_webhooks } => {
            let new = NewEndpoint { url, event_types: events, description, standard_headers: standard_webhooks };
            let (e, secret) = svc.create(&Actor::Cli, &meta, environment.into(), new).await.map_err(service_error)?;
            let out = EndpointWithSecret {
                endpoint: EndpointOut::from_record(&e),
                secret: secret.expose().to_owned(),
                receiver_instructions: None,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                show(&out.endpoint);
                println!(
                    "\n    {}\n\nThis signing secret is shown once. Store it where your receiver can read it.",
                    out.secret
                );
            }
        }
        EndpointsCommand::List { environment } => {
            let page = svc
                .list(environment.into(), &PageRequest { limit: 100, starting_after: None })
                .await
                .map_err(service_error)?;
            let items: Vec<EndpointOut> = page.items.iter().map(EndpointOut::from_record).collect();
            if json {
                println!("{}", serde_json::json!({"object": "list", "data": items, "has_more": page.has_more}));
            } else {
                items.iter().for_each(show);
            }
        }
        EndpointsCommand::RollSecret { id, overlap } => {
            let secs = parse_duration_secs(&overlap).map_err(|e| anyhow!("--overlap: {e}"))?;
            let (e, secret) = svc.roll(&Actor::Cli, &meta, None, &id, Some(secs)).await.map_err(service_error)?;
            let out = EndpointWithSecret::rolled(&e, secret.expose().to_owned());
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                show(&out.endpoint);
                let said = out.receiver_instructions.as_deref().unwrap_or_default();
                println!("\n    {}\n\n{said}", out.secret);
            }
        }
        EndpointsCommand::Disable { id } => {
            let e = EndpointOut::from_record(
                &svc.set_enabled(&Actor::Cli, &meta, None, &id, false).await.map_err(service_error)?,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?)
            } else {
                show(&e)
            }
        }
        EndpointsCommand::Enable { id } => {
            let e = EndpointOut::from_record(
                &svc.set_enabled(&Actor::Cli, &meta, None, &id, true).await.map_err(service_error)?,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?)
            } else {
                show(&e)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn resend(
    id: String,
    environment: EnvArg,
    cfg: &Config,
    store: Arc<dyn Store>,
    json: bool,
) -> Result<ExitCode> {
    let svc = WebhookService::new(store, cfg.server.workspace.clone(), cfg.server.webhooks.clone());
    let n = svc.resend(environment.into(), &id).await.map_err(service_error)?;
    if json {
        println!("{}", serde_json::json!({"queued": n}));
    } else {
        println!("Queued {id} for {n} endpoint(s); a running server delivers it within a moment.");
    }
    Ok(ExitCode::SUCCESS)
}
