//! The admin gRPC API of a running `serve`, called through the tonic client generated
//! from `proto/` (the one the operator uses).

use std::time::{Duration, Instant};

use authserver::admin::proto::admin_client::AdminClient;
use authserver::admin::proto::{self, ClientSpec, UpsertClientRequest};
use tonic::transport::Channel;

use super::process::POLL;
use super::{Cli, Server, TestDb, free_port};

/// The bearer token test servers are started with.
pub const ADMIN_TOKEN: &str = "it-admin-token-0123456789abcdef-0123456789";

/// `msg` with `authorization: Bearer {token}`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// `msg` with the right bearer token.
pub fn authed<T>(msg: T) -> tonic::Request<T> {
    with_token(msg, ADMIN_TOKEN)
}

/// `db.cli()` with the admin API enabled on `admin_port`.
pub fn admin_cli(db: &TestDb, admin_port: u16) -> Cli {
    db.cli()
        .env("GATEHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
}

/// Connects to the admin API on `port`, waiting (bounded) for it to listen.
pub async fn connect(port: u16) -> AdminClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match AdminClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "admin API on port {port} unreachable: {e}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Starts `serve` on the database's primary port with the admin API on a free port.
pub async fn serve_with_admin(db: &TestDb) -> (Server, AdminClient<Channel>) {
    let admin_port = free_port();
    let server = admin_cli(db, admin_port).serve(db.port).await;
    (server, connect(admin_port).await)
}

/// A confidential client_credentials client with Basic auth, scopes `read write`.
pub fn machine_spec(id: &str) -> ClientSpec {
    ClientSpec {
        client_id: id.to_owned(),
        client_type: "confidential".to_owned(),
        grant_types: vec!["client_credentials".to_owned()],
        scopes: vec!["read".to_owned(), "write".to_owned()],
        token_endpoint_auth_method: "client_secret_basic".to_owned(),
        ..ClientSpec::default()
    }
}

/// Upserts `spec` into tenant `main` asking for a generated secret; returns the
/// response.
pub async fn upsert(
    admin: &mut AdminClient<Channel>,
    spec: ClientSpec,
) -> authserver::admin::proto::UpsertClientResponse {
    admin
        .upsert_client(upsert_request(
            spec,
            authserver::admin::proto::upsert_client_request::Secret::GenerateIfMissing(true),
        ))
        .await
        .expect("UpsertClient succeeds")
        .into_inner()
}

/// The client `id` of tenant `main`, which must exist.
pub async fn get_client(
    admin: &mut AdminClient<Channel>,
    id: &str,
) -> authserver::admin::proto::Client {
    admin
        .get_client(authed(authserver::admin::proto::GetClientRequest {
            tenant_id: "main".into(),
            client_id: id.into(),
        }))
        .await
        .expect("GetClient succeeds")
        .into_inner()
}

/// An upsert's outcome as the typed field says it and as the name older operators read.
pub fn assert_upsert_outcome(response: &proto::UpsertClientResponse, name: &str) {
    let typed = match name {
        "created" => proto::UpsertOutcome::Created,
        "updated" => proto::UpsertOutcome::Updated,
        _ => proto::UpsertOutcome::Unchanged,
    };
    assert_eq!(response.outcome(), typed, "{response:?}");
    assert_eq!(response.outcome_name, name, "kept for older operators");
}

/// An authenticated UpsertClient request of tenant `main`, as the admin API's own
/// callers send it (no owner: "the admin API").
pub fn upsert_request(
    spec: ClientSpec,
    secret: authserver::admin::proto::upsert_client_request::Secret,
) -> tonic::Request<UpsertClientRequest> {
    authed(UpsertClientRequest {
        managed_by: String::new(),
        tenant_id: "main".to_owned(),
        spec: Some(spec),
        secret: Some(secret),
    })
}
