//! Matching a row to the server's channels: by Uniqueid and channel name first, else by Linkedid group.

use crate::decision::MatchedBy;
use crate::evidence::Evidence;
use crate::model::OpenRow;
use crate::names::{ChannelNames, NameSlot};
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

/// Matching rule, strongest evidence first:
/// 1. a live channel with the row's `uniqueid`, or a live channel of the same boot named as its `channel`,
///    keeps the row alive;
/// 2. otherwise a tombstone with its `uniqueid` says how the call ended (the Uniqueid decides);
/// 3. otherwise any live channel that ever carried its `linkedid` keeps it alive;
/// 4. otherwise the tombstones of its channel name and of its Linkedid group say how it ended (the later
///    of the two when both are known: the call lasted while either was up).
///
/// A row with neither a Uniqueid nor a Linkedid, whose channel name no known channel has, is [`RowMatch::NoIds`].
pub(crate) fn match_row<'v>(
    row: &OpenRow,
    view: &'v ServerView,
    names: &ChannelNames<'v>,
) -> RowMatch<'v> {
    let uniqueid = row.uniqueid.as_deref().filter(|s| !s.is_empty());
    let linkedid = row.linkedid.as_deref().filter(|s| !s.is_empty());
    let name = names.lookup(row);
    if uniqueid.is_none() && linkedid.is_none() && name.is_none() {
        return RowMatch::NoIds;
    }
    let by_uniqueid = uniqueid.map(|uid| view.by_uniqueid(uid));
    if by_uniqueid == Some(Lookup::Alive) {
        return RowMatch::Alive(MatchedBy::Uniqueid);
    }
    if matches!(name, Some(NameSlot::Live(_))) {
        return RowMatch::Alive(MatchedBy::Channel);
    }
    if let Some(Lookup::Ended(e)) = by_uniqueid {
        return RowMatch::Ended(e);
    }
    let by_linkedid = linkedid.map(|lid| view.by_linkedid(lid));
    if by_linkedid == Some(Lookup::Alive) {
        return RowMatch::Alive(MatchedBy::Linkedid);
    }
    let named = match name {
        Some(NameSlot::Ended(e)) => Some(e),
        _ => None,
    };
    let group = match by_linkedid {
        Some(Lookup::Ended(e)) => Some(e),
        _ => None,
    };
    match (named, group) {
        (Some(a), Some(b)) => RowMatch::Ended(a.merge(b)),
        (Some(e), None) | (None, Some(e)) => RowMatch::Ended(e),
        (None, None) if uniqueid.is_none() && linkedid.is_none() => RowMatch::NoIds,
        (None, None) => RowMatch::Unknown,
    }
}
