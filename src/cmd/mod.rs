//! One module per command.

pub mod events;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Events(args) => events::run(args, &cli.global).await,
    }
}
