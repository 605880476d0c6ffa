//! Discovery and JWKS: what `serve --dev` publishes on a fresh data dir, and that only
//! public key members ever leave the server.

use std::os::unix::fs::PermissionsExt as _;

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use crate::harness::{Backend, Cli, Server, TestDb, free_port};

/// JWK members that hold private key material (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Asserts the set has exactly one RSA, one EC P-256 and one OKP Ed25519 public key.
fn assert_one_key_per_algorithm(jwks: &Value) {
    let keys = jwks["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 3, "{jwks}");
    for key in keys {
        let obj = key.as_object().unwrap();
        for member in PRIVATE_MEMBERS {
            assert!(!obj.contains_key(member), "private member {member}: {key}");
        }
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert_eq!(key["use"], "sig", "{key}");
    }
    let find = |kty: &str| -> &Value {
        let of_type: Vec<_> = keys.iter().filter(|k| k["kty"] == kty).collect();
        assert_eq!(of_type.len(), 1, "one {kty} key: {jwks}");
        of_type[0]
    };
    let rsa = find("RSA");
    assert_eq!(rsa["alg"], "RS256");
    assert!(
        rsa["n"].as_str().unwrap().len() >= 342,
        "≥ 2048-bit modulus"
    );
    assert_eq!(rsa["e"], "AQAB");
    let ec = find("EC");
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["crv"], "P-256");
    assert!(ec["x"].is_string() && ec["y"].is_string(), "{ec}");
    let okp = find("OKP");
    assert_eq!(okp["alg"], "EdDSA");
    assert_eq!(okp["crv"], "Ed25519");
    assert!(okp["x"].is_string(), "{okp}");
}

/// `public, max-age=N`, returning N.
fn max_age(headers: &HeaderMap) -> u64 {
    let cc = headers[CACHE_CONTROL].to_str().unwrap();
    let n = cc
        .strip_prefix("public, max-age=")
        .unwrap_or_else(|| panic!("Cache-Control {cc:?}"));
    n.parse().unwrap()
}

/// Follows the discovery document of the issuer served at the root to its `jwks_uri`.
async fn discover_jwks(server: &Server, issuer: &str) -> (HeaderMap, Value) {
    let (status, _, doc) = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["issuer"], issuer);
    let jwks_uri = doc["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{issuer}/jwks"));
    let path = url::Url::parse(jwks_uri).unwrap().path().to_owned();
    let (status, headers, jwks) = server.get_json(&path).await;
    assert_eq!(status, StatusCode::OK, "{jwks}");
    assert_eq!(headers[CONTENT_TYPE], "application/jwk-set+json");
    (headers, jwks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serve_on_a_fresh_data_dir_publishes_one_key_per_algorithm_and_reuses_them() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let port = free_port();
    let dev = Cli::new().args(["--dev", "--data-dir", &data.display().to_string()]);
    // The dev issuer is `localhost` (passkeys need a name, not an IP address).
    let server = dev.serve(port).await.with_host(format!("localhost:{port}"));
    let issuer = format!("http://localhost:{port}");

    let (headers, jwks) = discover_jwks(&server, &issuer).await;
    assert_one_key_per_algorithm(&jwks);
    let age = max_age(&headers);
    assert!(age > 0 && age <= 7200 / 8, "max-age {age} ≤ overlap/8");

    let key_file = data.join("encryption.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "dev key file mode {mode:o}");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(data.join("authserver.db").exists());
    assert!(server.logs().contains("DEVELOPMENT MODE"), "loud warning");
    let kids = server.kids("/jwks").await;

    let (status, _, _) = server.terminate().await;
    assert!(status.success());
    let again = dev.serve(port).await.with_host(format!("localhost:{port}"));
    assert_eq!(
        again.kids("/jwks").await,
        kids,
        "second start reuses the keys"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    assert!(
        !again.logs().contains("DEVELOPMENT MODE: generated"),
        "key file reused"
    );
}

on_both_backends!(serve_publishes_only_public_members_with_a_short_cache_lifetime);

async fn serve_publishes_only_public_members_with_a_short_cache_lifetime(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db
        .cli()
        .env("GATEHOUSE_KEYS_OVERLAP_WINDOW_SECONDS", "800")
        .serve_in_process(db.port)
        .await;
    let (headers, jwks) = discover_jwks(&server, &db.issuer("")).await;
    assert_one_key_per_algorithm(&jwks);
    let age = max_age(&headers);
    assert!(age > 0 && age <= 800 / 8, "max-age {age} ≤ overlap/8");
    // Private parts are stored sealed, never as plain JWK members.
    let stored = db.rows("SELECT public_jwk FROM signing_keys").await;
    assert_eq!(stored.len(), 3);
    for jwk in stored {
        let jwk: Value = serde_json::from_str(&jwk).unwrap();
        for member in PRIVATE_MEMBERS {
            assert!(jwk.get(member).is_none(), "stored public JWK has {member}");
        }
    }
}
