//! Configuration: a YAML file, overridden by environment variables, validated once into
//! typed [`Settings`]. Every problem is reported with the path of the field it concerns,
//! so `authserver check-config` can list them all at once.

mod env;
mod file;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

pub use env::{ENV_OVERRIDES, EnvOverride};
pub use file::FileConfig;
pub use validate::Problem;

use crate::domain::signing_key::{Algorithm, KeyPolicy};
use crate::domain::tenant::TenantSpec;

/// Options every subcommand shares: where the configuration and the database are.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub config_file: Option<PathBuf>,
    pub dev: bool,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

/// Default data directory for `--dev`.
pub const DEFAULT_DEV_DATA_DIR: &str = "./data";
/// Default listen address in `--dev`: loopback only.
pub const DEFAULT_DEV_LISTEN: &str = "127.0.0.1:8080";
/// Default listen address in production: all interfaces (a pod).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Validated, typed settings passed down to every component.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dev: bool,
    pub data_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The operations listener (`/healthz`, `/readyz`, `/metrics`); when set, the public
    /// listener no longer serves `/metrics` (see `http::PublicOps`).
    pub ops_listen: Option<SocketAddr>,
    pub shutdown_timeout_seconds: u64,
    /// After SIGTERM: how long `serve` keeps serving with `/readyz` failing, so load
    /// balancers stop routing here before the listener closes.
    pub shutdown_delay_seconds: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub database: DatabaseSettings,
    /// `None` only in `--dev` before the dev key file is created (see `crate::commands`).
    pub encryption_key: Option<SecretString>,
    /// A file holding the ENCRYPTION_KEY (a mounted Secret): `serve` waits, unready,
    /// until it exists.
    pub encryption_key_file: Option<PathBuf>,
    pub tenants: Vec<TenantSpec>,
    pub keys: KeyPolicy,
    pub log_level: String,
    pub log_format: LogFormat,
    pub metrics_prefix: String,
    pub tokens: TokenSettings,
    pub dpop: DpopSettings,
    pub rate_limits: RateLimitSettings,
    pub admin: AdminSettings,
    pub audit_retention_days: u64,
    pub purge: PurgeSettings,
    pub passwords: PasswordSettings,
    pub login: LoginSettings,
    pub cache: CacheSettings,
    /// Settings given for tenants in the file (`tenants[].settings`), by tenant id,
    /// already checked as a `TenantPolicy`; written to the tenant rows at start-up.
    pub tenant_settings: Vec<(String, serde_json::Value)>,
    pub ui: UiSettings,
    pub sessions: SessionSettings,
    pub outbound: OutboundSettings,
    pub email: EmailSettings,
    /// `geoip.database`: a MaxMind-format database (GeoLite2/GeoIP2 Country or City);
    /// `serve` opens it at start-up and refuses to start when it cannot.
    pub geoip_database: Option<PathBuf>,
}

/// `email.*`: outgoing mail. Without `smtp_host` the e-mail flows are off (their pages
/// answer 404) and nothing is queued.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub smtp: Option<Box<SmtpSettings>>,
    /// The sender of every message whose tenant names none (`email.from` in the tenant
    /// policy), e.g. `Gatehouse <no-reply@example.com>`.
    pub from: String,
    /// How often each pod looks for due mail in the outbox.
    pub poll_interval: std::time::Duration,
    /// Attempts per message before it is given up (kept as failed until purged).
    pub max_attempts: u32,
    /// Mail of one kind to one address per hour at most; further requests are answered
    /// the same but send nothing (no mail bombing through the reset form).
    pub per_address_per_hour: u32,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            smtp: None,
            from: "Gatehouse <no-reply@localhost>".to_owned(),
            poll_interval: std::time::Duration::from_secs(5),
            max_attempts: 8,
            per_address_per_hour: 5,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required, port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or network, and tests.
    Plain,
}

/// `email.smtp_*`
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password for SMTP AUTH (PLAIN or LOGIN), both or neither.
    pub credentials: Option<(String, SecretString)>,
    pub timeout: std::time::Duration,
}

/// `ui.*`: the login pages.
#[derive(Debug, Clone, Default)]
pub struct UiSettings {
    /// Directory whose `<name>.html` files replace the embedded templates.
    pub templates_dir: Option<PathBuf>,
    /// Directory whose `<language>.ftl` files override or add message catalogues.
    pub locales_dir: Option<PathBuf>,
}

