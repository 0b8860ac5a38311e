//! Helpers for the rules' table tests: times are whole seconds from [`BASE`], `now` is `t(0)` unless a
//! case says otherwise, and decisions are compared in a compact text form (see [`render`]).

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::{
    decide, Decision, End, EndedChannel, HoldReason, KeepReason, LiveChannel, MatchedBy, OpenRow,
    Policy, ServerState, ServerView, ServerViewBuilder,
};

/// The reference instant of every case.
pub(crate) fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// `BASE + secs`.
pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    base() + Duration::seconds(secs)
}

fn off(at: DateTime<Utc>) -> String {
    let d = at.signed_duration_since(base());
    if d.subsec_nanos() == 0 {
        d.num_seconds().to_string()
    } else {
        format!("{}ms", d.num_milliseconds())
    }
}

/// A row answered ten minutes ago, with no ids.
pub(crate) fn row(key: &str) -> OpenRow {
    OpenRow {
        key: key.to_owned(),
        uniqueid: None,
        linkedid: None,
        channel: None,
        extension: None,
        answered_at: t(-600),
        talk_seconds: None,
    }
}

impl OpenRow {
    pub(crate) fn uid(mut self, uid: &str) -> Self {
        self.uniqueid = Some(uid.to_owned());
        self
    }
    pub(crate) fn lid(mut self, lid: &str) -> Self {
        self.linkedid = Some(lid.to_owned());
        self
    }
    pub(crate) fn chan(mut self, name: &str) -> Self {
        self.channel = Some(name.to_owned());
        self
    }
    pub(crate) fn ext(mut self, ext: &str) -> Self {
        self.extension = Some(ext.to_owned());
        self
    }
    pub(crate) fn at(mut self, secs: i64) -> Self {
        self.answered_at = t(secs);
        self
    }
}

/// A view under construction, chained by value.
pub(crate) struct V(ServerViewBuilder);

/// A synced, connected view whose last listing was at `t(listing)`.
pub(crate) fn synced(listing: i64) -> V {
    V(ServerView::builder(ServerState {
        synced: true,
        connected: true,
        unsynced_since: None,
        listing_at: Some(t(listing)),
        epoch: 1,
        ids_matched_before: false,
        booted_at: None,
    }))
}

/// A disconnected view, unsynced since `t(since)`, whose last listing was long ago.
pub(crate) fn unsynced(since: i64) -> V {
    V(ServerView::builder(ServerState {
        synced: false,
        connected: false,
        unsynced_since: Some(t(since)),
        listing_at: Some(t(-3600)),
        epoch: 1,
        ids_matched_before: false,
        booted_at: None,
    }))
}

fn lids(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| (*s).to_owned()).collect()
}

impl V {
    pub(crate) fn state(mut self, f: impl FnOnce(&mut ServerState)) -> Self {
        f(self.0.state_mut());
        self
    }
    /// A live channel carrying the Linkedids `l` (current last), named `PJSIP/<uid>`.
    pub(crate) fn live(self, uid: &str, l: &[&str]) -> Self {
        let name = format!("PJSIP/{uid}");
        self.live_named(uid, &name, l)
    }
    /// A live channel named `name`, last active at `t(-1000)`.
    pub(crate) fn live_named(self, uid: &str, name: &str, l: &[&str]) -> Self {
        self.live_active(uid, name, l, -1000)
    }
    /// A live channel named `name`, last active at `t(active)`.
    pub(crate) fn live_active(mut self, uid: &str, name: &str, l: &[&str], active: i64) -> Self {
        self.0.live(
            uid,
            LiveChannel {
                linkedids_ever: lids(l),
                channel: name.to_owned(),
                first_seen: t(-1000).min(t(active)),
                last_known_alive: t(0),
                last_activity: t(active),
                epoch: 1,
            },
        );
        self
    }
    pub(crate) fn ended(self, uid: &str, l: &[&str], end: End) -> Self {
        let name = format!("PJSIP/{uid}");
        self.ended_named(uid, &name, l, end)
    }
    /// A tombstone named `name`.
    pub(crate) fn ended_named(mut self, uid: &str, name: &str, l: &[&str], end: End) -> Self {
        self.0.ended(
            uid,
            EndedChannel {
                linkedids_ever: lids(l),
                channel: name.to_owned(),
                end,
            },
        );
        self
    }
    pub(crate) fn hangup(
        self,
        uid: &str,
        l: &[&str],
        at: i64,
        code: Option<u16>,
        txt: Option<&str>,
    ) -> Self {
        self.ended(
            uid,
            l,
            End::HangupSeen {
                at: t(at),
                cause: code,
                cause_txt: txt.map(str::to_owned),
                after: None,
                before: None,
            },
        )
    }
    pub(crate) fn gone(self, uid: &str, l: &[&str], after: i64, before: i64) -> Self {
        self.ended(
            uid,
            l,
            End::Gone {
                after: t(after),
                before: t(before),
            },
        )
    }
    pub(crate) fn restart(self, uid: &str, l: &[&str], at: i64, after: i64) -> Self {
        self.ended(
            uid,
            l,
            End::Restart {
                at: t(at),
                after: t(after),
                before: None,
            },
        )
    }
    pub(crate) fn held(mut self, key: &str, at: i64) -> Self {
        self.0.held(key, t(at));
        self
    }
    pub(crate) fn build(self) -> ServerView {
        self.0.build()
    }
}

