//! Rate limits on the token, introspection, revocation and PAR endpoints and the
//! `/authorize` and `/login` pages: per client and per source IP,
//! `429 slow_down` with `Retry-After` and `X-RateLimit-*`; counters shared through Redis
//! between pods; `X-Forwarded-For` believed only from trusted proxies.

use reqwest::header;

use crate::harness::oauth::{Creds, Reply, create_client, introspect, post_form, send, token};
use crate::harness::{Backend, Cli, Server, TestDb, free_port, random_hex};

on_both_backends!(
    requests_beyond_the_client_limit_get_429_slow_down,
    failed_authentications_spend_the_ips_budget_and_not_the_named_clients,
    forwarded_for_counts_only_from_trusted_proxies,
    revocation_and_par_are_limited_per_client_and_ip,
    unauthenticated_browser_traffic_is_limited_and_leaves_short_lived_rows,
    authorize_is_limited_per_client_id_as_well,
);

/// A window long enough that a test never straddles two.
const WINDOW: &str = "3600";

fn limited(db: &TestDb) -> Cli {
    db.cli().env("GATEHOUSE_RATE_LIMITS_WINDOW_SECONDS", WINDOW)
}

fn header_u64(r: &Reply, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name}: {r:?}"))
        .parse()
        .unwrap()
}

#[track_caller]
fn assert_limited(r: &Reply, limit: u64) {
    r.assert_error(429, "slow_down");
    assert_eq!(header_u64(r, "x-ratelimit-limit"), limit, "{r:?}");
    assert_eq!(header_u64(r, "x-ratelimit-remaining"), 0, "{r:?}");
    let reset = header_u64(r, "x-ratelimit-reset");
    assert!((1..=3600).contains(&reset), "{r:?}");
    let retry = header_u64(r, "retry-after");
    assert!(retry >= 1 && retry <= reset.max(1), "{r:?}");
}

async fn requests_beyond_the_client_limit_get_429_slow_down(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = limited(&db)
        .env("GATEHOUSE_RATE_LIMITS_TOKEN_PER_CLIENT", "3")
        .env("GATEHOUSE_RATE_LIMITS_INTROSPECTION_PER_CLIENT", "2")
        .serve_in_process(db.port)
        .await;
    let app = create_client(&db, "app", &[]).await;
    let other = create_client(&db, "other", &[]).await;

    let mut access = String::new();
    for remaining in [2, 1, 0] {
        let r = token(&server, &app, &[]).await;
        r.ok()["access_token"]
            .as_str()
            .unwrap()
            .clone_into(&mut access);
        assert_eq!(header_u64(&r, "x-ratelimit-limit"), 3);
        assert_eq!(header_u64(&r, "x-ratelimit-remaining"), remaining);
        assert!(header_u64(&r, "x-ratelimit-reset") >= 1);
    }
    let before = db.snapshot().await;
    let r = token(&server, &app, &[]).await;
    assert_limited(&r, 3);
    assert!(r.body.get("access_token").is_none());
    assert_eq!(db.snapshot().await, before);
    // The limit is per client.
    token(&server, &other, &[]).await.ok();

    // Introspection has its own limit per calling client.
    for _ in 0..2 {
        introspect(&server, &other, &access).await.ok();
    }
    assert_limited(&introspect(&server, &other, &access).await, 2);
    introspect(&server, &app, &access).await.ok();
}

