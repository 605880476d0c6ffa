//! MFA administration through what the binary exposes: `authserver users reset-mfa`,
//! `users set-mfa-required`, and the admin API's `ResetUserMfa` / `SetUserMfaRequired`.
//! Enrolment itself happens on the login pages; here a user is enrolled through the
//! library (`MfaService`) on the same database and ENCRYPTION_KEY, as a pod would.
//! TOTP, recovery-code and throttle logic have DB-backed unit tests beside the code.

use std::sync::Arc;

use authserver::admin::proto::{ResetUserMfaRequest, SetUserMfaRequiredRequest, UserMfa};
use authserver::clock::SystemClock;
use authserver::config::DatabaseSettings;
use authserver::crypto::kek::Kek;
use authserver::mfa::totp::{self, Secret};
use authserver::mfa::{MfaMethod, MfaService};
use authserver::store::Store;
use secrecy::SecretString;
use serde_json::Value;
use tonic::Code;

use crate::harness::admin::{admin_cli, authed, connect};
use crate::harness::{Backend, Cli, TestDb, free_port, new_encryption_key};

on_both_backends!(
    cli_resets_mfa_and_sets_the_required_flag,
    bad_cli_input_fails_clearly_and_changes_nothing,
    admin_api_mfa_calls,
    keys_reencrypt_also_moves_totp_secrets,
);

const PASSWORD: &str = "tr0ub4dor&3-horse-battery";
/// Nothing listens on port 1: the breached-password check fails open at once.
const NO_HIBP: &str = "http://127.0.0.1:1";

fn cli(db: &TestDb) -> Cli {
    db.cli()
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", NO_HIBP)
        .env("GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS", "1")
}

/// `authserver users create`, in-process ([`TestDb::commands`]).
async fn create_user(db: &TestDb, username: &str) -> String {
    let v: Value = cli(db)
        .commands()
        .await
        .create_user(&["--username", username, "--password-stdin"], PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("users create {username}: {e:#}"));
    v["user_id"].as_str().unwrap().to_owned()
}

/// The MFA service of a pod on this database.
async fn service(db: &TestDb) -> (Store, MfaService) {
    service_with_key(db, db.key()).await
}

async fn service_with_key(db: &TestDb, key: &str) -> (Store, MfaService) {
    let store = Store::connect(&DatabaseSettings {
        url: SecretString::from(db.url().to_owned()),
        max_connections: 2,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms: authserver::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
    })
    .await
    .unwrap();
    let kek = Kek::from_hex(&SecretString::from(key.to_owned())).unwrap();
    let mfa = MfaService::new(store.clone(), Arc::new(kek), Arc::new(SystemClock), true);
    (store, mfa)
}

/// Enrols `username` in tenant `main` with TOTP; returns the secret and recovery codes.
pub(crate) async fn enrol(db: &TestDb, username: &str) -> (Secret, Vec<String>) {
    let (store, mfa) = service(db).await;
    let tenant = store.get_tenant("main").await.unwrap().unwrap();
    let user = store
        .get_user_by_username("main", username)
        .await
        .unwrap()
        .unwrap();
    let e = mfa.begin_totp(&tenant, &user).await.unwrap();
    let secret = Secret::from_bytes(totp::base32_decode(&e.secret_base32).unwrap());
    // The enrolment code is the previous step's, so a sign-in right after can use the
    // current one (each step is accepted once).
    let now = authserver::clock::Clock::now(&SystemClock);
    let first = secret.code_at_step(totp::step(now) - 1);
    let codes = mfa
        .confirm_totp("main", &user.user_id, &first, None)
        .await
        .unwrap();
    store.close().await;
    (secret, codes)
}

async fn mfa_rows(db: &TestDb) -> Vec<String> {
    let mut rows = db
        .rows("SELECT 'totp|' || user_id || '|' || kek_id FROM user_totp")
        .await;
    rows.extend(
        db.rows("SELECT 'code|' || user_id || '|' || code_hash FROM recovery_codes")
            .await,
    );
    rows.extend(
        db.rows(
            "SELECT 'user|' || username || '|' || CASE WHEN mfa_required THEN 'required' ELSE '-' END \
             FROM users",
        )
        .await,
    );
    rows.sort();
    rows
}

