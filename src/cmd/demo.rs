//! `callwatch demo`: replay a recorded outage against a temporary SQLite database and show what callwatch does.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::demo::{self, DemoOptions};

/// Flags of `callwatch demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Speed-up factor of the recording (the 51 s outage recording plays in 51/X s).
    #[arg(long, default_value_t = 4.0)]
    pub speed: f64,
    /// Print one JSON object instead of the progress lines and the table.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML report with a timeline of the rows and the AMI connection to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
}

/// Runs `callwatch demo`.
pub async fn run(args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !args.json {
        println!(
            "callwatch demo: a real Asterisk 22 recording (20+ calls, a 35 s AMI outage) replayed {}x faster by the \
             built-in simulator, a temporary SQLite calls table seeded as the application left it, and the real daemon.",
            args.speed
        );
    }
    let report = demo::run(DemoOptions {
        speed: args.speed,
        progress: !args.json,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        demo::print(&report);
    }
    if let Some(path) = &args.report {
        crate::report::write(path, &demo::timeline(&report))?;
        if !args.json {
            println!("report written to {}", path.display());
        }
    }
    Ok(if report.live_closed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
