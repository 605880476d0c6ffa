//! The Management API (`{issuer}/api/v1`) as a script or CI pipeline meets it: a client
//! registered with the API as audience and `gatehouse:*` scopes gets a token with
//! `resource={issuer}/api/v1` and calls the API. Every refusal is an RFC 9457 problem;
//! a refused call changes nothing; reads of the audit trail are themselves audited.

use std::time::Instant;

use reqwest::header;
use serde_json::Value;

use crate::harness::oauth::{Creds, Reply, create_client, send, token};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    a_management_client_reads_keys_clients_and_health,
    tokens_are_checked_for_audience_scope_and_tenant,
    key_rotation_is_a_sensitive_audited_and_rate_limited_write,
    the_audit_trail_filters_pages_and_exports_csv,
    a_large_export_streams_in_constant_memory,
    clients_are_created_once_with_their_secret_shown_once,
    clients_are_patched_as_json_merge_patch_guarded_by_if_match,
    client_secrets_rotate_and_clients_are_deleted_and_retired,
    managed_clients_are_read_only,
    the_openapi_document_describes_what_is_served,
    users_are_created_under_the_password_policy,
    users_are_searched_and_managed_by_id,
    sessions_are_listed_and_ended,
    users_are_patched_as_json_merge_patch_guarded_by_if_match,
    stats_count_what_the_tenant_has_and_issues,
);

const ALL_READ: &str =
    "gatehouse:keys:read gatehouse:clients:read gatehouse:stats:read gatehouse:audit:read";

fn api_id(db: &TestDb) -> String {
    format!("{}/api/v1", db.issuer(""))
}

/// A confidential client allowed to call the API with `scopes`.
async fn management_client(db: &TestDb, id: &str, scopes: &str) -> Creds {
    create_client(
        db,
        id,
        &[
            "--tenant",
            "main",
            "--audiences",
            &api_id(db),
            "--scopes",
            scopes,
        ],
    )
    .await
}

/// An access token for the API: client_credentials with `resource` and `scope`.
async fn api_token(server: &Server, db: &TestDb, creds: &Creds, scope: &str) -> String {
    let api = api_id(db);
    let r = token(server, creds, &[("resource", &api), ("scope", scope)]).await;
    r.ok()["access_token"].as_str().unwrap().to_owned()
}

/// `method {path}` with `Authorization: Bearer token` (none when `token` is empty).
async fn call(server: &Server, method: reqwest::Method, path: &str, token: &str) -> Reply {
    send(request(server, method, path, token)).await
}

fn request(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    let r = server
        .http()
        .request(method, server.url(path))
        .header(header::HOST, server.host());
    if token.is_empty() {
        r
    } else {
        r.bearer_auth(token)
    }
}

/// Panics unless `r` is an RFC 9457 problem with `status` and our `type` `name`.
#[track_caller]
fn assert_problem(r: &Reply, status: u16, name: &str) -> String {
    assert_eq!(r.status.as_u16(), status, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(
        r.body["type"],
        format!("https://gatehouse.dev/problems/{name}"),
        "{r:?}"
    );
    assert_eq!(r.body["status"], status, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    r.body["detail"].as_str().unwrap_or_default().to_owned()
}

async fn a_management_client_reads_keys_clients_and_health(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let ci = management_client(&db, "ci", ALL_READ).await;
    create_client(&db, "web", &["--redirect-uri", "https://app.example/cb"]).await;
    let t = api_token(&server, &db, &ci, ALL_READ).await;

    let r = call(&server, reqwest::Method::GET, "/api/v1/jwks", &t).await;
    let keys = r.ok()["keys"].as_array().unwrap().clone();
    assert!(!keys.is_empty(), "{r:?}");
    for k in &keys {
        for field in ["kid", "alg", "state", "created_at", "activates_at"] {
            assert!(k[field].is_string(), "{field} in {k}");
        }
        assert!(
            k.get("private_key").is_none() && k.get("d").is_none(),
            "{k}"
        );
    }
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(r.header(h).is_some(), "{h} missing: {r:?}");
    }

    let r = call(&server, reqwest::Method::GET, "/api/v1/clients?limit=1", &t).await;
    let page = r.ok();
    assert_eq!(page["items"][0]["client_id"], "ci", "{page}");
    let text = page.to_string();
    assert!(
        !text.contains("digest") && !text.contains(ci.secret()),
        "no secret material: {text}"
    );
    let next = page["next"].as_str().unwrap().to_owned();
    let link = r.header("link").unwrap().to_owned();
    assert!(
        link.ends_with("rel=\"next\"") && link.contains(&next),
        "{link}"
    );
    let r = call(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/clients?limit=1&cursor={next}"),
        &t,
    )
    .await;
    assert_eq!(r.ok()["items"][0]["client_id"], "web");
    assert!(r.ok().get("next").is_none(), "last page: {r:?}");
    assert!(r.header("link").is_none());

    let r = call(&server, reqwest::Method::GET, "/api/v1/clients/ci", &t).await;
    assert_eq!(r.ok()["active_secrets"], 1, "{r:?}");
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients/web", &t).await;
    assert_eq!(r.ok()["redirect_uris"][0], "https://app.example/cb");
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients/nobody", &t).await;
    assert!(assert_problem(&r, 404, "not-found").contains("nobody"));
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients?limit=0", &t).await;
    assert_problem(&r, 400, "invalid-parameter");
    assert_eq!(r.body["field"], "limit");
    let r = call(&server, reqwest::Method::GET, "/api/v1/nothing/here", &t).await;
    assert_problem(&r, 404, "not-found");

    let r = call(&server, reqwest::Method::GET, "/api/v1/stats/health", &t).await;
    let health = r.ok();
    assert_eq!(health["database"], "ok", "{health}");
    assert_eq!(health["schema_current"], true, "{health}");
    assert!(health["keys"]["active"].as_u64().unwrap() >= 1, "{health}");
    assert_eq!(health["redis"], "not_configured", "{health}");

    // RFC 9728 §3: metadata at the well-known prefix before the resource's path.
    let r = send(request(
        &server,
        reqwest::Method::GET,
        "/.well-known/oauth-protected-resource/api/v1",
        "",
    ))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["resource"], api_id(&db));
    assert_eq!(r.body["authorization_servers"][0], db.issuer(""));
    let scopes = r.body["scopes_supported"].as_array().unwrap();
    assert_eq!(scopes.len(), 10, "{r:?}");
}

