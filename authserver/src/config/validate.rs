//! Turns a [`FileConfig`] into [`Settings`], collecting every problem instead of stopping
//! at the first.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use super::file::{AdminSection, FileConfig, LoginSection, PasswordsSection};
use super::{
    AdminSettings, AdminTls, Argon2Params, BreachPolicy, CacheSettings, DEFAULT_DEV_DATA_DIR,
    DEFAULT_DEV_LISTEN, DEFAULT_HIBP_BASE_URL, DEFAULT_LISTEN, DatabaseSettings, DpopSettings,
    Error, IpNet, LogFormat, LoginSettings, PasswordSettings, PurgeSettings, RateLimitSettings,
    SecretSource, SessionSettings, Settings, Source, TokenSettings, UiSettings, dev_database_path,
    parse_algorithms,
};
use crate::domain::signing_key::{Algorithm, KeyPolicy};
use crate::domain::tenant::{self, TenantSpec};

/// One configuration problem: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[allow(clippy::too_many_lines)] // one linear pass over the sections reads best
pub(super) fn settings(file: FileConfig, source: &Source) -> Result<Settings, Error> {
    let mut problems = Vec::new();
    let dev = source.dev;

    let listen_text = source
        .listen
        .clone()
        .or(file.server.listen)
        .unwrap_or_else(|| {
            (if dev {
                DEFAULT_DEV_LISTEN
            } else {
                DEFAULT_LISTEN
            })
            .to_owned()
        });
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(Problem::new(
            "server.listen",
            format!("invalid socket address {listen_text:?}"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });

    let mut trusted_proxies = Vec::new();
    for (i, cidr) in file.server.trusted_proxies.iter().enumerate() {
        match IpNet::parse(cidr) {
            Some(net) => trusted_proxies.push(net),
            None => problems.push(Problem::new(
                format!("server.trusted_proxies[{i}]"),
                format!("invalid CIDR {cidr:?}"),
            )),
        }
    }

    let data_dir = dev.then(|| {
        source
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEV_DATA_DIR))
    });

    let url = match (file.database.url, &data_dir) {
        (Some(url), _) => Some(url),
        (None, Some(dir)) => Some(format!("sqlite://{}", dev_database_path(dir).display())),
        (None, None) => {
            problems.push(Problem::new(
                "database.url",
                "no database configured: set DATABASE_URL (postgres://… or sqlite://…) or use --dev",
            ));
            None
        }
    };
    if let Some(url) = &url
        && !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
    {
        problems.push(Problem::new(
            "database.url",
            "unsupported database URL scheme (expected postgres:// or sqlite://)",
        ));
    }

    let encryption_key_file = file
        .encryption
        .key_file
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if encryption_key_file.is_some() && file.encryption.key.is_some() {
        problems.push(Problem::new(
            "encryption.key_file",
            "set either encryption.key or encryption.key_file, not both",
        ));
    }
    let encryption_key = match file.encryption.key {
        Some(key) => {
            // Never echo the value: it may be a real key with a typo.
            let got = if key.len() == 64 {
                "a character that is not hexadecimal".to_owned()
            } else {
                format!("{} characters", key.len())
            };
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(Problem::new(
                    "encryption.key",
                    format!(
                        "ENCRYPTION_KEY must be 64 hexadecimal characters (32 bytes), got {got}"
                    ),
                ));
            }
            Some(SecretString::from(key))
        }
        None if dev || encryption_key_file.is_some() => None,
        None => {
            problems.push(Problem::new(
                "encryption.key",
                "ENCRYPTION_KEY is not set: generate one with `openssl rand -hex 32` and keep it with your database backups",
            ));
            None
        }
    };

    let mut tenants = Vec::new();
    let mut tenant_settings = Vec::new();
    for (i, t) in file.tenants.iter().enumerate() {
        if let Some(settings) = &t.settings {
            match crate::domain::policy::TenantPolicy::parse(settings) {
                Ok(policy) => {
                    // An upstream's client secret that cannot be read fails every
                    // sign-in with it: say so at start-up (and in check-config).
                    for (j, p) in policy.federation.providers.iter().enumerate() {
                        if let Some(d) = &p.ldap {
                            let at =
                                format!("tenants[{i}].settings.federation.providers[{j}].ldap");
                            if let Err(e) = crate::federation::read_secret(&d.bind_password) {
                                problems.push(Problem::new(
                                    format!("{at}.bindPassword"),
                                    e.to_string(),
                                ));
                            }
                            if let Some(ca) = &d.ca_file
                                && let Err(e) = std::fs::metadata(ca)
                            {
                                problems.push(Problem::new(
                                    format!("{at}.caFile"),
                                    format!("cannot read {ca}: {}", e.kind()),
                                ));
                            }
                            continue;
                        }
                        if let Err(e) = crate::federation::read_secret(&p.client_secret) {
                            problems.push(Problem::new(
                                format!(
                                    "tenants[{i}].settings.federation.providers[{j}].clientSecret"
                                ),
                                e.to_string(),
                            ));
                        }
                    }
                    tenant_settings.push((t.id.clone(), settings.clone()));
                }
                Err(e) => problems.push(Problem::new(format!("tenants[{i}].settings"), e)),
            }
        }
        let spec = TenantSpec {
            id: t.id.clone(),
            issuer: t.issuer.trim_end_matches('/').to_owned(),
            display_name: t.display_name.clone().unwrap_or_else(|| t.id.clone()),
        };
        if let Err(e) = tenant::validate_id(&spec.id) {
            problems.push(Problem::new(format!("tenants[{i}].id"), e));
        }
        if let Err(e) = tenant::validate_issuer(&spec.issuer, dev) {
            problems.push(Problem::new(format!("tenants[{i}].issuer"), e));
        }
        if tenants.iter().any(|o: &TenantSpec| o.id == spec.id) {
            problems.push(Problem::new(
                format!("tenants[{i}].id"),
                format!("duplicate tenant id {:?}", spec.id),
            ));
        }
        let route = tenant::IssuerRoute::parse(&spec.issuer);
        if let Some(other) = tenants.iter().find(|o: &&TenantSpec| {
            route.is_some() && tenant::IssuerRoute::parse(&o.issuer) == route
        }) {
            problems.push(Problem::new(
                format!("tenants[{i}].issuer"),
                format!(
                    "issuer {:?} routes like tenant {:?}'s {:?} (scheme, host case, default port and trailing slash do not tell issuers apart)",
                    spec.issuer, other.id, other.issuer
                ),
            ));
        }
        tenants.push(spec);
    }
    if dev && !tenants.iter().any(|t| t.id == tenant::DEFAULT_TENANT) {
        tenants.push(TenantSpec {
            id: tenant::DEFAULT_TENANT.to_owned(),
            issuer: dev_issuer(listen),
            display_name: "Default".to_owned(),
        });
    }

    let mut keys = KeyPolicy::default();
    if let Some(algs) = &file.keys.algorithms {
        match parse_algorithms(algs) {
            Ok(a) if a.is_empty() => problems.push(Problem::new(
                "keys.algorithms",
                "at least one algorithm is required",
            )),
            Ok(a) => keys.algorithms = a,
            Err(e) => problems.push(Problem::new("keys.algorithms", e)),
        }
    }
    if let Some(bits) = file.keys.rsa_bits {
        if [2048, 3072, 4096].contains(&bits) {
            keys.rsa_bits = bits;
        } else {
            problems.push(Problem::new(
                "keys.rsa_bits",
                format!("unsupported RSA key size {bits} (expected 2048, 3072 or 4096)"),
            ));
        }
    }
    if let Some(days) = file.keys.rotation_interval_days {
        if days == 0 {
            problems.push(Problem::new(
                "keys.rotation_interval_days",
                "must be at least 1",
            ));
        } else {
            keys.rotation_interval_seconds = u64::from(days) * 86_400;
        }
    }
    if let Some(v) = file.keys.overlap_window_seconds {
        keys.overlap_window_seconds = v;
    }
    // Unset: derived from the overlap window, so it always outlasts the JWKS max-age.
    keys.promotion_delay_seconds = file
        .keys
        .promotion_delay_seconds
        .unwrap_or_else(|| KeyPolicy::default_promotion_delay(keys.overlap_window_seconds));
    if let Err(e) = keys.check_promotion_delay(keys.jwks_max_age()) {
        problems.push(Problem::new(
            "keys.promotion_delay_seconds",
            format!(
                "{e} (here keys.overlap_window_seconds is {})",
                keys.overlap_window_seconds
            ),
        ));
    }
    if keys.overlap_window_seconds > keys.rotation_interval_seconds {
        problems.push(Problem::new(
            "keys.overlap_window_seconds",
            "must not be longer than the rotation interval",
        ));
    }
    if keys.algorithms.contains(&Algorithm::Rs256) && keys.rsa_bits < 2048 {
        problems.push(Problem::new(
            "keys.rsa_bits",
            "RSA keys need at least 2048 bits",
        ));
    }

    let log_format = match file.log.format.as_deref() {
        None => {
            if dev {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            }
        }
        Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            problems.push(Problem::new(
                "log.format",
                format!("unknown log format {other:?} (expected json or pretty)"),
            ));
            LogFormat::Json
        }
    };
    let log_level = file.log.level.unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.push(Problem::new(
            "log.level",
            format!("invalid log filter {log_level:?}"),
        ));
    }

    let metrics_prefix = file
        .metrics
        .prefix
        .unwrap_or_else(|| "gatehouse_".to_owned());
    if !metrics_prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || metrics_prefix.starts_with(|c: char| c.is_ascii_digit())
    {
        problems.push(Problem::new(
            "metrics.prefix",
            format!("invalid Prometheus metric prefix {metrics_prefix:?}"),
        ));
    }

    let max_connections = file.database.max_connections.unwrap_or(10);
    if max_connections == 0 {
        problems.push(Problem::new(
            "database.max_connections",
            "must be at least 1",
        ));
    }
    let acquire_timeout_ms = file
        .database
        .acquire_timeout_ms
        .unwrap_or(super::DEFAULT_ACQUIRE_TIMEOUT_MS);
    if !(50..=60_000).contains(&acquire_timeout_ms) {
        problems.push(Problem::new(
            "database.acquire_timeout_ms",
            format!("must be 50 to 60000 milliseconds, got {acquire_timeout_ms}"),
        ));
    }
    let cache = cache(&file.cache, &mut problems);
    let purge = purge(&file.purge, &mut problems);
    let shutdown_delay_seconds = file.server.shutdown_delay_seconds.unwrap_or(0);
    if shutdown_delay_seconds > 300 {
        problems.push(Problem::new(
            "server.shutdown_delay_seconds",
            format!("must be 0 to 300 seconds, got {shutdown_delay_seconds}"),
        ));
    }

    let tokens = TokenSettings {
        access_token_alg: match file.tokens.access_token_alg.as_deref() {
            None => Algorithm::Es256,
            Some(a) => match a.parse::<Algorithm>() {
                Ok(alg) if keys.algorithms.contains(&alg) => alg,
                Ok(alg) => {
                    problems.push(Problem::new(
                        "tokens.access_token_alg",
                        format!("{alg} is not in keys.algorithms"),
                    ));
                    alg
                }
                Err(()) => {
                    problems.push(Problem::new(
                        "tokens.access_token_alg",
                        format!("unknown algorithm {a:?} (expected RS256, ES256 or EdDSA)"),
                    ));
                    Algorithm::Es256
                }
            },
        },
        // OIDC's default (Core §15.1; what relying-party libraries accept unless told
        // otherwise). A server without RSA keys falls back to the access token default.
        id_token_alg: match file.tokens.id_token_alg.as_deref() {
            None if keys.algorithms.contains(&Algorithm::Rs256) => Algorithm::Rs256,
            None => file
                .tokens
                .access_token_alg
                .as_deref()
                .and_then(|a| a.parse::<Algorithm>().ok())
                .filter(|a| keys.algorithms.contains(a))
                .or_else(|| keys.algorithms.first().copied())
                .unwrap_or(Algorithm::Rs256),
            Some(a) => match a.parse::<Algorithm>() {
                Ok(alg) if keys.algorithms.contains(&alg) => alg,
                Ok(alg) => {
                    problems.push(Problem::new(
                        "tokens.id_token_alg",
                        format!("{alg} is not in keys.algorithms"),
                    ));
                    alg
                }
                Err(()) => {
                    problems.push(Problem::new(
                        "tokens.id_token_alg",
                        format!("unknown algorithm {a:?} (expected RS256, ES256 or EdDSA)"),
                    ));
                    Algorithm::Rs256
                }
            },
        },
        client_assertion_max_lifetime_seconds: file
            .tokens
            .client_assertion_max_lifetime_seconds
            .unwrap_or(300),
        client_assertion_accept_endpoint_audience: file
            .tokens
            .client_assertion_accept_endpoint_audience
            .unwrap_or(false),
    };
    if file.tokens.access_token_alg.is_none() && !keys.algorithms.contains(&Algorithm::Es256) {
        problems.push(Problem::new(
            "tokens.access_token_alg",
            "the default ES256 is not in keys.algorithms: set tokens.access_token_alg",
        ));
    }

    let dpop = DpopSettings {
        algorithms: match &file.dpop.algorithms {
            None => vec![Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256],
            Some(a) => parse_algorithms(a).unwrap_or_else(|e| {
                problems.push(Problem::new("dpop.algorithms", e));
                Vec::new()
            }),
        },
        require_nonce: file.dpop.require_nonce.unwrap_or(false),
        proof_max_age_seconds: file.dpop.proof_max_age_seconds.unwrap_or(60),
        nonce_lifetime_seconds: file.dpop.nonce_lifetime_seconds.unwrap_or(300),
    };
    if dpop.nonce_lifetime_seconds < 30 {
        problems.push(Problem::new(
            "dpop.nonce_lifetime_seconds",
            "must be at least 30",
        ));
    }

    let rl = &file.rate_limits;
    let rate_limits = RateLimitSettings {
        enabled: rl.enabled.unwrap_or(true),
        window_seconds: rl.window_seconds.unwrap_or(60),
        token_per_client: rl.token_per_client.unwrap_or(1200),
        token_per_ip: rl.token_per_ip.unwrap_or(2400),
        introspection_per_client: rl.introspection_per_client.unwrap_or(6000),
        introspection_per_ip: rl.introspection_per_ip.unwrap_or(12000),
        revocation_per_client: rl.revocation_per_client.unwrap_or(1200),
        revocation_per_ip: rl.revocation_per_ip.unwrap_or(2400),
        par_per_client: rl.par_per_client.unwrap_or(600),
        par_per_ip: rl.par_per_ip.unwrap_or(1200),
        authorize_per_client: rl.authorize_per_client.unwrap_or(6000),
        authorize_per_ip: rl.authorize_per_ip.unwrap_or(600),
        login_per_ip: rl.login_per_ip.unwrap_or(300),
        email_per_ip: rl.email_per_ip.unwrap_or(30),
        management_read_per_client: rl.management_read_per_client.unwrap_or(600),
        management_write_per_client: rl.management_write_per_client.unwrap_or(120),
        management_delete_per_client: rl.management_delete_per_client.unwrap_or(60),
        management_sensitive_per_client: rl.management_sensitive_per_client.unwrap_or(20),
        redis_url: rl.redis_url.clone().map(SecretString::from),
    };
    if rate_limits.window_seconds == 0 {
        problems.push(Problem::new(
            "rate_limits.window_seconds",
            "must be at least 1",
        ));
    }
    if let Some(u) = &rl.redis_url
        && !(u.starts_with("redis://") || u.starts_with("rediss://"))
    {
        problems.push(Problem::new(
            "rate_limits.redis_url",
            "must start with redis:// or rediss://",
        ));
    }

    let admin_listen_text = file.admin.listen.clone().unwrap_or_else(|| {
        (if dev {
            "127.0.0.1:8081"
        } else {
            "0.0.0.0:8081"
        })
        .to_owned()
    });
    let admin_listen = admin_listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(Problem::new(
            "admin.listen",
            format!("invalid socket address {admin_listen_text:?}"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8081))
    });
    let admin_token = match (&file.admin.token, &file.admin.token_file) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                "admin.token",
                "set either admin.token or admin.token_file, not both",
            ));
            None
        }
        (Some(t), None) => {
            if t.trim().len() < 32 {
                problems.push(Problem::new(
                    "admin.token",
                    "the admin bearer token must be at least 32 characters",
                ));
            }
            Some(SecretSource::Value(SecretString::from(t.trim().to_owned())))
        }
        // A file that does not exist yet is fine: the token Secret may be created after
        // the pod starts (the operator bootstraps it); until then every call is refused.
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() && t.trim().len() < 32 => {
                problems.push(Problem::new(
                    "admin.token_file",
                    format!("the admin bearer token in {path:?} must be at least 32 characters"),
                ));
                None
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                problems.push(Problem::new(
                    "admin.token_file",
                    format!("cannot read {path:?}: {e}"),
                ));
                None
            }
            _ => Some(SecretSource::File(PathBuf::from(path))),
        },
        (None, None) => None,
    };
    let admin = AdminSettings {
        listen: admin_listen,
        token: admin_token,
        tls: admin_tls(&file.admin, &mut problems),
    };

    let ops_listen = file.server.ops_listen.as_deref().and_then(|text| {
        let Ok(addr) = text.parse::<SocketAddr>() else {
            problems.push(Problem::new(
                "server.ops_listen",
                format!("invalid socket address {text:?}"),
            ));
            return None;
        };
        if addr == listen || (admin.token.is_some() && addr == admin.listen) {
            problems.push(Problem::new(
                "server.ops_listen",
                format!("{addr} is already server.listen or admin.listen; give the operations listener its own port"),
            ));
        }
        Some(addr)
    });

    let passwords = passwords(&file.passwords, &mut problems);
    let sessions = SessionSettings {
        max_accounts: file
            .sessions
            .max_accounts
            .unwrap_or(SessionSettings::default().max_accounts),
        encrypt_data: file.sessions.encrypt_data.unwrap_or(false),
        revoke_on_credential_reset: file.sessions.revoke_on_credential_reset.unwrap_or(true),
    };
    if !(1..=20).contains(&sessions.max_accounts) {
        problems.push(Problem::new(
            "sessions.max_accounts",
            "must be between 1 and 20",
        ));
    }
    let ui = UiSettings {
        templates_dir: file
            .ui
            .templates_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        locales_dir: file
            .ui
            .locales_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    };
    let login = login(&file.login, &mut problems);
    let outbound = outbound(&file.outbound, dev, &mut problems);
    let email = email(&file.email, &mut problems);

    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let Some(url) = url else {
        return Err(Error::Invalid(vec![Problem::new(
            "database.url",
            "no database configured",
        )]));
    };
    Ok(Settings {
        dev,
        data_dir,
        listen,
        ops_listen,
        shutdown_timeout_seconds: file.server.shutdown_timeout_seconds.unwrap_or(25),
        shutdown_delay_seconds,
        trusted_proxies,
        outbound,
        database: DatabaseSettings {
            url: SecretString::from(url),
            max_connections,
            connect_timeout_seconds: file.database.connect_timeout_seconds.unwrap_or(5),
            startup_timeout_seconds: file.database.startup_timeout_seconds.unwrap_or(60),
            acquire_timeout_ms,
        },
        encryption_key,
        encryption_key_file,
        tenants,
        keys,
        log_level,
        log_format,
        metrics_prefix,
        tokens,
        dpop,
        rate_limits,
        admin,
        audit_retention_days: file.audit.retention_days.unwrap_or(90),
        purge,
        passwords,
        tenant_settings,
        ui,
        sessions,
        login,
        cache,
        email,
        geoip_database: file
            .geoip
            .database
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    })
}

