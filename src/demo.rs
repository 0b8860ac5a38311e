//! `callwatch demo`: the real daemon against the built-in simulator replaying a recorded outage.
//!
//! The recording is `disconnect-gap` (fixtures/ami, embedded in the binary): 20+ concurrent calls on a real
//! Asterisk 22; the watchdog's AMI connection drops for 35 s while calls end and start unseen, then comes
//! back. A temporary SQLite database is seeded as the application would have left it (every answered call
//! open, plus three rows stuck from hours before, plus one real call answered 45 minutes ago). The daemon
//! runs on a clock mapped onto the recording's timeline (`speed` × faster), so every time it writes is a
//! recording time and can be compared with the truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::daemon::{self, DaemonOptions};
use crate::health::Health;
use crate::settings::{ServerConfig, Settings};

const SCENARIO: &str = "disconnect-gap";
const TRUTH: &str = include_str!("../fixtures/ami/disconnect-gap.truth.json");
const S1_AMI: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-1.ami");
const S1_SENT: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-1.sent");
const S1_CHUNKS: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-1.chunks.jsonl");
const S2_AMI: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-2.ami");
const S2_SENT: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-2.sent");
const S2_CHUNKS: &[u8] = include_bytes!("../fixtures/ami/disconnect-gap.subject-2.chunks.jsonl");

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Speed-up factor of the recording (default 4: the 51 s recording plays in about 13 s).
    pub speed: f64,
    /// Print progress lines while running.
    pub progress: bool,
}

/// One seeded row and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoRow {
    /// Row id.
    pub id: i64,
    /// The lab's call id (None for rows stuck from before the recording).
    pub call: Option<String>,
    /// Extension.
    pub extension: String,
    /// Answer time written by the application.
    pub answered_at: DateTime<Utc>,
    /// When the call really ended (truth), if it did during the recording.
    pub truth_ended_at: Option<DateTime<Utc>>,
    /// The call was still up when the recording ended.
    pub live_at_end: bool,
    /// callwatch's close: reason.
    pub reason: Option<String>,
    /// callwatch's close: `ended_at` written.
    pub ended_at: Option<DateTime<Utc>>,
    /// callwatch's close: when it decided (recording time).
    pub decided_at: Option<DateTime<Utc>>,
    /// Seconds between the true end and callwatch's close (its reaction time).
    pub late_seconds: Option<f64>,
    /// callwatch's close: the bounds of the true end written to the audit table, when not known exactly.
    pub ended_after: Option<DateTime<Utc>>,
    /// Upper bound of the true end.
    pub ended_before: Option<DateTime<Utc>>,
    /// When the seed's cron (every 10 min, calls answered > 30 min ago) would have closed the row.
    pub cron_closes_at: DateTime<Utc>,
    /// The cron would have closed the call while it was still up.
    pub cron_cuts_live_call: bool,
}

/// The demo's result.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Every seeded row.
    pub rows: Vec<DemoRow>,
    /// Rows closed by callwatch, by reason.
    pub closed_by_reason: BTreeMap<String, usize>,
    /// Live calls callwatch kept open.
    pub live_kept: usize,
    /// Live calls callwatch closed (must be 0).
    pub live_closed: usize,
    /// Live calls the seed's cron would have cut while they were still up.
    pub cron_cuts_live: usize,
    /// Wall-clock seconds the demo took.
    pub wall_seconds: f64,
    /// The AMI connection as the daemon saw it: logged-in and down periods (recording time).
    pub ami_periods: Vec<crate::report::Period>,
    /// Start times of the complete `CoreShowChannels` listings the daemon got.
    pub listings: Vec<DateTime<Utc>>,
    /// Start of the recording.
    pub recording_start: DateTime<Utc>,
    /// End of the recording.
    pub recording_end: DateTime<Utc>,
}

fn ts(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn sessions() -> anyhow::Result<Vec<ami_testkit::Session>> {
    let load = |label: &str, ami: &'static [u8], sent: &[u8], chunks: &[u8]| {
        let name = format!("{SCENARIO}.{label}");
        let timing = ami_testkit::session::parse_chunks(chunks, std::path::Path::new(&name))?;
        ami_testkit::Session::from_recording(
            &name,
            Bytes::from_static(ami),
            Some(sent),
            Some(timing),
        )
    };
    Ok(vec![
        load("subject-1", S1_AMI, S1_SENT, S1_CHUNKS)?,
        load("subject-2", S2_AMI, S2_SENT, S2_CHUNKS)?,
    ])
}

