//! Output types: what to do with each open row, and why.

use chrono::{DateTime, Utc};

/// What to do with one open row. `decide` returns one per row, in the rows' order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Leave the row open.
    Keep {
        /// Why.
        reason: KeepReason,
    },
    /// Close the row.
    Close(Close),
    /// Leave the row open for now although a rule would close it: the mass-close guard holds it.
    Hold {
        /// Why, and until when.
        reason: HoldReason,
    },
}

impl Decision {
    /// The close, if this decision is one.
    pub fn as_close(&self) -> Option<&Close> {
        match self {
            Decision::Close(c) => Some(c),
            _ => None,
        }
    }

    /// True for [`Decision::Close`].
    pub fn is_close(&self) -> bool {
        matches!(self, Decision::Close(_))
    }

    /// True for [`Decision::Hold`].
    pub fn is_hold(&self) -> bool {
        matches!(self, Decision::Hold { .. })
    }
}

/// A row to close: when the call ended, why, and the bounds for the audit.
///
/// Invariants: `answered_at <= ended_at`; `ended_after <= ended_at <= ended_before` when present;
/// `talk_seconds == (ended_at - answered_at)` in whole seconds, so never negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The row's index in the slice given to `decide`.
    pub row: usize,
    /// When the call ended (the value for `ended_at`).
    pub ended_at: DateTime<Utc>,
    /// The value for `hangup_cause`: the Hangup's cause for `hangup_seen` (see
    /// [`crate::CauseFormat`]), otherwise the reason's name.
    pub cause: String,
    /// The rule that closed the row.
    pub reason: Reason,
    /// The call ended no earlier than this, when only bounds are known.
    pub ended_after: Option<DateTime<Utc>>,
    /// The call ended no later than this, when only bounds are known.
    pub ended_before: Option<DateTime<Utc>>,
    /// Whole seconds from `answered_at` to `ended_at`; never negative.
    pub talk_seconds: i64,
}

/// The rule that closed a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The channel (or every channel of the Linkedid group) hung up while watched.
    HangupSeen,
    /// A complete listing shows no live channel for the row.
    ChannelGone,
    /// Asterisk restarted; the row's channels died with it.
    AsteriskRestart,
    /// The row could not be judged for too long (fallback).
    TimeoutCleanup,
    /// A newer call on the same extension is live.
    Superseded,
    /// A channel Asterisk still lists kept the row alive longer than `max_call_duration` (a suspected
    /// ghost), and the policy closes ghosts.
    GhostChannel,
}

impl Reason {
    /// The reason's name, as stored in `hangup_cause` and the audit: `hangup_seen`, `channel_gone`,
    /// `asterisk_restart`, `timeout_cleanup`, `superseded` or `ghost_channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HangupSeen => "hangup_seen",
            Reason::ChannelGone => "channel_gone",
            Reason::AsteriskRestart => "asterisk_restart",
            Reason::TimeoutCleanup => "timeout_cleanup",
            Reason::Superseded => "superseded",
            Reason::GhostChannel => "ghost_channel",
        }
    }

    /// True for the reasons the mass-close guard may hold (`channel_gone`, `timeout_cleanup`,
    /// `superseded`, `ghost_channel`). `hangup_seen` and `asterisk_restart` are evidence and never held.
    pub fn is_guarded(self) -> bool {
        matches!(
            self,
            Reason::ChannelGone
                | Reason::TimeoutCleanup
                | Reason::Superseded
                | Reason::GhostChannel
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a row was matched to a live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatchedBy {
    /// A live channel has the row's Uniqueid.
    Uniqueid,
    /// A live channel has (or once had) the row's Linkedid.
    Linkedid,
    /// A live channel of the same Asterisk boot has the row's channel name.
    Channel,
}

/// A row kept alive longer than `max_call_duration`: the channel that keeps it alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ghost {
    /// Which id matched the channel.
    pub by: MatchedBy,
    /// The channel's Uniqueid.
    pub uniqueid: String,
    /// The channel's name (empty when unknown).
    pub channel: String,
    /// The last event seen about the channel (for a Linkedid group, the member with the latest one).
    pub last_activity: DateTime<Utc>,
}

/// Why a row stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepReason {
    /// The row's channel is up.
    Alive {
        /// Which id matched.
        by: MatchedBy,
    },
    /// The row's channel is up, but the row was answered more than `max_call_duration` ago: a suspected
    /// ghost (reported; closed only when the policy closes ghosts).
    SuspectGhost(Ghost),
    /// The row was answered after `now` (clock skew); it is not judged.
    AnsweredInFuture,
    /// The map is unsynced and has not been for longer than `fallback_after` (or the runner did not say
    /// since when): wait for the next listing.
    NotSynced {
        /// Since when the map is unsynced, if known.
        since: Option<DateTime<Utc>>,
    },
    /// The row was answered too close to (or after) the last listing for that listing to judge it.
    AnsweredAfterListing {
        /// The time of the last complete listing.
        listing_at: DateTime<Utc>,
    },
    /// The row cannot be judged (no ids, or the map has been unsynced too long) and is not old enough
    /// for `timeout_cleanup`.
    AwaitingTimeout {
        /// The row has neither a Uniqueid nor a Linkedid.
        no_ids: bool,
        /// When the row becomes old enough (`answered_at + timeout`).
        timeout_at: DateTime<Utc>,
    },
}

/// Why the mass-close guard holds a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HoldReason {
    /// Too many closes at once: made only if a listing taken at or after `confirm_at` still agrees.
    /// The runner feeds `held_at` back through [`crate::ServerViewBuilder::held`].
    AwaitingConfirmation {
        /// The rule that would close the row.
        would_close: Reason,
        /// When the row was first held.
        held_at: DateTime<Utc>,
        /// The earliest listing time that may confirm the close.
        confirm_at: DateTime<Utc>,
    },
    /// Too many closes at once and none of the open rows' ids ever matched a channel of this server:
    /// most likely a column-mapping or server mistake. Raise an alert; nothing is closed.
    IdsNeverMatched {
        /// The rule that would close the row.
        would_close: Reason,
    },
}
