//! JWS/JWT parsing and signature verification against keys of every algorithm we accept:
//! no input may panic, and nothing but a real signature verifies.
#![no_main]

use authserver::crypto::jws;
use authserver::domain::signing_key::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = jws::parse(token) else {
        return;
    };
    let _ = parsed.alg();
    let _ = parsed.header_str("kid");
    let _ = parsed.claim_i64("exp");
    let keys = [
        json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
        json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        json!({"kty": "RSA", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}),
    ];
    for key in &keys {
        // Random bytes never carry a valid signature by one of these keys.
        assert!(parsed.verify(key, &Algorithm::ALL).is_err());
    }
    if let Some(jwk) = parsed.header.get("jwk") {
        let _ = jws::thumbprint(jwk);
        let _ = jws::has_private_members(jwk);
        let _ = parsed.verify(jwk, &Algorithm::ALL);
    }
});