/// A seeded row before the run.
struct Seed {
    id: i64,
    call: Option<String>,
    uniqueid: Option<String>,
    linkedid: Option<String>,
    extension: String,
    answered_at: DateTime<Utc>,
    truth_ended_at: Option<DateTime<Utc>>,
    /// When the call really ended, even after the recording (the lab hung everything up at the end).
    real_end: Option<DateTime<Utc>>,
    live_at_end: bool,
}

/// Rows as the application would have left them: every answered call open (ids alternating between the
/// agent channel's Uniqueid, the Linkedid, and both), three rows stuck from three hours before, and the first
/// call still live at the end answered 45 minutes ago.
fn seed_rows(truth: &serde_json::Value) -> Vec<Seed> {
    let live: Vec<&str> = truth["live_when_last_subject_left"]["calls"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let last_left = truth["subject_connections"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|s| ts(&s["disconnected_at"]))
        .unwrap_or_default();
    let first_connect = truth["subject_connections"][0]["connected_at"].clone();
    let first_connect = ts(&first_connect).unwrap_or_default();
    let mut rows = Vec::new();
    let mut long_live_done = false;
    for (i, call) in truth["calls"].as_array().into_iter().flatten().enumerate() {
        let Some(mut answered_at) = ts(&call["answered_at"]) else {
            continue;
        };
        let call_id = call["call_id"].as_str().unwrap_or_default().to_string();
        let agent = call["channels"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["role"] == "agent"));
        let uniqueid = agent
            .and_then(|a| a["uniqueid"].as_str())
            .map(str::to_string);
        let linkedid = call["linkedid"].as_str().map(str::to_string);
        let live_at_end = live.contains(&call_id.as_str());
        if live_at_end && !long_live_done {
            long_live_done = true;
            answered_at = last_left - chrono::Duration::minutes(45);
        }
        rows.push(Seed {
            id: rows.len() as i64 + 1,
            call: Some(call_id),
            uniqueid: (i % 3 != 1).then(|| uniqueid.clone()).flatten(),
            linkedid: (i % 3 != 0).then(|| linkedid.clone()).flatten(),
            extension: call["extension"].as_str().unwrap_or_default().to_string(),
            answered_at,
            truth_ended_at: if live_at_end {
                None
            } else {
                ts(&call["ended_at"])
            },
            real_end: ts(&call["ended_at"]),
            live_at_end,
        });
    }
    for k in 0..3 {
        rows.push(Seed {
            id: rows.len() as i64 + 1,
            call: None,
            uniqueid: Some(format!("1795000000.{}", 10 + k)),
            linkedid: None,
            extension: format!("20{}", 30 + k),
            answered_at: first_connect - chrono::Duration::hours(3) - chrono::Duration::minutes(k),
            truth_ended_at: None,
            real_end: None,
            live_at_end: false,
        });
    }
    rows
}

async fn insert(pool: &sqlx::AnyPool, rows: &[Seed]) -> anyhow::Result<()> {
    for r in rows {
        let t = r.answered_at.format("%Y-%m-%d %H:%M:%S").to_string();
        sqlx::query(
            "INSERT INTO calls (id, uniqueid, linkedid, extension, status, answered_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?)",
        )
        .bind(r.id)
        .bind(r.uniqueid.clone())
        .bind(r.linkedid.clone())
        .bind(r.extension.clone())
        .bind(t.clone())
        .bind(t.clone())
        .bind(t)
        .execute(pool)
        .await
        .context("seeding the demo database")?;
    }
    Ok(())
}

