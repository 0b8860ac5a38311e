//! `callwatch status`: the seed's `test-cleanup.php` — totals, in-progress and stuck calls, extensions with
//! more than one call in progress (with the calls), closes by reason in the last 24 h, the last run, and per
//! AMI server whether the running daemon is connected and synced (from its `/status` endpoint, when it runs).
//!
//! Exit codes: 0 printed; 1 error (e.g. the database is unreachable). A daemon that is not running is
//! reported, not an error.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{json, Value};
use store::{OpenCall, ServerFilter, Stats};

use crate::cli::GlobalArgs;
use crate::oneshot::daemon_status::{self, DaemonReport};
use crate::oneshot::render::{age, utc};

/// Closes are counted over this window.
pub const WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Flags of `callwatch status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A call in progress is "stuck" when answered more than this many minutes ago (default: `[policy] timeout`).
    #[arg(long, value_name = "MIN", value_parser = clap::value_parser!(u64).range(0..=5_256_000))]
    pub timeout: Option<u64>,
}

/// An extension with more than one call in progress, with the calls.
struct Busy {
    server: Option<String>,
    extension: String,
    calls: Vec<OpenCall>,
}

/// Runs `callwatch status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let settings = crate::settings::load(global)?;
    let stuck_after = match args.timeout {
        Some(min) => Duration::from_secs(min * 60),
        None => settings.policy.timeout,
    };
    let stuck_after_c = chrono::Duration::from_std(stuck_after).unwrap_or(chrono::Duration::MAX);
    let clock: clock::SharedClock = Arc::new(clock::SystemClock);
    let daemon = daemon_status::fetch(&settings.http.listen, settings.http.enabled);
    let db = async {
        let store = store::Store::connect_existing(&settings.database, clock.clone())
            .await
            .context("cannot open the database")?;
        let result = async {
            let stats = store
                .stats(stuck_after_c, WINDOW)
                .await
                .context("cannot read the statistics")?;
            let open = store
                .in_progress_rows(ServerFilter::Any, None)
                .await
                .context("cannot read the calls in progress")?;
            let busy = busy_calls(&stats, open.calls);
            let by_server = store
                .open_rows_by_server()
                .await
                .context("cannot count the calls in progress by server")?;
            anyhow::Ok((stats, busy, open.unreadable, by_server))
        }
        .await;
        let url = store.redacted_url().to_string();
        store.shutdown().await;
        result.map(|(s, b, u, by)| (s, b, u, by, url))
    };
    let (daemon, db) = tokio::join!(daemon, db);
    let (stats, busy, unreadable, by_server, url) = db?;
    let unknown = unknown_servers(&settings, by_server)?;
    let now = stats.at.unwrap_or_else(|| clock.now());
    if args.json {
        let mut v = status_json(&stats, &busy, &daemon, &url, stuck_after, now);
        v["unreadable"] = serde_json::to_value(&unreadable)?;
        v["unknown_servers"] = serde_json::to_value(&unknown)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "{}{}{}",
            status_text(&stats, &busy, &daemon, &url, stuck_after, now),
            unreadable_text(&unreadable),
            unknown_text(&unknown)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn busy_calls(stats: &Stats, open: Vec<OpenCall>) -> Vec<Busy> {
    let mut out: Vec<Busy> = stats
        .busy_extensions
        .iter()
        .map(|b| Busy {
            server: b.server.clone(),
            extension: b.extension.clone(),
            calls: Vec::new(),
        })
        .collect();
    for call in open {
        let Some(ext) = &call.extension else { continue };
        if let Some(b) = out
            .iter_mut()
            .find(|b| &b.extension == ext && b.server == call.server)
        {
            b.calls.push(call);
        }
    }
    for b in &mut out {
        b.calls
            .sort_by(|x, y| (x.answered_at, &x.id).cmp(&(y.answered_at, &y.id)));
    }
    out
}

/// Open rows whose `server` value names none of the configured servers (none when no server is configured:
/// then every row is judged by age).
fn unknown_servers(
    settings: &crate::settings::Settings,
    by_server: Vec<(Option<String>, i64)>,
) -> anyhow::Result<Vec<crate::health::UnknownServer>> {
    let servers = settings.resolve_servers()?;
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    Ok(crate::health::UnknownServer::from_counts(
        by_server, &servers,
    ))
}

/// The unknown servers' rows, one line each (empty when there are none).
fn unknown_text(rows: &[crate::health::UnknownServer]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\nOpen rows naming a server that is not configured (never judged):"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "  server {:<20} {} row(s)",
            r.server.as_deref().unwrap_or("NULL"),
            r.rows
        );
    }
    o
}

/// The open rows that cannot be read, one line each (empty when there are none).
fn unreadable_text(rows: &[store::UnreadableRow]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\nUnreadable rows ({}), skipped until their values are fixed:",
        rows.len()
    );
    for r in rows {
        let _ = writeln!(
            o,
            "  #{:<8} {} = {:?}: {}",
            r.id.to_text(),
            r.column,
            r.value.as_deref().unwrap_or(""),
            r.detail
        );
    }
    o
}

/// The daemon's suspected ghost calls, one line each (empty when there are none).
fn ghosts_text(status: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let ghosts = status["suspect_ghosts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ghosts.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "  Suspected ghost calls ({}), kept alive longer than max_call_duration by a channel Asterisk still lists:",
        ghosts.len()
    );
    for g in &ghosts {
        let s = |k: &str| g[k].as_str().unwrap_or("-").to_string();
        let _ = writeln!(
            o,
            "    #{:<8} on {}: channel {} ({}), answered {}, no activity since {}",
            s("call_id"),
            s("server"),
            s("channel"),
            s("uniqueid"),
            s("answered_at"),
            s("last_activity"),
        );
    }
    o
}

