//! Integration tests of the crds crate: the example resources, the CEL rules as the API
//! server would compile them, and the committed generated files. One binary, modules
//! per concern.

// clippy.toml allows these inside #[test] functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod cel;
mod examples;
mod generated;
mod structural;

use std::path::{Path, PathBuf};

/// The repository root (the crate's parent directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crds/ lives in the repository root")
        .to_path_buf()
}
