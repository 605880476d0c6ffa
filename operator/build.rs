//! Generates the admin gRPC client (no server) from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use a system protoc when PROTOC is set; otherwise the vendored one, so a fresh
    // machine needs nothing installed.
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => std::path::PathBuf::from(p),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(
            config,
            &["../proto/gatehouse/admin/v1/admin.proto"],
            &["../proto"],
        )?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}