/// `sessions.*`: browser sessions (timeouts and bindings are tenant policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Most accounts signed in at once in one browser (account chooser).
    pub max_accounts: usize,
    /// Encrypt `browser_sessions.data` with AES-256-GCM under a key derived from
    /// `ENCRYPTION_KEY`.
    pub encrypt_data: bool,
    /// Setting a password or removing a second factor (by an administrator) ends the
    /// user's sessions and revokes their refresh tokens.
    pub revoke_on_credential_reset: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_accounts: 5,
            encrypt_data: false,
            revoke_on_credential_reset: true,
        }
    }
}

/// `tokens.*`
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Default access token signing algorithm (clients may override).
    pub access_token_alg: Algorithm,
    /// Default ID token signing algorithm (clients may override).
    pub id_token_alg: Algorithm,
    /// Longest `exp - now` accepted on a private_key_jwt client assertion.
    pub client_assertion_max_lifetime_seconds: u64,
    /// Also accept the token endpoint URL (not only the issuer) as an assertion's `aud`.
    pub client_assertion_accept_endpoint_audience: bool,
}

/// `passwords.*`: hashing parameters and the policy applied whenever a password is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSettings {
    pub argon2: Argon2Params,
    /// Shortest accepted password, in characters.
    pub min_length: usize,
    /// Longest accepted password, in characters: bounds the work one request can cause.
    pub max_length: usize,
    pub breached: BreachPolicy,
    /// Have I Been Pwned range API base URL (`{base}/range/{prefix}`).
    pub hibp_base_url: String,
    pub hibp_timeout_seconds: u64,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            argon2: Argon2Params::OWASP,
            min_length: 8,
            max_length: 128,
            breached: BreachPolicy::Reject,
            hibp_base_url: DEFAULT_HIBP_BASE_URL.to_owned(),
            hibp_timeout_seconds: 3,
        }
    }
}

/// `login.*`: sign-in throttling (see `crate::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// Failed sign-ins per username within the window before it is locked.
    pub max_failures: u32,
    /// Failed sign-ins per client address (IPv6: per /64) within the window before it
    /// is locked.
    pub max_failures_per_ip: u32,
    pub failure_window_seconds: u64,
    pub lockout_seconds: u64,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_ip: 50,
            failure_window_seconds: 900,
            lockout_seconds: 900,
        }
    }
}

/// Default Have I Been Pwned range API.
pub const DEFAULT_HIBP_BASE_URL: &str = "https://api.pwnedpasswords.com";

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's recommended Argon2id configuration (m=19 MiB, t=2, p=1).
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

/// What to do with a password found in a known breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachPolicy {
    Reject,
    Warn,
}

/// `dpop.*` (RFC 9449)
#[derive(Debug, Clone)]
pub struct DpopSettings {
    pub algorithms: Vec<Algorithm>,
    pub require_nonce: bool,
    pub proof_max_age_seconds: u64,
    pub nonce_lifetime_seconds: u64,
}

/// `rate_limits.*`: fixed windows per client and per source IP.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub window_seconds: u64,
    pub token_per_client: u64,
    pub token_per_ip: u64,
    pub introspection_per_client: u64,
    pub introspection_per_ip: u64,
    pub revocation_per_client: u64,
    pub revocation_per_ip: u64,
    pub par_per_client: u64,
    pub par_per_ip: u64,
    pub authorize_per_client: u64,
    pub authorize_per_ip: u64,
    pub login_per_ip: u64,
    /// The e-mail pages (password reset, registration, verification resend) per
    /// source IP.
    pub email_per_ip: u64,
    /// Management API calls per calling client per window, by tier.
    pub management_read_per_client: u64,
    pub management_write_per_client: u64,
    pub management_delete_per_client: u64,
    pub management_sensitive_per_client: u64,
    /// Shared counters across pods; per-pod memory when unset. May hold a password.
    pub redis_url: Option<SecretString>,
}

/// Where a secret comes from: the configuration itself, or a file (a mounted Secret)
/// that is read again while the process runs, so rotating it needs no restart.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Value(SecretString),
    File(PathBuf),
}

/// `admin.*`: the admin gRPC API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Bearer token; `None` disables the admin API.
    pub token: Option<SecretSource>,
    /// Serve TLS with this certificate chain and key instead of plaintext.
    pub tls: Option<AdminTls>,
}