/// When the seed's cron (`*/10` minutes; closes rows answered more than 30 minutes ago) first closes a row.
pub fn cron_close_time(
    answered_at: DateTime<Utc>,
    first_run_after: DateTime<Utc>,
) -> DateTime<Utc> {
    let due = answered_at + chrono::Duration::minutes(30);
    let start = due.max(first_run_after);
    let secs = start.timestamp();
    let next = (secs + 599) / 600 * 600;
    DateTime::from_timestamp(next, 0).unwrap_or(start)
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let wall = std::time::Instant::now();
    let truth: serde_json::Value = serde_json::from_str(TRUTH)?;
    let sessions = sessions()?;
    let origin = sessions[0].connected_at();
    let recording_end = sessions
        .last()
        .and_then(|s| s.closed())
        .map(|(at, _)| at)
        .unwrap_or(origin);

    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db_url = format!("sqlite://{}", dir.path().join("calls.db").display());
    let clock: clock::SharedClock = Arc::new(clock::ScaledClock::new(origin, opts.speed));
    let mut settings = Settings {
        database: store::DatabaseConfig::new(db_url),
        ..Settings::default()
    };
    {
        let store = store::Store::connect(&settings.database, clock.clone()).await?;
        store.migrate().await?;
        insert(store.pool(), &seed_rows(&truth)).await?;
        store.shutdown().await;
    }
    let seeds = seed_rows(&truth);

    let sim = ami_testkit::FakeAmi::start(
        ami_testkit::FakeAmiConfig::new(sessions)
            .speed(opts.speed)
            // callwatch sends CoreShowChannels but not the recording client's Status: go on without it.
            .unsent_grace(Duration::from_millis(300)),
    )
    .await
    .context("cannot start the simulator")?;
    let mut sim_events = sim.subscribe();
    settings.servers = vec![ServerConfig::from_url(&format!(
        "ami://demo:demo@{}?server=lab",
        sim.local_addr()
    ))];
    settings.http.enabled = false;

    let cancel = CancellationToken::new();
    let health = Health::new(clock.now());
    let daemon = tokio::spawn(daemon::run(
        settings,
        DaemonOptions {
            cancel: Some(cancel.clone()),
            signals: true,
            clock: Some(clock.clone()),
            health: Some(health.clone()),
            // Reconnect promptly: the simulator starts a session's recording when the client connects, so a
            // reconnect that lands late makes the stream (and its channel listing) lag the demo's clock by
            // that delay times the speed-up. At 12x a 500 ms backoff was up to 6 s behind, more than the 5 s
            // skew allowance, and a call answered in that window was judged by a listing that predates it.
            tweak_ami: Some(|cfg: &mut ami::Config| {
                cfg.backoff.initial = Duration::from_millis(50);
                cfg.backoff.max = Duration::from_millis(120);
            }),
            skip_metrics: true,
            ..DaemonOptions::default()
        },
    ));

    let watch_stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_connection(
        health.clone(),
        clock.clone(),
        watch_stop.clone(),
    ));
    // Progress until the recording is over (plus a moment for the last round), or Ctrl-C.
    let end_wall = Duration::from_secs_f64(
        ((recording_end - origin).num_milliseconds().max(0) as f64 / 1000.0) / opts.speed,
    ) + Duration::from_secs(2);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = tokio::time::sleep(end_wall + Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if opts.progress {
                    let s = health.snapshot();
                    let server = s.servers.first();
                    println!(
                        "  {}  AMI {:<12}  live channels {:>3}  closed so far {:>3}",
                        clock.now().format("%H:%M:%S"),
                        server.map_or("starting", |s| s.state.as_str()),
                        server.map_or(0, |s| s.channels_live),
                        s.closed_total,
                    );
                }
                if wall.elapsed() >= end_wall && clock.now() >= recording_end {
                    break;
                }
            }
            ev = sim_events.recv() => {
                if let Ok(ami_testkit::ServerEvent::Refused { .. }) = ev {
                    // the simulator refuses connections during the recorded gap: that is the outage
                }
            }
            _ = &mut deadline => break,
            _ = daemon_finished(&daemon) => break,
        }
    }
    cancel.cancel();
    let summary = daemon.await.context("the daemon task failed")??;
    watch_stop.cancel();
    let (ami_periods, listings) = watcher.await.context("the connection watcher failed")?;
    drop(sim);

    // Read back what callwatch wrote.
    let store = store::Store::connect(
        &store::DatabaseConfig::new(format!(
            "sqlite://{}",
            dir.path().join("calls.db").display()
        )),
        clock.clone(),
    )
    .await?;
    let closures: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT call_id, reason, CAST(decided_at AS TEXT) FROM call_closures WHERE undone_at IS NULL",
    )
    .fetch_all(store.pool())
    .await
    .context("reading the audit table")?;
    store.shutdown().await;
    let decided: BTreeMap<i64, DateTime<Utc>> = closures
        .iter()
        .filter_map(|(id, _, at)| {
            let at = at.as_deref().and_then(parse_db_time)?;
            Some((id.parse().ok()?, at))
        })
        .collect();
    let closed: BTreeMap<i64, &crate::pipeline::ClosedRow> = summary
        .closed
        .iter()
        .filter_map(|c| match &c.id {
            store::CallId::Int(i) => Some((*i, c)),
            _ => None,
        })
        .collect();

    let mut report = DemoReport {
        rows: Vec::new(),
        closed_by_reason: BTreeMap::new(),
        live_kept: 0,
        live_closed: 0,
        cron_cuts_live: 0,
        wall_seconds: 0.0,
        ami_periods,
        listings,
        recording_start: origin,
        recording_end,
    };
    for s in seeds {
        let c = closed.get(&s.id);
        let decided_at = decided.get(&s.id).copied();
        let cron = cron_close_time(s.answered_at, origin);
        let cron_cuts = s.call.is_some() && s.real_end.is_none_or(|end| cron < end);
        if s.live_at_end {
            if c.is_some() {
                report.live_closed += 1;
            } else {
                report.live_kept += 1;
            }
        }
        if cron_cuts {
            report.cron_cuts_live += 1;
        }
        if let Some(c) = c {
            *report.closed_by_reason.entry(c.reason.clone()).or_default() += 1;
        }
        report.rows.push(DemoRow {
            id: s.id,
            call: s.call,
            extension: s.extension,
            answered_at: s.answered_at,
            truth_ended_at: s.truth_ended_at,
            live_at_end: s.live_at_end,
            reason: c.map(|c| c.reason.clone()),
            ended_at: c.map(|c| c.ended_at),
            decided_at,
            late_seconds: match (s.truth_ended_at, decided_at) {
                (Some(t), Some(d)) => Some((d - t).num_milliseconds() as f64 / 1000.0),
                _ => None,
            },
            ended_after: c.and_then(|c| c.ended_after),
            ended_before: c.and_then(|c| c.ended_before),
            cron_closes_at: cron,
            cron_cuts_live_call: cron_cuts,
        });
    }
    report.wall_seconds = wall.elapsed().as_secs_f64();
    Ok(report)
}

