//! The pipeline shared by `run`, `replay`, `cleanup` and `demo`: open rows × channel-map snapshot →
//! reconciler decisions → audited, conditional closes, logged and broadcast.
//!
//! The [`Sweeper`] owns nothing but the store handle, the policy and what must survive between rounds
//! (the mass-close guard's holds, whether a server's ids ever matched). Every round re-reads the open rows
//! and re-decides from the map, so a round that fails (database down) loses nothing: the evidence stays in
//! the map's tombstones and the next round closes the same rows with the same times.

pub mod cdr;
pub mod changed;
pub mod view;

use std::collections::{HashMap, HashSet};

use ami::channels::{ChannelFilter, MapSnapshot, ServerChannels};
use chrono::{DateTime, Utc};
use reconciler::{Decision, HoldReason, KeepReason, OpenRow, Reason};
use serde::Serialize;
use store::{
    CallId, CloseReason, CloseRequest, EndedAtSource, OpenCall, OpenRows, ServerFilter, Store,
    UnreadableRow,
};

use crate::broadcast::{Broadcaster, CallUpdate};
use crate::metrics as m;
pub use changed::ChangedChannels;
pub use view::ServerMemory;

/// Default `[policy] commit_window`: closes decided within it are written in one transaction.
pub const DEFAULT_COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);
/// Default `[policy] commit_max_rows`: a commit queue this long is written at once.
pub const DEFAULT_COMMIT_MAX_ROWS: usize = 500;

/// Group commit: the closes decided within `window` (or until `max_rows` are queued, whichever comes first)
/// are written in one set-based, audited transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// How long a close may wait for others (zero: each round's closes are written at once).
    pub window: std::time::Duration,
    /// A queue this long is written at once.
    pub max_rows: usize,
}

impl GroupCommit {
    /// Each round's closes written at once, in one transaction (one-shot commands, tests).
    pub const IMMEDIATE: GroupCommit = GroupCommit {
        window: std::time::Duration::ZERO,
        max_rows: usize::MAX,
    };
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            window: DEFAULT_COMMIT_WINDOW,
            max_rows: DEFAULT_COMMIT_MAX_ROWS,
        }
    }
}

/// Closes of one server waiting for their commit.
struct CommitQueue {
    requests: Vec<CloseRequest>,
    planned: HashMap<CallId, ClosedRow>,
    /// When the first of them was queued.
    since: DateTime<Utc>,
}

impl CommitQueue {
    fn new(since: DateTime<Utc>) -> Self {
        Self {
            requests: Vec::new(),
            planned: HashMap::new(),
            since,
        }
    }
}

/// What one commit wrote.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Rows closed.
    pub closed: Vec<ClosedRow>,
    /// Rows the application had ended meanwhile (left alone).
    pub skipped: Vec<CallId>,
}

/// A round's decisions, before anything is written.
#[derive(Default)]
struct Judged {
    batch: Vec<CloseRequest>,
    planned: HashMap<CallId, ClosedRow>,
    held: Vec<HeldRow>,
    still_held: HashMap<String, DateTime<Utc>>,
    kept: usize,
    kept_by: std::collections::BTreeMap<&'static str, usize>,
    suspect_ghosts: Vec<GhostRow>,
    /// Some row matched a channel (for [`ServerMemory::ids_matched_before`]).
    ids_matched: bool,
    /// A row would be closed by a rule that weighs the other open rows, or held.
    needs_full_round: bool,
    /// The state of each row kept or held (see [`SweepReport::states`]).
    row_states: Vec<(CallId, &'static str)>,
}

/// Where a round's evidence comes from.
#[derive(Clone, Copy)]
enum MapSource<'a> {
    /// A snapshot of the whole map, taken by the caller.
    Snapshot(&'a MapSnapshot),
    /// The server's live map: narrowed to the rows read (incremental), or whole (full).
    Channels(&'a ServerChannels),
}

/// The channels that can bear on `calls`: by their Uniqueids, channel names and Linkedids, as the
/// reconciler matches them ([`open_row`]).
fn evidence_filter(calls: &[OpenCall]) -> ChannelFilter {
    let mut filter = ChannelFilter::default();
    for row in calls.iter().map(open_row) {
        filter.uniqueids.extend(row.uniqueid);
        filter.linkedids.extend(row.linkedid);
        filter
            .names
            .extend(row.channel.map(|c| c.trim().to_string()));
    }
    filter
}

/// Which rows a round read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundScope {
    /// Every open row of the server.
    #[default]
    Full,
    /// Only the rows carrying an id of a channel that ended.
    Changed,
}

impl RoundScope {
    fn of(changed: Option<&ChangedChannels>) -> Self {
        if changed.is_some() {
            RoundScope::Changed
        } else {
            RoundScope::Full
        }
    }

    /// `full` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundScope::Full => "full",
            RoundScope::Changed => "changed",
        }
    }
}

/// Which rows belong to a server.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// The server's name (as in the `server` column and the channel map).
    pub name: String,
    /// Rows with a NULL `server` belong to this server too.
    pub is_default: bool,
}

