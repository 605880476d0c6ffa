//! The shape of the YAML file. Values stay loosely typed (strings) where validation wants
//! to report a readable problem instead of a deserializer error.

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub database: DatabaseSection,
    pub encryption: EncryptionSection,
    pub tenants: Vec<TenantEntry>,
    pub keys: KeysSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub tokens: TokensSection,
    pub dpop: DpopSection,
    pub rate_limits: RateLimitsSection,
    pub admin: AdminSection,
    pub audit: AuditSection,
    pub passwords: PasswordsSection,
    pub ui: UiSection,
    pub sessions: SessionsSection,
    pub login: LoginSection,
    pub outbound: OutboundSection,
    pub cache: CacheSection,
    pub purge: PurgeSection,
    pub email: EmailSection,
    pub geoip: GeoIpSection,
}

/// `geoip.*`: a MaxMind-format database for countries and impossible travel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpSection {
    pub database: Option<String>,
}

/// `email.*`: outgoing mail (SMTP) and the outbox sender.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSection {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_security: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_timeout_seconds: Option<u64>,
    pub from: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub per_address_per_hour: Option<u32>,
}

/// `purge.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeSection {
    pub batch_size: Option<u32>,
    pub batch_pause_ms: Option<u64>,
    pub device_retention_days: Option<u32>,
}

/// `cache.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    pub max_stale_seconds_during_outage: Option<u64>,
    pub verified_tokens: Option<u64>,
}

/// `outbound.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSection {
    pub allowed_networks: Vec<String>,
    pub allow_http: Option<bool>,
    pub connect_timeout_seconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
}

/// `server.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub ops_listen: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub shutdown_timeout_seconds: Option<u64>,
    pub shutdown_delay_seconds: Option<u64>,
}

/// `database.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    pub connect_timeout_seconds: Option<u64>,
    pub startup_timeout_seconds: Option<u64>,
    pub acquire_timeout_ms: Option<u64>,
}

/// `encryption.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionSection {
    pub key: Option<String>,
    pub key_file: Option<String>,
}

/// One entry of `tenants`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantEntry {
    pub id: String,
    pub issuer: String,
    pub display_name: Option<String>,
    /// Tenant policy (`TenantPolicy`, the IdentityTenant's camelCase settings); when
    /// given, it replaces the stored settings at start-up.
    pub settings: Option<serde_json::Value>,
}

/// `keys.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysSection {
    pub algorithms: Option<Vec<String>>,
    pub rsa_bits: Option<u32>,
    pub rotation_interval_days: Option<u32>,
    pub overlap_window_seconds: Option<u64>,
    pub promotion_delay_seconds: Option<u64>,
}

/// `log.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// `metrics.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub prefix: Option<String>,
}

/// `tokens.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    pub access_token_alg: Option<String>,
    pub id_token_alg: Option<String>,
    pub client_assertion_max_lifetime_seconds: Option<u64>,
    pub client_assertion_accept_endpoint_audience: Option<bool>,
}

/// `dpop.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopSection {
    pub algorithms: Option<Vec<String>>,
    pub require_nonce: Option<bool>,
    pub proof_max_age_seconds: Option<u64>,
    pub nonce_lifetime_seconds: Option<u64>,
}

/// `rate_limits.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsSection {
    pub enabled: Option<bool>,
    pub window_seconds: Option<u64>,
    pub token_per_client: Option<u64>,
    pub token_per_ip: Option<u64>,
    pub introspection_per_client: Option<u64>,
    pub introspection_per_ip: Option<u64>,
    pub revocation_per_client: Option<u64>,
    pub revocation_per_ip: Option<u64>,
    pub par_per_client: Option<u64>,
    pub par_per_ip: Option<u64>,
    pub authorize_per_client: Option<u64>,
    pub authorize_per_ip: Option<u64>,
    pub login_per_ip: Option<u64>,
    pub email_per_ip: Option<u64>,
    pub management_read_per_client: Option<u64>,
    pub management_write_per_client: Option<u64>,
    pub management_delete_per_client: Option<u64>,
    pub management_sensitive_per_client: Option<u64>,
    pub redis_url: Option<String>,
}

/// `admin.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
}

/// `audit.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    pub retention_days: Option<u64>,
}

/// `passwords.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsSection {
    pub argon2_memory_kib: Option<u32>,
    pub argon2_iterations: Option<u32>,
    pub argon2_parallelism: Option<u32>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub breached: Option<String>,
    pub hibp_base_url: Option<String>,
    pub hibp_timeout_seconds: Option<u64>,
}

/// `ui.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSection {
    pub templates_dir: Option<String>,
    pub locales_dir: Option<String>,
}

/// `sessions.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    pub max_accounts: Option<usize>,
    pub encrypt_data: Option<bool>,
    pub revoke_on_credential_reset: Option<bool>,
}

/// `login.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSection {
    pub max_failures: Option<u32>,
    pub max_failures_per_ip: Option<u32>,
    pub failure_window_seconds: Option<u64>,
    pub lockout_seconds: Option<u64>,
}
