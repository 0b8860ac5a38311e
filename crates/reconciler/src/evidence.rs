//! What the tombstones say about how a channel, or a Linkedid group of channels, ended.

use std::cmp::Ordering;

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
                after,
                before,
            } => Evidence {
                kind: Kind::Hangup,
                point: *at,
                lo: after.unwrap_or(*at).min(*at),
                hi: before.unwrap_or(*at).max(*at),
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
            End::Restart { at, after, before } => Evidence {
                kind: Kind::Restart,
                point: *at,
                lo: (*after).min(*at),
                hi: before.map_or(*at, |b| b.max(*at)),
                first_hangup: None,
            },
        }
    }

    /// The evidence of a group whose members ended as `self` and `other`: the group ended with its last
    /// member (never earlier than the last Hangup), and its first Hangup says who ended the call.
    pub(crate) fn merge(self, other: Evidence<'a>) -> Self {
        let first_hangup = match (self.first_hangup, other.first_hangup) {
            (Some(a), Some(b)) => Some(if first_of(&b, &a) { b } else { a }),
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

/// True when Hangup `a` came before `b`. The view carries no stream order, so Hangups at the same
/// instant (several events read in one chunk) are ordered by Uniqueid — by its numbers, so that
/// `1795520552.9` (created first) comes before `1795520552.10` — which puts the channel created first
/// first.
fn first_of(a: &Hangup<'_>, b: &Hangup<'_>) -> bool {
    match a.at.cmp(&b.at) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => {
            natural_cmp(a.uniqueid, b.uniqueid).then_with(|| a.uniqueid.cmp(b.uniqueid))
                == Ordering::Less
        }
    }
}

/// Compares strings with runs of ASCII digits compared as numbers (`a.9` < `a.10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, ra) = a.split_at(da);
                let (nb, rb) = b.split_at(db);
                let trim = |n: &'_ [u8]| -> usize { n.iter().take_while(|c| **c == b'0').count() };
                let (na, nb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = ra;
                b = rb;
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// A group's evidence stored in the view without borrowing it: the first Hangup is kept as an index
/// into the view's tombstones and resolved when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvidence {
    pub(crate) kind: Kind,
    pub(crate) point: DateTime<Utc>,
    pub(crate) lo: DateTime<Utc>,
    pub(crate) hi: DateTime<Utc>,
    pub(crate) first_hangup: Option<u32>,
}

impl StoredEvidence {
    pub(crate) fn store(e: &Evidence<'_>, first_hangup: Option<u32>) -> Self {
        StoredEvidence {
            kind: e.kind,
            point: e.point,
            lo: e.lo,
            hi: e.hi,
            first_hangup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering::*;

    #[test]
    fn natural_order() {
        for (a, b, want) in [
            ("1795520552.9", "1795520552.10", Less),
            ("1795520552.10", "1795520552.10", Equal),
            ("1795520553.1", "1795520552.10", Greater),
            ("pbx-1.2", "pbx-1.02", Equal),
            ("pbx-a.2", "pbx-b.1", Less),
            ("1.2", "1.2.3", Less),
            ("", "0", Less),
        ] {
            assert_eq!(natural_cmp(a, b), want, "{a} vs {b}");
        }
    }
}
