//! Per-server locks and the fleet: which servers this daemon owns.
//!
//! Each server has its own lock in the shared database (`acquire_lock(<server name>)`: a PostgreSQL advisory
//! lock, MySQL `GET_LOCK('callwatch:<database>:<server>')`, a SQLite lease row). A daemon watches every
//! server it is configured for (so a takeover finds a synced map), but runs rounds and writes only for the
//! servers whose lock it holds. Daemons see each other through heartbeat rows (`callwatch_daemons`, written
//! every lock check); with others waiting, a daemon keeps at most `ceil(servers / live daemons)` locks and
//! frees the rest, so several daemons with one configuration split the servers between them; with nobody
//! waiting it takes every free lock, so the servers of a daemon that died are owned again within one check.

use std::collections::{BTreeMap, BTreeSet};

use store::DaemonBeat;

use crate::health::Health;

/// A heartbeat older than this many lock checks is a daemon gone.
pub const HEARTBEAT_TTL_CHECKS: u32 = 3;

/// How old a heartbeat may be for its daemon to count as alive (`HEARTBEAT_TTL_CHECKS` lock checks).
pub fn heartbeat_ttl(check_interval: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(check_interval * HEARTBEAT_TTL_CHECKS)
        .unwrap_or(chrono::Duration::seconds(15))
}

/// How long a daemon just started leaves a free server lock to a daemon that was alive before it (a
/// standby, which takes the lock at its next lock check): a newcomer, started after a crash or a deploy,
/// has not seen the Hangups of the calls that ended before it started, so it could close them only by its
/// listing (later, and without their end times), while a standby has their evidence.
pub const TAKEOVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How much older than one lock check a standby's heartbeat may be for a newcomer to keep leaving a free
/// lock to it: a standby beats at every check, so one whose beat is older than a check and this is no
/// longer checking (killed before it could take the lock, or stuck) and will not take it.
pub const STANDBY_BEAT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// While a newcomer leaves a free lock to a standby, it checks again this soon (rather than a whole lock
/// check later), so that it sees within a second when the standby took the lock or stopped beating.
pub const DEFERRING_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The daemons in `live` that are still checking their locks at `now` (the store's clock): those whose
/// heartbeat is at most one `check_interval` plus [`STANDBY_BEAT_GRACE`] old. A heartbeat whose time
/// cannot be read counts as checking.
pub fn still_checking(
    live: &[DaemonBeat],
    now: chrono::DateTime<chrono::Utc>,
    check_interval: std::time::Duration,
) -> Vec<DaemonBeat> {
    let fresh = chrono::Duration::from_std(check_interval + STANDBY_BEAT_GRACE)
        .unwrap_or(chrono::Duration::MAX);
    live.iter()
        .filter(|d| d.seen().is_none_or(|seen| now - seen <= fresh))
        .cloned()
        .collect()
}

/// The run id of the `nth` daemon (from 0) started in process `pid` at `started`: unique, and sorting as
/// the daemons started (the fleet's seniority, see [`may_take_free`]): the start to the microsecond, then
/// the process, then `nth` zero-padded (`-9` sorted after `-10` once, and a newcomer took a standby's lock).
pub fn run_id(started: chrono::DateTime<chrono::Utc>, pid: u32, nth: u32) -> String {
    let at = started.format("%Y%m%dT%H%M%S%.6f");
    match nth {
        0 => format!("run-{at}-{pid}"),
        n => format!("run-{at}-{pid}-{n:06}"),
    }
}

/// Whether this daemon may take the free lock of `server`: when its [`TAKEOVER_PATIENCE`] is over, or
/// when none of its `elders` (the other daemons alive when it first looked) is alive and checking (in
/// `checking`, see [`still_checking`]) to take it instead. A heartbeat row that still lists `server` as owned while its lock is free is a daemon that
/// died holding it (its row outlives it until it expires), not a standby. Deferring only to elders, and
/// among them only to ids that sort before `me` (run ids sort by start time, see [`run_id`]), keeps daemons
/// started together from waiting on each other.
pub fn may_take_free(
    me: &str,
    server: &str,
    elders: &BTreeSet<String>,
    checking: &[DaemonBeat],
    patience_over: bool,
) -> bool {
    patience_over
        || !checking.iter().any(|d| {
            elders.contains(&d.id)
                && d.id.as_str() < me
                && d.servers_wanted > 0
                && !d.owned.iter().any(|o| o == server)
        })
}

/// What one lock check should do with this daemon's locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Held locks to free for daemons that wait.
    pub release: Vec<String>,
    /// How many more free locks to try to take.
    pub may_take: usize,
}

/// The fair share of a daemon configured for `wanted` servers when `live` daemons run.
fn share(wanted: usize, live: usize) -> usize {
    wanted.div_ceil(live.max(1))
}