/// Audit events (`event|actor|subject|details`) starting with `prefix`.
fn count(audit: &[String], prefix: &str) -> usize {
    audit.iter().filter(|e| e.starts_with(prefix)).count()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn cli_resets_mfa_and_sets_the_required_flag(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let alice = create_user(&db, "alice").await;
    let bob = create_user(&db, "bob").await;
    let (secret, codes) = enrol(&db, "alice").await;
    enrol(&db, "bob").await;
    assert_eq!(codes.len(), 10);
    assert_eq!(db.scalar("SELECT count(*) FROM recovery_codes").await, 20);

    // The enrolment works for signing in (one recovery code used up).
    let (_, mfa) = service(&db).await;
    assert_eq!(
        mfa.verify("main", &alice, &codes[0], None).await.unwrap(),
        MfaMethod::RecoveryCode
    );

    let out = cli(&db)
        .args(["users", "reset-mfa", "--username", "ALICE"])
        .run()
        .await;
    out.assert_success();
    let v = json(&out.stdout);
    assert_eq!(v["user_id"], alice.as_str());
    assert_eq!(v["removed"], true);
    assert_eq!(v["totp_enrolled"], false);
    assert_eq!(v["recovery_codes_left"], 0);
    // Only alice's factors are gone; a code from her old authenticator no longer works.
    assert_eq!(
        db.rows("SELECT user_id FROM user_totp").await,
        vec![bob.clone()]
    );
    assert_eq!(db.scalar("SELECT count(*) FROM recovery_codes").await, 10);
    let now = authserver::clock::Clock::now(&SystemClock);
    let code = secret.code_at_step(totp::step(now));
    assert!(mfa.verify("main", &alice, &code, None).await.is_err());
    assert!(mfa.verify("main", &alice, &codes[1], None).await.is_err());
    // Again: nothing to remove, still success.
    let out = cli(&db)
        .args(["users", "reset-mfa", "--username", "alice"])
        .run()
        .await;
    out.assert_success();
    assert_eq!(json(&out.stdout)["removed"], false);

    let out = cli(&db)
        .args([
            "users",
            "set-mfa-required",
            "--username",
            "alice",
            "--required",
            "true",
        ])
        .run()
        .await;
    out.assert_success();
    let v = json(&out.stdout);
    assert_eq!(
        (v["mfa_required"].clone(), v["totp_enrolled"].clone()),
        (true.into(), false.into())
    );
    assert!(mfa.status("main", &alice).await.unwrap().required_for_user);
    let out = cli(&db)
        .args([
            "users",
            "set-mfa-required",
            "--username",
            "alice",
            "--required",
            "false",
        ])
        .run()
        .await;
    out.assert_success();
    assert_eq!(json(&out.stdout)["mfa_required"], false);
    assert!(!mfa.status("main", &alice).await.unwrap().required_for_user);

    let audit = db.audit().await;
    assert_eq!(count(&audit, &format!("mfa.enrolled|user|{alice}|")), 1);
    assert_eq!(
        count(&audit, &format!("mfa.recovery_code_used|user|{alice}|")),
        1
    );
    assert_eq!(count(&audit, &format!("mfa.removed|cli|{alice}|")), 1);
    assert_eq!(
        count(&audit, &format!("mfa.required_changed|cli|{alice}|")),
        2
    );
    let all = audit.join("\n");
    for c in &codes {
        assert!(
            !all.contains(c.as_str()),
            "a recovery code in the audit log"
        );
    }
    assert!(!all.contains(&secret.to_base32()));
}

async fn bad_cli_input_fails_clearly_and_changes_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "carol").await;
    enrol(&db, "carol").await;
    let before = mfa_rows(&db).await;
    let audit_before = db.audit().await.len();

    for args in [
        &["users", "reset-mfa", "--username", "nobody"][..],
        &[
            "users",
            "set-mfa-required",
            "--username",
            "nobody",
            "--required",
            "true",
        ],
    ] {
        cli(&db)
            .args(args.iter().copied())
            .run()
            .await
            .assert_code(1)
            .assert_stderr_contains("user \"nobody\" does not exist in tenant \"main\"");
    }
    for args in [
        &[
            "users",
            "set-mfa-required",
            "--username",
            "carol",
            "--required",
            "maybe",
        ][..],
        &["users", "set-mfa-required", "--username", "carol"],
        &["users", "reset-mfa"],
    ] {
        let out = cli(&db).args(args.iter().copied()).run().await;
        out.assert_code(2);
        assert_eq!(out.stdout, "", "{args:?}");
    }
    cli(&db)
        .args([
            "users",
            "reset-mfa",
            "--username",
            "carol",
            "--tenant",
            "nope",
        ])
        .run()
        .await
        .assert_code(1);
    assert_eq!(mfa_rows(&db).await, before);
    assert_eq!(db.audit().await.len(), audit_before);
}

