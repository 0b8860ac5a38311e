//! `callwatch status`: totals, in-progress and stuck calls, closes by reason, daemon health.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Runs `callwatch status`.
pub async fn run(_args: StatusArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch status is not implemented yet")
}
