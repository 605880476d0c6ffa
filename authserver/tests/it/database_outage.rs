//! A PostgreSQL outage, played by a TCP proxy between the servers and the database
//! (`harness::proxy`): requests that need the database answer 503 with `Retry-After`
//! within the request deadline (at once once the outage is known), `/readyz` within its
//! own 500 ms, discovery, JWKS and client_credentials keep working from memory as
//! docs/security.md says, two pods behave the same, and the same processes recover once
//! the database is back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::oauth::{Creds, Reply, access_token, create_client, introspect, token};
use crate::harness::proxy::Proxy;
use crate::harness::{Backend, POLL, Server, TestDb, free_port};

/// The request that finds the outage waits at most `database.acquire_timeout_ms` (1 s by
/// default) for a connection; the rest is room for a loaded CI machine.
const FIRST_ANSWER: Duration = Duration::from_millis(1500);
/// Once the outage is known, a request is refused without trying.
const REFUSED: Duration = Duration::from_millis(500);
/// `/readyz` has a 500 ms deadline of its own.
const READYZ: Duration = Duration::from_millis(800);
/// A probe runs every second; generous for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(10);

async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

#[track_caller]
fn assert_unavailable(r: &Reply) {
    r.assert_error(503, "temporarily_unavailable");
    assert_eq!(r.header("retry-after"), Some("2"), "{r:?}");
}

/// `/readyz`: status, how long it took, body.
async fn readyz(server: &Server) -> (StatusCode, Duration, serde_json::Value) {
    let ((status, _, body), took) = timed(server.get_json("/readyz")).await;
    (status, took, body)
}

/// What must keep working from memory: discovery and the JWKS.
async fn assert_public_documents_served(server: &Server) {
    let (status, _, doc) = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(server.kids("/jwks").await.len(), 3);
}

/// Reads everything a pod caches for `creds` (tenant, keys, client) and returns one of
/// its access tokens.
async fn warm(server: &Server, creds: &Creds) -> String {
    assert_public_documents_served(server).await;
    let access = access_token(server, creds).await;
    assert_eq!(
        introspect(server, creds, &access).await.ok()["active"],
        true
    );
    access
}