/// One row callwatch closed (or, on a dry run, would close).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedRow {
    /// Row id.
    pub id: CallId,
    /// Row's Uniqueid.
    pub uniqueid: Option<String>,
    /// Row's Linkedid.
    pub linkedid: Option<String>,
    /// Row's extension.
    pub extension: Option<String>,
    /// End time written.
    pub ended_at: DateTime<Utc>,
    /// `hangup_cause` written.
    pub hangup_cause: String,
    /// Why.
    pub reason: String,
    /// Lower bound of the true end time, when not known exactly.
    pub ended_after: Option<DateTime<Utc>>,
    /// Upper bound of the true end time, when not known exactly.
    pub ended_before: Option<DateTime<Utc>>,
    /// Talk time written.
    pub talk_seconds: i64,
    /// Row's answer time.
    pub answered_at: DateTime<Utc>,
    /// Audit row id (None on a dry run).
    pub closure_id: Option<i64>,
    /// Where `ended_at` comes from: callwatch's evidence, or Asterisk's CDR.
    pub ended_at_source: EndedAtSource,
}

/// One row the mass-close guard holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldRow {
    /// Row id.
    pub id: CallId,
    /// The rule that would close it.
    pub would_close: String,
    /// `awaiting_confirmation` or `ids_never_matched` (an alert).
    pub why: String,
}

/// A row kept alive longer than `max_call_duration` by a channel (a suspected ghost).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GhostRow {
    /// Row id.
    pub id: CallId,
    /// Row's answer time.
    pub answered_at: DateTime<Utc>,
    /// The channel that keeps it alive.
    pub channel: String,
    /// That channel's Uniqueid.
    pub uniqueid: String,
    /// The last event seen about that channel.
    pub last_activity: DateTime<Utc>,
}

/// What one round did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Open rows looked at.
    pub open: usize,
    /// Rows closed (or that would be, on a dry run).
    pub closed: Vec<ClosedRow>,
    /// Rows the application had ended meanwhile (the conditional update skipped them).
    pub skipped: Vec<CallId>,
    /// Rows held by the mass-close guard.
    pub held: Vec<HeldRow>,
    /// Rows kept open.
    pub kept: usize,
    /// Open rows that could not be read (quarantined: never judged, never written).
    pub unreadable: Vec<UnreadableRow>,
    /// Rows kept open although a channel has kept them alive longer than `max_call_duration`.
    pub suspect_ghosts: Vec<GhostRow>,
    /// Rows kept open, by why (see [`keep_state`]).
    pub kept_by: std::collections::BTreeMap<&'static str, usize>,
    /// Earlier closes whose end time a CDR that arrived later made exact (see [`cdr::Refiner`]).
    pub refined: Vec<store::RefinedCall>,
    /// Open rows this round read (`open` plus `unreadable`, before leaving out those already decided).
    pub rows_read: usize,
    /// Which rows it read.
    pub scope: RoundScope,
    /// Closes decided and waiting for their commit (group commit) when the round ended.
    pub queued: usize,
    /// The server's open rows by state after an incremental round: its rows' new states over the others'
    /// from earlier rounds (`None` after a full round, whose own counts are the server's).
    pub server_states: Option<std::collections::BTreeMap<String, usize>>,
}

impl SweepReport {
    /// Open rows by state after this round: the kept rows by why, `held_by_guard` and `unreadable`.
    pub fn states(&self) -> std::collections::BTreeMap<String, usize> {
        if let Some(states) = &self.server_states {
            return states.clone();
        }
        let mut states: std::collections::BTreeMap<String, usize> = self
            .kept_by
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        if !self.held.is_empty() {
            states.insert("held_by_guard".into(), self.held.len());
        }
        if !self.unreadable.is_empty() {
            states.insert("unreadable".into(), self.unreadable.len());
        }
        states
    }
}

/// The state name of a row kept open: `alive`, `awaiting_listing` (the map is unsynced, or the row was
/// answered after the last listing), `awaiting_timeout`, `answered_in_future`, or `kept`.
pub fn keep_state(reason: &reconciler::KeepReason) -> &'static str {
    use reconciler::KeepReason as K;
    match reason {
        K::Alive { .. } => "alive",
        K::NotSynced { .. } | K::AnsweredAfterListing { .. } => "awaiting_listing",
        K::AwaitingTimeout { .. } => "awaiting_timeout",
        K::AnsweredInFuture => "answered_in_future",
        _ => "kept",
    }
}

/// Runs rounds; see the module docs.
pub struct Sweeper {
    store: Store,
    policy: reconciler::Policy,
    clock: clock::SharedClock,
    run_id: String,
    dry_run: bool,
    broadcaster: Broadcaster,
    memory: HashMap<String, ServerMemory>,
    /// Rows already reported closed on a dry run, so repeated rounds report each once.
    dry_closed: HashSet<CallId>,
    /// Unreadable rows already logged (each is logged once per process).
    unreadable_logged: HashSet<CallId>,
    /// Suspected ghosts already warned about (each is warned about once per process).
    ghosts_logged: HashSet<CallId>,
    /// Closes whose commit may or may not have happened (the connection died after `COMMIT` was sent), by
    /// server: the next round asks the audit table which of them this run did close, and announces those.
    in_doubt: HashMap<String, Vec<ClosedRow>>,
    /// When this sweeper was made (the process started watching): the start of `fallback_after` for a map
    /// that has never been synced.
    started_at: DateTime<Utc>,
    /// Exact end times from Asterisk's CDRs (`[cdr]`), when configured.
    refiner: Option<self::cdr::Refiner>,
    /// How closes are grouped into transactions.
    group: GroupCommit,
    /// Closes decided and not yet written, by server.
    queue: HashMap<String, CommitQueue>,
    /// Each server's open rows by state, as the rounds left them (for the states after incremental rounds).
    row_states: HashMap<String, HashMap<CallId, &'static str>>,
}

