//! `callwatch demo`: replay a recorded outage against a temporary SQLite database and show what callwatch does.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs `callwatch demo`.
pub async fn run(_args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    println!("callwatch demo: coming in the next release (the daemon it demonstrates is still being built).");
    Ok(ExitCode::SUCCESS)
}
