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
}

/// Open rows whose `server` column names an Asterisk this daemon does not watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnknownServer {
    /// The value in the `server` column (`None`: NULL, when no server is the default).
    pub server: Option<String>,
    /// Open rows with that value.
    pub rows: i64,
}

/// Shared, cheaply cloneable status.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<RwLock<DaemonStatus>>,
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
        }
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> DaemonStatus {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
}
