//! `CheckUpstreams` of the admin API (what the operator turns into `Ready=False`, reason
//! `UpstreamUnreachable`), against the real `serve` binary: a reachable OpenID provider
//! (a local stub serving discovery and keys), a closed port, a discovery document naming
//! another issuer, a key set answering 404, an unreadable client secret, a GitHub-style
//! provider (nothing fetched), and directories of a real slapd (a good and a wrong bind
//! password, LDAPS with its CA, one that is down, one that never answers). A check is
//! read-only: the database is unchanged, and a good discovery document is fetched once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authserver::admin::proto::admin_client::AdminClient;
use authserver::admin::proto::{CheckUpstreamsRequest, UpsertTenantRequest, UpstreamCheck};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::admin::{authed, serve_with_admin};
use crate::harness::slapd::{SERVICE_DN, Silent, Slapd};
use crate::harness::{Backend, TestDb};

on_both_backends!(
    openid_and_oauth2_upstreams_are_checked_as_a_sign_in_would_start,
    directories_are_checked_with_a_service_account_bind,
);

/// An upstream OpenID provider at `{url}/good`, and broken ones beside it: `/liar`
/// (its discovery names another issuer) and `/nokeys` (its `jwks_uri` answers 404).
/// Every request's path is logged.
struct Upstream {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(answer)
            .with_state((url.clone(), Arc::clone(&requests)));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, requests }
    }

    fn issuer(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn hits(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

async fn answer(
    State((base, requests)): State<(String, Arc<Mutex<Vec<String>>>)>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    requests.lock().unwrap().push(path.clone());
    let discovery = |name: &str, issuer: String| {
        axum::Json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/{name}/authorize"),
            "token_endpoint": format!("{base}/{name}/token"),
            "jwks_uri": format!("{base}/{name}/jwks"),
        }))
        .into_response()
    };
    match path.as_str() {
        "/good/.well-known/openid-configuration" => discovery("good", format!("{base}/good")),
        "/nokeys/.well-known/openid-configuration" => discovery("nokeys", format!("{base}/nokeys")),
        "/liar/.well-known/openid-configuration" => {
            discovery("liar", "https://elsewhere.example".to_owned())
        }
        "/good/jwks" => axum::Json(json!({"keys": [
            {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"}
        ]}))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Registers tenant `fed` with these providers.
async fn tenant_with(admin: &mut AdminClient<Channel>, db: &TestDb, providers: Value) {
    admin
        .upsert_tenant(authed(UpsertTenantRequest {
            id: "fed".into(),
            issuer: db.issuer("/t/fed"),
            display_name: "Federated".into(),
            settings_json: json!({"federation": {"providers": providers}}).to_string(),
        }))
        .await
        .unwrap();
}

async fn check(
    admin: &mut AdminClient<Channel>,
    tenant: &str,
) -> Result<Vec<UpstreamCheck>, tonic::Status> {
    admin
        .check_upstreams(authed(CheckUpstreamsRequest {
            tenant_id: tenant.into(),
        }))
        .await
        .map(|r| r.into_inner().checks)
}

/// The check of provider `id`.
fn of<'a>(checks: &'a [UpstreamCheck], id: &str) -> &'a UpstreamCheck {
    checks
        .iter()
        .find(|c| c.provider_id == id)
        .unwrap_or_else(|| panic!("no check of {id}: {checks:?}"))
}

fn oidc(id: &str, issuer: &str, secret: &std::path::Path) -> Value {
    json!({"id": id, "displayName": id, "issuer": issuer, "clientId": "gatehouse",
           "clientSecret": {"file": secret.display().to_string()}})
}