async fn tokens_are_checked_for_audience_scope_and_tenant(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &db.tenant_config(&[("main", ""), ("other", "/t/other")]),
    );
    let server = db.serve().await;
    let reader = management_client(&db, "reader", "gatehouse:clients:read").await;
    let plain = create_client(&db, "plain", &["--tenant", "main"]).await;
    let before = db.snapshot().await;

    // No token: 401, a bare Bearer challenge pointing at the metadata.
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients", "").await;
    assert_problem(&r, 401, "unauthenticated");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/api/v1\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains("error="),
        "RFC 6750 §3.1: no error without a token: {challenge}"
    );

    // A forged token.
    let r = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/clients",
        "not.a.token",
    )
    .await;
    assert_problem(&r, 401, "invalid-token");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // A valid token of this tenant, for another audience (the client itself).
    let t = token(&server, &plain, &[]).await.ok()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients", &t).await;
    assert!(
        assert_problem(&r, 401, "invalid-token").contains("resource="),
        "{r:?}"
    );

    // The right audience without the operation's scope: 403 naming the scope.
    let t = api_token(&server, &db, &reader, "gatehouse:clients:read").await;
    call(&server, reqwest::Method::GET, "/api/v1/clients", &t)
        .await
        .ok();
    let r = call(&server, reqwest::Method::GET, "/api/v1/audit", &t).await;
    assert_problem(&r, 403, "insufficient-scope");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"gatehouse:audit:read\""),
        "{challenge}"
    );
    let r = call(&server, reqwest::Method::POST, "/api/v1/jwks/rotate", &t).await;
    assert_problem(&r, 403, "insufficient-scope");

    // This tenant's token at another tenant's API.
    let r = call(&server, reqwest::Method::GET, "/t/other/api/v1/clients", &t).await;
    assert_problem(&r, 401, "invalid-token");

    // A scope the client was not registered for is refused at the token endpoint.
    let r = token(
        &server,
        &reader,
        &[
            ("resource", &api_id(&db)),
            ("scope", "gatehouse:keys:rotate"),
        ],
    )
    .await;
    r.assert_error(400, "invalid_scope");

    assert_eq!(db.snapshot().await, before, "refused calls change nothing");
}

