//! E-mail flows against a real SMTP server (the test kit's sink, on loopback): the
//! server under test queues mail in its outbox and its sender loop delivers it, as in
//! production. Links are followed to completion from the mail itself.

use std::time::{Duration, Instant};

use reqwest::header;
use testkit::smtp::{Received, SmtpSink};

use crate::authorize_flow::{CB, PASSWORD, authorize_url, settle};
use crate::client_retirement::tokens_for;
use crate::harness::browser::{Browser, Page, decode_entities, fast, user_cli};
use crate::harness::oauth::{Creds, create_client, field, post_form, send};
use crate::harness::{Backend, Cli, Server, TestDb, free_port};

on_both_backends!(
    a_reset_link_sets_the_password_and_ends_every_session_and_refresh_token,
    an_unknown_address_gets_the_byte_identical_answer,
    reset_links_work_once_expire_and_need_csrf,
    reset_requests_are_limited_per_address_and_per_ip,
    registration_is_off_by_default,
    registration_requires_a_verified_address_before_sign_in,
    a_verification_link_dies_with_an_address_change,
    a_dead_relay_keeps_requests_fast_and_the_mail_is_retried,
    sent_mail_is_purged_and_queued_mail_is_not,
    a_sign_in_from_a_new_device_is_mailed_when_the_tenant_asks,
);

const ALICE: &str = "alice@example.com";
const NEW_PASSWORD: &str = "a brand new passphrase 42";

struct Setup {
    db: TestDb,
    server: Server,
    sink: Option<SmtpSink>,
    smtp_port: u16,
}

/// Settings for tenant `main` (a JSON object, its policy) and the environment.
fn config(db: &TestDb, settings: &str) {
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
}

fn cli(db: &TestDb, smtp_port: u16, env: &[(&str, &str)]) -> Cli {
    let mut cli = fast(db.cli())
        .env("GATEHOUSE_EMAIL_SMTP_HOST", "127.0.0.1")
        .env("GATEHOUSE_EMAIL_SMTP_PORT", smtp_port.to_string())
        .env("GATEHOUSE_EMAIL_SMTP_SECURITY", "plain")
        .env("GATEHOUSE_EMAIL_SMTP_TIMEOUT_SECONDS", "2")
        .env("GATEHOUSE_EMAIL_FROM", "Gatehouse <id@example.com>")
        .env("GATEHOUSE_EMAIL_POLL_INTERVAL_MS", "100");
    for (k, v) in env {
        cli = cli.env(k, *v);
    }
    cli
}

/// A database with alice (verified address) and bob (another address), tenant `main`
/// with `settings`, a sink (unless `relay_up` is false: nothing listens on its port),
/// and the server.
async fn setup(backend: Backend, settings: &str, env: &[(&str, &str)], relay_up: bool) -> Setup {
    let db = TestDb::migrated(backend).await;
    config(&db, settings);
    let smtp_port = free_port();
    let sink = if relay_up {
        Some(SmtpSink::start(smtp_port).await)
    } else {
        None
    };
    for (name, email) in [("alice", ALICE), ("bob", "bob@example.com")] {
        user_cli(&db)
            .commands()
            .await
            .create_user(
                &[
                    "--username",
                    name,
                    "--email",
                    email,
                    "--email-verified",
                    "--password-stdin",
                ],
                PASSWORD,
            )
            .await
            .unwrap_or_else(|e| panic!("users create {name}: {e:#}"));
    }
    let server = cli(&db, smtp_port, env).serve_in_process(db.port).await;
    Setup {
        db,
        server,
        sink,
        smtp_port,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        self.db.issuer(path)
    }

    fn sink(&self) -> &SmtpSink {
        self.sink.as_ref().expect("a running SMTP sink")
    }

    /// Requests a reset for `email` in `b`; the page after the POST.
    async fn forgot(&self, b: &Browser, email: &str) -> Page {
        let form = b.get(&self.url("/password/forgot")).await;
        form.assert_status(200);
        b.submit(&form, &[("email", email)]).await
    }

    async fn outbox(&self) -> i64 {
        self.db.scalar("SELECT COUNT(*) FROM email_outbox").await
    }

    async fn password_hash(&self, user: &str) -> Vec<String> {
        self.db
            .rows(&format!(
                "SELECT password_hash FROM users WHERE username = '{user}'"
            ))
            .await
    }
}

