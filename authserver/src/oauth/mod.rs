//! The OAuth 2.0 token service: client authentication, the token endpoint grants,
//! introspection and revocation, DPoP and rate limits. HTTP handlers in `http::token`
//! and friends only translate requests and responses.

pub mod client_auth;
pub mod client_documents;
pub mod code_grant;
pub mod dpop;
pub mod error;
pub mod form;
pub mod issuance;
pub mod rate_limit;
pub mod resource;
mod token;
pub mod userinfo;
pub mod verified;

use std::sync::Arc;

use crate::clients::ClientService;
use crate::clock::Clock;
use crate::config::{RateLimitSettings, TokenSettings};
use crate::keys::KeyService;
use crate::store::Store;

pub use error::{ErrorCode, OAuthError, RateHeaders};
pub(crate) use token::EndpointLimits;
pub use token::{EndpointRequest, TokenResponse};

/// Everything the protocol endpoints need, shared by all requests.
#[derive(Debug)]
pub struct OAuthService {
    pub store: Store,
    pub clients: Arc<ClientService>,
    pub keys: Arc<KeyService>,
    pub clock: Arc<dyn Clock>,
    pub tokens: TokenSettings,
    pub rate_limits: RateLimitSettings,
    pub dpop: dpop::Dpop,
    pub limiter: rate_limit::RateLimiter,
    pub jwks: client_documents::DocumentCache,
    /// Clients' sector identifier documents (pairwise subjects).
    pub sectors: client_documents::DocumentCache,
    /// End-user `sub` values (public or pairwise).
    pub subjects: Arc<crate::subject::Subjects>,
    /// Tokens issued, per tenant and grant type (`GET /stats` of the Management API).
    pub issued: Arc<issuance::IssuanceCounter>,
    /// Access tokens verified before (introspection, userinfo).
    pub verified: verified::VerifiedTokens,
}