async fn key_rotation_is_a_sensitive_audited_and_rate_limited_write(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db
        .cli()
        .env("GATEHOUSE_RATE_LIMITS_ENABLED", "true")
        // A window no run straddles: with the default minute, a rotation that took long
        // on a loaded machine ended in the next window, and its count started afresh.
        .env("GATEHOUSE_RATE_LIMITS_WINDOW_SECONDS", "3600")
        .env("GATEHOUSE_RATE_LIMITS_MANAGEMENT_SENSITIVE_PER_CLIENT", "2")
        .serve(free_port_of(&db))
        .await;
    let ops = management_client(&db, "ops", "gatehouse:keys:rotate gatehouse:keys:read").await;
    let t = api_token(
        &server,
        &db,
        &ops,
        "gatehouse:keys:rotate gatehouse:keys:read",
    )
    .await;
    let before = db.key_snapshot().await;

    let r = send(
        request(&server, reqwest::Method::POST, "/api/v1/jwks/rotate", &t)
            .json(&serde_json::json!({"mode": "sideways"})),
    )
    .await;
    assert_problem(&r, 400, "invalid-parameter");
    assert_eq!(r.body["field"], "mode");
    assert_eq!(
        r.header("x-ratelimit-remaining"),
        Some("1"),
        "a refused call still counts: {r:?}"
    );
    assert_eq!(db.key_snapshot().await, before, "nothing rotated");
    let trail = db.audit().await;
    assert!(
        trail
            .iter()
            .any(|e| e.starts_with("management.write_failed|ops|")
                && e.contains("\"operation\":\"rotateKeys\"")
                && e.contains("\"status\":400")),
        "a refused write is on the trail: {trail:?}"
    );

    let r = call(&server, reqwest::Method::POST, "/api/v1/jwks/rotate", &t).await;
    let created = r.ok()["created"].as_array().unwrap().clone();
    assert!(!created.is_empty(), "{r:?}");
    assert!(
        created.iter().all(|k| k["state"] == "pending"),
        "force: published, signing later: {r:?}"
    );
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let kid = created[0]["kid"].as_str().unwrap();
    let trail = db.audit().await;
    assert!(
        trail.iter().any(
            |e| e.starts_with(&format!("signing_key.rotated|ops|{kid}|"))
                && e.contains("\"via\":\"management-api\"")
        ),
        "{trail:?}"
    );

    let r = call(&server, reqwest::Method::POST, "/api/v1/jwks/rotate", &t).await;
    assert_problem(&r, 429, "rate-limited");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // Reads are another tier.
    call(&server, reqwest::Method::GET, "/api/v1/jwks", &t)
        .await
        .ok();
}

/// The primary server's port is the one its issuer names.
fn free_port_of(db: &TestDb) -> u16 {
    db.issuer("").rsplit(':').next().unwrap().parse().unwrap()
}

/// Inserts `n` audit events for tenant `main` (oldest first), `at` one second apart from
/// `start`, through SQL both backends speak.
async fn seed_audit(db: &TestDb, rows: &[(&str, &str, &str, &str, &str)], start: i64) {
    for (i, (event, actor, subject, ip, details)) in rows.iter().enumerate() {
        let q = |s: &str| s.replace('\'', "''");
        db.execute(&format!(
            "INSERT INTO audit_events (tenant_id, at, event, actor, subject, ip, details) \
             VALUES ('main', {}, '{}', '{}', '{}', '{}', '{}')",
            start + i64::try_from(i).unwrap(),
            q(event),
            q(actor),
            q(subject),
            q(ip),
            q(details)
        ))
        .await;
    }
}

const DEC_1: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

/// The `at` of every event `GET /audit?{query}` lists, following `next` to the end and
/// checking that `Link` agrees with it.
async fn all_pages(server: &Server, t: &str, query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/audit?{query}");
    loop {
        let r = call(server, reqwest::Method::GET, &path, t).await;
        let page = r.ok().clone();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["at"].as_str().unwrap().to_owned()),
        );
        match page.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert!(r.header("link").unwrap().contains(next));
                path = format!("/api/v1/audit?{query}&cursor={next}");
            }
            None => return seen,
        }
    }
}

async fn the_audit_trail_filters_pages_and_exports_csv(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let auditor = management_client(&db, "auditor", "gatehouse:audit:read").await;
    let t = api_token(&server, &db, &auditor, "gatehouse:audit:read").await;
    let mut rows = Vec::new();
    for i in 0..12 {
        rows.push((
            "user.login_failed",
            "user",
            "u-1",
            if i % 2 == 0 { "10.1.2.3" } else { "192.0.2.7" },
            "{}",
        ));
    }
    rows.push((
        "client.created",
        "=cmd|' /C calc'!A0",
        "web",
        "10.9.9.9",
        r#"{"note":"a, \"quoted\"\nline"}"#,
    ));
    rows.push(("consent.denied", "user", "u-2", "2001:db8::1", "{}"));
    seed_audit(&db, &rows, DEC_1).await;

    // Pages of 5 by type, newest first, until done; Link and next agree.
    let seen = all_pages(&server, &t, "type=user.login_failed&limit=5").await;
    assert_eq!(seen.len(), 12, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let get = |q: &str| {
        let path = format!("/api/v1/audit?{q}");
        let (server, t) = (&server, &t);
        async move { call(server, reqwest::Method::GET, &path, t).await }
    };
    assert_eq!(
        count(get("type=user.login_failed&ip=10.0.0.0/8").await.ok()),
        6
    );
    assert_eq!(count(get("ip=2001:db8::/32").await.ok()), 1);
    assert_eq!(count(get("user=u-2").await.ok()), 1);
    assert_eq!(count(get("client=web").await.ok()), 1);
    assert_eq!(
        count(
            get("type=client.created&type=consent.denied&to=2026-12-02T00:00:00Z")
                .await
                .ok()
        ),
        2
    );
    let failures = get("outcome=failure").await;
    assert_eq!(count(failures.ok()), 13, "{failures:?}");
    assert!(
        failures.ok()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "failure")
    );
    // `from` inclusive, `to` exclusive: the first three seconds of the seed.
    assert_eq!(
        count(
            get("from=2026-12-01T00:00:00Z&to=2026-12-01T00:00:03Z")
                .await
                .ok()
        ),
        3
    );
    for (q, field) in [
        ("ip=10.0.0.0/99", "ip"),
        ("from=monday", "from"),
        ("cursor=zz", "cursor"),
        ("sort=at", "sort"),
        ("limit=1001", "limit"),
    ] {
        let r = get(q).await;
        assert_problem(&r, 400, "invalid-parameter");
        assert_eq!(r.body["field"], field, "{q}");
    }

    csv_exports_are_escaped_and_neutralised(&server, &t).await;

    // Every read of the trail is in the trail, with its filters.
    let trail = db.audit().await;
    let reads: Vec<&String> = trail
        .iter()
        .filter(|e| e.starts_with("audit.read|auditor|"))
        .collect();
    assert!(reads.len() >= 10, "{trail:?}");
    assert!(
        reads.iter().any(|e| e.contains("\"format\":\"csv\"")),
        "{reads:?}"
    );
}

