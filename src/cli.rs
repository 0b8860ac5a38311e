//! Command-line interface (clap). Each command's own flags live next to its implementation in `cmd::*`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;

/// callwatch: keeps a call-tracking database honest against Asterisk's live channels.
#[derive(Debug, Parser)]
#[command(name = "callwatch", version, about)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "CALLWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://PATH, postgres://…, mysql://…).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `callwatch=debug`.
    #[arg(long, global = true, env = "CALLWATCH_LOG", default_value = "info")]
    pub log: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read an AMI byte stream (file, stdin or live) and print its messages or a summary.
    Events(cmd::events::EventsArgs),
    /// Create or upgrade the database schema (idempotent).
    Migrate(cmd::migrate::MigrateArgs),
    /// Write a commented callwatch.toml from a Laravel app's .env and config (`--laravel PATH`).
    Init(cmd::init::InitArgs),
    /// Validate the configuration, including the mapped table's columns.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Serve recorded AMI sessions as a fake Asterisk (the built-in simulator).
    Simulate(cmd::simulate::SimulateArgs),
    /// Run the real pipeline over recorded sessions on virtual time.
    Replay(cmd::replay::ReplayArgs),
    /// The daemon: watch every configured Asterisk and close orphaned calls.
    Run(cmd::run::RunArgs),
    /// One-shot cleanup of stuck calls (drop-in for the old cron command).
    Cleanup(cmd::cleanup::CleanupArgs),
    /// Totals, in-progress and stuck calls, closes by reason, daemon health.
    Status(cmd::status::StatusArgs),
    /// Restore rows that callwatch closed.
    Undo(cmd::undo::UndoArgs),
    /// Replay a recorded outage against a temporary SQLite database and show what callwatch does.
    Demo(cmd::demo::DemoArgs),
}
