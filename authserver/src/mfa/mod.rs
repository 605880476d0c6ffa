//! Multi-factor authentication: TOTP (RFC 6238) and one-time recovery codes.

pub mod recovery;
pub mod totp;