/// `purge.*`: a batch of 1 to 100 000 rows (one statement; larger ones hold their locks
/// too long to call the purge bounded), a pause of at most a minute, devices kept 1 to
/// 3650 days.
fn purge(section: &super::file::PurgeSection, problems: &mut Vec<Problem>) -> PurgeSettings {
    let d = PurgeSettings::default();
    let batch_size = match section.batch_size {
        None => d.batch_size,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => {
            problems.push(Problem::new(
                "purge.batch_size",
                format!("must be 1 to 100000 rows, got {n}"),
            ));
            d.batch_size
        }
    };
    let batch_pause = match section.batch_pause_ms {
        None => d.batch_pause,
        Some(ms) if ms <= 60_000 => std::time::Duration::from_millis(ms),
        Some(ms) => {
            problems.push(Problem::new(
                "purge.batch_pause_ms",
                format!("must be 0 to 60000 milliseconds, got {ms}"),
            ));
            d.batch_pause
        }
    };
    let device_retention_days = match section.device_retention_days {
        None => d.device_retention_days,
        Some(n) if (1..=3650).contains(&n) => n,
        Some(n) => {
            problems.push(Problem::new(
                "purge.device_retention_days",
                format!("must be 1 to 3650 days, got {n}"),
            ));
            d.device_retention_days
        }
    };
    PurgeSettings {
        batch_size,
        batch_pause,
        device_retention_days,
    }
}

