//! Remembered devices, new-device verification, GeoIP and impossible travel, over HTTP
//! with real browsers' cookie jars. The server sits behind a "proxy" (loopback is a
//! trusted proxy), so each browser claims its address with `X-Forwarded-For`; the GeoIP
//! database is built by the test (`testkit::mmdb`): 198.51.100.0/24 is Berlin,
//! 192.0.2.0/24 Hamburg, 203.0.113.0/24 Sydney. Time that "has passed" is moved in the
//! stored rows.

use serde_json::Value;
use testkit::mmdb::{Writer, city_record};
use testkit::smtp::SmtpSink;

use crate::harness::browser::{Browser, Page, fast, user_cli};
use crate::harness::{Backend, Server, TestDb, free_port};

on_both_backends!(
    a_new_device_asks_for_the_second_factor_and_is_then_trusted,
    device_trust_runs_out,
    another_users_forged_or_tampered_device_cookie_is_a_new_device,
    the_second_factor_cannot_be_skipped,
    a_user_without_a_factor_proves_a_new_device_with_a_mailed_code,
    impossible_travel_is_flagged_and_challenged,
    travel_that_is_slow_enough_is_not_flagged,
    the_account_page_lists_and_forgets_only_the_users_own_devices,
);

const PASSWORD: &str = "correct horse battery staple";
const BERLIN: &str = "198.51.100.7";
const HAMBURG: &str = "192.0.2.20";
const SYDNEY: &str = "203.0.113.9";

struct Setup {
    db: TestDb,
    /// Held: the server runs as long as the test does.
    _server: Server,
    sink: SmtpSink,
}

fn geoip_database() -> Vec<u8> {
    Writer::new("GeoIP2-City")
        .insert(
            "198.51.100.0".parse().unwrap(),
            24,
            &city_record("DE", "Berlin", 52.52, 13.405),
        )
        .insert(
            "192.0.2.0".parse().unwrap(),
            24,
            &city_record("DE", "Hamburg", 53.5511, 9.9937),
        )
        .insert(
            "203.0.113.0".parse().unwrap(),
            24,
            &city_record("AU", "Sydney", -33.8688, 151.2093),
        )
        .build()
}

/// Tenant `main` with `devices` (its policy section), the GeoIP database, mail through
/// a sink; users alice (verified address) and bob (another one), both without a factor.
async fn setup(backend: Backend, devices: &str) -> Setup {
    let db = TestDb::migrated(backend).await;
    let geoip = db.write_config("geo.mmdb", "");
    std::fs::write(&geoip, geoip_database()).unwrap();
    db.write_config(
        "config.yaml",
        &format!(
            "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n\
             geoip:\n  database: {}\n\
             tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    \
             settings: {{\"devices\": {devices}}}\n",
            geoip.display(),
            db.issuer("")
        ),
    );
    for (name, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
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
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port).await;
    let server = fast(db.cli())
        .env("GATEHOUSE_EMAIL_SMTP_HOST", "127.0.0.1")
        .env("GATEHOUSE_EMAIL_SMTP_PORT", smtp_port.to_string())
        .env("GATEHOUSE_EMAIL_SMTP_SECURITY", "plain")
        .env("GATEHOUSE_EMAIL_FROM", "Gatehouse <id@example.com>")
        .env("GATEHOUSE_EMAIL_POLL_INTERVAL_MS", "100")
        .env("GATEHOUSE_EMAIL_PER_ADDRESS_PER_HOUR", "50")
        .env("GATEHOUSE_LOGIN_MAX_FAILURES", "50")
        .serve_in_process(db.port)
        .await;
    Setup {
        db,
        _server: server,
        sink,
    }
}

const NEW_DEVICE: &str = r#"{"requireSecondFactorOnNewDevice": true, "trustDays": 30}"#;

impl Setup {
    fn url(&self, path: &str) -> String {
        self.db.issuer(path)
    }

