//! [`ServerView`]: one server's channels, indexed once so that `decide` only does lookups.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::evidence::{Evidence, Hangup, StoredEvidence};
use crate::model::{End, EndedChannel, LiveChannel, ServerState};

/// What callwatch knows about one server's channels at the time of a round.
///
/// Built with [`ServerView::builder`]; building indexes every Linkedid a channel has ever carried, so
/// `decide` answers "is any channel of this Linkedid group up?" with one lookup.
#[derive(Debug, Clone)]
pub struct ServerView {
    state: ServerState,
    live: HashMap<String, LiveChannel>,
    ended: HashMap<String, EndedChannel>,
    held: HashMap<String, DateTime<Utc>>,
    /// Linkedid → the group of channels that ever carried it.
    groups: HashMap<String, Group>,
}

/// The channels that ever carried one Linkedid.
#[derive(Debug, Clone, Default)]
struct Group {
    /// How many of them are up.
    live: u32,
    /// How the ended ones ended (merged); `None` when none has ended.
    ended: Option<StoredEvidence>,
}

/// Collects a server's channels and the rows held by the previous round, then builds a [`ServerView`].
#[derive(Debug, Clone, Default)]
pub struct ServerViewBuilder {
    state: ServerState,
    live: HashMap<String, LiveChannel>,
    ended: HashMap<String, EndedChannel>,
    held: HashMap<String, DateTime<Utc>>,
}

impl ServerViewBuilder {
    /// The server's state, to adjust before building.
    pub fn state_mut(&mut self) -> &mut ServerState {
        &mut self.state
    }

    /// Adds (or replaces) a live channel by its Uniqueid.
    pub fn live(&mut self, uniqueid: impl Into<String>, channel: LiveChannel) -> &mut Self {
        self.live.insert(uniqueid.into(), channel);
        self
    }

    /// Adds (or replaces) an ended channel (tombstone) by its Uniqueid. A Uniqueid that is also live is
    /// treated as live: a tombstone never hides a live channel.
    pub fn ended(&mut self, uniqueid: impl Into<String>, channel: EndedChannel) -> &mut Self {
        self.ended.insert(uniqueid.into(), channel);
        self
    }

    /// Records that the previous round held the row `key` under the mass-close guard at `held_at`
    /// (the `held_at` of [`crate::HoldReason::AwaitingConfirmation`]).
    pub fn held(&mut self, key: impl Into<String>, held_at: DateTime<Utc>) -> &mut Self {
        self.held.insert(key.into(), held_at);
        self
    }

    /// Indexes the channels and returns the view.
    pub fn build(self) -> ServerView {
        let ServerViewBuilder {
            state,
            live,
            mut ended,
            held,
        } = self;
        ended.retain(|uid, _| !live.contains_key(uid));

        let mut groups: HashMap<String, Group> = HashMap::new();
        for ch in live.values() {
            for (i, lid) in ch.linkedids_ever.iter().enumerate() {
                if ch.linkedids_ever[..i].contains(lid) {
                    continue;
                }
                groups.entry(lid.clone()).or_default().live += 1;
            }
        }
        let mut merged: HashMap<&str, Evidence<'_>> = HashMap::new();
        for (uid, ch) in &ended {
            let ev = Evidence::of(uid, &ch.end);
            for lid in &ch.linkedids_ever {
                merged
                    .entry(lid.as_str())
                    .and_modify(|e| *e = e.merge(ev))
                    .or_insert(ev);
            }
        }
        for (lid, ev) in &merged {
            let stored = StoredEvidence::store(ev);
            match groups.get_mut(*lid) {
                Some(g) => g.ended = Some(stored),
                None => {
                    groups.insert(
                        (*lid).to_owned(),
                        Group {
                            live: 0,
                            ended: Some(stored),
                        },
                    );
                }
            }
        }
        drop(merged);

        ServerView {
            state,
            live,
            ended,
            held,
            groups,
        }
    }
}

/// Where a row's channel stands, as seen through a [`ServerView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// A channel with this Uniqueid, or a channel that ever carried this Linkedid, is up.
    Alive,
    /// The channel (or every channel of the group) has ended.
    Ended(Evidence<'a>),
    /// No channel, live or ended, is known under this id.
    Unknown,
}

impl ServerView {
    /// Starts a view of a server in state `state`.
    pub fn builder(state: ServerState) -> ServerViewBuilder {
        ServerViewBuilder {
            state,
            ..ServerViewBuilder::default()
        }
    }

    /// The freshness of the server's channel map.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// The live channel with this Uniqueid.
    pub fn live_channel(&self, uniqueid: &str) -> Option<&LiveChannel> {
        self.live.get(uniqueid)
    }

    /// The tombstone of the ended channel with this Uniqueid.
    pub fn ended_channel(&self, uniqueid: &str) -> Option<&EndedChannel> {
        self.ended.get(uniqueid)
    }

    /// When the previous round held the row `key` under the mass-close guard.
    pub fn held_at(&self, key: &str) -> Option<DateTime<Utc>> {
        self.held.get(key).copied()
    }

    /// The number of live channels.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The number of ended channels (tombstones).
    pub fn ended_count(&self) -> usize {
        self.ended.len()
    }

    /// True when some channel that ever carried `linkedid` is up.
    pub fn linkedid_alive(&self, linkedid: &str) -> bool {
        self.groups.get(linkedid).is_some_and(|g| g.live > 0)
    }

    /// The channel with this Uniqueid.
    pub(crate) fn by_uniqueid(&self, uniqueid: &str) -> Lookup<'_> {
        if self.live.contains_key(uniqueid) {
            return Lookup::Alive;
        }
        match self.ended.get_key_value(uniqueid) {
            Some((uid, ch)) => Lookup::Ended(Evidence::of(uid, &ch.end)),
            None => Lookup::Unknown,
        }
    }

    /// The group of channels that ever carried this Linkedid.
    pub(crate) fn by_linkedid(&self, linkedid: &str) -> Lookup<'_> {
        let Some(group) = self.groups.get(linkedid) else {
            return Lookup::Unknown;
        };
        if group.live > 0 {
            return Lookup::Alive;
        }
        let Some(stored) = &group.ended else {
            return Lookup::Unknown;
        };
        let first_hangup = stored.first_hangup.as_deref().and_then(|uid| {
            let (uid, ch) = self.ended.get_key_value(uid)?;
            match &ch.end {
                End::HangupSeen {
                    at,
                    cause,
                    cause_txt,
                } => Some(Hangup {
                    uniqueid: uid,
                    at: *at,
                    cause: *cause,
                    cause_txt: cause_txt.as_deref(),
                }),
                _ => None,
            }
        });
        Lookup::Ended(Evidence {
            kind: stored.kind,
            point: stored.point,
            lo: stored.lo,
            hi: stored.hi,
            first_hangup,
        })
    }
}
