//! What the daemon reports about itself: shared state written by the supervisors and sweeps, read by the HTTP
//! endpoints (`/readyz`, `/status`) and by `callwatch status`.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One AMI server's state as the daemon sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// Server name (`default` when unnamed).
    pub name: String,
    /// Connection state: `connecting`, `logged_in`, `syncing`, `synced` or `disconnected`.
    pub state: String,
    /// Logged in.
    pub connected: bool,
    /// A complete listing since the last (re)connect and no lag since.
    pub synced: bool,
    /// Since when the map has not been synced (absent while synced).
    pub unsynced_since: Option<DateTime<Utc>>,
    /// Why the connection was lost last, if it was.
    pub last_error: Option<String>,
    /// Live channels in the map.
    pub channels_live: usize,
    /// Time of the last complete `CoreShowChannels` listing.
    pub last_listing_at: Option<DateTime<Utc>>,
    /// Since when the map has been synced (absent while unsynced).
    #[serde(default)]
    pub synced_since: Option<DateTime<Utc>>,
    /// AMI events read per second, over the last few seconds.
    #[serde(default)]
    pub events_per_second: f64,
}

/// The last sweep's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepHealth {
    /// When it ran.
    pub at: Option<DateTime<Utc>>,
    /// Run id written to the audit table.
    pub run_id: Option<String>,
    /// Open rows it looked at.
    pub open: usize,
    /// Rows it closed.
    pub closed: usize,
    /// Rows skipped because the application had already ended them.
    pub skipped: usize,
    /// Closes held by the mass-close guard.
    pub held: usize,
    /// Decisions waiting for the database to come back.
    pub queued: usize,
}

/// A row kept alive longer than `max_call_duration` by a channel: a suspected ghost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuspectGhost {
    /// The server whose channel keeps it alive.
    pub server: String,
    /// The row's id.
    pub call_id: String,
    /// When the row was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// The channel's name.
    pub channel: String,
    /// The channel's Uniqueid.
    pub uniqueid: String,
    /// The last event seen about the channel.
    pub last_activity: Option<DateTime<Utc>>,
}

/// Everything `/status` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// callwatch version.
    pub version: String,
    /// Process start.
    pub started_at: Option<DateTime<Utc>>,
    /// At least one server's lock is held (this daemon writes).
    pub lock_held: bool,
    /// The servers whose lock this daemon holds: it closes only their calls.
    #[serde(default)]
    pub owned: Vec<String>,
    /// Database reachable at the last attempt.
    pub database_ok: bool,
    /// Per AMI server.
    pub servers: Vec<ServerHealth>,
    /// Last sweep.
    pub last_sweep: SweepHealth,
    /// Rows closed since the daemon started.
    pub closed_total: usize,
    /// Where the HTTP endpoints listen (absent when disabled).
    pub http_listen: Option<String>,
    /// Alerts raised (e.g. the mass-close guard's "ids never matched").
    pub alerts: Vec<String>,
    /// Open rows whose `server` value names no configured server: no round ever reads them.
    #[serde(default)]
    pub unknown_servers: Vec<UnknownServer>,
    /// Rows kept alive longer than `max_call_duration` (suspected ghost channels), as of each server's
    /// last round.
    #[serde(default)]
    pub suspect_ghosts: Vec<SuspectGhost>,
    /// Open rows by state, per server, as that server's last round saw them.
    #[serde(default)]
    pub open_rows: Vec<OpenRowsHealth>,
    /// The last [`RECENT_CLOSES`] closes, newest first.
    #[serde(default)]
    pub recent_closes: Vec<RecentClose>,
    /// Broadcast deliveries (absent when no transport is configured).
    #[serde(default)]
    pub broadcast: Option<BroadcastHealth>,
}

/// How many closes `/status` and the status page keep.
pub const RECENT_CLOSES: usize = 50;

/// One server's open rows by state, from its last round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenRowsHealth {
    /// Server name.
    pub server: String,
    /// When the round ran.
    pub at: Option<DateTime<Utc>>,
    /// Row count by state: `alive`, `awaiting_listing`, `awaiting_timeout`, `answered_in_future`,
    /// `held_by_guard`, `unreadable`, `suspected_ghost` (only states with rows are listed).
    pub states: std::collections::BTreeMap<String, usize>,
}

