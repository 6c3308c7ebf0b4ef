//! `gatehouse signing-key …`: the Ed25519 key that signs identity assertions and JWT access tokens.
//! Rotation works on the data dir or database like every admin command; running servers reload the
//! key set from storage within a second.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use gatehouse_core::time::parse_duration_secs;
use gatehouse_core::Timestamp;
use gatehouse_services::assertion::{self, KeyInfo};
use gatehouse_store::Store;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a fresh key the signing key; the previous one stays in /.well-known/jwks.json for the overlap.
    Rotate {
        /// How long the previous key stays published (e.g. 24h, 3d; at least 5m, at most 30d).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        overlap: String,
    },
    /// The signing key and the retired keys still published, by kid.
    List,
}

fn key_json(k: &KeyInfo) -> serde_json::Value {
    let at = |ms: i64| Timestamp(ms).to_rfc3339();
    serde_json::json!({
        "kid": k.kid,
        "status": if k.published_until.is_none() { "signing" } else { "retired" },
        "activated_at": (k.activated_at > 0).then(|| at(k.activated_at)),
        "published_until": k.published_until.map(at),
    })
}

pub async fn run(cmd: SigningKeyCommand, cfg: &Config, store: Arc<dyn Store>, json: bool) -> Result<ExitCode> {
    let now = Timestamp::now().0;
    match cmd {
        SigningKeyCommand::Rotate { overlap } => {
            let secs = parse_duration_secs(&overlap).map_err(|e| anyhow!("--overlap: {e}"))?;
            let overlap = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            if overlap < assertion::MIN_OVERLAP || overlap > assertion::MAX_OVERLAP {
                bail!(
                    "--overlap: between {} and {} seconds (5 minutes covers an assertion's life; 24 hours, the default, also covers JWT access tokens)",
                    assertion::MIN_OVERLAP.as_secs(),
                    assertion::MAX_OVERLAP.as_secs()
                );
            }
            let set = assertion::rotate_keys(store.as_ref(), &cfg.server.workspace, "cli", overlap).await?;
            let info = set.info();
            if json {
                println!("{}", serde_json::json!({"signing": key_json(&info[0]), "previous": key_json(&info[1])}));
            } else {
                println!("Signing key rotated. New kid: {}.", info[0].kid);
                println!(
                    "The previous key ({}) stays in /.well-known/jwks.json until {}. Running servers switch within {} s.",
                    info[1].kid,
                    Timestamp(info[1].published_until.unwrap_or(now)).to_rfc3339(),
                    assertion::RELOAD_INTERVAL.as_secs()
                );
            }
        }
        SigningKeyCommand::List => {
            let set = assertion::load_keys(store.as_ref()).await?;
            let keys: Vec<KeyInfo> =
                set.info().into_iter().filter(|k| k.published_until.is_none_or(|u| u > now)).collect();
            if json {
                println!("{}", serde_json::json!({"data": keys.iter().map(key_json).collect::<Vec<_>>()}));
            } else {
                for k in &keys {
                    match k.published_until {
                        None => println!("{}  signing", k.kid),
                        Some(u) => println!("{}  retired, published until {}", k.kid, Timestamp(u).to_rfc3339()),
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
