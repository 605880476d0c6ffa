//! The auth server's admin gRPC API as the reconcilers see it: the [`AdminApi`] trait
//! (so reconcilers can run against a fake in tests), its tonic implementation
//! [`GrpcAdmin`] (bearer token on every call) and [`AdminError`], which keeps only what
//! a reconciler acts on: the gRPC code class and the server's message.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Generated protobuf types and the `Admin` client (no server: see `build.rs`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("gatehouse.admin.v1");
}

use proto::admin_client::AdminClient;

/// How a failed admin call failed, as far as a reconciler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminErrorKind {
    /// Not reachable (connection refused, DNS, timeout) or not serving: retry with backoff.
    Unavailable,
    /// The request was rejected; the message starts with the offending field path.
    InvalidArgument,
    /// The tenant or client named in the request does not exist.
    NotFound,
    /// Another object already holds the identity (an issuer used by another tenant).
    AlreadyExists,
    /// The bearer token was refused: the operator's `--admin-token-file` is wrong.
    Unauthenticated,
    /// The client id is retired: a client with that id was deleted (admin.proto's one
    /// FAILED_PRECONDITION); waits for a spec change.
    ClientIdRetired,
    /// The server does not know the call: an auth server older than the operator
    /// (during a rolling upgrade, or pinned to an older version).
    Unimplemented,
    /// Anything else (the server logged the detail): retry with backoff.
    Other,
}

/// A failed admin API call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    pub kind: AdminErrorKind,
    pub message: String,
}

impl AdminError {
    pub fn new(kind: AdminErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn is(&self, kind: AdminErrorKind) -> bool {
        self.kind == kind
    }
}

impl From<Status> for AdminError {
    fn from(status: Status) -> Self {
        let kind = match status.code() {
            // tonic reports connect errors (refused, DNS, TLS) as UNAVAILABLE and its
            // per-request timeout as CANCELLED/DEADLINE_EXCEEDED: all "not reachable now".
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                AdminErrorKind::Unavailable
            }
            Code::InvalidArgument => AdminErrorKind::InvalidArgument,
            Code::NotFound => AdminErrorKind::NotFound,
            Code::AlreadyExists => AdminErrorKind::AlreadyExists,
            Code::FailedPrecondition => AdminErrorKind::ClientIdRetired,
            Code::Unauthenticated | Code::PermissionDenied => AdminErrorKind::Unauthenticated,
            Code::Unimplemented => AdminErrorKind::Unimplemented,
            _ => AdminErrorKind::Other,
        };
        let message = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else {
            status.message().to_owned()
        };
        Self { kind, message }
    }
}

/// Result of an admin call.
pub type AdminResult<T> = Result<T, AdminError>;

/// The admin API calls the reconcilers make. Implemented by [`GrpcAdmin`] and, in tests,
/// by an in-memory fake.
#[tonic::async_trait]
pub trait AdminApi: Send + Sync {
    async fn health(&self) -> AdminResult<proto::HealthResponse>;
    async fn upsert_tenant(
        &self,
        req: proto::UpsertTenantRequest,
    ) -> AdminResult<proto::UpsertTenantResponse>;
    /// Whether the tenant existed.
    async fn delete_tenant(&self, id: &str) -> AdminResult<bool>;
    /// Whether a sign-in through each of the tenant's upstream providers can start, as
    /// the auth server sees it (one check per provider, in order).
    async fn check_upstreams(&self, tenant_id: &str) -> AdminResult<Vec<proto::UpstreamCheck>>;
    async fn upsert_client(
        &self,
        req: proto::UpsertClientRequest,
    ) -> AdminResult<proto::UpsertClientResponse>;
    /// Whether the client existed.
    async fn delete_client(&self, tenant_id: &str, client_id: &str) -> AdminResult<bool>;
    async fn rotate_client_secret(
        &self,
        req: proto::RotateClientSecretRequest,
    ) -> AdminResult<proto::RotateClientSecretResponse>;
    async fn list_signing_keys(
        &self,
        req: proto::ListSigningKeysRequest,
    ) -> AdminResult<proto::SigningKeySet>;
    async fn rotate_signing_keys(
        &self,
        req: proto::RotateSigningKeysRequest,
    ) -> AdminResult<proto::RotateSigningKeysResponse>;
    async fn import_signing_key(
        &self,
        req: proto::ImportSigningKeyRequest,
    ) -> AdminResult<proto::ImportSigningKeyResponse>;
}

