//! Exact end times from Asterisk's CDRs for closes made without a seen Hangup.
//!
//! A close by `channel_gone`, `asterisk_restart` or `timeout_cleanup` knows only a window
//! `[ended_after, ended_before]` for the true end. Before such a close is written, the CDR of the row's
//! Uniqueid (else the Linkedid's records for the row's channel) is looked up; when one ends inside the window
//! (± `[cdr] skew`) and not after now, its end is written instead and audited as `ended_at_source = 'cdr'`.
//! A CDR that arrives later (Asterisk's CDR batch mode) refines the close in a bounded pass over recent
//! closes ([`Refiner::later_pass`]), audited as outcome `refined` and undoable.
//!
//! A CDR never closes a row by itself and never touches a live call: only rows the reconciler already
//! decided to close are looked up. A CDR whose end lies after now is invisible (in production it cannot
//! exist yet; in a replay, now is the recording's virtual time).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use store::{
    CallId, CloseReason, CloseRequest, EndedAtSource, OpenCall, RefineCandidate, RefinedCall,
    Refinement, Store,
};

use super::{ClosedRow, ServerTarget};

/// Recent closes looked at per pass.
const PASS_LIMIT: usize = 500;

/// Only CDRs that started at most this long before a close's `ended_after` are read: a channel up longer
/// than that keeps the evidence's end time.
const LONGEST_CALL: chrono::Duration = chrono::Duration::days(1);

/// The CDR source and its settings, owned by the [`super::Sweeper`].
pub struct Refiner {
    source: Arc<::cdr::Source>,
    skew: chrono::Duration,
    recheck_within: chrono::Duration,
    recheck_every: chrono::Duration,
    /// When the later pass last ran, per server.
    last_pass: HashMap<String, DateTime<Utc>>,
}

/// What a row knows about its channel.
#[derive(Debug, Clone, Default)]
struct Ids {
    uniqueid: Option<String>,
    linkedid: Option<String>,
    channel: Option<String>,
}

impl Ids {
    fn wanted(&self) -> ::cdr::Wanted<'_> {
        ::cdr::Wanted {
            uniqueid: self.uniqueid.as_deref(),
            linkedid: self.linkedid.as_deref(),
            channel: self.channel.as_deref(),
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

/// A close whose time is a guess inside a window.
fn refinable(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ChannelGone | CloseReason::AsteriskRestart | CloseReason::TimeoutCleanup
    )
}

/// What the CDRs say about one close.
enum Verdict {
    /// Write this end.
    Use(DateTime<Utc>),
    /// No visible record for the row.
    None,
    /// A record exists but ends outside the window: ignored (warned).
    Outside(DateTime<Utc>),
}

impl Refiner {
    /// A refiner reading `source` with `[cdr]`'s settings.
    pub fn new(source: Arc<::cdr::Source>, cfg: &::cdr::CdrConfig) -> Self {
        let d = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or_default();
        Self {
            source,
            skew: d(cfg.skew),
            recheck_within: d(cfg.recheck_within),
            recheck_every: d(cfg.recheck_every),
            last_pass: HashMap::new(),
        }
    }

