//! `authserver purge`: expired rows go, live ones stay, per target and per tenant, in
//! batches of any size; `--only` and unknown targets. Rows are inserted with SQL, as the
//! protocol endpoints would have left them.

use crate::harness::jose::now;
use crate::harness::{Backend, TestDb};

on_both_backends!(
    purge_removes_expired_rows_of_the_chosen_targets_only,
    tenant_and_batch_size_options,
    unknown_targets_and_bad_options_exit_2_and_delete_nothing,
    batches_and_pauses_follow_the_flags_and_the_settings,
    a_pause_ends_at_the_deadline,
);

/// Expired rows per table and tenant.
const EXPIRED: usize = 3;
const TENANTS: [&str; 2] = ["main", "other"];

/// Inserts, for each tenant, `EXPIRED` expired rows and one live row into every
/// purgeable table (audit: 100 days old vs. an hour old; the default retention is 90
/// days; devices: all last seen 200 days ago, the default retention is 180 days, and
/// the live one still trusted). Each row's id says which it is.
async fn seed(db: &TestDb) {
    let now = now();
    let day = 86_400;
    let mut sql = Vec::new();
    for t in TENANTS {
        // Browser sessions, authorization requests, login_throttles rows and grants
        // belong to a tenant row.
        db.rows(&format!(
            "INSERT INTO tenants (id, issuer, display_name, settings, created_at, updated_at) \
             VALUES ('{t}', 'https://purge.example/{t}', '{t}', '{{}}', {now}, {now}) \
             ON CONFLICT (id) DO NOTHING RETURNING id"
        ))
        .await;
        sql.push(format!(
            "INSERT INTO users (tenant_id, user_id, username, username_normalized, created_at, \
             updated_at) VALUES ('{t}', 'u-{t}', 'u', 'u', {now}, {now})"
        ));
        let grant = |id: &str, expires: i64| {
            format!(
                "INSERT INTO grants (tenant_id, grant_id, client_id, user_id, scope, auth_time, \
                 created_at, expires_at) VALUES ('{t}', '{id}', 'c', 'u-{t}', 'openid', {now}, \
                 {now}, {expires})"
            )
        };
        sql.push(grant(&format!("live-{t}"), now + 600));
        let mut rows = vec![("live".to_owned(), now + 600, now - 3600)];
        for i in 0..EXPIRED {
            rows.push((format!("expired{i}"), now - 10, now - 100 * day));
        }
        for (id, expires, audit_at) in rows {
            let id = format!("{id}-{t}");
            sql.push(format!(
                "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
                 VALUES ('{t}', '{id}', {expires}, {})",
                now - 1000
            ));
            sql.push(format!(
                "INSERT INTO assertion_jti (tenant_id, client_id, jti, expires_at) \
                 VALUES ('{t}', 'client', '{id}', {expires})"
            ));
            sql.push(format!(
                "INSERT INTO dpop_jti (tenant_id, jti, expires_at) VALUES ('{t}', '{id}', {expires})"
            ));
            sql.push(format!(
                "INSERT INTO dpop_nonces (tenant_id, nonce, expires_at) \
                 VALUES ('{t}', '{id}', {expires})"
            ));
            if id.starts_with("expired") {
                sql.push(grant(&id, expires));
            }
            sql.push(format!(
                "INSERT INTO authorization_codes (tenant_id, code_hash, grant_id, client_id, \
                 redirect_uri, created_at, expires_at) \
                 VALUES ('{t}', '{id}', 'live-{t}', 'c', 'https://c/cb', {now}, {expires})"
            ));
            sql.push(format!(
                "INSERT INTO refresh_tokens (tenant_id, token_hash, grant_id, created_at, expires_at) \
                 VALUES ('{t}', '{id}', 'live-{t}', {now}, {expires})"
            ));
            sql.push(format!(
                "INSERT INTO grant_access_tokens (tenant_id, jti, grant_id, expires_at) \
                 VALUES ('{t}', '{id}', 'live-{t}', {expires})"
            ));
            sql.push(format!(
                "INSERT INTO browser_sessions (tenant_id, id_hash, created_at, last_seen_at, \
                 expires_at) VALUES ('{t}', '{id}', {now}, {now}, {expires})"
            ));
            sql.push(format!(
                "INSERT INTO authorization_requests (tenant_id, id_hash, client_id, params, \
                 created_at, expires_at) VALUES ('{t}', '{id}', 'client', '{{}}', {now}, {expires})"
            ));
            sql.push(format!(
                "INSERT INTO login_throttles (tenant_id, throttle_key, failures, \
                 window_started_at, locked_until, expires_at) \
                 VALUES ('{t}', '{id}', 1, {}, NULL, {expires})",
                now - 1000
            ));
            sql.push(format!(
                "INSERT INTO audit_events (tenant_id, at, event, details) \
                 VALUES ('{t}', {audit_at}, '{id}', '{{}}')"
            ));
            // Trust that ended long ago, or never was; the live device is trusted still.
            let trusted_until = if id.starts_with("live") {
                (now + 10 * day).to_string()
            } else if id.starts_with("expired0") {
                "NULL".to_owned()
            } else {
                (now - 190 * day).to_string()
            };
            sql.push(format!(
                "INSERT INTO known_devices (tenant_id, user_id, device_hash, first_seen_at, \
                 last_seen_at, trusted_until) VALUES ('{t}', 'u-{t}', '{id}', {}, {}, {trusted_until})",
                now - 300 * day,
                now - 200 * day
            ));
        }
    }
    for s in sql {
        db.rows(&format!("{s} RETURNING tenant_id")).await;
    }
}

