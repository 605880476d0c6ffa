//! Single-thread Argon2id rate with the configured parameters (OWASP: m=19456 KiB, t=2,
//! p=1): the ceiling a password login is compared against (`benches/load.sh` prints it
//! next to logins/s). Every login spends one `verify`; setting a password spends one
//! `hash`.
//!
//! `cargo bench -p authserver --bench password` (release profile; no extra framework).

use std::time::{Duration, Instant};

use authserver::config::Argon2Params;
use authserver::crypto::password::{hash, verify};
use secrecy::SecretString;

/// Runs `op` on this thread for a fixed wall time after a short warm-up; returns
/// (operations, seconds).
fn time(mut op: impl FnMut()) -> (u64, f64) {
    for _ in 0..3 {
        op();
    }
    let window = Duration::from_secs(4);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < window {
        op();
        n += 1;
    }
    (n, start.elapsed().as_secs_f64())
}

fn report(name: &str, (n, secs): (u64, f64)) {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    println!(
        "argon2id {name} (m={} KiB, t={}, p={}): {:.1} /s on one thread, {:.1} ms each",
        Argon2Params::OWASP.memory_kib,
        Argon2Params::OWASP.iterations,
        Argon2Params::OWASP.parallelism,
        n / secs,
        secs * 1000.0 / n,
    );
}

fn main() {
    let password = SecretString::from("correct horse battery staple".to_owned());
    let stored = hash(&password, Argon2Params::OWASP).expect("hash");
    report(
        "hash",
        time(|| {
            let _ = hash(&password, Argon2Params::OWASP).expect("hash");
        }),
    );
    report(
        "verify",
        time(|| assert!(verify(&password, &stored), "the password verifies")),
    );
}
