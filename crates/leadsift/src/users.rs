//! `leadsift users`: the people who log in to the web UI.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use leadsift_core::Role;

use crate::app::connect_store;
use crate::config::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from standard input (one line) or LEADSIFT_PASSWORD.
    Add {
        username: String,
        /// viewer (dashboards, reports), manager (leads), admin (rules, lists, settings).
        #[arg(long)]
        role: Role,
    },
    /// Change a user's role, password (--password: read like `add`), or access; ends their sessions.
    Set {
        username: String,
        #[arg(long)]
        role: Option<Role>,
        #[arg(long)]
        password: bool,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("LEADSIFT_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn users(settings: &Settings, command: UsersCommand) -> anyhow::Result<ExitCode> {
    let store = connect_store(settings).await?;
    let mut out = std::io::stdout().lock();
    match command {
        UsersCommand::Add { username, role } => {
            anyhow::ensure!(
                leadsift_core::access::valid_username(&username),
                "user name {username:?}: use 1-64 letters, digits, '.', '_', '-' or '@'"
            );
            let password = read_password()?;
            let hash = tokio::task::spawn_blocking(move || leadsift_web::auth::hash_password(&password)).await??;
            let user = store.create_user(&username, &hash, role, Utc::now()).await?;
            writeln!(out, "user {} added as {}", user.username, user.role)?;
        }
        UsersCommand::Set { username, role, password, disable, enable } => {
            let hash = if password {
                let password = read_password()?;
                Some(tokio::task::spawn_blocking(move || leadsift_web::auth::hash_password(&password)).await??)
            } else {
                None
            };
            let disabled = if disable {
                Some(true)
            } else if enable {
                Some(false)
            } else {
                None
            };
            anyhow::ensure!(
                role.is_some() || hash.is_some() || disabled.is_some(),
                "nothing to change: give --role, --password, --disable or --enable"
            );
            let user = store.update_user(&username, hash.as_deref(), role, disabled, Utc::now()).await?;
            writeln!(
                out,
                "user {}: {}{}; their sessions ended",
                user.username,
                user.role,
                if user.disabled { ", disabled" } else { "" }
            )?;
        }
        UsersCommand::List { json } => {
            for user in store.users().await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&user)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<24} {:<8} {}",
                        user.username,
                        user.role,
                        if user.disabled { "disabled" } else { "active" }
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
