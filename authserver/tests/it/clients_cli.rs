//! `authserver clients create|list|delete|rotate-secret`: the bootstrap CLI working
//! directly on the database. The secret is printed once, bad input exits 2 and changes
//! nothing, a rotated secret overlaps with the previous one.

use serde_json::Value;

use crate::harness::oauth::{Creds, create_client, token};
use crate::harness::{Backend, Cli, TestDb};

on_both_backends!(
    create_prints_the_client_id_and_the_secret_once,
    bad_input_exits_2_and_changes_nothing,
    list_rotate_secret_and_delete,
);

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn create_prints_the_client_id_and_the_secret_once(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let out = db
        .cli()
        .args(["clients", "create", "--id", "billing"])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let secret = v["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    assert!(is_base64url(&secret), "{secret}");
    assert_eq!(
        out.stdout,
        format!("{{\"client_id\":\"billing\",\"client_secret\":\"{secret}\"}}\n"),
        "stdout is exactly the JSON object"
    );
    assert!(!out.stderr.contains(&secret), "the secret went to the log");
    // Only a keyed digest is stored.
    let stored = db.rows("SELECT spec FROM clients").await.join("\n");
    assert!(!stored.contains(&secret));
    assert_eq!(db.scalar("SELECT count(*) FROM client_secrets").await, 1);

    // Every documented option.
    let out = db
        .cli()
        .args([
            "clients",
            "create",
            "--id",
            "portal",
            "--tenant",
            "main",
            "--grant-types",
            "authorization_code,refresh_token",
            "--redirect-uri",
            "https://portal.example.com/cb",
            "--redirect-uri",
            "http://127.0.0.1:3000/cb",
            "--post-logout-redirect-uri",
            "https://portal.example.com/bye",
            "--scopes",
            "openid profile",
            "--audiences",
            "urn:a urn:b",
            "--auth-method",
            "client_secret_post",
        ])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert_eq!(v["client_secret"].as_str().unwrap().len(), 43);

    // Public clients get no secret at all.
    let out = db
        .cli()
        .args([
            "clients",
            "create",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/cb",
        ])
        .run()
        .await;
    out.assert_success();
    assert_eq!(out.stdout, "{\"client_id\":\"spa\"}\n");
    assert_eq!(db.scalar("SELECT count(*) FROM client_secrets").await, 2);
}

async fn bad_input_exits_2_and_changes_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_client(&db, "billing", &[]).await;
    let before = db.snapshot().await;
    let audit_before = db.audit().await;
    let cases: [(&[&str], &str); 7] = [
        (&["--id", "billing"], "client \"billing\" already exists"),
        (&["--id", "x", "--grant-types", "password"], "--grant-types"),
        (&["--id", "x", "--auth-method", "magic"], "--auth-method"),
        (
            &[
                "--id",
                "x",
                "--public",
                "--redirect-uri",
                "http://app.example.com/cb",
            ],
            "redirect_uris",
        ),
        (&["--id", "x", "--public"], "grant_types"),
        (&["--id", "has space"], "client_id"),
        (
            &["--id", "x", "--access-token-alg", "HS256"],
            "--access-token-alg",
        ),
    ];
    for (args, message) in cases {
        let out = db
            .cli()
            .args(["clients", "create"])
            .args(args.iter().copied())
            .run()
            .await;
        out.assert_code(2).assert_stderr_contains(message);
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(db.snapshot().await, before, "{args:?}");
    }
    let out = db
        .cli()
        .args(["clients", "create", "--id", "x", "--tenant", "nope"])
        .run()
        .await;
    assert!(!out.status.success(), "{out}");
    out.assert_stderr_contains("tenant \"nope\" does not exist");
    assert_eq!(db.snapshot().await, before);
    assert_eq!(db.audit().await, audit_before);
}

#[allow(clippy::too_many_lines)] // the life of one client, command by command
async fn list_rotate_secret_and_delete(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let old = create_client(&db, "billing", &["--scopes", "read"]).await;
    create_client(
        &db,
        "spa",
        &["--public", "--redirect-uri", "http://127.0.0.1/cb"],
    )
    .await;

    let out = db.cli().args(["clients", "list"]).run().await;
    out.assert_success();
    let listed: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = listed
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["billing", "spa"]);
    assert_eq!(listed[0]["tenant"], "main");
    assert_eq!(listed[0]["auth_method"], "client_secret_basic");
    assert_eq!(listed[0]["scopes"], serde_json::json!(["read"]));
    assert_eq!(listed[1]["client_type"], "public");
    assert!(!out.stdout.contains(old.secret()), "list shows no secret");

    // rotate-secret: the new secret is printed; the old one keeps working in the overlap.
    token(&server, &old, &[]).await.ok();
    let out = db
        .cli()
        .args([
            "clients",
            "rotate-secret",
            "--id",
            "billing",
            "--overlap-seconds",
            "3600",
        ])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["client_id"], "billing");
    assert_eq!(v["previous_secret_valid_for_seconds"], 3600);
    let new = old.with_secret(v["client_secret"].as_str().unwrap());
    assert_eq!(new.secret().len(), 43);
    assert_ne!(new.secret, old.secret);
    token(&server, &old, &[]).await.ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while token(&server, &new, &[]).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "new secret not accepted"
        );
        tokio::time::sleep(crate::harness::POLL).await;
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM client_secrets WHERE client_id = 'billing'")
            .await,
        2
    );
    // A public client has no secret to rotate.
    let before = db.snapshot().await;
    let out = db
        .cli()
        .args(["clients", "rotate-secret", "--id", "spa"])
        .run()
        .await;
    out.assert_code(2)
        .assert_stderr_contains("has no secret to rotate");
    assert_eq!(db.snapshot().await, before);

    // delete: the client and its secrets go; deleting again fails.
    let out = db
        .cli()
        .args(["clients", "delete", "--id", "billing"])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["deleted"], "billing", "{out}");
    assert_eq!(db.scalar("SELECT count(*) FROM client_secrets").await, 0);
    let out = db
        .cli()
        .args(["clients", "delete", "--id", "billing"])
        .run()
        .await;
    out.assert_code(1).assert_stderr_contains("does not exist");
    let out = db.cli().args(["clients", "list"]).run().await;
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 1);
    let events: Vec<String> = db
        .audit()
        .await
        .into_iter()
        .filter(|r| !r.starts_with("client.auth_failed|"))
        .map(|r| r.split('|').take(3).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        events,
        [
            "client.created|cli|billing",
            "client.created|cli|spa",
            "client.secret_rotated|cli|billing",
            "client.deleted|cli|billing",
        ]
    );
}

/// The commands accept `--dev --data-dir DIR` and reach the database `serve --dev` uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_commands_work_on_the_dev_data_dir() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data").display().to_string();
    let dev = Cli::new().args(["--dev", "--data-dir", data_dir.as_str()]);
    let out = dev
        .clone()
        .args(["clients", "create", "--id", "local"])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["client_secret"].as_str().unwrap().len(), 43);
    let port = crate::harness::free_port();
    let server = dev
        .clone()
        .env("GATEHOUSE_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .serve(port)
        .await
        .with_host(format!("localhost:{port}"));
    let creds = Creds {
        id: "local".into(),
        secret: v["client_secret"].as_str().map(str::to_owned),
    };
    token(&server, &creds, &[]).await.ok();
    let out = dev.args(["clients", "list"]).run().await;
    out.assert_success();
    assert!(out.stdout.contains("\"tenant\":\"default\""), "{out}");
}
