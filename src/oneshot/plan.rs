//! What `cleanup` would do to each old row, decided by the reconciler.
//!
//! Only rows answered more than `policy.timeout` ago ("old" rows, the seed's `answered_at < now - timeout`)
//! are planned; younger rows are left to the daemon. Each group of rows is decided in one
//! [`reconciler::decide`] call, with *all* of the group's open rows (so the `superseded` rule sees newer
//! live calls and the mass-close guard counts against every open row), and the decisions of the old rows
//! are kept:
//! - **with a listing** (a synced channel map of the group's server): a row whose channel is live is
//!   "long but live" and kept; a row whose channel is gone closes as `channel_gone` (`ended_at` = the listing
//!   time when callwatch never saw the channel, bounds [answered_at, listing]); a Hangup seen while waiting
//!   closes it as `hangup_seen`; a row without ids closes as `timeout_cleanup`. The mass-close guard may
//!   hold closes until a second listing confirms them;
//! - **without a listing** (no AMI server, `--no-ami`, the server unreachable, or rows of an unwatched
//!   server): the seed's rule, exactly — every old row closes as `timeout_cleanup` with `ended_at` = now.
//!   The reconciler sees a map that has never been synced, which makes every row unjudgeable; the guard is
//!   off, as the seed had none (the operator confirms the list instead).

use std::collections::HashMap;

use ami::channels::MapSnapshot;
use chrono::{DateTime, Duration, Utc};
use reconciler::{
    Close, Decision, HoldReason, KeepReason, MatchedBy, Policy, Reason, ServerState, ServerView,
};
use store::OpenCall;

use super::groups::Group;
use crate::pipeline::{open_row, view::server_view, ServerMemory};

/// What `cleanup` does to one old row.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Close it.
    Close(Close),
    /// Its channel is up: a long call, not a stuck one. Kept.
    LongButLive {
        /// Which id matched the live channel.
        by: MatchedBy,
    },
    /// The mass-close guard holds the close.
    Held {
        /// The rule that would close it.
        would_close: Reason,
        /// When the guard first held it.
        held_at: Option<DateTime<Utc>>,
        /// The earliest listing that may confirm it (`None`: an alert, nothing will confirm it).
        confirm_at: Option<DateTime<Utc>>,
    },
    /// Kept for another reason (e.g. answered too close to the listing), said in words.
    Kept {
        /// Why.
        why: String,
    },
}

/// One old row and its action.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The row.
    pub call: OpenCall,
    /// The group that judged it.
    pub group: Group,
    /// What to do.
    pub action: Action,
    /// For a close, the `talk_seconds` that will be written: the computed talk time, or the row's own value
    /// where the store keeps it (see [`written_talk_seconds`]).
    pub talk_seconds: Option<i64>,
}

impl Planned {
    /// The close, if the row is to be closed.
    pub fn close(&self) -> Option<&Close> {
        match &self.action {
            Action::Close(c) => Some(c),
            _ => None,
        }
    }
}

/// The whole plan of one cleanup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Old rows and their actions, by answer time then id.
    pub rows: Vec<Planned>,
}

impl Plan {
    /// Rows to close.
    pub fn closes(&self) -> impl Iterator<Item = &Planned> {
        self.rows.iter().filter(|p| p.close().is_some())
    }

    /// Number of rows to close.
    pub fn close_count(&self) -> usize {
        self.closes().count()
    }

    /// Rows kept because their channel is up.
    pub fn long_but_live(&self) -> impl Iterator<Item = &Planned> {
        self.rows
            .iter()
            .filter(|p| matches!(p.action, Action::LongButLive { .. }))
    }

    /// Rows the mass-close guard holds.
    pub fn held(&self) -> impl Iterator<Item = &Planned> {
        self.rows
            .iter()
            .filter(|p| matches!(p.action, Action::Held { .. }))
    }