/// CSV by `Accept` or `format=csv`: the same filtered result as JSON, RFC 4180-escaped,
/// spreadsheet formulas neutralised.
async fn csv_exports_are_escaped_and_neutralised(server: &Server, t: &str) {
    for (path, accept) in [
        (
            "/api/v1/audit?type=client.created&type=consent.denied&to=2026-12-02T00:00:00Z",
            "text/csv",
        ),
        (
            "/api/v1/audit?type=client.created&type=consent.denied&to=2026-12-02T00:00:00Z&format=csv",
            "*/*",
        ),
    ] {
        let r = request(server, reqwest::Method::GET, path, t)
            .header(header::ACCEPT, accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = r.text().await.unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "at,event,outcome,actor,subject,ip,details");
        assert!(
            lines[1]
                .starts_with("2026-12-01T00:00:13Z,consent.denied,failure,user,u-2,2001:db8::1,{}"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("2026-12-01T00:00:12Z,client.created,success,'=cmd|' /C calc'!A0,web,10.9.9.9,\"{\"\"note\"\":\"\"a, \\\"\"quoted\\\"\"\\nline\"\"}\""),
            "{text}"
        );
        assert_eq!(lines.len(), 4, "header, two rows, final CRLF: {text:?}");
    }
}

/// Peak resident memory of `pid` (VmHWM) in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn a_large_export_streams_in_constant_memory(backend: Backend) {
    const N: i64 = 100_000;
    let db = TestDb::migrated(backend).await;
    let series = match backend {
        Backend::Postgres => format!("SELECT g AS n FROM generate_series(1, {N}) AS g"),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {N}) SELECT n FROM s"
        ),
    };
    db.execute(&format!(
        "INSERT INTO audit_events (tenant_id, at, event, actor, subject, ip, details) \
         SELECT 'main', {DEC_1} + n, 'user.login_failed', 'user', 'u-' || n, '10.0.0.1', \
         '{{\"attempt\":' || n || ',\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\",\"note\":\"padding so that a buffered export could not fit the bound below: a realistic failed sign-in carries about this much\"}}' FROM ({series}) AS rows"
    ))
    .await;
    let server = db.serve().await;
    let auditor = management_client(&db, "auditor", "gatehouse:audit:read").await;
    let t = api_token(&server, &db, &auditor, "gatehouse:audit:read").await;
    // Warm up the paths the export takes, so the figure below is the export's own.
    call(
        &server,
        reqwest::Method::GET,
        "/api/v1/audit?limit=1000",
        &t,
    )
    .await
    .ok();
    let before = resident_kib(server.pid());

    let started = Instant::now();
    // The export takes longer than the harness client's 10 s timeout in a debug build.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_mins(5))
        .build()
        .unwrap();
    let mut r = http
        .get(server.url("/api/v1/audit?type=user.login_failed&format=csv"))
        .header(header::HOST, server.host())
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = r.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.split(|b| *b == b'\n').count() - 1;
    }
    let grew_kib = peak_kib(server.pid()).saturating_sub(before);
    assert_eq!(
        lines,
        usize::try_from(N).unwrap() + 1,
        "every row and the header"
    );
    eprintln!(
        "export of {N} rows ({} MiB of CSV) took {:?}; peak RSS grew by {grew_kib} KiB",
        bytes / (1 << 20),
        started.elapsed()
    );
    // A buffered export would hold the whole body (over 30 MiB, in a String that grows
    // by doubling). Streamed, the growth is the pages in flight, plus on SQLite the page
    // caches the export fills in the pooled connections (2 MiB each, 10 connections):
    // measured 3 MiB on PostgreSQL, 9–13 MiB on SQLite.
    let bound_kib = match backend {
        Backend::Postgres => 8 * 1024,
        Backend::Sqlite => 24 * 1024,
    };
    assert!(
        bytes > 30 << 20,
        "the export is larger than the memory bound below: {bytes}"
    );
    assert!(
        grew_kib < bound_kib,
        "peak RSS grew by {grew_kib} KiB for a {bytes}-byte export"
    );
}

