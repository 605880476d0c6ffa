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
    /// Manage OAuth clients directly in the configured database.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage end users directly in the configured database.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Delete expired rows (revoked token ids, replay caches, nonces, old audit events).
    Purge(PurgeArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints {"client_id": …, "client_secret": …} (the secret only
    /// once, and none for public clients).
    Create(Box<CreateClientArgs>),
    /// List a tenant's clients as JSON lines.
    List {
        /// Tenant (default: the only tenant, or `default`).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete a client: revokes its grants, refresh and access tokens, deletes its
    /// consents, codes and pending authorization requests, and retires its id.
    Delete {
        #[arg(long)]
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the tenant's retired client ids (deleted clients) as JSON lines.
    ListRetired {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Free a retired client id for registration again; refused until the longest token
    /// lifetime has passed since the deletion.
    PurgeRetired {
        #[arg(long)]
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Issue a new secret; the previous one stays valid for the overlap.
    RotateSecret {
        #[arg(long)]
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        /// How long the previous secret keeps working, in seconds.
        #[arg(long, default_value_t = 86_400)]
        overlap_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from stdin (never from the command line).
    /// Prints {"user_id": …, "username": …}.
    Create(Box<CreateUserArgs>),
    /// List a tenant's users as JSON lines (never a password hash).
    List {
        /// Tenant (default: the only tenant, or `default`).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete a user.
    Delete {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set a user's password, read from stdin.
    SetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from stdin (the only way: argv is visible to other users).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a user's TOTP authenticator and recovery codes (a lost device); the user
    /// enrols again at the next sign-in that needs a second factor.
    ResetMfa {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove every passkey of a user (a lost or stolen device); they sign in with their
    /// password (and any other second factor) and add passkeys again.
    ResetPasskeys {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Require (or stop requiring) a second factor for one user, whatever the tenant
    /// policy says.
    SetMfaRequired {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
        /// true or false.
        #[arg(long, required = true, action = clap::ArgAction::Set, value_name = "true|false")]
        required: bool,
    },
    /// List the clients a user has consented to as JSON lines
    /// ({"client_id": …, "scopes": […], "granted_at": …, "updated_at": …}).
    Consents {
        #[arg(long)]
        username: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a user's consent to a client together with every live grant of the user
    /// for it (refresh tokens stop working, access tokens introspect inactive).
    RevokeConsent {
        #[arg(long)]
        username: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// Username: letters, digits and . _ - @ +; unique per tenant, case-insensitively.
    #[arg(long)]
    pub username: String,
    /// Tenant (default: the only tenant, or `default`).
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    /// Mark the email address as verified.
    #[arg(long)]
    pub email_verified: bool,
    /// Full name (the `name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// The `given_name` claim.
    #[arg(long)]
    pub given_name: Option<String>,
    /// The `family_name` claim.
    #[arg(long)]
    pub family_name: Option<String>,
    /// Read the password from stdin (the only way: argv is visible to other users).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
// Each flag is a yes/no switch on the command line; an enum would only rename them.
#[allow(clippy::struct_excessive_bools)]
pub struct CreateClientArgs {
    /// Client id (letters, digits, - . _ ~).
    #[arg(long)]
    pub id: String,
    /// Tenant (default: the only tenant, or `default`).
    #[arg(long)]
    pub tenant: Option<String>,
    /// A public client (no secret; auth method none).
    #[arg(long)]
    pub public: bool,
    /// Comma-separated grant types (default: client_credentials, or authorization_code
    /// when redirect URIs are given).
    #[arg(long, value_delimiter = ',')]
    pub grant_types: Vec<String>,
    /// Allowed redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Allowed post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Space-separated scopes the client may request.
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Space-separated audiences (resources) the client may request tokens for.
    #[arg(long, default_value = "")]
    pub audiences: String,
    /// client_secret_basic | client_secret_post | private_key_jwt | none.
    #[arg(long)]
    pub auth_method: Option<String>,
    /// The client's JWK Set URL (private_key_jwt).
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// Access tokens must be DPoP-bound.
    #[arg(long)]
    pub dpop_bound_access_tokens: bool,
    /// First-party client: no consent screen.
    #[arg(long)]
    pub first_party: bool,
    /// May introspect every token of the tenant (a resource server); without it a client
    /// learns only about tokens issued to it or naming it as an audience.
    #[arg(long)]
    pub introspect_any_token: bool,
    /// Access token lifetime in seconds (60–86400).
    #[arg(long)]
    pub access_token_lifetime: Option<u64>,
    /// Access token signing algorithm: RS256, ES256 or EdDSA (default: tokens.access_token_alg).
    #[arg(long)]
    pub access_token_alg: Option<String>,
    /// Refresh token (sliding) lifetime in seconds (60–31536000).
    #[arg(long)]
    pub refresh_token_lifetime: Option<u64>,
    /// ID token signing algorithm: RS256, ES256 or EdDSA (default: tokens.id_token_alg).
    #[arg(long)]
    pub id_token_alg: Option<String>,
    /// Issue refresh tokens even without the offline_access scope.
    #[arg(long)]
    pub refresh_without_offline_access: bool,
    /// Subject type for end users: public (default) or pairwise.
    #[arg(long)]
    pub subject_type: Option<String>,
    /// Pairwise subjects: https URL whose host is the sector identifier.
    #[arg(long)]
    pub sector_identifier_uri: Option<String>,
    /// Origin allowed to call the token, userinfo, discovery and JWKS endpoints from a
    /// browser (repeatable; scheme://host[:port]).
    #[arg(long = "allowed-cors-origin")]
    pub allowed_cors_origins: Vec<String>,
    /// Authorization requests must be pushed first (RFC 9126 PAR).
    #[arg(long)]
    pub require_par: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Comma-separated targets (default: all). Unknown names exit 2 with the valid list.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Stop after this long (e.g. 10m, 90s, 1h); 0 disables the deadline.
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    /// Only this tenant's rows.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Rows per batch, each batch one short statement (default: purge.batch_size, 1000).
    #[arg(long)]
    pub batch_size: Option<i64>,
    /// Pause after each full batch in milliseconds, so that a large purge leaves the
    /// database to live traffic most of the time (default: purge.batch_pause_ms, 100).
    #[arg(long)]
    pub batch_pause_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create keys for every configured algorithm a tenant has no key for.
    Generate {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Rotate: a new key per algorithm is published now and signs after
    /// keys.promotion_delay_seconds; the old one stays published until its tokens expired.
    Rotate {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Rotate only algorithms whose key is older than the rotation interval (for cron).
        #[arg(long, conflicts_with = "now")]
        if_due: bool,
        /// Emergency (a compromised key): the new keys sign at once and every previous key
        /// leaves the JWKS at once. Relying parties with a cached JWKS reject new tokens
        /// until they refetch it, and every token signed before stops verifying.
        #[arg(long)]
        now: bool,
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
