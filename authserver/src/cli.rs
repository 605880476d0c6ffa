//! Command line. Database options are global so every subcommand runs against the same
//! database `serve` uses: `authserver keys list --dev --data-dir ./data`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Gatehouse auth server: OpenID Connect / OAuth 2.0 identity provider.
#[derive(Debug, Parser)]
#[command(name = "authserver", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where configuration and data come from.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// YAML configuration file; environment variables override it.
    #[arg(long, global = true, env = "GATEHOUSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Development mode: SQLite in the data dir, a generated ENCRYPTION_KEY, http issuer.
    #[arg(long, global = true)]
    pub dev: bool,
    /// Data directory for --dev (SQLite database and dev encryption key).
    #[arg(long, global = true, value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on (default 127.0.0.1:8080 in --dev, else 0.0.0.0:8080).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the protocol endpoints.
    Serve,
    /// Apply pending database migrations (idempotent; safe to run concurrently).
    Migrate,
    /// Validate the configuration and print every problem.
    CheckConfig,
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create keys for every configured algorithm a tenant has no key for.
    Generate {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Rotate now: a new pending key per algorithm; the old one retires after the overlap.
    Rotate {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Rotate only algorithms whose key is older than the rotation interval (for cron).
        #[arg(long)]
        if_due: bool,
    },
    /// List keys with their state and times.
    List {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every private key under the current ENCRYPTION_KEY.
    Reencrypt {
        /// Name of the environment variable holding the previous ENCRYPTION_KEY.
        #[arg(long, value_name = "VAR")]
        old_key_env: String,
    },
}
