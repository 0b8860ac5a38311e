//! `callwatch simulate`: serve recorded AMI sessions as a fake Asterisk (the built-in simulator).

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {}

/// Runs `callwatch simulate`.
pub async fn run(_args: SimulateArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch simulate is not implemented yet")
}
