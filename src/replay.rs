//! Driving the real pipeline from recorded sessions on virtual time.
//!
//! Each recorded session is one connection to the same Asterisk. For every session a fresh
//! [`ami::Core`] (the very state machine the daemon's connection task drives) logs in, resyncs and pings;
//! what it sends is paired with the recording's own actions by the testkit's [`ActionPairing`] (recorded
//! ActionIDs rewritten to the client's, `Ping` answered, unknown actions answered `Not in recording`), and the
//! recorded bytes are fed to it at their recorded arrival times. The [`VirtualClock`] follows the
//! recording, so every timestamp written (ended_at, decided_at, updated_at) is a recording time.
//!
//! Sweeps run at the start, after every completed resync, as soon as a Hangup (or any other channel end)
//! was seen, every `sweep_interval` of virtual time (also during the gaps between sessions), and once at
//! the end. As in the daemon, a round after seen Hangups reads only the rows of the channels that ended
//! ([`Sweeper::sweep_changed`]), the others read every open row, and closes are group-committed on virtual
//! time. Nothing sleeps.

use ami::channels::ChannelMap;
use ami::{Core, Output};
use ami_proto::{Frame, Limits, Parser};
use ami_testkit::pairing::{ActionPairing, Progress, UnsentPolicy};
use ami_testkit::session::Session;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use clock::{Clock, VirtualClock};
use serde::Serialize;

use crate::pipeline::changed::judged_incrementally;
use crate::pipeline::{ChangedChannels, GroupCommit, HeldRow, ServerTarget, SweepReport, Sweeper};

/// What one session looked like to callwatch's client.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// Session name (`disconnect-gap.subject-2`).
    pub name: String,
    /// Recorded connect time.
    pub connected_at: DateTime<Utc>,
    /// Recorded close time, if the recording has one.
    pub closed_at: Option<DateTime<Utc>>,
    /// Events the client received.
    pub events: u64,
    /// Complete messages the client received.
    pub frames: u64,
    /// A complete `CoreShowChannels` listing arrived (the map was synced).
    pub synced: bool,
    /// Why the connection ended, as the client saw it.
    pub end: String,
    /// Start times of the complete `CoreShowChannels` listings on this connection.
    pub listings: Vec<DateTime<Utc>>,
    /// When the client saw the connection end (recorded close, or the last data).
    pub ended_at: DateTime<Utc>,
}

/// What a whole replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// Every row closed (or that would be, on a dry run), in order of closing.
    pub closed: Vec<crate::pipeline::ClosedRow>,
    /// Rows still open at the end.
    pub kept_open: usize,
    /// Rows the mass-close guard held at the end.
    pub held: Vec<HeldRow>,
    /// Rows the application had ended before callwatch could.
    pub skipped: Vec<store::CallId>,
    /// Per session.
    pub sessions: Vec<SessionReport>,
    /// Rounds run.
    pub sweeps: usize,
    /// Rounds that read only the rows of the channels that ended.
    pub incremental_sweeps: usize,
    /// Open rows read by all rounds.
    pub rows_read: usize,
    /// Rows still open at the end: id and answer time.
    pub open: Vec<(store::CallId, DateTime<Utc>)>,
    /// Earlier closes made exact by a CDR that arrived after them (`[cdr]`).
    pub refined: Vec<store::RefinedCall>,
}

/// Replays `sessions` (successive connections to one Asterisk) through the pipeline.
pub struct Replayer<'a> {
    sweeper: &'a mut Sweeper,
    map: ChannelMap,
    clock: VirtualClock,
    target: ServerTarget,
    ami: ami::Config,
    sweep_interval: chrono::Duration,
    next_sweep: Option<DateTime<Utc>>,
    /// A round is due at this time because channels ended (debounced like the daemon's).
    gone_sweep: Option<DateTime<Utc>>,
    /// Channels whose Hangup was seen since the last round.
    changed: ChangedChannels,
    /// The next round must read every open row (a channel ended otherwise than by a seen Hangup).
    full_due: bool,
    /// The map's count of dropped notifications when last looked at.
    gone_dropped: u64,
    report: ReplayReport,
}

impl<'a> Replayer<'a> {
    /// A replayer for server `target`. `clock` must be the clock the sweeper's store uses. Closes are
    /// group-committed with the defaults ([`GroupCommit::default`]) unless [`Replayer::group_commit`] says
    /// otherwise.
    pub fn new(
        sweeper: &'a mut Sweeper,
        map: ChannelMap,
        clock: VirtualClock,
        target: ServerTarget,
        ami: ami::Config,
        sweep_interval: std::time::Duration,
    ) -> Self {
        sweeper.set_group_commit(GroupCommit::default());
        Self {
            sweeper,
            map,
            clock,
            target,
            ami,
            sweep_interval: chrono::Duration::from_std(sweep_interval)
                .unwrap_or(chrono::Duration::minutes(10)),
            next_sweep: None,
            gone_sweep: None,
            changed: ChangedChannels::default(),
            full_due: false,
            gone_dropped: 0,
            report: ReplayReport::default(),
        }
    }