/// Attacks on the budgets: someone else's client id with a wrong secret must not use up
/// that client's budget, and an IP over its limit is refused before its credentials are
/// checked (no authentication work, no audit row).
async fn failed_authentications_spend_the_ips_budget_and_not_the_named_clients(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = limited(&db)
        .env("GATEHOUSE_RATE_LIMITS_TOKEN_PER_CLIENT", "2")
        .env("GATEHOUSE_RATE_LIMITS_TOKEN_PER_IP", "5")
        .serve_in_process(db.port)
        .await;
    let app = create_client(&db, "app", &[]).await;
    let forged = Creds {
        secret: Some("not-the-secret".into()),
        ..app.clone()
    };
    for _ in 0..2 {
        token(&server, &forged, &[])
            .await
            .assert_error(401, "invalid_client");
    }
    // The victim's whole budget is still there.
    for remaining in [1, 0] {
        let r = token(&server, &app, &[]).await;
        r.ok();
        assert_eq!(header_u64(&r, "x-ratelimit-remaining"), remaining);
    }
    assert_limited(&token(&server, &app, &[]).await, 2);
    // Five requests reached us from this IP; the sixth is refused whoever it claims to
    // be, before its secret is looked at: nothing is written, not even an audit row.
    let before = (db.snapshot().await, db.audit().await);
    let r = token(&server, &forged, &[]).await;
    assert_limited(&r, 5);
    assert_eq!((db.snapshot().await, db.audit().await), before);
}

/// Two `serve` pods on one PostgreSQL sharing their counters through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis (REDIS_URL, else 127.0.0.1:6379): .ci/run starts it and runs this with --ignored"]
async fn pods_share_the_counters_through_redis() {
    // CI sets REDIS_URL (and starts Redis); elsewhere a local Redis on the default port
    // is used. Run without one (`--ignored`), the test fails and says so: passing
    // without having run would hide a broken shared limiter.
    let redis = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_)
            if tokio::net::TcpStream::connect("127.0.0.1:6379")
                .await
                .is_ok() =>
        {
            "redis://127.0.0.1:6379".to_owned()
        }
        Err(e) => panic!(
            "this test needs Redis: REDIS_URL ({e}) and nothing listens on 127.0.0.1:6379; \
             start redis-server (.ci/run installs and starts it)"
        ),
    };
    let db = TestDb::migrated(Backend::Postgres).await;
    let pod = limited(&db)
        .env("REDIS_URL", redis.as_str())
        .env("GATEHOUSE_RATE_LIMITS_TOKEN_PER_CLIENT", "3");
    let a = pod.serve(db.port).await;
    let b = pod
        .serve(free_port())
        .await
        .with_host(format!("127.0.0.1:{}", db.port));
    // Every test database has a tenant `main`: a fresh client id keeps this run's
    // counters apart from earlier runs' on the same Redis.
    let creds = create_client(&db, &format!("shared-{}", random_hex(8)), &[]).await;
    let remaining: Vec<u64> = {
        let mut v = Vec::new();
        for pod in [&a, &b, &a] {
            let r = token(pod, &creds, &[]).await;
            r.ok();
            v.push(header_u64(&r, "x-ratelimit-remaining"));
        }
        v
    };
    assert_eq!(remaining, [2, 1, 0], "one counter for both pods");
    // B has served one request itself, but the shared counter is spent.
    assert_limited(&token(&b, &creds, &[]).await, 3);
    assert_limited(&token(&a, &creds, &[]).await, 3);
}

/// A token request from `ip` as told by `X-Forwarded-For` (no client authentication
/// needed: the per-IP limit is counted first).
async fn from(server: &Server, creds: &Creds, forwarded_for: &str) -> Reply {
    send(
        post_form(server, "/token", &[("grant_type", "client_credentials")])
            .header(header::AUTHORIZATION, creds.basic())
            .header("x-forwarded-for", forwarded_for),
    )
    .await
}

