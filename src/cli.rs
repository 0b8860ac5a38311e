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
}
