//! The invariants, checked after a run against the PBX's truth: what the database and the Redis subscriber
//! saw, against when each call really ended and which faults were in force.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::schedule::FaultClass;
use super::world::CallTruth;

/// A fault as it was injected.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The kind.
    pub class: FaultClass,
    /// When it began.
    pub start: DateTime<Utc>,
    /// When it cleared (AMI and the database reachable again, the daemon started again).
    pub clear: DateTime<Utc>,
    /// Whether the AMI session ended because of it (a new connection reached the PBX), so that a resync
    /// must follow.
    pub ended_session: bool,
}

/// One row of `calls`, as read back.
#[derive(Debug, Clone)]
pub struct Row {
    /// `id`.
    pub id: i64,
    /// `answered_at`.
    pub answered_at: Option<DateTime<Utc>>,
    /// `ended_at`.
    pub ended_at: Option<DateTime<Utc>>,
    /// `hangup_cause`.
    pub hangup_cause: Option<String>,
    /// `talk_seconds`.
    pub talk_seconds: Option<i64>,
    /// `status`.
    pub status: Option<String>,
}

/// One row of `call_closures`.
#[derive(Debug, Clone)]
pub struct Closure {
    /// `call_id`.
    pub call_id: i64,
    /// `outcome`.
    pub outcome: String,
    /// `reason`.
    pub reason: String,
    /// `new_ended_at`.
    pub new_ended_at: Option<DateTime<Utc>>,
    /// `ended_after`.
    pub ended_after: Option<DateTime<Utc>>,
    /// `ended_before`.
    pub ended_before: Option<DateTime<Utc>>,
    /// `decided_at`.
    pub decided_at: Option<DateTime<Utc>>,
}

/// Everything observed in a run.
#[derive(Debug, Default)]
pub struct Observed {
    /// The calls table.
    pub rows: Vec<Row>,
    /// The audit.
    pub closures: Vec<Closure>,
    /// Closes received by the Redis subscriber: row id and arrival time.
    pub broadcasts: Vec<(i64, DateTime<Utc>)>,
    /// When the daemon asked for a listing (`CoreShowChannels` through the AMI proxy).
    pub resyncs: Vec<DateTime<Utc>>,
}

/// The bounds the invariants use, from the daemon's settings.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The AMI client's longest reconnect delay: resync within this + 1 s of AMI coming back.
    pub reconnect_max: Duration,
    /// The AMI keepalive's ping interval + timeout: how long a half-open link takes to be noticed.
    pub dead_link: Duration,
    /// `[policy] fallback_after`.
    pub fallback_after: Duration,
    /// `[policy] sweep_interval` (a round).
    pub sweep_interval: Duration,
    /// `[policy] confirm_delay` (the mass-close guard's wait, after Asterisk restarts).
    pub confirm_delay: Duration,
    /// The instance lock's check interval (a standby's takeover).
    pub lock_check: Duration,
    /// `[policy] skew`: a row answered less than this before a listing waits for a later listing (taken
    /// `skew` + 1 s later).
    pub skew: Duration,
}

/// A close must follow a resync (or a hangup with no fault about) within this.
pub const CLOSE_AFTER_RESYNC: Duration = Duration::from_secs(2);
/// Slack for times stored to the second (rounded by PostgreSQL, truncated elsewhere).
const SECOND: TimeDelta = TimeDelta::seconds(1);

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Bounds {
    /// The AMI session must be resynced this long after a fault that ended it clears.
    pub fn resync(&self, class: FaultClass) -> Duration {
        let base = self.reconnect_max + Duration::from_secs(1);
        if class == FaultClass::AmiHalfOpen {
            base + self.dead_link
        } else {
            base
        }
    }

    /// Every call that ended in (or just before) a fault of `class` is closed this long after it clears.
    pub fn close_after_clear(&self, class: FaultClass) -> Duration {
        match class {
            FaultClass::AsteriskRestart | FaultClass::AsteriskCrash => {
                self.resync(class) + CLOSE_AFTER_RESYNC + self.confirm_delay
            }
            c if c.ends_ami_session() => self.resync(c) + CLOSE_AFTER_RESYNC,
            FaultClass::AmiLatency | FaultClass::AmiThrottle | FaultClass::AmiOneByte => {
                self.resync(FaultClass::AmiCut) + CLOSE_AFTER_RESYNC
            }
            // The standby (watching, its map synced) takes the lock within one lock check, then a round.
            FaultClass::Sigkill | FaultClass::Sigterm => self.lock_check + CLOSE_AFTER_RESYNC,
            _ => self.fallback_after + self.sweep_interval,
        }
    }
}

