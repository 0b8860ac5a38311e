//! Matching a row to the server's channels: by Uniqueid first, else by Linkedid group.

use crate::decision::MatchedBy;
use crate::evidence::Evidence;
use crate::model::OpenRow;
use crate::view::{Lookup, ServerView};

/// Where a row's call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowMatch<'a> {
    /// Its channel, or a channel of its Linkedid group, is up.
    Alive(MatchedBy),
    /// Its channel (or its whole group) has ended, and this is what the tombstones say.
    Ended(Evidence<'a>),
    /// It has ids, but no channel, live or ended, is known under them.
    Unknown,
    /// It has neither a Uniqueid nor a Linkedid (empty strings count as absent).
    NoIds,
}

impl RowMatch<'_> {
    /// True when some channel (live or ended) answers to the row's ids.
    pub(crate) fn is_matched(&self) -> bool {
        matches!(self, RowMatch::Alive(_) | RowMatch::Ended(_))
    }

    /// The tombstones' evidence, if the row's channel is known to have ended.
    pub(crate) fn evidence(&self) -> Option<&Evidence<'_>> {
        match self {
            RowMatch::Ended(e) => Some(e),
            _ => None,
        }
    }
}

/// Matching rule: a row follows the channel whose Uniqueid equals its `uniqueid` (live or ended); with no
/// such channel, the channels that ever carried its `linkedid` — alive while any of them is up, over
/// when all are gone.
pub(crate) fn match_row<'v>(row: &OpenRow, view: &'v ServerView) -> RowMatch<'v> {
    let uniqueid = row.uniqueid.as_deref().filter(|s| !s.is_empty());
    let linkedid = row.linkedid.as_deref().filter(|s| !s.is_empty());
    if uniqueid.is_none() && linkedid.is_none() {
        return RowMatch::NoIds;
    }
    if let Some(uid) = uniqueid {
        match view.by_uniqueid(uid) {
            Lookup::Alive => return RowMatch::Alive(MatchedBy::Uniqueid),
            Lookup::Ended(e) => return RowMatch::Ended(e),
            Lookup::Unknown => {}
        }
    }
    if let Some(lid) = linkedid {
        match view.by_linkedid(lid) {
            Lookup::Alive => return RowMatch::Alive(MatchedBy::Linkedid),
            Lookup::Ended(e) => return RowMatch::Ended(e),
            Lookup::Unknown => {}
        }
    }
    RowMatch::Unknown
}
