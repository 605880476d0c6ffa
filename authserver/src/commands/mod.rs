//! Subcommands. Each loads settings the same way, so they all reach the same database.

pub(crate) mod clients;
pub(crate) mod keys;
mod purge;
pub(crate) mod serve;
pub(crate) mod users;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::cache::Epoch;
use crate::cli::{Cli, Command};
use crate::clients::ClientService;
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Settings, Source};
use crate::crypto::kek::Kek;
use crate::keys::KeyService;
use crate::mfa::MfaService;
use crate::store::{Backend, Store};
use crate::users::UserService;

/// Exit code for configuration errors (`check-config`, bad flags).
pub const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let source = Source {
        config_file: cli.global.config.clone(),
        dev: cli.global.dev,
        data_dir: Some(cli.global.data_dir.clone()),
        listen: cli.global.listen.clone(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let settings = match config::load(&source, &env) {
        Ok(s) => s,
        Err(e) => {
            for p in e.problems() {
                eprintln!("{p}");
            }
            eprintln!(
                "configuration is invalid ({} problem(s))",
                e.problems().len()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if matches!(cli.command, Command::CheckConfig) {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    let _telemetry =
        match crate::telemetry::init(&settings.log_level, settings.log_format, otlp.as_deref()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("failed to set up logging: {e:#}");
                return ExitCode::FAILURE;
            }
        };
    let result = match cli.command {
        // Boxed: the server's start-up state is large for a future on the stack.
        Command::Serve => Box::pin(serve::run(settings)).await,
        Command::Migrate => migrate(&settings).await,
        Command::Keys(k) => keys::run(&settings, k).await,
        Command::Clients(c) => clients::run(&settings, c).await,
        Command::Users(u) => users::run(&settings, u).await,
        Command::Purge(p) => purge::run(&settings, p).await,
        Command::CheckConfig => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bad input on the command line (exit code 2, like configuration errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// What a command needs to work on the database.
#[derive(Clone)]
pub(crate) struct Context {
    pub settings: Settings,
    pub store: Store,
    pub kek: Arc<Kek>,
    pub keys: Arc<KeyService>,
    pub clients: Arc<ClientService>,
    pub users: Arc<UserService>,
    pub mfa: Arc<MfaService>,
    pub clock: Arc<dyn Clock>,
    pub epoch: Epoch,
    /// The bounded fetcher for everything the server downloads.
    pub outbound: Arc<crate::outbound::Fetcher>,
}

/// The ENCRYPTION_KEY: configured, read from `encryption.key_file`, or in `--dev` the
/// data dir's key file (created once).
fn encryption_key(settings: &Settings) -> anyhow::Result<SecretString> {
    if let Some(k) = &settings.encryption_key {
        return Ok(k.clone());
    }
    if let Some(path) = &settings.encryption_key_file {
        return read_key_file(path).map_err(|e| anyhow::anyhow!(e));
    }
    let dir = settings
        .data_dir
        .as_deref()
        .context("ENCRYPTION_KEY is not set")?;
    dev_key_file(dir)
}

/// The ENCRYPTION_KEY in `path` (`encryption.key_file`), or why it is not usable yet.
/// Never echoes the file's content.
pub(crate) fn read_key_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "waiting for the ENCRYPTION_KEY: {} does not exist yet (its Secret is missing; the operator creates it, or bring your own)",
                path.display()
            )
        } else {
            format!("cannot read the ENCRYPTION_KEY file {}: {e}", path.display())
        }
    })?;
    let key = text.trim();
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the ENCRYPTION_KEY in {} must be 64 hexadecimal characters",
            path.display()
        ));
    }
    Ok(SecretString::from(key.to_owned()))
}

fn dev_key_file(dir: &Path) -> anyhow::Result<SecretString> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

    let path = dir.join("encryption.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read dev key file {}", path.display()))?;
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create data dir {}", dir.display()))?;
    let key = Kek::generate_hex();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create dev key file {}", path.display()))?;
    f.write_all(secrecy::ExposeSecret::expose_secret(&key).as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "DEVELOPMENT MODE: generated a new ENCRYPTION_KEY and stored it in plain text next to the database. \
         Never use --dev in production; losing this file makes the stored private keys unreadable."
    );
    Ok(key)
}

/// Connects and makes sure the schema is usable. SQLite is embedded and single-node, so
/// it is migrated in place; PostgreSQL is migrated only by `authserver migrate` (the
/// migration Job), and other commands refuse to run against an older schema.
pub(crate) async fn open(settings: Settings, auto_migrate: bool) -> anyhow::Result<Context> {
    open_with_clock(settings, auto_migrate, Arc::new(SystemClock)).await
}

/// [`open`] with the clock every service reads (a fixed one in tests).
pub(crate) async fn open_with_clock(
    settings: Settings,
    auto_migrate: bool,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Context> {
    let kek = Arc::new(Kek::from_hex(&encryption_key(&settings)?)?);
    let store = Store::connect(&settings.database)
        .await
        .context("failed to connect to the database (database.url)")?;
    if auto_migrate && store.backend() == Backend::Sqlite {
        let applied = store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "applied SQLite migrations");
        }
    }
    let epoch = Epoch::new(Arc::clone(store.health()), Arc::clone(store.revocations()));
    let keys = Arc::new(KeyService::new(
        store.clone(),
        Arc::clone(&kek),
        settings.keys.clone(),
        Arc::clone(&clock),
        &epoch,
    ));
    let clients = Arc::new(ClientService::new(
        store.clone(),
        &kek,
        Arc::clone(&clock),
        settings.keys.algorithms.clone(),
        &epoch,
        settings.cache.max_stale_during_outage,
    ));
    let outbound = Arc::new(
        crate::outbound::Fetcher::new(&settings.outbound)
            .context("failed to build the outbound HTTP client")?,
    );
    let users = Arc::new(UserService::new(
        store.clone(),
        Arc::clone(&clock),
        settings.passwords.clone(),
        Arc::clone(&outbound),
        settings.sessions.revoke_on_credential_reset,
    ));
    let mfa = Arc::new(MfaService::new(
        store.clone(),
        Arc::clone(&kek),
        Arc::clone(&clock),
        settings.sessions.revoke_on_credential_reset,
    ));
    Ok(Context {
        settings,
        store,
        kek,
        keys,
        clients,
        users,
        mfa,
        clock,
        epoch,
        outbound,
    })
}

/// Fails unless every migration this binary knows has been applied.
pub(crate) async fn require_current_schema(store: &Store) -> anyhow::Result<()> {
    let status = store.schema_status().await?;
    if !status.is_current() {
        let missing: Vec<String> = status.pending.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "database schema is behind this binary (missing migration(s) {}): run `authserver migrate` first",
            missing.join(", ")
        );
    }
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database)
        .await
        .context("failed to connect to the database (database.url)")?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        for m in &applied {
            println!("applied {m}");
        }
        println!("schema up to date ({} migration(s) applied)", applied.len());
    }
    store.close().await;
    Ok(())
}
