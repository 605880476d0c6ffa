//! Generates the admin gRPC server (and a client, for tests) from `proto/`, and links a
//! release binary's code in the order of `link/symbol-order.txt`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use a system protoc when PROTOC is set; otherwise the vendored one, so a fresh
    // machine needs nothing installed.
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => std::path::PathBuf::from(p),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["../proto/gatehouse/admin/v1/admin.proto"],
        &["../proto"],
    )?;
    println!("cargo:rerun-if-changed=../proto");
    order_symbols();
    Ok(())
}

/// The functions a server runs, listed by `benches/symbol-order.sh`, are linked first and
/// together: a page fault on code maps the 64 KiB around it, and code spread over the
/// whole binary made 15 of its 19 MiB resident right after start. Only where the linker
/// is known to be rust-lld (the default for x86_64 Linux since Rust 1.90) and for the
/// release profile; `GATEHOUSE_SYMBOL_ORDER=0` turns it off.
fn order_symbols() {
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let own_linker = flags.contains("linker")
        || flags.contains("fuse-ld")
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("PROFILE") != "release"
        || var("GATEHOUSE_SYMBOL_ORDER") == "0"
        || own_linker
    {
        return;
    }
    let list = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/symbol-order.txt");
    let Some(path) = list.to_str() else { return };
    // `-Wl,` splits its argument at commas.
    if !list.is_file() || path.contains([',', ' ']) {
        return;
    }
    println!("cargo:rustc-link-arg-bin=authserver=-Wl,--symbol-ordering-file={path}");
    // Names the list has and this build does not (functions since renamed or removed).
    println!("cargo:rustc-link-arg-bin=authserver=-Wl,--no-warn-symbol-ordering");
}
