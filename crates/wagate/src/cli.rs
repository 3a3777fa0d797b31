//! The command line: `serve`, and account/key administration on the same data directory.
//!
//! Only `serve` (and `account create --init`) creates the data directory: an
//! administration command run in the wrong directory must say so, not quietly start an
//! empty database that the server never reads. Every administration command prints one
//! line of JSON.

use crate::app::{self, AppParts};
use crate::config::Config;
use crate::service::{AccountService, ServiceError};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use wagate_core::store::Store;
use wagate_core::{AccountId, ApiKeyId};

#[derive(Debug, Parser)]
#[command(
    name = "wagate",
    version,
    about = "Self-hosted WhatsApp messaging gateway"
)]
pub struct Cli {
    /// A TOML configuration file (also WAGATE_CONFIG).
    #[arg(long, global = true, env = "WAGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database, media and device keys live (default ./wagate-data).
    #[arg(long, global = true, env = "WAGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database: a postgres:// URL (default: SQLite in the data directory).
    #[arg(
        long,
        global = true,
        env = "WAGATE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "WAGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// This node's name in a cluster (default: made once, kept in the data directory).
    #[arg(long, env = "WAGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Talk to an in-process FAKE WhatsApp server instead of WhatsApp (demos, benchmarks);
    /// a simulated phone scans every QR code. Only in builds with the `simulator` feature.
    #[cfg(feature = "simulator")]
    #[arg(long)]
    pub simulator: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account and its first API key; prints {"accountId","apiKey"}.
    Create {
        #[arg(long)]
        name: String,
        /// Create the data directory if it does not exist yet (normally `serve` does).
        #[arg(long)]
        init: bool,
    },
    /// List accounts (id, name, creation time).
    List,
    /// Manage an account's API keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another key (at most two active); prints it once.
    Create {
        #[arg(long)]
        account: String,
    },
    /// List keys (prefix only).
    List {
        #[arg(long)]
        account: String,
    },
    /// Revoke a key.
    Revoke {
        #[arg(long)]
        account: String,
        #[arg(long)]
        key: String,
    },
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            config.database_url = Some(crate::config::DatabaseUrl(u.clone()));
        }
        if let Command::Serve(args) = &self.command {
            if let Some(l) = args.listen {
                config.listen = l;
            }
            if let Some(n) = &args.node_id {
                config.node_id = Some(n.clone());
            }
        }
        Ok(config)
    }
}

/// One line of JSON, so the output reads as the README shows it and pipes into `jq`.
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(v)?)?;
    Ok(())
}

fn parse_account(s: &str) -> anyhow::Result<AccountId> {
    AccountId::parse(s).map_err(|_| anyhow::anyhow!("--account must be an account id (acc_…)"))
}

/// The account named by `--account`, which must exist.
async fn existing_account(accounts: &AccountService, s: &str) -> anyhow::Result<AccountId> {
    let id = parse_account(s)?;
    match accounts.get_account(&id).await {
        Ok(account) => Ok(account.id),
        Err(ServiceError::NotFound(_)) => Err(anyhow::anyhow!(
            "no such account: {id} (`wagate account list` shows them)"
        )),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// Refuses to administer a SQLite data directory that does not exist (or has no
/// database): opening it would create an empty one the server never reads.
fn require_data_dir(config: &Config) -> anyhow::Result<()> {
    // On PostgreSQL the database is the server's, wherever this runs; a database_url of
    // another kind is refused here, naming the option, before any path is looked at.
    match config.database().map_err(anyhow::Error::msg)? {
        crate::config::DatabaseKind::Postgres(_) => return Ok(()),
        crate::config::DatabaseKind::Sqlite(_) => {}
    }
    let db = config.database_path();
    if db.is_file() {
        return Ok(());
    }
    let shown = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    anyhow::bail!(
        "no wagate data directory at {} (it has no {}): run this where `wagate serve` runs, \
         pass the server's --data-dir (or WAGATE_DATA_DIR), or create it with \
         `wagate account create --init`",
        shown.display(),
        db.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    match cli.command {
        #[cfg(feature = "simulator")]
        Command::Serve(ServeArgs {
            simulator: true, ..
        }) => {
            crate::telemetry::init(config.log_format);
            crate::simulator::warn_not_whatsapp();
            let sim = crate::simulator::Simulator::new();
            let web = crate::simulator::web_tweak(&config, &sim)?;
            let running = app::start(
                config,
                AppParts {
                    web: Some(web),
                    ..AppParts::default()
                },
            )
            .await?;
            let stop = tokio_util::sync::CancellationToken::new();
            let phones =
                crate::simulator::spawn_phones(running.services.clone(), sim, stop.clone());
            running.run_until_signal().await;
            stop.cancel();
            let _ = phones.await;
        }
        Command::Serve(_) => {
            crate::telemetry::init(config.log_format);
            let running = app::start(config, AppParts::default()).await?;
            running.run_until_signal().await;
        }
        Command::Account(cmd) => {
            if !matches!(cmd, AccountCommand::Create { init: true, .. }) {
                require_data_dir(&config)?;
            }
            let store: Arc<dyn Store> = app::open_store(&config).await?;
            let accounts = AccountService::new(store);
            match cmd {
                AccountCommand::List => {
                    let all = accounts
                        .list_accounts()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    print_json(&serde_json::to_value(all).context("listing accounts")?)?;
                }
                AccountCommand::Create { name, .. } => {
                    let (account, key) = accounts
                        .create_account(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    print_json(
                        &serde_json::json!({ "accountId": account.id.to_string(), "apiKey": key.secret }),
                    )?;
                }
                AccountCommand::Key(KeyCommand::Create { account }) => {
                    let account = existing_account(&accounts, &account).await?;
                    let key = accounts
                        .create_key(&account)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    print_json(
                        &serde_json::json!({ "id": key.key.id.to_string(), "apiKey": key.secret }),
                    )?;
                }
                AccountCommand::Key(KeyCommand::List { account }) => {
                    let account = existing_account(&accounts, &account).await?;
                    let keys = accounts
                        .list_keys(&account)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    print_json(&serde_json::to_value(keys).context("listing keys")?)?;
                }
                AccountCommand::Key(KeyCommand::Revoke { account, key }) => {
                    let account = existing_account(&accounts, &account).await?;
                    let key = ApiKeyId::parse(&key)
                        .map_err(|_| anyhow::anyhow!("--key must be a key id (key_…)"))?;
                    accounts
                        .revoke_key(&account, &key)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    print_json(&serde_json::json!({ "id": key.to_string(), "revoked": true }))?;
                }
            }
        }
    }
    Ok(())
}
