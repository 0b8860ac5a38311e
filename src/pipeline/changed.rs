//! What changed since a server's last round: the ids of the channels that ended, which an incremental
//! round looks up instead of reading every open row.

use std::collections::{BTreeMap, BTreeSet};

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

/// What the ended channels ask of this daemon's rounds, by server name.
#[derive(Debug, Default)]
pub struct RoundsWanted {
    /// Servers with a round to run.
    pub pending: BTreeSet<String>,
    /// Servers whose next round must read every open row.
    pub full: BTreeSet<String>,
    /// Servers whose next round may read only the rows of these channels.
    pub changed: BTreeMap<String, ChangedChannels>,
}

impl RoundsWanted {
    /// Notes the ended channels `gone` for the servers this daemon owns (`owns`); true when any was noted.
    /// The ends on servers it does not own are dropped: their owner judges them, and the round that follows
    /// taking a lock is full. A standby kept them, and its memory grew for as long as it waited (found by a
    /// soak's heap profile: 4.3 MB after five minutes of a busy PBX).
    pub fn note_ended(&mut self, gone: Vec<ChannelGone>, owns: impl Fn(&str) -> bool) -> bool {
        let mut any = false;
        for g in gone {
            if !owns(&g.server) {
                continue;
            }
            any = true;
            let server = g.server.to_string();
            if judged_incrementally(&g.end) {
                self.changed.entry(server.clone()).or_default().note(&g);
            } else {
                self.full.insert(server.clone());
            }
            self.pending.insert(server);
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn gone(server: &str, uid: &str, end: ChannelEnd) -> ChannelGone {
        ChannelGone {
            server: server.into(),
            uniqueid: uid.into(),
            linkedid: format!("L{uid}"),
            linkedids_ever: vec![format!("L{uid}")],
            channel: format!("PJSIP/{uid}"),
            end,
        }
    }

    fn hangup() -> ChannelEnd {
        ChannelEnd::HangupSeen {
            at: DateTime::<Utc>::UNIX_EPOCH,
            cause: Some(16),
            cause_txt: None,
            after: None,
            before: None,
        }
    }

    fn missing_from_listing() -> ChannelEnd {
        ChannelEnd::Gone {
            after: None,
            before: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn only_the_owned_servers_ends_are_kept() {
        let mut wanted = RoundsWanted::default();
        let ends = vec![
            gone("mine", "1", hangup()),
            gone("theirs", "2", hangup()),
            gone("theirs", "3", missing_from_listing()),
        ];
        assert!(wanted.note_ended(ends, |s| s == "mine"));
        assert_eq!(wanted.pending, BTreeSet::from(["mine".to_string()]));
        assert!(wanted.full.is_empty());
        assert_eq!(wanted.changed.len(), 1);
        assert_eq!(wanted.changed["mine"].keys().uniqueids, ["1"]);
        // A standby (it owns nothing) keeps nothing, however many channels end.
        let many = (0..1000)
            .map(|i| gone("theirs", &i.to_string(), hangup()))
            .collect();
        assert!(!wanted.note_ended(many, |_| false));
        assert_eq!(wanted.changed.len(), 1);
        // A listing's or a restart's end makes the next round full.
        let listing = vec![gone("mine", "4", missing_from_listing())];
        assert!(wanted.note_ended(listing, |s| s == "mine"));
        assert!(wanted.full.contains("mine"));
    }
}