const WRITER: &str = "gatehouse:clients:read gatehouse:clients:write";

fn json_request(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    request(server, method, path, token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.to_string())
}

/// A server, and a token of `desk` allowed to read and write clients.
async fn writer(backend: Backend) -> (TestDb, Server, String) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let desk = management_client(&db, "desk", WRITER).await;
    let t = api_token(&server, &db, &desk, WRITER).await;
    (db, server, t)
}

fn svc_registration() -> Value {
    serde_json::json!({"client_id": "svc", "grant_types": ["client_credentials"], "scopes": ["read"]})
}

async fn post_client(server: &Server, t: &str, body: &Value, content_type: &str) -> Reply {
    send(json_request(
        server,
        reqwest::Method::POST,
        "/api/v1/clients",
        t,
        content_type,
        body,
    ))
    .await
}

/// Creates `svc` through the API; its ETag and secret.
async fn create_svc(server: &Server, t: &str) -> (String, Creds) {
    let r = post_client(server, t, &svc_registration(), "application/json").await;
    assert_eq!(r.status, 201, "{r:?}");
    let creds = Creds {
        id: "svc".into(),
        secret: Some(r.body["client_secret"].as_str().unwrap().to_owned()),
    };
    (r.header("etag").unwrap().to_owned(), creds)
}

/// `method /api/v1/clients/svc{suffix}` with a JSON body and an optional `If-Match`.
async fn on_svc(
    server: &Server,
    t: &str,
    method: reqwest::Method,
    suffix: &str,
    body: &Value,
    if_match: &str,
) -> Reply {
    let content_type = if method == reqwest::Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let req = json_request(
        server,
        method,
        &format!("/api/v1/clients/svc{suffix}"),
        t,
        content_type,
        body,
    );
    send(if if_match.is_empty() {
        req
    } else {
        req.header(header::IF_MATCH, if_match)
    })
    .await
}

fn assert_audited(trail: &[String], event: &str) {
    assert!(
        trail
            .iter()
            .any(|e| e.starts_with(event) && e.contains("\"via\":\"management-api\"")),
        "{event} in {trail:?}"
    );
}

async fn clients_are_created_once_with_their_secret_shown_once(backend: Backend) {
    let (db, server, t) = writer(backend).await;
    let before = db.snapshot().await;
    let r = post_client(&server, &t, &svc_registration(), "text/plain").await;
    assert_problem(&r, 400, "invalid-parameter");
    assert_eq!(r.body["field"], "Content-Type");
    let r = post_client(
        &server,
        &t,
        &serde_json::json!({"client_id": "svc", "bogus": 1}),
        "application/json",
    )
    .await;
    assert_problem(&r, 400, "invalid-parameter");
    assert!(
        r.body["detail"].as_str().unwrap().contains("bogus"),
        "{r:?}"
    );
    let r = post_client(
        &server,
        &t,
        &serde_json::json!({"client_id": "not an id!"}),
        "application/json",
    )
    .await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "client_id");
    assert_eq!(db.snapshot().await, before, "refused writes change nothing");

    let (etag, svc) = create_svc(&server, &t).await;
    token(&server, &svc, &[]).await.ok();
    let r = post_client(&server, &t, &svc_registration(), "application/json").await;
    assert_problem(&r, 409, "already-exists");
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients/svc", &t).await;
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(
        r.ok().get("client_secret").is_none(),
        "a secret is shown once"
    );
    assert_audited(&db.audit().await, "client.created|desk|svc|");
}

async fn clients_are_patched_as_json_merge_patch_guarded_by_if_match(backend: Backend) {
    let (db, server, t) = writer(backend).await;
    let (etag, _) = create_svc(&server, &t).await;
    let before = db.snapshot().await;
    let patch = |body: Value, if_match: &'static str| {
        let (server, t) = (&server, &t);
        async move { on_svc(server, t, reqwest::Method::PATCH, "", &body, if_match).await }
    };
    let r = patch(serde_json::json!({"scopes": ["read", "write"]}), "\"0000\"").await;
    assert_problem(&r, 412, "precondition-failed");
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::PATCH,
        "",
        &serde_json::json!({"client_id": "other"}),
        &etag,
    )
    .await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "client_id");
    assert_eq!(
        db.snapshot().await,
        before,
        "refused patches change nothing"
    );
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::PATCH,
        "",
        &serde_json::json!({"scopes": ["read", "write"]}),
        &etag,
    )
    .await;
    assert_eq!(r.ok()["scopes"], serde_json::json!(["read", "write"]));
    assert_ne!(r.header("etag").unwrap(), etag);
    // A second writer that read the old version loses instead of overwriting.
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::PATCH,
        "",
        &serde_json::json!({"scopes": ["read"]}),
        &etag,
    )
    .await;
    assert_problem(&r, 412, "precondition-failed");
    // `null` removes a member (back to its default).
    let r = patch(serde_json::json!({"scopes": null}), "").await;
    assert_eq!(r.ok()["scopes"], serde_json::json!([]));
    assert_audited(&db.audit().await, "client.updated|desk|svc|");
}

