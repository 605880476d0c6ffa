//! End users: `authserver users create|list|delete|set-password`, the admin API's user
//! calls, the password policy and the breached-password check against a stub Have I Been
//! Pwned range API started by each test.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authserver::admin::proto::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, SetUserPasswordRequest,
};
use secrecy::SecretString;
use serde_json::Value;
use tonic::Code;

use crate::harness::admin::{admin_cli, authed, connect};
use crate::harness::{Backend, Cli, TestDb, free_port};

on_both_backends!(
    create_list_set_password_and_delete,
    bad_input_exits_2_and_changes_nothing,
    a_breached_password_is_rejected_and_only_the_prefix_is_sent,
    warn_policy_accepts_a_breached_password_with_a_warning,
    an_unreachable_or_slow_breach_api_fails_open,
    a_login_rehashes_a_password_made_with_other_parameters,
    admin_api_user_calls,
);

const PASSWORD: &str = "tr0ub4dor&3-horse-battery";
pub(crate) const BREACHED: &str = "P@ssw0rd-from-a-breach";

fn sha1_hex(password: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        password.as_bytes(),
    );
    hex::encode_upper(d.as_ref())
}

/// How the stub range API behaves.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// Answers every range with padding plus the suffix of `BREACHED` (lowercase, as a
    /// reminder that matching is case-insensitive).
    Answer,
    /// Accepts the connection and never answers.
    Hang,
}

/// A stub `GET /range/{prefix}` server on a loopback port; records each request's head.
pub(crate) struct Hibp {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hibp {
    pub(crate) fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut open_streams: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match mode {
                    Mode::Hang => open_streams.push(stream),
                    Mode::Answer => {
                        let suffix = sha1_hex(BREACHED)[5..].to_ascii_lowercase();
                        let body = format!(
                            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n\
                             {suffix}:42\r\n\
                             00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n\
                             011053FD0102E94D6AE2F8B83D76FAF94F6:0"
                        );
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                }
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// `db.cli()` pointed at the stub.
fn cli(db: &TestDb, hibp: &str) -> Cli {
    db.cli()
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", hibp)
        .env("GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS", "1")
}

async fn create(
    cli: Cli,
    username: &str,
    password: &str,
    extra: &[&str],
) -> crate::harness::Output {
    cli.args([
        "users",
        "create",
        "--username",
        username,
        "--password-stdin",
    ])
    .args(extra.iter().copied())
    .stdin(format!("{password}\n"))
    .run()
    .await
}

async fn user_count(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM users").await
}

async fn create_list_set_password_and_delete(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    let out = create(
        cli(&db, &hibp.url),
        "Alice",
        PASSWORD,
        &["--email", "alice@example.com", "--name", "Alice Liddell"],
    )
    .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let user_id = v["user_id"].as_str().unwrap().to_owned();
    assert_eq!(v["username"], "Alice");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert!(user_id.len() >= 22, "{user_id}");

    let hash = db.rows("SELECT password_hash FROM users").await.join("");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));

    // Usernames are unique case-insensitively.
    create(cli(&db, &hibp.url), "alice", PASSWORD, &[])
        .await
        .assert_code(2)
        .assert_stderr_contains("user \"alice\" already exists");

    let out = cli(&db, &hibp.url).args(["users", "list"]).run().await;
    out.assert_success();
    let line: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(line["user_id"], user_id.as_str());
    assert_eq!(line["email"], "alice@example.com");
    assert_eq!(line["profile"]["name"], "Alice Liddell");
    assert!(!out.stdout.contains("argon2"), "{out}");

    let out = cli(&db, &hibp.url)
        .args([
            "users",
            "set-password",
            "--username",
            "ALICE",
            "--password-stdin",
        ])
        .stdin("another-l0ng-passphrase\n")
        .run()
        .await;
    out.assert_success();
    assert!(!out.stdout.contains("another-l0ng") && !out.stderr.contains("another-l0ng"));
    let new_hash = db.rows("SELECT password_hash FROM users").await.join("");
    assert_ne!(new_hash, hash);
    assert!(new_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));

