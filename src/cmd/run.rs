//! `callwatch run`: the daemon: watch every configured Asterisk and close orphaned calls.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::daemon::{self, DaemonOptions};

/// Flags of `callwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch this AMI server instead of the configured ones (`ami://user:secret@host:5038?server=NAME`).
    #[arg(long, env = "CALLWATCH_AMI_URL", hide_env_values = true)]
    pub ami: Option<String>,
    /// Override `[http] listen` (e.g. `127.0.0.1:0` for an ephemeral port).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Stop after this long (e.g. `90s`); default: run until SIGTERM/SIGINT.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub exit_after: Option<Duration>,
    /// Print a JSON summary of what was closed when the daemon stops: `closed_total`, and with
    /// `--exit-after` every closed row (`closed`; a daemon that runs until a signal only counts them).
    #[arg(long)]
    pub json: bool,
}

/// Runs `callwatch run`.
pub async fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut settings = crate::settings::load(global)?;
    if let Some(url) = &args.ami {
        settings.servers = vec![crate::settings::ServerConfig::from_cli_url(
            url,
            std::env::var_os(crate::settings::AMI_SECRET_ENV).is_some(),
        )];
        settings.validate()?;
    }
    if let Some(listen) = &args.http_listen {
        settings.http.listen = listen.clone();
    }
    let summary = daemon::run(
        settings,
        DaemonOptions {
            run_for: args.exit_after,
            signals: true,
            // A bounded run reports its closes (`--json`); an endless one only counts them.
            forget_closed_rows: args.exit_after.is_none(),
            ..DaemonOptions::default()
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}
