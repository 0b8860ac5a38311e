//! What changed since a server's last round: the ids of the channels that ended, which an incremental
//! round looks up instead of reading every open row.

use std::collections::BTreeSet;

use ami::channels::{ChannelEnd, ChannelGone};
use store::RowKeys;

/// The channels of one server that ended since its last round, by Uniqueid and by every Linkedid they
/// carried: an open row can only have been affected by them if it carries one of these ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedChannels {
    uniqueids: BTreeSet<String>,
    linkedids: BTreeSet<String>,
}

impl ChangedChannels {
    /// Notes one ended channel.
    pub fn note(&mut self, gone: &ChannelGone) {
        self.uniqueids.insert(gone.uniqueid.clone());
        if !gone.linkedid.is_empty() {
            self.linkedids.insert(gone.linkedid.clone());
        }
        self.linkedids.extend(
            gone.linkedids_ever
                .iter()
                .filter(|l| !l.is_empty())
                .cloned(),
        );
    }

    /// True when no channel ended.
    pub fn is_empty(&self) -> bool {
        self.uniqueids.is_empty()
    }

    /// Channels noted.
    pub fn len(&self) -> usize {
        self.uniqueids.len()
    }

    /// The ids to look the rows up by.
    pub fn keys(&self) -> RowKeys {
        RowKeys {
            uniqueids: self.uniqueids.iter().cloned().collect(),
            linkedids: self.linkedids.iter().cloned().collect(),
        }
    }
}

/// True when an incremental round may follow this end: a seen `Hangup`. A listing that found channels gone
/// and an Asterisk restart bring a full round (the listing's completion, or the restart, can touch rows
/// that carry none of the channels' ids: rows matched by channel name, rows the listing makes judgeable).
pub fn judged_incrementally(end: &ChannelEnd) -> bool {
    matches!(end, ChannelEnd::HangupSeen { .. })
}