/// Adds `authorization: Bearer <token>` to every call. The value is marked sensitive so
/// tonic and hyper never print it. Built from a file (a mounted Secret), the token is
/// read again every few seconds: a rotated Secret reaches the operator without a
/// restart, and a Secret created after start (bootstrap) is picked up when it appears.
#[derive(Clone)]
pub struct BearerToken(Arc<std::sync::RwLock<Result<MetadataValue<Ascii>, String>>>);

/// How often the token file is read again.
const TOKEN_RELOAD: Duration = Duration::from_secs(5);

fn header_value(token: &SecretString) -> Result<MetadataValue<Ascii>, String> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret())
        .parse()
        .map_err(|_| "the admin token contains characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

impl BearerToken {
    pub fn new(token: &SecretString) -> Result<Self, String> {
        Ok(Self(Arc::new(std::sync::RwLock::new(Ok(header_value(
            token,
        )?)))))
    }

    /// The token in `path`, read now and again every few seconds (needs a Tokio runtime).
    pub fn from_file(path: &Path) -> Self {
        let load = |p: &Path| read_token(p).and_then(|t| header_value(&t));
        let auth = Self(Arc::new(std::sync::RwLock::new(load(path))));
        let (slot, path) = (Arc::clone(&auth.0), path.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TOKEN_RELOAD).await;
                let next = load(&path);
                if let Ok(mut current) = slot.write() {
                    if current.is_ok() != next.is_ok() {
                        tracing::info!(available = next.is_ok(), "admin token file changed");
                    }
                    *current = next;
                }
            }
        });
        auth
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let current = self
            .0
            .read()
            .map_err(|_| Status::internal("admin token lock poisoned"))?;
        match &*current {
            Ok(value) => {
                req.metadata_mut().insert("authorization", value.clone());
                Ok(req)
            }
            // Not sent at all: the call fails as unauthenticated, and says why.
            Err(why) => Err(Status::unauthenticated(format!(
                "no admin token: {why} (--admin-token-file)"
            ))),
        }
    }
}