    cli(&db, &hibp.url)
        .args(["users", "delete", "--username", "alice"])
        .run()
        .await
        .assert_success();
    assert_eq!(user_count(&db).await, 0);
    cli(&db, &hibp.url)
        .args(["users", "delete", "--username", "alice"])
        .run()
        .await
        .assert_code(1)
        .assert_stderr_contains("does not exist");

    let audit = db.audit().await.join("\n");
    for event in [
        "user.created|cli|",
        "user.password_set|cli|",
        "user.deleted|cli|",
    ] {
        assert!(audit.contains(&format!("{event}{user_id}")), "{audit}");
    }
    assert!(
        !audit.contains(PASSWORD) && !audit.contains("another-l0ng") && !audit.contains("argon2")
    );
}

async fn bad_input_exits_2_and_changes_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    create(cli(&db, &hibp.url), "bob", PASSWORD, &[])
        .await
        .assert_success();
    let before = db.rows("SELECT username || password_hash FROM users").await;
    let audit_before = db.audit().await;
    let long = "x".repeat(129);
    let cases: [(&str, &str, &[&str], &str); 6] = [
        (
            "carol",
            "short",
            &[],
            "password: must be at least 8 characters",
        ),
        (
            "carol",
            &long,
            &[],
            "password: must be at most 128 characters",
        ),
        ("BOB", PASSWORD, &[], "user \"BOB\" already exists"),
        ("carol", PASSWORD, &["--email", "not-an-email"], "email:"),
        ("has space", PASSWORD, &[], "username:"),
        ("carol", "", &[], "no password on stdin"),
    ];
    for (username, password, extra, message) in cases {
        let out = create(cli(&db, &hibp.url), username, password, extra).await;
        out.assert_code(2).assert_stderr_contains(message);
        assert!(
            password.is_empty() || !out.stderr.contains(password),
            "{out}"
        );
    }
    // The password never comes from argv.
    let out = cli(&db, &hibp.url)
        .args(["users", "create", "--username", "dave"])
        .run()
        .await;
    out.assert_code(2);
    cli(&db, &hibp.url)
        .args([
            "users",
            "set-password",
            "--username",
            "bob",
            "--password-stdin",
        ])
        .stdin("short\n")
        .run()
        .await
        .assert_code(2)
        .assert_stderr_contains("at least 8 characters");
    assert_eq!(
        db.rows("SELECT username || password_hash FROM users").await,
        before
    );
    assert_eq!(db.audit().await, audit_before);
}

async fn a_breached_password_is_rejected_and_only_the_prefix_is_sent(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    let out = create(cli(&db, &hibp.url), "erin", BREACHED, &[]).await;
    out.assert_code(2).assert_stderr_contains(
        "password: this password appears in a known data breach; choose another",
    );
    assert!(!out.stderr.contains(BREACHED));
    assert_eq!(user_count(&db).await, 0);

    let sha1 = sha1_hex(BREACHED);
    let requests = hibp.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let head = &requests[0];
    let request_line = head.lines().next().unwrap();
    assert_eq!(request_line, format!("GET /range/{} HTTP/1.1", &sha1[..5]));
    assert!(
        head.to_ascii_lowercase().contains("add-padding: true"),
        "{head}"
    );
    assert!(!head.to_ascii_uppercase().contains(&sha1[5..]), "{head}");
    assert!(!head.contains(BREACHED), "{head}");

    // set-password applies the same check.
    create(cli(&db, &hibp.url), "erin", PASSWORD, &[])
        .await
        .assert_success();
    let hash = db.rows("SELECT password_hash FROM users").await;
    cli(&db, &hibp.url)
        .args([
            "users",
            "set-password",
            "--username",
            "erin",
            "--password-stdin",
        ])
        .stdin(format!("{BREACHED}\n"))
        .run()
        .await
        .assert_code(2)
        .assert_stderr_contains("known data breach");
    assert_eq!(db.rows("SELECT password_hash FROM users").await, hash);
}

