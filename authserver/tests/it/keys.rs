//! `authserver keys …`: bootstrap, rotation, listing, KEK re-encryption, and refusing to
//! work with a wrong ENCRYPTION_KEY.

use std::time::Duration;

use serde_json::Value;

use crate::harness::oauth::{access_token, create_client};
use crate::harness::{Backend, Cli, TestDb, free_port, new_encryption_key};

/// `keys generate` with the database's own key: three keys for tenant `main`.
async fn with_keys(backend: Backend) -> TestDb {
    let db = TestDb::migrated(backend).await;
    let out = db.cli().args(["keys", "generate"]).run().await;
    out.assert_success();
    assert_eq!(
        out.stdout.matches("tenant main: generated").count(),
        3,
        "{out}"
    );
    db
}

fn serve_args() -> Vec<String> {
    vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

on_both_backends!(
    wrong_encryption_key_fails_clearly_and_adds_no_keys,
    rotate_for_an_unknown_tenant_fails_and_changes_nothing,
    generate_on_a_tenant_with_keys_is_a_no_op,
    rotate_with_a_promotion_delay_publishes_pending_keys_beside_active_ones,
    rotate_publishes_new_keys_first_and_the_old_ones_keep_signing,
    rotate_now_signs_with_new_keys_at_once_and_withdraws_the_old_ones,
    conditional_requests_get_304_until_the_keys_change,
    reencrypt_moves_private_keys_to_the_new_encryption_key,
    reencrypt_with_a_wrong_or_missing_old_key_changes_nothing,
);

async fn wrong_encryption_key_fails_clearly_and_adds_no_keys(backend: Backend) {
    let db = with_keys(backend).await;
    let before = db.key_snapshot().await;
    let wrong = db.cli().env("ENCRYPTION_KEY", new_encryption_key());
    let commands: [Vec<String>; 3] = [
        serve_args(),
        vec!["keys".into(), "generate".into()],
        vec!["keys".into(), "rotate".into()],
    ];
    for args in commands {
        let out = wrong.clone().args(args.clone()).run().await;
        assert!(!out.status.success(), "{args:?} must fail: {out}");
        out.assert_stderr_contains("wrong ENCRYPTION_KEY");
        assert_eq!(db.key_snapshot().await, before, "{args:?} changed keys");
    }
}

async fn rotate_for_an_unknown_tenant_fails_and_changes_nothing(backend: Backend) {
    let db = with_keys(backend).await;
    let before = db.key_snapshot().await;
    for sub in ["rotate", "generate", "list"] {
        let out = db.cli().args(["keys", sub, "--tenant", "nope"]).run().await;
        out.assert_code(1)
            .assert_stderr_contains(r#"tenant "nope" does not exist"#);
        assert_eq!(db.key_snapshot().await, before, "keys {sub}");
    }
    assert_eq!(db.scalar("SELECT count(*) FROM tenants").await, 1);
}

async fn generate_on_a_tenant_with_keys_is_a_no_op(backend: Backend) {
    let db = with_keys(backend).await;
    let before = db.key_snapshot().await;
    let out = db.cli().args(["keys", "generate"]).run().await;
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "tenant main: keys already exist, nothing to do"
    );
    assert_eq!(db.key_snapshot().await, before);
}

/// `keys list --json` as (kid, alg, state) sorted.
async fn listed(db: &TestDb) -> Vec<(String, String, String)> {
    let out = db.cli().args(["keys", "list", "--json"]).run().await;
    out.assert_success();
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut keys: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["tenant"], "main");
            let s = |f: &str| k[f].as_str().unwrap().to_owned();
            (s("kid"), s("alg"), s("state"))
        })
        .collect();
    keys.sort();
    keys
}

