//! The signed-in user's account pages (`{issuer}/account/…`) in the scripted browser:
//! a stranger is sent to the sign-in page and comes back; a forged POST (no or a wrong
//! `_csrf`, another browser's token) changes nothing; the password change (current
//! password required and throttled, policy and breach check, other sessions ended);
//! the profile (a new e-mail address is unverified); second factors (enrol, recovery
//! codes regenerated, removal with proof, the last required factor kept); sessions
//! (sign out one or all others, never someone else's); and the activity page (own
//! events only).

use authserver::mfa::totp::{self, Secret};

use crate::harness::browser::{Browser, Page, create_user, decode_entities, fast};
use crate::harness::jose::now;
use crate::harness::{Backend, Cli, Server, TestDb, free_port};
use crate::users::{BREACHED, Hibp, Mode};

on_both_backends!(
    strangers_are_sent_to_sign_in_and_come_back,
    forged_posts_are_refused_and_change_nothing,
    the_password_change_checks_everything_and_ends_other_sessions,
    a_new_email_address_is_unverified,
    second_factors_are_enrolled_regenerated_and_removed,
    the_last_required_second_factor_cannot_be_removed,
    sessions_are_listed_and_signed_out_but_never_someone_elses,
    the_activity_page_shows_only_the_users_own_events,
);

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// Every account page a browser can open.
const PAGES: &[&str] = &[
    "/account",
    "/account/profile",
    "/account/password",
    "/account/security",
    "/account/passkeys",
    "/account/sessions",
    "/account/consents",
    "/account/activity",
];

/// Every form the account pages post to.
const FORMS: &[&str] = &[
    "/account/profile",
    "/account/password",
    "/account/security/totp",
    "/account/security/totp/confirm",
    "/account/security/totp/remove",
    "/account/security/recovery-codes",
    "/account/sessions",
    "/account/sessions/others",
    "/account/consents",
];

struct Setup {
    db: TestDb,
    _server: Server,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        self.db.issuer(path)
    }
}

/// Users alice and bob with [`PASSWORD`]; the server made by `cli` (with cheap
/// password hashing) and tenant settings `settings` (YAML flow text), if any.
async fn setup_with(
    backend: Backend,
    settings: Option<&str>,
    cli: impl FnOnce(Cli) -> Cli,
) -> Setup {
    let db = TestDb::migrated(backend).await;
    if let Some(settings) = settings {
        db.write_config(
            "config.yaml",
            &format!(
                "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
                db.issuer("")
            ),
        );
    }
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    let server = cli(fast(db.cli())).serve_in_process(db.port).await;
    Setup {
        db,
        _server: server,
    }
}

async fn setup(backend: Backend) -> Setup {
    setup_with(backend, None, |c| c).await
}

/// A browser signed in as `username` (password only).
async fn signed_in(s: &Setup, username: &str) -> Browser {
    let b = Browser::new();
    let p = b.sign_in(&s.url(""), username, PASSWORD).await;
    p.assert_status(200);
    assert!(p.body.contains("You are signed in"), "{}", p.body);
    b
}

/// Whether `b` still sees the overview (a signed-out browser is sent to sign in).
async fn is_signed_in(s: &Setup, b: &Browser) -> bool {
    let p = b.get(&s.url("/account")).await;
    match p.status.as_u16() {
        200 => true,
        303 => false,
        other => panic!("unexpected {other}: {}", p.body),
    }
}

async fn user_id(db: &TestDb, username: &str) -> String {
    db.rows(&format!(
        "SELECT user_id FROM users WHERE username = '{username}'"
    ))
    .await
    .remove(0)
}

