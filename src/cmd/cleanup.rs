//! `callwatch cleanup`: one-shot cleanup of stuck calls, the drop-in for the old
//! `php artisan app:cleanup-stuck-calls` cron command (same options, same log lines).
//!
//! 1. Takes the instance lock (the seed's `withoutOverlapping`): a running daemon or another cleanup makes it
//!    exit with code 3 and change nothing. A dry run does not need the lock.
//! 2. When AMI servers are configured (or `--ami` is given), connects to each and waits for one complete
//!    `CoreShowChannels` listing; a server that does not list in time is reported and its calls fall back to
//!    the seed's rule.
//! 3. Plans every call answered more than `--timeout` minutes ago with the reconciler (see
//!    [`crate::oneshot::plan`]): live channel → "long but live", kept; channel gone → `channel_gone`; no listing
//!    → `timeout_cleanup` with `ended_at` = now, the seed's rule exactly.
//! 4. Lists the plan; `--dry-run` stops here. On a terminal it asks `Close N stuck calls? [y/N]`; without a
//!    terminal it needs `--yes` / `--no-interaction`, else it refuses (exit 2) and changes nothing.
//! 5. Writes the closes (audited, only where `ended_at` is still NULL), logging `Stuck call cleaned up` per
//!    row, or `Failed to clean up stuck call`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broadcast::Broadcaster;
use crate::cli::GlobalArgs;
use crate::oneshot::apply::{self, Applied};
use crate::oneshot::exit::{self, Exit};
use crate::oneshot::groups::{self, Group, Watched};
use crate::oneshot::listing::{Listings, Outcome};
use crate::oneshot::plan::{self, Plan};
use crate::oneshot::prompt::{self, Consent};
use crate::oneshot::render::{self, RowList};
use crate::pipeline::{ClosedRow, ServerMemory};
use crate::settings::{self, ServerConfig, Settings};

/// Default wait for each AMI server's channel listing.
pub const DEFAULT_AMI_WAIT: &str = "10s";

/// Flags of `callwatch cleanup`.
#[derive(Debug, Args)]
#[command(after_help = exit::HELP)]
pub struct CleanupArgs {
    /// Close calls answered more than this many minutes ago (default: `[policy] timeout`, 30).
    #[arg(long, value_name = "MIN", value_parser = clap::value_parser!(u64).range(0..=5_256_000))]
    pub timeout: Option<u64>,
    /// List what would be closed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Close without asking (for cron); the same as `--yes`.
    #[arg(long, short = 'n')]
    pub no_interaction: bool,
    /// Close without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print one JSON object on stdout (when asking on a terminal, the list and the question go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Ask this AMI server instead of the configured ones (`ami://user:secret@host:5038?server=NAME`).
    #[arg(long, value_name = "URL", conflicts_with = "no_ami")]
    pub ami: Option<String>,
    /// Do not ask Asterisk: judge calls by age only (the seed's rule).
    #[arg(long)]
    pub no_ami: bool,
    /// How long to wait for each AMI server's channel listing before falling back to the age rule.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = DEFAULT_AMI_WAIT)]
    pub ami_wait: Duration,
}

/// What the run did, for the text and JSON output.
struct Report {
    outcome: &'static str,
    dry_run: bool,
    timeout: Duration,
    checked_at: DateTime<Utc>,
    servers: Vec<Value>,
    plan: Plan,
    applied: Applied,
    run_id: Option<String>,
    message: Option<String>,
    /// Open rows that could not be read (skipped, never written).
    unreadable: Vec<store::UnreadableRow>,
}

impl Report {
    /// The `--json` object. Its fields are written in alphabetical order, as a `serde_json` map would
    /// write them, and the row lists are serialized as they are written.
    fn json(&self) -> ReportJson<'_> {
        let rows = |list| render::RowsJson::new(&self.plan, self.checked_at, list);
        ReportJson {
            checked_at: self.checked_at,
            closed: SortedKeys(&self.applied.closed),
            dry_run: self.dry_run,
            error: &self.applied.error,
            held: rows(RowList::Held),
            kept: rows(RowList::Kept),
            long_but_live: rows(RowList::LongButLive),
            message: &self.message,
            outcome: self.outcome,
            run_id: &self.run_id,
            servers: &self.servers,
            skipped: &self.applied.skipped,
            timeout_minutes: self.timeout.as_secs() / 60,
            to_close: rows(RowList::ToClose),
            unreadable: SortedKeys(&self.unreadable),
        }
    }
}

