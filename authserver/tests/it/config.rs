//! Bad configuration: `check-config` and `serve` report every problem with the field's
//! path, exit 2, and touch no database.

use crate::harness::{Backend, Cli, Output, TestDb, free_port, new_encryption_key};

/// `check-config --config FILE` with an otherwise valid production environment; also
/// asserts that the (SQLite) database it names was never created.
async fn check_config(yaml: &str, extra_env: &[(&str, &str)]) -> Output {
    let db = TestDb::new(Backend::Sqlite).await;
    let path = db.write_config("check.yaml", yaml);
    let mut cli = db
        .cli()
        .args(["check-config", "--config", &path.display().to_string()]);
    for (k, v) in extra_env {
        cli = cli.env(k, *v);
    }
    let out = cli.run().await;
    assert!(
        !db.sqlite_path().exists(),
        "check-config touched the database"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
    out
}

#[tokio::test]
async fn check_config_accepts_a_valid_file() {
    let out = check_config(
        "server:\n  listen: 127.0.0.1:9000\nkeys:\n  algorithms: [ES256]\n",
        &[],
    )
    .await;
    out.assert_success();
    assert!(out.stdout.contains("configuration is valid"), "{out}");
}

#[tokio::test]
async fn check_config_reports_malformed_yaml() {
    let out = check_config("server: [\n  listen\n", &[]).await;
    out.assert_code(2)
        .assert_stderr_contains("invalid YAML")
        .assert_stderr_contains("line ")
        .assert_stderr_contains("configuration is invalid");
}

#[tokio::test]
async fn check_config_reports_an_unknown_field_with_its_path() {
    let out = check_config("server:\n  lisen: 127.0.0.1:9000\n", &[]).await;
    out.assert_code(2)
        .assert_stderr_contains("server.lisen: unknown field `lisen`");
}

#[tokio::test]
async fn check_config_reports_an_invalid_listen_address() {
    let out = check_config("server:\n  listen: x\n", &[]).await;
    out.assert_code(2)
        .assert_stderr_contains(r#"server.listen: invalid socket address "x""#);
    // The same check applies to the environment override.
    let out = check_config("", &[("GATEHOUSE_SERVER_LISTEN", "x")]).await;
    out.assert_code(2)
        .assert_stderr_contains(r#"server.listen: invalid socket address "x""#);
}

#[tokio::test]
async fn check_config_reports_every_problem_at_once() {
    let yaml = "server:\n  listen: x\nkeys:\n  rsa_bits: 1024\nmetrics:\n  prefix: bad-prefix\n";
    let out = check_config(yaml, &[("ENCRYPTION_KEY", "abc")]).await;
    out.assert_code(2)
        .assert_stderr_contains(r#"server.listen: invalid socket address "x""#)
        .assert_stderr_contains("keys.rsa_bits: unsupported RSA key size 1024")
        .assert_stderr_contains(r#"metrics.prefix: invalid Prometheus metric prefix "bad-prefix""#)
        .assert_stderr_contains("encryption.key: ENCRYPTION_KEY must be 64 hexadecimal")
        .assert_stderr_contains("configuration is invalid (4 problem(s))");
}

#[tokio::test]
async fn check_config_reports_a_promotion_delay_shorter_than_the_jwks_max_age() {
    let out = check_config("keys:\n  promotion_delay_seconds: 300\n", &[]).await;
    out.assert_code(2)
        .assert_stderr_contains(
            "keys.promotion_delay_seconds: 300 s is shorter than the JWKS max-age of 900 s",
        )
        .assert_stderr_contains("(here keys.overlap_window_seconds is 7200)");
    // The same settings agree once the overlap window (and the max-age with it) shrinks.
    let out = check_config(
        "keys:\n  promotion_delay_seconds: 300\n  overlap_window_seconds: 2400\n",
        &[],
    )
    .await;
    out.assert_success();
}

/// Runs `serve` (expecting it to exit by itself) and asserts nothing was written.
async fn serve_refuses(db: &TestDb, cli: Cli) -> Output {
    let out = cli
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .run()
        .await;
    assert_eq!(db.scalar("SELECT count(*) FROM tenants").await, 0);
    assert_eq!(db.scalar("SELECT count(*) FROM signing_keys").await, 0);
    out
}

on_both_backends!(
    serve_without_an_encryption_key_refuses_to_start,
    serve_with_a_malformed_encryption_key_refuses_to_start,
    serve_refuses_an_http_issuer_outside_dev,
);

async fn serve_without_an_encryption_key_refuses_to_start(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let out = serve_refuses(&db, db.cli().env_remove("ENCRYPTION_KEY")).await;
    out.assert_code(2)
        .assert_stderr_contains("encryption.key: ENCRYPTION_KEY is not set");
}

async fn serve_with_a_malformed_encryption_key_refuses_to_start(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let short = &new_encryption_key()[..63];
    let not_hex = "g".repeat(64);
    for (bad, got) in [
        (short, "got 63 characters"),
        (not_hex.as_str(), "got a character that is not hexadecimal"),
    ] {
        let out = serve_refuses(&db, db.cli().env("ENCRYPTION_KEY", bad)).await;
        out.assert_code(2)
            .assert_stderr_contains(
                "encryption.key: ENCRYPTION_KEY must be 64 hexadecimal characters (32 bytes)",
            )
            .assert_stderr_contains(got);
        assert!(!out.stderr.contains(bad), "the key is never printed: {out}");
    }
}

async fn serve_refuses_an_http_issuer_outside_dev(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let path = db.write_config(
        "http.yaml",
        "tenants:\n  - id: plain\n    issuer: http://id.example.com\n",
    );
    let cli = db.cli().args(["--config", &path.display().to_string()]);
    let out = serve_refuses(&db, cli).await;
    out.assert_code(2).assert_stderr_contains(
        r#"tenants[0].issuer: issuer must use https (http is allowed for localhost only): "http://id.example.com""#,
    );
}