/// What the account pages can change: users (e-mail, verification, profile, password
/// hash), sessions, TOTP and recovery codes, consents.
async fn account_state(db: &TestDb) -> Vec<String> {
    let mut rows = Vec::new();
    for q in [
        "SELECT 'user|' || username || '|' || coalesce(email, '-') || '|' || \
         CAST(email_verified AS TEXT) || '|' || CAST(profile AS TEXT) || '|' || \
         coalesce(password_hash, '-') FROM users",
        "SELECT 'session|' || sid || '|' || user_id FROM sessions",
        "SELECT 'totp|' || user_id || '|' || secret_sealed || '|' || \
         coalesce(CAST(confirmed_at AS TEXT), '-') FROM user_totp",
        "SELECT 'code|' || user_id || '|' || code_hash || '|' || \
         coalesce(CAST(used_at AS TEXT), '-') FROM recovery_codes",
        "SELECT 'consent|' || user_id || '|' || client_id FROM consents",
    ] {
        rows.extend(db.rows(q).await);
    }
    rows.sort();
    rows
}

/// Audit events (`event|actor|subject|details`) named `event`.
async fn events(db: &TestDb, event: &str) -> Vec<String> {
    db.audit()
        .await
        .into_iter()
        .filter(|e| e.starts_with(&format!("{event}|")))
        .collect()
}

/// The text between `start` and the next `end` in `page`.
fn between<'a>(page: &'a Page, start: &str, end: &str) -> &'a str {
    let at = page
        .body
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {}", page.body))
        + start.len();
    &page.body[at..at + page.body[at..].find(end).unwrap()]
}

fn recovery_codes(page: &Page) -> Vec<String> {
    page.body
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_owned())
        .collect()
}

/// Alice's `email|verified or unverified|profile`.
async fn alice_row(db: &TestDb) -> String {
    db.rows(
        "SELECT coalesce(email, '-') || '|' || CASE WHEN email_verified THEN 'verified' \
         ELSE 'unverified' END || '|' || CAST(profile AS TEXT) FROM users \
         WHERE username = 'alice'",
    )
    .await
    .remove(0)
}

/// The session ids of `user_id`, sorted.
async fn sessions_of(db: &TestDb, user_id: &str) -> Vec<String> {
    db.rows(&format!(
        "SELECT sid FROM sessions WHERE user_id = '{user_id}' ORDER BY sid"
    ))
    .await
}