/// A list written with each element's keys in alphabetical order (as through a `serde_json::Value`), one
/// element at a time.
struct SortedKeys<'a, T>(&'a [T]);

impl<T: serde::Serialize> serde::Serialize for SortedKeys<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&serde_json::to_value(item).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// `cleanup --json`'s object.
#[derive(serde::Serialize)]
struct ReportJson<'a> {
    checked_at: DateTime<Utc>,
    closed: SortedKeys<'a, ClosedRow>,
    dry_run: bool,
    error: &'a Option<String>,
    held: render::RowsJson<'a>,
    kept: render::RowsJson<'a>,
    long_but_live: render::RowsJson<'a>,
    message: &'a Option<String>,
    outcome: &'static str,
    run_id: &'a Option<String>,
    servers: &'a [Value],
    skipped: &'a [store::CallId],
    timeout_minutes: u64,
    to_close: render::RowsJson<'a>,
    unreadable: SortedKeys<'a, store::UnreadableRow>,
}

/// Runs `callwatch cleanup`.
pub async fn run(args: CleanupArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut settings = settings::load(global)?;
    if let Some(url) = &args.ami {
        settings.servers = vec![ServerConfig::from_cli_url(
            url,
            std::env::var_os(settings::AMI_SECRET_ENV).is_some(),
        )];
        settings.validate()?;
    }
    if args.no_ami {
        settings.servers.clear();
    }
    if let Some(min) = args.timeout {
        settings.policy.timeout = Duration::from_secs(min * 60);
    }
    let clock: clock::SharedClock = Arc::new(clock::SystemClock);
    let store = store::Store::connect_existing(&settings.database, clock.clone())
        .await
        .context("cannot open the database")?;
    let result = cleanup(&args, &settings, &store, clock).await;
    store.shutdown().await;
    let (exit, report) = result?;
    if args.json {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &report.json())?;
        writeln!(out)?;
        out.flush()?;
    }
    Ok(exit.into())
}

/// Prints the human-readable output on stdout; in `--json` mode stdout carries only the JSON object and
/// the outcome is in it (and in the logs), so nothing is printed here.
fn say(json: bool, text: &str) {
    if !json {
        print!("{text}");
    }
}

/// A message for the operator: on stderr, or in `--json` mode as a log line (stdout carries the JSON).
fn complain(json: bool, text: &str) {
    if json {
        tracing::warn!("{text}");
    } else {
        eprintln!("callwatch cleanup: {text}");
    }
}

