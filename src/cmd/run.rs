//! `callwatch run`: the daemon: watch every configured Asterisk and close orphaned calls.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {}

/// Runs `callwatch run`.
pub async fn run(_args: RunArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch run is not implemented yet")
}