impl Sweeper {
    /// A sweeper writing under `run_id` (the audit table's run id).
    pub fn new(
        store: Store,
        policy: reconciler::Policy,
        clock: clock::SharedClock,
        run_id: String,
        dry_run: bool,
        broadcaster: Broadcaster,
    ) -> Self {
        Self {
            started_at: clock.now(),
            store,
            policy,
            clock,
            run_id,
            dry_run,
            broadcaster,
            memory: HashMap::new(),
            dry_closed: HashSet::new(),
            unreadable_logged: HashSet::new(),
            ghosts_logged: HashSet::new(),
            in_doubt: HashMap::new(),
            refiner: None,
            group: GroupCommit::IMMEDIATE,
            queue: HashMap::new(),
            row_states: HashMap::new(),
        }
    }

    /// Looks up Asterisk's CDRs for closes without a seen Hangup (see [`cdr`]).
    pub fn with_cdr(mut self, refiner: Option<self::cdr::Refiner>) -> Self {
        self.refiner = refiner;
        self
    }

    /// When this sweeper was made: the start of `fallback_after` for a server never synced.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The audit run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// True when nothing is written.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the open rows of `target` answered before `before` (all when `None`), with the ones that
    /// cannot be read set apart.
    pub async fn open_rows(
        &self,
        target: &ServerTarget,
        before: Option<DateTime<Utc>>,
    ) -> Result<OpenRows, store::Error> {
        let mut rows = self
            .store
            .in_progress_rows(ServerFilter::Named(&target.name), before)
            .await?;
        if target.is_default {
            let default = self
                .store
                .in_progress_rows(ServerFilter::Default, before)
                .await?;
            rows.calls.extend(default.calls);
            rows.unreadable.extend(default.unreadable);
        }
        Ok(rows)
    }

    /// Resolves the closes left in doubt by a broken commit: those the audit table shows this run made are
    /// announced now (logged, counted, broadcast: exactly once); the others were rolled back and their rows
    /// are judged again like any open row.
    async fn settle_in_doubt(
        &mut self,
        target: &ServerTarget,
    ) -> Result<Vec<ClosedRow>, store::Error> {
        let Some(rows) = self.in_doubt.get(&target.name).filter(|r| !r.is_empty()) else {
            return Ok(Vec::new());
        };
        let ids: Vec<CallId> = rows.iter().map(|r| r.id.clone()).collect();
        let recorded = self.store.closes_in_run(&self.run_id, &ids).await?;
        let rows = self.in_doubt.remove(&target.name).unwrap_or_default();
        let mut settled = Vec::new();
        for mut row in rows {
            let Some(done) = recorded.iter().find(|r| r.call_id == row.id) else {
                continue;
            };
            tracing::info!(call_id = %row.id, server = %target.name, "the close whose commit was not confirmed did commit");
            row.ended_at = done.ended_at;
            row.talk_seconds = done.talk_seconds;
            row.closure_id = Some(done.closure_id);
            self.announce(target, &row);
            settled.push(row);
        }
        Ok(settled)
    }

    /// Resolves every server's closes left in doubt (see `settle_in_doubt`), e.g. before the daemon stops,
    /// so that those that did commit are announced: no round of this process will. Returns them by server;
    /// a server whose audit cannot be read keeps its closes in doubt (nothing is announced twice).
    pub async fn settle_all_in_doubt(&mut self) -> Vec<(String, Vec<ClosedRow>)> {
        let mut servers: Vec<String> = self
            .in_doubt
            .iter()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        servers.sort();
        let mut out = Vec::new();
        for name in servers {
            let target = ServerTarget {
                name: name.clone(),
                is_default: false,
            };
            match self.settle_in_doubt(&target).await {
                Ok(rows) => out.push((name, rows)),
                Err(err) => {
                    tracing::warn!(server = %name, error = %err, "cannot tell whether the closes of the broken commit were written; they are not announced");
                }
            }
        }
        out
    }

    /// Counts the suspected ghosts of a round and warns once about each.
    fn report_ghosts(&mut self, target: &ServerTarget, ghosts: &[GhostRow]) {
        metrics::gauge!(m::SUSPECT_GHOST_CALLS, "server" => target.name.clone())
            .set(ghosts.len() as f64);
        for g in ghosts {
            if self.ghosts_logged.insert(g.id.clone()) {
                tracing::warn!(
                    call_id = %g.id,
                    server = %target.name,
                    channel = %g.channel,
                    uniqueid = %g.uniqueid,
                    answered_at = %g.answered_at.format("%Y-%m-%d %H:%M:%S"),
                    last_activity = %g.last_activity.format("%Y-%m-%d %H:%M:%S"),
                    "suspected ghost channel: the call has been kept alive longer than max_call_duration by a \
                     channel Asterisk still lists; hang the channel up in Asterisk, or set [policy] \
                     close_ghosts = true to close such calls"
                );
            }
        }
    }

    /// Logs the unreadable rows an incremental round met that were never logged (the count per server is
    /// the full rounds').
    fn note_unreadable(&mut self, target: &ServerTarget, unreadable: &[UnreadableRow]) {
        for row in unreadable {
            if self.unreadable_logged.insert(row.id.clone()) {
                warn_unreadable(row, &target.name);
            }
        }
    }