/// `cache.*`. The staleness bound is a security setting (a client deleted during an
/// outage keeps working for up to that long), so it is capped at an hour.
fn cache(section: &super::file::CacheSection, problems: &mut Vec<Problem>) -> CacheSettings {
    let d = CacheSettings::default();
    let max_stale = match section.max_stale_seconds_during_outage {
        None => d.max_stale_during_outage,
        Some(s) if s <= 3600 => std::time::Duration::from_secs(s),
        Some(s) => {
            problems.push(Problem::new(
                "cache.max_stale_seconds_during_outage",
                format!("must be 0 to 3600 seconds, got {s}"),
            ));
            d.max_stale_during_outage
        }
    };
    let verified_tokens = match section.verified_tokens.map(usize::try_from) {
        None => d.verified_tokens,
        Some(Ok(n)) if n <= super::MAX_VERIFIED_TOKENS => n,
        Some(_) => {
            problems.push(Problem::new(
                "cache.verified_tokens",
                format!("must be 0 to {} tokens", super::MAX_VERIFIED_TOKENS),
            ));
            d.verified_tokens
        }
    };
    CacheSettings {
        max_stale_during_outage: max_stale,
        verified_tokens,
    }
}

/// Both TLS files or neither; each must be readable now (its content is checked when
/// the admin API starts, which fails naming the setting).
fn admin_tls(a: &AdminSection, problems: &mut Vec<Problem>) -> Option<AdminTls> {
    match (&a.tls_cert_file, &a.tls_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let mut ok = true;
            for (path, setting) in [(cert, "admin.tls_cert_file"), (key, "admin.tls_key_file")] {
                if let Err(e) = std::fs::File::open(path) {
                    problems.push(Problem::new(setting, format!("cannot read {path:?}: {e}")));
                    ok = false;
                }
            }
            ok.then(|| AdminTls {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(key),
            })
        }
        (Some(_), None) => {
            problems.push(Problem::new(
                "admin.tls_key_file",
                "required with admin.tls_cert_file",
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                "admin.tls_cert_file",
                "required with admin.tls_key_file",
            ));
            None
        }
    }
}

