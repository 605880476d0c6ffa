//! Configuration parsing: any YAML (and environment overrides) gives settings or
//! problems with paths, never a panic.
#![no_main]

use authserver::config::{Source, from_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "ENCRYPTION_KEY" => {
            Some("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned())
        }
        "DATABASE_URL" => Some("postgres://u@localhost/db".to_owned()),
        _ => None,
    };
    let _ = from_yaml(text, &Source::default(), &env);
    let dev = Source {
        dev: true,
        ..Source::default()
    };
    let _ = from_yaml(text, &dev, &|_: &str| None);
});
