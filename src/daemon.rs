//! `callwatch run`: the always-on watchdog.
//!
//! One AMI connection task per configured server feeds the shared channel map. A single loop owns the
//! [`Sweeper`] and runs a round for a server whenever there is something to learn:
//! - a channel ended (a seen Hangup, a resync that found channels gone, an Asterisk restart) — within
//!   [`GONE_DEBOUNCE`], so all four Hangups of a call land in one round and the row closes within a second;
//! - the server's map became synced (after every (re)connect's `CoreShowChannels`);
//! - every `sweep_interval` (default 10 min, the seed's schedule: also the timeout fallback's clock);
//! - after a failed round (database down), with exponential backoff: the evidence stays in the map, so a
//!   later round closes the same rows with the same times; nothing is lost or closed twice.
//!
//! Each server has its own lock in the database (see [`crate::fleet`]): the daemon watches every configured
//! server but runs rounds and writes only for the servers whose lock it holds (the seed's
//! `withoutOverlapping`, per server). Daemons sharing a database split the servers between them and take
//! over a dead one's within one lock check. SIGTERM/SIGINT let the round in progress finish (its
//! transaction commits or rolls back whole), release the locks, log off from Asterisk and exit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broadcast::Broadcaster;
use crate::fleet::{Ownership, DEFERRING_RECHECK, TAKEOVER_PATIENCE};
use crate::health::{Health, ServerHealth, SweepHealth, UnknownServer};
use crate::metrics as m;
use crate::pipeline::changed::RoundsWanted;
use crate::pipeline::{RoundScope, ServerTarget, Sweeper};
use crate::settings::{ResolvedServer, Settings};

/// Wait after the first channel-end notification before sweeping, to batch a call's Hangups.
pub const GONE_DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the lock is checked (and a standby tries to take it).
pub const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often the sessions of the held locks are pinged, apart from the loop (see [`probe_locks`]).
pub const LOCK_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A lock whose session has not answered a ping within this is no longer claimed (`/readyz`, `/status`).
pub const LOCK_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry delay after a failed round; doubles up to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay after failed rounds.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Default `[policy] ended_channels_retention`: how long ended channels are remembered (a database outage
/// shorter than this loses no exact end time).
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(60 * 60);
/// Default `[policy] ended_channels_max`: at most this many ended channels are remembered per server.
pub const MAX_TOMBSTONES: usize = 100_000;

/// Options of one daemon run besides the configuration file.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Stop after this long (tests, demo); `None` = until a signal.
    pub run_for: Option<Duration>,
    /// Cancelled by the caller to stop (in addition to SIGTERM/SIGINT when `signals` is set).
    pub cancel: Option<CancellationToken>,
    /// Install SIGTERM/SIGINT handlers.
    pub signals: bool,
    /// Clock (default: the system clock).
    pub clock: Option<clock::SharedClock>,
    /// Status holder to share with the caller (default: a new one).
    pub health: Option<Health>,
    /// Adjusts each server's client settings after the configuration is resolved (e.g. faster reconnects).
    pub tweak_ami: Option<fn(&mut ami::Config)>,
    /// Metrics recorder handle for `/metrics` (default: install the global Prometheus recorder).
    pub skip_metrics: bool,
    /// Count the closed rows without keeping them in [`DaemonSummary::closed`]: a daemon that runs for
    /// months must not hold every row it ever closed (`callwatch run` without `--exit-after`).
    pub forget_closed_rows: bool,
}

/// What the daemon did, returned when it stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DaemonSummary {
    /// Rows closed, in order (empty with [`DaemonOptions::forget_closed_rows`]).
    pub closed: Vec<crate::pipeline::ClosedRow>,
    /// How many rows were closed.
    pub closed_total: usize,
    /// Rounds run.
    pub sweeps: usize,
    /// Rounds that failed (database errors), later retried.
    pub failed_sweeps: usize,
    /// Rounds that read only the rows of the channels that ended (incremental rounds).
    pub changed_rounds: usize,
    /// Open rows read by the incremental rounds, all together.
    pub changed_rows_read: usize,
    /// Open rows read by the full rounds, all together.
    pub full_rows_read: usize,
    /// A server's lock was held at some point.
    pub held_lock: bool,
}

enum Trigger {
    Server(String),
}

/// What woke the daemon's loop.
enum Wake {
    /// SIGTERM/SIGINT or the caller's token: stop.
    Cancelled,
    /// A server's map completed a listing (or every supervisor stopped: `None`).
    Trigger(Option<Trigger>),
    /// Channels ended (seen Hangups, a listing that found channels gone, an Asterisk restart).
    ChannelsEnded,
    /// `sweep_interval` elapsed: a round for every server and a fresh listing.
    SweepInterval,
    /// The mass-close guard's confirming listing is due.
    RelistDue,
    /// A failed round's retry is due.
    RetryDue,
    /// The database answers again after an outage: take the locks back and retry the failed rounds now.
    DatabaseBack,
    /// Queued closes are due to be written (group commit).
    CommitDue,
    /// Time to check (or try to take) the instance lock.
    LockCheck,
    /// An unsynced server may have crossed `fallback_after`.
    FallbackDue,
    /// Time to tell systemd's watchdog that the loop is alive.
    Watchdog,
}

