//! `callwatch events`: read an AMI byte stream and print it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// Flags of `callwatch events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Recorded stream to read (`-` = stdin; `.gz` is decompressed).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// Runs `callwatch events`.
pub async fn run(_args: EventsArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("callwatch events is not implemented yet")
}
