//! `callwatch migrate`: create or upgrade the database schema (idempotent).

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// Runs `callwatch migrate`.
pub async fn run(_args: MigrateArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch migrate is not implemented yet")
}