/// Reads the admin token from `path` (surrounding whitespace trimmed, as Secrets mounted
/// from `kubectl create secret --from-file` often end in a newline).
pub fn read_token(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Connect timeout for the admin API: a missing Service fails fast into backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-call timeout: every admin call is a few database statements.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin API over gRPC. The channel connects lazily and reconnects by itself, so an
/// auth server that is down at start or restarts later only fails the calls made
/// meanwhile (as [`AdminErrorKind::Unavailable`]).
#[derive(Clone)]
pub struct GrpcAdmin {
    client: Arc<std::sync::RwLock<Client>>,
}

type Client = AdminClient<InterceptedService<Channel, BearerToken>>;

/// How often `--admin-ca-file` is read again: cert-manager renews a CA (and the Secret
/// mounted from it) without restarting anyone.
const CA_RELOAD: Duration = Duration::from_secs(5);

impl GrpcAdmin {
    /// A client for `addr` (`http://host:port`), authenticating with `token`.
    pub fn connect_lazy(addr: &str, token: &SecretString) -> Result<Self, String> {
        Ok(Self::with_auth(
            &endpoint(addr, None)?,
            BearerToken::new(token)?,
        ))
    }

    /// A client for `addr` whose token comes from a file read again while running.
    pub fn connect_lazy_with_token_file(addr: &str, path: &Path) -> Result<Self, String> {
        Ok(Self::with_auth(
            &endpoint(addr, None)?,
            BearerToken::from_file(path),
        ))
    }

    /// A client for `addr` that verifies the server with the PEM CA bundle `ca_pem`
    /// (`https://` addresses) and authenticates with `token`.
    pub fn connect_lazy_tls(
        addr: &str,
        ca_pem: &[u8],
        token: &SecretString,
    ) -> Result<Self, String> {
        Ok(Self::with_auth(
            &endpoint(addr, Some(ca_pem))?,
            BearerToken::new(token)?,
        ))
    }

    /// The operator's client: `--admin-addr`, `--admin-ca-file` and `--admin-token-file`,
    /// both files read again while running (needs a Tokio runtime). The CA bundle must be
    /// usable at start; a changed bundle replaces the channel (new connections verify
    /// against it), one that cannot be read or parsed later keeps the last good one and
    /// says so in the log. Errors name the flag.
    pub fn from_flags(
        addr: &str,
        ca_file: Option<&Path>,
        token_file: &Path,
    ) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| format!("--admin-ca-file: cannot read {}: {e}", path.display()))
        };
        let ca = ca_file.map(read).transpose()?;
        let auth = BearerToken::from_file(token_file);
        let admin = Self::with_auth(&endpoint(addr, ca.as_deref())?, auth.clone());
        if let (Some(path), Some(mut current)) = (ca_file, ca) {
            let (slot, path, addr) = (Arc::clone(&admin.client), path.to_owned(), addr.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CA_RELOAD).await;
                    let next = match read(&path) {
                        Ok(next) if next != current => next,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "admin CA bundle unreadable; keeping the last one");
                            continue;
                        }
                    };
                    match endpoint(&addr, Some(&next)) {
                        Ok(endpoint) => {
                            if let Ok(mut client) = slot.write() {
                                *client = AdminClient::with_interceptor(
                                    endpoint.connect_lazy(),
                                    auth.clone(),
                                );
                                tracing::info!("admin CA bundle changed; reconnecting with it");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin CA bundle unusable; keeping the last one");
                        }
                    }
                    current = next;
                }
            });
        }
        Ok(admin)
    }

    fn with_auth(endpoint: &Endpoint, auth: BearerToken) -> Self {
        Self {
            client: Arc::new(std::sync::RwLock::new(AdminClient::with_interceptor(
                endpoint.connect_lazy(),
                auth,
            ))),
        }
    }

    /// The current client (cheap: a channel handle).
    fn client(&self) -> Result<Client, AdminError> {
        self.client
            .read()
            .map(|c| c.clone())
            .map_err(|_| AdminError::from(Status::internal("admin client lock poisoned")))
    }
}

/// The admin API's endpoint: plaintext for `http://`, TLS verified against `ca_pem` (and
/// only it: no system roots, the admin API's certificate comes from the cluster's own
/// CA) for `https://`. The token goes over either; TLS keeps it off the wire.
pub fn endpoint(addr: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| format!("--admin-addr: invalid address {addr:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    match (addr.starts_with("https://"), ca_pem) {
        (false, None) => Ok(endpoint),
        (false, Some(_)) => Err(format!(
            "--admin-ca-file is set but --admin-addr {addr:?} is not https://"
        )),
        (true, None) => Err(format!(
            "--admin-addr {addr:?} is https://: --admin-ca-file must name the CA bundle that signed the admin API's certificate"
        )),
        (true, Some(pem)) => {
            // tonic accepts a bundle without certificates and then trusts nothing: every
            // call would fail with a handshake error far from its cause.
            if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err("--admin-ca-file: no PEM certificate in the file".to_owned());
            }
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            endpoint
                .tls_config(tls)
                .map_err(|e| format!("--admin-ca-file: unusable CA bundle: {e}"))
        }
    }
}

#[tonic::async_trait]
impl AdminApi for GrpcAdmin {
    async fn health(&self) -> AdminResult<proto::HealthResponse> {
        let mut c = self.client()?;
        Ok(c.health(proto::HealthRequest {}).await?.into_inner())
    }

    async fn upsert_tenant(
        &self,
        req: proto::UpsertTenantRequest,
    ) -> AdminResult<proto::UpsertTenantResponse> {
        let mut c = self.client()?;
        Ok(c.upsert_tenant(req).await?.into_inner())
    }

    async fn delete_tenant(&self, id: &str) -> AdminResult<bool> {
        let mut c = self.client()?;
        let req = proto::DeleteTenantRequest { id: id.to_owned() };
        Ok(c.delete_tenant(req).await?.into_inner().deleted)
    }