/// Runs the daemon until cancelled; returns a summary.
pub async fn run(settings: Settings, opts: DaemonOptions) -> anyhow::Result<DaemonSummary> {
    let clock: clock::SharedClock = opts
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(clock::SystemClock));
    let cancel = opts.cancel.clone().unwrap_or_default();
    if opts.signals {
        crate::shutdown::cancel_on_signals(cancel.clone());
    }
    if let Some(limit) = opts.run_for {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            c.cancel();
        });
    }
    let mut servers = settings.resolve_servers()?;
    if let Some(tweak) = opts.tweak_ami {
        for s in &mut servers {
            tweak(&mut s.ami);
        }
    }
    anyhow::ensure!(
        !servers.is_empty(),
        "no AMI server configured: add a [[server]] block (or set CALLWATCH_AMI_URL)"
    );
    let tracker = TaskTracker::new();
    let health = opts
        .health
        .clone()
        .unwrap_or_else(|| Health::new(clock.now()));
    let prometheus = if opts.skip_metrics {
        None
    } else {
        crate::metrics::install()
    };
    crate::metrics::start(
        settings.policy.fallback_after,
        settings.policy.sweep_interval,
    );

    if settings.http.enabled {
        let router = crate::http::router(
            health.clone(),
            prometheus,
            chrono::Duration::from_std(settings.policy.fallback_after).unwrap_or_default(),
            clock.clone(),
        );
        let (addr, task) =
            crate::http::serve(&settings.http.listen, router, cancel.clone()).await?;
        tracing::info!(%addr, "HTTP endpoints listening (status page /, /healthz /readyz /metrics /status)");
        health.update(|s| s.http_listen = Some(addr.to_string()));
        tracker.spawn(async move {
            let _ = task.await;
        });
    }

    let store = connect_store(&settings, clock.clone(), &cancel, &health).await?;
    let Some(store) = store else {
        return Ok(DaemonSummary::default());
    };
    let database = Arc::new(DatabaseWatch::default());
    tracker.spawn(probe_locks(
        store.clone(),
        health.clone(),
        database.clone(),
        cancel.clone(),
    ));
    // The broadcaster stops after the last round (its closes are announced too), not with the daemon's
    // cancel; dropped early (an error below), its queues close and its tasks end.
    let broadcast_stop = CancellationToken::new();
    let broadcaster = Broadcaster::start(&settings.broadcast, &tracker, broadcast_stop.clone())?;
    health.attach_broadcast(broadcaster.stats());
    // Unique per daemon, also for several daemons in one process (tests) started within a second.
    static DAEMONS_STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nth = DAEMONS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let run_id = crate::fleet::run_id(clock.now(), std::process::id(), nth);
    tracing::info!(%run_id, servers = servers.len(), database = %store.redacted_url(), "callwatch daemon starting");
    let mut sweeper = Sweeper::new(
        store.clone(),
        settings.policy.to_policy(),
        clock.clone(),
        run_id,
        false,
        broadcaster,
    )
    .with_cdr(crate::pipeline::cdr::open(
        settings.cdr.as_ref(),
        &settings.database.timezone,
    )?);
    sweeper.set_group_commit(settings.policy.group_commit());

    let map = ami::channels::ChannelMap::new(ami::channels::MapOptions {
        tombstone_retention: settings.policy.ended_channels_retention,
        max_tombstones: settings.policy.ended_channels_max,
        ..ami::channels::MapOptions::default()
    });
    let (trigger_tx, trigger_rx) = mpsc::channel::<Trigger>(1024);
    let mut clients = Vec::new();
    for server in &servers {
        let (client, connection) = ami::connect(server.ami.clone(), map.clone(), clock.clone());
        let conn_cancel = connection.cancel_token();
        let stop = cancel.clone();
        tracker.spawn(async move {
            stop.cancelled().await;
            conn_cancel.cancel();
        });
        tracker.spawn(async move {
            if let Err(err) = connection.run().await {
                tracing::error!(error = %err, "AMI connection task ended");
            }
        });
        tracker.spawn(supervise(
            server.clone(),
            client.clone(),
            map.clone(),
            health.clone(),
            trigger_tx.clone(),
            cancel.clone(),
        ));
        clients.push(client);
    }
    drop(trigger_tx);

    let ownership = Ownership::new(
        sweeper.run_id().to_string(),
        servers.iter().map(|s| s.name.clone()).collect(),
    );
    let mut daemon = Daemon::new(DaemonParts {
        ownership,
        all: servers.iter().map(|s| s.name.clone()).collect(),
        servers,
        clients,
        map,
        sweeper,
        store: store.clone(),
        health,
        clock,
        trigger_rx,
        database,
        settings: &settings,
        keep_closed_rows: !opts.forget_closed_rows,
    })
    .await;
    crate::shutdown::notify_ready();
    daemon.watch(&cancel).await;

    crate::shutdown::notify_stopping();
    tracing::info!("stopping: releasing the locks and logging off");
    let summary = daemon.finish().await;
    broadcast_stop.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    store.shutdown().await;
    tracing::info!(
        closed = summary.closed_total,
        sweeps = summary.sweeps,
        "callwatch daemon stopped"
    );
    Ok(summary)
}

/// What [`Daemon::new`] is made of.
struct DaemonParts<'a> {
    ownership: Ownership,
    servers: Vec<ResolvedServer>,
    all: BTreeSet<String>,
    clients: Vec<ami::Client>,
    map: ami::channels::ChannelMap,
    sweeper: Sweeper,
    store: store::Store,
    health: Health,
    clock: clock::SharedClock,
    trigger_rx: mpsc::Receiver<Trigger>,
    database: Arc<DatabaseWatch>,
    settings: &'a Settings,
    keep_closed_rows: bool,
}