#[allow(clippy::too_many_lines)] // one tenant, every way an upstream can fail
async fn openid_and_oauth2_upstreams_are_checked_as_a_sign_in_would_start(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (_server, mut admin) = serve_with_admin(&db).await;
    let up = Upstream::start().await;
    let secret = db.write_config("upstream-secret", "s3cret-value\n");
    let missing = db
        .write_config("placeholder", "")
        .with_file_name("no-such-secret");
    let closed = format!("http://127.0.0.1:{}", closed_port());
    tenant_with(
        &mut admin,
        &db,
        json!([
            oidc("good", &up.issuer("good"), &secret),
            oidc("closed", &closed, &secret),
            oidc("liar", &up.issuer("liar"), &secret),
            oidc("nokeys", &up.issuer("nokeys"), &secret),
            oidc("nosecret", &up.issuer("good"), &missing),
            {"id": "gh", "displayName": "GitHub", "kind": "oauth2", "issuer": "https://github.com",
             "clientId": "gh", "clientSecret": {"file": secret.display().to_string()},
             "oauth2": {"authorizationEndpoint": format!("{closed}/authorize"),
                        "tokenEndpoint": format!("{closed}/token"), "userUrl": format!("{closed}/user")}},
        ]),
    )
    .await;
    let before = db.snapshot().await;

    let checks = check(&mut admin, "fed").await.unwrap();
    let ids: Vec<_> = checks.iter().map(|c| c.provider_id.as_str()).collect();
    assert_eq!(
        ids,
        ["good", "closed", "liar", "nokeys", "nosecret", "gh"],
        "in order"
    );

    let good = of(&checks, "good");
    assert!(good.ok, "{good:?}");
    assert_eq!(good.kind, "oidc");
    assert_eq!(
        good.message,
        format!(
            "discovery {0}/.well-known/openid-configuration and JWKS {0}/jwks (1 key) fetched",
            up.issuer("good")
        )
    );
    let closed_check = of(&checks, "closed");
    assert!(!closed_check.ok);
    assert_eq!(
        closed_check.message,
        format!(
            "discovery {closed}/.well-known/openid-configuration: cannot connect: connection refused"
        )
    );
    let liar = of(&checks, "liar");
    assert!(!liar.ok);
    assert!(
        liar.message.ends_with(
            "/liar/.well-known/openid-configuration: the discovery document names another issuer (\"https://elsewhere.example\")"
        ),
        "{liar:?}"
    );
    let nokeys = of(&checks, "nokeys");
    assert!(!nokeys.ok);
    assert_eq!(
        nokeys.message,
        format!("JWKS {}/jwks: answered HTTP 404", up.issuer("nokeys"))
    );
    let nosecret = of(&checks, "nosecret");
    assert!(!nosecret.ok);
    assert!(
        nosecret.message.starts_with("clientSecret: cannot read ")
            && nosecret.message.contains("no-such-secret"),
        "{nosecret:?}"
    );
    let gh = of(&checks, "gh");
    assert!(gh.ok, "{gh:?}");
    assert_eq!(gh.kind, "oauth2");
    assert_eq!(
        gh.message,
        "configured endpoints; nothing is fetched before a sign-in"
    );
    for c in &checks {
        assert!(!c.message.contains("s3cret-value"), "{c:?}");
    }

    // Again: the good discovery document and keys are reused (fresh in the cache); the
    // failures are fetched again (a check remembers no failure).
    let again = check(&mut admin, "fed").await.unwrap();
    assert_eq!(again, checks);
    assert_eq!(up.hits("/good/.well-known/openid-configuration"), 1);
    assert_eq!(up.hits("/good/jwks"), 1);
    assert_eq!(up.hits("/nokeys/jwks"), 2);
    assert_eq!(db.snapshot().await, before, "a check changes nothing");

    // An unknown tenant, and none named.
    let unknown = check(&mut admin, "nobody").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(unknown.message(), "tenant \"nobody\" does not exist");
    let unnamed = check(&mut admin, "").await.unwrap_err();
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");
    assert!(unnamed.message().starts_with("tenant_id: "), "{unnamed:?}");
    // A tenant without providers has nothing to check.
    assert_eq!(check(&mut admin, "main").await.unwrap(), []);
    assert_eq!(db.snapshot().await, before);
}

async fn directories_are_checked_with_a_service_account_bind(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (_server, mut admin) = serve_with_admin(&db).await;
    let slapd = Slapd::start().await;
    let silent = Silent::start().await;
    let wrong = db.write_config("wrong-bind-password", "not-the-password\n");
    let directory = |id: &str, url: String, password: &std::path::Path, extra: Value| {
        let mut ldap = json!({
            "url": url, "bindDn": SERVICE_DN,
            "bindPassword": {"file": password.display().to_string()},
            "userBaseDn": "ou=people,dc=corp,dc=example", "timeoutSeconds": 1
        });
        if let (Some(l), Some(e)) = (ldap.as_object_mut(), extra.as_object()) {
            l.extend(e.clone());
        }
        json!({"id": id, "displayName": id, "kind": "ldap", "ldap": ldap})
    };
    let good = slapd.bind_password_file();
    let down = format!("ldap://127.0.0.1:{}", closed_port());
    tenant_with(
        &mut admin,
        &db,
        json!([
            directory("dir", slapd.url(), &good, json!({})),
            directory("wrong", slapd.url(), &wrong, json!({})),
            directory(
                "tls",
                slapd.ldaps_url(),
                &good,
                json!({"caFile": slapd.ca_file().display().to_string()})
            ),
            directory("down", down.clone(), &good, json!({})),
            directory("hangs", silent.url(), &good, json!({})),
        ]),
    )
    .await;
    let binds = slapd.binds();

    let started = Instant::now();
    let checks = check(&mut admin, "fed").await.unwrap();
    // Checked side by side: the hanging directory's timeout bounds the call.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let dir = of(&checks, "dir");
    assert!(dir.ok, "{dir:?}");
    assert_eq!(dir.kind, "ldap");
    assert_eq!(
        dir.message,
        format!(
            "LDAP {}: connected and bound as the service account",
            slapd.url()
        )
    );
    let wrong = of(&checks, "wrong");
    assert!(!wrong.ok);
    assert_eq!(
        wrong.message,
        format!(
            "LDAP {}: service-account bind failed: invalidCredentials (ldap.bindDn, ldap.bindPassword)",
            slapd.url()
        )
    );
    let tls = of(&checks, "tls");
    assert!(tls.ok, "{tls:?}");
    assert!(tls.message.contains("connected over TLS"), "{tls:?}");
    let down_check = of(&checks, "down");
    assert!(!down_check.ok);
    assert!(
        down_check
            .message
            .starts_with(&format!("LDAP {down}: connect: ")),
        "{down_check:?}"
    );
    let hangs = of(&checks, "hangs");
    assert!(!hangs.ok);
    assert!(hangs.message.contains("timed out"), "{hangs:?}");
    assert!(silent.accepted() >= 1);
    // Three binds reached slapd: the good one, the wrong one, and over TLS.
    assert_eq!(slapd.binds() - binds, 3, "{}", slapd.log());
    for c in &checks {
        assert!(!c.message.contains("service-secret"), "{c:?}");
        assert!(!c.message.contains("not-the-password"), "{c:?}");
    }
}