    async fn check_upstreams(&self, tenant_id: &str) -> AdminResult<Vec<proto::UpstreamCheck>> {
        let mut c = self.client()?;
        let req = proto::CheckUpstreamsRequest {
            tenant_id: tenant_id.to_owned(),
        };
        Ok(c.check_upstreams(req).await?.into_inner().checks)
    }

    async fn upsert_client(
        &self,
        req: proto::UpsertClientRequest,
    ) -> AdminResult<proto::UpsertClientResponse> {
        let mut c = self.client()?;
        Ok(c.upsert_client(req).await?.into_inner())
    }

    async fn delete_client(&self, tenant_id: &str, client_id: &str) -> AdminResult<bool> {
        let mut c = self.client()?;
        let req = proto::DeleteClientRequest {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
        };
        Ok(c.delete_client(req).await?.into_inner().deleted)
    }

    async fn rotate_client_secret(
        &self,
        req: proto::RotateClientSecretRequest,
    ) -> AdminResult<proto::RotateClientSecretResponse> {
        let mut c = self.client()?;
        Ok(c.rotate_client_secret(req).await?.into_inner())
    }

    async fn list_signing_keys(
        &self,
        req: proto::ListSigningKeysRequest,
    ) -> AdminResult<proto::SigningKeySet> {
        let mut c = self.client()?;
        Ok(c.list_signing_keys(req).await?.into_inner())
    }

    async fn rotate_signing_keys(
        &self,
        req: proto::RotateSigningKeysRequest,
    ) -> AdminResult<proto::RotateSigningKeysResponse> {
        let mut c = self.client()?;
        Ok(c.rotate_signing_keys(req).await?.into_inner())
    }

    async fn import_signing_key(
        &self,
        req: proto::ImportSigningKeyRequest,
    ) -> AdminResult<proto::ImportSigningKeyResponse> {
        let mut c = self.client()?;
        Ok(c.import_signing_key(req).await?.into_inner())
    }
}

/// What an upsert did: the typed field, or for an auth server older than it (during a
/// rolling upgrade) the name it sent instead.
pub fn upsert_outcome(response: &proto::UpsertClientResponse) -> proto::UpsertOutcome {
    match response.outcome() {
        proto::UpsertOutcome::Unspecified => match response.outcome_name.as_str() {
            "created" => proto::UpsertOutcome::Created,
            "updated" => proto::UpsertOutcome::Updated,
            _ => proto::UpsertOutcome::Unchanged,
        },
        typed => typed,
    }
}

/// A signing key's state: the typed field, or for an auth server older than it the name
/// it sent instead (`Unspecified` when neither is known).
pub fn key_state(key: &proto::SigningKey) -> proto::KeyState {
    match key.key_state() {
        proto::KeyState::Unspecified => match key.state.as_str() {
            "pending" => proto::KeyState::Pending,
            "active" => proto::KeyState::Active,
            "retiring" => proto::KeyState::Retiring,
            "retired" => proto::KeyState::Retired,
            _ => proto::KeyState::Unspecified,
        },
        typed => typed,
    }
}

