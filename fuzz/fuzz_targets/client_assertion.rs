//! private_key_jwt assertion validation (RFC 7523 §3): parsing, signature and claims.
#![no_main]

use authserver::crypto::jws;
use authserver::domain::signing_key::Algorithm;
use authserver::oauth::client_auth::assertion_claims;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(assertion) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = jws::parse(assertion) else {
        return;
    };
    let key = json!({"kty": "EC", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    assert!(parsed.verify(&key, &Algorithm::ALL).is_err());
    // The claim checks run on whatever the claims are (they never see an unverified
    // token in the server; here they must still not panic on any value).
    let audiences = ["https://id.example.com/t/acme"];
    for (now, max) in [(1_767_225_600, 300), (i64::MAX, i64::MAX), (i64::MIN, 0)] {
        if let Some((jti, _)) = assertion_claims(&parsed, &audiences, now, max) {
            assert!(!jti.is_empty() && jti.len() <= 256);
        }
    }
});