async fn client_secrets_rotate_and_clients_are_deleted_and_retired(backend: Backend) {
    let (db, server, t) = writer(backend).await;
    let (etag, svc) = create_svc(&server, &t).await;
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::POST,
        "/secret",
        &serde_json::json!({"overlap_seconds": 600}),
        "",
    )
    .await;
    let new_secret = r.ok()["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(Some(new_secret.as_str()), svc.secret.as_deref());
    token(&server, &svc, &[]).await.ok();
    token(&server, &svc.with_secret(&new_secret), &[])
        .await
        .ok();
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::POST,
        "/secret",
        &serde_json::json!({"overlap_seconds": -1}),
        "",
    )
    .await;
    assert_problem(&r, 400, "invalid-parameter");

    let delete = |if_match: &'static str| {
        let (server, t) = (&server, &t);
        async move {
            on_svc(
                server,
                t,
                reqwest::Method::DELETE,
                "",
                &Value::Null,
                if_match,
            )
            .await
        }
    };
    let r = on_svc(
        &server,
        &t,
        reqwest::Method::DELETE,
        "",
        &Value::Null,
        "\"0000\"",
    )
    .await;
    assert_problem(&r, 412, "precondition-failed");
    assert!(!etag.is_empty());
    let r = delete("").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_problem(&delete("").await, 404, "not-found");
    token(&server, &svc.with_secret(&new_secret), &[])
        .await
        .assert_invalid_client();
    let r = post_client(&server, &t, &svc_registration(), "application/json").await;
    assert_problem(&r, 409, "client-id-retired");
    let trail = db.audit().await;
    assert_audited(&trail, "client.secret_rotated|desk|svc|");
    assert_audited(&trail, "client.deleted|desk|svc|");
}

async fn managed_clients_are_read_only(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let admin = management_client(&db, "desk", WRITER).await;
    create_client(&db, "web", &["--redirect-uri", "https://app.example/cb"]).await;
    // As the operator's registration records it (UpsertClient with managed_by).
    db.execute("UPDATE clients SET managed_by = 'OidcClient shop/web' WHERE client_id = 'web'")
        .await;
    let t = api_token(&server, &db, &admin, WRITER).await;
    let r = call(&server, reqwest::Method::GET, "/api/v1/clients/web", &t).await;
    assert_eq!(r.ok()["managed_by"], "OidcClient shop/web");
    let before = db.snapshot().await;
    let r = send(json_request(
        &server,
        reqwest::Method::PATCH,
        "/api/v1/clients/web",
        &t,
        "application/merge-patch+json",
        &serde_json::json!({"scopes": ["x"]}),
    ))
    .await;
    assert!(
        assert_problem(&r, 409, "managed-elsewhere").contains("OidcClient shop/web"),
        "{r:?}"
    );
    let r = call(&server, reqwest::Method::DELETE, "/api/v1/clients/web", &t).await;
    assert!(
        assert_problem(&r, 409, "managed-elsewhere").contains("OidcClient shop/web"),
        "{r:?}"
    );
    let r = call(
        &server,
        reqwest::Method::POST,
        "/api/v1/clients/web/secret",
        &t,
    )
    .await;
    assert_problem(&r, 409, "managed-elsewhere");
    assert_eq!(db.snapshot().await, before, "nothing changed");
}

/// Every operation the generated document lists is served (a request without a token
/// gets the API's 401 problem, not 404 or 405), and a method it does not list is not.
async fn the_openapi_document_describes_what_is_served(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let r = call(&server, reqwest::Method::GET, "/api/v1/openapi.json", "").await;
    assert_eq!(r.status, 200, "{r:?}");
    let doc = r.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], api_id(&db));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 6, "{paths:?}");
    for (path, item) in paths {
        let concrete = path.replace("{client_id}", "some-client");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = call(&server, m, &format!("/api/v1{concrete}"), "").await;
            assert_problem(&r, 401, "unauthenticated");
        }
    }
    let r = call(&server, reqwest::Method::PUT, "/api/v1/jwks", "").await;
    assert_eq!(r.status, 405, "{r:?}");
}

