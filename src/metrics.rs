//! Prometheus metrics: names, descriptions and the exporter handle. No per-call labels, only `server`,
//! `reason` and `transport`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// AMI events read, by server.
pub const EVENTS_TOTAL: &str = "callwatch_events_total";
/// Events a slow consumer missed (the map was marked unsynced and resynced), by server.
pub const LAG_TOTAL: &str = "callwatch_lag_total";
/// AMI reconnects, by server.
pub const RECONNECTS_TOTAL: &str = "callwatch_reconnects_total";
/// Time from an AMI (re)connect to a synced channel map (login + `CoreShowChannels`), by server.
pub const RESYNC_SECONDS: &str = "callwatch_resync_seconds";
/// Live channels in the map, by server.
pub const CHANNELS_LIVE: &str = "callwatch_channels_live";
/// Open (in-progress) rows seen by the last sweep, by server.
pub const CALLS_OPEN: &str = "callwatch_calls_open";
/// Open rows that cannot be read (quarantined, never judged), by server.
pub const ROWS_UNREADABLE: &str = "callwatch_rows_unreadable";
/// Open rows whose `server` value names no configured server (never read by any round), by that value.
pub const ROWS_UNKNOWN_SERVER: &str = "callwatch_rows_unknown_server";
/// Open rows kept alive longer than `max_call_duration` (suspected ghost channels), by server.
pub const SUSPECT_GHOST_CALLS: &str = "callwatch_suspect_ghost_calls";
/// Rows closed, by reason.
pub const CLOSES_TOTAL: &str = "callwatch_closes_total";
/// Duration of a sweep (read open rows, decide, write).
pub const SWEEP_SECONDS: &str = "callwatch_sweep_seconds";
/// Rounds run, by scope (`full`: every open row read; `changed`: only the rows that can match the channels
/// that ended).
pub const ROUNDS_TOTAL: &str = "callwatch_rounds_total";
/// Open rows read by rounds, by scope (divided by [`ROUNDS_TOTAL`]: rows read per round).
pub const ROWS_READ_TOTAL: &str = "callwatch_rows_read_total";
/// Transactions that wrote closes (group commit: the closes of one window each).
pub const CLOSE_COMMITS_TOTAL: &str = "callwatch_close_commits_total";
/// Closes written per transaction.
pub const CLOSE_COMMIT_ROWS: &str = "callwatch_close_commit_rows";
/// Database errors.
pub const DB_ERRORS_TOTAL: &str = "callwatch_db_errors_total";
/// Failed broadcast deliveries, by transport.
pub const BROADCAST_ERRORS_TOTAL: &str = "callwatch_broadcast_errors_total";
/// Broadcast updates given up, by transport and reason (`queue_full`, `undelivered`, `shutdown`).
pub const BROADCAST_DROPPED_TOTAL: &str = "callwatch_broadcast_dropped_total";

/// 1 while the AMI session is logged in, else 0, by server.
pub const AMI_UP: &str = "callwatch_ami_up";
/// 1 while the server's channel map is synced (a complete listing since the last (re)connect), by server.
pub const AMI_SYNCED: &str = "callwatch_ami_synced";
/// Seconds since the server's map stopped being synced (0 while synced), by server.
pub const AMI_UNSYNCED_SECONDS: &str = "callwatch_ami_unsynced_seconds";
/// `[policy] fallback_after`, in seconds (for alert rules).
pub const FALLBACK_AFTER_SECONDS: &str = "callwatch_fallback_after_seconds";
/// `[policy] sweep_interval`, in seconds (for alert rules).
pub const SWEEP_INTERVAL_SECONDS: &str = "callwatch_sweep_interval_seconds";
/// Unix time of the server's last successful round, by server.
pub const LAST_ROUND_TIMESTAMP_SECONDS: &str = "callwatch_last_round_timestamp_seconds";
/// Open rows by state after the server's last round, by server and state (`alive`, `awaiting_listing`,
/// `awaiting_timeout`, `answered_in_future`, `held_by_guard`, `unreadable`, `suspected_ghost`).
pub const OPEN_ROWS: &str = "callwatch_open_rows";
/// Time from a call's end (the `ended_at` written) to its close, by reason.
pub const CLOSE_LATENCY_SECONDS: &str = "callwatch_close_latency_seconds";

/// The states [`OPEN_ROWS`] reports (each set every round, 0 when empty).
pub const OPEN_ROW_STATES: &[&str] = &[
    "alive",
    "awaiting_listing",
    "awaiting_timeout",
    "answered_in_future",
    "held_by_guard",
    "unreadable",
    "suspected_ghost",
];

/// Buckets of [`CLOSE_LATENCY_SECONDS`]: from a seen Hangup (well under a second) to the timeout fallback.
pub const CLOSE_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// Installs the global Prometheus recorder and describes every metric.
///
/// Returns `None` if a recorder is already installed (e.g. twice in one test process).
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(CLOSE_LATENCY_SECONDS.into()),
            CLOSE_LATENCY_BUCKETS,
        )
        .ok()?
        .install_recorder()
        .ok()?;
    describe();
    spawn_upkeep(handle.clone());
    Some(handle)
}