/// Decides from the live daemons' heartbeats (this one's included, as `me`) how many locks to keep and take.
///
/// A daemon *waits* when it owns fewer locks than its fair share (and than it wants). While one waits, a
/// daemon above its share frees the excess and takes no more than its share; while nobody waits, it takes
/// every free lock (a daemon that died has left its servers to whoever checks first).
pub fn balance(me: &str, wanted: usize, owned: &BTreeSet<String>, live: &[DaemonBeat]) -> Balance {
    let count = live.len().max(1);
    let others_waiting = live.iter().any(|d| {
        let want = usize::try_from(d.servers_wanted).unwrap_or(0);
        d.id != me && d.owned.len() < share(want, count).min(want)
    });
    let mine = share(wanted, count);
    if !others_waiting {
        return Balance {
            release: Vec::new(),
            may_take: wanted.saturating_sub(owned.len()),
        };
    }
    if owned.len() > mine {
        // Free the last ones by name, so that a restarted fleet ends up with the same split.
        let release = owned
            .iter()
            .rev()
            .take(owned.len() - mine)
            .cloned()
            .collect();
        return Balance {
            release,
            may_take: 0,
        };
    }
    Balance {
        release: Vec::new(),
        may_take: mine - owned.len(),
    }
}

/// This daemon's server locks.
pub struct Ownership {
    /// The daemon's run id (its heartbeat row's id).
    id: String,
    host: String,
    /// Every configured server, in order.
    wanted: Vec<String>,
    /// The locks held, by server.
    locks: BTreeMap<String, store::InstanceLock>,
    /// The heartbeat table is missing (an older schema): balancing is off, said once.
    heartbeat_warned: bool,
    /// The other daemons alive at this daemon's first heartbeat (see [`may_take_free`]); `None` before it.
    elders: Option<BTreeSet<String>>,
    /// The last check could not reach the database (a lock dropped or not taken for that reason).
    database_failed: bool,
    /// The last check left a free lock to an elder (see [`may_take_free`]).
    deferring: bool,
}

impl Ownership {
    /// No lock yet, for the servers `wanted`.
    pub fn new(id: String, wanted: Vec<String>) -> Self {
        Self {
            id,
            host: store::this_host(),
            wanted,
            locks: BTreeMap::new(),
            heartbeat_warned: false,
            database_failed: false,
            elders: None,
            deferring: false,
        }
    }

    /// Whether this daemon holds `server`'s lock.
    pub fn owns(&self, server: &str) -> bool {
        self.locks.contains_key(server)
    }

    /// The servers owned.
    pub fn owned(&self) -> BTreeSet<String> {
        self.locks.keys().cloned().collect()
    }

    /// Whether the last check failed to reach the database: locks it dropped or could not take are
    /// taken at the next check, which should come as soon as the database answers.
    pub fn database_failed(&self) -> bool {
        self.database_failed
    }

    /// Whether the last check left a free lock to an elder: check again within [`DEFERRING_RECHECK`].
    pub fn deferring(&self) -> bool {
        self.deferring
    }

    /// Whether any lock is held.
    pub fn any(&self) -> bool {
        !self.locks.is_empty()
    }

    /// One lock check: drops the locks that were lost (and cannot be taken back), beats the heartbeat,
    /// frees or takes locks as [`balance`] says (a free lock only as [`may_take_free`] allows), and publishes
    /// the result. Returns the servers newly owned (each needs a round now).
    pub async fn check(
        &mut self,
        store: &store::Store,
        health: &Health,
        check_interval: std::time::Duration,
        patience_over: bool,
    ) -> Vec<String> {
        self.database_failed = false;
        self.deferring = false;
        self.drop_lost().await;
        let ttl = heartbeat_ttl(check_interval);
        let live = self.beat(store, ttl).await;
        let me = &self.id;
        let elders = self
            .elders
            .get_or_insert_with(|| {
                live.iter()
                    .filter(|d| &d.id != me)
                    .map(|d| d.id.clone())
                    .collect()
            })
            .clone();
        let checking = still_checking(&live, store.now(), check_interval);
        let owned = self.owned();
        let plan = balance(&self.id, self.wanted.len(), &owned, &live);
        for server in &plan.release {
            if let Some(lock) = self.locks.remove(server) {
                tracing::info!(server = %server, "freeing the server's lock for a daemon that waits");
                if let Err(err) = lock.release().await {
                    tracing::warn!(server = %server, error = %err, "could not release the server's lock (it is freed when the connection closes)");
                }
            }
        }
        let mut taken = Vec::new();
        let mut db_ok = true;
        for server in self.wanted.clone() {
            if taken.len() >= plan.may_take {
                break;
            }
            if self.locks.contains_key(&server) {
                continue;
            }
            if !may_take_free(&self.id, &server, &elders, &checking, patience_over) {
                self.deferring = true;
                continue;
            }
            match store.acquire_lock(&server).await {
                Ok(Some(lock)) => {
                    tracing::info!(server = %server, "server lock acquired; this daemon closes its calls");
                    self.locks.insert(server.clone(), lock);
                    taken.push(server);
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(server = %server, error = %err, "cannot take the server's lock; retrying");
                    db_ok = false;
                    self.database_failed = true;
                    break;
                }
            }
        }
        if !taken.is_empty() || !plan.release.is_empty() {
            // Tell the others at once rather than at the next check.
            let _ = store.heartbeat(&self.beat_row(), ttl).await;
        }
        if self.locks.is_empty() && db_ok {
            tracing::debug!("every server's lock is held by another callwatch; standing by");
        }
        let owned: Vec<String> = self.locks.keys().cloned().collect();
        health.update(|s| {
            s.lock_held = !owned.is_empty();
            s.owned = owned;
            if !db_ok {
                s.database_ok = false;
            }
        });
        taken
    }

