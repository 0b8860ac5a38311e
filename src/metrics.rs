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
/// Database errors.
pub const DB_ERRORS_TOTAL: &str = "callwatch_db_errors_total";
/// Failed broadcast deliveries, by transport.
pub const BROADCAST_ERRORS_TOTAL: &str = "callwatch_broadcast_errors_total";
/// Broadcast updates given up, by transport and reason (`queue_full`, `undelivered`, `shutdown`).
pub const BROADCAST_DROPPED_TOTAL: &str = "callwatch_broadcast_dropped_total";

/// Installs the global Prometheus recorder and describes every metric.
///
/// Returns `None` if a recorder is already installed (e.g. twice in one test process).
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder().ok()?;
    describe();
    Some(handle)
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
    describe_counter!(DB_ERRORS_TOTAL, "Database errors");
    describe_counter!(BROADCAST_ERRORS_TOTAL, "Failed broadcast deliveries");
    describe_counter!(
        BROADCAST_DROPPED_TOTAL,
        "Broadcast updates given up (queue full, delivery failed, left at shutdown)"
    );
}