/// The daemon's loop state. Each pass: collect what ended, run the pending rounds (when the lock is
/// held and no retry is waiting), then wait for the next [`Wake`] and note what it asks for.
struct Daemon {
    servers: Vec<ResolvedServer>,
    /// Every server's name.
    all: BTreeSet<String>,
    clients: Vec<ami::Client>,
    map: ami::channels::ChannelMap,
    sweeper: Sweeper,
    store: store::Store,
    health: Health,
    clock: clock::SharedClock,
    trigger_rx: mpsc::Receiver<Trigger>,
    /// The servers' locks this daemon holds: rounds run only for those servers.
    ownership: Ownership,
    /// The rounds to run: servers that need one (`pending`), those whose round must read every open row
    /// (`full`: start, listing, `sweep_interval`, fallback, a restart or a listing that found channels gone,
    /// a failed round), and the channels that ended (seen Hangups) since each server's last round, whose
    /// rows are all the others' rounds read (`changed`).
    wanted: RoundsWanted,
    /// The map's count of dropped notifications when last looked at (a drop makes every round full).
    gone_dropped: u64,
    /// Delay before the next retry of failed rounds, and when it is due.
    retry_delay: Duration,
    retry_at: Option<tokio::time::Instant>,
    /// When the loop started (a free lock is left to a live standby for [`TAKEOVER_PATIENCE`]).
    started: std::time::Instant,
    /// Tells when the database answers again while a retry waits (pinged by [`probe_locks`]).
    database: Arc<DatabaseWatch>,
    /// A failed round or lock check waits for the database: its answer wakes the loop
    /// ([`Wake::DatabaseBack`]).
    awaiting_database: bool,
    /// Servers whose held closes wait for a confirming listing, and when to ask for it.
    relist_at: BTreeMap<String, tokio::time::Instant>,
    /// Unsynced servers and when they cross `fallback_after` (a round is due then).
    fallback_at: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    confirm_delay: Duration,
    /// `[policy] skew`: a row answered this close before a listing waits for a later one.
    skew: Duration,
    fallback_after: chrono::Duration,
    sweep_interval: tokio::time::Interval,
    lock_tick: tokio::time::Interval,
    /// systemd's watchdog, pinged from this loop (so a loop stuck in a round stops the pings).
    watchdog: Option<tokio::time::Interval>,
    /// `server` values of open rows already warned about (and given a gauge) as matching no server.
    unknown_seen: BTreeSet<Option<String>>,
    summary: DaemonSummary,
    /// Keep every closed row in `summary.closed` (else only count them).
    keep_closed_rows: bool,
}

