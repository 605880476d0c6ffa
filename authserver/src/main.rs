//! `authserver` binary: parse the command line and run it.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = authserver::cli::Cli::parse();
    authserver::commands::run(cli).await
}