#[allow(clippy::too_many_lines)] // one scenario: reset, flag, every bad input
async fn admin_api_mfa_calls(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let admin_port = free_port();
    let _server = admin_cli(&db, admin_port)
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", NO_HIBP)
        .serve(db.port)
        .await;
    let mut admin = connect(admin_port).await;
    let dave = create_user(&db, "dave").await;
    enrol(&db, "dave").await;

    let reset = |tenant: &str, username: &str| ResetUserMfaRequest {
        tenant_id: tenant.to_owned(),
        username: username.to_owned(),
    };
    let flag = |username: &str, required: Option<bool>| SetUserMfaRequiredRequest {
        tenant_id: "main".to_owned(),
        username: username.to_owned(),
        required,
    };

    // Bad input first: each names its field or the missing user, and changes nothing.
    let before = mfa_rows(&db).await;
    let audit_before = db.audit().await.len();
    let e = admin
        .reset_user_mfa(authed(reset("main", "")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "username: is required");
    let e = admin
        .reset_user_mfa(authed(reset("", "dave")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "tenant_id: is required");
    let e = admin
        .reset_user_mfa(authed(reset("main", "nobody")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("\"nobody\""), "{e:?}");
    let e = admin
        .reset_user_mfa(authed(reset("nope", "dave")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = admin
        .set_user_mfa_required(authed(flag("dave", None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("required:"), "{e:?}");
    let e = admin
        .set_user_mfa_required(authed(flag("nobody", Some(true))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = admin
        .set_user_mfa_required(tonic::Request::new(flag("dave", Some(true))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(mfa_rows(&db).await, before);
    assert_eq!(db.audit().await.len(), audit_before);

    let r = admin
        .reset_user_mfa(authed(reset("main", "Dave")))
        .await
        .unwrap()
        .into_inner();
    assert!(r.removed);
    assert_eq!(
        r.mfa,
        Some(UserMfa {
            tenant_id: "main".to_owned(),
            user_id: dave.clone(),
            username: "dave".to_owned(),
            totp_enrolled: false,
            recovery_codes_left: 0,
            mfa_required: false,
        })
    );
    assert!(
        !admin
            .reset_user_mfa(authed(reset("main", "dave")))
            .await
            .unwrap()
            .into_inner()
            .removed
    );
    assert_eq!(db.scalar("SELECT count(*) FROM user_totp").await, 0);

    let m = admin
        .set_user_mfa_required(authed(flag("dave", Some(true))))
        .await
        .unwrap()
        .into_inner();
    assert!(m.mfa_required);
    assert_eq!(
        db.rows("SELECT username FROM users WHERE mfa_required")
            .await,
        vec!["dave".to_owned()]
    );
    let m = admin
        .set_user_mfa_required(authed(flag("dave", Some(false))))
        .await
        .unwrap()
        .into_inner();
    assert!(!m.mfa_required);

    let audit = db.audit().await;
    assert_eq!(count(&audit, &format!("mfa.removed|admin-api|{dave}|")), 1);
    assert_eq!(
        count(&audit, &format!("mfa.required_changed|admin-api|{dave}|")),
        2
    );
}

async fn keys_reencrypt_also_moves_totp_secrets(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let erin = create_user(&db, "erin").await;
    let (secret, _) = enrol(&db, "erin").await;
    let old_kek = db.rows("SELECT kek_id FROM user_totp").await;
    let new_key = new_encryption_key();
    let out = cli(&db)
        .env("ENCRYPTION_KEY", new_key.as_str())
        .env("OLD_ENCRYPTION_KEY", db.key())
        .args(["keys", "reencrypt", "--old-key-env", "OLD_ENCRYPTION_KEY"])
        .run()
        .await;
    out.assert_success();
    assert!(
        out.stdout.contains("re-encrypted 1 TOTP secret(s)"),
        "{out}"
    );
    assert_ne!(db.rows("SELECT kek_id FROM user_totp").await, old_kek);

    // A pod with the new key accepts the authenticator's codes; one with the old cannot
    // open the secret any more.
    let (_, with_new) = service_with_key(&db, &new_key).await;
    let now = authserver::clock::Clock::now(&SystemClock);
    let code = secret.code_at_step(totp::step(now));
    assert_eq!(
        with_new.verify("main", &erin, &code, None).await.unwrap(),
        MfaMethod::Totp
    );
    let (_, with_old) = service(&db).await;
    let next = secret.code_at_step(totp::step(now) + 1);
    assert!(with_old.verify("main", &erin, &next, None).await.is_err());
}