impl Daemon {
    async fn new(parts: DaemonParts<'_>) -> Self {
        let mut sweep_interval = tokio::time::interval(parts.settings.policy.sweep_interval);
        sweep_interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep_interval.tick().await; // the first tick is immediate; the start round is already pending
        let mut lock_tick = tokio::time::interval(LOCK_CHECK_INTERVAL);
        lock_tick.tick().await;
        let watchdog = crate::shutdown::watchdog_period().map(|period| {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        let mut daemon = Self {
            // a first, full round at start
            wanted: RoundsWanted {
                pending: parts.all.clone(),
                full: parts.all.clone(),
                changed: BTreeMap::new(),
            },
            gone_dropped: 0,
            all: parts.all,
            servers: parts.servers,
            clients: parts.clients,
            map: parts.map,
            sweeper: parts.sweeper,
            store: parts.store,
            health: parts.health,
            clock: parts.clock,
            trigger_rx: parts.trigger_rx,
            ownership: parts.ownership,
            retry_delay: RETRY_INITIAL,
            retry_at: None,
            database: parts.database,
            awaiting_database: false,
            started: std::time::Instant::now(),
            relist_at: BTreeMap::new(),
            fallback_at: BTreeMap::new(),
            confirm_delay: parts.settings.policy.confirm_delay,
            skew: parts.settings.policy.skew,
            fallback_after: chrono::Duration::from_std(parts.settings.policy.fallback_after)
                .unwrap_or(chrono::Duration::MAX),
            sweep_interval,
            lock_tick,
            watchdog,
            unknown_seen: BTreeSet::new(),
            summary: DaemonSummary::default(),
            keep_closed_rows: parts.keep_closed_rows,
        };
        daemon.check_locks().await;
        daemon
    }

    /// The main loop, until cancelled (or every AMI supervisor stopped).
    async fn watch(&mut self, cancel: &CancellationToken) {
        self.report_unknown_servers().await;
        loop {
            self.collect_ended();
            if self.may_write() {
                let again = self.run_pending_rounds().await;
                self.commit_queued(false).await;
                if again {
                    // Channels ended meanwhile: round again before waiting, but first do what else is due
                    // (a listing's round, a relist, the sweep interval, a lock check): on a busy PBX,
                    // channels end during every round, and back-to-back rounds must not starve them.
                    if !self.handle_ready(cancel).await {
                        return;
                    }
                    continue;
                }
            }
            let wake = self.next_wake(cancel).await;
            if !self.handle(wake).await {
                return;
            }
        }
    }

    /// The map's notification only wakes a waiting loop: collect what ended while we were busy, on the
    /// servers whose lock this daemon holds. Seen Hangups are noted for an incremental round; other ends
    /// make the server's next round full. True when anything was noted.
    fn collect_ended(&mut self) -> bool {
        let gone = self.map.take_gone();
        let dropped = self.map.gone_dropped();
        if dropped != self.gone_dropped {
            // Some notifications were lost: only a full round is sure to see their rows.
            self.gone_dropped = dropped;
            self.wanted.full.extend(self.all.iter().cloned());
        }
        let ownership = &self.ownership;
        self.wanted
            .note_ended(gone, |server| ownership.owns(server))
    }

    /// Asks for a full round of `name`.
    fn want_full(&mut self, name: String) {
        self.wanted.full.insert(name.clone());
        self.wanted.pending.insert(name);
    }

    /// Rounds run only under a server's lock, and not while a failed round waits for its retry.
    fn may_write(&self) -> bool {
        self.ownership.any() && !self.wanted.pending.is_empty() && self.retry_at.is_none()
    }

    /// One lock check: drop lost locks, beat the heartbeat, free or take locks; a server newly owned gets
    /// a round at once.
    async fn check_locks(&mut self) {
        let patience_over = self.started.elapsed() >= TAKEOVER_PATIENCE;
        let taken = self
            .ownership
            .check(
                &self.store,
                &self.health,
                LOCK_CHECK_INTERVAL,
                patience_over,
            )
            .await;
        for name in taken {
            self.want_full(name);
        }
        if self.ownership.deferring() {
            // A free lock left to a standby: see soon whether it took it (or stopped beating).
            self.lock_tick.reset_after(DEFERRING_RECHECK);
        }
        self.summary.held_lock |= self.ownership.any();
        if self.ownership.database_failed() {
            // Locks dropped or not taken for want of the database: check again as soon as it answers.
            self.await_database();
        } else if self.retry_at.is_none() {
            self.database_fine();
        }
    }

    /// Runs a round for every pending server. True when channels ended meanwhile (round again at once).
    async fn run_pending_rounds(&mut self) -> bool {
        let mut failed = BTreeSet::new();
        for name in std::mem::take(&mut self.wanted.pending) {
            if !self.ownership.owns(&name) {
                continue; // its owner runs its rounds; a round runs here when its lock is taken
            }
            if !self.round(&name).await {
                failed.insert(name);
            }
        }
        if failed.is_empty() {
            self.retry_delay = RETRY_INITIAL;
            if self.awaiting_database && !self.ownership.database_failed() {
                self.database_fine();
            }
            self.collect_ended()
        } else {
            for name in failed {
                self.want_full(name);
            }
            self.schedule_retry();
            false
        }
    }

    /// One round for server `name`; false when it failed (to be retried).
    async fn round(&mut self, name: &str) -> bool {
        let Some(server) = self.servers.iter().find(|s| s.name == name) else {
            return true;
        };
        let target = ServerTarget {
            name: server.name.clone(),
            is_default: server.is_default,
        };
        let channels = self.map.server(&server.name);
        let fresh = channels.freshness();
        self.schedule_fallback(&target.name, fresh.synced, fresh.unsynced_since);
        let full = self.wanted.full.remove(name);
        let changed = self.wanted.changed.remove(name).unwrap_or_default();
        let result = if full || changed.is_empty() {
            let taken = std::time::Instant::now();
            let snapshot = channels.snapshot();
            tracing::debug!(server = %target.name, live = snapshot.live.len(), ended = snapshot.ended.len(), ms = taken.elapsed().as_millis() as u64, "map snapshot for a full round");
            self.sweeper.sweep(&target, &snapshot).await
        } else {
            self.sweeper
                .sweep_changed(&target, &channels, &changed)
                .await
        };
        match result {
            Ok(report) => {
                self.summary.sweeps += 1;
                if report.scope == RoundScope::Changed {
                    self.summary.changed_rounds += 1;
                    self.summary.changed_rows_read += report.rows_read;
                } else {
                    self.summary.full_rows_read += report.rows_read;
                }
                self.record_round(&target.name, &report);
                if report.held.iter().any(|h| h.why == "awaiting_confirmation") {
                    // The mass-close guard wants a second listing at least confirm_delay later.
                    let at = tokio::time::Instant::now() + self.confirm_delay;
                    self.relist_at.entry(target.name.clone()).or_insert(at);
                }
                if fresh.synced && report.kept_by.contains_key("awaiting_listing") {
                    // Rows answered less than `skew` before the listing, whose channel the map does not
                    // know (a call that began and ended while AMI was away): only a later listing judges
                    // them, and none would come before the next reconnect.
                    let at = tokio::time::Instant::now() + self.skew + Duration::from_secs(1);
                    self.relist_at.entry(target.name.clone()).or_insert(at);
                }
                self.note_closed(report.closed);
                true
            }
            Err(err) => {
                self.summary.failed_sweeps += 1;
                tracing::warn!(server = %target.name, error = %err, retry_in = ?self.retry_delay, "sweep failed; keeping the evidence and retrying");
                self.health.update(|s| {
                    s.database_ok = false;
                    s.last_sweep.queued += 1;
                });
                false
            }
        }
    }

    /// An unsynced server's rows become judgeable by age once it has been unsynced for `fallback_after`
    /// (counted from process start when it was never synced): make sure a round runs then.
    fn schedule_fallback(
        &mut self,
        name: &str,
        synced: bool,
        unsynced_since: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        if synced {
            self.fallback_at.remove(name);
            return;
        }
        let since = unsynced_since.unwrap_or_else(|| self.sweeper.started_at());
        let due = since + self.fallback_after + chrono::Duration::seconds(1);
        if due > self.clock.now() {
            self.fallback_at.insert(name.to_string(), due);
        } else {
            self.fallback_at.remove(name);
        }
    }

    /// Publishes a successful round's outcome to `/status`. An incremental round read only some open rows:
    /// it adds its closes, and leaves the open rows' states to the full rounds.
    fn record_round(&self, server: &str, report: &crate::pipeline::SweepReport) {
        let now = self.clock.now();
        let run_id = self.sweeper.run_id().to_string();
        if report.scope == RoundScope::Changed {
            self.record_closes(server, &report.closed, report.skipped.len());
            self.health
                .update(|s| s.note_open_rows(server, report, now));
            crate::metrics::round(server, &report.states(), now);
            return;
        }
        self.health.update(|s| {
            s.database_ok = true;
            s.closed_total += report.closed.len();
            s.last_sweep = SweepHealth {
                at: Some(now),
                run_id: Some(run_id),
                open: report.open,
                closed: report.closed.len(),
                skipped: report.skipped.len(),
                held: report.held.len(),
                queued: 0,
            };
            s.suspect_ghosts.retain(|g| g.server != server);
            s.suspect_ghosts
                .extend(report.suspect_ghosts.iter().map(|g| crate::health::SuspectGhost {
                    server: server.to_string(),
                    call_id: g.id.to_text(),
                    answered_at: Some(g.answered_at),
                    channel: g.channel.clone(),
                    uniqueid: g.uniqueid.clone(),
                    last_activity: Some(g.last_activity),
                }));
            s.note_closes(server, &report.closed, now);
            s.note_open_rows(server, report, now);
            crate::metrics::round(server, &report.states(), now);
            s.alerts = report
                .held
                .iter()
                .filter(|h| h.why == "ids_never_matched")
                .map(|h| format!("{server}: row {} would be closed but no open row's id ever matched a channel (check the mapping)", h.id))
                .take(20)
                .collect();
        });
    }

    /// Publishes closes written outside a full round (an incremental round's, a group commit's).
    fn record_closes(&self, server: &str, closed: &[crate::pipeline::ClosedRow], skipped: usize) {
        if closed.is_empty() && skipped == 0 {
            return;
        }
        let now = self.clock.now();
        self.health.update(|s| {
            s.database_ok = true;
            s.closed_total += closed.len();
            s.note_closes(server, closed, now);
        });
    }

    /// Writes the queued closes that are due (all of them when `all`), each server's in one transaction. A
    /// failed commit is retried like a failed round: its rows are judged again by a full round.
    async fn commit_queued(&mut self, all: bool) {
        let servers = if all {
            self.sweeper.queued_servers()
        } else {
            self.sweeper.commits_due()
        };
        for name in servers {
            match self.sweeper.commit(&name).await {
                Ok(committed) => {
                    self.record_closes(&name, &committed.closed, committed.skipped.len());
                    self.note_closed(committed.closed);
                }
                Err(err) => {
                    self.summary.failed_sweeps += 1;
                    tracing::warn!(server = %name, error = %err, retry_in = ?self.retry_delay, "commit failed; keeping the evidence and retrying");
                    self.health.update(|s| s.database_ok = false);
                    self.want_full(name);
                    self.schedule_retry();
                }
            }
        }
    }

    /// A round or commit failed: retry after the backoff delay, or as soon as the database answers again
    /// after failing to (see [`DatabaseWatch`]), whichever comes first.
    fn schedule_retry(&mut self) {
        self.retry_at = Some(tokio::time::Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
        self.await_database();
    }

    /// Something waits for the database: have it pinged, and wake the loop when it answers again.
    fn await_database(&mut self) {
        self.awaiting_database = true;
        self.database.watch();
    }

    /// Nothing waits for the database any more: stop pinging it.
    fn database_fine(&mut self) {
        self.awaiting_database = false;
        self.database.settle();
    }

    /// When the queued closes are due, on the runtime's clock.
    fn commit_sleep(&self) -> Option<tokio::time::Instant> {
        let due = self.sweeper.commit_due()?;
        let wait = (due - self.clock.now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + wait)
    }

    /// Handles every wake-up that is ready now, without waiting (ended channels are only collected: a
    /// round follows at once). False to stop.
    async fn handle_ready(&mut self, cancel: &CancellationToken) -> bool {
        // Each wake-up source is ready at most once per pass; the bound only guards against a source that
        // keeps firing (ended channels on a busy PBX).
        for _ in 0..16 {
            let ready = tokio::select! {
                biased;
                wake = self.next_wake(cancel) => Some(wake),
                _ = std::future::ready(()) => None,
            };
            match ready {
                None => break,
                Some(Wake::ChannelsEnded) => {
                    self.collect_ended();
                }
                Some(wake) => {
                    if !self.handle(wake).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Waits for the next thing to do.
    async fn next_wake(&mut self, cancel: &CancellationToken) -> Wake {
        let fallback_sleep = self.fallback_sleep();
        let commit_sleep = self.commit_sleep();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Wake::Cancelled,
            trigger = self.trigger_rx.recv() => Wake::Trigger(trigger),
            _ = self.sweep_interval.tick() => Wake::SweepInterval,
            _ = sleep_until(self.relist_at.values().min().copied()) => Wake::RelistDue,
            _ = sleep_until(self.retry_at) => Wake::RetryDue,
            _ = self.database.back.notified(), if self.awaiting_database => Wake::DatabaseBack,
            _ = sleep_until(commit_sleep) => Wake::CommitDue,
            _ = self.lock_tick.tick() => Wake::LockCheck,
            _ = sleep_until(fallback_sleep) => Wake::FallbackDue,
            _ = tick_opt(self.watchdog.as_mut()) => Wake::Watchdog,
            // Last: on a busy PBX channels end all the time, and this is ready at every pass; before the
            // timers, it kept a standby (which runs no rounds) from ever checking the lock.
            _ = self.map.gone_ready() => Wake::ChannelsEnded,
        }
    }

    /// When to look at the fallback deadlines again: the earliest, at most 5 s from now (the clock may run
    /// faster than real time, as in the demo).
    fn fallback_sleep(&self) -> Option<tokio::time::Instant> {
        let due = self.fallback_at.values().min()?;
        let wait = (*due - self.clock.now())
            .to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(5));
        Some(tokio::time::Instant::now() + wait)
    }

    /// Acts on one wake-up; false to stop.
    async fn handle(&mut self, wake: Wake) -> bool {
        match wake {
            Wake::Cancelled => return false,
            Wake::Trigger(Some(Trigger::Server(name))) => self.want_full(name),
            Wake::Trigger(None) => {
                tracing::error!("every AMI supervisor stopped");
                return false;
            }
            Wake::ChannelsEnded => {
                tokio::time::sleep(GONE_DEBOUNCE).await;
                self.collect_ended();
            }
            Wake::SweepInterval => {
                self.report_unknown_servers().await;
                // A round now on what the map knows, and a fresh listing so that rows answered since the
                // last one can be judged; its completion brings another round.
                for name in self.all.clone() {
                    self.want_full(name.clone());
                    self.relist(&name);
                }
            }
            Wake::RelistDue => {
                let now = tokio::time::Instant::now();
                let due: Vec<String> = self
                    .relist_at
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    self.relist_at.remove(&name);
                    self.relist(&name);
                }
            }
            Wake::RetryDue => self.retry_at = None,
            Wake::DatabaseBack => {
                tracing::info!(
                    "the database answers again; checking the locks and retrying at once"
                );
                self.awaiting_database = false; // the watch stopped itself when it saw the answer
                                                // Locks dropped during the outage are taken again before the failed rounds run.
                self.check_locks().await;
                self.retry_at = None;
            }
            Wake::CommitDue => self.commit_queued(false).await,
            Wake::LockCheck => self.check_locks().await,
            Wake::FallbackDue => {
                let now = self.clock.now();
                let due: Vec<String> = self
                    .fallback_at
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    self.fallback_at.remove(&name);
                    self.want_full(name);
                }
            }
            Wake::Watchdog => crate::shutdown::notify_watchdog(),
        }
        true
    }

    /// Counts the open rows whose `server` value names no configured server (no round reads them), puts
    /// them in `/status` and `callwatch_rows_unknown_server{server}`, and warns once per value.
    async fn report_unknown_servers(&mut self) {
        let counts = match self.store.open_rows_by_server().await {
            Ok(c) => c,
            Err(err) => {
                tracing::debug!(error = %err, "cannot count open rows by server");
                return;
            }
        };
        let unknown = UnknownServer::from_counts(counts, &self.servers);
        for gone in self.unknown_seen.iter() {
            if !unknown.iter().any(|u| &u.server == gone) {
                let label = gone.clone().unwrap_or_default();
                metrics::gauge!(m::ROWS_UNKNOWN_SERVER, "server" => label).set(0.0);
            }
        }
        for u in &unknown {
            let label = u.server.clone().unwrap_or_default();
            metrics::gauge!(m::ROWS_UNKNOWN_SERVER, "server" => label).set(u.rows as f64);
            if self.unknown_seen.insert(u.server.clone()) {
                tracing::warn!(
                    server = u.server.as_deref().unwrap_or("NULL"),
                    rows = u.rows,
                    configured = ?self.all,
                    "open rows name a server this daemon does not watch; they are never judged \
                     (add a [[server]] with that name, or fix the rows' server values)"
                );
            }
        }
        self.health.update(|s| s.unknown_servers = unknown);
    }

    /// Asks server `name` for a fresh `CoreShowChannels` listing.
    fn relist(&self, name: &str) {
        if let Some(i) = self.servers.iter().position(|s| s.name == name) {
            self.clients[i].resync();
        }
    }

    /// Writes what is queued, releases the locks and logs off; returns the summary.
    /// Counts closed rows into the summary (and keeps them, unless told to forget them).
    fn note_closed(&mut self, rows: Vec<crate::pipeline::ClosedRow>) {
        self.summary.closed_total += rows.len();
        if self.keep_closed_rows {
            self.summary.closed.extend(rows);
        }
    }

    async fn finish(mut self) -> DaemonSummary {
        self.commit_queued(true).await;
        // A commit whose link broke after its COMMIT was sent: announce what did commit (no round of this
        // process will, and the next owner sees those rows closed).
        for (server, rows) in self.sweeper.settle_all_in_doubt().await {
            self.record_closes(&server, &rows, 0);
            self.note_closed(rows);
        }
        self.ownership.release_all(&self.store).await;
        drop(self.clients);
        self.summary
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Between the loop, which retries failed rounds, and [`probe_locks`], which pings the database: while a
/// retry waits, the probe pings a pooled connection, and when the database answers after not answering
/// (an outage ended, a restarted server is back), it wakes the loop to retry at once instead of at the end
/// of a backoff that may have grown to [`RETRY_MAX`]. A round that failed while the database answered
/// (a lost lock, a bad statement) keeps its backoff.
#[derive(Debug, Default)]
struct DatabaseWatch {
    /// A retry waits: ping the pool.
    watching: AtomicBool,
    /// A ping failed since the retry was scheduled.
    saw_down: AtomicBool,
    /// Notified (one permit) when the database answers after a failed ping.
    back: Notify,
}

impl DatabaseWatch {
    /// A retry was scheduled: start pinging.
    fn watch(&self) {
        self.watching.store(true, Ordering::SeqCst);
    }

    /// Rounds succeed again: stop pinging.
    fn settle(&self) {
        self.watching.store(false, Ordering::SeqCst);
        self.saw_down.store(false, Ordering::SeqCst);
    }

    /// Notes one ping's outcome.
    fn note(&self, answered: bool) {
        if !answered {
            self.saw_down.store(true, Ordering::SeqCst);
        } else if self.saw_down.swap(false, Ordering::SeqCst) {
            self.watching.store(false, Ordering::SeqCst);
            self.back.notify_one();
        }
    }
}

/// One ping of a pooled connection at a time, in its own task: a ping is never cancelled half-way (that
/// could return a connection in an unknown state to the pool); one unanswered within the probe's timeout
/// counts as a failure and is waited for again at the next probe.
#[derive(Default)]
struct PoolProbe {
    running: Option<tokio::task::JoinHandle<bool>>,
}

impl PoolProbe {
    /// Whether the database answered within `timeout`.
    async fn answered(&mut self, store: &store::Store, timeout: Duration) -> bool {
        let mut task = match self.running.take() {
            Some(task) => task,
            None => {
                let store = store.clone();
                tokio::spawn(async move { store.ping().await.is_ok() })
            }
        };
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(done) => done.unwrap_or(false),
            Err(_) => {
                self.running = Some(task);
                false
            }
        }
    }
}

/// Keeps the claim to the locks honest while the loop is busy: a round waiting on an unreachable database
/// (up to `acquire_timeout` per statement) holds up the lock checks, but not this probe. Every
/// [`LOCK_PROBE_INTERVAL`] it pings the session of each held lock ([`store::Store::ping_locks`]); when a
/// ping fails or goes unanswered for [`LOCK_PROBE_TIMEOUT`], the daemon stops claiming its locks
/// (`lock_held`, hence `/readyz`) and the database (`database_ok`) until a ping succeeds again. The loop's
/// next lock check then drops or takes the locks back. A ping is never cancelled half-way (that would leave
/// its connection unusable): an unanswered one is waited for before the next. While a failed round waits
/// for its retry, it also pings the pool and tells the loop when the database is back ([`DatabaseWatch`]).
async fn probe_locks(
    store: store::Store,
    health: Health,
    database: Arc<DatabaseWatch>,
    cancel: CancellationToken,
) {
    let mut pool_probe = PoolProbe::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LOCK_PROBE_INTERVAL) => {}
        }
        if database.watching.load(Ordering::SeqCst) {
            let answered = tokio::select! {
                _ = cancel.cancelled() => return,
                a = pool_probe.answered(&store, LOCK_PROBE_TIMEOUT) => a,
            };
            database.note(answered);
        }
        let ping = store.ping_locks();
        tokio::pin!(ping);
        let answered = tokio::select! {
            _ = cancel.cancelled() => return,
            r = &mut ping => Some(r),
            _ = tokio::time::sleep(LOCK_PROBE_TIMEOUT) => None,
        };
        let result = match answered {
            Some(r) => r,
            None => {
                unclaim(&health, &format!("no answer within {LOCK_PROBE_TIMEOUT:?}"));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = &mut ping => r,
                }
            }
        };
        match result {
            Ok(()) => health.update(|s| s.lock_held = !s.owned.is_empty()),
            Err(err) => unclaim(&health, &err.to_string()),
        }
    }
}