    /// Quarantines unreadable rows: each is logged once (not every round), and counted per server.
    fn quarantine(&mut self, target: &ServerTarget, unreadable: &[UnreadableRow]) {
        metrics::gauge!(m::ROWS_UNREADABLE, "server" => target.name.clone())
            .set(unreadable.len() as f64);
        for row in unreadable {
            if self.unreadable_logged.insert(row.id.clone()) {
                warn_unreadable(row, &target.name);
            }
        }
    }

    /// One full round for one server: read every open row, decide from `snapshot`, close what is over.
    ///
    /// On a database error nothing is half-written (each batch is one transaction); the error is returned
    /// and the caller retries later, when the same evidence gives the same closes.
    pub async fn sweep(
        &mut self,
        target: &ServerTarget,
        snapshot: &MapSnapshot,
    ) -> Result<SweepReport, store::Error> {
        self.round(target, MapSource::Snapshot(snapshot), None)
            .await
    }

    /// An incremental round: read only the open rows that carry an id of a channel in `changed` (an indexed
    /// lookup), decide them with the same [`reconciler::decide`] on everything the map knows about them,
    /// close what is over. Its cost grows with what changed, not with the open rows nor the map.
    ///
    /// The evidence is the whole map's, narrowed to the rows read: every channel, live or ended, whose
    /// Uniqueid, name or any Linkedid it ever carried is one of those rows' ([`ServerChannels::snapshot_of`]).
    /// A row read only because it shares a Linkedid with a hung-up leg is judged with its own channel too,
    /// and kept while that is up.
    ///
    /// Only evidence is acted on from such a round (`hangup_seen`, `asterisk_restart`): when a row read
    /// would be closed by a rule that weighs the other open rows (`channel_gone`, `superseded`,
    /// `timeout_cleanup`, `ghost_channel`, the mass-close guard), the round reads every open row instead and
    /// is a full round. The same holds when the mapping has neither a `uniqueid` nor a `linkedid` column.
    pub async fn sweep_changed(
        &mut self,
        target: &ServerTarget,
        channels: &ServerChannels,
        changed: &ChangedChannels,
    ) -> Result<SweepReport, store::Error> {
        self.round(target, MapSource::Channels(channels), Some(changed))
            .await
    }

    /// Reads the rows of a round: every open row (`changed` is `None`) or those matching `changed`.
    async fn round_rows(
        &self,
        target: &ServerTarget,
        before: DateTime<Utc>,
        changed: Option<&ChangedChannels>,
    ) -> Result<OpenRows, store::Error> {
        let Some(changed) = changed else {
            return self.open_rows(target, Some(before)).await;
        };
        let keys = changed.keys();
        let mut rows = self
            .store
            .in_progress_matching(ServerFilter::Named(&target.name), Some(before), &keys)
            .await?;
        if target.is_default {
            let default = self
                .store
                .in_progress_matching(ServerFilter::Default, Some(before), &keys)
                .await?;
            rows.calls.extend(default.calls);
            rows.unreadable.extend(default.unreadable);
        }
        Ok(rows)
    }