async fn forwarded_for_counts_only_from_trusted_proxies(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let per_ip = |cli: Cli| cli.env("GATEHOUSE_RATE_LIMITS_TOKEN_PER_IP", "2");
    // Behind a trusted proxy (the test itself, on 127.0.0.1), each client IP has its
    // own budget.
    let proxied = per_ip(limited(&db))
        .env("GATEHOUSE_SERVER_TRUSTED_PROXIES", "127.0.0.1/32")
        .serve_in_process(db.port)
        .await;
    let creds = create_client(&db, "app", &[]).await;
    from(&proxied, &creds, "203.0.113.1").await.ok();
    // The rightmost untrusted entry counts; what the client put further left does not.
    from(&proxied, &creds, "198.51.100.99, 203.0.113.1")
        .await
        .ok();
    let r = from(&proxied, &creds, "203.0.113.1").await;
    assert_limited(&r, 2);
    from(&proxied, &creds, "203.0.113.2").await.ok();

    // Not trusted: the header is ignored and every request counts against 127.0.0.1.
    let direct = per_ip(limited(&db))
        .serve_in_process(free_port())
        .await
        .with_host(format!("127.0.0.1:{}", db.port));
    from(&direct, &creds, "203.0.113.3").await.ok();
    from(&direct, &creds, "203.0.113.4").await.ok();
    assert_limited(&from(&direct, &creds, "203.0.113.5").await, 2);
}

/// Security review, defect 3: `/revoke` and `/par` were not rate-limited.
async fn revocation_and_par_are_limited_per_client_and_ip(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = limited(&db)
        .env("GATEHOUSE_RATE_LIMITS_REVOCATION_PER_CLIENT", "2")
        .env("GATEHOUSE_RATE_LIMITS_PAR_PER_CLIENT", "2")
        .env("GATEHOUSE_RATE_LIMITS_PAR_PER_IP", "4")
        .serve_in_process(db.port)
        .await;
    let app = create_client(&db, "app", &["--redirect-uri", "https://app.example/cb"]).await;
    let other = create_client(&db, "other", &["--redirect-uri", "https://app.example/cb"]).await;
    let revoke = |c: &Creds| {
        send(
            post_form(&server, "/revoke", &[("token", "unknown")])
                .header(header::AUTHORIZATION, c.basic()),
        )
    };
    for remaining in [1, 0] {
        let r = revoke(&app).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(header_u64(&r, "x-ratelimit-remaining"), remaining);
    }
    assert_limited(&revoke(&app).await, 2);
    assert_eq!(revoke(&other).await.status, 200, "per client");

    let par = |c: &Creds| {
        send(
            post_form(
                &server,
                "/par",
                &[
                    ("response_type", "code"),
                    ("redirect_uri", "https://app.example/cb"),
                    ("scope", "openid"),
                    (
                        "code_challenge",
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    ),
                    ("code_challenge_method", "S256"),
                ],
            )
            .header(header::AUTHORIZATION, c.basic()),
        )
    };
    for _ in 0..2 {
        assert_eq!(par(&app).await.status, 201);
    }
    let before = db.snapshot().await;
    let pushed = db
        .scalar("SELECT count(*) FROM authorization_requests")
        .await;
    assert_limited(&par(&app).await, 2);
    assert_eq!(par(&other).await.status, 201, "per client");
    // Four requests (the refused one counts: it reached us) used the IP's budget: the
    // fifth is refused whoever sends it.
    assert_limited(&par(&other).await, 4);
    assert_eq!(db.snapshot().await, before);
    assert_eq!(
        db.scalar("SELECT count(*) FROM authorization_requests")
            .await,
        pushed + 1,
        "refused requests store nothing"
    );
}