const USERS: &str = "gatehouse:users:read gatehouse:users:write";

/// A server and a token of `desk` allowed to read and write users.
async fn user_admin(backend: Backend) -> (TestDb, Server, String) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let desk = management_client(&db, "desk", USERS).await;
    let t = api_token(&server, &db, &desk, USERS).await;
    (db, server, t)
}

async fn post_json(server: &Server, t: &str, path: &str, body: &Value) -> Reply {
    send(json_request(
        server,
        reqwest::Method::POST,
        path,
        t,
        "application/json",
        body,
    ))
    .await
}

fn alice() -> Value {
    serde_json::json!({"username": "alice", "email": "Alice@Example.com",
                       "password": "correct horse battery staple"})
}

async fn users_are_created_under_the_password_policy(backend: Backend) {
    let (db, server, t) = user_admin(backend).await;
    let before = db.snapshot().await;
    let r = post_json(
        &server,
        &t,
        "/api/v1/users",
        &serde_json::json!({"username": "bob", "password": "short"}),
    )
    .await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "password");
    let r = post_json(
        &server,
        &t,
        "/api/v1/users",
        &serde_json::json!({"username": "bob", "password": "x".repeat(20), "admin": true}),
    )
    .await;
    assert_problem(&r, 400, "invalid-parameter");
    assert_eq!(db.snapshot().await, before, "refused writes change nothing");

    let r = post_json(&server, &t, "/api/v1/users", &alice()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(
        r.body.get("password").is_none() && r.body.get("password_hash").is_none(),
        "{r:?}"
    );
    let id = r.body["user_id"].as_str().unwrap().to_owned();
    assert_problem(
        &post_json(&server, &t, "/api/v1/users", &alice()).await,
        409,
        "already-exists",
    );
    assert_audited(&db.audit().await, &format!("user.created|desk|{id}|"));
}

async fn users_are_searched_and_managed_by_id(backend: Backend) {
    let (db, server, t) = user_admin(backend).await;
    let id = post_json(&server, &t, "/api/v1/users", &alice()).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |path: String| {
        let (server, t) = (&server, &t);
        async move { call(server, reqwest::Method::GET, &path, t).await }
    };
    let r = get("/api/v1/users?prefix=ALI".into()).await;
    assert_eq!(r.ok()["items"][0]["user_id"], id.as_str());
    let r = get("/api/v1/users?prefix=alice%40example".into()).await;
    assert_eq!(
        r.ok()["items"].as_array().unwrap().len(),
        1,
        "by e-mail prefix too"
    );
    assert!(
        get("/api/v1/users?prefix=bob".into()).await.ok()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        get(format!("/api/v1/users/{id}")).await.ok()["username"],
        "alice"
    );
    assert_problem(&get("/api/v1/users/nobody".into()).await, 404, "not-found");

    let r = post_json(
        &server,
        &t,
        &format!("/api/v1/users/{id}/password"),
        &serde_json::json!({"password": "another long pass phrase"}),
    )
    .await;
    assert_eq!(r.ok()["user_id"], id.as_str());
    let r = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/users/{id}/mfa"),
        &t,
    )
    .await;
    assert_eq!(r.ok()["removed"], false);
    assert_eq!(
        get(format!("/api/v1/users/{id}/consents")).await.ok()["consents"],
        serde_json::json!([])
    );
    let r = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/users/{id}/consents/web"),
        &t,
    )
    .await;
    assert_problem(&r, 404, "not-found");

    let r = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/users/{id}"),
        &t,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_problem(&get(format!("/api/v1/users/{id}")).await, 404, "not-found");
    assert_audited(&db.audit().await, &format!("user.deleted|desk|{id}|"));
}

/// Signs `user_id` in, as the sign-in pages would leave it: a browser row and an account
/// session `sid` in it, valid for an hour.
async fn seed_session(db: &TestDb, user_id: &str, sid: &str) {
    let now = crate::harness::jose::now();
    db.execute(&format!(
        "INSERT INTO browser_sessions (tenant_id, id_hash, created_at, last_seen_at, expires_at) \
         VALUES ('main', 'browser-{sid}', {now}, {now}, {})",
        now + 3600
    ))
    .await;
    db.execute(&format!(
        "INSERT INTO sessions (tenant_id, sid, browser_id_hash, user_id, auth_time, amr, created_at, \
         last_seen_at, idle_expires_at, expires_at) VALUES ('main', '{sid}', 'browser-{sid}', \
         '{user_id}', {now}, '[\"pwd\"]', {now}, {now}, {}, {})",
        now + 1800,
        now + 86_400
    ))
    .await;
}