/// Figures of one fault class.
#[derive(Debug, Clone, Default)]
pub struct ClassFigures {
    /// Times injected.
    pub injected: usize,
    /// Invariant violations attributed to it.
    pub violations: usize,
    /// Calls whose close it delayed.
    pub calls: usize,
    /// Longest close after the fault cleared.
    pub worst_close: Duration,
    /// Longest resync after the fault cleared (faults that ended the AMI session).
    pub worst_resync: Duration,
}

/// The verdict of a run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Every violation, one line each.
    pub violations: Vec<String>,
    /// Per fault class (`none` for calls no fault touched).
    pub classes: BTreeMap<&'static str, ClassFigures>,
    /// Calls that ended and were closed.
    pub closed: usize,
    /// Calls still up at the end (must be open).
    pub live: usize,
    /// Closes never broadcast because the daemon was SIGKILLed just after committing them (nothing
    /// persists a queued broadcast: at most once across a SIGKILL). Reported, not a violation.
    pub lost_to_sigkill: usize,
}

impl Verdict {
    fn fail(&mut self, class: &'static str, msg: String) {
        self.classes.entry(class).or_default().violations += 1;
        self.violations.push(msg);
    }
}

/// The fault that governs a call whose close became due at `due`, and the close deadline.
fn governing<'a>(
    due: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    faults: &'a [Injected],
    b: &Bounds,
) -> (Option<&'a Injected>, DateTime<Utc>) {
    let first = due + td(CLOSE_AFTER_RESYNC);
    let mut deadline = first;
    let mut gov: Option<&Injected> = None;
    // In the order they struck. An AMI fault that strikes while the call still waits on the recovery of an
    // earlier AMI fault (before that deadline and before the call was closed) keeps AMI from resyncing, and
    // extends the deadline; no other fault extends another's.
    for f in faults {
        let until = f.clear + td(b.close_after_clear(f.class));
        let ami = |c: FaultClass| FaultClass::AMI.contains(&c);
        let struck_in_time = f.start <= first
            || gov.is_some_and(|g| {
                ami(g.class)
                    && ami(f.class)
                    && f.start <= closed_at.map_or(deadline, |c| c.min(deadline))
            });
        // Struck before the close was due (or while it waited on an AMI recovery), and its recovery was not
        // over when the call ended.
        if struck_in_time && until >= due && until > deadline {
            deadline = until;
            gov = Some(f);
        }
    }
    (gov, deadline)
}