    /// Groups closes into transactions as `group` says (on virtual time).
    pub fn group_commit(self, group: GroupCommit) -> Self {
        self.sweeper.set_group_commit(group);
        self
    }

    /// Runs every session, then a final sweep; returns what was done.
    pub async fn run(mut self, sessions: &[Session]) -> anyhow::Result<ReplayReport> {
        let Some(first) = sessions.first() else {
            anyhow::bail!("no session to replay");
        };
        self.clock.set(first.connected_at());
        self.sweep().await?;
        for session in sessions {
            self.advance_to(session.connected_at(), None).await?;
            let report = self.replay_session(session).await?;
            self.report.sessions.push(report);
        }
        self.sweep().await?;
        for server in self.sweeper.queued_servers() {
            let committed = self.sweeper.commit(&server).await?;
            self.report.closed.extend(committed.closed);
            self.report.skipped.extend(committed.skipped);
        }
        let open = self.sweeper.open_rows(&self.target, None).await?.calls;
        let still_open = if self.sweeper.is_dry_run() {
            open.len().saturating_sub(self.report.closed.len())
        } else {
            open.len()
        };
        self.report.kept_open = still_open;
        let closed: std::collections::HashSet<_> =
            self.report.closed.iter().map(|c| c.id.clone()).collect();
        self.report.open = open
            .iter()
            .filter(|c| !closed.contains(&c.id))
            .map(|c| (c.id.clone(), c.answered_at))
            .collect();
        Ok(self.report)
    }

    /// A full round.
    async fn sweep(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let snapshot = self.map.snapshot(&self.target.name);
        self.changed = ChangedChannels::default();
        self.full_due = false;
        let report = self.sweeper.sweep(&self.target, &snapshot).await?;
        self.record(report);
        self.next_sweep = Some(now + self.sweep_interval);
        self.gone_sweep = None;
        Ok(())
    }

    /// The round after channels ended: incremental after seen Hangups only, else full.
    async fn sweep_ended(&mut self) -> anyhow::Result<()> {
        if self.full_due || self.changed.is_empty() {
            return self.sweep().await;
        }
        let channels = self.map.server(&self.target.name);
        let changed = std::mem::take(&mut self.changed);
        let report = self
            .sweeper
            .sweep_changed(&self.target, &channels, &changed)
            .await?;
        self.record(report);
        self.gone_sweep = None;
        Ok(())
    }

    fn record(&mut self, report: SweepReport) {
        let SweepReport {
            closed,
            skipped,
            held,
            refined,
            rows_read,
            scope,
            ..
        } = report;
        self.report.closed.extend(closed);
        self.report.refined.extend(refined);
        self.report.skipped.extend(skipped);
        if scope == crate::pipeline::RoundScope::Full {
            self.report.held = held;
        } else {
            self.report.incremental_sweeps += 1;
        }
        self.report.rows_read += rows_read;
        self.report.sweeps += 1;
    }

    /// Writes the queued closes that are due.
    async fn commit_due(&mut self) -> anyhow::Result<()> {
        for server in self.sweeper.commits_due() {
            let committed = self.sweeper.commit(&server).await?;
            self.report.closed.extend(committed.closed);
            self.report.skipped.extend(committed.skipped);
        }
        Ok(())
    }