/// `admin.tls_cert_file` and `admin.tls_key_file`: PEM files (a mounted
/// `kubernetes.io/tls` Secret), read again while running so a renewed certificate is
/// served without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Database connection settings.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`; contains the password, so never log it.
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_seconds: u64,
    /// How long `serve` and the CLI keep retrying an unreachable database at start.
    pub startup_timeout_seconds: u64,
    /// How long a request waits for a connection before the database counts as
    /// unavailable (see `store::health`).
    pub acquire_timeout_ms: u64,
}

/// Default of `database.acquire_timeout_ms`.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 1000;

/// `purge.*`: how fast `authserver purge` deletes, so that it does not compete with
/// live traffic for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeSettings {
    /// Rows per `DELETE` statement.
    pub batch_size: u32,
    /// Pause after each full batch, before the next one.
    pub batch_pause: std::time::Duration,
    /// Remembered devices not seen for this many days (and no longer trusted) are
    /// forgotten (target `devices`).
    pub device_retention_days: u32,
}

/// Default of `purge.batch_size`.
pub const DEFAULT_PURGE_BATCH_SIZE: u32 = 1000;
/// Default of `purge.batch_pause_ms`.
pub const DEFAULT_PURGE_BATCH_PAUSE_MS: u64 = 100;
/// Default of `purge.device_retention_days`.
pub const DEFAULT_DEVICE_RETENTION_DAYS: u32 = 180;

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_PURGE_BATCH_SIZE,
            batch_pause: std::time::Duration::from_millis(DEFAULT_PURGE_BATCH_PAUSE_MS),
            device_retention_days: DEFAULT_DEVICE_RETENTION_DAYS,
        }
    }
}

/// `cache.*`: what the per-pod caches may still serve while the database is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// While the database is unavailable, a client read from it at most this long ago is
    /// still served from memory (client_credentials keeps working); zero: never.
    pub max_stale_during_outage: std::time::Duration,
    /// Most access tokens a pod remembers as verified and active (introspection and
    /// userinfo skip the signature check and the database for them); zero: none.
    pub verified_tokens: usize,
}

/// Most entries `cache.verified_tokens` may ask for (about 1 KiB each).
pub const MAX_VERIFIED_TOKENS: usize = 1_000_000;

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_stale_during_outage: std::time::Duration::from_mins(1),
            verified_tokens: 10_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `outbound.*`: the bounded fetcher for everything the server downloads (see
/// `crate::outbound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Internal networks that may be fetched anyway (loopback, private, link-local are
    /// refused otherwise). `--dev` adds loopback.
    pub allowed_networks: Vec<IpNet>,
    /// Plain `http` URLs may be fetched (`--dev` only, by default).
    pub allow_http: bool,
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allowed_networks: Vec::new(),
            allow_http: false,
            connect_timeout_seconds: 3,
            timeout_seconds: 5,
        }
    }
}

/// An IP network in CIDR notation, for `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = if let Some((a, p)) = s.split_once('/') {
            (a.parse().ok()?, p.parse().ok()?)
        } else {
            let a: std::net::IpAddr = s.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        match (self.addr, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The individual problems, for `check-config`.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Error::Read { .. } => vec![self.to_string()],
            Error::Invalid(p) => p.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Loads the file (if any), applies environment overrides from `env`, and validates.
/// `env` is a lookup function so tests need not touch the process environment.
pub fn load(source: &Source, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let text = match &source.config_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.clone(),
            source: e,
        })?,
        None => String::new(),
    };
    from_yaml(&text, source, env)
}

/// Same as [`load`] with the YAML text given directly.
pub fn from_yaml(
    text: &str,
    source: &Source,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Error> {
    let mut tree: serde_yaml::Value = if text.trim().is_empty() {
        serde_yaml::Value::Mapping(serde_yaml::Mapping::new())
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            Error::Invalid(vec![Problem::new(
                e.location().map_or_else(
                    || "(file)".to_owned(),
                    |l| format!("(line {}, column {})", l.line(), l.column()),
                ),
                format!("invalid YAML: {e}"),
            )])
        })?
    };
    if tree.is_null() {
        tree = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
    }
    env::apply(&mut tree, env);
    let file: FileConfig = {
        let de = tree;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            Error::Invalid(vec![Problem::new(path, e.into_inner().to_string())])
        })?
    };
    validate::settings(file, source)
}