/// How often the recorder's histograms are drained into their summaries.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the recorder's upkeep for as long as the runtime lives: `install_recorder` leaves it to the caller,
/// and without it every histogram sample is kept until `/metrics` is scraped (never, on a daemon nobody
/// scrapes: memory grew with every close).
fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_TOTAL, "AMI events read");
    describe_counter!(
        LAG_TOTAL,
        "AMI events dropped for a slow consumer (forces a resync)"
    );
    describe_counter!(RECONNECTS_TOTAL, "AMI reconnects");
    describe_histogram!(
        RESYNC_SECONDS,
        Unit::Seconds,
        "Time from an AMI (re)connect to a synced channel map (login + CoreShowChannels)"
    );
    describe_gauge!(CHANNELS_LIVE, "Live channels in the map");
    describe_gauge!(CALLS_OPEN, "In-progress rows at the last sweep");
    describe_gauge!(
        ROWS_UNREADABLE,
        "Open rows that cannot be read (skipped until their values are fixed)"
    );
    describe_gauge!(
        ROWS_UNKNOWN_SERVER,
        "Open rows whose server value names no configured server (never judged)"
    );
    describe_gauge!(
        SUSPECT_GHOST_CALLS,
        "Open rows kept alive by a channel longer than max_call_duration (suspected ghost channels)"
    );
    describe_counter!(CLOSES_TOTAL, "Rows closed by callwatch, by reason");
    describe_histogram!(SWEEP_SECONDS, Unit::Seconds, "Sweep duration");
    describe_counter!(
        ROUNDS_TOTAL,
        "Rounds run, by scope (full: every open row; changed: rows matching the channels that ended)"
    );
    describe_counter!(ROWS_READ_TOTAL, "Open rows read by rounds, by scope");
    describe_counter!(
        CLOSE_COMMITS_TOTAL,
        "Transactions that wrote closes (one per group-commit window)"
    );
    describe_histogram!(CLOSE_COMMIT_ROWS, "Closes written per transaction");
    describe_counter!(DB_ERRORS_TOTAL, "Database errors");
    describe_counter!(BROADCAST_ERRORS_TOTAL, "Failed broadcast deliveries");
    describe_counter!(
        BROADCAST_DROPPED_TOTAL,
        "Broadcast updates given up (queue full, delivery failed, left at shutdown)"
    );
    describe_gauge!(AMI_UP, "1 while the AMI session is logged in");
    describe_gauge!(
        AMI_SYNCED,
        "1 while the channel map is synced (complete listing since the last (re)connect)"
    );
    describe_gauge!(
        AMI_UNSYNCED_SECONDS,
        Unit::Seconds,
        "Seconds since the channel map stopped being synced (0 while synced)"
    );
    describe_gauge!(
        FALLBACK_AFTER_SECONDS,
        Unit::Seconds,
        "[policy] fallback_after"
    );
    describe_gauge!(
        SWEEP_INTERVAL_SECONDS,
        Unit::Seconds,
        "[policy] sweep_interval"
    );
    describe_gauge!(
        LAST_ROUND_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful round"
    );
    describe_gauge!(OPEN_ROWS, "Open rows by state after the last round");
    describe_histogram!(
        CLOSE_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from a call's end (ended_at written) to its close"
    );
}

/// At daemon start: exports the policy values the alert rules compare with, and the error counter at 0 (so
/// `increase()` sees its first error).
pub fn start(fallback_after: std::time::Duration, sweep_interval: std::time::Duration) {
    metrics::counter!(DB_ERRORS_TOTAL).increment(0);
    metrics::gauge!(FALLBACK_AFTER_SECONDS).set(fallback_after.as_secs_f64());
    metrics::gauge!(SWEEP_INTERVAL_SECONDS).set(sweep_interval.as_secs_f64());
}

/// Exports one server's AMI state; `unsynced_for` is how long the map has not been synced (zero while synced).
pub fn ami_state(server: &str, connected: bool, synced: bool, unsynced_for: chrono::Duration) {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    metrics::gauge!(AMI_UP, "server" => server.to_string()).set(flag(connected));
    metrics::gauge!(AMI_SYNCED, "server" => server.to_string()).set(flag(synced));
    let secs = if synced {
        0.0
    } else {
        unsynced_for.num_milliseconds().max(0) as f64 / 1000.0
    };
    metrics::gauge!(AMI_UNSYNCED_SECONDS, "server" => server.to_string()).set(secs);
}

/// Exports a successful round: its time and the open rows by state.
pub fn round(
    server: &str,
    states: &std::collections::BTreeMap<String, usize>,
    at: chrono::DateTime<chrono::Utc>,
) {
    metrics::gauge!(LAST_ROUND_TIMESTAMP_SECONDS, "server" => server.to_string())
        .set(at.timestamp_millis() as f64 / 1000.0);
    for state in OPEN_ROW_STATES {
        let n = states.get(*state).copied().unwrap_or(0);
        metrics::gauge!(OPEN_ROWS, "server" => server.to_string(), "state" => *state).set(n as f64);
    }
}