fn login(l: &LoginSection, problems: &mut Vec<Problem>) -> LoginSettings {
    let d = LoginSettings::default();
    let s = LoginSettings {
        max_failures: l.max_failures.unwrap_or(d.max_failures),
        max_failures_per_ip: l.max_failures_per_ip.unwrap_or(d.max_failures_per_ip),
        failure_window_seconds: l.failure_window_seconds.unwrap_or(d.failure_window_seconds),
        lockout_seconds: l.lockout_seconds.unwrap_or(d.lockout_seconds),
    };
    if !(1..=1000).contains(&s.max_failures) {
        problems.push(Problem::new(
            "login.max_failures",
            "must be between 1 and 1000",
        ));
    }
    if !(1..=100_000).contains(&s.max_failures_per_ip) {
        problems.push(Problem::new(
            "login.max_failures_per_ip",
            "must be between 1 and 100000",
        ));
    }
    if !(1..=86_400).contains(&s.failure_window_seconds) {
        problems.push(Problem::new(
            "login.failure_window_seconds",
            "must be between 1 and 86400 (one day)",
        ));
    }
    if !(1..=86_400).contains(&s.lockout_seconds) {
        problems.push(Problem::new(
            "login.lockout_seconds",
            "must be between 1 and 86400 (one day)",
        ));
    }
    s
}