fn reset_link(s: &Setup, mail: &Received) -> String {
    mail.link(&s.url("/password/reset?token="))
        .unwrap_or_else(|| panic!("no reset link in {}", mail.decoded()))
}

fn verify_link(s: &Setup, mail: &Received) -> String {
    mail.link(&s.url("/email/verify?token="))
        .unwrap_or_else(|| panic!("no verification link in {}", mail.decoded()))
}

async fn refresh(s: &Setup, web: &Creds, token: &str) -> u16 {
    send(
        post_form(
            &s.server,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .header(header::AUTHORIZATION, web.basic()),
    )
    .await
    .status
    .as_u16()
}

async fn signed_in(s: &Setup, b: &Browser) -> bool {
    let p = settle(b, b.get(&authorize_url(&s.db, "web", &[])).await).await;
    !p.body.contains("name=\"password\"")
}

// One story, from the request to the ended sessions: reads best in one place.
#[allow(clippy::too_many_lines)]
async fn a_reset_link_sets_the_password_and_ends_every_session_and_refresh_token(backend: Backend) {
    let s = setup(backend, "{}", &[], true).await;
    let web = create_client(
        &s.db,
        "web",
        &[
            "--redirect-uri",
            CB,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "openid email offline_access",
        ],
    )
    .await;
    let alice = Browser::new();
    alice
        .sign_in(&s.url(""), "alice", PASSWORD)
        .await
        .assert_status(200);
    let tokens = tokens_for(&s.server, &s.db, &alice, &web).await;
    let bob = Browser::new();
    bob.sign_in(&s.url(""), "bob", PASSWORD)
        .await
        .assert_status(200);

    // The sign-in page offers the way.
    let login = Browser::new().get(&s.url("/login")).await;
    assert!(
        decode_entities(&login.body).contains("/password/forgot\""),
        "{}",
        login.body
    );

    let other = Browser::new();
    let sent = s.forgot(&other, "Alice@Example.com").await;
    sent.assert_status(200);
    assert!(sent.body.contains("Check your inbox"), "{}", sent.body);
    let mails = s.sink().wait_for(1).await;
    assert_eq!(mails[0].to, [ALICE]);
    assert_eq!(mails[0].from, "id@example.com");
    let subject = mails[0].header("subject").unwrap_or_default();
    assert!(subject.contains("Reset your password"), "{subject}");
    assert!(mails[0].data.contains("multipart/alternative"));
    let link = reset_link(&s, &mails[0]);

    let form = other.get(&link).await;
    form.assert_status(200);
    let mismatch = other
        .submit(
            &form,
            &[
                ("new_password", NEW_PASSWORD),
                ("confirm_password", "something else entirely"),
            ],
        )
        .await;
    mismatch.assert_status(400);
    assert!(mismatch.body.contains("do not match"), "{}", mismatch.body);
    let short = other
        .submit(
            &form,
            &[("new_password", "short"), ("confirm_password", "short")],
        )
        .await;
    short.assert_status(400);
    assert!(short.body.contains("at least 8"), "{}", short.body);
    let before = s.password_hash("alice").await;
    let done = other
        .submit(
            &form,
            &[
                ("new_password", NEW_PASSWORD),
                ("confirm_password", NEW_PASSWORD),
            ],
        )
        .await;
    done.assert_status(200);
    assert!(done.body.contains("Password changed"), "{}", done.body);
    assert_ne!(s.password_hash("alice").await, before);

    // Every session and refresh token of alice ended; bob's did not.
    assert_eq!(
        refresh(&s, &web, &field(&tokens, "refresh_token")).await,
        400
    );
    assert!(
        !signed_in(&s, &alice).await,
        "alice's browser is signed out"
    );
    assert!(signed_in(&s, &bob).await, "bob is untouched");
    let old = Browser::new().sign_in(&s.url(""), "alice", PASSWORD).await;
    assert!(old.body.contains("Incorrect"), "the old password is gone");
    Browser::new()
        .sign_in(&s.url(""), "alice", NEW_PASSWORD)
        .await
        .assert_status(200);
    let audit = s.db.audit().await;
    let event = audit
        .iter()
        .find(|l| l.starts_with("user.password_reset|"))
        .unwrap_or_else(|| panic!("audited: {audit:?}"));
    assert!(event.contains("\"sessions_ended\":1"), "{event}");
    assert!(event.contains("\"grants_revoked\":1"), "{event}");
    assert!(!event.contains(NEW_PASSWORD));

    // The link is spent: a second use changes nothing.
    let after = s.password_hash("alice").await;
    let again = other.get(&link).await;
    again.assert_status(400);
    let replay = other
        .post(
            &link,
            &[
                ("_csrf", form.input("_csrf").unwrap().as_str()),
                ("new_password", "yet another passphrase 7"),
                ("confirm_password", "yet another passphrase 7"),
            ],
        )
        .await;
    replay.assert_status(400);
    assert_eq!(s.password_hash("alice").await, after);
}

async fn an_unknown_address_gets_the_byte_identical_answer(backend: Backend) {
    let s = setup(backend, "{}", &[], true).await;
    let b = Browser::new();
    let known = s.forgot(&b, ALICE).await;
    let unknown = s.forgot(&b, "nobody@example.com").await;
    let malformed = s.forgot(&b, "not an address").await;
    for other in [&unknown, &malformed] {
        assert_eq!(other.status, known.status);
        assert_eq!(other.body, known.body, "byte-identical body");
        assert_eq!(
            other.header("set-cookie"),
            known.header("set-cookie"),
            "same cookies"
        );
        assert_eq!(other.header("content-type"), known.header("content-type"));
    }
    assert_eq!(s.outbox().await, 1, "only the known address gets mail");
    let mails = s.sink().wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, [ALICE]);
}