/// The held locks cannot be vouched for: stop claiming them.
fn unclaim(health: &Health, err: &str) {
    let mut was = false;
    health.update(|s| {
        was = s.lock_held;
        s.lock_held = false;
        s.database_ok = false;
    });
    if was {
        tracing::warn!(error = %err, "the database does not answer on the lock's session; not claiming the lock until it does");
    }
}

/// Connects to the database, retrying with backoff until it answers or the daemon is cancelled.
async fn connect_store(
    settings: &Settings,
    clock: clock::SharedClock,
    cancel: &CancellationToken,
    health: &Health,
) -> anyhow::Result<Option<store::Store>> {
    let mut delay = RETRY_INITIAL;
    loop {
        match store::Store::connect_existing(&settings.database, clock.clone()).await {
            Ok(store) => {
                health.update(|s| s.database_ok = true);
                analyze_if_unplanned(&store).await;
                return Ok(Some(store));
            }
            Err(err) if err.is_retryable() => {
                tracing::warn!(error = %err, retry_in = ?delay, "database unavailable; retrying");
                metrics::counter!(m::DB_ERRORS_TOTAL).increment(1);
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(err) => return Err(err).context("cannot use the database"),
        }
    }
}

/// Gives a calls table without planner statistics its first `ANALYZE` (PostgreSQL; see
/// [`store::Store::ensure_planner_stats`]), so that incremental rounds are index lookups from the start.
pub(crate) async fn analyze_if_unplanned(store: &store::Store) {
    match store.ensure_planner_stats().await {
        Ok(true) => tracing::info!(
            "the calls table had no planner statistics (never analyzed); ran ANALYZE so that rounds look rows up by index"
        ),
        Ok(false) => {}
        Err(err) => tracing::warn!(
            error = %err,
            "could not check or give the calls table its planner statistics; rounds may be slow until autovacuum analyzes it"
        ),
    }
}

/// Follows one server's connection state: health, metrics, and a round after every completed resync.
async fn supervise(
    server: ResolvedServer,
    client: ami::Client,
    map: ami::channels::ChannelMap,
    health: Health,
    triggers: mpsc::Sender<Trigger>,
    cancel: CancellationToken,
) {
    let mut state = client.state();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = ami::ClientStats::default();
    let mut last_listing: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut synced_since: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut rate = crate::health::EventRate::default();
    let channels = map.server(&server.name);
    // The supervisor starts before the first connect, so the first sync is measured too.
    let mut syncing_since: Option<std::time::Instant> = Some(std::time::Instant::now());
    loop {
        let current = state.borrow_and_update().clone();
        let fresh = channels.freshness();
        let synced = fresh.synced;
        let snapshot_live = channels.live_count();
        let (connected, unsynced_since, last_error) = match &current {
            ami::State::Disconnected { since, reason } => (
                false,
                fresh.unsynced_since.or(Some(*since)),
                Some(crate::redact::text(reason)),
            ),
            _ => (fresh.connected, fresh.unsynced_since, None),
        };
        if !synced {
            synced_since = None;
        } else if synced_since.is_none() {
            synced_since = fresh.listing_at;
        }
        let events_per_second = rate.update(client.stats().events, std::time::Instant::now());
        crate::metrics::ami_state(
            &server.name,
            connected,
            synced,
            unsynced_since.map_or(chrono::Duration::zero(), |t| chrono::Utc::now() - t),
        );
        health.set_server(ServerHealth {
            name: server.name.clone(),
            state: state_name(&current).to_string(),
            connected,
            synced,
            unsynced_since: if synced { None } else { unsynced_since },
            last_error,
            channels_live: snapshot_live,
            last_listing_at: fresh.listing_at,
            synced_since,
            events_per_second,
        });
        metrics::gauge!(m::CHANNELS_LIVE, "server" => server.name.clone())
            .set(snapshot_live as f64);
        // Time from a (re)connect to a synced map (login + complete listing).
        match current {
            ami::State::Synced => {
                if let Some(start) = syncing_since.take() {
                    metrics::histogram!(m::RESYNC_SECONDS, "server" => server.name.clone())
                        .record(start.elapsed().as_secs_f64());
                }
            }
            // Measured from the last moment seen disconnected (just before a reconnect attempt).
            ami::State::Disconnected { .. } => syncing_since = Some(std::time::Instant::now()),
            _ => {
                syncing_since.get_or_insert_with(std::time::Instant::now);
            }
        }
        // Every completed listing (after a (re)connect, or asked for) brings a round.
        if synced && fresh.listing_at.is_some() && fresh.listing_at != last_listing {
            last_listing = fresh.listing_at;
            if triggers
                .send(Trigger::Server(server.name.clone()))
                .await
                .is_err()
            {
                return;
            }
        }

        let stats = client.stats();
        metrics::counter!(m::EVENTS_TOTAL, "server" => server.name.clone())
            .increment(stats.events.saturating_sub(last.events));
        metrics::counter!(m::LAG_TOTAL, "server" => server.name.clone())
            .increment(stats.lagged.saturating_sub(last.lagged));
        // Every login after the first is a reconnect.
        metrics::counter!(m::RECONNECTS_TOTAL, "server" => server.name.clone()).increment(
            stats
                .logins
                .saturating_sub(1)
                .saturating_sub(last.logins.saturating_sub(1)),
        );
        last = stats;

        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

fn state_name(state: &ami::State) -> &'static str {
    match state {
        ami::State::Connecting => "connecting",
        ami::State::LoggedIn => "logged_in",
        ami::State::Syncing => "syncing",
        ami::State::Synced => "synced",
        ami::State::Disconnected { .. } => "disconnected",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn woken(watch: &DatabaseWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(20), watch.back.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_loop_is_woken_when_the_database_answers_after_failing_to() {
        let watch = DatabaseWatch::default();
        watch.watch();
        watch.note(false);
        watch.note(false);
        assert!(!woken(&watch).await, "not while it does not answer");
        watch.note(true);
        assert!(woken(&watch).await);
        assert!(!watch.watching.load(Ordering::SeqCst), "pinging stops");
    }

    #[tokio::test]
    async fn a_round_that_failed_while_the_database_answered_keeps_its_backoff() {
        let watch = DatabaseWatch::default();
        watch.watch();
        watch.note(true);
        watch.note(true);
        assert!(!woken(&watch).await);
        // A failed ping noted, then rounds succeed on their own: nothing is left to wake a later retry.
        watch.note(false);
        watch.settle();
        watch.watch();
        watch.note(true);
        assert!(!woken(&watch).await);
    }
}