    /// The records' say on a window `[after, before]` at `now`.
    fn judge(
        &self,
        records: &[::cdr::CdrRecord],
        ids: &Ids,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Verdict {
        let Some(best) = ::cdr::matching(records, &ids.wanted())
            .into_iter()
            .filter(|r| r.stated_end() <= now)
            .max_by_key(|r| r.end_estimate())
        else {
            return Verdict::None;
        };
        let end = best.end_estimate();
        if end < after - self.skew || end > before + self.skew {
            return Verdict::Outside(end);
        }
        // Inside the window within the skew: the evidence's bounds are hard facts (alive at `after`, gone
        // by `before`), so the end is kept between them.
        Verdict::Use(end.clamp(after, before.max(after)).min(now))
    }

    /// The records of `ids` whose channels ended within `windows` (the evidence's `[ended_after,
    /// ended_before]` of each close): only records that started between the earliest `ended_after` less
    /// [`LONGEST_CALL`] and the latest `ended_before` plus the skew are read.
    async fn lookup(
        &self,
        ids: &[&Ids],
        windows: impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)>,
    ) -> Option<Vec<::cdr::CdrRecord>> {
        let uniqueids: Vec<&str> = ids.iter().filter_map(|i| i.uniqueid.as_deref()).collect();
        let linkedids: Vec<&str> = ids.iter().filter_map(|i| i.linkedid.as_deref()).collect();
        let started = windows.fold(None, |acc: Option<::cdr::Window>, (after, before)| {
            let (lo, hi) = (after - LONGEST_CALL, before + self.skew);
            Some(match acc {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            })
        });
        match self.source.lookup(&uniqueids, &linkedids, started).await {
            Ok(records) => Some(records),
            Err(err) => {
                tracing::warn!(
                    cdr = %self.source.describe(),
                    error = %err,
                    "cannot read Asterisk's CDRs; closes keep the evidence's end times (a later pass retries)"
                );
                None
            }
        }
    }

