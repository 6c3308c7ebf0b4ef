//! `gatehouse oauth clients …`: OAuth client registration straight on the data dir, through the
//! same service the management API uses.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use gatehouse_core::time::parse_duration_secs;
use gatehouse_server::api::oauth_clients::{ClientOut, ClientWithSecret};
use gatehouse_services::audit::{Actor, RequestMeta};
use gatehouse_services::metrics::Metrics;
use gatehouse_services::oauth::{NewClient, OAuthService};
use gatehouse_services::verifier::Verifier;
use gatehouse_store::{PageRequest, Store};

use crate::config::Config;
use crate::keys_cmd::{service_error, EnvArg};

#[derive(Debug, Subcommand)]
pub enum OAuthCommand {
    /// OAuth clients (third-party apps).
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client and print its secret (shown once; public clients have none).
    Create {
        /// Shown to users on the consent screen.
        #[arg(long)]
        name: String,
        /// An exact redirect URI (repeatable). http://127.0.0.1/… matches any port.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A scope the client may request (repeatable), e.g. orders:read.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A public client (SPA, mobile, CLI): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        /// Issue RFC 9068 JWT access tokens instead of opaque ones.
        #[arg(long)]
        jwt: bool,
        /// The environment the client's tokens act in.
        #[arg(long = "env", value_enum, default_value = "live")]
        environment: EnvArg,
        /// Restrict the client's tokens to one app (by name).
        #[arg(long)]
        app: Option<String>,
    },
    /// List clients, newest first.
    List {
        /// Only clients of this environment.
        #[arg(long = "env", value_enum)]
        environment: Option<EnvArg>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        starting_after: Option<String>,
    },
    /// Show one client.
    Get { id: String },
    /// Issue a new secret; the old one keeps working for the grace period.
    RotateSecret {
        id: String,
        /// How long the old secret keeps working: 0s … 7d.
        #[arg(long, default_value = "0s")]
        grace: String,
    },
    /// Disable a client: every token it holds stops working at once.
    Disable { id: String },
}

fn print_client(c: &ClientOut) {
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    let kind = match c.client_type {
        gatehouse_server::api::oauth_clients::ClientType::Confidential => "confidential",
        gatehouse_server::api::oauth_clients::ClientType::Public => "public",
    };
    for (label, value) in [
        ("client_id", c.id.clone()),
        ("name", c.name.clone()),
        ("type", kind.to_owned()),
        ("redirect uris", list(&c.redirect_uris)),
        ("scopes", list(&c.scopes)),
        ("token format", c.token_format.clone()),
        (
            "environment",
            match c.environment {
                gatehouse_server::api::dto::Env::Live => "live".to_owned(),
                gatehouse_server::api::dto::Env::Test => "test".to_owned(),
            },
        ),
        ("app", c.app.clone().unwrap_or_else(|| "-".into())),
        ("secret", c.secret_last4.as_ref().map_or("-".into(), |l| format!("…{l}"))),
        ("created", c.created_at.clone()),
        ("disabled", c.disabled_at.clone().unwrap_or_else(|| "-".into())),
    ] {
        println!("{label:<14}{value}");
    }
}

fn print_secret(out: &ClientWithSecret) {
    print_client(&out.client);
    if let Some(s) = &out.client_secret {
        println!();
        println!("    {s}");
        println!();
        println!("This client secret is shown once. Store it now: Gatehouse keeps only its SHA-256.");
    }
}

pub async fn run(cmd: OAuthCommand, cfg: &Config, store: Arc<dyn Store>, json: bool) -> Result<ExitCode> {
    let verifier =
        Verifier::new(store.clone(), cfg.server.namespace.clone(), cfg.server.cache.clone(), Metrics::new("cli"));
    let svc = OAuthService::new(
        store,
        cfg.server.namespace.clone(),
        cfg.server.workspace.clone(),
        cfg.server.oauth.clone(),
        verifier,
    );
    let meta = RequestMeta::default();
    let OAuthCommand::Clients(cmd) = cmd;
    match cmd {
        ClientsCommand::Create { name, redirect_uris, scopes, public, jwt, environment, app } => {
            let new = NewClient {
                name,
                confidential: !public,
                redirect_uris,
                scopes,
                token_format: Some(if jwt { "jwt" } else { "opaque" }.into()),
                environment: Some(environment.into()),
                app,
            };
            let (client, secret) = svc.create_client(&Actor::Cli, &meta, new).await.map_err(service_error)?;
            let out = ClientWithSecret {
                client: ClientOut::from_record(&client),
                client_secret: secret.map(|s| s.expose().to_owned()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_secret(&out);
            }
        }
        ClientsCommand::List { environment, limit, starting_after } => {
            if !(1..=100).contains(&limit) {
                bail!("--limit must be between 1 and 100");
            }
            let page = svc
                .list_clients(&Actor::Cli, environment.map(Into::into), &PageRequest { limit, starting_after })
                .await
                .map_err(service_error)?;
            let clients: Vec<ClientOut> = page.items.iter().map(ClientOut::from_record).collect();
            if json {
                let next = if page.has_more { clients.last().map(|c| c.id.clone()) } else { None };
                println!(
                    "{}",
                    serde_json::json!({"object": "list", "data": clients, "has_more": page.has_more, "next_cursor": next})
                );
            } else {
                println!("{:<33}  {:<30}  {:<12}  STATUS", "CLIENT_ID", "NAME", "TYPE");
                for c in &clients {
                    let kind = if c.secret_last4.is_some() { "confidential" } else { "public" };
                    let status = if c.disabled_at.is_some() { "disabled" } else { "active" };
                    println!(
                        "{:<33}  {:<30}  {:<12}  {}",
                        c.id,
                        c.name.chars().take(30).collect::<String>(),
                        kind,
                        status
                    );
                }
                if page.has_more {
                    println!("(more: --starting-after {})", clients.last().map_or("", |c| c.id.as_str()));
                }
            }
        }
        ClientsCommand::Get { id } => {
            let c = ClientOut::from_record(&svc.get_client(&id).await.map_err(service_error)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print_client(&c);
            }
        }
        ClientsCommand::RotateSecret { id, grace } => {
            let grace_secs = parse_duration_secs(&grace).map_err(|e| anyhow!("--grace: {e}"))?;
            let (client, secret) =
                svc.rotate_secret(&Actor::Cli, &meta, &id, grace_secs).await.map_err(service_error)?;
            let out = ClientWithSecret {
                client: ClientOut::from_record(&client),
                client_secret: Some(secret.expose().to_owned()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_secret(&out);
                if let Some(until) = &out.client.previous_secret_expires_at {
                    println!("The previous secret keeps working until {until}.");
                }
            }
        }
        ClientsCommand::Disable { id } => {
            let c = ClientOut::from_record(&svc.disable_client(&Actor::Cli, &meta, &id).await.map_err(service_error)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("Disabled {} ({}). Its tokens stop working now.", c.id, c.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