/// Posts `fields` to `url` with `page`'s `_csrf`.
async fn post_with(b: &Browser, page: &Page, url: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.input("_csrf").expect("the page carries _csrf");
    let mut all = vec![("_csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await
}

/// The page's HTML with MiniJinja's escaping undone (URLs in attributes).
fn decoded(page: &Page) -> String {
    decode_entities(&page.body)
}

/// The `value`s of every input named `name`.
fn inputs(page: &Page, name: &str) -> Vec<String> {
    page.body
        .split(&format!("name=\"{name}\" value=\""))
        .skip(1)
        .map(|v| v.split('"').next().unwrap().to_owned())
        .collect()
}

async fn strangers_are_sent_to_sign_in_and_come_back(backend: Backend) {
    let s = setup(backend).await;
    let sign_in = s.url("/login?return_to=account");
    let stranger = Browser::new();
    for path in PAGES {
        let p = stranger.get(&s.url(path)).await;
        assert_eq!(p.status, 303, "{path}: {}", p.body);
        assert_eq!(p.location().as_deref(), Some(sign_in.as_str()), "{path}");
    }
    // A POST without a session is refused before anything else.
    for path in FORMS {
        stranger
            .post(&s.url(path), &[("_csrf", "x")])
            .await
            .assert_status(403);
    }

    // The round trip: the sign-in form the account page sent us to comes back to it.
    let form = stranger.get(&sign_in).await;
    form.assert_status(200);
    let done = stranger
        .submit(&form, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location().unwrap(), s.url("/account"));
    let overview = stranger.follow(&done).await;
    overview.assert_status(200);
    assert!(
        overview.body.contains("<dd>alice</dd>"),
        "{}",
        overview.body
    );
    // One navigation on every page, the current one marked.
    for path in PAGES {
        let p = stranger.get(&s.url(path)).await;
        p.assert_status(200);
        let body = decoded(&p);
        for (link, label) in [
            ("/account/profile", "Profile"),
            ("/account/password", "Password"),
            ("/account/security", "Security"),
            ("/account/passkeys", "Passkeys"),
            ("/account/sessions", "Sessions"),
            ("/account/consents", "Apps with access"),
            ("/account/activity", "Activity"),
        ] {
            assert!(
                body.contains(&format!("href=\"{}\"", s.url(link))) && body.contains(label),
                "{path}: {link} missing: {body}"
            );
        }
        assert!(
            body.contains(&format!("href=\"{}\" aria-current=\"page\"", s.url(path))),
            "{path}: {body}"
        );
        // The pages' one policy: no inline script or style.
        assert_eq!(
            p.header("content-security-policy"),
            Some(
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                 img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
            )
        );
        assert!(!authserver::ui::CSP.contains("unsafe-inline"));
    }

    // A plain sign-in still ends on the "signed in" page: the return is not sticky.
    let other = Browser::new();
    other.get(&sign_in).await.assert_status(200);
    let plain = other.get(&s.url("/login")).await;
    let p = other
        .submit(&plain, &[("username", "bob"), ("password", PASSWORD)])
        .await;
    p.assert_status(200);
    assert!(p.body.contains("You are signed in"), "{}", p.body);
}

async fn forged_posts_are_refused_and_change_nothing(backend: Backend) {
    let s = setup(backend).await;
    let alice = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;
    let bobs_csrf = bob
        .get(&s.url("/account/profile"))
        .await
        .input("_csrf")
        .unwrap();
    let alice_id = user_id(&s.db, "alice").await;
    let before = account_state(&s.db).await;
    for path in FORMS {
        let url = s.url(path);
        let fields: &[(&str, &str)] = &[
            ("name", "Mallory"),
            ("email", "mallory@example.com"),
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
            ("confirm_password", NEW_PASSWORD),
            ("session_id", &alice_id),
            ("client_id", "app"),
        ];
        // No token, a wrong one, an empty one, and bob's token in alice's browser.
        for csrf in [None, Some("wrong"), Some(""), Some(bobs_csrf.as_str())] {
            let mut all = fields.to_vec();
            if let Some(c) = csrf {
                all.push(("_csrf", c));
            }
            let p = alice.post(&url, &all).await;
            p.assert_status(403);
            assert!(p.body.contains("did not come from this site"), "{}", p.body);
        }
    }
    assert_eq!(account_state(&s.db).await, before);
    assert!(is_signed_in(&s, &alice).await);
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn the_password_change_checks_everything_and_ends_other_sessions(backend: Backend) {
    let hibp = Hibp::start(Mode::Answer);
    let s = setup_with(backend, None, |c| {
        c.env("GATEHOUSE_PASSWORDS_BREACHED", "reject")
            .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", &hibp.url)
            .env("GATEHOUSE_LOGIN_MAX_FAILURES", "4")
            .env("GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP", "1000")
            .env("GATEHOUSE_LOGIN_LOCKOUT_SECONDS", "120")
    })
    .await;
    let here = signed_in(&s, "alice").await;
    let elsewhere = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;
    let url = s.url("/account/password");
    let form = here.get(&url).await;
    form.assert_status(200);
    for label in [
        "<label for=\"current_password\">",
        "<label for=\"new_password\">",
        "<label for=\"confirm_password\">",
    ] {
        assert!(form.body.contains(label), "{label}: {}", form.body);
    }
    assert_eq!(form.form_action().as_deref(), Some(url.as_str()));

    let before = account_state(&s.db).await;
    let attempt = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (here, form) = (&here, &form);
        async move {
            here.submit(
                form,
                &[
                    ("current_password", current),
                    ("new_password", new),
                    ("confirm_password", confirm),
                ],
            )
            .await
        }
    };
    for (current, new, confirm, message) in [
        (
            "wrong password",
            NEW_PASSWORD,
            NEW_PASSWORD,
            "Your current password is not correct.",
        ),
        (
            "",
            NEW_PASSWORD,
            NEW_PASSWORD,
            "Fill in your current password",
        ),
        (
            PASSWORD,
            NEW_PASSWORD,
            "something else entirely",
            "do not match",
        ),
        (PASSWORD, "short", "short", "New password: must be at least"),
        (PASSWORD, BREACHED, BREACHED, "known data breach"),
    ] {
        let p = attempt(current, new, confirm).await;
        p.assert_status(400);
        assert!(
            p.body.contains("role=\"alert\">") && p.body.contains(message),
            "{message}: {}",
            p.body
        );
        for secret in [PASSWORD, NEW_PASSWORD, BREACHED] {
            assert!(!p.body.contains(secret), "the page never echoes a password");
        }
    }
    assert_eq!(account_state(&s.db).await, before, "nothing changed");
    assert!(is_signed_in(&s, &elsewhere).await);
    let alice = user_id(&s.db, "alice").await;
    assert_eq!(
        events(&s.db, "user.reauthentication_failed").await.len(),
        1,
        "the wrong current password is audited"
    );

    // Success: this browser stays, alice's other session ends, bob's does not.
    let p = attempt(PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), format!("{url}?done=password"));
    let shown = here.follow(&p).await;
    shown.assert_status(200);
    assert!(
        shown.body.contains("Your password was changed"),
        "{}",
        shown.body
    );
    assert!(is_signed_in(&s, &here).await);
    assert!(!is_signed_in(&s, &elsewhere).await);
    assert!(is_signed_in(&s, &bob).await);
    let changed = events(&s.db, "user.password_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].starts_with(&format!("user.password_changed|user|{alice}|")),
        "{changed:?}"
    );
    assert!(changed[0].contains("\"sessions_ended\":1"), "{changed:?}");
    for e in s.db.audit().await {
        assert!(!e.contains(PASSWORD) && !e.contains(NEW_PASSWORD), "{e}");
    }
    // The new password signs in; the old one does not.
    let p = Browser::new()
        .sign_in(&s.url(""), "alice", NEW_PASSWORD)
        .await;
    assert!(p.body.contains("You are signed in"), "{}", p.body);
    let p = Browser::new().sign_in(&s.url(""), "alice", PASSWORD).await;
    assert!(
        p.body.contains("Incorrect username or password"),
        "{}",
        p.body
    );

    // Guessing the current password is throttled like signing in: locked, 429.
    let form = here.get(&url).await;
    let before = account_state(&s.db).await;
    let mut last = None;
    for _ in 0..4 {
        last = Some(
            here.submit(
                &form,
                &[
                    ("current_password", "guess"),
                    ("new_password", "another new passphrase"),
                    ("confirm_password", "another new passphrase"),
                ],
            )
            .await,
        );
    }
    let locked = last.unwrap();
    locked.assert_status(429);
    assert!(locked.header("retry-after").is_some());
    assert!(
        locked.body.contains("Too many failed attempts"),
        "{}",
        locked.body
    );
    // Locked: even the right password is refused now.
    let p = here
        .submit(
            &form,
            &[
                ("current_password", NEW_PASSWORD),
                ("new_password", "another new passphrase"),
                ("confirm_password", "another new passphrase"),
            ],
        )
        .await;
    p.assert_status(429);
    assert_eq!(account_state(&s.db).await, before);
}

async fn a_new_email_address_is_unverified(backend: Backend) {
    // Mail on, with nothing listening: the verification mail waits in the outbox.
    let s = setup_with(backend, None, |c| {
        c.env("GATEHOUSE_EMAIL_SMTP_HOST", "127.0.0.1")
            .env("GATEHOUSE_EMAIL_SMTP_PORT", free_port().to_string())
            .env("GATEHOUSE_EMAIL_SMTP_SECURITY", "plain")
            .env("GATEHOUSE_EMAIL_FROM", "Gatehouse <id@example.com>")
    })
    .await;
    s.db.execute(
        "UPDATE users SET email = 'alice@example.com', email_verified = TRUE \
         WHERE username = 'alice'",
    )
    .await;
    let b = signed_in(&s, "alice").await;
    let url = s.url("/account/profile");
    let form = b.get(&url).await;
    form.assert_status(200);
    assert_eq!(form.input("email").as_deref(), Some("alice@example.com"));
    assert!(
        form.body.contains("This address is verified."),
        "{}",
        form.body
    );
    assert!(form.body.contains("<label for=\"name\">"));
    assert!(form.body.contains("<label for=\"email\">"));

    // A bad address: the form again with the message and what was typed; nothing changed.
    let before = account_state(&s.db).await;
    let p = b
        .submit(&form, &[("name", "Alice A."), ("email", "not-an-address")])
        .await;
    p.assert_status(400);
    assert!(p.body.contains("not a valid email address"), "{}", p.body);
    assert_eq!(p.input("email").as_deref(), Some("not-an-address"));
    assert_eq!(account_state(&s.db).await, before);

    // The name alone keeps the address verified.
    let p = b
        .submit(
            &form,
            &[("name", "Alice A."), ("email", "alice@example.com")],
        )
        .await;
    assert_eq!(p.location().unwrap(), format!("{url}?done=profile"));
    let row = alice_row(&s.db).await;
    assert!(row.starts_with("alice@example.com|verified|"), "{row}");
    assert!(row.contains("Alice A."), "{row}");

    // A new address is stored unverified and audited, without the address itself.
    let p = b
        .submit(&form, &[("name", "Alice A."), ("email", "new@example.com")])
        .await;
    assert_eq!(p.location().unwrap(), format!("{url}?done=email"));
    let shown = b.follow(&p).await;
    assert!(shown.body.contains("not verified yet"), "{}", shown.body);
    assert!(
        alice_row(&s.db)
            .await
            .starts_with("new@example.com|unverified|")
    );
    let alice = user_id(&s.db, "alice").await;
    let changed = events(&s.db, "user.email_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].starts_with(&format!("user.email_changed|user|{alice}|")));
    assert!(!changed[0].contains("example.com"), "{changed:?}");
    // Only the new address got a verification mail.
    assert_eq!(
        events(&s.db, "email.verification_sent").await.len(),
        1,
        "{:?}",
        s.db.audit().await
    );
    // Bob's row is his own.
    assert_eq!(
        s.db.rows("SELECT coalesce(email, '-') FROM users WHERE username = 'bob'")
            .await,
        ["-"]
    );
}

/// Signs `username` in with the password and a code from `secret` at `step`.
async fn signed_in_with_code(s: &Setup, username: &str, code: &str) -> (Browser, Page) {
    let b = Browser::new();
    let p = b.sign_in(&s.url(""), username, PASSWORD).await;
    assert!(p.location().unwrap().ends_with("/login/mfa"), "{p:?}");
    let form = b.follow(&p).await;
    let done = b.submit(&form, &[("totp", code)]).await;
    (b, done)
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn second_factors_are_enrolled_regenerated_and_removed(backend: Backend) {
    let s = setup(backend).await;
    let b = signed_in(&s, "alice").await;
    let url = s.url("/account/security");
    let page = b.get(&url).await;
    page.assert_status(200);
    assert!(
        page.body.contains("No authenticator app is set up."),
        "{}",
        page.body
    );
    // Nothing to regenerate or remove yet.
    let p = b
        .post(
            &s.url("/account/security/recovery-codes"),
            &[("_csrf", &page.input("_csrf").unwrap())],
        )
        .await;
    p.assert_status(409);

    // Enrol: the QR code and key, a wrong code, then the right one and the codes once.
    let started = b.submit(&page, &[]).await;
    started.assert_status(200);
    assert!(
        crate::harness::browser::decode_entities(&started.body)
            .contains("src=\"data:image/svg+xml;base64,"),
        "{}",
        started.body
    );
    let key = between(&started, "<code class=\"secret\">", "</code>").to_owned();
    let secret = Secret::from_bytes(totp::base32_decode(&key).unwrap());
    let confirm = s.url("/account/security/totp/confirm");
    let csrf = started.input("_csrf").unwrap();
    let wrong = b
        .post(&confirm, &[("_csrf", &csrf), ("totp", "000000")])
        .await;
    wrong.assert_status(400);
    assert!(
        wrong.body.contains("That code is not valid."),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains(&key), "the retry shows the same key");
    assert_eq!(s.db.scalar("SELECT count(*) FROM recovery_codes").await, 0);
    let step = totp::step(now());
    let codes_page = b
        .post(
            &confirm,
            &[("_csrf", &csrf), ("totp", &secret.code_at_step(step - 1))],
        )
        .await;
    codes_page.assert_status(200);
    let first_codes = recovery_codes(&codes_page);
    assert_eq!(first_codes.len(), 10, "{}", codes_page.body);
    assert!(
        is_signed_in(&s, &b).await,
        "enrolling keeps this browser signed in"
    );
    let page = b.get(&url).await;
    assert!(
        page.body
            .contains("An authenticator app is set up. 10 recovery codes"),
        "{}",
        page.body
    );

    // Regenerate: new codes shown once; the old ones stop working.
    let regen = b
        .post(
            &s.url("/account/security/recovery-codes"),
            &[("_csrf", &csrf)],
        )
        .await;
    regen.assert_status(200);
    let new_codes = recovery_codes(&regen);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !first_codes.contains(c)));
    let (_, refused) = signed_in_with_code(&s, "alice", &first_codes[0]).await;
    assert!(
        refused.body.contains("That code is not valid."),
        "{}",
        refused.body
    );
    let (other, ok) = signed_in_with_code(&s, "alice", &new_codes[0]).await;
    assert!(ok.body.contains("You are signed in"), "{}", ok.body);

    // Removing needs proof: none or a wrong one changes nothing.
    let remove = s.url("/account/security/totp/remove");
    let before = account_state(&s.db).await;
    for fields in [
        vec![("_csrf", csrf.as_str())],
        vec![("_csrf", csrf.as_str()), ("current_password", "wrong")],
        vec![("_csrf", csrf.as_str()), ("totp", "123456")],
    ] {
        let p = b.post(&remove, &fields).await;
        p.assert_status(400);
        assert!(
            p.body
                .contains("Enter your current password or a valid code"),
            "{}",
            p.body
        );
    }
    assert_eq!(account_state(&s.db).await, before);
    // With the password: removed; this browser stays, the other session ends.
    let p = b
        .post(&remove, &[("_csrf", &csrf), ("current_password", PASSWORD)])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), format!("{url}?done=totp-removed"));
    assert_eq!(s.db.scalar("SELECT count(*) FROM user_totp").await, 0);
    assert_eq!(s.db.scalar("SELECT count(*) FROM recovery_codes").await, 0);
    assert!(is_signed_in(&s, &b).await);
    assert!(!is_signed_in(&s, &other).await);
    let alice = user_id(&s.db, "alice").await;
    for event in [
        "mfa.enrolled",
        "mfa.recovery_codes_regenerated",
        "mfa.removed",
    ] {
        let found = events(&s.db, event).await;
        assert_eq!(found.len(), 1, "{event}: {found:?}");
        assert!(
            found[0].starts_with(&format!("{event}|user|{alice}|")),
            "{found:?}"
        );
    }
    for e in s.db.audit().await {
        for c in first_codes.iter().chain(&new_codes) {
            assert!(!e.contains(c.as_str()), "{e}");
        }
        assert!(!e.contains(&key), "{e}");
    }
}