    /// Password sign-in of `user` in `b`: the page after the POST.
    async fn password(&self, b: &Browser, user: &str) -> Page {
        b.sign_in(&self.url(""), user, PASSWORD).await
    }

    /// Whether `p` (after the password) is the signed-in page, or else sends the
    /// browser to the second factor.
    fn signed_in(p: &Page) -> bool {
        match p.status.as_u16() {
            200 => !p.body.contains("name=\"password\""),
            303 => {
                let to = p.location().unwrap_or_default();
                assert!(to.contains("/login/mfa"), "unexpected redirect to {to}");
                false
            }
            s => panic!("unexpected status {s}: {}", p.body),
        }
    }

    /// The code in the `n`-th mail (from 1) to `user`'s address.
    async fn mailed_code(&self, user: &str, n: usize) -> String {
        let to = format!("{user}@example.com");
        let sink = &self.sink;
        let mail = testkit::wait_until(
            &format!("mail {n} to {to}"),
            std::time::Duration::from_secs(20),
            || {
                let to = to.clone();
                async move {
                    let mine: Vec<_> = sink
                        .received()
                        .into_iter()
                        .filter(|m| m.to == [to.clone()])
                        .collect();
                    mine.into_iter().nth(n - 1)
                }
            },
        )
        .await;
        let text = mail.decoded();
        text.lines()
            .map(str::trim)
            .find(|w| w.len() == 6 && w.bytes().all(|c| c.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no code in {text}"))
            .to_owned()
    }

    /// Password, then the code mailed for the new device (the `n`-th mail to the user).
    async fn sign_in_by_mail(&self, b: &Browser, user: &str, n: usize) -> Page {
        let p = self.password(b, user).await;
        assert!(!Self::signed_in(&p), "a second factor was expected");
        let form = b.follow(&p).await;
        form.assert_status(200);
        let code = self.mailed_code(user, n).await;
        b.submit(&form, &[("totp", &code)]).await
    }

    async fn events(&self, name: &str) -> Vec<Value> {
        self.db
            .rows(&format!(
                "SELECT details FROM audit_events WHERE event = '{name}' ORDER BY id"
            ))
            .await
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    async fn devices_of(&self, user: &str) -> i64 {
        self.db
            .scalar(&format!(
                "SELECT COUNT(*) FROM known_devices d JOIN users u ON u.tenant_id = d.tenant_id \
                 AND u.user_id = d.user_id WHERE u.username = '{user}'"
            ))
            .await
    }

    async fn trusted_devices_of(&self, user: &str) -> i64 {
        self.db
            .scalar(&format!(
                "SELECT COUNT(*) FROM known_devices d JOIN users u ON u.tenant_id = d.tenant_id \
                 AND u.user_id = d.user_id WHERE u.username = '{user}' AND d.trusted_until IS \
                 NOT NULL"
            ))
            .await
    }

    /// The device cookie (`name=value`) `b` holds for the server.
    fn device_cookie(&self, b: &Browser) -> String {
        b.cookies(&self.url("/"))
            .unwrap_or_default()
            .split("; ")
            .find(|c| c.starts_with("gatehouse-device-"))
            .unwrap_or_else(|| panic!("no device cookie in {:?}", b.cookies(&self.url("/"))))
            .to_owned()
    }
}

async fn a_new_device_asks_for_the_second_factor_and_is_then_trusted(backend: Backend) {
    let s = setup(backend, NEW_DEVICE).await;
    let laptop = Browser::new().at_ip(BERLIN);
    let done = s.sign_in_by_mail(&laptop, "alice", 1).await;
    assert!(Setup::signed_in(&done), "{}", done.body);
    assert_eq!(s.trusted_devices_of("alice").await, 1);
    assert_eq!(
        s.db.rows("SELECT country FROM known_devices").await,
        ["DE"],
        "the device's country"
    );
    let succeeded = s.events("login.succeeded").await;
    assert_eq!(succeeded[0]["country"], "DE", "{succeeded:?}");
    // The same browser again: trusted, no second factor.
    let again = s.password(&laptop, "alice").await;
    assert!(Setup::signed_in(&again), "{}", again.body);
    // Another browser is a new device.
    let phone = Browser::with_user_agent("Phone/1.0").at_ip(BERLIN);
    let p = s.password(&phone, "alice").await;
    assert!(!Setup::signed_in(&p));
    assert_eq!(
        s.devices_of("alice").await,
        1,
        "nothing kept before it passes"
    );
    // Trust never waives a factor the user has: with an authenticator, it is asked for
    // on the trusted device too (as at every sign-in).
    let (_, codes) = crate::mfa::enrol(&s.db, "alice").await;
    let p = s.password(&laptop, "alice").await;
    assert!(!Setup::signed_in(&p));
    let form = laptop.follow(&p).await;
    assert!(form.body.contains("authenticator app"), "{}", form.body);
    assert!(Setup::signed_in(
        &laptop.submit(&form, &[("totp", &codes[0])]).await
    ));
    // Off by default: no devices kept, the country is still audited.
    let plain = setup(backend, "{}").await;
    let p = plain.password(&Browser::new().at_ip(SYDNEY), "bob").await;
    assert!(Setup::signed_in(&p));
    assert_eq!(
        plain.db.scalar("SELECT COUNT(*) FROM known_devices").await,
        0
    );
    assert_eq!(plain.events("login.succeeded").await[0]["country"], "AU");
}

async fn device_trust_runs_out(backend: Backend) {
    let s = setup(backend, NEW_DEVICE).await;
    let b = Browser::new().at_ip(BERLIN);
    assert!(Setup::signed_in(&s.sign_in_by_mail(&b, "alice", 1).await));
    let until =
        s.db.scalar("SELECT trusted_until - last_seen_at FROM known_devices")
            .await;
    assert_eq!(until, 30 * 86_400, "trustDays from the sign-in");
    // A sign-in on the trusted device does not extend the trust it relied on.
    s.db.execute("UPDATE known_devices SET trusted_until = trusted_until - 86400")
        .await;
    let before = s.db.scalar("SELECT trusted_until FROM known_devices").await;
    assert!(Setup::signed_in(&s.password(&b, "alice").await));
    assert_eq!(
        s.db.scalar("SELECT trusted_until FROM known_devices").await,
        before
    );
    // Thirty days later the device is no longer trusted: the second factor again.
    s.db.execute("UPDATE known_devices SET trusted_until = 1000")
        .await;
    let done = s.sign_in_by_mail(&b, "alice", 2).await;
    assert!(Setup::signed_in(&done));
    assert!(
        s.db.scalar("SELECT trusted_until FROM known_devices").await > before,
        "trusted anew"
    );
}

async fn another_users_forged_or_tampered_device_cookie_is_a_new_device(backend: Backend) {
    let s = setup(backend, NEW_DEVICE).await;
    // Bob's device, trusted for bob.
    let bobs = Browser::new().at_ip(BERLIN);
    assert!(Setup::signed_in(&s.sign_in_by_mail(&bobs, "bob", 1).await));
    let cookie = s.device_cookie(&bobs);
    assert!(Setup::signed_in(&s.password(&bobs, "bob").await), "trusted");
    // Alice's browser replays bob's device cookie: still a new device for alice.
    let replay = Browser::new().at_ip(BERLIN);
    replay.add_cookie(&s.url("/"), &cookie);
    assert!(!Setup::signed_in(&s.password(&replay, "alice").await));
    // Bob's own cookie tampered with (one character changed), and a huge one: new
    // devices for bob.
    let (name, value) = cookie.split_once('=').unwrap();
    let last = if value.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{name}={}{last}", &value[..value.len() - 1]);
    let huge = format!("{name}={}", "A".repeat(6000));
    for forged in [tampered, huge] {
        let b = Browser::new().at_ip(BERLIN);
        b.add_cookie(&s.url("/"), &forged);
        let p = s.password(&b, "bob").await;
        assert!(!Setup::signed_in(&p), "{}", &forged[..60]);
    }
    // Alice passes her code with bob's cookie: the cookie becomes her device too,
    // which changes nothing for bob's.
    let form = replay.get(&s.url("/login/mfa")).await;
    let code = s.mailed_code("alice", 1).await;
    assert!(Setup::signed_in(
        &replay.submit(&form, &[("totp", &code)]).await
    ));
    assert_eq!(s.trusted_devices_of("alice").await, 1);
    assert_eq!(s.trusted_devices_of("bob").await, 1);
}

async fn the_second_factor_cannot_be_skipped(backend: Backend) {
    let s = setup(backend, NEW_DEVICE).await;
    let b = Browser::new().at_ip(BERLIN);
    assert!(!Setup::signed_in(&s.password(&b, "alice").await));
    // The account pages: nobody is signed in yet.
    let account = b.get(&s.url("/account")).await;
    assert_eq!(account.status.as_u16(), 303);
    assert!(
        account.location().unwrap().contains("/login"),
        "{account:?}"
    );
    // The enrolment step's "continue" (posted straight, with the form's CSRF token):
    // back to the sign-in form.
    let form = b.get(&s.url("/login/mfa")).await;
    form.assert_status(200);
    let csrf = form.input("_csrf").unwrap();
    let skip = b
        .post(
            &s.url("/login/mfa/enroll"),
            &[("_csrf", &csrf), ("totp", "")],
        )
        .await;
    assert!(
        skip.location().is_some_and(|l| l.ends_with("/login")),
        "{skip:?}"
    );
    // An empty code, a huge one: refused.
    for bad in [String::new(), "1".repeat(5000)] {
        let p = b.submit(&form, &[("totp", &bad)]).await;
        p.assert_status(200);
        assert!(p.body.contains("not valid"), "{}", p.body);
    }
    assert_eq!(s.events("login.succeeded").await.len(), 0);
    assert_eq!(s.devices_of("alice").await, 0);
    // The code is the way through.
    let code = s.mailed_code("alice", 1).await;
    let done = b.submit(&form, &[("totp", &code)]).await;
    assert!(Setup::signed_in(&done), "{}", done.body);
}

async fn a_user_without_a_factor_proves_a_new_device_with_a_mailed_code(backend: Backend) {
    let s = setup(backend, NEW_DEVICE).await;
    let b = Browser::new().at_ip(BERLIN);
    let p = s.password(&b, "alice").await;
    assert!(!Setup::signed_in(&p));
    let form = b.follow(&p).await;
    form.assert_status(200);
    assert!(form.body.contains("mailed a 6-digit code"), "{}", form.body);
    let code = s.mailed_code("alice", 1).await;
    // A wrong code: refused, nothing kept.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = b.submit(&form, &[("totp", wrong)]).await;
    refused.assert_status(200);
    assert!(refused.body.contains("not valid"), "{}", refused.body);
    assert_eq!(s.devices_of("alice").await, 0);
    let done = b.submit(&refused, &[("totp", &code)]).await;
    assert!(Setup::signed_in(&done), "{}", done.body);
    assert_eq!(s.trusted_devices_of("alice").await, 1);
    let amr = &s.events("login.succeeded").await[0]["amr"];
    assert_eq!(amr, &serde_json::json!(["pwd", "otp"]));
    // Replayed: the pending sign-in is gone, the code does nothing.
    let login = b.get(&s.url("/login")).await;
    let replay = b
        .post(
            &s.url("/login/mfa"),
            &[("_csrf", &login.input("_csrf").unwrap()), ("totp", &code)],
        )
        .await;
    assert!(
        replay.location().is_some_and(|l| l.ends_with("/login")),
        "{replay:?}"
    );
    // Five wrong codes kill it: the sign-in starts over.
    let other = Browser::new().at_ip(BERLIN);
    let mut page = other.follow(&s.password(&other, "bob").await).await;
    for _ in 0..4 {
        page = other.submit(&page, &[("totp", "999999x")]).await;
        page.assert_status(200);
    }
    let dead = other.submit(&page, &[("totp", "999999x")]).await;
    assert!(
        dead.location().is_some_and(|l| l.ends_with("/login")),
        "{dead:?}"
    );
    assert_eq!(s.devices_of("bob").await, 0);
    // Without a verified address: the existing rule, enrol a factor first.
    s.db.execute("UPDATE users SET email_verified = false WHERE username = 'bob'")
        .await;
    let p = s.password(&Browser::new().at_ip(BERLIN), "bob").await;
    assert!(
        p.location()
            .is_some_and(|l| l.contains("/login/mfa/enroll")),
        "{p:?}"
    );
}

async fn impossible_travel_is_flagged_and_challenged(backend: Backend) {
    let s = setup(
        backend,
        r#"{"impossibleTravelKmh": 900, "secondFactorOnImpossibleTravel": true}"#,
    )
    .await;
    let berlin = Browser::new().at_ip(BERLIN);
    assert!(Setup::signed_in(&s.password(&berlin, "bob").await));
    // Sydney minutes later: flagged, and answered with a second factor (bob has no
    // factor of his own: a mailed code).
    let sydney = Browser::new().at_ip(SYDNEY);
    let p = s.password(&sydney, "bob").await;
    assert!(!Setup::signed_in(&p));
    let code = s.mailed_code("bob", 1).await;
    let flagged = s.events("login.impossible_travel").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0]["country"], "AU");
    assert_eq!(flagged[0]["challenged"], true);
    assert!(
        flagged[0]["distance_km"].as_f64().unwrap() > 15_000.0,
        "{flagged:?}"
    );
    // Hamburg after Berlin is 255 km: a minute apart, too fast as well.
    let hamburg = Browser::new().at_ip(HAMBURG);
    assert!(!Setup::signed_in(&s.password(&hamburg, "bob").await));
    // Through the challenge: login.succeeded carries the flag too.
    let form = sydney.follow(&p).await;
    assert!(Setup::signed_in(
        &sydney.submit(&form, &[("totp", &code)]).await
    ));
    let last = s.events("login.succeeded").await.pop().unwrap();
    assert_eq!(last["country"], "AU");
    let speed = &last["impossible_travel"]["speed_kmh"];
    assert!(speed.is_null() || speed.as_f64().unwrap() > 900.0, "{last}");
    assert_eq!(s.events("login.impossible_travel").await.len(), 2);
}

async fn travel_that_is_slow_enough_is_not_flagged(backend: Backend) {
    // Flagged only (no challenge).
    let s = setup(backend, r#"{"impossibleTravelKmh": 900}"#).await;
    let berlin = Browser::new().at_ip(BERLIN);
    assert!(Setup::signed_in(&s.password(&berlin, "bob").await));
    // Two days pass: Berlin to Sydney in 48 hours is about 340 km/h.
    s.db.execute("UPDATE known_devices SET last_seen_at = last_seen_at - 172800")
        .await;
    let sydney = Browser::new().at_ip(SYDNEY);
    assert!(Setup::signed_in(&s.password(&sydney, "bob").await));
    assert_eq!(s.events("login.impossible_travel").await.len(), 0);
    let last = s.events("login.succeeded").await.pop().unwrap();
    assert_eq!(last["country"], "AU");
    assert_eq!(last.get("impossible_travel"), None);
    // Back in Berlin ten minutes later: flagged in the audit log, not challenged.
    assert!(Setup::signed_in(&s.password(&berlin, "bob").await));
    let flagged = s.events("login.impossible_travel").await;
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["challenged"], false);
    assert!(s.events("login.succeeded").await.pop().unwrap()["impossible_travel"].is_object());
}

async fn the_account_page_lists_and_forgets_only_the_users_own_devices(backend: Backend) {
    let s = setup(backend, r#"{"impossibleTravelKmh": 900}"#).await;
    let alice = Browser::new().at_ip(BERLIN);
    assert!(Setup::signed_in(&s.password(&alice, "alice").await));
    let bob =
        Browser::with_user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0").at_ip(BERLIN);
    assert!(Setup::signed_in(&s.password(&bob, "bob").await));
    let page = alice.get(&s.url("/account/sessions")).await;
    page.assert_status(200);
    assert!(page.body.contains("Remembered devices"), "{}", page.body);
    assert!(
        page.body.contains("<dd dir=\"ltr\">DE</dd>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("This browser"), "{}", page.body);
    let id = |p: &Page| p.input("device_id").expect("a forget form");
    let alices = id(&page);
    let bob_page = bob.get(&s.url("/account/sessions")).await;
    assert!(
        bob_page.body.contains("Firefox on Linux"),
        "{}",
        bob_page.body
    );
    let bobs = id(&bob_page);
    let csrf = page.input("_csrf").unwrap();
    let forget = s.url("/account/sessions/devices/forget");
    // Bob's device id posted by alice: not found, nothing changed.
    let refused = alice
        .post(&forget, &[("_csrf", &csrf), ("device_id", &bobs)])
        .await;
    refused.assert_status(404);
    // Without the CSRF token: refused.
    let no_csrf = alice.post(&forget, &[("device_id", &alices)]).await;
    assert!(no_csrf.status.is_client_error(), "{no_csrf:?}");
    // A huge id: not found.
    let huge = "a".repeat(10_000);
    alice
        .post(&forget, &[("_csrf", &csrf), ("device_id", &huge)])
        .await
        .assert_status(404);
    assert_eq!(s.devices_of("alice").await, 1);
    assert_eq!(s.devices_of("bob").await, 1);
    let done = alice
        .post(&forget, &[("_csrf", &csrf), ("device_id", &alices)])
        .await;
    assert_eq!(done.status.as_u16(), 303);
    assert!(done.location().unwrap().contains("done=device-forgotten"));
    assert_eq!(s.devices_of("alice").await, 0);
    assert_eq!(s.devices_of("bob").await, 1);
    assert_eq!(s.events("device.forgotten").await.len(), 1);
    // Forgotten twice: not found.
    alice
        .post(&forget, &[("_csrf", &csrf), ("device_id", &alices)])
        .await
        .assert_status(404);
    // In German too.
    let de = alice.speaking("de").get(&s.url("/account/sessions")).await;
    assert!(de.body.contains("Gespeicherte Geräte"), "{}", de.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_missing_or_broken_geoip_database() {
    let db = TestDb::migrated(Backend::Sqlite).await;
    db.write_config("config.yaml", &db.tenant_config(&[("main", "")]));
    let missing = db
        .write_config("placeholder", "")
        .with_file_name("missing.mmdb");
    let broken = db.write_config("broken.mmdb", "not a MaxMind database");
    for (path, name) in [(&missing, "missing.mmdb"), (&broken, "broken.mmdb")] {
        let out = db
            .cli()
            .env("GATEHOUSE_GEOIP_DATABASE", path.display().to_string())
            .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
            .run()
            .await;
        assert!(!out.status.success(), "{out}");
        assert!(
            out.stderr.contains("geoip.database") && out.stderr.contains(name),
            "{out}"
        );
    }
    // The same file built right is accepted (check with the library: no server needed).
    let good = db.write_config("good.mmdb", "");
    std::fs::write(&good, geoip_database()).unwrap();
    assert!(authserver::devices::GeoIp::open(&good).is_ok());
}
