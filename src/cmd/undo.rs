//! `callwatch undo --run ID | --since TIME | --closure ID [--dry-run]`: restore rows that callwatch closed.
//!
//! Each selected close (from the audit table, newest first) is reverted only if the row still holds exactly
//! what callwatch wrote; a row the application changed since is left alone and reported (exit code 4). A dry
//! run does the same inside a transaction that is rolled back, so it reports exactly what a real run would do.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use serde_json::json;
use store::UndoSelector;

use crate::cli::GlobalArgs;
use crate::oneshot::exit::{self, Exit};

/// Flags of `callwatch undo`.
#[derive(Debug, Args)]
#[command(
    after_help = exit::HELP,
    group(ArgGroup::new("what").required(true).args(["run", "since", "closure"]))
)]
pub struct UndoArgs {
    /// Undo every close of this run (e.g. `cleanup-20261124T193000-4242`; see `callwatch status`).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Undo every close decided at or after TIME: RFC 3339, `YYYY-MM-DD HH:MM:SS` in the database timezone,
    /// or a duration ago such as `2h`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Undo these closes (audit ids; repeat the flag or separate with commas).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub closure: Vec<i64>,
    /// Report what would be restored; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `callwatch undo`.
pub async fn run(args: UndoArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let settings = crate::settings::load(global)?;
    let clock: clock::SharedClock = Arc::new(clock::SystemClock);
    let selector = if let Some(run) = &args.run {
        UndoSelector::Run(run.clone())
    } else if let Some(since) = &args.since {
        let tz = store::TimeCodec::new(&settings.database.timezone)?;
        let at = crate::oneshot::when::parse(since, clock.now(), &tz)
            .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
        UndoSelector::Since(at)
    } else {
        UndoSelector::Closures(args.closure.clone())
    };
    let store = store::Store::connect_existing(&settings.database, clock.clone())
        .await
        .context("cannot open the database")?;
    let outcome = store.undo(selector.clone(), args.dry_run).await;
    store.shutdown().await;
    let outcome = outcome.context("undo failed; nothing was changed")?;
    for (closure, call) in &outcome.restored {
        if !args.dry_run {
            tracing::info!(closure_id = closure, call_id = %call, undo_id = outcome.undo_id.as_deref().unwrap_or(""), "Call close undone");
        }
    }
    for (closure, call) in &outcome.conflicts {
        tracing::warn!(closure_id = closure, call_id = %call, "close not undone: the row changed after callwatch closed it");
    }
    let exit = if outcome.conflicts.is_empty() {
        Exit::Ok
    } else {
        Exit::Incomplete
    };
    if args.json {
        let pairs = |v: &[(i64, store::CallId)]| {
            v.iter()
                .map(|(closure, call)| json!({ "closure_id": closure, "call_id": call }))
                .collect::<Vec<_>>()
        };
        let v = json!({
            "dry_run": outcome.dry_run,
            "undo_id": outcome.undo_id,
            "restored": pairs(&outcome.restored),
            "conflicts": pairs(&outcome.conflicts),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit.into());
    }
    let verb = if args.dry_run {
        "Would restore"
    } else {
        "Restored"
    };
    if outcome.restored.is_empty() && outcome.conflicts.is_empty() {
        println!("Nothing to undo: no close matches (or they were undone already).");
    }
    if !outcome.restored.is_empty() {
        let undo = outcome
            .undo_id
            .as_deref()
            .map(|u| format!(" (undo {u})"))
            .unwrap_or_default();
        println!("{verb} {} call(s){undo}:", outcome.restored.len());
        for (closure, call) in &outcome.restored {
            println!("  call {call}  (close #{closure})");
        }
    }
    if !outcome.conflicts.is_empty() {
        println!(
            "Not undone, {} call(s) changed after callwatch closed them:",
            outcome.conflicts.len()
        );
        for (closure, call) in &outcome.conflicts {
            println!("  call {call}  (close #{closure})");
        }
    }
    if args.dry_run {
        println!("Dry run: nothing was changed.");
    }
    Ok(exit.into())
}