    /// Refines the closes of one round's batch before they are written: see the module docs. `planned`
    /// (what the round reports) follows the new end times.
    pub async fn refine_batch(
        &self,
        store: &Store,
        calls: &[OpenCall],
        batch: &mut [CloseRequest],
        planned: &mut HashMap<CallId, ClosedRow>,
        now: DateTime<Utc>,
    ) {
        let by_id: HashMap<&CallId, &OpenCall> = calls.iter().map(|c| (&c.id, c)).collect();
        let wanted: Vec<(usize, Ids)> = batch
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                refinable(r.reason) && r.ended_after.is_some() && r.ended_before.is_some()
            })
            .filter_map(|(i, r)| {
                let call = by_id.get(&r.call_id)?;
                let ids = Ids {
                    uniqueid: non_empty(&call.uniqueid),
                    linkedid: non_empty(&call.linkedid),
                    channel: non_empty(&call.channel),
                };
                (ids.uniqueid.is_some() || ids.linkedid.is_some()).then_some((i, ids))
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let windows = wanted.iter().filter_map(|(i, _)| {
            let r = batch.get(*i)?;
            Some((r.ended_after?, r.ended_before?))
        });
        let Some(records) = self
            .lookup(
                &wanted.iter().map(|(_, ids)| ids).collect::<Vec<_>>(),
                windows,
            )
            .await
        else {
            return;
        };
        for (i, ids) in &wanted {
            let Some(req) = batch.get_mut(*i) else {
                continue;
            };
            let (Some(after), Some(before)) = (req.ended_after, req.ended_before) else {
                continue;
            };
            match self.judge(&records, ids, after, before, now) {
                Verdict::Use(end) => {
                    tracing::debug!(call_id = %req.call_id, evidence = %req.ended_at, cdr = %end, "end time from Asterisk's CDR");
                    req.ended_at = end;
                    req.ended_at_source = EndedAtSource::Cdr;
                    if let Some(row) = planned.get_mut(&req.call_id) {
                        row.ended_at = end;
                        row.ended_at_source = EndedAtSource::Cdr;
                        let existing = by_id.get(&req.call_id).and_then(|c| c.talk_seconds);
                        let computed = (end.max(row.answered_at) - row.answered_at).num_seconds();
                        row.talk_seconds = store.talk_seconds_written(existing, computed.max(0));
                    }
                }
                Verdict::Outside(end) => warn_outside(&req.call_id, ids, end, after, before),
                Verdict::None => {}
            }
        }
    }

    /// The later pass for `target`: at most every `[cdr] recheck_every`, the closes of the last
    /// `recheck_within` whose end is still the evidence's are looked up again, and those whose CDR has
    /// arrived meanwhile are refined (audited as outcome `refined`, undoable). Errors are logged, never
    /// returned: the round's closes are already written.
    pub async fn later_pass(
        &mut self,
        store: &Store,
        target: &ServerTarget,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Vec<RefinedCall> {
        if let Some(last) = self.last_pass.get(&target.name) {
            if now >= *last && now - *last < self.recheck_every {
                return Vec::new();
            }
        }
        self.last_pass.insert(target.name.clone(), now);
        let candidates = match store
            .refine_candidates(
                now - self.recheck_within,
                Some(&target.name),
                target.is_default,
                PASS_LIMIT,
            )
            .await
        {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(server = %target.name, error = %err, "cannot read recent closes to refine them from the CDRs");
                return Vec::new();
            }
        };
        let ids: Vec<(RefineCandidate, Ids)> = candidates
            .into_iter()
            .map(|c| {
                let ids = Ids {
                    uniqueid: non_empty(&c.uniqueid),
                    linkedid: non_empty(&c.linkedid),
                    channel: non_empty(&c.channel),
                };
                (c, ids)
            })
            .filter(|(_, ids)| ids.uniqueid.is_some() || ids.linkedid.is_some())
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let windows = ids.iter().map(|(c, _)| (c.ended_after, c.ended_before));
        let Some(records) = self
            .lookup(&ids.iter().map(|(_, i)| i).collect::<Vec<_>>(), windows)
            .await
        else {
            return Vec::new();
        };
        let mut items = Vec::new();
        for (c, ids) in &ids {
            match self.judge(&records, ids, c.ended_after, c.ended_before, now) {
                Verdict::Use(end) => items.push(Refinement {
                    closure_id: c.closure_id,
                    ended_at: end,
                    source: EndedAtSource::Cdr,
                }),
                Verdict::Outside(end) => {
                    warn_outside(&c.call_id, ids, end, c.ended_after, c.ended_before)
                }
                Verdict::None => {}
            }
        }
        match store.refine(&items, run_id, Some(&target.name)).await {
            Ok(outcome) => {
                for r in &outcome.refined {
                    tracing::info!(
                        call_id = %r.call_id,
                        closure_id = r.closure_id,
                        refinement_id = r.refinement_id,
                        was = %r.prev_ended_at.format("%Y-%m-%d %H:%M:%S"),
                        ended_at = %r.ended_at.format("%Y-%m-%d %H:%M:%S"),
                        talk_seconds = r.talk_seconds,
                        server = %target.name,
                        "Call end time refined from Asterisk's CDR"
                    );
                }
                outcome.refined
            }
            Err(err) => {
                tracing::warn!(server = %target.name, error = %err, "cannot write end times refined from the CDRs");
                Vec::new()
            }
        }
    }
}

fn warn_outside(
    call_id: &CallId,
    ids: &Ids,
    end: DateTime<Utc>,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
) {
    tracing::warn!(
        call_id = %call_id,
        uniqueid = ids.uniqueid.as_deref().unwrap_or(""),
        linkedid = ids.linkedid.as_deref().unwrap_or(""),
        cdr_end = %end.format("%Y-%m-%d %H:%M:%S"),
        ended_after = %after.format("%Y-%m-%d %H:%M:%S"),
        ended_before = %before.format("%Y-%m-%d %H:%M:%S"),
        "CDR ignored: it ends outside the window callwatch's evidence allows (check [cdr] timezone); the \
         evidence's end time is kept"
    );
}

/// Opens the `[cdr]` source of `settings`, if configured. `default_timezone`: `[database] timezone`.
pub fn open(
    cfg: Option<&::cdr::CdrConfig>,
    default_timezone: &str,
) -> anyhow::Result<Option<Refiner>> {
    let Some(cfg) = cfg else { return Ok(None) };
    let source = ::cdr::Source::open(cfg, default_timezone)?;
    tracing::info!(cdr = %source.describe(), "exact end times from Asterisk's CDRs for closes without a seen Hangup");
    Ok(Some(Refiner::new(Arc::new(source), cfg)))
}