/// Security review, items 3 and 11: `/authorize` and `/login` are limited per source IP
/// (and `/authorize` per `client_id`), and what unauthenticated traffic stores is a
/// pre-session that lives 15 minutes whatever happens to it, until someone signs in.
async fn unauthenticated_browser_traffic_is_limited_and_leaves_short_lived_rows(backend: Backend) {
    use crate::authorize_flow::{PASSWORD, authorize_url};
    use crate::harness::browser::{Browser, create_user};
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_client(&db, "app", &["--redirect-uri", crate::authorize_flow::CB]).await;
    let server = limited(&db)
        .env("GATEHOUSE_RATE_LIMITS_AUTHORIZE_PER_IP", "3")
        .env("GATEHOUSE_RATE_LIMITS_LOGIN_PER_IP", "4")
        .serve_in_process(db.port)
        .await;
    let url = authorize_url(&db, "app", &[]);
    for _ in 0..3 {
        let p = Browser::new().get(&url).await;
        assert_eq!(p.status, 303, "{}", p.body);
    }
    let rows = db.scalar("SELECT count(*) FROM browser_sessions").await;
    let requests = db
        .scalar("SELECT count(*) FROM authorization_requests")
        .await;
    assert_eq!((rows, requests), (3, 3));
    let p = Browser::new().get(&url).await;
    assert_eq!(p.status, 429, "{}", p.body);
    assert_eq!(p.header("x-ratelimit-limit"), Some("3"));
    assert!(p.header("retry-after").is_some());
    assert_eq!(
        db.scalar("SELECT count(*) FROM browser_sessions").await,
        rows
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM authorization_requests")
            .await,
        requests
    );

    // Pre-sessions live 15 minutes and are not extended by use.
    let lives = db
        .rows("SELECT CAST(expires_at - created_at AS TEXT) FROM browser_sessions")
        .await;
    assert!(lives.iter().all(|l| l == "900"), "{lives:?}");
    let b = Browser::new();
    db.execute("UPDATE browser_sessions SET last_seen_at = last_seen_at - 120")
        .await;
    let login = b.get(&format!("{}/login", db.issuer(""))).await;
    assert_eq!(login.status, 200);
    db.execute("UPDATE browser_sessions SET last_seen_at = last_seen_at - 120")
        .await;
    b.get(&format!("{}/login", db.issuer("")))
        .await
        .assert_status(200);
    let lives = db
        .rows("SELECT CAST(expires_at - created_at AS TEXT) FROM browser_sessions")
        .await;
    assert!(lives.iter().all(|l| l == "900"), "{lives:?}");
    // Signing in gives the browser the tenant's idle timeout (30 minutes by default).
    b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    let signed_in = db
        .rows(
            "SELECT CAST(b.expires_at - b.last_seen_at AS TEXT) FROM browser_sessions b \
             JOIN sessions s ON s.tenant_id = b.tenant_id AND s.browser_id_hash = b.id_hash",
        )
        .await;
    assert_eq!(signed_in, ["1800"]);
    // The login page has its own per-IP limit (4: two GETs, one POST so far).
    b.get(&format!("{}/login", db.issuer("")))
        .await
        .assert_status(200);
    let p = b.get(&format!("{}/login", db.issuer(""))).await;
    assert_eq!(p.status, 429, "{}", p.body);
    drop(server);
}

/// `/authorize` counts the `client_id` it names beside the source IP (one round trip to a
/// shared limiter); a client over its budget gets the 429 page, others carry on.
async fn authorize_is_limited_per_client_id_as_well(backend: Backend) {
    use crate::authorize_flow::{CB, authorize_url};
    use crate::harness::browser::Browser;
    let db = TestDb::migrated(backend).await;
    create_client(&db, "app", &["--redirect-uri", CB]).await;
    create_client(&db, "other", &["--redirect-uri", CB]).await;
    let _server = limited(&db)
        .env("GATEHOUSE_RATE_LIMITS_AUTHORIZE_PER_CLIENT", "2")
        .env("GATEHOUSE_RATE_LIMITS_AUTHORIZE_PER_IP", "10")
        .serve_in_process(db.port)
        .await;
    let get = |client: &str| {
        let url = authorize_url(&db, client, &[]);
        async move { Browser::new().get(&url).await }
    };
    for _ in 0..2 {
        let p = get("app").await;
        assert_eq!(p.status, 303, "{}", p.body);
    }
    let p = get("app").await;
    assert_eq!(p.status, 429, "{}", p.body);
    assert_eq!(p.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(p.header("x-ratelimit-remaining"), Some("0"));
    let p = get("other").await;
    assert_eq!(p.status, 303, "per client: {}", p.body);
}
