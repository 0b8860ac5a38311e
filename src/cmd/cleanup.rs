//! `callwatch cleanup`: one-shot cleanup of stuck calls (drop-in for the old cron command).

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {}

/// Runs `callwatch cleanup`.
pub async fn run(_args: CleanupArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch cleanup is not implemented yet")
}