/// The compact text form of a decision, with times as offsets from [`base`]:
/// `keep alive(uniqueid)`, `keep future`, `keep not_synced(since=-200)`, `keep after_listing(0)`,
/// `keep awaiting_timeout(no_ids=false, at=1200)`,
/// `close channel_gone at=-30 after=-30 before=0 cause=channel_gone talk=570`,
/// `hold confirm(channel_gone, held=0, at=15)`, `hold ids_never_matched(channel_gone)`.
pub(crate) fn render(d: &Decision) -> String {
    let opt = |o: Option<DateTime<Utc>>| o.map_or("-".to_owned(), off);
    match d {
        Decision::Keep { reason } => match reason {
            KeepReason::Alive { by } => format!("keep alive({})", by_text(*by)),
            KeepReason::SuspectGhost(g) => format!(
                "keep suspect_ghost({}, {} {}, last={})",
                by_text(g.by),
                g.uniqueid,
                g.channel,
                off(g.last_activity)
            ),
            KeepReason::AnsweredInFuture => "keep future".to_owned(),
            KeepReason::NotSynced { since } => format!("keep not_synced(since={})", opt(*since)),
            KeepReason::AnsweredAfterListing { listing_at } => {
                format!("keep after_listing({})", off(*listing_at))
            }
            KeepReason::AwaitingTimeout { no_ids, timeout_at } => format!(
                "keep awaiting_timeout(no_ids={no_ids}, at={})",
                off(*timeout_at)
            ),
        },
        Decision::Close(c) => format!(
            "close {} at={} after={} before={} cause={} talk={}",
            c.reason.as_str(),
            off(c.ended_at),
            opt(c.ended_after),
            opt(c.ended_before),
            c.cause,
            c.talk_seconds
        ),
        Decision::Hold { reason } => match reason {
            HoldReason::AwaitingConfirmation {
                would_close,
                held_at,
                confirm_at,
            } => format!(
                "hold confirm({}, held={}, at={})",
                would_close.as_str(),
                off(*held_at),
                off(*confirm_at)
            ),
            HoldReason::IdsNeverMatched { would_close } => {
                format!("hold ids_never_matched({})", would_close.as_str())
            }
        },
    }
}

fn by_text(by: MatchedBy) -> &'static str {
    match by {
        MatchedBy::Uniqueid => "uniqueid",
        MatchedBy::Linkedid => "linkedid",
        MatchedBy::Channel => "channel",
    }
}

/// Decides `rows` at `t(now)` and compares each decision's text form with `expect`.
#[track_caller]
pub(crate) fn check_at(
    rows: &[OpenRow],
    view: &ServerView,
    policy: &Policy,
    now: i64,
    expect: &[&str],
) {
    let got: Vec<String> = decide(rows, view, policy, t(now))
        .iter()
        .map(render)
        .collect();
    assert_eq!(got, expect, "rows: {rows:#?}");
    // every close names its own row
    for (i, d) in decide(rows, view, policy, t(now)).iter().enumerate() {
        if let Some(c) = d.as_close() {
            assert_eq!(c.row, i);
        }
    }
}

/// [`check_at`] with the default policy at `t(0)`.
#[track_caller]
pub(crate) fn check(rows: &[OpenRow], view: &ServerView, expect: &[&str]) {
    check_at(rows, view, &Policy::default(), 0, expect);
}

/// [`check`] for one row.
#[track_caller]
pub(crate) fn check_one(r: &OpenRow, view: &ServerView, expect: &str) {
    check(std::slice::from_ref(r), view, &[expect]);
}