/// Follows the daemon's view of the AMI connection (sampled every 20 ms): logged-in and down periods, and
/// the start time of every complete listing, all on the demo's clock (recording time).
async fn watch_connection(
    health: Health,
    clock: clock::SharedClock,
    stop: CancellationToken,
) -> (Vec<crate::report::Period>, Vec<DateTime<Utc>>) {
    let mut periods = Vec::new();
    let mut listings: Vec<DateTime<Utc>> = Vec::new();
    let mut current: Option<(bool, DateTime<Utc>)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        let s = health.snapshot();
        let server = s.servers.first();
        let up = server.is_some_and(|s| s.connected);
        if let Some(at) = server.and_then(|s| s.last_listing_at) {
            if listings.last() != Some(&at) {
                listings.push(at);
            }
        }
        match current {
            Some((was, since)) if was != up => {
                periods.push(crate::report::Period {
                    from: since,
                    to: now,
                    up: was,
                });
                current = Some((up, now));
            }
            None => current = Some((up, now)),
            _ => {}
        }
    }
    if let Some((up, since)) = current {
        periods.push(crate::report::Period {
            from: since,
            to: clock.now(),
            up,
        });
    }
    (periods, listings)
}

/// The report's timeline: every seeded row (answer → callwatch's `ended_at`, bounds, reason, the true end),
/// the daemon's view of the AMI connection and its listings.
pub fn timeline(report: &DemoReport) -> crate::report::Timeline {
    use crate::report::{Timeline, TimelineRow};
    let start = report.recording_start - chrono::Duration::seconds(2);
    let end = report.recording_end + chrono::Duration::seconds(3);
    let rows = report
        .rows
        .iter()
        .map(|r| TimelineRow {
            id: r.id.to_string(),
            label: Some(r.extension.clone()),
            answered_at: r.answered_at,
            ended_at: r.ended_at,
            reason: r.reason.clone(),
            ended_after: r.ended_after,
            ended_before: r.ended_before,
            truth_ended_at: r.truth_ended_at,
            note: match (&r.reason, r.live_at_end, r.call.is_none()) {
                (Some(_), _, _) => None,
                (None, true, _) => Some("live at the end: kept".into()),
                (None, false, true) => Some("stuck from before".into()),
                (None, false, false) => Some("kept open".into()),
            },
        })
        .collect();
    let closed: usize = report.closed_by_reason.values().sum();
    Timeline {
        title: "callwatch demo".into(),
        subtitle: format!(
            "The disconnect-gap recording (a real Asterisk 22, a 35 s AMI outage) replayed against a \
             temporary SQLite table: {closed} rows closed ({}), {} live calls kept, {} live calls closed.",
            report
                .closed_by_reason
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            report.live_kept,
            report.live_closed,
        ),
        rows,
        connection: report
            .ami_periods
            .iter()
            .filter(|p| p.to > start && p.from < end)
            .cloned()
            .collect(),
        listings: report.listings.clone(),
        start,
        end,
    }
}

