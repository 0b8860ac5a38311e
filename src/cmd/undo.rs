//! `callwatch undo`: restore rows that callwatch closed.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {}

/// Runs `callwatch undo`.
pub async fn run(_args: UndoArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch undo is not implemented yet")
}
