//! Writing a confirmed plan: audited, conditional closes, logged with the seed's phrases and broadcast.
//!
//! Exactly the planned closes are written (one transaction per chunk, see [`store::Store::close`]), each only
//! `WHERE ended_at IS NULL`, so a row the application ended while the operator read the list is left alone
//! and reported as skipped. Every close is logged as `Stuck call cleaned up` (call id, extension, reason,
//! ended_at, talk_seconds); a failed batch logs `Failed to clean up stuck call` once per row (call id,
//! error) — the seed's phrases, so existing `grep`s keep working.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use store::{CallId, CloseRequest, Store};

use super::plan::Plan;
use crate::broadcast::{Broadcaster, CallUpdate};
use crate::pipeline::{store_reason, ClosedRow};

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Rows closed now, with their audit ids.
    pub closed: Vec<ClosedRow>,
    /// Rows the application had ended meanwhile (left alone).
    pub skipped: Vec<CallId>,
    /// The error that stopped the writes, if any (nothing of the failed batch was written).
    pub error: Option<String>,
}

/// The store requests for the plan's closes, decided at `decided_at`.
pub fn requests(plan: &Plan, decided_at: DateTime<Utc>) -> Vec<CloseRequest> {
    plan.closes()
        .filter_map(|p| {
            let c = p.close()?;
            Some(CloseRequest {
                call_id: p.call.id.clone(),
                ended_at: c.ended_at,
                hangup_cause: c.cause.clone(),
                reason: store_reason(c.reason),
                ended_after: c.ended_after,
                ended_before: c.ended_before,
                decided_at,
                ended_at_source: Default::default(),
            })
        })
        .collect()
}

/// The rows the plan closes, as reported before they are written (no audit id yet).
pub fn planned_rows(plan: &Plan) -> Vec<ClosedRow> {
    plan.closes()
        .filter_map(|p| {
            let c = p.close()?;
            Some(ClosedRow {
                id: p.call.id.clone(),
                uniqueid: p.call.uniqueid.clone(),
                linkedid: p.call.linkedid.clone(),
                extension: p.call.extension.clone(),
                ended_at: c.ended_at,
                hangup_cause: c.cause.clone(),
                reason: c.reason.as_str().to_string(),
                ended_after: c.ended_after,
                ended_before: c.ended_before,
                talk_seconds: p.talk_seconds.unwrap_or(c.talk_seconds),
                answered_at: p.call.answered_at,
                closure_id: None,
                ended_at_source: Default::default(),
            })
        })
        .collect()
}

/// Writes the plan's closes under `run_id`; logs and broadcasts each close.
pub async fn apply(
    store: &Store,
    plan: &Plan,
    run_id: &str,
    decided_at: DateTime<Utc>,
    broadcaster: &Broadcaster,
) -> Applied {
    let batch = requests(plan, decided_at);
    let mut out = Applied::default();
    if batch.is_empty() {
        return out;
    }
    let mut planned: HashMap<CallId, ClosedRow> = planned_rows(plan)
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    match store.close(&batch, run_id).await {
        Ok(outcome) => {
            for closed in outcome.closed {
                let Some(mut row) = planned.remove(&closed.call_id) else {
                    continue;
                };
                row.ended_at = closed.ended_at;
                row.talk_seconds = closed.talk_seconds;
                row.closure_id = Some(closed.closure_id);
                announce(&row, broadcaster);
                out.closed.push(row);
            }
            for id in outcome.skipped {
                tracing::info!(call_id = %id, "call already ended by the application; left alone");
                out.skipped.push(id);
            }
        }
        Err(err) => {
            let error = err.to_string();
            for req in &batch {
                tracing::error!(call_id = %req.call_id, error = %error, "Failed to clean up stuck call");
            }
            out.error = Some(error);
        }
    }
    out.closed.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn announce(row: &ClosedRow, broadcaster: &Broadcaster) {
    let ended_at = row.ended_at.format("%Y-%m-%d %H:%M:%S").to_string();
    tracing::info!(
        call_id = %row.id,
        extension = row.extension.as_deref().unwrap_or(""),
        reason = %row.reason,
        ended_at = %ended_at,
        talk_seconds = row.talk_seconds,
        hangup_cause = %row.hangup_cause,
        "Stuck call cleaned up"
    );
    metrics::counter!(crate::metrics::CLOSES_TOTAL, "reason" => row.reason.clone()).increment(1);
    broadcaster.send(CallUpdate::completed(row));
}
