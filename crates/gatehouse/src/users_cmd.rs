//! `gatehouse users …`: the people who sign in at the gateway, managed straight on the data dir
//! (SPEC §1), through the same `Users` the sign-in pages use. Passwords are read from standard input
//! (`--password-stdin`) or generated and shown once; never taken as an argument, where they would
//! end up in shell history and process listings.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::{Subcommand, ValueEnum};
use gatehouse_core::Timestamp;
use gatehouse_services::audit::Actor;
use gatehouse_services::users::Users;
use gatehouse_store::{Store, UserRecord};

use crate::config::Config;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Owner,
    Admin,
    Developer,
    Viewer,
    Member,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Owner => "owner",
            RoleArg::Admin => "admin",
            RoleArg::Developer => "developer",
            RoleArg::Viewer => "viewer",
            RoleArg::Member => "member",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can sign in. The password is read from standard input with
    /// --password-stdin, or generated and shown once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users.
    List,
    /// Disable a user (by id or email): they cannot sign in, and their sessions end at once.
    Disable { user: String },
    /// Let a disabled user sign in again.
    Enable { user: String },
    /// Give a user another role (the last enabled owner keeps theirs); applies to their live sessions at once.
    SetRole {
        user: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Set a new password (read with --password-stdin, or generated and shown once); ends every
    /// session of the user.
    SetPassword {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A password from standard input (its first line), or a generated one to show.
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut input = String::new();
        std::io::stdin().take(4096).read_to_string(&mut input)?;
        let line = input.lines().next().unwrap_or("").to_owned();
        if line.is_empty() {
            bail!("--password-stdin: standard input is empty");
        }
        return Ok((line, false));
    }
    Ok((gatehouse_services::users::generate_password(), true))
}

fn user_json(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "id": u.id,
        "object": "user",
        "email": u.email,
        "role": u.role,
        "created_at": u.created_at.to_rfc3339(),
        "disabled_at": u.disabled_at.map(Timestamp::to_rfc3339),
    })
}

fn print_user(u: &UserRecord, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(&user_json(u)).expect("JSON"));
        return;
    }
    for (label, value) in [
        ("id", u.id.clone()),
        ("email", u.email.clone()),
        ("role", u.role.clone()),
        ("created", u.created_at.to_rfc3339()),
        ("disabled", u.disabled_at.map_or_else(|| "-".into(), Timestamp::to_rfc3339)),
    ] {
        println!("{label:<10}{value}");
    }
}

/// Prints a user and, when it was generated, the password (shown once).
fn print_with_password(u: &UserRecord, password: &str, generated: bool, json: bool) {
    if json {
        let mut v = user_json(u);
        if generated {
            v["password"] = password.into();
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
        return;
    }
    print_user(u, false);
    if generated {
        println!();
        println!("    {password}");
        println!();
        println!("This password is shown once. Gatehouse keeps only its Argon2id hash.");
    }
}

pub async fn run(cmd: UsersCommand, cfg: &Config, store: Arc<dyn Store>, json: bool) -> Result<ExitCode> {
    let users = Users::new(store, cfg.server.workspace.clone());
    let actor = &Actor::Cli.id();
    match cmd {
        UsersCommand::Create { email, role, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            let u = users.create(&email, &pw, role.as_str(), actor).await.map_err(|e| anyhow!(e))?;
            print_with_password(&u, &pw, generated, json);
        }
        UsersCommand::List => {
            let all = users.list().await.map_err(|e| anyhow!("storage: {e}"))?;
            if json {
                let data: Vec<_> = all.iter().map(user_json).collect();
                println!("{}", serde_json::json!({"object": "list", "data": data, "has_more": false}));
            } else {
                println!("{:<30}  {:<40}  {:<6}  STATUS", "ID", "EMAIL", "ROLE");
                for u in &all {
                    let status = if u.disabled_at.is_some() { "disabled" } else { "active" };
                    println!(
                        "{:<30}  {:<40}  {:<6}  {status}",
                        u.id,
                        u.email.chars().take(40).collect::<String>(),
                        u.role
                    );
                }
            }
        }
        UsersCommand::Disable { user } => print_user(&users.disable(&user, actor).await.map_err(|e| anyhow!(e))?, json),
        UsersCommand::Enable { user } => print_user(&users.enable(&user, actor).await.map_err(|e| anyhow!(e))?, json),
        UsersCommand::SetRole { user, role } => {
            print_user(&users.set_role(&Actor::Cli, &user, role.as_str()).await.map_err(|e| anyhow!(e))?, json)
        }
        UsersCommand::SetPassword { user, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            let u = users.set_password(&user, &pw, actor).await.map_err(|e| anyhow!(e))?;
            print_with_password(&u, &pw, generated, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}
