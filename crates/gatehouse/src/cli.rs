//! Command-line shape and dispatch (SPEC §1).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use gatehouse_store::{SqlStore, StoreOptions};

use crate::config::{self, Config, Flags, LogFormat};
use crate::keys_cmd::KeysCommand;

/// Gatehouse: private by default. API keys, sessions, OAuth and signed webhooks in one binary.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database lives here). Default: ./.gatehouse
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without it, SQLite in the data directory.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Spacefile app locally: start its micros, put the gateway in front, serve the control plane.
    Up {
        /// The app's directory (holding the Spacefile). Default: the current directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the app is served. Default 127.0.0.1:4480
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where the control plane is served. Default 127.0.0.1:4455
        #[arg(long, value_name = "ADDR")]
        control_plane: Option<String>,
    },
    /// Run the control plane, and the gateway for the apps in the config file.
    Serve {
        /// Control-plane address. Default 127.0.0.1:4455
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create, list, revoke, roll and verify API keys (works with no server running).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OAuth clients: register, list, rotate secrets, disable (works with no server running).
    #[command(subcommand)]
    Oauth(crate::oauth_cmd::OAuthCommand),
    /// People who sign in: create, list, disable, enable, set a password (works with no server running).
    #[command(subcommand)]
    Users(crate::users_cmd::UsersCommand),
    /// Webhook tools.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// The key that signs identity assertions and JWT access tokens: rotate, list (works with no server running).
    #[command(subcommand)]
    SigningKey(crate::signing_key_cmd::SigningKeyCommand),
    /// Find Gatehouse credentials in files, or with --git in a repository's whole history; with the
    /// store, tell each one's status, and with --revoke revoke the active keys.
    /// Exit code 0: nothing found; 1: something found; 2: error.
    Scan(crate::scan::ScanArgs),
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Webhook endpoints: create, list, roll-secret, disable, enable (works with no server running).
    #[command(subcommand)]
    Endpoints(crate::webhooks_cmd::EndpointsCommand),
    /// Queue an event again for every endpoint that wants it.
    Resend {
        id: String,
        #[arg(long = "env", value_enum, default_value = "live")]
        environment: crate::keys_cmd::EnvArg,
    },
    /// Verify a delivery's signature: the raw body on standard input, the header's value as --header.
    /// Exits 0 when valid, 1 when not (with the reason).
    Verify {
        /// A signing secret (`whsec_…`); repeat during a rotation.
        #[arg(long = "secret", required = true)]
        secrets: Vec<String>,
        /// The `Gatehouse-Signature` header value: t=…,v1=…
        #[arg(long)]
        header: String,
        /// Accept timestamps this many seconds from now.
        #[arg(long, default_value_t = gatehouse_webhook::DEFAULT_TOLERANCE_SECS)]
        tolerance: u64,
        /// Check at this Unix time instead of now (to replay a captured delivery).
        #[arg(long)]
        now: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and Spacefiles (./Spacefile if present, and every configured app's).
    Check {
        /// A Spacefile to check as well.
        #[arg(long, value_name = "PATH")]
        spacefile: Option<PathBuf>,
    },
}

impl GlobalArgs {
    fn flags(&self, listen: Option<String>) -> Flags {
        Flags {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            listen,
            gateway_listen: None,
        }
    }
}

/// Opens the configured store, creating the data dir for SQLite.
pub async fn open_store(cfg: &Config) -> Result<SqlStore> {
    if cfg.database_url.is_none() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    }
    SqlStore::open(&cfg.store_location(), &StoreOptions::default())
        .await
        .with_context(|| format!("cannot open storage ({})", cfg.store_display()))
}

fn init_logging(cfg: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(format!("{},sqlx=warn", cfg.log_level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    cfg.log_warnings();
}

/// Runs an admin command on the configured store and closes the store afterwards, whatever the outcome.
macro_rules! with_store {
    ($global:expr, |$cfg:ident, $store:ident| $run:expr) => {{
        let $cfg = config::load(&$global.flags(None))?;
        let opened = open_store(&$cfg).await?;
        let $store: Arc<dyn gatehouse_store::Store> = Arc::new(opened.clone());
        let code = $run.await;
        opened.close().await;
        code
    }};
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let json = cli.global.json;
    match cli.command {
        Command::Up { dir, listen, control_plane } => {
            let mut flags = cli.global.flags(control_plane);
            flags.gateway_listen = listen;
            if flags.data_dir.is_none() && std::env::var_os("GATEHOUSE_DATA_DIR").is_none() {
                flags.data_dir = Some(dir.join(".gatehouse"));
            }
            let cfg = config::load(&flags)?;
            init_logging(&cfg);
            let store = open_store(&cfg).await?;
            crate::up::up(cfg, dir, Arc::new(store)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let cfg = config::load(&cli.global.flags(listen))?;
            init_logging(&cfg);
            let apps = crate::up::configured_apps(&cfg)?;
            let store = open_store(&cfg).await?;
            let banner = vec![format!("Gatehouse · {} app(s)", apps.len())];
            let mut banner = banner;
            for a in &apps {
                banner.push(format!(
                    "  app        {} on {} (gateway {})",
                    a.name,
                    a.hosts.join(", "),
                    cfg.gateway_listen
                ));
            }
            banner.push(format!("  API docs   {}/openapi.json", cfg.server.public_url));
            crate::up::run_platform(&cfg, Arc::new(store), apps, banner, vec![]).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let cfg = config::load(&cli.global.flags(None))?;
            let store = open_store(&cfg).await?;
            println!("Migrations applied ({}).", cfg.store_display());
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { spacefile }) => {
            let cfg = config::load(&cli.global.flags(None))?;
            let mut files: Vec<PathBuf> = cfg.apps.iter().map(|a| a.spacefile.clone()).collect();
            files.extend(spacefile);
            if files.is_empty() && std::path::Path::new("Spacefile").is_file() {
                files.push(PathBuf::from("Spacefile"));
            }
            let mut problems = vec![];
            // The apps an `[access.<app>]` may name: the `[[apps]]`, and the app `up` would serve from
            // each other Spacefile checked.
            let mut names: Vec<String> = cfg.apps.iter().map(|a| a.name.clone()).collect();
            for (i, f) in files.iter().enumerate() {
                match crate::up::load_spacefile(f) {
                    Ok(sf) if i >= cfg.apps.len() => {
                        names.push(crate::up::app_name(f.parent().unwrap_or(std::path::Path::new(".")), &sf));
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(e) = config::check_access_names(cfg.config_file.as_deref(), &cfg.server.access, &names) {
                problems.push(format!("{e:#}"));
            }
            if !problems.is_empty() {
                anyhow::bail!("{}", problems.join("\n"));
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "storage": cfg.store_display(), "listen": cfg.listen.to_string()})
                );
            } else {
                println!("Configuration is valid. Storage: {}. Listen: {}.", cfg.store_display(), cfg.listen);
                for f in &files {
                    println!("Spacefile {} is valid.", f.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhooks(WebhooksCommand::Endpoints(cmd)) => {
            with_store!(cli.global, |cfg, store| crate::webhooks_cmd::endpoints(cmd, &cfg, store, json))
        }
        Command::Webhooks(WebhooksCommand::Resend { id, environment }) => {
            with_store!(cli.global, |cfg, store| crate::webhooks_cmd::resend(id, environment, &cfg, store, json))
        }
        Command::Webhooks(WebhooksCommand::Verify { secrets, header, tolerance, now }) => {
            use std::io::Read;
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read the body from standard input")?;
            let now = now.unwrap_or_else(|| gatehouse_core::Timestamp::now().unix_seconds());
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            match gatehouse_webhook::verify(&header, &body, &refs, now, tolerance) {
                Ok(()) => {
                    if json {
                        println!("{}", serde_json::json!({"valid": true}));
                    } else {
                        println!("valid");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if json {
                        println!("{}", serde_json::json!({"valid": false, "reason": e.to_string()}));
                    } else {
                        println!("invalid: {e}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Scan(args) => Ok(crate::scan::run(args, config::load(&cli.global.flags(None)), json).await),
        Command::Keys(cmd) => with_store!(cli.global, |cfg, store| crate::keys_cmd::run(cmd, &cfg, store, json)),
        Command::Oauth(cmd) => with_store!(cli.global, |cfg, store| crate::oauth_cmd::run(cmd, &cfg, store, json)),
        Command::Users(cmd) => with_store!(cli.global, |cfg, store| crate::users_cmd::run(cmd, &cfg, store, json)),
        Command::SigningKey(cmd) => {
            with_store!(cli.global, |cfg, store| crate::signing_key_cmd::run(cmd, &cfg, store, json))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
