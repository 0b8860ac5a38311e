//! `callwatch migrate`: create or upgrade the database schema (idempotent).
//!
//! Uses the `[database]` URL of the configuration, overridden by `--database` / `DATABASE_URL`;
//! `sqlite://PATH` creates the file. Prints what it applied.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::cli::GlobalArgs;
use crate::settings;

/// Flags of `callwatch migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// Runs `callwatch migrate`.
pub async fn run(_args: MigrateArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let settings = settings::load(global)?;
    let db = &settings.database;
    let url = db.url.redacted();
    let store = store::Store::connect(db, Arc::new(clock::SystemClock))
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let report = store
        .migrate()
        .await
        .with_context(|| format!("migrating {url}"))?;
    println!("database: {url} ({})", report.dialect);
    if let Some(table) = &report.left_alone {
        println!(
            "table {table} exists: left as it is (no column or index added; `callwatch check-config` suggests an index)"
        );
    }
    for (version, description) in &report.applied {
        println!("applied: {version} {description}");
    }
    if report.applied.is_empty() {
        println!(
            "schema is up to date ({} migration(s) already applied)",
            report.already_applied
        );
    } else {
        println!(
            "{} migration(s) applied, {} already applied",
            report.applied.len(),
            report.already_applied
        );
    }
    store.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