async fn daemon_finished<T>(handle: &tokio::task::JoinHandle<T>) {
    while !handle.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn parse_db_time(s: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(s.get(..19)?, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

/// Prints the report as the demo's closing table.
pub fn print(report: &DemoReport) {
    println!();
    println!(
        "{:>3}  {:<20}  {:<5}  {:<8}  {:<14}  {:<8}  {:<17}  {:>5}  {:<26}",
        "id",
        "call",
        "ext",
        "truth",
        "callwatch",
        "ended_at",
        "true end within",
        "late",
        "the seed's 30-min cron"
    );
    for r in &report.rows {
        let truth = match (r.truth_ended_at, r.live_at_end) {
            (_, true) => "live".to_string(),
            (Some(t), _) => t.format("%H:%M:%S").to_string(),
            (None, _) => "stuck".to_string(),
        };
        let cw = match (&r.reason, r.live_at_end) {
            (Some(reason), _) => reason.clone(),
            (None, true) => "kept (live)".into(),
            (None, false) => "kept".into(),
        };
        let cron = if r.cron_cuts_live_call {
            format!("CUTS THE LIVE CALL at {}", r.cron_closes_at.format("%H:%M"))
        } else {
            format!("closes it at {}", r.cron_closes_at.format("%H:%M"))
        };
        let bounds = match (r.ended_after, r.ended_before) {
            (Some(a), Some(b)) => format!("{}-{}", a.format("%H:%M:%S"), b.format("%H:%M:%S")),
            _ => "-".into(),
        };
        println!(
            "{:>3}  {:<20}  {:<5}  {:<8}  {:<14}  {:<8}  {:<17}  {:>5}  {:<26}",
            r.id,
            r.call.as_deref().unwrap_or("(stuck before)"),
            r.extension,
            truth,
            cw,
            r.ended_at
                .map_or("-".into(), |t| t.format("%H:%M:%S").to_string()),
            bounds,
            r.late_seconds.map_or("-".into(), |s| format!("{s:.0}s")),
            cron,
        );
    }
    println!();
    let closed: usize = report.closed_by_reason.values().sum();
    println!(
        "callwatch closed {closed} rows ({}), kept {} live calls open and closed {} live calls.",
        report
            .closed_by_reason
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.live_kept,
        report.live_closed
    );
    let lates: Vec<f64> = report.rows.iter().filter_map(|r| r.late_seconds).collect();
    if !lates.is_empty() {
        let max = lates.iter().cloned().fold(f64::MIN, f64::max);
        println!(
            "Calls that ended during the outage were closed at most {max:.0} s after they really ended, as soon \
             as AMI was back and listed the channels; ended_at is the last moment callwatch knew them alive, \
             and the audit row keeps the window that contains the true end."
        );
    }
    println!(
        "The seed's cron would have left every ended call \"in progress\" for 30-40 minutes and cut {} live call(s).",
        report.cron_cuts_live
    );
    println!("(demo took {:.1} s)", report.wall_seconds);
}