/// One close, as `/status` and the status page show it (no phone numbers: ids, times and the reason only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentClose {
    /// Row id (as text).
    pub id: String,
    /// Server whose round closed it.
    pub server: String,
    /// Why (`hangup_seen`, `channel_gone`, …).
    pub reason: String,
    /// `hangup_cause` written.
    pub hangup_cause: String,
    /// Answer time of the row.
    pub answered_at: DateTime<Utc>,
    /// `ended_at` written.
    pub ended_at: DateTime<Utc>,
    /// Lower bound of the true end, when not known exactly.
    pub ended_after: Option<DateTime<Utc>>,
    /// Upper bound of the true end, when not known exactly.
    pub ended_before: Option<DateTime<Utc>>,
    /// When the close was made.
    pub decided_at: DateTime<Utc>,
}

/// Broadcast deliveries since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BroadcastHealth {
    /// Configured transports (`redis`, `pusher`, `webhook`).
    pub transports: Vec<String>,
    /// Updates delivered (per transport, summed).
    pub delivered: u64,
    /// Failed delivery attempts (each retry counts).
    pub failed: u64,
    /// Updates dropped because the queue was full.
    pub dropped: u64,
    /// The last failure, redacted.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
}

impl DaemonStatus {
    /// Notes a round's closes (newest first, at most [`RECENT_CLOSES`] kept).
    pub fn note_closes(
        &mut self,
        server: &str,
        closed: &[crate::pipeline::ClosedRow],
        at: DateTime<Utc>,
    ) {
        for row in closed {
            self.recent_closes.insert(
                0,
                RecentClose {
                    id: row.id.to_text(),
                    server: server.to_string(),
                    reason: row.reason.clone(),
                    hangup_cause: row.hangup_cause.clone(),
                    answered_at: row.answered_at,
                    ended_at: row.ended_at,
                    ended_after: row.ended_after,
                    ended_before: row.ended_before,
                    decided_at: at,
                },
            );
        }
        self.recent_closes.truncate(RECENT_CLOSES);
    }

    /// Notes a round's open rows by state for `server`.
    pub fn note_open_rows(
        &mut self,
        server: &str,
        report: &crate::pipeline::SweepReport,
        at: DateTime<Utc>,
    ) {
        let entry = OpenRowsHealth {
            server: server.to_string(),
            at: Some(at),
            states: report.states(),
        };
        match self.open_rows.iter_mut().find(|o| o.server == server) {
            Some(slot) => *slot = entry,
            None => self.open_rows.push(entry),
        }
    }
}

/// Open rows whose `server` column names an Asterisk this daemon does not watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnknownServer {
    /// The value in the `server` column (`None`: NULL, when no server is the default).
    pub server: Option<String>,
    /// Open rows with that value.
    pub rows: i64,
}

impl UnknownServer {
    /// From open-row counts by `server` value, those that no configured server reads: a value naming none
    /// of `servers`, or NULL when no server is the default.
    pub fn from_counts(
        counts: Vec<(Option<String>, i64)>,
        servers: &[crate::settings::ResolvedServer],
    ) -> Vec<UnknownServer> {
        let has_default = servers.iter().any(|s| s.is_default);
        counts
            .into_iter()
            .filter(|(server, _)| match server {
                None => !has_default,
                Some(name) => !servers.iter().any(|s| &s.name == name),
            })
            .map(|(server, rows)| UnknownServer { server, rows })
            .collect()
    }
}

/// Shared, cheaply cloneable status.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<RwLock<DaemonStatus>>,
    /// The broadcaster's counters, once it has started.
    broadcast: Arc<std::sync::OnceLock<crate::broadcast::BroadcastStats>>,
}

impl Health {
    /// A new status holder.
    pub fn new(started_at: DateTime<Utc>) -> Self {
        let status = DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: Some(started_at),
            ..DaemonStatus::default()
        };
        Self {
            inner: Arc::new(RwLock::new(status)),
            broadcast: Arc::default(),
        }
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> DaemonStatus {
        let mut status = match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        status.broadcast = self.broadcast.get().and_then(|b| b.health());
        status
    }