/// Rewrites the field path at the start of an INVALID_ARGUMENT message from the proto
/// request (`spec.redirect_uris: …`) to the custom resource's (`spec.redirectUris: …`), so
/// the condition names the field the user wrote. `renames` maps whole proto paths that
/// differ in more than case (`issuer` → `spec.issuer`).
pub fn resource_field_message(message: &str, renames: &[(&str, &str)]) -> String {
    message
        .split("; ")
        .map(|part| {
            let Some((path, rest)) = part.split_once(": ") else {
                return part.to_owned();
            };
            if let Some((_, to)) = renames.iter().find(|(from, _)| *from == path) {
                return format!("{to}: {rest}");
            }
            format!("{}: {rest}", camel_case_path(path))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `spec.post_logout_redirect_uris[0]` → `spec.postLogoutRedirectUris[0]`.
fn camel_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_what_a_reconciler_does_next() {
        let kind = |s: Status| AdminError::from(s).kind;
        assert_eq!(
            kind(Status::unavailable("tcp connect error")),
            AdminErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::deadline_exceeded("")),
            AdminErrorKind::Unavailable
        );
        assert_eq!(
            kind(Status::invalid_argument("issuer: bad")),
            AdminErrorKind::InvalidArgument
        );
        assert_eq!(kind(Status::not_found("x")), AdminErrorKind::NotFound);
        assert_eq!(
            kind(Status::already_exists("x")),
            AdminErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(Status::unauthenticated("x")),
            AdminErrorKind::Unauthenticated
        );
        assert_eq!(
            kind(Status::failed_precondition("client id \"web\" is retired")),
            AdminErrorKind::ClientIdRetired
        );
        assert_eq!(
            kind(Status::unimplemented("")),
            AdminErrorKind::Unimplemented,
            "an older auth server"
        );
        assert_eq!(kind(Status::internal("x")), AdminErrorKind::Other);
        assert_eq!(
            AdminError::from(Status::internal("")).message,
            "Internal",
            "an empty message still says something"
        );
    }

    #[test]
    fn invalid_argument_paths_are_rewritten_to_the_resource_fields() {
        assert_eq!(
            resource_field_message(
                "spec.redirect_uris[1]: must be https; spec.grant_types: unknown",
                &[]
            ),
            "spec.redirectUris[1]: must be https; spec.grantTypes: unknown"
        );
        assert_eq!(
            resource_field_message(
                "issuer: must be https",
                &[("issuer", "spec.issuer"), ("id", "metadata.name")]
            ),
            "spec.issuer: must be https"
        );
        assert_eq!(resource_field_message("no path here", &[]), "no path here");
    }

    #[test]
    fn the_bearer_header_is_sensitive_and_prefixed() {
        let mut auth = BearerToken::new(&SecretString::from("t".repeat(32))).unwrap();
        let req = auth.call(Request::new(())).unwrap();
        let value = req.metadata().get("authorization").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(
            value.to_str().unwrap(),
            format!("Bearer {}", "t".repeat(32))
        );
        assert!(BearerToken::new(&SecretString::from("bad\ntoken".to_owned())).is_err());
    }

    #[tokio::test]
    async fn a_token_file_that_appears_or_changes_is_picked_up_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let mut auth = BearerToken::from_file(&path);
        let refused = auth.call(Request::new(())).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.message().contains("cannot read"), "{refused:?}");
        std::fs::write(&path, "first-token\n").unwrap();
        tokio::time::sleep(TOKEN_RELOAD + Duration::from_millis(500)).await;
        let req = auth.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer first-token"
        );
    }

    #[test]
    fn https_needs_a_ca_bundle_and_a_ca_bundle_needs_https() {
        let ca = include_bytes!("../../testing/tls/ca-a.crt");
        assert!(endpoint("http://gatehouse-admin:8081", None).is_ok());
        assert!(endpoint("https://gatehouse-admin.gatehouse.svc:8081", Some(ca)).is_ok());
        let no_ca = endpoint("https://gatehouse-admin:8081", None).unwrap_err();
        assert!(no_ca.contains("--admin-ca-file must name"), "{no_ca}");
        let plain = endpoint("http://gatehouse-admin:8081", Some(ca)).unwrap_err();
        assert!(plain.starts_with("--admin-ca-file is set"), "{plain}");
        let empty = endpoint("https://gatehouse-admin:8081", Some(b"\n")).unwrap_err();
        assert_eq!(empty, "--admin-ca-file: no PEM certificate in the file");
        let dir = tempfile::tempdir().unwrap();
        let missing = GrpcAdmin::from_flags(
            "https://gatehouse-admin:8081",
            Some(&dir.path().join("ca.crt")),
            &dir.path().join("token"),
        )
        .err()
        .unwrap();
        assert!(
            missing.starts_with("--admin-ca-file: cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn the_token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  secret-token\n").unwrap();
        assert_eq!(read_token(&path).unwrap().expose_secret(), "secret-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("is empty"));
        assert!(
            read_token(&dir.path().join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