fn passwords(p: &PasswordsSection, problems: &mut Vec<Problem>) -> PasswordSettings {
    let d = PasswordSettings::default();
    let argon2 = Argon2Params {
        memory_kib: p.argon2_memory_kib.unwrap_or(d.argon2.memory_kib),
        iterations: p.argon2_iterations.unwrap_or(d.argon2.iterations),
        parallelism: p.argon2_parallelism.unwrap_or(d.argon2.parallelism),
    };
    if !(1..=16).contains(&argon2.parallelism) {
        problems.push(Problem::new(
            "passwords.argon2_parallelism",
            "must be between 1 and 16",
        ));
    }
    if !(1..=16).contains(&argon2.iterations) {
        problems.push(Problem::new(
            "passwords.argon2_iterations",
            "must be between 1 and 16",
        ));
    }
    // Below OWASP's weakest listed configuration (7 MiB) offline guessing gets cheap;
    // above 1 GiB a handful of concurrent logins exhaust a pod.
    if !(7_168..=1_048_576).contains(&argon2.memory_kib) {
        problems.push(Problem::new(
            "passwords.argon2_memory_kib",
            "must be between 7168 (7 MiB) and 1048576 (1 GiB)",
        ));
    }
    let min_length = p.min_length.unwrap_or(d.min_length);
    let max_length = p.max_length.unwrap_or(d.max_length);
    if min_length == 0 {
        problems.push(Problem::new("passwords.min_length", "must be at least 1"));
    }
    if max_length < min_length.max(1) || max_length > 1024 {
        problems.push(Problem::new(
            "passwords.max_length",
            "must be at least passwords.min_length and at most 1024",
        ));
    }
    let breached = match p.breached.as_deref().map(str::trim) {
        None | Some("reject") => BreachPolicy::Reject,
        Some("warn") => BreachPolicy::Warn,
        Some(other) => {
            problems.push(Problem::new(
                "passwords.breached",
                format!("unknown policy {other:?} (expected reject or warn)"),
            ));
            BreachPolicy::Reject
        }
    };
    let hibp_base_url = p
        .hibp_base_url
        .as_deref()
        .unwrap_or(DEFAULT_HIBP_BASE_URL)
        .trim_end_matches('/')
        .to_owned();
    match url::Url::parse(&hibp_base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
        _ => problems.push(Problem::new(
            "passwords.hibp_base_url",
            format!("must be an http(s) URL without a query, got {hibp_base_url:?}"),
        )),
    }
    let hibp_timeout_seconds = p.hibp_timeout_seconds.unwrap_or(d.hibp_timeout_seconds);
    if !(1..=30).contains(&hibp_timeout_seconds) {
        problems.push(Problem::new(
            "passwords.hibp_timeout_seconds",
            "must be between 1 and 30",
        ));
    }
    PasswordSettings {
        argon2,
        min_length,
        max_length,
        breached,
        hibp_base_url,
        hibp_timeout_seconds,
    }
}

