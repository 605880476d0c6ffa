//! `authserver migrate`: idempotent, serialized across concurrent runners, and the only
//! thing that migrates PostgreSQL (`serve` waits, not ready, until it has run).

use std::time::Instant;

use reqwest::StatusCode;

use crate::harness::{Backend, TestDb};

/// Names of the migrations the binary embeds for PostgreSQL (`0001_foundation`, …).
fn embedded_postgres_migrations() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".sql").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// `_sqlx_migrations` as `version|success|installed_on|checksum`, to compare before/after.
async fn migration_rows(db: &TestDb) -> Vec<String> {
    let hex = match db.backend {
        Backend::Postgres => "encode(checksum, 'hex')",
        Backend::Sqlite => "hex(checksum)",
    };
    db.rows(&format!(
        "SELECT CAST(version AS TEXT) || '|' || CAST(success AS TEXT) || '|' || \
         CAST(installed_on AS TEXT) || '|' || {hex} FROM _sqlx_migrations ORDER BY version"
    ))
    .await
}

on_both_backends!(migrate_twice_reports_schema_up_to_date_and_changes_nothing);

async fn migrate_twice_reports_schema_up_to_date_and_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = db.cli().args(["migrate"]).run().await;
    first.assert_success();
    assert!(first.stdout.contains("applied 0001_foundation"), "{first}");
    assert!(first.stdout.contains("schema up to date"), "{first}");
    let before = migration_rows(&db).await;
    assert!(!before.is_empty());

    let second = db.cli().args(["migrate"]).run().await;
    second.assert_success();
    assert_eq!(second.stdout.trim(), "schema up to date", "{second}");
    assert_eq!(
        migration_rows(&db).await,
        before,
        "second run changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_migrations_on_postgres_leave_one_consistent_schema() {
    let db = TestDb::new(Backend::Postgres).await;
    let cli = db.cli().args(["migrate"]);
    let (a, b, c) = tokio::join!(cli.run(), cli.run(), cli.run());
    let outputs = [&a, &b, &c];
    for out in outputs {
        out.assert_success();
        assert!(out.stdout.contains("schema up to date"), "{out}");
    }
    // Each migration was applied by exactly one runner; the others found it done.
    let expected = embedded_postgres_migrations();
    for name in &expected {
        let appliers = outputs
            .iter()
            .filter(|o| o.stdout.contains(&format!("applied {name}")))
            .count();
        assert_eq!(
            appliers, 1,
            "{name} applied by {appliers} runners: {a}\n{b}\n{c}"
        );
    }
    let n = i64::try_from(expected.len()).unwrap();
    assert_eq!(db.scalar("SELECT count(*) FROM _sqlx_migrations").await, n);
    assert_eq!(
        db.scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .await,
        n
    );
    for table in ["tenants", "signing_keys"] {
        assert!(db.has_table(table).await, "table {table} exists");
    }
    // The change-notification triggers exist once each.
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM pg_trigger \
             WHERE tgname IN ('tenants_changed', 'signing_keys_changed')"
        )
        .await,
        2
    );
    // And the schema is usable: keys can be created on it.
    db.cli()
        .args(["keys", "generate"])
        .run()
        .await
        .assert_success();
    assert_eq!(db.scalar("SELECT count(*) FROM signing_keys").await, 3);
}