async fn the_last_required_second_factor_cannot_be_removed(backend: Backend) {
    let s = setup_with(backend, Some("{mfa: {required: true}}"), |c| c).await;
    let (secret, codes) = crate::mfa::enrol(&s.db, "alice").await;
    let (b, done) = signed_in_with_code(&s, "alice", &secret.code_at_step(totp::step(now()))).await;
    done.assert_status(200);
    let page = b.get(&s.url("/account/security")).await;
    page.assert_status(200);
    assert!(
        page.body.contains("requires two-step verification"),
        "{}",
        page.body
    );
    let before = account_state(&s.db).await;
    // Refused with the password, with a code, and without proof: it is the last one.
    for proof in [
        ("current_password", PASSWORD.to_owned()),
        ("totp", codes[0].clone()),
        ("totp", String::new()),
    ] {
        let p = post_with(
            &b,
            &page,
            &s.url("/account/security/totp/remove"),
            &[(proof.0, proof.1.as_str())],
        )
        .await;
        p.assert_status(409);
        assert!(
            p.body.contains("You cannot remove your last second factor"),
            "{}",
            p.body
        );
    }
    assert_eq!(
        account_state(&s.db).await,
        before,
        "the recovery code was not used"
    );
    assert!(events(&s.db, "mfa.removed").await.is_empty());

    // The way back to the account pages survives the second factor.
    let back = Browser::new();
    let form = back.get(&s.url("/login?return_to=account")).await;
    let p = back
        .submit(&form, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert!(p.location().unwrap().ends_with("/login/mfa"), "{p:?}");
    let code = back.follow(&p).await;
    let done = back
        .submit(
            &code,
            &[("totp", &secret.code_at_step(totp::step(now()) + 1))],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location().unwrap(), s.url("/account"));
    back.follow(&done).await.assert_status(200);

    // With a passkey as well, the authenticator is no longer the last factor.
    s.db.execute(&format!(
        "INSERT INTO passkeys (tenant_id, credential_id, user_id, name, credential, \
         sign_count, backup_eligible, backup_state, created_at) \
         VALUES ('main', 'cred-1', '{}', 'Laptop', '{{}}', 0, FALSE, FALSE, 0)",
        user_id(&s.db, "alice").await
    ))
    .await;
    let page = b.get(&s.url("/account/security")).await;
    let p = post_with(
        &b,
        &page,
        &s.url("/account/security/totp/remove"),
        &[("current_password", PASSWORD)],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(s.db.scalar("SELECT count(*) FROM user_totp").await, 0);

    // The same for a user flagged as requiring MFA in a tenant that does not.
    let s = setup(backend).await;
    let (secret, _) = crate::mfa::enrol(&s.db, "bob").await;
    s.db.execute("UPDATE users SET mfa_required = TRUE WHERE username = 'bob'")
        .await;
    let (b, _) = signed_in_with_code(&s, "bob", &secret.code_at_step(totp::step(now()))).await;
    let page = b.get(&s.url("/account/security")).await;
    let p = post_with(
        &b,
        &page,
        &s.url("/account/security/totp/remove"),
        &[("current_password", PASSWORD)],
    )
    .await;
    p.assert_status(409);
    assert_eq!(s.db.scalar("SELECT count(*) FROM user_totp").await, 1);
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn sessions_are_listed_and_signed_out_but_never_someone_elses(backend: Backend) {
    let s = setup(backend).await;
    let here = signed_in(&s, "alice").await;
    let phone = {
        let b = Browser::with_user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        );
        let p = b.sign_in(&s.url(""), "alice", PASSWORD).await;
        p.assert_status(200);
        b
    };
    let laptop = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;
    let url = s.url("/account/sessions");
    let page = here.get(&url).await;
    page.assert_status(200);
    let sids = inputs(&page, "session_id");
    assert_eq!(sids.len(), 3, "alice's three sessions only: {}", page.body);
    assert_eq!(
        page.body.matches("This browser").count(),
        1,
        "{}",
        page.body
    );
    assert!(page.body.contains("Safari on iOS"), "{}", page.body);
    assert!(page.body.contains("127.0.0.1"), "{}", page.body);
    assert!(page.body.contains(" UTC"), "{}", page.body);
    let alice = user_id(&s.db, "alice").await;
    let mut listed = sids.clone();
    listed.sort();
    assert_eq!(sessions_of(&s.db, &alice).await, listed);
    let csrf = page.input("_csrf").unwrap();

    // Bob's session id posted from alice's browser: not found, nothing changed.
    let bobs = sessions_of(&s.db, &user_id(&s.db, "bob").await).await;
    assert_eq!(bobs.len(), 1);
    let before = account_state(&s.db).await;
    for sid in [bobs[0].as_str(), "no-such-session", ""] {
        let p = here
            .post(&url, &[("_csrf", &csrf), ("session_id", sid)])
            .await;
        p.assert_status(404);
        assert!(p.body.contains("That session was not found"), "{}", p.body);
    }
    assert_eq!(account_state(&s.db).await, before);
    assert!(is_signed_in(&s, &bob).await);

    // Sign out the phone: only the phone.
    let phone_sid = between(&page, "<ul class=\"sessions\">", "</ul>")
        .split("<li>")
        .find(|item| item.contains("Safari on iOS"))
        .and_then(|item| item.split("name=\"session_id\" value=\"").nth(1))
        .map(|v| v.split('"').next().unwrap().to_owned())
        .unwrap();
    let p = here
        .post(&url, &[("_csrf", &csrf), ("session_id", &phone_sid)])
        .await;
    assert_eq!(p.location().unwrap(), format!("{url}?done=signed-out"));
    assert!(!is_signed_in(&s, &phone).await);
    assert!(is_signed_in(&s, &here).await && is_signed_in(&s, &laptop).await);
    let revoked = events(&s.db, "session.revoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].contains(&phone_sid) && revoked[0].contains("account_page"));

    // Everywhere else: the laptop goes, this browser and bob stay.
    let p = here
        .post(&s.url("/account/sessions/others"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(
        p.location().unwrap(),
        format!("{url}?done=signed-out-others")
    );
    assert!(!is_signed_in(&s, &laptop).await);
    assert!(is_signed_in(&s, &here).await);
    assert!(is_signed_in(&s, &bob).await);
    assert_eq!(sessions_of(&s.db, &alice).await.len(), 1);
    let page = here.get(&url).await;
    assert!(
        !page.body.contains("Sign out everywhere else"),
        "{}",
        page.body
    );

    // This browser's own session: signed out here, back to the sign-in page.
    let own = inputs(&page, "session_id").remove(0);
    let p = here
        .post(&url, &[("_csrf", &csrf), ("session_id", &own)])
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location().unwrap(), s.url("/login"));
    assert!(!is_signed_in(&s, &here).await);
    assert!(sessions_of(&s.db, &alice).await.is_empty());
}

async fn the_activity_page_shows_only_the_users_own_events(backend: Backend) {
    let s = setup(backend).await;
    // A failed sign-in for alice, and bob's own activity.
    let p = Browser::new().sign_in(&s.url(""), "alice", "wrong").await;
    assert!(p.body.contains("Incorrect username or password"));
    let bob = signed_in(&s, "bob").await;
    let bob_page = bob.get(&s.url("/account/profile")).await;
    bob.submit(&bob_page, &[("name", "Bob"), ("email", "bob@example.com")])
        .await;
    let b = signed_in(&s, "alice").await;
    let form = b.get(&s.url("/account/profile")).await;
    b.submit(&form, &[("name", "Alice"), ("email", "alice@example.com")])
        .await;

    let page = b.get(&s.url("/account/activity")).await;
    page.assert_status(200);
    assert!(
        page.body.contains("<th scope=\"col\">When</th>"),
        "{}",
        page.body
    );
    let shown: Vec<String> = page
        .body
        .split("data-event=\"")
        .skip(1)
        .map(|e| e.split('"').next().unwrap().to_owned())
        .collect();
    // Newest first: the e-mail and profile changes, the sign-in, the failure.
    assert_eq!(
        shown,
        [
            "user.email_changed",
            "user.profile_updated",
            "login.succeeded",
            "login.failed",
        ],
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Failed sign-in attempt"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("E-mail address changed"),
        "{}",
        page.body
    );
    // Nothing of bob's, and no details (addresses, session ids).
    let bob_sid =
        s.db.rows(&format!(
            "SELECT sid FROM sessions WHERE user_id = '{}'",
            user_id(&s.db, "bob").await
        ))
        .await
        .remove(0);
    assert!(!page.body.contains(&bob_sid));
    assert!(!page.body.contains("example.com"), "{}", page.body);
    let bob_activity = bob.get(&s.url("/account/activity")).await;
    assert!(
        !bob_activity.body.contains("login.failed"),
        "{}",
        bob_activity.body
    );
}