async fn reset_links_work_once_expire_and_need_csrf(backend: Backend) {
    let s = setup(backend, "{}", &[], true).await;
    let b = Browser::new();
    s.forgot(&b, ALICE).await.assert_status(200);
    let link = reset_link(&s, &s.sink().wait_for(1).await[0]);
    let form = b.get(&link).await;
    form.assert_status(200);
    let before = s.password_hash("alice").await;
    let tokens_before = s
        .db
        .rows("SELECT token_hash || '|' || coalesce(CAST(used_at AS TEXT), '-') FROM email_tokens")
        .await;

    // A forged POST (no _csrf) is refused before anything is read or changed.
    let forged = b
        .post(
            &link,
            &[
                ("new_password", NEW_PASSWORD),
                ("confirm_password", NEW_PASSWORD),
            ],
        )
        .await;
    forged.assert_status(403);
    assert_eq!(s.password_hash("alice").await, before);
    assert_eq!(
        s.db.rows(
            "SELECT token_hash || '|' || coalesce(CAST(used_at AS TEXT), '-') FROM email_tokens"
        )
        .await,
        tokens_before
    );
    // The token is stored only as its hash.
    let token = link.split("token=").nth(1).unwrap();
    assert!(tokens_before.iter().all(|r| !r.contains(token)));

    // Expired: refused on GET and POST, nothing changes.
    s.db.execute("UPDATE email_tokens SET expires_at = 0").await;
    b.get(&link).await.assert_status(400);
    b.submit(
        &form,
        &[
            ("new_password", NEW_PASSWORD),
            ("confirm_password", NEW_PASSWORD),
        ],
    )
    .await
    .assert_status(400);
    assert_eq!(s.password_hash("alice").await, before);

    // An unknown token, and none at all.
    b.get(&s.url("/password/reset?token=forged"))
        .await
        .assert_status(400);
    b.get(&s.url("/password/reset")).await.assert_status(400);
}