    /// Moves virtual time to `t`, firing the core's timers (keepalive, action timeouts) and the periodic
    /// sweeps that fall before it, in time order.
    async fn advance_to(
        &mut self,
        t: DateTime<Utc>,
        mut conn: Option<(&mut Core, &mut Wire)>,
    ) -> anyhow::Result<()> {
        loop {
            let core_due = conn.as_ref().and_then(|(core, _)| core.next_deadline());
            let sweep_due = [self.next_sweep, self.gone_sweep]
                .into_iter()
                .flatten()
                .min();
            let commit_due = self.sweeper.commit_due();
            let next = [core_due, sweep_due, commit_due]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= t) else {
                break;
            };
            self.clock.set(next);
            if core_due == Some(next) {
                if let Some((core, wire)) = conn.as_mut() {
                    core.handle_timeout(next);
                    wire.pump(core, next);
                }
            }
            if sweep_due == Some(next) {
                if self.next_sweep == Some(next) {
                    self.sweep().await?;
                } else {
                    self.sweep_ended().await?;
                }
            }
            if commit_due == Some(next) {
                self.commit_due().await?;
            }
        }
        self.clock.set(t);
        Ok(())
    }

    async fn replay_session(&mut self, session: &Session) -> anyhow::Result<SessionReport> {
        let connected_at = session.connected_at();
        self.clock.set(connected_at);
        let server = self.map.server(&self.target.name);
        let mut core = Core::new(self.ami.clone(), server.clone(), connected_at);
        let mut wire = Wire {
            pairing: ActionPairing::new(session, UnsentPolicy::Wait),
            upto: 0,
            tx_parser: Parser::without_banner(Limits::default()),
            tx_buf: BytesMut::new(),
            skipped_actions: 0,
            resynced: false,
            synced_once: false,
            closed: None,
            logged_off: false,
            listings: Vec::new(),
        };
        for chunk in session.chunks() {
            if wire.closed.is_some() {
                break;
            }
            self.advance_to(chunk.at, Some((&mut core, &mut wire)))
                .await?;
            wire.upto = chunk.end();
            wire.pump(&mut core, chunk.at);
            self.after_pump(&mut wire).await?;
        }
        let (closed_at, end) = match session.closed() {
            Some((at, reason)) => (Some(at), format!("{reason:?}")),
            None => (None, "end of recording".to_string()),
        };
        if wire.closed.is_none() {
            let at = closed_at.unwrap_or_else(|| self.clock.now());
            self.advance_to(at, Some((&mut core, &mut wire))).await?;
            core.handle_eof(at);
            wire.pump(&mut core, at);
            self.after_pump(&mut wire).await?;
        }
        let stats = core.stats();
        Ok(SessionReport {
            name: session.name().to_string(),
            connected_at,
            closed_at,
            events: stats.events,
            frames: stats.frames,
            synced: wire.synced_once,
            end: wire.closed.clone().unwrap_or(end),
            listings: std::mem::take(&mut wire.listings),
            ended_at: self.clock.now(),
        })
    }

    /// Sweeps right away after a resync, and [`crate::daemon::GONE_DEBOUNCE`] after channels ended (as the
    /// daemon does, so a call's Hangups land in one round; the end times come from the evidence, not from
    /// when the round runs).
    async fn after_pump(&mut self, wire: &mut Wire) -> anyhow::Result<()> {
        let gone = self.map.take_gone();
        let dropped = self.map.gone_dropped();
        if dropped != self.gone_dropped {
            self.gone_dropped = dropped;
            self.full_due = true;
        }
        for g in &gone {
            if judged_incrementally(&g.end) {
                self.changed.note(g);
            } else {
                self.full_due = true;
            }
        }
        if wire.resynced {
            wire.resynced = false;
            if let Some(at) = self.map.server(&self.target.name).freshness().listing_at {
                wire.listings.push(at);
            }
            self.sweep().await?;
        } else if !gone.is_empty() && self.gone_sweep.is_none() {
            let debounce =
                chrono::Duration::from_std(crate::daemon::GONE_DEBOUNCE).unwrap_or_default();
            self.gone_sweep = Some(self.clock.now() + debounce);
        }
        Ok(())
    }
}

/// The replay's stand-in for a socket: the client's bytes go to the pairing, the pairing's to the client.
struct Wire {
    pairing: ActionPairing,
    /// Recorded offset received so far (the current chunk's end).
    upto: usize,
    tx_parser: Parser,
    tx_buf: BytesMut,
    skipped_actions: usize,
    resynced: bool,
    synced_once: bool,
    closed: Option<String>,
    logged_off: bool,
    /// Start times of the complete listings seen.
    listings: Vec<DateTime<Utc>>,
}

impl Wire {
    /// Exchanges bytes between the core and the recording until neither has anything more to say.
    fn pump(&mut self, core: &mut Core, now: DateTime<Utc>) {
        loop {
            let mut progressed = false;
            while let Some(tx) = core.poll_transmit() {
                self.tx_buf.extend_from_slice(&tx);
                while let Some(frame) = self.tx_parser.next_frame(&mut self.tx_buf) {
                    if let Ok(Frame::Message(action)) = frame {
                        self.pairing.on_client_action(&action, now);
                        progressed = true;
                    }
                }
            }
            if self.closed.is_none() {
                let out = self.pairing.poll(self.upto);
                if !out.bytes.is_empty() {
                    core.handle_input(&out.bytes, now);
                    progressed = true;
                }
                match out.progress {
                    Progress::Close => {
                        self.logged_off = true;
                    }
                    Progress::WaitingFor { recorded, name } if !progressed => {
                        // The recording's client sent an action ours does not (e.g. `Status`): go on
                        // without its response, so the rest of the recording flows on.
                        tracing::debug!(action = %name, "the recording's client sent an action callwatch does not; skipped");
                        self.skipped_actions += 1;
                        progressed = self.pairing.abandon(recorded);
                    }
                    _ => {}
                }
            }
            while let Some(output) = core.poll_event() {
                match output {
                    Output::Resynced { .. } => {
                        self.resynced = true;
                        self.synced_once = true;
                    }
                    Output::Closed(err) => {
                        self.closed = Some(err.to_string());
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
