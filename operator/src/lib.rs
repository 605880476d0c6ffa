//! Gatehouse operator: reconciles IdentityTenant, OidcClient and SigningKeySet resources
//! into the auth server (through its admin gRPC API), credentials Secrets, purge
//! CronJobs and migration Jobs.

pub mod admin_client;
pub mod authserver_pod;
pub mod client;
pub mod context;
pub mod controller;
pub mod keyset;
pub mod metrics;
pub mod migration;
pub mod tenant;

#[cfg(test)]
mod fixtures;
