//! `gatehouse-operator`: parse flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use operator::args::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    operator::telemetry::init(args.log_format);
    match operator::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gatehouse-operator failed");
            ExitCode::FAILURE
        }
    }
}
