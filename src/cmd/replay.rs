//! `callwatch replay`: run the real pipeline over recorded sessions on virtual time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use clock::VirtualClock;

use crate::broadcast::Broadcaster;
use crate::cli::GlobalArgs;
use crate::pipeline::{ServerTarget, Sweeper};
use crate::replay::{ReplayReport, Replayer};

/// Flags of `callwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Server name the sessions came from (rows with this `server`, plus rows with NULL when it is the
    /// default server). Default: the first configured server, else `default`.
    #[arg(long)]
    pub server: Option<String>,
    /// Decide without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run the migrations first (for a fresh database).
    #[arg(long)]
    pub migrate: bool,
    /// Also write an HTML report with a timeline of the rows and the AMI connection to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Recorded sessions in connection order: `DIR/NAME.LABEL` (→ `.ami` or `.ami.gz`, `.chunks.jsonl`,
    /// `.sent`) or a `.json` event-list flow.
    #[arg(required = true)]
    pub sessions: Vec<PathBuf>,
}

/// Runs `callwatch replay`.
pub async fn run(args: ReplayArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = crate::settings::load(global)?;
    let sessions = args
        .sessions
        .iter()
        .map(|p| {
            ami_testkit::session::Session::load(p)
                .with_context(|| format!("cannot load session {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let servers = config.resolve_servers()?;
    let server = args
        .server
        .clone()
        .or_else(|| servers.first().map(|s| s.name.clone()))
        .unwrap_or_else(|| ami::config::DEFAULT_SERVER_NAME.to_string());
    let is_default = servers.iter().all(|s| s.name != server || s.is_default)
        && (servers.is_empty() || servers.iter().any(|s| s.name == server && s.is_default));
    let start = sessions
        .first()
        .map(|s| s.connected_at())
        .unwrap_or_default();
    let clock = VirtualClock::new(start);
    let shared: clock::SharedClock = Arc::new(clock.clone());
    let store = store::Store::connect(&config.database, shared.clone())
        .await
        .context("cannot open the database")?;
    if args.migrate {
        store.migrate().await.context("migrations failed")?;
    }
    crate::daemon::analyze_if_unplanned(&store).await;
    let run_id = format!("replay-{}", start.format("%Y%m%dT%H%M%S"));
    let mut sweeper = Sweeper::new(
        store.clone(),
        config.policy.to_policy(),
        shared,
        run_id,
        args.dry_run,
        Broadcaster::disabled(),
    )
    .with_cdr(crate::pipeline::cdr::open(
        config.cdr.as_ref(),
        &config.database.timezone,
    )?);
    let ami_cfg = replay_client_config(&server);
    let map = ami::channels::ChannelMap::new(ami::channels::MapOptions::default());
    let target = ServerTarget {
        name: server,
        is_default,
    };
    let report = Replayer::new(
        &mut sweeper,
        map,
        clock,
        target,
        ami_cfg,
        config.policy.sweep_interval,
    )
    .group_commit(config.policy.group_commit())
    .run(&sessions)
    .await?;
    store.shutdown().await;
    if let Some(path) = &args.report {
        crate::report::write(path, &timeline(&report, &args.sessions))?;
        if !args.json {
            println!("report written to {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print_table(&report, args.dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

/// The client settings a replay uses: the daemon's defaults, with stand-in credentials (the recording's
/// own `Login` is paired by name, so the real secret is neither needed nor read).
pub fn replay_client_config(server: &str) -> ami::Config {
    let mut cfg = ami::Config::new("127.0.0.1", "replay", ami::Secret::new("replay"));
    cfg.server = server.to_string();
    cfg
}

/// The report's timeline: closed rows (answer → `ended_at`, bounds, reason), rows still open, the sessions
/// as up periods and their listings.
pub fn timeline(report: &ReplayReport, sessions: &[PathBuf]) -> crate::report::Timeline {
    use crate::report::{Timeline, TimelineRow};
    let mut rows: Vec<TimelineRow> = report
        .closed
        .iter()
        .map(|c| TimelineRow {
            id: c.id.to_text(),
            label: c.extension.clone(),
            answered_at: c.answered_at,
            ended_at: Some(c.ended_at),
            reason: Some(c.reason.clone()),
            ended_after: c.ended_after,
            ended_before: c.ended_before,
            truth_ended_at: None,
            note: None,
        })
        .collect();
    for (id, answered_at) in &report.open {
        let held = report.held.iter().any(|h| &h.id == id);
        rows.push(TimelineRow {
            id: id.to_text(),
            label: None,
            answered_at: *answered_at,
            ended_at: None,
            reason: None,
            ended_after: None,
            ended_before: None,
            truth_ended_at: None,
            note: Some(
                if held {
                    "held by the guard"
                } else {
                    "kept open"
                }
                .into(),
            ),
        });
    }
    rows.sort_by_key(|r| r.answered_at);
    let periods: Vec<_> = report
        .sessions
        .iter()
        .map(|s| (s.connected_at, s.closed_at.unwrap_or(s.ended_at)))
        .collect();
    let start = periods.first().map(|p| p.0).unwrap_or_default();
    let last = periods.last().map(|p| p.1).unwrap_or(start);
    let end = rows
        .iter()
        .filter_map(|r| r.ended_at.max(r.ended_before))
        .chain([last])
        .max()
        .unwrap_or(last);
    let end = end + (end - start) / 50;
    Timeline {
        title: "callwatch replay".into(),
        subtitle: format!(
            "{} session(s): {}; {} rows closed, {} kept open, {} rounds",
            report.sessions.len(),
            sessions
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            report.closed.len(),
            report.kept_open,
            report.sweeps
        ),
        rows,
        // The recording ends with the last session: no band after it.
        connection: Timeline::periods_from_sessions(&periods, start, last),
        listings: report
            .sessions
            .iter()
            .flat_map(|s| s.listings.clone())
            .collect(),
        start,
        end,
    }
}

/// The `--json` shape: `{"closed":[…],"kept_open":N,"held":[…],"sessions":[…]}`.
pub fn report_json(report: &ReplayReport) -> serde_json::Value {
    let closed: Vec<_> = report
        .closed
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "uniqueid": c.uniqueid,
                "linkedid": c.linkedid,
                "extension": c.extension,
                "ended_at": c.ended_at,
                "hangup_cause": c.hangup_cause,
                "reason": c.reason,
                "ended_after": c.ended_after,
                "ended_before": c.ended_before,
                "talk_seconds": c.talk_seconds,
                "ended_at_source": c.ended_at_source,
            })
        })
        .collect();
    serde_json::json!({
        "closed": closed,
        "kept_open": report.kept_open,
        "held": report.held,
        "skipped": report.skipped,
        "sessions": report.sessions,
        "sweeps": report.sweeps,
        "refined": report.refined,
    })
}

fn print_table(report: &ReplayReport, dry_run: bool) {
    let verb = if dry_run { "would close" } else { "closed" };
    println!("{} rows {verb}:", report.closed.len());
    println!(
        "{:>8}  {:<10}  {:<19}  {:<17}  {:<20}  {:>6}",
        "id", "extension", "ended_at (UTC)", "reason", "hangup_cause", "talk_s"
    );
    for c in &report.closed {
        println!(
            "{:>8}  {:<10}  {:<19}  {:<17}  {:<20}  {:>6}",
            c.id.to_text(),
            c.extension.as_deref().unwrap_or("-"),
            c.ended_at.format("%Y-%m-%d %H:%M:%S"),
            c.reason,
            c.hangup_cause,
            c.talk_seconds
        );
    }
    println!("kept open: {}", report.kept_open);
    if !report.held.is_empty() {
        println!("held by the mass-close guard: {}", report.held.len());
    }
    for s in &report.sessions {
        println!(
            "session {}: {} events, {}, ended: {}",
            s.name,
            s.events,
            if s.synced { "synced" } else { "never synced" },
            s.end
        );
    }
}