/// Every purgeable row as `target|row id`, sorted.
async fn state(db: &TestDb) -> Vec<String> {
    let mut rows = Vec::new();
    for (target, sql) in [
        ("jti", "SELECT jti FROM revoked_tokens"),
        ("assertion-jti", "SELECT jti FROM assertion_jti"),
        ("dpop-jti", "SELECT jti FROM dpop_jti"),
        ("dpop-nonces", "SELECT nonce FROM dpop_nonces"),
        ("sessions", "SELECT id_hash FROM browser_sessions"),
        ("par-requests", "SELECT id_hash FROM authorization_requests"),
        ("rate-limits", "SELECT throttle_key FROM login_throttles"),
        (
            "authorization-codes",
            "SELECT code_hash FROM authorization_codes",
        ),
        ("refresh-tokens", "SELECT token_hash FROM refresh_tokens"),
        ("refresh-tokens", "SELECT grant_id FROM grants"),
        ("refresh-tokens", "SELECT jti FROM grant_access_tokens"),
        ("devices", "SELECT device_hash FROM known_devices"),
        (
            "audit",
            "SELECT event FROM audit_events WHERE event LIKE '%-main' OR event LIKE '%-other'",
        ),
    ] {
        rows.extend(
            db.rows(sql)
                .await
                .into_iter()
                .map(|r| format!("{target}|{r}")),
        );
    }
    rows.sort();
    rows
}

/// `state` as it should be once `targets` were purged for `tenants`.
fn expected(all: &[String], targets: &[&str], tenants: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|r| {
            let (target, id) = r.split_once('|').unwrap();
            let purged = id.starts_with("expired")
                && targets.contains(&target)
                && tenants.iter().any(|t| id.ends_with(&format!("-{t}")));
            !purged
        })
        .cloned()
        .collect()
}

const ALL: [&str; 11] = [
    "dpop-nonces",
    "dpop-jti",
    "assertion-jti",
    "jti",
    "authorization-codes",
    "refresh-tokens",
    "sessions",
    "par-requests",
    "rate-limits",
    "audit",
    "devices",
];

/// Purgeable rows per tenant and expiry class: one per table, three tables for
/// refresh-tokens (refresh tokens, grants, access-token records).
const TABLES: usize = 13;

/// One line of purge's stdout: `target=… rows=… batches=… paused_ms=… elapsed_ms=…`,
/// then ` incomplete` or ` error` when the target did not complete.
#[derive(Debug)]
struct Line {
    target: String,
    rows: u64,
    batches: u64,
    paused_ms: u64,
    elapsed_ms: u64,
    /// `None` for a complete target.
    suffix: Option<String>,
}

fn lines(stdout: &str) -> Vec<Line> {
    stdout
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let mut field = |name: &str| {
                let part = parts
                    .next()
                    .unwrap_or_else(|| panic!("{name} missing: {l}"));
                part.strip_prefix(&format!("{name}="))
                    .unwrap_or_else(|| panic!("{name} expected: {l}"))
                    .to_owned()
            };
            let target = field("target");
            let rows = field("rows").parse().unwrap();
            let batches = field("batches").parse().unwrap();
            let paused_ms = field("paused_ms").parse().unwrap();
            let elapsed_ms = field("elapsed_ms").parse().unwrap();
            let suffix = parts.next().map(str::to_owned);
            assert_eq!(parts.next(), None, "{l}");
            Line {
                target,
                rows,
                batches,
                paused_ms,
                elapsed_ms,
                suffix,
            }
        })
        .collect()
}

/// The `target=… rows=…` pairs of purge's stdout, in order; every target complete.
fn report(stdout: &str) -> Vec<(String, u64)> {
    lines(stdout)
        .into_iter()
        .map(|l| {
            assert_eq!(l.suffix, None, "a complete target has nothing more: {l:?}");
            (l.target, l.rows)
        })
        .collect()
}

