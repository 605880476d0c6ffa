//! Environment overrides. Each settable leaf has exactly one `GATEHOUSE_…` variable (and a
//! few well-known bare names); the table below is also what `docs/configuration.md` lists.

use serde_yaml::{Mapping, Value};

/// One environment variable and the configuration path it overrides.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    pub var: &'static str,
    /// Accepted as-is when the `GATEHOUSE_` variable is unset (conventional names).
    pub alias: Option<&'static str>,
    pub path: &'static [&'static str],
    pub kind: Kind,
}

/// How a variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    /// Comma-separated list.
    List,
    /// `true`/`false` (also 1/0, yes/no).
    Bool,
}

const fn text(var: &'static str, path: &'static [&'static str]) -> EnvOverride {
    EnvOverride {
        var,
        alias: None,
        path,
        kind: Kind::Text,
    }
}

const fn number(var: &'static str, path: &'static [&'static str]) -> EnvOverride {
    EnvOverride {
        kind: Kind::Number,
        ..text(var, path)
    }
}

const fn boolean(var: &'static str, path: &'static [&'static str]) -> EnvOverride {
    EnvOverride {
        kind: Kind::Bool,
        ..text(var, path)
    }
}

const fn list(var: &'static str, path: &'static [&'static str]) -> EnvOverride {
    EnvOverride {
        kind: Kind::List,
        ..text(var, path)
    }
}

/// Every supported override.
pub const ENV_OVERRIDES: &[EnvOverride] = &[
    text("GATEHOUSE_SERVER_LISTEN", &["server", "listen"]),
    text("GATEHOUSE_SERVER_OPS_LISTEN", &["server", "ops_listen"]),
    list(
        "GATEHOUSE_SERVER_TRUSTED_PROXIES",
        &["server", "trusted_proxies"],
    ),
    number(
        "GATEHOUSE_SERVER_SHUTDOWN_TIMEOUT_SECONDS",
        &["server", "shutdown_timeout_seconds"],
    ),
    number(
        "GATEHOUSE_SERVER_SHUTDOWN_DELAY_SECONDS",
        &["server", "shutdown_delay_seconds"],
    ),
    list(
        "GATEHOUSE_OUTBOUND_ALLOWED_NETWORKS",
        &["outbound", "allowed_networks"],
    ),
    boolean("GATEHOUSE_OUTBOUND_ALLOW_HTTP", &["outbound", "allow_http"]),
    number(
        "GATEHOUSE_OUTBOUND_CONNECT_TIMEOUT_SECONDS",
        &["outbound", "connect_timeout_seconds"],
    ),
    number(
        "GATEHOUSE_OUTBOUND_TIMEOUT_SECONDS",
        &["outbound", "timeout_seconds"],
    ),
    text("GATEHOUSE_EMAIL_SMTP_HOST", &["email", "smtp_host"]),
    number("GATEHOUSE_EMAIL_SMTP_PORT", &["email", "smtp_port"]),
    text("GATEHOUSE_EMAIL_SMTP_SECURITY", &["email", "smtp_security"]),
    text("GATEHOUSE_EMAIL_SMTP_USERNAME", &["email", "smtp_username"]),
    text("GATEHOUSE_EMAIL_SMTP_PASSWORD", &["email", "smtp_password"]),
    number(
        "GATEHOUSE_EMAIL_SMTP_TIMEOUT_SECONDS",
        &["email", "smtp_timeout_seconds"],
    ),
    text("GATEHOUSE_EMAIL_FROM", &["email", "from"]),
    text("GATEHOUSE_GEOIP_DATABASE", &["geoip", "database"]),
    number(
        "GATEHOUSE_EMAIL_POLL_INTERVAL_MS",
        &["email", "poll_interval_ms"],
    ),
    number("GATEHOUSE_EMAIL_MAX_ATTEMPTS", &["email", "max_attempts"]),
    number(
        "GATEHOUSE_EMAIL_PER_ADDRESS_PER_HOUR",
        &["email", "per_address_per_hour"],
    ),
    EnvOverride {
        alias: Some("DATABASE_URL"),
        ..text("GATEHOUSE_DATABASE_URL", &["database", "url"])
    },
    number(
        "GATEHOUSE_DATABASE_MAX_CONNECTIONS",
        &["database", "max_connections"],
    ),
    number(
        "GATEHOUSE_DATABASE_CONNECT_TIMEOUT_SECONDS",
        &["database", "connect_timeout_seconds"],
    ),
    number(
        "GATEHOUSE_DATABASE_STARTUP_TIMEOUT_SECONDS",
        &["database", "startup_timeout_seconds"],
    ),
    number(
        "GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT_MS",
        &["database", "acquire_timeout_ms"],
    ),
    number(
        "GATEHOUSE_CACHE_MAX_STALE_SECONDS_DURING_OUTAGE",
        &["cache", "max_stale_seconds_during_outage"],
    ),
    number(
        "GATEHOUSE_CACHE_VERIFIED_TOKENS",
        &["cache", "verified_tokens"],
    ),
    EnvOverride {
        alias: Some("ENCRYPTION_KEY"),
        ..text("GATEHOUSE_ENCRYPTION_KEY", &["encryption", "key"])
    },
    text("GATEHOUSE_ENCRYPTION_KEY_FILE", &["encryption", "key_file"]),
    list("GATEHOUSE_KEYS_ALGORITHMS", &["keys", "algorithms"]),
    number("GATEHOUSE_KEYS_RSA_BITS", &["keys", "rsa_bits"]),
    number(
        "GATEHOUSE_KEYS_ROTATION_INTERVAL_DAYS",
        &["keys", "rotation_interval_days"],
    ),
    number(
        "GATEHOUSE_KEYS_OVERLAP_WINDOW_SECONDS",
        &["keys", "overlap_window_seconds"],
    ),
    number(
        "GATEHOUSE_KEYS_PROMOTION_DELAY_SECONDS",
        &["keys", "promotion_delay_seconds"],
    ),
    EnvOverride {
        alias: Some("RUST_LOG"),
        ..text("GATEHOUSE_LOG_LEVEL", &["log", "level"])
    },
    text("GATEHOUSE_LOG_FORMAT", &["log", "format"]),
    text("GATEHOUSE_METRICS_PREFIX", &["metrics", "prefix"]),
    text(
        "GATEHOUSE_TOKENS_ACCESS_TOKEN_ALG",
        &["tokens", "access_token_alg"],
    ),
    text("GATEHOUSE_TOKENS_ID_TOKEN_ALG", &["tokens", "id_token_alg"]),
    number(
        "GATEHOUSE_TOKENS_CLIENT_ASSERTION_MAX_LIFETIME_SECONDS",
        &["tokens", "client_assertion_max_lifetime_seconds"],
    ),
    boolean(
        "GATEHOUSE_TOKENS_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUDIENCE",
        &["tokens", "client_assertion_accept_endpoint_audience"],
    ),
    list("GATEHOUSE_DPOP_ALGORITHMS", &["dpop", "algorithms"]),
    boolean("GATEHOUSE_DPOP_REQUIRE_NONCE", &["dpop", "require_nonce"]),
    number(
        "GATEHOUSE_DPOP_PROOF_MAX_AGE_SECONDS",
        &["dpop", "proof_max_age_seconds"],
    ),
    number(
        "GATEHOUSE_DPOP_NONCE_LIFETIME_SECONDS",
        &["dpop", "nonce_lifetime_seconds"],
    ),
    boolean("GATEHOUSE_RATE_LIMITS_ENABLED", &["rate_limits", "enabled"]),
    number(
        "GATEHOUSE_RATE_LIMITS_WINDOW_SECONDS",
        &["rate_limits", "window_seconds"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_TOKEN_PER_CLIENT",
        &["rate_limits", "token_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_TOKEN_PER_IP",
        &["rate_limits", "token_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_INTROSPECTION_PER_CLIENT",
        &["rate_limits", "introspection_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_INTROSPECTION_PER_IP",
        &["rate_limits", "introspection_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_REVOCATION_PER_CLIENT",
        &["rate_limits", "revocation_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_REVOCATION_PER_IP",
        &["rate_limits", "revocation_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_PAR_PER_CLIENT",
        &["rate_limits", "par_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_PAR_PER_IP",
        &["rate_limits", "par_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_AUTHORIZE_PER_CLIENT",
        &["rate_limits", "authorize_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_AUTHORIZE_PER_IP",
        &["rate_limits", "authorize_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_LOGIN_PER_IP",
        &["rate_limits", "login_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_EMAIL_PER_IP",
        &["rate_limits", "email_per_ip"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_MANAGEMENT_READ_PER_CLIENT",
        &["rate_limits", "management_read_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_MANAGEMENT_WRITE_PER_CLIENT",
        &["rate_limits", "management_write_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_MANAGEMENT_DELETE_PER_CLIENT",
        &["rate_limits", "management_delete_per_client"],
    ),
    number(
        "GATEHOUSE_RATE_LIMITS_MANAGEMENT_SENSITIVE_PER_CLIENT",
        &["rate_limits", "management_sensitive_per_client"],
    ),
    EnvOverride {
        alias: Some("REDIS_URL"),
        ..text("GATEHOUSE_REDIS_URL", &["rate_limits", "redis_url"])
    },
    text("GATEHOUSE_ADMIN_LISTEN", &["admin", "listen"]),
    text("GATEHOUSE_ADMIN_TOKEN", &["admin", "token"]),
    text("GATEHOUSE_ADMIN_TOKEN_FILE", &["admin", "token_file"]),
    text("GATEHOUSE_ADMIN_TLS_CERT_FILE", &["admin", "tls_cert_file"]),
    text("GATEHOUSE_ADMIN_TLS_KEY_FILE", &["admin", "tls_key_file"]),
    number(
        "GATEHOUSE_AUDIT_RETENTION_DAYS",
        &["audit", "retention_days"],
    ),
    number("GATEHOUSE_PURGE_BATCH_SIZE", &["purge", "batch_size"]),
    number(
        "GATEHOUSE_PURGE_BATCH_PAUSE_MS",
        &["purge", "batch_pause_ms"],
    ),
    number(
        "GATEHOUSE_PURGE_DEVICE_RETENTION_DAYS",
        &["purge", "device_retention_days"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_ARGON2_MEMORY_KIB",
        &["passwords", "argon2_memory_kib"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_ARGON2_ITERATIONS",
        &["passwords", "argon2_iterations"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_ARGON2_PARALLELISM",
        &["passwords", "argon2_parallelism"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_MIN_LENGTH",
        &["passwords", "min_length"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_MAX_LENGTH",
        &["passwords", "max_length"],
    ),
    text("GATEHOUSE_PASSWORDS_BREACHED", &["passwords", "breached"]),
    text(
        "GATEHOUSE_PASSWORDS_HIBP_BASE_URL",
        &["passwords", "hibp_base_url"],
    ),
    number(
        "GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS",
        &["passwords", "hibp_timeout_seconds"],
    ),
    text("GATEHOUSE_UI_TEMPLATES_DIR", &["ui", "templates_dir"]),
    text("GATEHOUSE_UI_LOCALES_DIR", &["ui", "locales_dir"]),
    number(
        "GATEHOUSE_SESSIONS_MAX_ACCOUNTS",
        &["sessions", "max_accounts"],
    ),
    boolean(
        "GATEHOUSE_SESSIONS_ENCRYPT_DATA",
        &["sessions", "encrypt_data"],
    ),
    boolean(
        "GATEHOUSE_SESSIONS_REVOKE_ON_CREDENTIAL_RESET",
        &["sessions", "revoke_on_credential_reset"],
    ),
    number("GATEHOUSE_LOGIN_MAX_FAILURES", &["login", "max_failures"]),
    number(
        "GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP",
        &["login", "max_failures_per_ip"],
    ),
    number(
        "GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS",
        &["login", "failure_window_seconds"],
    ),
    number(
        "GATEHOUSE_LOGIN_LOCKOUT_SECONDS",
        &["login", "lockout_seconds"],
    ),
];

/// Writes every set variable into the YAML tree, creating sections as needed.
pub(super) fn apply(tree: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
    for o in ENV_OVERRIDES {
        let Some(raw) = env(o.var).or_else(|| o.alias.and_then(env)) else {
            continue;
        };
        let value = match o.kind {
            Kind::List => Value::Sequence(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            // A non-number stays text so the typed field reports it with its path.
            Kind::Number => raw
                .trim()
                .parse::<u64>()
                .map_or_else(|_| Value::String(raw.clone()), |n| Value::Number(n.into())),
            Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Value::Bool(true),
                "false" | "0" | "no" | "off" => Value::Bool(false),
                _ => Value::String(raw),
            },
            Kind::Text => Value::String(raw),
        };
        set(tree, o.path, value);
    }
}

fn set(tree: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        node = map
            .entry(Value::String((*key).to_owned()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = node {
        map.insert(Value::String((*last).to_owned()), value);
    }
}
