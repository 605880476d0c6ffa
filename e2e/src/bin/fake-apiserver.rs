//! Runs the fake Kubernetes API server on its own, for poking at it with kubectl or a
//! controller under development:
//!
//! ```sh
//! cargo run -p e2e --bin fake-apiserver
//! # prints: KUBECONFIG=/tmp/fake-apiserver-…/kubeconfig
//! kubectl --kubeconfig … apply --validate=false -f manifests/examples/
//! ```
//!
//! Images named `authserver` and `gatehouse-operator` map to the workspace's debug
//! builds, so Jobs the operator creates run locally. Stops on Ctrl-C.

use anyhow::Context as _;
use e2e::{FakeApiServer, ImageMapping, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let fake = FakeApiServer::start_with(Options {
        images: vec![
            ImageMapping::cargo_binary("authserver"),
            ImageMapping::cargo_binary("gatehouse-operator"),
        ],
        ..Options::default()
    })
    .await
    .context("failed to start the fake API server")?;
    println!("listening on {}", fake.url());
    println!("KUBECONFIG={}", fake.kubeconfig_path().display());
    tokio::signal::ctrl_c()
        .await
        .context("failed to wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(())
}
