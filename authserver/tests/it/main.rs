//! Integration tests against real PostgreSQL and SQLite databases, called over HTTP. One
//! test binary for the crate (STYLE §7); each module covers one area, most tests run on
//! both backends. Protocol tests run the server in this process
//! ([`harness::TestDb::serve_in_process`]: `authserver::testing`, the same settings,
//! services and router as `serve`); tests of process behaviour (the CLI, start-up,
//! signals and shutdown, migrations, several instances, LISTEN/NOTIFY, logs, the admin
//! API) run the real `authserver` binary as a child process ([`harness::TestDb::serve`]).
//! Fixtures are created through the library ([`harness::TestDb::commands`]), not by
//! running the CLI, unless the CLI is what a test is about.

// All of this crate is test code, but clippy.toml's allow-*-in-tests only covers
// `#[test]` functions, not the harness they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod harness;

mod account_pages;
mod admin_api;
mod admin_tls;
mod authorize_flow;
mod bad_input;
mod client_auth;
mod client_retirement;
mod clients_cli;
mod code_grant;
mod config;
mod consents;
mod credential_reset;
mod database_outage;
mod devices;
mod discovery;
mod docs;
mod dpop;
mod email;
mod federation;
mod introspection;
mod keys;
mod languages;
mod languages_account;
mod ldap;
mod lifecycle;
mod link_order;
mod login;
mod management_api;
mod metrics;
mod mfa;
mod migrate;
mod multi_pod;
mod no_secrets_logged;
mod oidc_rp;
mod par;
mod passkeys;
mod purge;
mod rate_limit;
mod refresh;
mod routing;
mod telemetry;
mod token;
mod upstream_check;
mod userinfo;
mod users;
mod verified_tokens;