    async fn round(
        &mut self,
        target: &ServerTarget,
        source: MapSource<'_>,
        changed: Option<&ChangedChannels>,
    ) -> Result<SweepReport, store::Error> {
        let started = std::time::Instant::now();
        // Rows answered in the future (clock skew) are never judged, so they are not even read.
        let before = self.clock.now() + chrono::Duration::seconds(1);
        let settled = match self.settle_in_doubt(target).await {
            Ok(rows) => rows,
            Err(err) => {
                metrics::counter!(m::DB_ERRORS_TOTAL).increment(1);
                return Err(err);
            }
        };
        let mut changed = changed.filter(|_| self.store.matches_by_ids());
        let mut read_time = std::time::Duration::ZERO;
        let mut judge_time = std::time::Duration::ZERO;
        let (calls, unreadable, judged, rows_read) = loop {
            let read_started = std::time::Instant::now();
            let read = self.round_rows(target, before, changed).await;
            read_time += read_started.elapsed();
            let OpenRows { calls, unreadable } = match read {
                Ok(c) => c,
                Err(err) => {
                    metrics::counter!(m::DB_ERRORS_TOTAL).increment(1);
                    return Err(err);
                }
            };
            let rows_read = calls.len() + unreadable.len();
            let scope = RoundScope::of(changed);
            metrics::counter!(m::ROUNDS_TOTAL, "scope" => scope.as_str()).increment(1);
            metrics::counter!(m::ROWS_READ_TOTAL, "scope" => scope.as_str())
                .increment(rows_read as u64);
            let queued = self.queue.get(&target.name);
            let calls: Vec<OpenCall> = calls
                .into_iter()
                .filter(|c| !self.dry_closed.contains(&c.id))
                // Closes decided by an earlier round and waiting for their commit are not judged again.
                .filter(|c| !queued.is_some_and(|q| q.planned.contains_key(&c.id)))
                .collect();
            tracing::debug!(server = %target.name, open = calls.len(), scope = scope.as_str(), "round started");
            let judge_started = std::time::Instant::now();
            let taken;
            let snapshot = match source {
                MapSource::Snapshot(snapshot) => snapshot,
                MapSource::Channels(channels) => {
                    taken = if changed.is_some() {
                        channels.snapshot_of(&evidence_filter(&calls))
                    } else {
                        channels.snapshot()
                    };
                    &taken
                }
            };
            let judged = self.judge(target, snapshot, &calls);
            judge_time += judge_started.elapsed();
            if changed.is_some() && judged.needs_full_round {
                tracing::debug!(server = %target.name, "a row of the changed channels needs the full round");
                changed = None;
                continue;
            }
            break (calls, unreadable, judged, rows_read);
        };
        let incremental = changed.is_some();
        if incremental {
            self.note_unreadable(target, &unreadable);
        } else {
            self.quarantine(target, &unreadable);
        }
        let Judged {
            mut batch,
            mut planned,
            held,
            still_held,
            kept,
            kept_by,
            suspect_ghosts,
            ids_matched,
            row_states,
            ..
        } = judged;
        let states = self.row_states.entry(target.name.clone()).or_default();
        if !incremental {
            states.clear();
        }
        for req in &batch {
            states.remove(&req.call_id);
        }
        states.extend(row_states);
        states.extend(unreadable.iter().map(|u| (u.id.clone(), "unreadable")));
        let server_states = incremental.then(|| {
            let mut counts = std::collections::BTreeMap::new();
            for state in states.values() {
                *counts.entry(state.to_string()).or_insert(0) += 1;
            }
            counts
        });
        let memory = self.memory.entry(target.name.clone()).or_default();
        memory.ids_matched_before |= ids_matched;
        if incremental {
            // Nothing was held (that makes a full round); rows closed now are no longer held.
            for req in &batch {
                memory.held.remove(&req.call_id.to_text());
            }
        } else {
            memory.held = still_held;
        }

        let settled_count = settled.len();
        let mut report = SweepReport {
            open: calls.len(),
            unreadable,
            closed: settled,
            held,
            kept,
            kept_by,
            suspect_ghosts,
            rows_read,
            scope: RoundScope::of(changed),
            server_states,
            ..SweepReport::default()
        };
        if !incremental {
            self.report_ghosts(target, &report.suspect_ghosts);
        }
        if report.held.iter().any(|h| h.why == "ids_never_matched") {
            tracing::error!(
                server = %target.name,
                held = report.held.len(),
                "mass close held: none of the open rows' ids ever matched a channel of this server \
                 (check the column mapping and the server name)"
            );
        }

        if let Some(refiner) = &self.refiner {
            let now = self.clock.now();
            refiner
                .refine_batch(&self.store, &calls, &mut batch, &mut planned, now)
                .await;
        }
        if self.dry_run {
            for row in planned.into_values() {
                self.dry_closed.insert(row.id.clone());
                report.closed.push(row);
            }
            report.closed.sort_by(|a, b| a.id.cmp(&b.id));
            return Ok(report);
        }
        // The closes join the server's commit queue; the queue is written when its window has passed or it
        // is full (`commit_due`), at once when group commit is off.
        let queue = self
            .queue
            .entry(target.name.clone())
            .or_insert_with(|| CommitQueue::new(self.clock.now()));
        queue.requests.extend(batch);
        queue.planned.extend(planned);
        if self.group.window.is_zero() || queue.requests.len() >= self.group.max_rows {
            let committed = self.commit(&target.name).await?;
            report.closed.extend(committed.closed);
            report.skipped.extend(committed.skipped);
        }
        report.queued = self.queue.get(&target.name).map_or(0, |q| q.requests.len());
        if let Some(refiner) = self.refiner.as_mut() {
            let now = self.clock.now();
            report.refined = refiner
                .later_pass(&self.store, target, &self.run_id, now)
                .await;
        }
        if !incremental {
            let closed_now = report.closed.len() - settled_count;
            metrics::gauge!(m::CALLS_OPEN, "server" => target.name.clone())
                .set(report.open.saturating_sub(closed_now + report.queued) as f64);
        }
        metrics::histogram!(m::SWEEP_SECONDS).record(started.elapsed().as_secs_f64());
        tracing::debug!(
            server = %target.name,
            scope = report.scope.as_str(),
            rows = report.rows_read,
            closed = report.closed.len(),
            queued = report.queued,
            held = report.held.len(),
            read_ms = read_time.as_millis() as u64,
            judge_ms = judge_time.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "round done"
        );
        Ok(report)
    }