/// Checks every invariant; `end` is when the run stopped changing the world (calls up then stay up).
pub fn check(
    truth: &[CallTruth],
    faults: &[Injected],
    obs: &Observed,
    b: &Bounds,
    end: DateTime<Utc>,
) -> Verdict {
    let mut v = Verdict::default();
    for f in faults {
        v.classes.entry(f.class.name()).or_default().injected += 1;
    }
    let rows: HashMap<i64, &Row> = obs.rows.iter().map(|r| (r.id, r)).collect();
    let mut closed_audits: HashMap<i64, Vec<&Closure>> = HashMap::new();
    for c in &obs.closures {
        if c.outcome == "closed" {
            closed_audits.entry(c.call_id).or_default().push(c);
        }
    }
    let mut broadcasts: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
    for (id, at) in &obs.broadcasts {
        broadcasts.entry(*id).or_default().push(*at);
    }

    // Resync within reconnect_max + 1 s of AMI coming back (unless another AMI fault struck first, before
    // that bound: the resync is then judged against it).
    for f in faults.iter().filter(|f| f.ended_session) {
        let bound = b.resync(f.class);
        let first = obs.resyncs.iter().find(|t| **t >= f.clear);
        let interrupted = faults.iter().any(|g| {
            FaultClass::AMI.contains(&g.class)
                && g.start > f.clear
                && g.start < f.clear + td(bound)
                && first.is_none_or(|t| *t > g.start)
        });
        if interrupted {
            continue;
        }
        let fig = v.classes.entry(f.class.name()).or_default();
        match first {
            Some(t) if *t - f.clear <= td(bound) => {
                fig.worst_resync = fig
                    .worst_resync
                    .max((*t - f.clear).to_std().unwrap_or_default());
            }
            other => {
                let msg = format!(
                    "{}: AMI resync {} after the fault cleared at {} (bound {bound:?})",
                    f.class.name(),
                    other.map_or("never came".into(), |t| format!(
                        "came {:?}",
                        (*t - f.clear).to_std().unwrap_or_default()
                    )),
                    f.clear
                );
                v.fail(f.class.name(), msg);
            }
        }
    }

    for call in truth {
        let Some(row) = rows.get(&call.id) else {
            if call.inserted.is_some() {
                v.fail("none", format!("call {}: its row is missing", call.id));
            }
            continue;
        };
        let audits = closed_audits
            .get(&call.id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let sent = broadcasts.get(&call.id).map(Vec::as_slice).unwrap_or(&[]);
        let due = call.ended.map(|e| call.inserted.map_or(e, |i| i.max(e)));
        // The first sign of the close: its broadcast, else the audit's decision.
        let closed_at = sent.first().copied().or_else(|| {
            audits
                .first()
                .and_then(|a| a.decided_at.map(|d| d + SECOND))
        });
        let (gov, deadline) = match due {
            Some(due) => governing(due, closed_at, faults, b),
            None => (None, end),
        };
        let class = gov.map_or("none", |f| f.class.name());

        // No row half-written: closed means every closing column set and consistent; open means none.
        match row.ended_at {
            Some(ended_at) => {
                let talk_ok = match (row.talk_seconds, row.answered_at) {
                    (Some(t), Some(a)) => (t - (ended_at - a).num_seconds()).abs() <= 1 && t >= 0,
                    _ => false,
                };
                if row.hangup_cause.is_none()
                    || !talk_ok
                    || row.status.as_deref() != Some("completed")
                {
                    v.fail(
                        class,
                        format!("call {}: half-written close {row:?}", call.id),
                    );
                }
                if let [a] = audits {
                    if a.new_ended_at != Some(ended_at) {
                        v.fail(
                            class,
                            format!(
                                "call {}: audit says {:?}, row {ended_at}",
                                call.id, a.new_ended_at
                            ),
                        );
                    }
                }
            }
            None => {
                if row.hangup_cause.is_some() || row.status.as_deref() != Some("in_progress") {
                    v.fail(class, format!("call {}: open row changed {row:?}", call.id));
                }
            }
        }

        match (call.ended, row.ended_at) {
            // A live call closed: the worst failure a watchdog can have.
            (None, Some(_)) => v.fail(
                class,
                format!(
                    "call {} ({}): FALSE CLOSE, its channel is still up; audit {audits:?}",
                    call.id, call.uniqueid
                ),
            ),
            (None, None) => {
                v.live += 1;
                if !audits.is_empty() || !sent.is_empty() {
                    v.fail(
                        class,
                        format!(
                            "call {}: live, yet audited {audits:?} / broadcast {sent:?}",
                            call.id
                        ),
                    );
                }
            }
            (Some(_), None) => v.fail(
                class,
                format!(
                    "call {}: MISSED CLOSE, ended at {:?}, still open (deadline {deadline})",
                    call.id, call.ended
                ),
            ),
            (Some(true_end), Some(_)) => {
                v.closed += 1;
                // Audited exactly once.
                if audits.len() != 1 {
                    v.fail(
                        class,
                        format!("call {}: audited {} times", call.id, audits.len()),
                    );
                }
                // Broadcast exactly once; a close committed in the seconds before a SIGKILL may have died in
                // the queue (counted apart).
                let killed_after = |a: &&Closure| {
                    a.decided_at.is_some_and(|d| {
                        faults.iter().any(|f| {
                            f.class == FaultClass::Sigkill
                                && d - TimeDelta::seconds(5) <= f.start
                                && f.start <= d + TimeDelta::seconds(6)
                        })
                    })
                };
                if sent.is_empty() && audits.first().is_some_and(killed_after) {
                    v.lost_to_sigkill += 1;
                } else if sent.len() != 1 {
                    v.fail(
                        class,
                        format!("call {}: broadcast {} times", call.id, sent.len()),
                    );
                }
                if let Some(a) = audits.first() {
                    // Never decided before the call ended.
                    if let Some(decided) = a.decided_at {
                        if decided + SECOND < true_end {
                            v.fail(class, format!(
                                "call {}: FALSE CLOSE, decided at {decided}, before its end {true_end}",
                                call.id
                            ));
                        }
                    }
                    // [ended_after, ended_before] contains the true end (an exact time is its own bounds).
                    let after = a.ended_after.or(a.new_ended_at);
                    let before = a.ended_before.or(a.new_ended_at);
                    let lo_ok = after.is_none_or(|t| t - SECOND <= true_end);
                    let hi_ok = before
                        .is_none_or(|t| true_end <= t + SECOND + exact_slack(a, faults, true_end));
                    if !(lo_ok && hi_ok) {
                        v.fail(
                            class,
                            format!(
                                "call {}: true end {true_end} outside [{after:?}, {before:?}] ({})",
                                call.id, a.reason
                            ),
                        );
                    }
                }
                // Closed in time.
                if let (Some(closed_at), Some(due)) = (closed_at, due) {
                    // A call answered while (or just before) AMI was away, not in the listing that followed:
                    // that listing cannot judge its row within `skew`; the next one, `skew` + 1 s later, does.
                    let wait = match gov {
                        Some(f)
                            if f.class.ends_ami_session()
                                && call.answered + td(b.skew) >= f.start =>
                        {
                            td(b.skew + Duration::from_secs(3))
                        }
                        _ => TimeDelta::zero(),
                    };
                    let deadline = deadline + wait;
                    let recovered = gov.map_or(due, |f| f.clear.max(due));
                    let fig = v.classes.entry(class).or_default();
                    fig.calls += 1;
                    fig.worst_close = fig
                        .worst_close
                        .max((closed_at - recovered).to_std().unwrap_or_default());
                    if closed_at > deadline {
                        v.fail(class, format!(
                            "call {}: LATE CLOSE at {closed_at}, due {due}, deadline {deadline} ({class})",
                            call.id
                        ));
                    } else if let Some(limit) = gov
                        .and_then(|f| after_resync(f, due, call.answered, &obs.resyncs, faults, b))
                    {
                        // A call that ended while AMI was away is closed within 2 s of the resync.
                        if closed_at > limit {
                            v.fail(class, format!(
                                "call {}: LATE AFTER RESYNC, closed at {closed_at}, limit {limit} ({class})",
                                call.id
                            ));
                        }
                    }
                }
            }
        }
    }
    v
}

/// For a call whose close became due (`due`) before the resync that followed `f` (a fault that ended the AMI
/// session): that resync (the last listing within the resync bound: each daemon lists after its reconnect,
/// and the proxy cannot tell the owner's apart) + 2 s (+ the mass-close guard's `confirm_delay` after an
/// Asterisk restart). A row answered less than `skew` before that resync is judged by the first listing
/// `skew` after its answer, and no earlier than the owner's own relist (`skew` + 1 s after the resync).
/// A fault that keeps the daemon from writing in that window extends it (see [`writes_blocked_until`]).
fn after_resync(
    f: &Injected,
    due: DateTime<Utc>,
    answered: DateTime<Utc>,
    resyncs: &[DateTime<Utc>],
    faults: &[Injected],
    b: &Bounds,
) -> Option<DateTime<Utc>> {
    if !f.ended_session {
        return None;
    }
    // The proxy sees every daemon's listings: the owner's is the last of those within the resync bound (a
    // standby may list first).
    let first = *resyncs.iter().find(|t| **t >= f.clear)?;
    if due > first {
        return None;
    }
    let bound = f.clear + td(b.resync(f.class));
    let mut resync = resyncs
        .iter()
        .rfind(|t| **t >= first && **t <= bound)
        .copied()
        .unwrap_or(first);
    if resync < answered + td(b.skew) {
        // The owner's round after that listing asks for another `skew` + 1 s later (a listing another
        // daemon takes meanwhile does not count: the proxy sees both daemons' listings).
        let relist = resync + td(b.skew + Duration::from_secs(1));
        let later = *resyncs.iter().find(|t| **t >= answered + td(b.skew))?;
        resync = later.max(relist);
    }
    let guard = match f.class {
        FaultClass::AsteriskRestart | FaultClass::AsteriskCrash => b.confirm_delay,
        _ => Duration::ZERO,
    };
    Some(writes_blocked_until(
        resync,
        resync + td(CLOSE_AFTER_RESYNC + guard),
        faults,
        b,
    ))
}

/// The close due between a resync (`from`) and `limit` cannot be written while the database is away or no
/// daemon holds the lock: a database, engine or process fault in force in that window moves the limit to
/// that fault's own bound after it clears (the bound any close waiting on it is held to). AMI faults do
/// not: [`governing`] judges those.
fn writes_blocked_until(
    from: DateTime<Utc>,
    limit: DateTime<Utc>,
    faults: &[Injected],
    b: &Bounds,
) -> DateTime<Utc> {
    faults
        .iter()
        .filter(|g| !FaultClass::AMI.contains(&g.class))
        .filter(|g| g.start <= limit && g.clear >= from)
        .map(|g| g.clear + td(b.close_after_clear(g.class)))
        .fold(limit, DateTime::max)
}

/// An exactly known end (a `Hangup` seen live) is stamped when the event arrives: later than the true end
/// by the link's delay when a latency or throttle fault was in force.
fn exact_slack(a: &Closure, faults: &[Injected], end: DateTime<Utc>) -> TimeDelta {
    if a.ended_before.is_some() {
        return TimeDelta::zero();
    }
    faults
        .iter()
        .filter(|f| {
            matches!(
                f.class,
                FaultClass::AmiLatency | FaultClass::AmiThrottle | FaultClass::AmiOneByte
            ) && f.start <= end
                && end <= f.clear + TimeDelta::seconds(2)
        })
        .map(|f| f.clear - end + TimeDelta::seconds(2))
        .max()
        .unwrap_or(TimeDelta::zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            reconnect_max: Duration::from_secs(5),
            dead_link: Duration::from_secs(2),
            fallback_after: Duration::from_secs(3),
            sweep_interval: Duration::from_secs(2),
            confirm_delay: Duration::from_secs(2),
            lock_check: Duration::from_secs(5),
            skew: Duration::from_secs(2),
        }
    }

    fn at(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_520_000, 0).unwrap()
            + TimeDelta::milliseconds((s * 1000.0) as i64)
    }

    fn fault(class: FaultClass, start: f64, clear: f64, ended_session: bool) -> Injected {
        Injected {
            class,
            start: at(start),
            clear: at(clear),
            ended_session,
        }
    }

    /// The hour soak at 989b8e5: an AMI cut (clear at 44.3 s), the resync at 47.8 s, and a database
    /// half-open from 47.4 s to 50.2 s; the calls that ended during the cut were closed at 50.4 s, when the
    /// database was back. The resync limit alone (49.8 s) called that late.
    #[test]
    fn a_database_fault_at_the_resync_moves_its_limit() {
        let b = bounds();
        let cut = fault(FaultClass::AmiCut, 40.8, 44.3, true);
        let resyncs = [at(47.8)];
        let (due, answered) = (at(42.0), at(10.0));
        let alone = after_resync(
            &cut,
            due,
            answered,
            &resyncs,
            std::slice::from_ref(&cut),
            &b,
        );
        assert_eq!(alone, Some(at(49.8)));
        let half_open = fault(FaultClass::DbHalfOpen, 47.4, 50.2, false);
        let both = [cut.clone(), half_open];
        let limit = after_resync(&cut, due, answered, &resyncs, &both, &b).unwrap();
        assert_eq!(
            limit,
            at(50.2) + td(b.close_after_clear(FaultClass::DbHalfOpen))
        );
        assert!(limit > at(50.4));
        // A database fault over before the resync, or an AMI fault in the window, moves nothing.
        let earlier = [cut.clone(), fault(FaultClass::DbCut, 30.0, 35.0, false)];
        assert_eq!(
            after_resync(&cut, due, answered, &resyncs, &earlier, &b),
            alone
        );
        let latency = [
            cut.clone(),
            fault(FaultClass::AmiLatency, 48.0, 49.0, false),
        ];
        assert_eq!(
            after_resync(&cut, due, answered, &resyncs, &latency, &b),
            alone
        );
    }
}
