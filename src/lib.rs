//! The `callwatch` runner as a library: the binary (`src/main.rs`) is a thin shell over it, and the
//! integration tests drive the same pipeline.
//!
//! Layout: `cli` (clap) and `cmd::*` (one module per command); `settings` (TOML + env + flags), `policy`;
//! `pipeline` (open rows × channel-map snapshot → reconciler → audited closes), `replay` (the pipeline on
//! recorded sessions and virtual time), `daemon` (supervisors, sweeps, shutdown); `broadcast` (Laravel
//! Redis, Pusher HTTP, webhook), `http` + `health` + `metrics` (endpoints), `shutdown` (signals,
//! sd-notify), `telemetry` (tracing), `redact` (secrets out of logs).
//!
//! Architecture invariant: this is the only crate that knows both the AMI client and the reconciler, and the
//! only one that uses anyhow, clap, signals, the metrics exporter or tracing-subscriber.

pub mod broadcast;
pub mod cli;
pub mod cmd;
pub mod daemon;
pub mod demo;
pub mod error_text;
pub mod fleet;
pub mod health;
pub mod html;
pub mod http;
pub mod laravel;
pub mod metrics;
pub mod oneshot;
pub mod pipeline;
pub mod policy;
pub mod redact;
pub mod replay;
pub mod report;
pub mod settings;
pub mod shutdown;
pub mod status_page;
pub mod telemetry;
