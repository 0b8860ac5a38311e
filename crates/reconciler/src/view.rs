//! [`ServerView`]: one server's channels, indexed once so that `decide` only does lookups.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::evidence::{Evidence, Hangup, StoredEvidence};
use crate::hash::FxHashMap;
use crate::key::IdKey;
use crate::model::{End, EndedChannel, LiveChannel, ServerState};

/// What callwatch knows about one server's channels at the time of a round.
///
/// Built with [`ServerView::builder`]; building indexes every Uniqueid and every Linkedid a channel has
/// ever carried, so `decide` answers "is this channel up?" and "is any channel of this Linkedid group up?"
/// with one lookup each.
#[derive(Debug, Clone)]
pub struct ServerView {
    state: ServerState,
    live: HashMap<String, LiveChannel>,
    /// The tombstones; [`Slot::Ended`] and [`Group::ended`] index into it.
    ended: Vec<(String, EndedChannel)>,
    held: HashMap<String, DateTime<Utc>>,
    /// Uniqueid → live or ended (compact, for the hot path).
    uniqueids: FxHashMap<IdKey, Slot>,
    /// Linkedid → the group of channels that ever carried it.
    groups: FxHashMap<IdKey, Group>,
    /// The merged evidence of groups with ended members; [`Group::ended`] indexes into it.
    group_ends: Vec<StoredEvidence>,
}

/// Where a Uniqueid stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Live,
    /// Index into `ended`.
    Ended(u32),
}

/// The channels that ever carried one Linkedid.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// How many of them are up.
    live: u32,
    /// Index into `group_ends` of how the ended ones ended (merged); `NONE` when none has ended.
    ended: u32,
}

const NONE: u32 = u32::MAX;

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

    /// Indexes the channels and returns the view. Beyond `u32::MAX - 1` tombstones, the extra ones are
    /// left out (a map never holds that many).
    pub fn build(self) -> ServerView {
        let ServerViewBuilder {
            state,
            live,
            ended,
            held,
        } = self;
        let ended: Vec<(String, EndedChannel)> = ended
            .into_iter()
            .filter(|(uid, _)| !live.contains_key(uid))
            .take(NONE as usize - 1)
            .collect();

        let mut uniqueids: FxHashMap<IdKey, Slot> = FxHashMap::default();
        uniqueids.reserve(live.len() + ended.len());
        let mut groups: FxHashMap<IdKey, Group> = FxHashMap::default();
        for (uid, ch) in &live {
            uniqueids.insert(IdKey::new(uid), Slot::Live);
            for (i, lid) in ch.linkedids_ever.iter().enumerate() {
                if ch.linkedids_ever[..i].contains(lid) {
                    continue;
                }
                groups
                    .entry(IdKey::new(lid))
                    .or_insert(Group {
                        live: 0,
                        ended: NONE,
                    })
                    .live += 1;
            }
        }
        let mut merged: FxHashMap<&str, Evidence<'_>> = FxHashMap::default();
        for (i, (uid, ch)) in ended.iter().enumerate() {
            uniqueids.insert(IdKey::new(uid), Slot::Ended(i as u32));
            let ev = Evidence::of(uid, &ch.end);
            for lid in &ch.linkedids_ever {
                merged
                    .entry(lid.as_str())
                    .and_modify(|e| *e = e.merge(ev))
                    .or_insert(ev);
            }
        }
        let mut group_ends = Vec::with_capacity(merged.len());
        for (lid, ev) in &merged {
            let first_hangup = ev
                .first_hangup
                .and_then(|h| match uniqueids.get(h.uniqueid) {
                    Some(Slot::Ended(i)) => Some(*i),
                    _ => None,
                });
            let index = group_ends.len() as u32;
            group_ends.push(StoredEvidence::store(ev, first_hangup));
            groups
                .entry(IdKey::new(lid))
                .or_insert(Group {
                    live: 0,
                    ended: NONE,
                })
                .ended = index;
        }
        drop(merged);

        ServerView {
            state,
            live,
            ended,
            held,
            uniqueids,
            groups,
            group_ends,
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
        match self.uniqueids.get(uniqueid)? {
            Slot::Ended(i) => self.ended.get(*i as usize).map(|(_, ch)| ch),
            Slot::Live => None,
        }
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

    /// Every live channel, by Uniqueid.
    pub(crate) fn live_channels(&self) -> impl Iterator<Item = (&str, &LiveChannel)> {
        self.live.iter().map(|(u, c)| (u.as_str(), c))
    }

    /// Every tombstone, by Uniqueid.
    pub(crate) fn ended_channels(&self) -> impl Iterator<Item = (&str, &EndedChannel)> {
        self.ended.iter().map(|(u, c)| (u.as_str(), c))
    }

    /// True when some channel that ever carried `linkedid` is up.
    pub fn linkedid_alive(&self, linkedid: &str) -> bool {
        self.groups.get(linkedid).is_some_and(|g| g.live > 0)
    }

    /// The channel with this Uniqueid.
    pub(crate) fn by_uniqueid(&self, uniqueid: &str) -> Lookup<'_> {
        match self.uniqueids.get(uniqueid) {
            Some(Slot::Live) => Lookup::Alive,
            Some(Slot::Ended(i)) => match self.ended.get(*i as usize) {
                Some((uid, ch)) => Lookup::Ended(Evidence::of(uid, &ch.end)),
                None => Lookup::Unknown,
            },
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
        let Some(stored) = self.group_ends.get(group.ended as usize) else {
            return Lookup::Unknown;
        };
        let first_hangup = stored
            .first_hangup
            .and_then(|i| self.ended.get(i as usize))
            .and_then(|(uid, ch)| match &ch.end {
                End::HangupSeen {
                    at,
                    cause,
                    cause_txt,
                    ..
                } => Some(Hangup {
                    uniqueid: uid,
                    at: *at,
                    cause: *cause,
                    cause_txt: cause_txt.as_deref(),
                }),
                _ => None,
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

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;

    #[test]
    fn a_tombstone_never_hides_a_live_channel() {
        let view = synced(0)
            .gone("u1", &["L"], -50, -1)
            .live("u1", &["L"])
            .build();
        assert!(view.live_channel("u1").is_some());
        assert!(view.ended_channel("u1").is_none());
        assert_eq!((view.live_count(), view.ended_count()), (1, 0));
        assert!(view.linkedid_alive("L"));
        check_one(&row("r").uid("u1"), &view, "keep alive(uniqueid)");
        check_one(&row("r").lid("L"), &view, "keep alive(linkedid)");
    }

    #[test]
    fn groups_count_each_channel_once() {
        // a channel that carried L twice (L → M → L) is one member
        let view = synced(0).live("a", &["L", "M", "L"]).build();
        assert!(view.linkedid_alive("L") && view.linkedid_alive("M"));
        assert!(!view.linkedid_alive("N"));
        let view = synced(0)
            .hangup(
                "a",
                &["L", "M", "L"],
                -30,
                Some(16),
                Some("Normal Clearing"),
            )
            .build();
        assert!(!view.linkedid_alive("L"));
        assert!(view.ended_channel("a").is_some());
        check_one(
            &row("r").lid("M"),
            &view,
            "close hangup_seen at=-30 after=- before=- cause=normal_clearing talk=570",
        );
    }

    #[test]
    fn held_rows() {
        let view = synced(0).held("r1", -20).build();
        assert_eq!(view.held_at("r1"), Some(t(-20)));
        assert_eq!(view.held_at("r2"), None);
    }
}