/// `outbound.*`; `--dev` may fetch from loopback over plain http (a local client's
/// `jwks_uri`), production only what is public and https unless configured.
fn outbound(
    section: &super::file::OutboundSection,
    dev: bool,
    problems: &mut Vec<Problem>,
) -> super::OutboundSettings {
    let d = super::OutboundSettings::default();
    let mut allowed_networks = Vec::new();
    for (i, cidr) in section.allowed_networks.iter().enumerate() {
        match IpNet::parse(cidr) {
            Some(net) => allowed_networks.push(net),
            None => problems.push(Problem::new(
                format!("outbound.allowed_networks[{i}]"),
                format!("invalid CIDR {cidr:?}"),
            )),
        }
    }
    if dev {
        allowed_networks.extend(
            ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|c| IpNet::parse(c)),
        );
    }
    let mut seconds = |name: &str, value: Option<u64>, default: u64| {
        let v = value.unwrap_or(default);
        if !(1..=60).contains(&v) {
            problems.push(Problem::new(
                format!("outbound.{name}"),
                format!("must be 1 to 60 seconds, got {v}"),
            ));
        }
        v.clamp(1, 60)
    };
    let connect_timeout_seconds = seconds(
        "connect_timeout_seconds",
        section.connect_timeout_seconds,
        d.connect_timeout_seconds,
    );
    let timeout_seconds = seconds(
        "timeout_seconds",
        section.timeout_seconds,
        d.timeout_seconds,
    );
    super::OutboundSettings {
        allowed_networks,
        allow_http: section.allow_http.unwrap_or(dev),
        connect_timeout_seconds,
        timeout_seconds,
    }
}

