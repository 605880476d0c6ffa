//! Gatehouse auth server library: configuration, domain rules, storage, crypto, the
//! signing key service and the HTTP surface. `main.rs` only parses and runs.

pub mod admin;
pub mod authorize;
pub mod breach;
pub mod cache;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod devices;
pub mod domain;
pub mod email;
pub mod federation;
pub mod http;
pub mod interaction;
pub mod keys;
pub mod management;
pub mod mfa;
pub mod oauth;
pub mod outbound;
pub mod passkeys;
pub mod readiness;
pub mod session;
pub mod store;
pub mod subject;
pub mod telemetry;
pub mod tenants;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod throttle;
pub mod ui;
pub mod users;