    /// Decides `calls` from `snapshot` (pure: nothing is written, the memory is only read).
    fn judge(&self, target: &ServerTarget, snapshot: &MapSnapshot, calls: &[OpenCall]) -> Judged {
        let now = self.clock.now();
        let default_memory = ServerMemory::default();
        let memory = self.memory.get(&target.name).unwrap_or(&default_memory);
        let mut memory_view = memory.clone();
        memory_view.watching_since.get_or_insert(self.started_at);
        let view = view::server_view(snapshot, &memory_view);
        let rows: Vec<OpenRow> = calls.iter().map(open_row).collect();
        let ids_matched =
            !memory.ids_matched_before && rows.iter().any(|r| matches_anything(r, snapshot));
        let decisions = reconciler::decide(&rows, &view, &self.policy, now);

        let mut judged = Judged {
            ids_matched,
            ..Judged::default()
        };
        for (row, decision) in decisions.into_iter().enumerate() {
            match decision {
                Decision::Close(close) => {
                    let Some(call) = calls.get(close.row) else {
                        continue;
                    };
                    judged.needs_full_round |= close.reason.is_guarded();
                    judged.batch.push(CloseRequest {
                        call_id: call.id.clone(),
                        ended_at: close.ended_at,
                        hangup_cause: close.cause.clone(),
                        reason: store_reason(close.reason),
                        ended_after: close.ended_after,
                        ended_before: close.ended_before,
                        decided_at: now,
                        ended_at_source: Default::default(),
                    });
                    judged.planned.insert(
                        call.id.clone(),
                        ClosedRow {
                            id: call.id.clone(),
                            uniqueid: call.uniqueid.clone(),
                            linkedid: call.linkedid.clone(),
                            extension: call.extension.clone(),
                            ended_at: close.ended_at,
                            hangup_cause: close.cause,
                            reason: close.reason.as_str().to_string(),
                            ended_after: close.ended_after,
                            ended_before: close.ended_before,
                            talk_seconds: self
                                .store
                                .talk_seconds_written(call.talk_seconds, close.talk_seconds),
                            answered_at: call.answered_at,
                            closure_id: None,
                            ended_at_source: EndedAtSource::Evidence,
                        },
                    );
                }
                Decision::Hold { reason } => {
                    judged.needs_full_round = true;
                    let Some(call) = calls.get(row) else { continue };
                    let (would_close, why) = match reason {
                        HoldReason::AwaitingConfirmation {
                            would_close,
                            held_at,
                            ..
                        } => {
                            judged.still_held.insert(call.id.to_text(), held_at);
                            (would_close, "awaiting_confirmation")
                        }
                        HoldReason::IdsNeverMatched { would_close } => {
                            (would_close, "ids_never_matched")
                        }
                        _ => (Reason::ChannelGone, "held"),
                    };
                    judged.row_states.push((call.id.clone(), "held_by_guard"));
                    judged.held.push(HeldRow {
                        id: call.id.clone(),
                        would_close: would_close.as_str().to_string(),
                        why: why.to_string(),
                    });
                }
                Decision::Keep {
                    reason: KeepReason::SuspectGhost(ghost),
                } => {
                    judged.kept += 1;
                    let Some(call) = calls.get(row) else { continue };
                    judged.row_states.push((call.id.clone(), "suspected_ghost"));
                    judged.suspect_ghosts.push(GhostRow {
                        id: call.id.clone(),
                        answered_at: call.answered_at,
                        channel: ghost.channel,
                        uniqueid: ghost.uniqueid,
                        last_activity: ghost.last_activity,
                    });
                    *judged.kept_by.entry("suspected_ghost").or_default() += 1;
                }
                Decision::Keep { reason } => {
                    judged.kept += 1;
                    *judged.kept_by.entry(keep_state(&reason)).or_default() += 1;
                    if let Some(call) = calls.get(row) {
                        judged
                            .row_states
                            .push((call.id.clone(), keep_state(&reason)));
                    }
                }
                _ => judged.kept += 1,
            }
        }
        judged
    }

    /// Sets how closes are grouped into transactions (default: each round's closes at once).
    pub fn set_group_commit(&mut self, group: GroupCommit) {
        self.group = group;
    }

    /// When the earliest queued closes are due to be written (`None`: nothing queued).
    pub fn commit_due(&self) -> Option<DateTime<Utc>> {
        let window = chrono::Duration::from_std(self.group.window).unwrap_or_default();
        self.queue
            .values()
            .filter(|q| !q.requests.is_empty())
            .map(|q| q.since + window)
            .min()
    }

