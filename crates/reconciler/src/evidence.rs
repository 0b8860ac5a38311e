//! What the tombstones say about how a channel, or a Linkedid group of channels, ended.

use chrono::{DateTime, Utc};

use crate::model::End;

/// The kind of evidence, strongest first; a group takes the weakest kind of its members, so it is
/// `Hangup` only when every member's Hangup was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// Every channel's `Hangup` was seen.
    Hangup,
    /// Asterisk restarted (and no channel is merely absent from a listing).
    Restart,
    /// At least one channel was merely absent from a listing.
    Gone,
}

/// The first Hangup of a channel or group: who ended the call, and with which cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hangup<'a> {
    pub(crate) uniqueid: &'a str,
    pub(crate) at: DateTime<Utc>,
    pub(crate) cause: Option<u16>,
    pub(crate) cause_txt: Option<&'a str>,
}

/// How a channel or group ended: a point estimate and bounds (`lo <= point <= hi` for well-formed input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evidence<'a> {
    pub(crate) kind: Kind,
    /// The best estimate of the end: the Hangup, the restart, or the last time known alive.
    pub(crate) point: DateTime<Utc>,
    /// The end was not before this.
    pub(crate) lo: DateTime<Utc>,
    /// The end was not after this.
    pub(crate) hi: DateTime<Utc>,
    /// The earliest seen Hangup, if any.
    pub(crate) first_hangup: Option<Hangup<'a>>,
}

impl<'a> Evidence<'a> {
    /// The evidence of one ended channel.
    pub(crate) fn of(uniqueid: &'a str, end: &'a End) -> Self {
        match end {
            End::HangupSeen {
                at,
                cause,
                cause_txt,
            } => Evidence {
                kind: Kind::Hangup,
                point: *at,
                lo: *at,
                hi: *at,
                first_hangup: Some(Hangup {
                    uniqueid,
                    at: *at,
                    cause: *cause,
                    cause_txt: cause_txt.as_deref(),
                }),
            },
            End::Gone { after, before } => Evidence {
                kind: Kind::Gone,
                point: *after,
                lo: *after,
                hi: (*before).max(*after),
                first_hangup: None,
            },
            End::Restart { at, after } => Evidence {
                kind: Kind::Restart,
                point: *at,
                lo: (*after).min(*at),
                hi: *at,
                first_hangup: None,
            },
        }
    }

    /// The evidence of a group whose members ended as `self` and `other`: the group ended with its last
    /// member (never earlier than the last Hangup), and its first Hangup says who ended the call.
    pub(crate) fn merge(self, other: Evidence<'a>) -> Self {
        let first_hangup = match (self.first_hangup, other.first_hangup) {
            (Some(a), Some(b)) => Some(if (b.at, b.uniqueid) < (a.at, a.uniqueid) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
        Evidence {
            kind: self.kind.max(other.kind),
            point: self.point.max(other.point),
            lo: self.lo.max(other.lo),
            hi: self.hi.max(other.hi),
            first_hangup,
        }
    }
}

/// A group's evidence stored in the view without borrowing it: the first Hangup is kept by Uniqueid and
/// resolved against the view's tombstones when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvidence {
    pub(crate) kind: Kind,
    pub(crate) point: DateTime<Utc>,
    pub(crate) lo: DateTime<Utc>,
    pub(crate) hi: DateTime<Utc>,
    pub(crate) first_hangup: Option<String>,
}

impl StoredEvidence {
    pub(crate) fn store(e: &Evidence<'_>) -> Self {
        StoredEvidence {
            kind: e.kind,
            point: e.point,
            lo: e.lo,
            hi: e.hi,
            first_hangup: e.first_hangup.map(|h| h.uniqueid.to_owned()),
        }
    }
}
