//! `callwatch check-config`: validate the configuration, including the mapped table's columns.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {}

/// Runs `callwatch check-config`.
pub async fn run(_args: CheckConfigArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch check-config is not implemented yet")
}
