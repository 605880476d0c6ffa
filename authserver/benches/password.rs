//! Single-thread Argon2id rate with the configured parameters (OWASP: m=19456 KiB, t=2,
//! p=1): the ceiling a password login is compared against (`benches/load.sh` prints it
//! next to logins/s). Every login spends one `verify`; setting a password spends one
//! `hash`. The last line is the rate of one `verify` loop per core at once: Argon2id is
//! bound by memory bandwidth, so the cores slow each other down, and that rate — not
//! the single-thread rate times the cores — is what a machine can reach.
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

fn report(name: &str, threads: usize, (n, secs): (u64, f64)) {
    #[allow(clippy::cast_precision_loss)]
    let (n, per_thread) = (n as f64, threads as f64);
    let on = if threads == 1 {
        "on one thread".to_owned()
    } else {
        format!("on {threads} threads at once")
    };
    println!(
        "argon2id {name} (m={} KiB, t={}, p={}): {:.1} /s {on}, {:.1} ms each",
        Argon2Params::OWASP.memory_kib,
        Argon2Params::OWASP.iterations,
        Argon2Params::OWASP.parallelism,
        n / secs,
        secs * 1000.0 * per_thread / n,
    );
}

fn main() {
    let password = SecretString::from("correct horse battery staple".to_owned());
    let stored = hash(&password, Argon2Params::OWASP).expect("hash");
    report(
        "hash",
        1,
        time(|| {
            let _ = hash(&password, Argon2Params::OWASP).expect("hash");
        }),
    );
    report(
        "verify",
        1,
        time(|| assert!(verify(&password, &stored), "the password verifies")),
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cores > 1 {
        let runs: Vec<(u64, f64)> = std::thread::scope(|s| {
            let loops: Vec<_> = (0..cores)
                .map(|_| {
                    s.spawn(|| {
                        time(|| assert!(verify(&password, &stored), "the password verifies"))
                    })
                })
                .collect();
            loops
                .into_iter()
                .map(|l| l.join().expect("a verify loop"))
                .collect()
        });
        let n = runs.iter().map(|r| r.0).sum();
        let secs = runs.iter().map(|r| r.1).fold(0.0, f64::max);
        report("verify", cores, (n, secs));
    }
}