fn rows(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

async fn purge_removes_expired_rows_of_the_chosen_targets_only(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    seed(&db).await;
    let seeded = state(&db).await;
    assert_eq!(seeded.len(), TABLES * 2 * (EXPIRED + 1));
    let per_target = u64::try_from(EXPIRED * TENANTS.len()).unwrap();

    let out = db
        .cli()
        .args(["purge", "--only", "jti,dpop-jti"])
        .run()
        .await;
    out.assert_success();
    assert_eq!(
        report(&out.stdout),
        rows(&[("jti", per_target), ("dpop-jti", per_target)])
    );
    assert_eq!(
        state(&db).await,
        expected(&seeded, &["jti", "dpop-jti"], &TENANTS)
    );

    let out = db.cli().args(["purge"]).run().await;
    out.assert_success();
    assert_eq!(
        report(&out.stdout),
        rows(&[
            ("dpop-nonces", per_target),
            ("dpop-jti", 0),
            ("assertion-jti", per_target),
            ("jti", 0),
            ("authorization-codes", per_target),
            ("refresh-tokens", 3 * per_target),
            ("sessions", per_target),
            ("par-requests", per_target),
            ("rate-limits", per_target),
            ("audit", per_target),
            ("email-outbox", 0),
            ("email-tokens", 0),
            ("devices", per_target),
        ])
    );
    let left = state(&db).await;
    assert_eq!(left, expected(&seeded, &ALL, &TENANTS));
    assert!(left.iter().all(|r| r.contains("|live-")), "{left:?}");
    assert_eq!(left.len(), TABLES * 2);
}

async fn tenant_and_batch_size_options(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    seed(&db).await;
    let seeded = state(&db).await;
    let per_tenant = u64::try_from(EXPIRED).unwrap();

    // A long audit and device retention keeps the 100-day-old events and the devices
    // last seen 200 days ago.
    let out = db
        .cli()
        .env("GATEHOUSE_AUDIT_RETENTION_DAYS", "365")
        .env("GATEHOUSE_PURGE_DEVICE_RETENTION_DAYS", "365")
        .args(["purge", "--tenant", "other"])
        .run()
        .await;
    out.assert_success();
    assert_eq!(
        report(&out.stdout),
        rows(&[
            ("dpop-nonces", per_tenant),
            ("dpop-jti", per_tenant),
            ("assertion-jti", per_tenant),
            ("jti", per_tenant),
            ("authorization-codes", per_tenant),
            ("refresh-tokens", 3 * per_tenant),
            ("sessions", per_tenant),
            ("par-requests", per_tenant),
            ("rate-limits", per_tenant),
            ("audit", 0),
            ("email-outbox", 0),
            ("email-tokens", 0),
            ("devices", 0),
        ])
    );
    assert_eq!(state(&db).await, expected(&seeded, &ALL[..9], &["other"]));

    // One row per batch, no deadline: everything expired still goes.
    let out = db
        .cli()
        .args(["purge", "--batch-size", "1", "--timeout", "0"])
        .run()
        .await;
    out.assert_success();
    assert_eq!(
        report(&out.stdout),
        rows(&[
            ("dpop-nonces", per_tenant),
            ("dpop-jti", per_tenant),
            ("assertion-jti", per_tenant),
            ("jti", per_tenant),
            ("authorization-codes", per_tenant),
            ("refresh-tokens", 3 * per_tenant),
            ("sessions", per_tenant),
            ("par-requests", per_tenant),
            ("rate-limits", per_tenant),
            ("audit", 2 * per_tenant),
            ("email-outbox", 0),
            ("email-tokens", 0),
            ("devices", 2 * per_tenant),
        ])
    );
    assert_eq!(state(&db).await, expected(&seeded, &ALL, &TENANTS));
    // Nothing left: a second run purges nothing and succeeds.
    let out = db.cli().args(["purge", "--timeout", "90s"]).run().await;
    out.assert_success();
    assert!(report(&out.stdout).iter().all(|(_, n)| *n == 0), "{out}");
}

async fn unknown_targets_and_bad_options_exit_2_and_delete_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    seed(&db).await;
    let seeded = state(&db).await;
    let out = db.cli().args(["purge", "--only", "jti,tokens"]).run().await;
    out.assert_code(2).assert_stderr_contains(
        "unknown purge target \"tokens\"; valid targets: dpop-nonces, dpop-jti, assertion-jti, jti, authorization-codes, refresh-tokens, sessions, par-requests, rate-limits, audit",
    );
    assert_eq!(out.stdout, "");
    for args in [
        &["--timeout", "1w"][..],
        &["--timeout", "soon"],
        &["--batch-size", "0"],
        &["--batch-size", "100001"],
        &["--batch-pause-ms", "60001"],
        &["--batch-pause-ms", "-1"],
    ] {
        let out = db
            .cli()
            .args(["purge"])
            .args(args.iter().copied())
            .run()
            .await;
        out.assert_code(2);
        assert_eq!(out.stdout, "", "{args:?}");
    }
    assert_eq!(state(&db).await, seeded);
}