async fn warn_policy_accepts_a_breached_password_with_a_warning(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    let out = create(
        cli(&db, &hibp.url).env("GATEHOUSE_PASSWORDS_BREACHED", "warn"),
        "frank",
        BREACHED,
        &[],
    )
    .await;
    out.assert_success()
        .assert_stderr_contains("password appears in a known data breach");
    assert!(!out.stderr.contains(BREACHED) && !out.stdout.contains(BREACHED));
    assert_eq!(user_count(&db).await, 1);
}

async fn an_unreachable_or_slow_breach_api_fails_open(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    // Nothing listens on a fresh free port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = create(cli(&db, &closed), "gina", BREACHED, &[]).await;
    out.assert_success().assert_stderr_contains("fail-open");
    assert!(!out.stderr.contains(BREACHED) && !out.stderr.contains(&sha1_hex(BREACHED)[..5]));

    let slow = Hibp::start(Mode::Hang);
    let started = std::time::Instant::now();
    let out = create(cli(&db, &slow.url), "hank", BREACHED, &[]).await;
    out.assert_success().assert_stderr_contains("timed out");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(slow.requests().len(), 1);
    assert_eq!(user_count(&db).await, 2);
}

async fn a_login_rehashes_a_password_made_with_other_parameters(backend: Backend) {
    use authserver::clock::SystemClock;
    use authserver::config::{Argon2Params, DatabaseSettings, PasswordSettings};
    use authserver::store::Store;
    use authserver::users::UserService;

    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    create(
        cli(&db, &hibp.url)
            .env("GATEHOUSE_PASSWORDS_ARGON2_MEMORY_KIB", "7168")
            .env("GATEHOUSE_PASSWORDS_ARGON2_ITERATIONS", "1"),
        "ivy",
        PASSWORD,
        &[],
    )
    .await
    .assert_success();
    let old = db.rows("SELECT password_hash FROM users").await.join("");
    assert!(old.starts_with("$argon2id$v=19$m=7168,t=1,p=1$"), "{old}");

    let store = Store::connect(&DatabaseSettings {
        url: SecretString::from(db.url().to_owned()),
        max_connections: 1,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms: authserver::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
    })
    .await
    .unwrap();
    let users = UserService::new(
        store,
        Arc::new(SystemClock),
        PasswordSettings {
            hibp_base_url: hibp.url.clone(),
            ..PasswordSettings::default()
        },
        Arc::new(
            authserver::outbound::Fetcher::new(&authserver::config::OutboundSettings {
                allowed_networks: authserver::config::IpNet::parse("127.0.0.0/8")
                    .into_iter()
                    .collect(),
                allow_http: true,
                ..authserver::config::OutboundSettings::default()
            })
            .unwrap(),
        ),
        true,
    );
    assert_eq!(users.policy().argon2, Argon2Params::OWASP);
    let pw = |s: &str| SecretString::from(s.to_owned());

    // Wrong password and unknown user: nothing, and no rehash.
    assert!(
        users
            .verify_and_maybe_rehash("main", "ivy", &pw("wrong-password"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users
            .verify_and_maybe_rehash("main", "nobody", &pw(PASSWORD))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.rows("SELECT password_hash FROM users").await.join(""),
        old
    );

    let user = users
        .verify_and_maybe_rehash("main", "IVY", &pw(PASSWORD))
        .await
        .unwrap()
        .expect("the password matches");
    let new = db.rows("SELECT password_hash FROM users").await.join("");
    assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
    assert_eq!(user.password_hash.as_deref(), Some(new.as_str()));
    // The new hash still verifies, and needs no further rehash.
    assert!(
        users
            .verify_and_maybe_rehash("main", "ivy", &pw(PASSWORD))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        db.rows("SELECT password_hash FROM users").await.join(""),
        new
    );
}

#[allow(clippy::too_many_lines)] // one scenario: create, read, fail, change, delete
async fn admin_api_user_calls(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let hibp = Hibp::start(Mode::Answer);
    let admin_port = free_port();
    let server = admin_cli(&db, admin_port)
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", &hibp.url)
        .serve(db.port)
        .await;
    let mut admin = connect(admin_port).await;

    let request = |username: &str, password: &str| CreateUserRequest {
        tenant_id: "main".to_owned(),
        username: username.to_owned(),
        email: Some("jo@example.com".to_owned()),
        email_verified: true,
        profile_json: r#"{"given_name":"Jo","family_name":"March"}"#.to_owned(),
        password: password.to_owned(),
    };
    let created = admin
        .create_user(authed(request("jo", PASSWORD)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.username, "jo");
    assert!(created.email_verified && created.has_password);
    let profile: Value = serde_json::from_str(&created.profile_json).unwrap();
    assert_eq!(profile["given_name"], "Jo");

    let by_name = admin
        .get_user(authed(GetUserRequest {
            tenant_id: "main".to_owned(),
            username: "JO".to_owned(),
            ..GetUserRequest::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name, created);
    let by_id = admin
        .get_user(authed(GetUserRequest {
            tenant_id: "main".to_owned(),
            user_id: created.user_id.clone(),
            ..GetUserRequest::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, created);

    let status = |r: Result<tonic::Response<authserver::admin::proto::User>, tonic::Status>| {
        r.expect_err("the call must fail")
    };
    let e = status(admin.create_user(authed(request("Jo", PASSWORD))).await);
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let mut bad_email = request("kim", PASSWORD);
    bad_email.email = Some("nope".to_owned());
    let e = status(admin.create_user(authed(bad_email)).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("email:"), "{e:?}");
    let e = status(admin.create_user(authed(request("kim", "short"))).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("password:"), "{e:?}");
    let e = status(admin.create_user(authed(request("kim", BREACHED))).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "password: this password appears in a known data breach; choose another"
    );
    let mut bad_profile = request("kim", PASSWORD);
    r#"{"is_admin":true}"#.clone_into(&mut bad_profile.profile_json);
    let e = status(admin.create_user(authed(bad_profile)).await);
    assert!(e.message().starts_with("profile_json:"), "{e:?}");
    let mut no_tenant = request("kim", PASSWORD);
    "nope".clone_into(&mut no_tenant.tenant_id);
    assert_eq!(
        status(admin.create_user(authed(no_tenant)).await).code(),
        Code::NotFound
    );
    let e = status(
        admin
            .get_user(authed(GetUserRequest {
                tenant_id: "main".to_owned(),
                username: "kim".to_owned(),
                ..GetUserRequest::default()
            }))
            .await,
    );
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(user_count(&db).await, 1);

    let before = db.rows("SELECT password_hash FROM users").await;
    let set = |username: &str, password: &str| SetUserPasswordRequest {
        tenant_id: "main".to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    };
    let e = status(admin.set_user_password(authed(set("jo", BREACHED))).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        status(admin.set_user_password(authed(set("kim", PASSWORD))).await).code(),
        Code::NotFound
    );
    assert_eq!(db.rows("SELECT password_hash FROM users").await, before);
    admin
        .set_user_password(authed(set("jo", "a-brand-new-passphrase")))
        .await
        .unwrap();
    assert_ne!(db.rows("SELECT password_hash FROM users").await, before);

    let delete = |username: &str| DeleteUserRequest {
        tenant_id: "main".to_owned(),
        username: username.to_owned(),
    };
    assert!(
        admin
            .delete_user(authed(delete("jo")))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !admin
            .delete_user(authed(delete("jo")))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert_eq!(user_count(&db).await, 0);

    let audit = db.audit().await.join("\n");
    assert!(audit.contains("user.created|admin-api|"), "{audit}");
    assert!(audit.contains("user.password_set|admin-api|"), "{audit}");
    assert!(audit.contains("user.deleted|admin-api|"), "{audit}");
    let logs = server.logs_settled().await;
    for secret in [PASSWORD, BREACHED, "a-brand-new-passphrase"] {
        assert!(
            !logs.contains(secret) && !audit.contains(secret),
            "{secret} leaked"
        );
    }
}