async fn rotate_with_a_promotion_delay_publishes_pending_keys_beside_active_ones(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let old = server.kids("/jwks").await;
    assert_eq!(old.len(), 3);

    let delayed = db
        .cli()
        .env("GATEHOUSE_KEYS_PROMOTION_DELAY_SECONDS", "3600");
    let out = delayed.clone().args(["keys", "rotate"]).run().await;
    out.assert_success();
    assert_eq!(out.stdout.matches("tenant main: new ").count(), 3, "{out}");

    let keys = listed(&db).await;
    assert_eq!(keys.len(), 6, "{keys:?}");
    for alg in ["RS256", "ES256", "EdDSA"] {
        let states: Vec<&str> = keys
            .iter()
            .filter(|k| k.1 == alg)
            .map(|k| k.2.as_str())
            .collect();
        assert_eq!(states.len(), 2, "{alg}: {keys:?}");
        assert!(
            states.contains(&"active") && states.contains(&"pending"),
            "{alg}: {keys:?}"
        );
    }
    for (kid, _, state) in &keys {
        let expected = if old.contains(kid) {
            "active"
        } else {
            "pending"
        };
        assert_eq!(state, expected, "{kid}");
    }

    // The running server publishes the new keys beside the old ones.
    let all: Vec<String> = {
        let mut v: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        v.sort();
        v
    };
    server
        .wait_for_kids("/jwks", Duration::from_secs(5), |kids| {
            kids == all.as_slice()
        })
        .await;
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("gatehouse_signing_keys{state=\"pending\"} 3"),
        "{metrics}"
    );

    // Nothing is due yet: `--if-due` (the cron form) changes nothing.
    let before = db.key_snapshot().await;
    let out = delayed.args(["keys", "rotate", "--if-due"]).run().await;
    out.assert_success();
    assert_eq!(out.stdout.trim(), "tenant main: no rotation due");
    assert_eq!(db.key_snapshot().await, before);
}

/// The `kid` in a compact JWS header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("tokens name their key")
}

/// The default configuration: a rotated-in key waits the promotion delay (the JWKS
/// max-age plus a margin, 960 s), so a relying party that fetched the JWKS just before
/// the rotation can verify every token issued after it.
async fn rotate_publishes_new_keys_first_and_the_old_ones_keep_signing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let client = create_client(&db, "svc", &[]).await;
    let cached_by_rp = server.kids("/jwks").await;
    let before = access_token(&server, &client).await;
    assert!(cached_by_rp.contains(&kid_of(&before)));

    let out = db.cli().args(["keys", "rotate"]).run().await;
    out.assert_success();
    assert_eq!(out.stdout.matches("tenant main: new ").count(), 3, "{out}");
    let keys = listed(&db).await;
    let new: Vec<String> = keys
        .iter()
        .filter(|k| !cached_by_rp.contains(&k.0))
        .map(|k| {
            assert_eq!(k.2, "pending", "{keys:?}");
            k.0.clone()
        })
        .collect();
    assert_eq!(new.len(), 3, "{keys:?}");
    server
        .wait_for_kids("/jwks", Duration::from_secs(5), |kids| {
            new.iter().all(|k| kids.contains(k))
        })
        .await;

    // Tokens issued after the rotation are still signed with a key the relying party has.
    for _ in 0..3 {
        let after = access_token(&server, &client).await;
        let kid = kid_of(&after);
        assert!(cached_by_rp.contains(&kid), "{kid} not in {cached_by_rp:?}");
    }
}

async fn rotate_now_signs_with_new_keys_at_once_and_withdraws_the_old_ones(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let client = create_client(&db, "svc", &[]).await;
    let old = server.kids("/jwks").await;
    // A scheduled rotation is pending when the key turns out to be compromised.
    db.cli()
        .args(["keys", "rotate"])
        .run()
        .await
        .assert_success();

    let out = db.cli().args(["keys", "rotate", "--now"]).run().await;
    out.assert_success();
    assert!(
        out.stdout
            .contains("tenant main: emergency rotation: the new keys sign now"),
        "{out}"
    );
    let keys = listed(&db).await;
    let mut active: Vec<String> = keys
        .iter()
        .filter(|k| k.2 == "active")
        .map(|k| k.0.clone())
        .collect();
    active.sort();
    assert_eq!(active.len(), 3, "{keys:?}");
    assert!(active.iter().all(|k| !old.contains(k)), "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.2 == "retired").count(),
        6,
        "the old and the pending keys: {keys:?}"
    );
    server
        .wait_for_kids("/jwks", Duration::from_secs(5), |kids| {
            kids == active.as_slice()
        })
        .await;
    let kid = kid_of(&access_token(&server, &client).await);
    assert!(active.contains(&kid), "{kid} not in {active:?}");

    // `--now` is an emergency, never the cron form.
    let out = db
        .cli()
        .args(["keys", "rotate", "--now", "--if-due"])
        .run()
        .await;
    out.assert_code(2)
        .assert_stderr_contains("cannot be used with");
}