/// Inserts `n` expired rows into `revoked_tokens` (target `jti`) of tenant `main`.
async fn seed_expired_jti(db: &TestDb, n: usize) {
    let now = now();
    db.rows(&format!(
        "INSERT INTO tenants (id, issuer, display_name, settings, created_at, updated_at) \
         VALUES ('main', 'https://purge.example/main', 'main', '{{}}', {now}, {now}) \
         ON CONFLICT (id) DO NOTHING RETURNING id"
    ))
    .await;
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
         SELECT 'main', 'expired-' || i, {expires}, {revoked} FROM n",
        expires = now - 10,
        revoked = now - 1000,
    ))
    .await;
}

/// Issue 16 item 4: a purge runs in bounded batches with a pause after each full one.
/// `batches` counts the `DELETE` rounds: N rows in batches of B take ⌈N/B⌉ rounds when
/// B does not divide N, and one more (which finds nothing) when it does; every round but
/// the last is followed by a pause. Counted from the report, never from timing; the pause
/// shows as a lower bound on the time spent paused.
async fn batches_and_pauses_follow_the_flags_and_the_settings(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let run = |cli: crate::harness::Cli| async move {
        let out = cli.run().await;
        out.assert_success();
        let mut l = lines(&out.stdout);
        assert_eq!(l.len(), 1, "{out}");
        l.pop().unwrap()
    };

    // Flags: 25 rows, 10 per batch, 150 ms between batches.
    seed_expired_jti(&db, 25).await;
    let l = run(db.cli().args([
        "purge",
        "--only",
        "jti",
        "--batch-size",
        "10",
        "--batch-pause-ms",
        "150",
    ]))
    .await;
    assert_eq!(
        (l.target.as_str(), l.rows, l.batches),
        ("jti", 25, 3),
        "{l:?}"
    );
    assert!(l.paused_ms >= 2 * 150, "two pauses of 150 ms: {l:?}");
    assert!(l.elapsed_ms >= l.paused_ms, "{l:?}");

    // A batch size that divides the rows: one more round finds nothing.
    seed_expired_jti(&db, 20).await;
    let l = run(db.cli().args([
        "purge",
        "--only",
        "jti",
        "--batch-size",
        "10",
        "--batch-pause-ms",
        "0",
    ]))
    .await;
    assert_eq!((l.rows, l.batches, l.paused_ms), (20, 3, 0), "{l:?}");

    // The settings (here from the environment) when no flag is given: 7 per batch.
    seed_expired_jti(&db, 25).await;
    let l = run(db
        .cli()
        .env("GATEHOUSE_PURGE_BATCH_SIZE", "7")
        .env("GATEHOUSE_PURGE_BATCH_PAUSE_MS", "100")
        .args(["purge", "--only", "jti"]))
    .await;
    assert_eq!((l.rows, l.batches), (25, 4), "{l:?}");
    assert!(l.paused_ms >= 3 * 100, "three pauses of 100 ms: {l:?}");

    // A flag wins over the settings.
    seed_expired_jti(&db, 25).await;
    let l = run(db.cli().env("GATEHOUSE_PURGE_BATCH_SIZE", "7").args([
        "purge",
        "--only",
        "jti",
        "--batch-size",
        "25",
        "--batch-pause-ms",
        "0",
    ]))
    .await;
    assert_eq!((l.rows, l.batches), (25, 2), "{l:?}");
    assert!(db.rows("SELECT jti FROM revoked_tokens").await.is_empty());
}

/// A pause never outlasts the deadline: the run stops there, reports the target
/// incomplete and exits 1; the next run deletes the rest.
async fn a_pause_ends_at_the_deadline(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    seed_expired_jti(&db, 3).await;
    let started = std::time::Instant::now();
    let out = db
        .cli()
        .args([
            "purge",
            "--only",
            "jti",
            "--batch-size",
            "1",
            "--batch-pause-ms",
            "60000",
            "--timeout",
            "1s",
        ])
        .run()
        .await;
    out.assert_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the minute-long pause was cut at the deadline: {out}"
    );
    let l = lines(&out.stdout);
    assert_eq!(l.len(), 1, "{out}");
    assert_eq!((l[0].rows, l[0].batches), (1, 1), "{out}");
    assert_eq!(l[0].suffix.as_deref(), Some("incomplete"), "{out}");
    assert_eq!(db.rows("SELECT jti FROM revoked_tokens").await.len(), 2);
    let out = db.cli().args(["purge", "--only", "jti"]).run().await;
    out.assert_success();
    assert_eq!(report(&out.stdout), rows(&[("jti", 2)]));
}
