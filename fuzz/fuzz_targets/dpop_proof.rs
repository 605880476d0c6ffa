//! DPoP proof validation (RFC 9449 §4.3), the stateless part every request runs first.
#![no_main]

use authserver::domain::signing_key::Algorithm;
use authserver::oauth::dpop::{Expectation, check_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    for token in [None, Some("an-access-token")] {
        let expect = Expectation {
            method: "POST",
            url: "https://id.example.com/t/acme/token",
            access_token: token,
        };
        let _ = check_proof(proof, &Algorithm::ALL, &expect, 1_767_225_600, 60);
        let _ = check_proof(proof, &Algorithm::ALL, &expect, i64::MAX, i64::MAX);
        let _ = check_proof(proof, &Algorithm::ALL, &expect, i64::MIN, 60);
    }
});