async fn reset_requests_are_limited_per_address_and_per_ip(backend: Backend) {
    let s = setup(
        backend,
        "{}",
        &[
            ("GATEHOUSE_EMAIL_PER_ADDRESS_PER_HOUR", "2"),
            ("GATEHOUSE_RATE_LIMITS_EMAIL_PER_IP", "4"),
            ("GATEHOUSE_RATE_LIMITS_WINDOW_SECONDS", "3600"),
        ],
        true,
    )
    .await;
    let b = Browser::new();
    let first = s.forgot(&b, ALICE).await;
    first.assert_status(200);
    for _ in 0..3 {
        let p = s.forgot(&b, ALICE).await;
        assert_eq!(p.status, first.status);
        assert_eq!(p.body, first.body, "the same answer over the address limit");
    }
    assert_eq!(
        s.outbox().await,
        2,
        "at most two mails per address and hour"
    );
    // The fifth POST from this address is over the per-IP limit.
    let limited = s.forgot(&b, "bob@example.com").await;
    limited.assert_status(429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(s.outbox().await, 2);
}

async fn registration_is_off_by_default(backend: Backend) {
    let s = setup(backend, "{}", &[], true).await;
    let b = Browser::new();
    b.get(&s.url("/register")).await.assert_status(404);
    let login = b.get(&s.url("/login")).await;
    assert!(
        !decode_entities(&login.body).contains("/register"),
        "no link: {}",
        login.body
    );
    let csrf = login.input("_csrf").unwrap();
    let before =
        s.db.rows("SELECT username FROM users ORDER BY username")
            .await;
    b.post(
        &s.url("/register"),
        &[
            ("_csrf", csrf.as_str()),
            ("username", "mallory"),
            ("email", "m@example.com"),
            ("password", PASSWORD),
            ("confirm_password", PASSWORD),
        ],
    )
    .await
    .assert_status(404);
    assert_eq!(
        s.db.rows("SELECT username FROM users ORDER BY username")
            .await,
        before
    );
    assert_eq!(s.outbox().await, 0);
}

#[allow(clippy::too_many_lines)]
async fn registration_requires_a_verified_address_before_sign_in(backend: Backend) {
    let s = setup(
        backend,
        r#"{"registration": {"enabled": true}, "email": {"requireVerified": true}}"#,
        &[],
        true,
    )
    .await;
    let b = Browser::new();
    let login = b.get(&s.url("/login")).await;
    assert!(
        decode_entities(&login.body).contains("/register\""),
        "{}",
        login.body
    );
    let form = b.get(&s.url("/register")).await;
    form.assert_status(200);
    // Bad input: a clear problem, nothing created.
    for (fields, problem) in [
        (
            [
                ("username", "carol"),
                ("email", "nope"),
                ("password", PASSWORD),
                ("confirm_password", PASSWORD),
            ],
            "valid e-mail",
        ),
        (
            [
                ("username", "carol"),
                ("email", "carol@example.com"),
                ("password", PASSWORD),
                ("confirm_password", "other"),
            ],
            "do not match",
        ),
        (
            [
                ("username", "alice"),
                ("email", "carol@example.com"),
                ("password", PASSWORD),
                ("confirm_password", PASSWORD),
            ],
            "taken",
        ),
        (
            [
                ("username", "carol"),
                ("email", "carol@example.com"),
                ("password", "short"),
                ("confirm_password", "short"),
            ],
            "at least 8",
        ),
    ] {
        let p = b.submit(&form, &fields).await;
        p.assert_status(400);
        assert!(p.body.contains(problem), "{problem}: {}", p.body);
        assert_eq!(s.db.scalar("SELECT COUNT(*) FROM users").await, 2);
    }
    let done = b
        .submit(
            &form,
            &[
                ("username", "carol"),
                ("email", "carol@example.com"),
                ("password", PASSWORD),
                ("confirm_password", PASSWORD),
            ],
        )
        .await;
    done.assert_status(200);
    assert!(done.body.contains("Confirm your address"), "{}", done.body);
    let first = s.sink().wait_for(1).await;
    assert_eq!(first[0].to, ["carol@example.com"]);

    // Not before the address is confirmed: a clear message and a way to a new link.
    let carol = Browser::new();
    let refused = carol.sign_in(&s.url(""), "carol", PASSWORD).await;
    refused.assert_status(403);
    assert!(
        refused.body.contains("Confirm your e-mail address"),
        "{}",
        refused.body
    );
    assert!(!signed_in_page(&refused));
    // The wrong password still says only "incorrect" (no hint the account exists).
    let wrong = carol.sign_in(&s.url(""), "carol", "wrong password!").await;
    assert!(wrong.body.contains("Incorrect"), "{}", wrong.body);
    assert!(!wrong.body.contains("Confirm your e-mail"));
    let resend_at = refused
        .body
        .find("data-action=\"resend-verification\"")
        .expect("resend form");
    let resend_form = Page {
        status: refused.status,
        headers: refused.headers.clone(),
        body: refused.body[refused.body[..resend_at].rfind("<form").unwrap()..].to_owned(),
    };
    let resent = carol.submit(&resend_form, &[("username", "carol")]).await;
    resent.assert_status(200);
    let mails = s.sink().wait_for(2).await;
    assert_eq!(mails[1].to, ["carol@example.com"]);

    let verified = carol.get(&verify_link(&s, &mails[1])).await;
    verified.assert_status(200);
    assert!(
        verified.body.contains("Address confirmed"),
        "{}",
        verified.body
    );
    // Used once; the first link still works (its own token), once.
    carol
        .get(&verify_link(&s, &mails[1]))
        .await
        .assert_status(400);
    carol
        .get(&verify_link(&s, &first[0]))
        .await
        .assert_status(200);
    carol
        .get(&verify_link(&s, &first[0]))
        .await
        .assert_status(400);
    let ok = carol.sign_in(&s.url(""), "carol", PASSWORD).await;
    ok.assert_status(200);
    assert!(signed_in_page(&ok), "{}", ok.body);
    let audit = s.db.audit().await;
    for e in ["user.registered|", "user.email_verified|", "login.failed|"] {
        assert!(audit.iter().any(|l| l.starts_with(e)), "{e} in {audit:?}");
    }
}

fn signed_in_page(p: &Page) -> bool {
    p.body.contains("You are signed in")
}

async fn a_verification_link_dies_with_an_address_change(backend: Backend) {
    let s = setup(backend, r#"{"registration": {"enabled": true}}"#, &[], true).await;
    let b = Browser::new();
    let form = b.get(&s.url("/register")).await;
    b.submit(
        &form,
        &[
            ("username", "dave"),
            ("email", "dave@example.com"),
            ("password", PASSWORD),
            ("confirm_password", PASSWORD),
        ],
    )
    .await
    .assert_status(200);
    let mail = s.sink().wait_for(1).await.remove(0);
    // Not required by this tenant: dave can sign in unverified.
    b.sign_in(&s.url(""), "dave", PASSWORD)
        .await
        .assert_status(200);
    s.db.execute("UPDATE users SET email = 'dave@elsewhere.example' WHERE username = 'dave'")
        .await;
    b.get(&verify_link(&s, &mail)).await.assert_status(400);
    assert_eq!(
        s.db.rows("SELECT CAST(email_verified AS TEXT) FROM users WHERE username = 'dave'")
            .await,
        [if backend == Backend::Postgres {
            "false"
        } else {
            "0"
        }]
    );
}

async fn a_dead_relay_keeps_requests_fast_and_the_mail_is_retried(backend: Backend) {
    let s = setup(backend, "{}", &[], false).await;
    let b = Browser::new();
    let started = Instant::now();
    let p = s.forgot(&b, ALICE).await;
    p.assert_status(200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the request does not wait for SMTP: {:?}",
        started.elapsed()
    );
    // The sender tried, failed, and scheduled a retry.
    testkit::wait_until("a failed attempt", Duration::from_secs(20), || async {
        let n = s
            .db
            .scalar("SELECT COUNT(*) FROM email_outbox WHERE attempts >= 1 AND last_error IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL")
            .await;
        (n == 1).then_some(())
    })
    .await;
    assert!(
        s.db.scalar("SELECT COUNT(*) FROM email_outbox WHERE next_attempt_at > created_at")
            .await
            == 1,
        "backed off"
    );
    // The relay comes back; once the retry is due the mail goes out.
    let sink = SmtpSink::start(s.smtp_port).await;
    s.db.execute("UPDATE email_outbox SET next_attempt_at = 0")
        .await;
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].to, [ALICE]);
    assert!(reset_link(&s, &mails[0]).contains("token="));
    testkit::wait_until("marked sent", Duration::from_secs(20), || async {
        (s.db
            .scalar("SELECT COUNT(*) FROM email_outbox WHERE sent_at IS NOT NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
}

async fn sent_mail_is_purged_and_queued_mail_is_not(backend: Backend) {
    let s = setup(backend, "{}", &[], true).await;
    let b = Browser::new();
    s.forgot(&b, ALICE).await.assert_status(200);
    s.sink().wait_for(1).await;
    testkit::wait_until("marked sent", Duration::from_secs(20), || async {
        (s.db
            .scalar("SELECT COUNT(*) FROM email_outbox WHERE sent_at IS NOT NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
    // Sent mail keeps no content (its link).
    assert_eq!(
        s.db.scalar("SELECT COUNT(*) FROM email_outbox WHERE length(sealed) > 0")
            .await,
        0
    );
    // A queued message (not due for an hour) stays.
    let id = "queued-test-message";
    s.db.execute(&format!(
        "INSERT INTO email_outbox (id, tenant_id, kind, recipient, recipient_key, sealed, kek_id, \
         created_at, next_attempt_at) SELECT '{id}', tenant_id, kind, recipient, recipient_key, \
         sealed, kek_id, created_at, next_attempt_at + 999999999 FROM email_outbox"
    ))
    .await;
    s.db.execute("UPDATE email_tokens SET expires_at = 0").await;
    // A second later (the purge deletes what expired before now).
    s.db.execute("UPDATE email_outbox SET expires_at = expires_at - 1 WHERE sent_at IS NOT NULL")
        .await;
    let out =
        s.db.cli()
            .args(["purge", "--only", "email-outbox,email-tokens"])
            .run()
            .await;
    out.assert_success();
    assert!(out.stdout.contains("target=email-outbox rows=1"), "{out}");
    assert!(out.stdout.contains("target=email-tokens rows=1"), "{out}");
    assert_eq!(s.db.rows("SELECT id FROM email_outbox").await, [id]);
}

async fn a_sign_in_from_a_new_device_is_mailed_when_the_tenant_asks(backend: Backend) {
    let s = setup(
        backend,
        r#"{"email": {"newDeviceNotice": true}}"#,
        &[],
        true,
    )
    .await;
    let laptop = Browser::new();
    // The first device a user is seen on is not news; the same device again neither.
    let first = laptop.sign_in(&s.url(""), "alice", PASSWORD).await;
    first.assert_status(200);
    assert!(
        first
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("gatehouse-device-")),
        "{:?}",
        first.set_cookies()
    );
    laptop
        .sign_in(&s.url(""), "alice", PASSWORD)
        .await
        .assert_status(200);
    assert_eq!(s.outbox().await, 0);
    // Another browser is.
    let phone = Browser::with_user_agent("Phone/1.0");
    phone
        .sign_in(&s.url(""), "alice", PASSWORD)
        .await
        .assert_status(200);
    let mails = s.sink().wait_for(1).await;
    assert_eq!(mails[0].to, [ALICE]);
    assert!(
        mails[0]
            .header("subject")
            .unwrap_or_default()
            .contains("New sign-in")
    );
    assert!(
        mails[0].decoded().contains("Phone/1.0"),
        "{}",
        mails[0].decoded()
    );
    // Off by default: bob's tenant policy is the same tenant here, so check the setting's
    // absence on a fresh app instead.
    let plain = setup(backend, "{}", &[], true).await;
    let b = Browser::new();
    b.sign_in(&plain.url(""), "alice", PASSWORD)
        .await
        .assert_status(200);
    Browser::new()
        .sign_in(&plain.url(""), "alice", PASSWORD)
        .await
        .assert_status(200);
    assert_eq!(plain.outbox().await, 0);
    assert_eq!(
        plain.db.scalar("SELECT COUNT(*) FROM known_devices").await,
        0
    );
}