    /// Adds one group's rows and sorts.
    pub fn extend(&mut self, rows: Vec<Planned>) {
        self.rows.extend(rows);
        self.rows.sort_by(|a, b| {
            (a.call.answered_at, &a.call.id).cmp(&(b.call.answered_at, &b.call.id))
        });
    }
}

/// True when `call` was answered more than `timeout` before `now` (the seed's `answered_at < now - timeout`).
pub fn is_old(call: &OpenCall, timeout: Duration, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(call.answered_at) > timeout
}

/// The view of a group that no listing judges: a map that has never been synced.
pub fn no_listing_view() -> ServerView {
    ServerView::builder(ServerState {
        synced: false,
        connected: false,
        // "unsynced since forever": every row is unjudgeable, so only age decides (the seed's rule).
        unsynced_since: Some(DateTime::<Utc>::MIN_UTC),
        listing_at: None,
        epoch: 0,
        ids_matched_before: false,
        booted_at: None,
    })
    .build()
}

/// Plans one group: `calls` are all of the group's open rows; `listing` its server's synced snapshot, or
/// `None` for the seed's rule; `memory` the holds fed back for a confirming listing. Returns the old rows only.
pub fn plan_group(
    group: &Group,
    calls: &[OpenCall],
    listing: Option<&MapSnapshot>,
    memory: &ServerMemory,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let (view, policy) = match listing {
        Some(snapshot) => (server_view(snapshot, memory), *policy),
        None => (
            no_listing_view(),
            Policy {
                max_close_min: usize::MAX,
                ..*policy
            },
        ),
    };
    let rows: Vec<_> = calls.iter().map(open_row).collect();
    let decisions = reconciler::decide(&rows, &view, &policy, now);
    calls
        .iter()
        .zip(decisions)
        .filter(|(call, _)| is_old(call, policy.timeout, now))
        .map(|(call, decision)| {
            let action = action(decision);
            let talk_seconds = match &action {
                Action::Close(c) => Some(c.talk_seconds),
                _ => None,
            };
            Planned {
                call: call.clone(),
                group: group.clone(),
                action,
                talk_seconds,
            }
        })
        .collect()
}

/// Replaces each close's computed talk time by the value `store` will write (a row's own `talk_seconds` is
/// kept unless `overwrite_talk_seconds`), so that a dry run and the JSON show what the close writes.
pub fn written_talk_seconds(rows: &mut [Planned], store: &store::Store) {
    for p in rows {
        if let Action::Close(c) = &p.action {
            p.talk_seconds = Some(store.talk_seconds_written(p.call.talk_seconds, c.talk_seconds));
        }
    }
}

fn action(decision: Decision) -> Action {
    match decision {
        Decision::Close(c) => Action::Close(c),
        Decision::Keep {
            reason: KeepReason::Alive { by },
        } => Action::LongButLive { by },
        Decision::Keep { reason } => Action::Kept {
            why: keep_text(&reason),
        },
        Decision::Hold {
            reason:
                HoldReason::AwaitingConfirmation {
                    would_close,
                    held_at,
                    confirm_at,
                },
        } => Action::Held {
            would_close,
            held_at: Some(held_at),
            confirm_at: Some(confirm_at),
        },
        Decision::Hold {
            reason: HoldReason::IdsNeverMatched { would_close },
        } => Action::Held {
            would_close,
            held_at: None,
            confirm_at: None,
        },
        Decision::Hold { .. } => Action::Kept { why: "held".into() },
        _ => Action::Kept { why: "kept".into() },
    }
}

fn keep_text(reason: &KeepReason) -> String {
    let t = |d: &DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    match reason {
        KeepReason::AnsweredInFuture => "answered in the future".into(),
        KeepReason::NotSynced { .. } => "the channel listing is not synced".into(),
        KeepReason::AnsweredAfterListing { listing_at } => {
            format!("answered too close to the listing at {}", t(listing_at))
        }
        KeepReason::AwaitingTimeout { timeout_at, .. } => {
            format!("not old enough until {}", t(timeout_at))
        }
        KeepReason::Alive { .. } => "alive".into(),
        KeepReason::SuspectGhost(g) => format!(
            "a suspected ghost: kept alive by channel {} ({}) with no activity since {}",
            g.channel,
            g.uniqueid,
            t(&g.last_activity)
        ),
        _ => "kept".into(),
    }
}