    /// Checks every held lock; one that is gone and cannot be taken back is dropped (which closes its
    /// session and stops its checks on writes).
    async fn drop_lost(&mut self) {
        let mut lost = Vec::new();
        for (server, lock) in &self.locks {
            let held = match lock.is_held().await {
                Ok(true) => true,
                Ok(false) | Err(_) => match lock.reacquire().await {
                    Ok(held) => held,
                    Err(_) => {
                        self.database_failed = true;
                        false
                    }
                },
            };
            if !held {
                lost.push(server.clone());
            }
        }
        for server in lost {
            tracing::error!(server = %server, "server lock lost; this server's writes stopped until it is re-acquired");
            self.locks.remove(&server);
        }
    }

    fn beat_row(&self) -> DaemonBeat {
        DaemonBeat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: i64::from(std::process::id()),
            servers_wanted: self.wanted.len() as i64,
            owned: self.locks.keys().cloned().collect(),
            seen_at: String::new(),
        }
    }

    /// Writes the heartbeat and returns the live daemons (just this one when the table is unusable).
    async fn beat(&mut self, store: &store::Store, ttl: chrono::Duration) -> Vec<DaemonBeat> {
        match store.heartbeat(&self.beat_row(), ttl).await {
            Ok(live) => live,
            Err(err) => {
                if !self.heartbeat_warned {
                    self.heartbeat_warned = true;
                    tracing::warn!(error = %err, "cannot write the daemon heartbeat (run `callwatch migrate` to add callwatch_daemons); servers are not balanced between daemons");
                }
                vec![self.beat_row()]
            }
        }
    }

    /// Frees every lock and removes the heartbeat row (the daemon is stopping).
    pub async fn release_all(&mut self, store: &store::Store) {
        for (server, lock) in std::mem::take(&mut self.locks) {
            if let Err(err) = lock.release().await {
                tracing::warn!(server = %server, error = %err, "could not release the server's lock (it is freed when the connection closes)");
            }
        }
        let _ = store.leave(&self.id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, wanted: i64, owned: &[&str]) -> DaemonBeat {
        DaemonBeat {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            servers_wanted: wanted,
            owned: owned.iter().map(|s| s.to_string()).collect(),
            seen_at: String::new(),
        }
    }

    #[test]
    fn run_ids_sort_as_the_daemons_started() {
        let t = chrono::DateTime::from_timestamp(1_795_520_000, 0).unwrap();
        let ms = chrono::TimeDelta::milliseconds(1);
        let started = [
            run_id(t, 900, 0),
            run_id(t, 900, 9),
            run_id(t, 900, 10),
            run_id(t, 900, 100),
            run_id(t + ms, 100, 0),
            run_id(t + ms * 200, 100, 1),
            run_id(t + chrono::TimeDelta::seconds(1), 5, 0),
        ];
        let mut sorted = started.to_vec();
        sorted.sort();
        assert_eq!(sorted, started);
        assert_eq!(started[2], "run-20261124T113320.000000-900-000010");
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn alone_a_daemon_takes_every_server() {
        let b = balance("a", 6, &set(&[]), &[beat("a", 6, &[])]);
        assert_eq!(
            b,
            Balance {
                release: vec![],
                may_take: 6
            }
        );
    }

    #[test]
    fn with_others_waiting_a_daemon_frees_down_to_its_share() {
        let owned = set(&["p1", "p2", "p3", "p4", "p5", "p6"]);
        let live = [
            beat("a", 6, &["p1", "p2", "p3", "p4", "p5", "p6"]),
            beat("b", 6, &[]),
            beat("c", 6, &[]),
        ];
        let b = balance("a", 6, &owned, &live);
        assert_eq!(b.release, ["p6", "p5", "p4", "p3"]);
        assert_eq!(b.may_take, 0);
        // The waiting ones take their share, no more.
        let b = balance("b", 6, &set(&[]), &live);
        assert_eq!(
            b,
            Balance {
                release: vec![],
                may_take: 2
            }
        );
    }

    #[test]
    fn a_dead_daemon_at_its_share_is_not_waited_for() {
        // c was killed holding its share; its row lives on until it expires, but nobody waits: take all.
        let live = [
            beat("a", 6, &["p1", "p2"]),
            beat("b", 6, &["p3", "p4"]),
            beat("c", 6, &["p5", "p6"]),
        ];
        let b = balance("a", 6, &set(&["p1", "p2"]), &live);
        assert_eq!(
            b,
            Balance {
                release: vec![],
                may_take: 4
            }
        );
    }

    #[test]
    fn a_newcomer_leaves_a_free_lock_to_a_live_standby_until_its_patience_is_over() {
        let elders = set(&["run-1-standby", "run-1-dead", "run-1-old"]);
        let live = [beat("run-2-new", 1, &[]), beat("run-1-standby", 1, &[])];
        assert!(!may_take_free("run-2-new", "p1", &elders, &live, false));
        assert!(
            may_take_free("run-2-new", "p1", &elders, &live, true),
            "patience over"
        );
        // Alone, it takes the lock at once: nobody else would close the calls.
        assert!(may_take_free("run-2-new", "p1", &elders, &live[..1], false));
        // A daemon that stopped wanting servers is no standby.
        let stopped = [beat("run-2-new", 1, &[]), beat("run-1-old", 0, &[])];
        assert!(may_take_free("run-2-new", "p1", &elders, &stopped, false));
        // The row of a daemon killed holding p1's lock outlives it: no standby either.
        let killed = [beat("run-2-new", 1, &[]), beat("run-1-dead", 1, &["p1"])];
        assert!(may_take_free("run-2-new", "p1", &elders, &killed, false));
        // ...but a standby beside it is.
        let both = [
            beat("run-2-new", 1, &[]),
            beat("run-1-dead", 1, &["p1"]),
            beat("run-1-standby", 1, &[]),
        ];
        assert!(!may_take_free("run-2-new", "p1", &elders, &both, false));
        // A daemon started after this one (or with it) is no elder: two newcomers do not wait on each other.
        let younger = [beat("run-2-new", 1, &[]), beat("run-3-later", 1, &[])];
        assert!(may_take_free("run-2-new", "p1", &elders, &younger, false));
        // Two started together, each an elder of the other: the one whose id sorts first takes the lock.
        let pair = [beat("run-1-a", 1, &[]), beat("run-1-b", 1, &[])];
        assert!(may_take_free(
            "run-1-a",
            "p1",
            &set(&["run-1-b"]),
            &pair,
            false
        ));
        assert!(!may_take_free(
            "run-1-b",
            "p1",
            &set(&["run-1-a"]),
            &pair,
            false
        ));
    }

    #[test]
    fn a_standby_that_stopped_beating_is_not_waited_for() {
        let now = chrono::DateTime::from_timestamp(1_795_520_000, 0).unwrap();
        let check = std::time::Duration::from_secs(5);
        let at = |ago_ms: i64| {
            (now - chrono::TimeDelta::milliseconds(ago_ms))
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        };
        let mut standby = beat("run-1-standby", 1, &[]);
        let newcomer = beat("run-2-new", 1, &[]);
        let elders = set(&["run-1-standby"]);
        // Beaten within a check and the grace: still checking, so the newcomer leaves it the lock.
        standby.seen_at = at(5_900);
        let live = [newcomer.clone(), standby.clone()];
        let checking = still_checking(&live, now, check);
        assert_eq!(checking.len(), 2);
        assert!(!may_take_free("run-2-new", "p1", &elders, &checking, false));
        // Silent for longer (killed before its next check): its row is still live, but nobody waits on it.
        standby.seen_at = at(6_100);
        let live = [newcomer.clone(), standby.clone()];
        let checking = still_checking(&live, now, check);
        assert_eq!(checking, std::slice::from_ref(&newcomer));
        assert!(may_take_free("run-2-new", "p1", &elders, &checking, false));
        // A heartbeat whose time cannot be read counts as checking (waiting is safe, only slower).
        standby.seen_at = "yesterday".into();
        assert_eq!(still_checking(&[standby], now, check).len(), 1);
    }

    #[test]
    fn daemons_with_disjoint_servers_keep_theirs() {
        let live = [beat("a", 2, &["p1", "p2"]), beat("b", 2, &["p3", "p4"])];
        let b = balance("a", 2, &set(&["p1", "p2"]), &live);
        assert_eq!(
            b,
            Balance {
                release: vec![],
                may_take: 0
            }
        );
    }
}