async fn sessions_are_listed_and_ended(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let scopes = "gatehouse:users:write gatehouse:sessions:read gatehouse:sessions:write";
    let desk = management_client(&db, "desk", scopes).await;
    let t = api_token(&server, &db, &desk, scopes).await;
    let alice = post_json(&server, &t, "/api/v1/users", &alice()).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for sid in ["s-laptop", "s-phone"] {
        seed_session(&db, &alice, sid).await;
    }
    let path = format!("/api/v1/users/{alice}/sessions");
    let r = call(&server, reqwest::Method::GET, &path, &t).await;
    let sessions = r.ok()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{r:?}");
    assert_eq!(sessions[0]["amr"], serde_json::json!(["pwd"]));
    assert!(
        !r.body.to_string().contains("browser-"),
        "never the browser's id: {r:?}"
    );

    let r = call(
        &server,
        reqwest::Method::DELETE,
        &format!("{path}/s-nope"),
        &t,
    )
    .await;
    assert_problem(&r, 404, "not-found");
    let r = call(
        &server,
        reqwest::Method::DELETE,
        &format!("{path}/s-laptop"),
        &t,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = call(&server, reqwest::Method::GET, &path, &t).await;
    assert_eq!(r.ok()["sessions"][0]["session_id"], "s-phone");
    let r = call(&server, reqwest::Method::DELETE, &path, &t).await;
    assert_eq!(r.ok()["ended"], 1);
    let r = call(&server, reqwest::Method::GET, &path, &t).await;
    assert_eq!(r.ok()["sessions"], serde_json::json!([]));
    assert_audited(&db.audit().await, &format!("session.revoked|desk|{alice}|"));
}

async fn users_are_patched_as_json_merge_patch_guarded_by_if_match(backend: Backend) {
    let (db, server, t) = user_admin(backend).await;
    let created = post_json(&server, &t, "/api/v1/users", &alice()).await;
    let id = created.body["user_id"].as_str().unwrap().to_owned();
    let user_path = format!("/api/v1/users/{id}");
    let etag = call(&server, reqwest::Method::GET, &user_path, &t)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let patch = |body: Value, if_match: String| {
        let (server, t, path) = (&server, &t, &user_path);
        async move {
            let req = json_request(
                server,
                reqwest::Method::PATCH,
                path,
                t,
                "application/merge-patch+json",
                &body,
            );
            send(if if_match.is_empty() {
                req
            } else {
                req.header(header::IF_MATCH, if_match)
            })
            .await
        }
    };
    let before = db.snapshot().await;
    for (body, field) in [
        (serde_json::json!({"username": "mallory"}), "username"),
        (serde_json::json!({"password_hash": "x"}), "password_hash"),
    ] {
        let r = patch(body, etag.clone()).await;
        assert_problem(&r, 400, "invalid-parameter");
        assert!(r.body["detail"].as_str().unwrap().contains(field), "{r:?}");
    }
    let r = patch(serde_json::json!({"email": "not an address"}), etag.clone()).await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "email");
    let r = patch(
        serde_json::json!({"email_verified": true}),
        "\"0000\"".into(),
    )
    .await;
    assert_problem(&r, 412, "precondition-failed");
    assert_eq!(
        db.snapshot().await,
        before,
        "refused patches change nothing"
    );

    let r = patch(
        serde_json::json!({"email_verified": true, "profile": {"name": "Alice A."}}),
        etag.clone(),
    )
    .await;
    assert_eq!(r.ok()["email_verified"], true);
    assert_eq!(r.body["profile"]["name"], "Alice A.");
    assert_eq!(
        r.body["email"], "Alice@Example.com",
        "untouched members stay"
    );
    assert_ne!(r.header("etag").unwrap(), etag);
    let r = patch(serde_json::json!({"email": null}), etag).await;
    assert_problem(&r, 412, "precondition-failed");
    let r = patch(serde_json::json!({"email": null}), String::new()).await;
    assert!(r.ok()["email"].is_null());
    assert_audited(&db.audit().await, &format!("user.updated|desk|{id}|"));
}

async fn stats_count_what_the_tenant_has_and_issues(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let ops = management_client(&db, "ops", "gatehouse:stats:read").await;
    let svc = create_client(&db, "svc", &["--tenant", "main"]).await;
    for _ in 0..3 {
        token(&server, &svc, &[]).await.ok();
    }
    let t = api_token(&server, &db, &ops, "gatehouse:stats:read").await;
    let r = call(&server, reqwest::Method::GET, "/api/v1/stats", &t).await;
    let stats = r.ok();
    assert_eq!(stats["clients"], 2, "{stats}");
    assert_eq!(stats["users"], 0, "{stats}");
    assert_eq!(stats["active_sessions"], 0, "{stats}");
    // svc's three and ops' own token, counted before the answer.
    assert_eq!(
        stats["tokens_issued_last_hour"]["client_credentials"], 4,
        "{stats}"
    );
    assert_eq!(
        stats["tokens_issued_last_day"]["client_credentials"], 4,
        "{stats}"
    );
}
