//! The rules, one module each. Every rule is a named function that looks at one row (and the view) and
//! says whether it applies; `decide` runs them in order of strength of evidence.

pub(crate) mod asterisk_restart;
pub(crate) mod channel_gone;
pub(crate) mod future;
pub(crate) mod ghost_channel;
pub(crate) mod guard;
pub(crate) mod hangup_seen;
pub(crate) mod superseded;
pub(crate) mod timeout_cleanup;

use chrono::{DateTime, Utc};

use crate::decision::{Close, Reason};
use crate::model::OpenRow;
use crate::policy::Policy;
use crate::view::ServerView;

/// What every rule may look at besides the row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) view: &'a ServerView,
    pub(crate) policy: &'a Policy,
    pub(crate) now: DateTime<Utc>,
}

/// Builds a [`Close`] and enforces its invariants: `ended_at` is never before `answered_at`, the bounds
/// enclose `ended_at`, and `talk_seconds` is the whole seconds between them.
pub(crate) fn close(
    index: usize,
    row: &OpenRow,
    reason: Reason,
    cause: String,
    ended_at: DateTime<Utc>,
    ended_after: Option<DateTime<Utc>>,
    ended_before: Option<DateTime<Utc>>,
) -> Close {
    let ended_at = ended_at.max(row.answered_at);
    let ended_after = ended_after.map(|t| t.max(row.answered_at).min(ended_at));
    let ended_before = ended_before.map(|t| t.max(ended_at));
    let talk_seconds = ended_at
        .signed_duration_since(row.answered_at)
        .num_seconds()
        .max(0);
    Close {
        row: index,
        ended_at,
        cause,
        reason,
        ended_after,
        ended_before,
        talk_seconds,
    }
}

#[cfg(test)]
pub(crate) mod testkit;