/// Polls until introspection answers 200 and `/readyz` 200 again; returns how long.
/// Requests may come back before `/readyz` does (the first statement that succeeds
/// clears the outage for it, the readiness probe reads that state on its next call):
/// meanwhile every answer is either the right one or a 503, never anything else.
async fn wait_recovered(server: &Server, creds: &Creds, access: &str) -> Duration {
    let started = Instant::now();
    loop {
        let r = introspect(server, creds, access).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.body["active"], true, "{r:?}");
            if readyz(server).await.0 == StatusCode::OK {
                return started.elapsed();
            }
        } else {
            assert_unavailable(&r);
        }
        assert!(
            started.elapsed() < RECOVERY,
            "not recovered {RECOVERY:?} after the database came back:\n{}",
            server.logs()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_answered_at_once_memory_serves_what_it_may_and_both_pods_recover() {
    let db = TestDb::migrated(Backend::Postgres).await;
    let mut proxy = Proxy::start(db.url()).await;
    let creds = create_client(&db, "svc", &[]).await;
    let cli = db.cli().env("DATABASE_URL", proxy.url(db.url()));
    let a = cli.serve(db.port).await;
    let b = cli
        .serve(free_port())
        .await
        .with_host(format!("127.0.0.1:{}", db.port));
    let processes = [a.pid(), b.pid()];
    let pods = [&a, &b];
    let mut tokens = Vec::new();
    for pod in pods {
        tokens.push(warm(pod, &creds).await);
    }

    proxy.cut().await;
    let cut_at = Instant::now();
    // A token verified before may be answered from memory until the change feed has
    // been silent for a second (the revocation propagation target); after that,
    // introspection needs the database too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The first request that needs the database finds the outage within the deadline
    // (its listener may have found it first: then it is refused at once).
    for (pod, access) in pods.iter().zip(&tokens) {
        let (r, took) = timed(introspect(pod, &creds, access)).await;
        assert_unavailable(&r);
        assert!(took < FIRST_ANSWER, "first 503 after {took:?}");
        println!("first 503 {} ms after the request", took.as_millis());
    }
    // From then on, both pods answer alike.
    for (pod, access) in pods.iter().zip(&tokens) {
        let (r, took) = timed(introspect(pod, &creds, access)).await;
        assert_unavailable(&r);
        assert!(took < REFUSED, "503 after {took:?}");
        println!("later 503s in {} ms", took.as_millis());

        let (status, took, body) = readyz(pod).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(took < READYZ, "/readyz took {took:?}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("database unavailable")),
            "{body}"
        );

        assert_public_documents_served(pod).await;
        // client_credentials from the cached client (read under a minute ago), signed
        // with the cached key.
        let (r, took) = timed(token(pod, &creds, &[])).await;
        assert!(r.ok()["access_token"].is_string());
        assert!(took < REFUSED, "token took {took:?}");
        // Anything else that needs the database: a wrong secret is still refused,
        // never accepted from memory.
        token(pod, &creds.with_secret(&"y".repeat(43)), &[])
            .await
            .assert_invalid_client();
        // A client the pod has not read cannot be checked: that is ours, not
        // `invalid_client`.
        let unread = Creds {
            id: "never-read".to_owned(),
            secret: Some("y".repeat(43)),
        };
        assert_unavailable(&token(pod, &unread, &[]).await);
    }
    assert!(
        a.get_text("/metrics")
            .await
            .contains("gatehouse_database_available 0")
    );
    println!(
        "outage checks done {} ms after the cut",
        cut_at.elapsed().as_millis()
    );

    proxy.restore().await;
    for (pod, access) in pods.iter().zip(&tokens) {
        let took = wait_recovered(pod, &creds, access).await;
        println!(
            "recovered {} ms after the database came back",
            took.as_millis()
        );
    }
    assert_eq!(
        [a.pid(), b.pid()],
        processes,
        "the same processes recovered"
    );
    assert!(
        a.get_text("/metrics")
            .await
            .contains("gatehouse_database_available 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_database_is_answered_within_the_deadline_and_a_zero_staleness_refuses_tokens()
 {
    let db = TestDb::migrated(Backend::Postgres).await;
    let mut proxy = Proxy::start(db.url()).await;
    let creds = create_client(&db, "svc", &[]).await;
    let server = db
        .cli()
        .env("DATABASE_URL", proxy.url(db.url()))
        .env("GATEHOUSE_CACHE_MAX_STALE_SECONDS_DURING_OUTAGE", "0")
        .serve(db.port)
        .await;
    let access = warm(&server, &creds).await;

    // Nothing answers and nothing fails: only the deadline tells. A token verified
    // before is answered from memory only while the change feed proves it would hear of
    // a revocation, at most a second (the propagation target) after the feed fell
    // silent; then introspection needs the database too.
    proxy.stall().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (r, took) = timed(introspect(&server, &creds, &access)).await;
    assert_unavailable(&r);
    assert!(took < FIRST_ANSWER, "first 503 after {took:?}");
    println!(
        "partition: first 503 {} ms after the request",
        took.as_millis()
    );
    let (r, took) = timed(token(&server, &creds, &[])).await;
    assert_unavailable(&r);
    assert!(took < REFUSED, "token 503 after {took:?}");
    let (status, took, _) = readyz(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < READYZ, "/readyz took {took:?}");
    assert_public_documents_served(&server).await;

    proxy.restore().await;
    let took = wait_recovered(&server, &creds, &access).await;
    println!(
        "partition: recovered {} ms after it ended",
        took.as_millis()
    );
    token(&server, &creds, &[]).await.ok();
}

on_both_backends!(without_an_outage_the_database_counts_as_available);

/// The gate changes nothing while the database answers, on either backend: ready,
/// tokens, introspection, the availability gauge.
async fn without_an_outage_the_database_counts_as_available(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let creds = create_client(&db, "svc", &[]).await;
    let server = db.serve().await;
    warm(&server, &creds).await;
    let (status, took, body) = readyz(&server).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(took < READYZ);
    assert!(
        server
            .get_text("/metrics")
            .await
            .contains("gatehouse_database_available 1")
    );
}

/// A store on `db` through a proxy the test can stall, with a connection idle in its
/// pool, so that the next unit of work puts its `BEGIN` on the wire at once.
async fn store_behind_proxy(
    db: &TestDb,
    max_connections: u32,
    acquire_timeout_ms: u64,
) -> (authserver::store::Store, Proxy) {
    let proxy = Proxy::start(db.url()).await;
    let store = authserver::store::Store::connect(&authserver::config::DatabaseSettings {
        url: secrecy::SecretString::from(proxy.url(db.url())),
        max_connections,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms,
    })
    .await
    .unwrap();
    store.begin().await.unwrap().commit().await.unwrap();
    (store, proxy)
}

/// A partition while a transaction's `COMMIT` is on the wire, and a caller that gives up
/// (a client that hung up: `wrk` does at the end of every benchmark workload).
/// PostgreSQL commits once the bytes arrive; sqlx, which never read the answer, used to
/// treat the transaction as still open and send a `ROLLBACK` before the connection's
/// next use, which PostgreSQL answered with the notice "there is no transaction in
/// progress" (once in a labelled benchmark run's log). The `COMMIT` now finishes in a
/// task of its own.
#[tokio::test(flavor = "current_thread")]
async fn a_commit_given_up_during_a_partition_is_finished_and_leaves_no_rollback_behind() {
    // This runtime's one thread runs the store, the proxy and the tasks sqlx spawns, so
    // whatever they log is captured.
    let logs = authserver::testing::CapturedLogs::start();
    let db = TestDb::migrated(Backend::Postgres).await;
    let (store, mut proxy) = store_behind_proxy(&db, 1, 5_000).await;

    let unit = store.begin().await.unwrap();
    proxy.stall().await;
    let given_up = tokio::time::timeout(Duration::from_millis(300), unit.commit()).await;
    assert!(given_up.is_err(), "the COMMIT waits for the partition");
    proxy.restore().await;
    // The pool's one connection, for the next units of work.
    for _ in 0..3 {
        store.begin().await.unwrap().commit().await.unwrap();
    }
    let notices: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l.to_string().contains("no transaction in progress"))
        .collect();
    assert!(notices.is_empty(), "{notices:#?}");
}

/// A partition while a transaction's `BEGIN` is on the wire. sqlx counts a transaction
/// only once PostgreSQL has answered its `BEGIN`: a `begin` given up in between (the
/// request deadline here; a client that goes away does the same) used to leave the
/// connection inside a transaction nobody knew of, and it went back to the pool that
/// way — the next calls' statements ran in it, uncommitted, holding their locks (seen as
/// the notice "there is already a transaction in progress"). Once the partition ends, no
/// connection of the pool may sit idle inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_given_up_during_a_partition_leaves_no_connection_inside_a_transaction() {
    let db = TestDb::migrated(Backend::Postgres).await;
    let (store, mut proxy) = store_behind_proxy(&db, 2, 300).await;
    let in_transaction = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'gatehouse-authserver' \
         AND state LIKE 'idle in transaction%'";
    assert_eq!(db.scalar(in_transaction).await, 0);

    proxy.stall().await;
    let (r, took) = timed(store.begin()).await;
    assert!(r.is_err(), "no transaction during a partition");
    assert!(took < FIRST_ANSWER, "given up after {took:?}");
    proxy.restore().await;

    // The BEGIN and whatever followed it reach PostgreSQL now; wait until every
    // connection is back in the pool.
    let deadline = Instant::now() + RECOVERY;
    loop {
        let stats = store.pool_stats();
        if stats.size > 0 && stats.idle == stats.size {
            break;
        }
        assert!(Instant::now() < deadline, "connections back: {stats:?}");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        db.scalar(in_transaction).await,
        0,
        "a pooled connection is inside a transaction"
    );
}
