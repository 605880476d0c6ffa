//! Failures of an interaction step: the server's, never the user's (those are
//! [`super::Outcome`]s). No HTTP status here; the edge maps them (503 when the database
//! is unavailable, 500 otherwise) and logs them once.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Session(#[from] crate::session::Error),
    #[error("second factor: {0}")]
    Mfa(#[from] crate::mfa::MfaError),
    #[error("users: {0}")]
    Users(#[from] crate::users::Error),
    #[error("clients: {0}")]
    Clients(#[from] crate::clients::Error),
    #[error("e-mail: {0}")]
    Email(#[from] crate::email::Error),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::Error),
    /// A stored authorization request that does not parse: written by another version,
    /// or damaged.
    #[error("stored authorization request is unreadable: {0}")]
    StoredRequest(#[source] serde_json::Error),
    #[error("login throttle: {0}")]
    Throttle(#[source] crate::store::Error),
    /// A rule of the engine that did not hold (a bug).
    #[error("{0}")]
    Invariant(&'static str),
}

impl Error {
    /// Whether the database was unavailable (retry later), anywhere in the chain.
    pub fn is_unavailable(&self) -> bool {
        crate::store::is_unavailable(self)
    }
}