async fn cleanup(
    args: &CleanupArgs,
    settings: &Settings,
    store: &store::Store,
    clock: clock::SharedClock,
) -> anyhow::Result<(Exit, Report)> {
    let timeout = settings.policy.timeout;
    let policy = settings.policy.to_policy();
    let mut report = Report {
        outcome: "nothing_to_do",
        dry_run: args.dry_run,
        timeout,
        checked_at: clock.now(),
        servers: Vec::new(),
        plan: Plan::default(),
        applied: Applied::default(),
        run_id: None,
        message: None,
        unreadable: Vec::new(),
    };

    // 1. The lock.
    let lock = store
        .acquire_lock(crate::oneshot::LOCK_NAME)
        .await
        .context("cannot take the instance lock")?;
    // Daemons hold per-server locks and announce themselves in `callwatch_daemons`: while one is alive it
    // closes these calls, so a cleanup beside it is refused like one beside another cleanup.
    let lock = match live_daemon(store).await {
        Some(daemon) if lock.is_some() => {
            tracing::warn!(daemon = %daemon, "a callwatch daemon is running on this database");
            if let Some(l) = lock {
                let _ = l.release().await;
            }
            None
        }
        _ => lock,
    };
    let lock = match (lock, args.dry_run) {
        (Some(lock), false) => Some(lock),
        (None, false) => {
            let msg = "another callwatch (the daemon or another cleanup) is running and holds the instance lock; nothing was changed";
            complain(args.json, msg);
            report.outcome = "lock_held";
            report.message = Some(msg.into());
            return Ok((Exit::LockHeld, report));
        }
        (Some(lock), true) => {
            let _ = lock.release().await;
            None
        }
        (None, true) => {
            report.message = Some(
                "another callwatch holds the instance lock: a real cleanup would exit with code 3"
                    .into(),
            );
            None
        }
    };

    // 2. The listings.
    let servers = settings.resolve_servers()?;
    let watched: Vec<Watched> = servers
        .iter()
        .map(|s| Watched {
            name: s.name.clone(),
            is_default: s.is_default,
        })
        .collect();
    let mut listings = if servers.is_empty() {
        None
    } else {
        Some(Listings::take(&servers, args.ami_wait, clock.clone()).await)
    };
    let mut lines = String::new();
    match &listings {
        None => lines.push_str(
            "No AMI server configured: calls are judged by age only (the timeout rule).\n",
        ),
        Some(l) => {
            for (name, outcome) in l.outcomes() {
                match outcome {
                    Outcome::Synced(s) => {
                        lines.push_str(&format!(
                            "AMI {name}: channel listing at {} UTC, {} channel(s) up.\n",
                            s.listing_at.map(render::utc).unwrap_or_default(),
                            s.live.len()
                        ));
                    }
                    Outcome::Failed { reason } => {
                        tracing::warn!(server = %name, wait = ?args.ami_wait, reason = %reason,
                            "no complete CoreShowChannels listing in time; falling back to the timeout rule for this server's calls");
                        lines.push_str(&format!(
                            "AMI {name}: no channel listing within {} ({reason}); its calls are judged by age only (the timeout rule).\n",
                            humantime::format_duration(args.ami_wait)
                        ));
                    }
                }
            }
        }
    }

    // 3. The plan.
    let store::OpenRows {
        calls: open,
        unreadable,
    } = store
        .in_progress_rows(store::ServerFilter::Any, None)
        .await
        .context("cannot read the calls in progress")?;
    lines.push_str(&quarantine(&unreadable));
    report.unreadable = unreadable;
    let now = clock.now();
    report.checked_at = now;
    let by_group = groups::split(open, &watched);
    for (group, calls) in &by_group {
        let listing = match (group, &listings) {
            (Group::Server(name), Some(l)) => l.snapshot(name).cloned(),
            _ => None,
        };
        let mut rows = plan::plan_group(
            group,
            calls,
            listing.as_ref(),
            &ServerMemory::default(),
            &policy,
            now,
        );
        if let (Group::Server(name), Some(confirm_at), Some(l)) =
            (group, plan::confirm_at(&rows), listings.as_mut())
        {
            let held = rows
                .iter()
                .filter(|p| matches!(p.action, plan::Action::Held { .. }))
                .count();
            tracing::warn!(server = %name, held, %confirm_at,
                "mass close: the closes are held until a second channel listing confirms them");
            let wait = (confirm_at - clock.now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if let Some(second) = l.relist(name, confirm_at, args.ami_wait).await {
                let memory = ServerMemory {
                    held: plan::holds(&rows),
                    ids_matched_before: false,
                    ..ServerMemory::default()
                };
                rows = plan::plan_group(group, calls, Some(&second), &memory, &policy, clock.now());
            } else {
                tracing::warn!(server = %name, "no confirming listing; the held closes are not made");
            }
        }
        plan::written_talk_seconds(&mut rows, store);
        report.plan.extend(rows);
    }
    if let Some(l) = &listings {
        report.servers = l
            .outcomes()
            .iter()
            .map(|(name, o)| match o {
                Outcome::Synced(s) => json!({
                    "name": name, "synced": true, "listing_at": s.listing_at,
                    "live_channels": s.live.len(), "error": null,
                }),
                Outcome::Failed { reason } => json!({
                    "name": name, "synced": false, "listing_at": null,
                    "live_channels": null, "error": reason,
                }),
            })
            .collect();
    }
    if let Some(l) = listings.take() {
        l.close().await;
    }

    // 4. The list, and consent.
    let n = report.plan.close_count();
    let held = report.plan.held().count();
    lines.push_str(&format!(
        "Calls answered more than {} ago and not ended: {} (checked {} UTC).\n",
        humantime::format_duration(timeout),
        report.plan.rows.len(),
        render::utc(now)
    ));
    lines.push_str(&render::plan_text(&report.plan, now));
    if held > 0 {
        tracing::error!(held, "closes held by the mass-close guard were not made");
    }
    let incomplete = if held > 0 { Exit::Incomplete } else { Exit::Ok };
    if n == 0 {
        if held > 0 {
            lines.push_str(&format!(
                "Nothing closed: {held} call(s) held by the mass-close guard.\n"
            ));
        } else {
            lines.push_str("No stuck calls found.\n");
        }
        say(args.json, &lines);
        release(lock).await;
        return Ok((incomplete, report));
    }
    if args.dry_run {
        lines.push_str(&format!(
            "Dry run: {n} stuck call(s) would be closed; nothing was changed.\n"
        ));
        if let Some(m) = &report.message {
            lines.push_str(&format!("Note: {m}.\n"));
        }
        say(args.json, &lines);
        report.outcome = "dry_run";
        return Ok((incomplete, report));
    }
    let question = format!("Close {n} stuck call{}?", if n == 1 { "" } else { "s" });
    match prompt::consent_here(args.yes || args.no_interaction) {
        Consent::Given => say(args.json, &lines),
        Consent::Refused => {
            say(args.json, &lines);
            let msg = format!(
                "refusing to close {n} stuck call(s) without confirmation: there is no terminal to ask on. \
                 Pass --yes (or --no-interaction) to close them, or --dry-run to only list them. Nothing was changed"
            );
            complain(args.json, &format!("{msg}."));
            report.outcome = "refused";
            report.message = Some(msg);
            release(lock).await;
            return Ok((Exit::Refused, report));
        }
        Consent::Ask => {
            // in --json mode the list goes to stderr, with the question
            if args.json {
                eprint!("{lines}");
            } else {
                print!("{lines}");
            }
            let yes = prompt::ask(question, args.json).await.unwrap_or(false);
            if !yes {
                if args.json {
                    eprintln!("Nothing was changed.");
                } else {
                    println!("Nothing was changed.");
                }
                report.outcome = "declined";
                release(lock).await;
                return Ok((Exit::Refused, report));
            }
        }
    }

    // 5. The closes. The lock may have lapsed while the operator read the list (a SQLite lease).
    if let Some(lock) = &lock {
        if !lock.reacquire().await.unwrap_or(false) {
            let msg = "the instance lock was taken by another callwatch while waiting for confirmation; nothing was changed";
            complain(args.json, msg);
            report.outcome = "lock_held";
            report.message = Some(msg.into());
            return Ok((Exit::LockHeld, report));
        }
    }
    let run_id = format!(
        "cleanup-{}-{}",
        now.format("%Y%m%dT%H%M%S"),
        std::process::id()
    );
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let broadcaster = match Broadcaster::start(&settings.broadcast, &tracker, cancel.clone()) {
        Ok(b) => b,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "broadcasting is off for this run");
            Broadcaster::disabled()
        }
    };
    report.applied = apply::apply(store, &report.plan, &run_id, clock.now(), &broadcaster).await;
    drop(broadcaster);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        cancel.cancel();
        tracing::warn!("some broadcasts were not delivered within 10 s");
    }
    release(lock).await;
    report.run_id = Some(run_id.clone());
    let applied = &report.applied;
    if let Some(err) = &applied.error {
        report.outcome = "failed";
        say(
            args.json,
            &format!("Failed to clean up {n} stuck call(s): {err}\n"),
        );
        return Ok((Exit::Error, report));
    }
    report.outcome = "closed";
    let mut done = format!(
        "Closed {} stuck call(s) (run {run_id}).\n",
        applied.closed.len()
    );
    if !applied.skipped.is_empty() {
        done.push_str(&format!(
            "Left alone {}: already ended by the application meanwhile.\n",
            applied.skipped.len()
        ));
    }
    say(args.json, &done);
    Ok((incomplete, report))
}

/// Logs each unreadable row once and returns the lines that tell the operator about them.
fn quarantine(unreadable: &[store::UnreadableRow]) -> String {
    let mut lines = String::new();
    for row in unreadable {
        crate::pipeline::warn_unreadable(row, row.server.as_deref().unwrap_or(""));
        lines.push_str(&format!(
            "Skipped call {}: its {} cannot be read ({}).\n",
            row.id, row.column, row.detail
        ));
    }
    lines
}

/// A daemon alive on this database (`host pid N`), if any: one whose heartbeat is recent.
async fn live_daemon(store: &store::Store) -> Option<String> {
    let ttl = crate::fleet::heartbeat_ttl(crate::daemon::LOCK_CHECK_INTERVAL);
    let live = store.live_daemons(ttl).await.ok()?;
    let d = live.first()?;
    Some(format!("{} pid {}", d.host, d.pid))
}

async fn release(lock: Option<store::InstanceLock>) {
    if let Some(lock) = lock {
        if let Err(err) = lock.release().await {
            tracing::warn!(error = %err, "could not release the instance lock (it is freed when the connection closes)");
        }
    }
}