fn call_json(c: &OpenCall) -> Value {
    json!({
        "id": c.id,
        "answered_at": c.answered_at,
        "uniqueid": c.uniqueid,
        "linkedid": c.linkedid,
        "channel": c.channel,
        "caller": c.caller,
    })
}

fn status_json(
    stats: &Stats,
    busy: &[Busy],
    daemon: &DaemonReport,
    url: &str,
    stuck_after: Duration,
    now: DateTime<Utc>,
) -> Value {
    let closes: serde_json::Map<String, Value> = stats
        .closes_by_reason
        .iter()
        .map(|(r, n)| (r.clone(), json!(n)))
        .collect();
    let daemon = match daemon {
        DaemonReport::Running { url, status } => {
            json!({ "running": true, "url": url, "status": status })
        }
        DaemonReport::NotRunning { url, why } => {
            json!({ "running": false, "url": url, "why": why })
        }
    };
    json!({
        "at": now,
        "database": url,
        "total": stats.total,
        "in_progress": stats.in_progress,
        "stuck": stats.stuck,
        "stuck_after_minutes": stuck_after.as_secs() / 60,
        "busy_extensions": busy.iter().map(|b| json!({
            "server": b.server,
            "extension": b.extension,
            "calls": b.calls.iter().map(call_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "closes_last_24h": closes,
        "skipped_last_24h": stats.skipped_in_window,
        "refined_by_cdr_last_24h": stats.refined_by_cdr,
        "last_run": stats.last_run,
        "daemon": daemon,
    })
}

fn status_text(
    stats: &Stats,
    busy: &[Busy],
    daemon: &DaemonReport,
    url: &str,
    stuck_after: Duration,
    now: DateTime<Utc>,
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "=== Calls ({} UTC, {url}) ===", utc(now));
    let stuck = format!("Stuck (> {}):", humantime::format_duration(stuck_after));
    let _ = writeln!(o, "{:<20}{}", "Total calls:", stats.total);
    let _ = writeln!(o, "{:<20}{}", "In progress:", stats.in_progress);
    let _ = writeln!(o, "{stuck:<20}{}", stats.stuck);
    let _ = writeln!(o);
    if busy.is_empty() {
        let _ = writeln!(o, "No extension has more than one call in progress.");
    } else {
        let _ = writeln!(o, "Extensions with more than one call in progress:");
        for b in busy {
            let server = b
                .server
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default();
            let _ = writeln!(o, "  {}{server} ({} calls)", b.extension, b.calls.len());
            for c in &b.calls {
                let _ = writeln!(
                    o,
                    "    #{:<8} answered {} UTC ({} ago)  uniqueid {}  linkedid {}",
                    c.id.to_text(),
                    utc(c.answered_at),
                    age(now - c.answered_at),
                    c.uniqueid.as_deref().unwrap_or("-"),
                    c.linkedid.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    let _ = writeln!(o);
    if stats.closes_by_reason.is_empty() {
        let _ = writeln!(o, "No calls closed by callwatch in the last 24 h.");
    } else {
        let _ = writeln!(o, "Closed by callwatch in the last 24 h:");
        for (reason, n) in &stats.closes_by_reason {
            let _ = writeln!(o, "  {reason:<18} {n}");
        }
    }
    if stats.skipped_in_window > 0 {
        let _ = writeln!(
            o,
            "  (left alone, already ended by the application: {})",
            stats.skipped_in_window
        );
    }
    if stats.refined_by_cdr > 0 {
        let _ = writeln!(
            o,
            "  (end time from Asterisk's CDR, at the close or refined later: {})",
            stats.refined_by_cdr
        );
    }
    match &stats.last_run {
        Some(r) => {
            let _ = writeln!(
                o,
                "Last run: {} at {} UTC ({} closed)",
                r.run_id,
                utc(r.decided_at),
                r.closed
            );
        }
        None => {
            let _ = writeln!(o, "Last run: none recorded");
        }
    }
    let _ = writeln!(o);
    match daemon {
        DaemonReport::Running { url, status } => {
            let owned: Vec<&str> = status["owned"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let lock = if !owned.is_empty() {
                format!("owns {} (writing)", owned.join(", "))
            } else if status["lock_held"] == true {
                "holds the lock (writing)".to_string()
            } else {
                "standing by (other daemons hold the servers' locks)".to_string()
            };
            let _ = writeln!(
                o,
                "Daemon: running ({url}), version {}, {lock}",
                status["version"].as_str().unwrap_or("?")
            );
            if status["database_ok"] == false {
                let _ = writeln!(o, "  database: unreachable at the last attempt");
            }
            for s in status["servers"].as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap_or("?");
                let connected = if s["connected"] == true {
                    "connected"
                } else {
                    "not connected"
                };
                let synced = if s["synced"] == true {
                    "synced"
                } else {
                    "NOT synced"
                };
                let mut line = format!("  AMI {name}: {connected}, {synced}");
                if let Some(n) = s["channels_live"].as_u64() {
                    line.push_str(&format!(", {n} channel(s) up"));
                }
                if let Some(at) = s["last_listing_at"].as_str() {
                    line.push_str(&format!(", last listing {at}"));
                }
                if let Some(err) = s["last_error"].as_str() {
                    line.push_str(&format!(", last error: {err}"));
                }
                let _ = writeln!(o, "{line}");
            }
            for a in status["alerts"].as_array().into_iter().flatten() {
                let _ = writeln!(o, "  ALERT: {}", a.as_str().unwrap_or_default());
            }
            o.push_str(&ghosts_text(status));
        }
        DaemonReport::NotRunning { url, why } => {
            let at = url
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            let _ = writeln!(o, "Daemon: not running{at}: {why}");
        }
    }
    o
}
