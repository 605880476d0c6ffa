//! Several processes on one database: a key or client change made through the CLI or
//! one pod's admin API reaches every other running server within a second (PostgreSQL
//! LISTEN/NOTIFY; SQLite polls a trigger-maintained counter), though their caches live
//! for 30 s; a revocation is seen on the pod that made it at once, on every other within a second.

use std::time::{Duration, Instant};

use crate::harness::admin::{admin_cli, authed, connect, machine_spec, upsert};
use crate::harness::oauth::{Creds, create_client, is_active, revoke, token};
use crate::harness::{Backend, Cli, POLL, TestDb, free_port};
use authserver::admin::proto::ClientSpec;

/// The target is one second; the assertion leaves room for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(2);

on_both_backends!(rotation_through_the_cli_reaches_another_server_within_a_second);

async fn rotation_through_the_cli_reaches_another_server_within_a_second(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data").display().to_string();
    // PostgreSQL: two `serve` pods and the CLI. SQLite: `serve --dev` and the CLI on the
    // same data dir, the standalone setup.
    let (first, other, rotate) = match backend {
        Backend::Postgres => {
            let first = db.serve().await;
            // Behind one load balancer, both pods see the issuer's Host header.
            let other = db
                .cli()
                .serve(free_port())
                .await
                .with_host(format!("127.0.0.1:{}", db.port));
            (Some(first), other, db.cli())
        }
        Backend::Sqlite => {
            let dev = Cli::new().args(["--dev", "--data-dir", data_dir.as_str()]);
            let port = free_port();
            let served = dev.serve(port).await.with_host(format!("localhost:{port}"));
            (None, served, dev)
        }
    };
    // Warm the other server's cache.
    let old = other.kids("/jwks").await;
    assert_eq!(old.len(), 3);

    let cli_started = Instant::now();
    let out = rotate.args(["keys", "rotate"]).run().await;
    out.assert_success();
    let cli_took = cli_started.elapsed();
    let took = other
        .wait_for_kids("/jwks", DEADLINE, |kids| {
            kids.len() == 6 && old.iter().all(|k| kids.contains(k))
        })
        .await;
    // The commit happened while the CLI ran: the true delay lies between these two.
    println!(
        "{backend:?}: new kids visible on the other server {} ms after `keys rotate` exited \
         ({} ms after it started)",
        took.as_millis(),
        (cli_took + took).as_millis()
    );
    if let Some(first) = first {
        first
            .wait_for_kids("/jwks", DEADLINE, |kids| kids.len() == 6)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_registered_through_one_pods_admin_api_works_on_another_within_a_second() {
    let db = TestDb::migrated(Backend::Postgres).await;
    let (admin_a, admin_b) = (free_port(), free_port());
    let a = admin_cli(&db, admin_a).serve(db.port).await;
    let b = admin_cli(&db, admin_b)
        .serve(free_port())
        .await
        .with_host(format!("127.0.0.1:{}", db.port));
    let mut on_a = connect(admin_a).await;
    let mut on_b = connect(admin_b).await;
    for admin in [&mut on_a, &mut on_b] {
        let h = admin
            .health(authed(authserver::admin::proto::HealthRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(h.schema_current);
    }
    // B has already cached that the client does not exist.
    let guess = Creds {
        id: "billing".into(),
        secret: Some("x".repeat(43)),
    };
    token(&b, &guess, &[]).await.assert_invalid_client();

    let registered_at = Instant::now();
    let secret = upsert(&mut on_a, machine_spec("billing"))
        .await
        .generated_secret;
    let call_took = registered_at.elapsed();
    let creds = Creds {
        id: "billing".into(),
        secret,
    };
    let polled_at = Instant::now();
    let access = loop {
        let r = token(&b, &creds, &[]).await;
        if r.status == 200 {
            break r.body["access_token"].as_str().unwrap().to_owned();
        }
        r.assert_invalid_client();
        assert!(
            polled_at.elapsed() < DEADLINE,
            "client not usable on the other pod after {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    println!(
        "client registered on A usable on B {} ms after UpsertClient returned ({} ms after it was sent)",
        polled_at.elapsed().as_millis(),
        (call_took + polled_at.elapsed()).as_millis()
    );

    // Revoked through A: inactive on A at once and on B within a second (B answers a
    // token it verified before from its cache, which the change feed empties).
    let rs = Creds {
        id: "api".into(),
        secret: upsert(
            &mut on_b,
            ClientSpec {
                introspect_any_token: true,
                ..machine_spec("api")
            },
        )
        .await
        .generated_secret,
    };
    let deadline = Instant::now() + DEADLINE;
    while token(&a, &rs, &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "api client not visible on A");
        tokio::time::sleep(POLL).await;
    }
    assert!(is_active(&a, &rs, &access).await);
    assert!(is_active(&b, &rs, &access).await);
    assert!(is_active(&b, &rs, &access).await);
    let revoked_at = Instant::now();
    assert_eq!(revoke(&a, &creds, &access, &[]).await.status, 200);
    assert!(!is_active(&a, &rs, &access).await);
    while is_active(&b, &rs, &access).await {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "revoked token still active on B after a second"
        );
        tokio::time::sleep(POLL).await;
    }
    println!(
        "revoked on A, inactive on B {} ms after the revocation was sent",
        revoked_at.elapsed().as_millis()
    );
}

on_both_backends!(a_client_created_by_the_cli_is_usable_on_a_running_server_within_a_second);

async fn a_client_created_by_the_cli_is_usable_on_a_running_server_within_a_second(
    backend: Backend,
) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let guess = Creds {
        id: "late".into(),
        secret: Some("x".repeat(43)),
    };
    token(&server, &guess, &[]).await.assert_invalid_client();

    let started = Instant::now();
    let creds = create_client(&db, "late", &[]).await;
    let cli_took = started.elapsed();
    let polled_at = Instant::now();
    while token(&server, &creds, &[]).await.status != 200 {
        assert!(
            polled_at.elapsed() < DEADLINE,
            "client not usable after {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    println!(
        "{backend:?}: client created by the CLI usable {} ms after `clients create` exited ({} ms after it started)",
        polled_at.elapsed().as_millis(),
        (cli_took + polled_at.elapsed()).as_millis()
    );

    // Deleted by the CLI: refused within a second as well.
    db.cli()
        .args(["clients", "delete", "--id", "late"])
        .run()
        .await
        .assert_success();
    let polled_at = Instant::now();
    while token(&server, &creds, &[]).await.status != 401 {
        assert!(polled_at.elapsed() < DEADLINE, "deleted client still works");
        tokio::time::sleep(POLL).await;
    }
}