    /// Reports the broadcaster's counters from now on (the first call wins).
    pub fn attach_broadcast(&self, stats: crate::broadcast::BroadcastStats) {
        let _ = self.broadcast.set(stats);
    }

    /// Changes the status under the lock.
    pub fn update(&self, f: impl FnOnce(&mut DaemonStatus)) {
        let mut guard = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }

    /// Replaces (or adds) one server's entry.
    pub fn set_server(&self, server: ServerHealth) {
        self.update(
            |s| match s.servers.iter_mut().find(|x| x.name == server.name) {
                Some(slot) => *slot = server,
                None => s.servers.push(server),
            },
        );
    }

    /// Ready: the lock of at least one server is held and every owned server (every server, when
    /// ownership is not reported) is synced or unsynced for less than `fallback_after`.
    pub fn is_ready(&self, now: DateTime<Utc>, fallback_after: chrono::Duration) -> bool {
        let s = self.snapshot();
        s.lock_held
            && s.servers
                .iter()
                .filter(|srv| s.owned.is_empty() || s.owned.contains(&srv.name))
                .all(|srv| {
                    srv.synced
                        || srv
                            .unsynced_since
                            .is_some_and(|since| now - since < fallback_after)
                })
    }
}

/// Events per second over a sliding window of a few seconds, from a running event count.
#[derive(Debug, Default)]
pub struct EventRate {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl EventRate {
    /// Samples older than this fall out of the window.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

    /// Adds a sample (`total` events counted at `at`) and returns the rate over the window.
    pub fn update(&mut self, total: u64, at: std::time::Instant) -> f64 {
        self.samples.push_back((at, total));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_lock_and_synced_or_recent_servers() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let h = Health::new(t0);
        let fallback = chrono::Duration::minutes(2);
        assert!(!h.is_ready(t0, fallback), "no lock yet");
        h.update(|s| s.lock_held = true);
        h.set_server(ServerHealth {
            name: "pbx1".into(),
            unsynced_since: Some(t0),
            ..Default::default()
        });
        assert!(h.is_ready(t0 + chrono::Duration::seconds(30), fallback));
        assert!(!h.is_ready(t0 + chrono::Duration::minutes(3), fallback));
        h.set_server(ServerHealth {
            name: "pbx1".into(),
            synced: true,
            ..Default::default()
        });
        assert!(h.is_ready(t0 + chrono::Duration::minutes(3), fallback));
        assert_eq!(h.snapshot().servers.len(), 1);
    }

    #[test]
    fn event_rate_is_events_over_the_window() {
        let t0 = std::time::Instant::now();
        let mut rate = EventRate::default();
        assert_eq!(rate.update(100, t0), 0.0);
        let r = rate.update(300, t0 + std::time::Duration::from_secs(2));
        assert!((r - 100.0).abs() < 1e-9, "{r}");
        // Old samples leave the window: only the last 5 s count.
        rate.update(300, t0 + std::time::Duration::from_secs(4));
        let r = rate.update(300, t0 + std::time::Duration::from_secs(10));
        assert!(r < 1e-9, "{r}");
    }

    #[test]
    fn recent_closes_keep_the_newest_fifty() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut s = DaemonStatus::default();
        let row = |id: i64| crate::pipeline::ClosedRow {
            id: store::CallId::Int(id),
            uniqueid: None,
            linkedid: None,
            extension: Some("2001".into()),
            ended_at: t0,
            hangup_cause: "normal_clearing".into(),
            reason: "hangup_seen".into(),
            ended_after: None,
            ended_before: None,
            talk_seconds: 0,
            answered_at: t0,
            closure_id: Some(id),
            ended_at_source: Default::default(),
        };
        for chunk in (1..=70).collect::<Vec<_>>().chunks(7) {
            let rows: Vec<_> = chunk.iter().map(|i| row(*i)).collect();
            s.note_closes("pbx1", &rows, t0);
        }
        assert_eq!(s.recent_closes.len(), RECENT_CLOSES);
        assert_eq!(s.recent_closes[0].id, "70");
        assert_eq!(s.recent_closes[49].id, "21");
    }
}
