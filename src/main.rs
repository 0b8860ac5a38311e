//! `callwatch`: the command-line entry point. Parsing lives in `cli`, each command in `cmd::*`.

use std::process::ExitCode;

use callwatch::{cli, cmd, telemetry};

use clap::Parser;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::Demo(_)) && cli.global.log == "info" {
        // The demo prints its own progress; only problems go to the log.
        cli.global.log = "error,ami=off".into();
    }
    telemetry::init(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", callwatch::error_text::one_line(&err));
            ExitCode::from(1)
        }
    }
}