/// The `--dev` tenant's issuer: `http://localhost:PORT` when listening on a loopback
/// address (browsers refuse WebAuthn on IP-address origins, so passkeys need a name),
/// otherwise the address itself.
fn dev_issuer(listen: SocketAddr) -> String {
    if listen.ip().is_loopback() {
        format!("http://localhost:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// `email.*`: the SMTP relay (all of it or nothing but the sender), the sender address,
/// the outbox's pace and limits.
// Each setting and its check, in the order of the reference: one place.
#[allow(clippy::too_many_lines)]
fn email(e: &super::file::EmailSection, problems: &mut Vec<Problem>) -> super::EmailSettings {
    use super::{SmtpSecurity, SmtpSettings};
    let d = super::EmailSettings::default();
    let from = e.from.clone().unwrap_or(d.from);
    if from.parse::<lettre::message::Mailbox>().is_err() {
        problems.push(Problem::new(
            "email.from",
            format!(
                "not an e-mail address (\"Name <user@example.com>\" or user@example.com): {from:?}"
            ),
        ));
    }
    let security = match e.smtp_security.as_deref().map(str::trim) {
        None | Some("starttls") => SmtpSecurity::StartTls,
        Some("tls") => SmtpSecurity::Tls,
        Some("plain") => SmtpSecurity::Plain,
        Some(other) => {
            problems.push(Problem::new(
                "email.smtp_security",
                format!("unknown value {other:?} (expected starttls, tls or plain)"),
            ));
            SmtpSecurity::StartTls
        }
    };
    let credentials = match (&e.smtp_username, &e.smtp_password) {
        (None, None) => None,
        (Some(u), Some(p)) => Some((u.clone(), SecretString::from(p.clone()))),
        (Some(_), None) => {
            problems.push(Problem::new(
                "email.smtp_password",
                "required with email.smtp_username",
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                "email.smtp_username",
                "required with email.smtp_password",
            ));
            None
        }
    };
    let host = e
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty());
    if host.is_none()
        && (e.smtp_port.is_some() || e.smtp_security.is_some() || credentials.is_some())
    {
        problems.push(Problem::new(
            "email.smtp_host",
            "required when other email.smtp_* settings are given",
        ));
    }
    if credentials.is_some() && security == SmtpSecurity::Plain {
        problems.push(Problem::new(
            "email.smtp_security",
            "plain sends the SMTP password in clear text: use starttls or tls with credentials",
        ));
    }
    let timeout = e.smtp_timeout_seconds.unwrap_or(10);
    if !(1..=120).contains(&timeout) {
        problems.push(Problem::new(
            "email.smtp_timeout_seconds",
            format!("must be 1 to 120 seconds, got {timeout}"),
        ));
    }
    let port = e.smtp_port.unwrap_or(match security {
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::Plain => 25,
    });
    if port == 0 {
        problems.push(Problem::new("email.smtp_port", "must be 1 to 65535"));
    }
    let poll_ms = e.poll_interval_ms.unwrap_or(5_000);
    if !(50..=600_000).contains(&poll_ms) {
        problems.push(Problem::new(
            "email.poll_interval_ms",
            format!("must be 50 to 600000 milliseconds, got {poll_ms}"),
        ));
    }
    let max_attempts = e.max_attempts.unwrap_or(d.max_attempts);
    if !(1..=50).contains(&max_attempts) {
        problems.push(Problem::new(
            "email.max_attempts",
            format!("must be 1 to 50, got {max_attempts}"),
        ));
    }
    let per_address_per_hour = e.per_address_per_hour.unwrap_or(d.per_address_per_hour);
    if !(1..=1000).contains(&per_address_per_hour) {
        problems.push(Problem::new(
            "email.per_address_per_hour",
            format!("must be 1 to 1000, got {per_address_per_hour}"),
        ));
    }
    super::EmailSettings {
        smtp: host.map(|host| {
            Box::new(SmtpSettings {
                host: host.to_owned(),
                port,
                security,
                credentials,
                timeout: std::time::Duration::from_secs(timeout.clamp(1, 120)),
            })
        }),
        from,
        poll_interval: std::time::Duration::from_millis(poll_ms.clamp(50, 600_000)),
        max_attempts: max_attempts.clamp(1, 50),
        per_address_per_hour: per_address_per_hour.clamp(1, 1000),
    }
}