async fn reencrypt_moves_private_keys_to_the_new_encryption_key(backend: Backend) {
    let db = with_keys(backend).await;
    let old_kek_ids = db.rows("SELECT DISTINCT kek_id FROM signing_keys").await;
    assert_eq!(old_kek_ids.len(), 1);
    let new_key = new_encryption_key();
    let with_new = db.cli().env("ENCRYPTION_KEY", new_key.as_str());

    let out = with_new
        .clone()
        .env("OLD_ENCRYPTION_KEY", db.key())
        .args(["keys", "reencrypt", "--old-key-env", "OLD_ENCRYPTION_KEY"])
        .run()
        .await;
    out.assert_success();
    assert!(
        out.stdout.contains("re-encrypted 3 private key(s)"),
        "{out}"
    );
    let new_kek_ids = db.rows("SELECT DISTINCT kek_id FROM signing_keys").await;
    assert_eq!(new_kek_ids.len(), 1);
    assert_ne!(new_kek_ids, old_kek_ids);

    // The keys open under the new key: serve starts and publishes the same kids.
    let kids_before: Vec<String> = {
        let mut v = db.rows("SELECT kid FROM signing_keys").await;
        v.sort();
        v
    };
    let server = with_new.serve(db.port).await;
    assert_eq!(server.kids("/jwks").await, kids_before);
    drop(server);

    // The old key no longer works.
    let out = db.cli().args(serve_args()).run().await;
    assert!(!out.status.success(), "{out}");
    out.assert_stderr_contains("wrong ENCRYPTION_KEY");

    // Running it again finds nothing left to do.
    let out = with_new
        .env("OLD_ENCRYPTION_KEY", db.key())
        .args(["keys", "reencrypt", "--old-key-env", "OLD_ENCRYPTION_KEY"])
        .run()
        .await;
    out.assert_success();
    assert!(
        out.stdout.contains("re-encrypted 0 private key(s)"),
        "{out}"
    );
}

async fn reencrypt_with_a_wrong_or_missing_old_key_changes_nothing(backend: Backend) {
    let db = with_keys(backend).await;
    let before = db.key_snapshot().await;
    let reencrypt = |old: Option<&str>| -> Cli {
        let cli = db.cli().env("ENCRYPTION_KEY", new_encryption_key()).args([
            "keys",
            "reencrypt",
            "--old-key-env",
            "OLD_ENCRYPTION_KEY",
        ]);
        match old {
            Some(v) => cli.env("OLD_ENCRYPTION_KEY", v),
            None => cli,
        }
    };

    let out = reencrypt(Some(&new_encryption_key())).run().await;
    out.assert_code(1)
        .assert_stderr_contains("wrong ENCRYPTION_KEY");
    assert_eq!(db.key_snapshot().await, before);

    let out = reencrypt(None).run().await;
    out.assert_code(1).assert_stderr_contains(
        "environment variable OLD_ENCRYPTION_KEY (--old-key-env) is not set",
    );
    assert_eq!(db.key_snapshot().await, before);

    let out = reencrypt(Some("abc")).run().await;
    out.assert_code(1)
        .assert_stderr_contains("OLD_ENCRYPTION_KEY is not a valid ENCRYPTION_KEY");
    assert!(!out.stderr.contains("abc\n"), "{out}");
    assert_eq!(db.key_snapshot().await, before);
}

/// A relying party polling with `If-None-Match`: `304` without a body while nothing
/// changed, the new set with a new tag as soon as a rotation publishes keys.
async fn conditional_requests_get_304_until_the_keys_change(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let conditional = |path: &'static str, tag: String| {
        let http = server.http().clone();
        let url = server.url(path);
        async move {
            http.get(url)
                .header(reqwest::header::IF_NONE_MATCH, tag)
                .send()
                .await
                .unwrap()
        }
    };
    for path in ["/jwks", "/.well-known/openid-configuration"] {
        let (status, headers, _) = server.get_json(path).await;
        assert_eq!(status, 200);
        let tag = headers["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.len() > 10, "{tag}");
        let again = conditional(path, tag.clone()).await;
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], tag.as_str());
        assert!(again.headers().contains_key("cache-control"));
        assert!(again.text().await.unwrap().is_empty());
        let weak = conditional(path, format!("\"old\", W/{tag}")).await;
        assert_eq!(
            weak.status(),
            304,
            "{path}: a weak match counts for If-None-Match"
        );
        let other = conditional(path, "\"something-else\"".to_owned()).await;
        assert_eq!(other.status(), 200, "{path}");
    }

    let (_, headers, before) = server.get_json("/jwks").await;
    let old_tag = headers["etag"].to_str().unwrap().to_owned();
    db.cli()
        .args(["keys", "rotate"])
        .run()
        .await
        .assert_success();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = conditional("/jwks", old_tag.clone()).await;
        if r.status() == 200 {
            let tag = r.headers()["etag"].to_str().unwrap().to_owned();
            let after: Value = r.json().await.unwrap();
            assert_ne!(tag, old_tag);
            assert_eq!(
                after["keys"].as_array().unwrap().len(),
                before["keys"].as_array().unwrap().len() + 3,
                "{after}"
            );
            break;
        }
        assert_eq!(r.status(), 304);
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation never reached the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
