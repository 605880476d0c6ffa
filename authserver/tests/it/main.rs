//! Integration tests: the real `authserver` binary, run as child processes against real
//! PostgreSQL and SQLite databases and called over HTTP. One test binary for the crate
//! (STYLE §7); each module covers one area, most tests run on both backends.

// All of this crate is test code, but clippy.toml's allow-*-in-tests only covers
// `#[test]` functions, not the harness they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod harness;

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
mod discovery;
mod docs;
mod dpop;
mod introspection;
mod keys;
mod lifecycle;
mod login;
mod management_api;
mod metrics;
mod mfa;
mod migrate;
mod multi_pod;
mod no_secrets_logged;
mod oidc_rp;
mod par;
mod purge;
mod rate_limit;
mod refresh;
mod routing;
mod telemetry;
mod token;
mod userinfo;
mod users;
