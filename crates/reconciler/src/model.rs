//! Input types: the open rows of one server and what callwatch knows about that server's channels.

use chrono::{DateTime, Utc};

/// One in-progress call as the database holds it (`answered_at` set, `ended_at` NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRow {
    /// The row's database id as text; stable across rounds (the mass-close guard remembers rows by it).
    pub key: String,
    /// The Asterisk `Uniqueid` the application stored (the caller's or the agent's channel), if any.
    pub uniqueid: Option<String>,
    /// The Asterisk `Linkedid` the application stored, if any.
    pub linkedid: Option<String>,
    /// The Asterisk channel name the application stored (e.g. `PJSIP/2001-0000001a`), if any. A live
    /// channel of that name in the same Asterisk boot keeps the row alive.
    pub channel: Option<String>,
    /// The extension (agent) the call belongs to, if known; used by the `superseded` rule.
    pub extension: Option<String>,
    /// When the call was answered, as the application wrote it.
    pub answered_at: DateTime<Utc>,
    /// The talk time the row already carries, if any. Informational: `decide` does not read it; the
    /// talk time of a close is always computed from `ended_at - answered_at`.
    pub talk_seconds: Option<i64>,
}

/// A channel that is up on the server, keyed in the view by its `Uniqueid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChannel {
    /// Every `Linkedid` the channel has carried while it lived, the current one last. Asterisk rewrites a
    /// channel's Linkedid on attended/blonde transfers and pickups; the channel stays a member of every group.
    pub linkedids_ever: Vec<String>,
    /// The channel's name (`PJSIP/2001-0000001a`; empty when unknown).
    pub channel: String,
    /// When callwatch first saw the channel.
    pub first_seen: DateTime<Utc>,
    /// The last time callwatch knew the channel to be up.
    pub last_known_alive: DateTime<Utc>,
    /// The last event seen about the channel (its creation, state changes, bridges, …). A listing that
    /// merely shows it again is not activity: Asterisk can keep a channel it never frees (a ghost).
    pub last_activity: DateTime<Utc>,
    /// The epoch (connection / Asterisk boot) in which the channel was last confirmed. Informational:
    /// `decide` counts every live channel as up; the map turns the channels of a boot that ended into
    /// [`End::Restart`] tombstones.
    pub epoch: u64,
}

/// A channel that has ended, kept by the channel map as a tombstone for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedChannel {
    /// Every `Linkedid` the channel carried while it lived, the last one last.
    pub linkedids_ever: Vec<String>,
    /// The channel's name (empty when unknown).
    pub channel: String,
    /// How callwatch learned that the channel ended.
    pub end: End,
}

/// How a channel ended, as far as callwatch knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum End {
    /// Callwatch received the channel's `Hangup` event.
    HangupSeen {
        /// The event's `Timestamp:` header when Asterisk sent one; else the best estimate within
        /// `after`/`before`.
        at: DateTime<Utc>,
        /// The numeric Q.850 `Cause`, if the event carried one.
        cause: Option<u16>,
        /// The event's `Cause-txt` (e.g. `Normal Clearing`), if it carried one.
        cause_txt: Option<String>,
        /// Without a `Timestamp:`: the Hangup happened no earlier than this (`None`: `at` is exact).
        after: Option<DateTime<Utc>>,
        /// Without a `Timestamp:`: the Hangup happened no later than this, when it was read (`None`: `at`
        /// is exact).
        before: Option<DateTime<Utc>>,
    },
    /// The channel was absent from a complete `CoreShowChannels` listing.
    Gone {
        /// The last time callwatch knew the channel to be up.
        after: DateTime<Utc>,
        /// The time of the listing that no longer showed it.
        before: DateTime<Utc>,
    },
    /// Asterisk restarted (a `Shutdown` event, or a `FullyBooted` whose `Uptime` shows a new boot).
    Restart {
        /// When the channel died with Asterisk: the `Shutdown`, or after a crash the moment the
        /// connection dropped.
        at: DateTime<Utc>,
        /// The last time callwatch knew the channel to be up.
        after: DateTime<Utc>,
        /// It died no later than this, when later than `at` (the new boot). `None`: `at`.
        before: Option<DateTime<Utc>>,
    },
}

/// The freshness of a server's channel map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerState {
    /// A complete `CoreShowChannels` listing arrived since the last (re)connect, and no events were lost
    /// since. Only a synced map may say that a channel is gone.
    pub synced: bool,
    /// The AMI connection is up.
    pub connected: bool,
    /// Since when the map has been unsynced (set by the runner when it loses sync; `None` while synced).
    /// An unsynced map with no `unsynced_since` never reaches the `timeout_cleanup` fallback.
    pub unsynced_since: Option<DateTime<Utc>>,
    /// The time of the last complete listing: when it was asked for (Asterisk takes its snapshot then,
    /// however long the items take to arrive).
    pub listing_at: Option<DateTime<Utc>>,
    /// The current epoch (connection / Asterisk boot). Informational (see [`LiveChannel::epoch`]).
    pub epoch: u64,
    /// When the Asterisk whose channels the map holds booted (from its `FullyBooted` `Uptime`), if known.
    /// Channel names repeat across boots: a row's `channel` counts only for rows answered after the boot
    /// (less `skew`); unknown, every row counts as answered in this boot.
    pub booted_at: Option<DateTime<Utc>>,
    /// Rows of this server have matched channels in an earlier round (remembered by the runner). When
    /// false and no open row matches any channel in the view, a mass close raises an alert instead.
    pub ids_matched_before: bool,
}

impl ServerState {
    /// True when the map may be trusted to say "gone": synced, connected and with a listing time.
    pub fn is_synced(&self) -> bool {
        self.synced && self.connected && self.listing_at.is_some()
    }
}
