//! Domain types and pure rules. No database, no HTTP.

pub mod client;
pub mod federation;
pub mod ldap;
pub mod policy;
pub mod signing_key;
pub mod tenant;
pub mod user;