/// With an operations listener the reason (here: which migration is missing) is for
/// operators only; the public port still answers 503 for load balancers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_ops_listener_only_it_says_why_serve_is_not_ready() {
    let db = TestDb::new(Backend::Postgres).await;
    let ops = crate::harness::free_port();
    let server = db
        .cli()
        .env("GATEHOUSE_SERVER_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .spawn(db.port)
        .await;
    let (status, _, body) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "error": "temporarily_unavailable"})
    );
    let r = reqwest::get(format!("http://127.0.0.1:{ops}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("missing migration(s) 0001_foundation")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_postgres_schema_behind_is_alive_but_not_ready_until_migrated() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut server = db.cli().spawn(db.port).await;

    let (status, _, body) = server.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        let (status, _, body) = server.get_json("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "not_ready");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            reason.contains("missing migration(s) 0001_foundation"),
            "{reason}"
        );
        assert!(reason.contains("authserver migrate"), "{reason}");
    }
    assert!(
        !db.has_table("_sqlx_migrations").await && !db.has_table("tenants").await,
        "serve must not migrate PostgreSQL"
    );
    let said = |logs: &str| logs.matches("database schema is behind").count();
    assert_eq!(said(&server.logs()), 1, "logged once:\n{}", server.logs());

    db.cli().args(["migrate"]).run().await.assert_success();
    let started = Instant::now();
    server.wait_ready().await;
    println!(
        "ready {} ms after `migrate` finished, without a restart",
        started.elapsed().as_millis()
    );
    assert_eq!(server.kids("/jwks").await.len(), 3);
    assert_eq!(said(&server.logs()), 1, "still once:\n{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_refuse_a_postgres_schema_behind() {
    let db = TestDb::new(Backend::Postgres).await;
    let out = db.cli().args(["keys", "generate"]).run().await;
    out.assert_code(1)
        .assert_stderr_contains("missing migration(s) 0001_foundation")
        .assert_stderr_contains("run `authserver migrate` first");
    assert!(!db.has_table("_sqlx_migrations").await && !db.has_table("tenants").await);
}

/// The schema of `db` after all migrations, as comparable lines: `table.column null|not
/// null` and `index table.name`. Indexes that back a constraint (PostgreSQL's `_pkey`
/// and `_key`, SQLite's `sqlite_autoindex_*`) are named by the database, not by us, and
/// left out; types differ by design (TEXT vs VARCHAR, BLOB vs BYTEA) and are not
/// compared. A SQLite PRIMARY KEY column counts as NOT NULL, as it is on PostgreSQL.
async fn schema(db: &TestDb) -> std::collections::BTreeSet<String> {
    let (columns, indexes) = match db.backend {
        Backend::Postgres => (
            "SELECT table_name || '.' || column_name || ' ' || \
             CASE is_nullable WHEN 'YES' THEN 'null' ELSE 'not null' END \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
            "SELECT 'index ' || i.tablename || '.' || i.indexname FROM pg_indexes i \
             WHERE i.schemaname = current_schema() AND i.tablename <> '_sqlx_migrations' \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        ),
        Backend::Sqlite => (
            "SELECT m.name || '.' || p.name || ' ' || \
             CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN 'not null' ELSE 'null' END \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '_sqlx_migrations'",
            "SELECT 'index ' || tbl_name || '.' || name FROM sqlite_master \
             WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%' \
             AND tbl_name <> '_sqlx_migrations'",
        ),
    };
    let mut out: std::collections::BTreeSet<String> = db.rows(columns).await.into_iter().collect();
    out.extend(db.rows(indexes).await);
    out
}

/// Both backends run the same queries (the store's portable SQL), so after all
/// migrations they must have the same tables, columns, nullability and indexes: a
/// migration written for one and forgotten (or written differently) for the other fails
/// here instead of in production on the other backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_sqlite_schemas_stay_equivalent() {
    let (pg, lite) = tokio::join!(
        TestDb::migrated(Backend::Postgres),
        TestDb::migrated(Backend::Sqlite)
    );
    let (pg, mut lite) = (schema(&pg).await, schema(&lite).await);
    // Backend-specific by design: SQLite has no LISTEN/NOTIFY, so writers bump this
    // counter (by triggers) and serving processes poll it.
    lite.retain(|line| !line.starts_with("change_counter.") && !line.contains(" change_counter."));
    assert!(pg.len() > 50, "introspection found too little: {pg:?}");
    assert!(
        pg.iter().any(|l| l.starts_with("index ")) && lite.iter().any(|l| l.starts_with("index ")),
        "no index found: {pg:?}"
    );
    let only_pg: Vec<_> = pg.difference(&lite).collect();
    let only_lite: Vec<_> = lite.difference(&pg).collect();
    assert!(
        only_pg.is_empty() && only_lite.is_empty(),
        "schemas differ\n  only on PostgreSQL: {only_pg:#?}\n  only on SQLite: {only_lite:#?}"
    );
}
