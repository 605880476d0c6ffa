//! Single-core signing rate per algorithm: the ceiling the token endpoint is compared
//! against (`benches/load.sh` reports tokens/s as a ratio of this).
//!
//! `cargo bench -p authserver --bench signing` (release profile; no extra framework).

use std::time::{Duration, Instant};

use authserver::crypto::signing::generate;
use authserver::domain::signing_key::Algorithm;
use serde_json::json;

fn main() {
    let claims = json!({
        "iss": "http://127.0.0.1:8080", "sub": "bench-client", "client_id": "bench-client",
        "aud": "urn:bench", "iat": 1_700_000_000, "exp": 1_700_000_600,
        "jti": "AAAAAAAAAAAAAAAAAAAAAA", "scope": "read",
    });
    for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let key = generate(alg, 2048).expect("key generation").key;
        // Warm up, then count signatures for a fixed wall time on this one thread.
        for _ in 0..100 {
            let _ = key.sign_jwt("at+jwt", &claims);
        }
        let window = Duration::from_secs(3);
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < window {
            let _ = key.sign_jwt("at+jwt", &claims).expect("sign");
            n += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!("sign_jwt {alg}: {rate:.0} tokens/s on one core");
    }
}
