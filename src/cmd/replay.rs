//! `callwatch replay`: run the real pipeline over recorded sessions on virtual time.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {}

/// Runs `callwatch replay`.
pub async fn run(_args: ReplayArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch replay is not implemented yet")
}