/// Path of the dev database inside a data dir.
pub fn dev_database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("authserver.db")
}

/// Parses a comma-separated algorithm list (used by the env override and the file).
pub fn parse_algorithms(values: &[String]) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for v in values {
        let alg = v
            .parse::<Algorithm>()
            .map_err(|()| format!("unknown algorithm {v:?} (expected RS256, ES256 or EdDSA)"))?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn prod_env(name: &str) -> Option<String> {
        match name {
            "ENCRYPTION_KEY" => Some(KEY.into()),
            "DATABASE_URL" => Some("postgres://u@localhost/db".into()),
            _ => None,
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = "server:\n  listen: x\nkeys:\n  algorithms: [RS256, HS999]\n  overlap_window_seconds: 10\n";
        let err = from_yaml(yaml, &Source::default(), &no_env).unwrap_err();
        let problems = err.problems();
        assert!(
            problems.contains(&r#"server.listen: invalid socket address "x""#.to_owned()),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.starts_with("keys.algorithms:")));
        assert!(problems.iter().any(|p| p.starts_with("encryption.key:")));
        assert!(problems.iter().any(|p| p.starts_with("database.url:")));
    }

    #[test]
    fn the_ops_listener_needs_a_port_of_its_own() {
        let err = from_yaml(
            "server:\n  listen: 0.0.0.0:8080\n  ops_listen: 0.0.0.0:8080\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err();
        assert!(
            err.problems()
                .iter()
                .any(|p| p.starts_with("server.ops_listen: 0.0.0.0:8080 is already")),
            "{:?}",
            err.problems()
        );
        let env = |name: &str| match name {
            "GATEHOUSE_SERVER_OPS_LISTEN" => Some("0.0.0.0:9090".to_owned()),
            other => prod_env(other),
        };
        let s = from_yaml("", &Source::default(), &env).unwrap();
        assert_eq!(s.ops_listen, Some(SocketAddr::from(([0, 0, 0, 0], 9090))));
        assert_eq!(
            from_yaml("", &Source::default(), &prod_env)
                .unwrap()
                .ops_listen,
            None
        );
    }

    #[test]
    fn admin_tls_needs_both_files_and_they_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, "pem").unwrap();
        let cert = cert.display().to_string();
        let problems = |yaml: String| {
            from_yaml(&yaml, &Source::default(), &prod_env)
                .unwrap_err()
                .problems()
        };
        assert_eq!(
            problems(format!("admin:\n  tls_cert_file: {cert}\n")),
            vec!["admin.tls_key_file: required with admin.tls_cert_file".to_owned()]
        );
        let missing = dir.path().join("missing.key").display().to_string();
        let p = problems(format!(
            "admin:\n  tls_cert_file: {cert}\n  tls_key_file: {missing}\n"
        ));
        assert!(
            p.len() == 1 && p[0].starts_with("admin.tls_key_file: cannot read"),
            "{p:?}"
        );
        let s = from_yaml(
            &format!("admin:\n  tls_cert_file: {cert}\n  tls_key_file: {cert}\n"),
            &Source::default(),
            &prod_env,
        )
        .unwrap();
        assert_eq!(
            s.admin.tls,
            Some(AdminTls {
                cert_file: PathBuf::from(&cert),
                key_file: PathBuf::from(&cert),
            })
        );
    }

    #[test]
    fn issuers_that_route_alike_are_one_issuer() {
        let yaml = "tenants:\n  - id: a\n    issuer: https://id.example.com/t/x\n  \
                    - id: b\n    issuer: HTTPS://ID.Example.com:443/t/x/\n  \
                    - id: c\n    issuer: https://id.example.com/t/y\n";
        let err = from_yaml(yaml, &Source::default(), &prod_env).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("tenants[1].issuer: issuer \"HTTPS://ID.Example.com:443/t/x\" routes like tenant \"a\""),
            "{problems:?}"
        );
        // Outbound defaults: nothing internal, https only; --dev opens loopback.
        let ok = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(ok.outbound, OutboundSettings::default());
        let bad = from_yaml(
            "outbound:\n  allowed_networks: [10.0.0.0/33]\n  timeout_seconds: 0\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err();
        let problems = bad.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("outbound.allowed_networks[0]: invalid CIDR")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("outbound.timeout_seconds: must be 1 to 60")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let err = from_yaml("server:\n  lisen: x\n", &Source::default(), &prod_env).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("server.lisen: unknown field `lisen`"),
            "{problems:?}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = from_yaml(
            "database:\n  max_connections: lots\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err();
        assert!(err.problems()[0].starts_with("database.max_connections:"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let yaml = "server:\n  listen: 127.0.0.1:1\ndatabase:\n  url: postgres://file/db\n";
        let env = |name: &str| match name {
            "GATEHOUSE_SERVER_LISTEN" => Some("127.0.0.1:2".to_owned()),
            "GATEHOUSE_DATABASE_URL" => Some("postgres://env/db".to_owned()),
            "GATEHOUSE_KEYS_ALGORITHMS" => Some("ES256,EdDSA".to_owned()),
            "GATEHOUSE_KEYS_OVERLAP_WINDOW_SECONDS" => Some("60".to_owned()),
            _ => prod_env(name),
        };
        let s = from_yaml(yaml, &Source::default(), &env).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:2");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&s.database.url),
            "postgres://env/db"
        );
        assert_eq!(s.keys.algorithms, vec![Algorithm::Es256, Algorithm::EdDsa]);
        assert_eq!(s.keys.overlap_window_seconds, 60);
    }

    #[test]
    fn the_promotion_delay_defaults_to_the_jwks_max_age_plus_a_margin() {
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(s.keys.jwks_max_age(), 900);
        assert_eq!(s.keys.promotion_delay_seconds, 960);
        // Derived from the configured overlap window, not the default one.
        let s = from_yaml(
            "keys:\n  overlap_window_seconds: 800\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap();
        assert_eq!(s.keys.promotion_delay_seconds, 160);
        let s = from_yaml(
            "keys:\n  promotion_delay_seconds: 3600\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap();
        assert_eq!(s.keys.promotion_delay_seconds, 3600);
    }

    #[test]
    fn a_promotion_delay_shorter_than_the_jwks_max_age_is_a_problem_naming_both_settings() {
        let env = |name: &str| match name {
            "GATEHOUSE_KEYS_PROMOTION_DELAY_SECONDS" => Some("0".to_owned()),
            _ => prod_env(name),
        };
        let err = from_yaml("", &Source::default(), &env).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert!(
            p.starts_with(
                "keys.promotion_delay_seconds: 0 s is shorter than the JWKS max-age of 900 s"
            ),
            "{p}"
        );
        assert!(
            p.ends_with("(here keys.overlap_window_seconds is 7200)"),
            "{p}"
        );
        // Consistent once the overlap window (and with it the max-age) is short.
        let s = from_yaml(
            "keys:\n  overlap_window_seconds: 0\n  promotion_delay_seconds: 0\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap();
        assert_eq!(s.keys.jwks_max_age(), 0);
    }

    #[test]
    fn outage_settings_have_defaults_ranges_and_env_overrides() {
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(s.database.acquire_timeout_ms, 1000);
        assert_eq!(
            s.cache.max_stale_during_outage,
            std::time::Duration::from_mins(1)
        );
        let env = |name: &str| match name {
            "GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT_MS" => Some("250".to_owned()),
            "GATEHOUSE_CACHE_MAX_STALE_SECONDS_DURING_OUTAGE" => Some("0".to_owned()),
            _ => prod_env(name),
        };
        let s = from_yaml("", &Source::default(), &env).unwrap();
        assert_eq!(s.database.acquire_timeout_ms, 250);
        assert_eq!(s.cache.max_stale_during_outage, std::time::Duration::ZERO);
        let problems = from_yaml(
            "database:\n  acquire_timeout_ms: 10\ncache:\n  max_stale_seconds_during_outage: 86400\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err()
        .problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("database.acquire_timeout_ms: must be 50 to 60000")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("cache.max_stale_seconds_during_outage: must be 0 to 3600")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_verified_token_cache_has_a_bounded_size() {
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(s.cache.verified_tokens, 10_000);
        let s = from_yaml(
            "cache:\n  verified_tokens: 0\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap();
        assert_eq!(s.cache.verified_tokens, 0);
        let env = |name: &str| match name {
            "GATEHOUSE_CACHE_VERIFIED_TOKENS" => Some("500".to_owned()),
            other => prod_env(other),
        };
        assert_eq!(
            from_yaml("", &Source::default(), &env)
                .unwrap()
                .cache
                .verified_tokens,
            500
        );
        let problems = from_yaml(
            "cache:\n  verified_tokens: 5000000\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err()
        .problems();
        assert_eq!(
            problems,
            vec!["cache.verified_tokens: must be 0 to 1000000 tokens".to_owned()]
        );
    }

    #[test]
    fn purge_and_shutdown_settings_have_defaults_ranges_and_env_overrides() {
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(s.purge, PurgeSettings::default());
        assert_eq!(s.purge.batch_size, 1000);
        assert_eq!(s.purge.batch_pause, std::time::Duration::from_millis(100));
        assert_eq!(s.purge.device_retention_days, 180);
        assert_eq!(s.shutdown_delay_seconds, 0);
        let env = |name: &str| match name {
            "GATEHOUSE_PURGE_BATCH_SIZE" => Some("250".to_owned()),
            "GATEHOUSE_PURGE_BATCH_PAUSE_MS" => Some("0".to_owned()),
            "GATEHOUSE_PURGE_DEVICE_RETENTION_DAYS" => Some("30".to_owned()),
            "GATEHOUSE_SERVER_SHUTDOWN_DELAY_SECONDS" => Some("10".to_owned()),
            _ => prod_env(name),
        };
        let s = from_yaml("purge:\n  batch_size: 5000\n", &Source::default(), &env).unwrap();
        assert_eq!(s.purge.batch_size, 250);
        assert_eq!(s.purge.batch_pause, std::time::Duration::ZERO);
        assert_eq!(s.purge.device_retention_days, 30);
        assert_eq!(s.shutdown_delay_seconds, 10);
        let problems = from_yaml(
            "purge:\n  batch_size: 0\n  batch_pause_ms: 60001\n  device_retention_days: 0\nserver:\n  shutdown_delay_seconds: 301\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err()
        .problems();
        for expected in [
            "purge.batch_size: must be 1 to 100000 rows, got 0",
            "purge.batch_pause_ms: must be 0 to 60000 milliseconds, got 60001",
            "purge.device_retention_days: must be 1 to 3650 days, got 0",
            "server.shutdown_delay_seconds: must be 0 to 300 seconds, got 301",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected}: {problems:?}"
            );
        }
    }

    #[test]
    fn gatehouse_prefixed_variable_wins_over_the_bare_one() {
        let env = |name: &str| match name {
            "GATEHOUSE_DATABASE_URL" => Some("postgres://prefixed/db".to_owned()),
            _ => prod_env(name),
        };
        let s = from_yaml("", &Source::default(), &env).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&s.database.url),
            "postgres://prefixed/db"
        );
    }

    #[test]
    fn production_requires_a_64_hex_encryption_key() {
        let env = |name: &str| match name {
            "ENCRYPTION_KEY" => Some("abc".to_owned()),
            _ => prod_env(name),
        };
        let err = from_yaml("", &Source::default(), &env).unwrap_err();
        assert_eq!(
            err.problems(),
            vec!["encryption.key: ENCRYPTION_KEY must be 64 hexadecimal characters (32 bytes), got 3 characters".to_owned()]
        );
        let missing = |name: &str| match name {
            "ENCRYPTION_KEY" => None,
            _ => prod_env(name),
        };
        let err = from_yaml("", &Source::default(), &missing).unwrap_err();
        assert!(err.problems()[0].contains("ENCRYPTION_KEY is not set"));
    }

    #[test]
    fn production_issuers_must_be_https_except_localhost() {
        let yaml = "tenants:\n  - id: a\n    issuer: http://id.example.com\n  - id: b\n    issuer: http://localhost:8080/t/b\n  - id: c\n    issuer: https://id.example.com/t/c\n";
        let err = from_yaml(yaml, &Source::default(), &prod_env).unwrap_err();
        assert_eq!(
            err.problems(),
            vec![
                "tenants[0].issuer: issuer must use https (http is allowed for localhost only): \"http://id.example.com\"".to_owned()
            ]
        );
    }

    #[test]
    fn dev_mode_needs_nothing_and_derives_the_sqlite_path() {
        let source = Source {
            dev: true,
            data_dir: Some("/tmp/gh".into()),
            ..Source::default()
        };
        let s = from_yaml("", &source, &no_env).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_DEV_LISTEN);
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&s.database.url),
            "sqlite:///tmp/gh/authserver.db"
        );
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.tenants.len(), 1);
        // A name, not an IP address: passkeys work in development.
        assert_eq!(s.tenants[0].issuer, "http://localhost:8080");
    }

    #[test]
    fn login_throttling_has_defaults_env_overrides_and_checked_ranges() {
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert_eq!(s.login, LoginSettings::default());
        let env = |name: &str| match name {
            "GATEHOUSE_LOGIN_MAX_FAILURES" => Some("7".to_owned()),
            "GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP" => Some("70".to_owned()),
            "GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS" => Some("600".to_owned()),
            "GATEHOUSE_LOGIN_LOCKOUT_SECONDS" => Some("120".to_owned()),
            _ => prod_env(name),
        };
        let s = from_yaml("login:\n  max_failures: 3\n", &Source::default(), &env).unwrap();
        assert_eq!(
            s.login,
            LoginSettings {
                max_failures: 7,
                max_failures_per_ip: 70,
                failure_window_seconds: 600,
                lockout_seconds: 120,
            }
        );
        let yaml = "login:\n  max_failures: 0\n  max_failures_per_ip: 0\n  failure_window_seconds: 0\n  lockout_seconds: 999999\n";
        let problems = from_yaml(yaml, &Source::default(), &prod_env)
            .unwrap_err()
            .problems();
        for field in [
            "login.max_failures:",
            "login.max_failures_per_ip:",
            "login.failure_window_seconds:",
            "login.lockout_seconds:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} {problems:?}"
            );
        }
    }

    #[test]
    fn email_is_off_without_a_relay_and_its_settings_are_checked_with_their_paths() {
        use secrecy::ExposeSecret as _;
        let s = from_yaml("", &Source::default(), &prod_env).unwrap();
        assert!(s.email.smtp.is_none(), "mail is off by default");
        assert_eq!(s.email.max_attempts, 8);
        assert_eq!(s.rate_limits.email_per_ip, 30);
        let env = |name: &str| match name {
            "GATEHOUSE_EMAIL_SMTP_HOST" => Some("smtp.example.com".to_owned()),
            "GATEHOUSE_EMAIL_SMTP_SECURITY" => Some("tls".to_owned()),
            "GATEHOUSE_EMAIL_SMTP_PASSWORD" => Some("s3cret".to_owned()),
            "GATEHOUSE_EMAIL_PER_ADDRESS_PER_HOUR" => Some("2".to_owned()),
            _ => prod_env(name),
        };
        let yaml = "email:\n  smtp_username: id\n  from: \"Acme <id@acme.example>\"\n";
        let s = from_yaml(yaml, &Source::default(), &env).unwrap();
        let smtp = s.email.smtp.as_ref().expect("a relay");
        assert_eq!(smtp.host, "smtp.example.com");
        assert_eq!(smtp.security, SmtpSecurity::Tls);
        assert_eq!(smtp.port, 465, "the implicit-TLS port by default");
        let (user, password) = smtp.credentials.as_ref().expect("credentials");
        assert_eq!((user.as_str(), password.expose_secret()), ("id", "s3cret"));
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "the password is never printed"
        );
        assert_eq!(s.email.per_address_per_hour, 2);
        assert_eq!(s.email.from, "Acme <id@acme.example>");

        let yaml = "email:\n  smtp_security: plain\n  smtp_username: u\n  smtp_password: p\n  \
                    smtp_timeout_seconds: 0\n  from: nobody\n  max_attempts: 0\n  \
                    poll_interval_ms: 1\n  per_address_per_hour: 0\n";
        let problems = from_yaml(yaml, &Source::default(), &prod_env)
            .unwrap_err()
            .problems();
        for field in [
            "email.smtp_host:",
            "email.smtp_security:",
            "email.smtp_timeout_seconds:",
            "email.from:",
            "email.max_attempts:",
            "email.poll_interval_ms:",
            "email.per_address_per_hour:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} {problems:?}"
            );
        }
        let problems = from_yaml(
            "email:\n  smtp_host: h\n  smtp_security: ssl\n  smtp_username: u\n",
            &Source::default(),
            &prod_env,
        )
        .unwrap_err()
        .problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("email.smtp_security:") && p.contains("ssl")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("email.smtp_password:")),
            "{problems:?}"
        );
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.1.2.3".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }
}