/// The holds of `rows` (by row key), to feed back through [`ServerMemory::held`] for a confirming listing.
pub fn holds(rows: &[Planned]) -> HashMap<String, DateTime<Utc>> {
    rows.iter()
        .filter_map(|p| match &p.action {
            Action::Held {
                held_at: Some(at), ..
            } => Some((p.call.id.to_text(), *at)),
            _ => None,
        })
        .collect()
}

/// The latest `confirm_at` among confirmable holds, if any.
pub fn confirm_at(rows: &[Planned]) -> Option<DateTime<Utc>> {
    rows.iter()
        .filter_map(|p| match &p.action {
            Action::Held { confirm_at, .. } => *confirm_at,
            _ => None,
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use ami::channels::LiveChannel;
    use store::CallId;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_520_000, 0).unwrap()
    }

    fn call(id: i64, ext: &str, uniqueid: Option<&str>, age_min: i64) -> OpenCall {
        OpenCall {
            id: CallId::Int(id),
            uniqueid: uniqueid.map(str::to_string),
            linkedid: None,
            channel: None,
            extension: Some(ext.into()),
            caller: None,
            server: None,
            status: Some("in_progress".into()),
            started_at: None,
            answered_at: t0() - Duration::minutes(age_min),
            talk_seconds: None,
        }
    }

    fn policy() -> Policy {
        Policy::default()
    }

    fn listing(live: &[&str], at: DateTime<Utc>) -> MapSnapshot {
        let mut s = MapSnapshot {
            server: Arc::from("pbx1"),
            synced: true,
            connected: true,
            unsynced_since: None,
            listing_at: Some(at),
            epoch: 1,
            booted_at: None,
            live: Default::default(),
            ended: Default::default(),
        };
        for u in live {
            s.live.insert(
                u.to_string(),
                LiveChannel {
                    linkedid: u.to_string(),
                    linkedids_ever: vec![u.to_string()],
                    channel: format!("PJSIP/{u}"),
                    state: "Up".into(),
                    first_seen: at,
                    last_known_alive: at,
                    last_activity: at,
                    epoch: 1,
                },
            );
        }
        s
    }

    fn render(rows: &[Planned]) -> Vec<String> {
        rows.iter()
            .map(|p| {
                let what = match &p.action {
                    Action::Close(c) => format!(
                        "close {} at={} talk={}",
                        c.reason,
                        (c.ended_at - t0()).num_seconds(),
                        c.talk_seconds
                    ),
                    Action::LongButLive { by } => format!("live {by:?}"),
                    Action::Held { would_close, .. } => format!("held {would_close}"),
                    Action::Kept { why } => format!("kept {why}"),
                };
                format!("{} {what}", p.call.id)
            })
            .collect()
    }

    #[test]
    fn seed_rule_without_a_listing() {
        // the seed's case: a 45-minute-old and a 5-minute-old call on extension 2001
        let calls = [
            call(1, "2001", Some("u1"), 45),
            call(2, "2001", Some("u2"), 5),
        ];
        let got = plan_group(
            &Group::Unwatched,
            &calls,
            None,
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert_eq!(render(&got), ["1 close timeout_cleanup at=0 talk=2700"]);
        let c = got[0].close().unwrap();
        assert_eq!(c.cause, "timeout_cleanup");
        assert_eq!(c.ended_after, Some(calls[0].answered_at));
        assert_eq!(c.ended_before, Some(t0()));
    }

    #[test]
    fn the_timeout_boundary_is_strict() {
        let calls = [call(1, "2001", None, 30), call(2, "2002", None, 31)];
        let got = plan_group(
            &Group::Unwatched,
            &calls,
            None,
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert_eq!(render(&got), ["2 close timeout_cleanup at=0 talk=1860"]);
    }

    #[test]
    fn no_guard_on_the_seed_rule() {
        let calls: Vec<_> = (0..200).map(|i| call(i, "2001", None, 60)).collect();
        let got = plan_group(
            &Group::Unwatched,
            &calls,
            None,
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert_eq!(got.iter().filter(|p| p.close().is_some()).count(), 200);
    }

    #[test]
    fn with_a_listing_live_rows_are_kept_and_gone_rows_close_at_the_listing() {
        let at = t0() - Duration::seconds(2);
        let snap = listing(&["live-old", "live-young"], at);
        let calls = [
            call(1, "2001", Some("live-old"), 45),
            call(2, "2002", Some("gone-old"), 45),
            call(3, "2003", Some("live-young"), 5),
            call(4, "2004", Some("gone-young"), 5),
            call(5, "2005", None, 40),
        ];
        let g = Group::Server("pbx1".into());
        let got = plan_group(
            &g,
            &calls,
            Some(&snap),
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert_eq!(
            render(&got),
            [
                "1 live Uniqueid",
                "2 close channel_gone at=-2 talk=2698",
                "5 close timeout_cleanup at=0 talk=2400",
            ]
        );
        let c = got[1].close().unwrap();
        assert_eq!(c.ended_after, Some(calls[1].answered_at));
        assert_eq!(c.ended_before, Some(at));
    }

    #[test]
    fn a_mass_close_is_held_then_confirmed_by_a_later_listing() {
        let calls: Vec<_> = (0..60)
            .map(|i| call(i, "2001", Some(&format!("u{i}")), 60))
            .chain([call(99, "2099", Some("alive"), 1)])
            .collect();
        let g = Group::Server("pbx1".into());
        let first = listing(&["alive"], t0());
        let got = plan_group(
            &g,
            &calls,
            Some(&first),
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert_eq!(got.len(), 60);
        assert!(got.iter().all(|p| matches!(
            p.action,
            Action::Held {
                would_close: Reason::ChannelGone,
                ..
            }
        )));
        let confirm = confirm_at(&got).unwrap();
        assert_eq!(confirm, t0() + Duration::seconds(15));

        let memory = ServerMemory {
            held: holds(&got),
            ids_matched_before: false,
            ..ServerMemory::default()
        };
        // too early: still held
        let early = listing(&["alive"], t0() + Duration::seconds(10));
        let again = plan_group(
            &g,
            &calls,
            Some(&early),
            &memory,
            &policy(),
            t0() + Duration::seconds(10),
        );
        assert!(again
            .iter()
            .all(|p| matches!(p.action, Action::Held { .. })));
        // a listing at confirm_at that still lacks them: they close; one that came back is kept
        let later = listing(&["alive", "u7"], confirm);
        let done = plan_group(&g, &calls, Some(&later), &memory, &policy(), confirm);
        assert_eq!(done.iter().filter(|p| p.close().is_some()).count(), 59);
        assert!(
            done.iter()
                .any(|p| p.call.id == CallId::Int(7)
                    && matches!(p.action, Action::LongButLive { .. }))
        );
    }

    #[test]
    fn ids_that_never_match_raise_the_alert() {
        let calls: Vec<_> = (0..60)
            .map(|i| call(i, "2001", Some(&format!("u{i}")), 60))
            .collect();
        let g = Group::Server("pbx1".into());
        let snap = listing(&["x1", "x2"], t0());
        let got = plan_group(
            &g,
            &calls,
            Some(&snap),
            &ServerMemory::default(),
            &policy(),
            t0(),
        );
        assert!(got.iter().all(|p| matches!(
            p.action,
            Action::Held {
                confirm_at: None,
                ..
            }
        )));
        assert_eq!(confirm_at(&got), None);
    }
}
