//! One module per command; each owns its clap flags (`…Args`) and its `run`.

pub mod check_config;
pub mod cleanup;
pub mod demo;
pub mod events;
pub(crate) mod events_live;
pub mod init;
pub mod migrate;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod status;
pub mod undo;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Events(args) => events::run(args, &cli.global).await,
        Command::Migrate(args) => migrate::run(args, &cli.global).await,
        Command::Init(args) => init::run(args, &cli.global).await,
        Command::CheckConfig(args) => check_config::run(args, &cli.global).await,
        Command::Simulate(args) => simulate::run(args, &cli.global).await,
        Command::Replay(args) => replay::run(args, &cli.global).await,
        Command::Run(args) => run::run(args, &cli.global).await,
        Command::Cleanup(args) => cleanup::run(args, &cli.global).await,
        Command::Status(args) => status::run(args, &cli.global).await,
        Command::Undo(args) => undo::run(args, &cli.global).await,
        Command::Demo(args) => demo::run(args, &cli.global).await,
    }
}