    /// Servers whose queued closes are due now (their window has passed, or the queue is full).
    pub fn commits_due(&self) -> Vec<String> {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.group.window).unwrap_or_default();
        let mut due: Vec<String> = self
            .queue
            .iter()
            .filter(|(_, q)| {
                !q.requests.is_empty()
                    && (q.since + window <= now || q.requests.len() >= self.group.max_rows)
            })
            .map(|(name, _)| name.clone())
            .collect();
        due.sort();
        due
    }

    /// Servers with closes waiting for their commit.
    pub fn queued_servers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .queue
            .iter()
            .filter(|(_, q)| !q.requests.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Writes the closes queued for `server` in one set-based, audited transaction (under that server's
    /// lock) and announces those that committed.
    ///
    /// On an error nothing of the batch is written and its rows are judged again by a later round; when the
    /// link broke during the commit, the next round asks the audit table what did commit.
    pub async fn commit(&mut self, server: &str) -> Result<Committed, store::Error> {
        let Some(CommitQueue {
            requests: batch,
            mut planned,
            ..
        }) = self.queue.remove(server)
        else {
            return Ok(Committed::default());
        };
        let mut committed = Committed::default();
        if batch.is_empty() {
            return Ok(committed);
        }
        let target = ServerTarget {
            name: server.to_string(),
            is_default: false,
        };
        // `batch`: the closes about to be written.
        let commit_started = std::time::Instant::now();
        match self
            .store
            .close_under(&batch, &self.run_id, Some(server))
            .await
        {
            Ok(outcome) => {
                tracing::debug!(
                    server,
                    rows = batch.len(),
                    closed = outcome.closed.len(),
                    ms = commit_started.elapsed().as_millis() as u64,
                    "closes committed"
                );
                metrics::counter!(m::CLOSE_COMMITS_TOTAL).increment(1);
                metrics::histogram!(m::CLOSE_COMMIT_ROWS).record(batch.len() as f64);
                for closed in outcome.closed {
                    let Some(mut row) = planned.remove(&closed.call_id) else {
                        continue;
                    };
                    row.ended_at = closed.ended_at;
                    row.talk_seconds = closed.talk_seconds;
                    row.closure_id = Some(closed.closure_id);
                    self.announce(&target, &row);
                    committed.closed.push(row);
                }
                for id in outcome.skipped {
                    tracing::info!(call_id = %id, server, "call already ended by the application; left alone");
                    committed.skipped.push(id);
                }
                Ok(committed)
            }
            Err(err) => {
                metrics::counter!(m::DB_ERRORS_TOTAL).increment(1);
                for req in &batch {
                    tracing::error!(call_id = %req.call_id, error = %err, "Failed to clean up stuck call");
                }
                if matches!(err, store::Error::Unavailable { .. }) {
                    // The link broke: the commit may have happened. The next round finds out.
                    self.in_doubt
                        .entry(server.to_string())
                        .or_default()
                        .extend(planned.into_values());
                }
                Err(err)
            }
        }
    }

    /// Logs (with the seed's phrase), counts and broadcasts one close.
    fn announce(&self, target: &ServerTarget, row: &ClosedRow) {
        tracing::info!(
            call_id = %row.id,
            extension = row.extension.as_deref().unwrap_or(""),
            reason = %row.reason,
            ended_at = %row.ended_at.format("%Y-%m-%d %H:%M:%S"),
            talk_seconds = row.talk_seconds,
            hangup_cause = %row.hangup_cause,
            server = %target.name,
            "Stuck call cleaned up"
        );
        metrics::counter!(m::CLOSES_TOTAL, "reason" => row.reason.clone()).increment(1);
        let latency = (self.clock.now() - row.ended_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(m::CLOSE_LATENCY_SECONDS, "reason" => row.reason.clone())
            .record(latency);
        self.broadcaster.send(CallUpdate::completed(row));
    }
}

/// The warning for one open row that cannot be read (`server`: the server whose rows were read, or empty).
pub fn warn_unreadable(row: &UnreadableRow, server: &str) {
    tracing::warn!(
        call_id = %row.id,
        column = %row.column,
        value = row.value.as_deref().unwrap_or(""),
        server,
        detail = %row.detail,
        "unreadable call row skipped; fix the value to let callwatch judge it"
    );
}

/// The reconciler's view of a row.
pub fn open_row(call: &OpenCall) -> OpenRow {
    let non_empty = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    OpenRow {
        key: call.id.to_text(),
        uniqueid: non_empty(&call.uniqueid),
        linkedid: non_empty(&call.linkedid),
        channel: non_empty(&call.channel),
        extension: non_empty(&call.extension),
        answered_at: call.answered_at,
        talk_seconds: call.talk_seconds,
    }
}

/// True when the row's ids match any channel the snapshot knows (live or ended).
fn matches_anything(row: &OpenRow, snapshot: &MapSnapshot) -> bool {
    if let Some(u) = &row.uniqueid {
        if snapshot.live.contains_key(u) || snapshot.ended.contains_key(u) {
            return true;
        }
    }
    if let Some(l) = &row.linkedid {
        return snapshot
            .live
            .values()
            .map(|c| &c.linkedids_ever)
            .chain(snapshot.ended.values().map(|c| &c.linkedids_ever))
            .any(|ids| ids.iter().any(|x| x == l));
    }
    false
}

/// The store's name for a reconciler reason.
pub fn store_reason(reason: Reason) -> CloseReason {
    match reason {
        Reason::HangupSeen => CloseReason::HangupSeen,
        Reason::ChannelGone => CloseReason::ChannelGone,
        Reason::AsteriskRestart => CloseReason::AsteriskRestart,
        Reason::TimeoutCleanup => CloseReason::TimeoutCleanup,
        Reason::Superseded => CloseReason::Superseded,
        Reason::GhostChannel => CloseReason::GhostChannel,
        _ => CloseReason::Manual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::ChannelMap;
    use ami_proto::Message;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_795_520_000 + secs, 0).unwrap()
    }

    fn msg(pairs: &[(&str, &str)]) -> Message {
        Message::from_pairs(pairs.iter().copied())
    }

    fn call(id: i64, uid: &str, lid: &str, chan: &str, answered: i64) -> OpenCall {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        OpenCall {
            id: CallId::Int(id),
            uniqueid: some(uid),
            linkedid: some(lid),
            channel: some(chan),
            extension: Some(format!("{}", 2000 + id % 7)),
            caller: None,
            server: None,
            status: None,
            started_at: None,
            answered_at: t(answered),
            talk_seconds: None,
        }
    }

    /// For every row alone, and for groups of rows, the map narrowed to the rows gives the same decisions as
    /// the whole map: live channels by Uniqueid, by name, by Linkedid group; seen Hangups; channels gone at a
    /// listing; multi-leg calls with one leg up; a reused channel name; rows with no ids.
    #[test]
    fn the_narrowed_map_decides_like_the_whole_map() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        let gen = s.begin_listing(t(0));
        let listed = |uid: &str, lid: &str, name: &str| {
            s.listed(
                gen,
                &msg(&[
                    ("Event", "CoreShowChannel"),
                    ("ActionID", "1"),
                    ("Channel", name),
                    ("ChannelStateDesc", "Up"),
                    ("Uniqueid", uid),
                    ("Linkedid", lid),
                ]),
                t(0),
            )
        };
        for i in 0..40 {
            let (uid, leg) = (format!("1.{i}"), format!("2.{i}"));
            listed(&uid, &uid, &format!("PJSIP/trunk-{i:04}"));
            listed(&leg, &uid, &format!("PJSIP/{}-{i:04}", 2000 + i % 7));
        }
        s.finish_listing(gen, t(1)).unwrap();
        // A second listing lacks calls 30–34 (both legs): gone at resync.
        let gen = s.begin_listing(t(20));
        for i in (0..40).filter(|i| !(30..35).contains(i)) {
            for (uid, lid, name) in [
                (
                    format!("1.{i}"),
                    format!("1.{i}"),
                    format!("PJSIP/trunk-{i:04}"),
                ),
                (
                    format!("2.{i}"),
                    format!("1.{i}"),
                    format!("PJSIP/{}-{i:04}", 2000 + i % 7),
                ),
            ] {
                s.listed(
                    gen,
                    &msg(&[
                        ("Event", "CoreShowChannel"),
                        ("ActionID", "2"),
                        ("Channel", &name),
                        ("ChannelStateDesc", "Up"),
                        ("Uniqueid", &uid),
                        ("Linkedid", &lid),
                    ]),
                    t(20),
                );
            }
        }
        s.finish_listing(gen, t(21)).unwrap();
        // Calls 0–9 hang up both legs; calls 10–19 only the agent leg.
        for i in 0..20 {
            let legs: &[&str] = if i < 10 { &["2", "1"] } else { &["2"] };
            for leg in legs {
                let uid = format!("{leg}.{i}");
                let name = if *leg == "1" {
                    format!("PJSIP/trunk-{i:04}")
                } else {
                    format!("PJSIP/{}-{i:04}", 2000 + i % 7)
                };
                s.apply(
                    &msg(&[
                        ("Event", "Hangup"),
                        ("Timestamp", &format!("{}.000000", t(25 + i).timestamp())),
                        ("Channel", &name),
                        ("Uniqueid", &uid),
                        ("Linkedid", &format!("1.{i}")),
                        ("Cause", "16"),
                        ("Cause-txt", "Normal Clearing"),
                    ]),
                    t(25 + i),
                );
            }
        }
        let mut calls = Vec::new();
        for i in 0..40i64 {
            // By the caller leg; by the agent leg with the call's Linkedid; by Linkedid only; by name only.
            calls.push(call(4 * i, &format!("1.{i}"), &format!("1.{i}"), "", -60));
            calls.push(call(
                4 * i + 1,
                &format!("2.{i}"),
                &format!("1.{i}"),
                "",
                -60,
            ));
            calls.push(call(4 * i + 2, "", &format!("1.{i}"), "", -60));
            calls.push(call(
                4 * i + 3,
                "",
                "",
                &format!("PJSIP/{}-{i:04}", 2000 + i % 7),
                -60,
            ));
        }
        calls.push(call(1000, "9.9", "9.9", "", -60)); // unknown ids
        calls.push(call(1001, "", "", "", -60)); // no ids
        calls.push(call(1002, "2.15", "1.15", "", 50)); // answered after the listing
        let full = map.snapshot("pbx");
        let memory = ServerMemory {
            watching_since: Some(t(0)),
            ..ServerMemory::default()
        };
        let policy = reconciler::Policy::default();
        let now = t(60);
        let decide_on = |rows: &[OpenCall], snapshot: &MapSnapshot| {
            let view = view::server_view(snapshot, &memory);
            let rows: Vec<OpenRow> = rows.iter().map(open_row).collect();
            format!("{:?}", reconciler::decide(&rows, &view, &policy, now))
        };
        let mut groups: Vec<Vec<OpenCall>> = calls.iter().map(|c| vec![c.clone()]).collect();
        groups.push(calls.iter().step_by(3).cloned().collect());
        groups.push(calls[40..90].to_vec());
        for rows in &groups {
            let narrowed = s.snapshot_of(&evidence_filter(rows));
            assert!(
                narrowed.live.len() + narrowed.ended.len() <= full.live.len() + full.ended.len()
            );
            assert_eq!(
                decide_on(rows, &narrowed),
                decide_on(rows, &full),
                "rows {:?}",
                rows.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
            );
        }
        // The narrowing is real: one call's rows see a handful of channels, not the 80.
        let one = s.snapshot_of(&evidence_filter(&calls[..4]));
        assert_eq!(one.live.len() + one.ended.len(), 2);
        // And no live channel's row is closed: calls 20–29 and 35–39 are up; of calls 10–19 the caller leg
        // is up (its row, and the row following the call's Linkedid, are kept; the agent leg's are closed).
        let view = view::server_view(&full, &memory);
        let rows: Vec<OpenRow> = calls.iter().map(open_row).collect();
        for (row, d) in rows
            .iter()
            .zip(reconciler::decide(&rows, &view, &policy, now))
        {
            let key: i64 = row.key.parse().unwrap();
            let (i, kind) = (key / 4, key % 4);
            let up = (20..30).contains(&i)
                || (35..40).contains(&i)
                || ((10..20).contains(&i) && (kind == 0 || kind == 2));
            if key < 160 && up {
                assert!(
                    !matches!(d, Decision::Close(_)),
                    "row {key} of a live call: {d:?}"
                );
            }
            if key < 160 && i < 10 {
                assert!(
                    matches!(d, Decision::Close(_)),
                    "row {key} of an ended call: {d:?}"
                );
            }
        }
    }
}
