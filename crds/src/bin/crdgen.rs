//! `crdgen`: writes the generated CRD YAML and reference docs, or with `--check` fails
//! (exit 1) when the committed files differ from what the Rust types generate.
//!
//! ```text
//! cargo run -p crds --bin crdgen              # write
//! cargo run -p crds --bin crdgen -- --check   # CI
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: crdgen [--check] [--root DIR]

Writes charts/gatehouse/crds/*.yaml, manifests/crds.yaml and docs/crds.md from the
types in crds/src/. With --check, writes nothing and exits 1 if a committed file differs.
DIR is the repository root (default: the nearest ancestor of the current directory that
contains crds/Cargo.toml).";

fn main() -> ExitCode {
    let mut check = false;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(dir) => root = Some(dir.into()),
                None => return usage_error("--root needs a directory"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let Some(root) = root.or_else(find_root) else {
        return usage_error(
            "cannot find the repository root (no crds/Cargo.toml above the current directory); pass --root",
        );
    };

    if check {
        let mismatches = crds::generate::check(&root);
        if mismatches.is_empty() {
            println!("crdgen: generated files are up to date");
            return ExitCode::SUCCESS;
        }
        for m in &mismatches {
            eprintln!("crdgen: {}: {}", m.path, m.summary);
        }
        eprintln!(
            "crdgen: {} generated file(s) out of date; run `cargo run -p crds --bin crdgen` and commit the result",
            mismatches.len()
        );
        return ExitCode::FAILURE;
    }

    match crds::generate::write(&root) {
        Ok(changed) if changed.is_empty() => {
            println!("crdgen: generated files are up to date");
            ExitCode::SUCCESS
        }
        Ok(changed) => {
            for path in changed {
                println!("crdgen: wrote {path}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "crdgen: failed to write generated files under {}: {e}",
                root.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn find_root() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|dir| dir.join("crds/Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("crdgen: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
