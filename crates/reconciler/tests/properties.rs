//! Properties of `decide` over random servers: small id pools so that rows, channels, Linkedid groups,
//! transfers (channels carrying several Linkedids) and extensions collide often.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use reconciler::{
    decide, Decision, End, EndedChannel, LiveChannel, OpenRow, Policy, Reason, ServerState,
    ServerView,
};

const UIDS: usize = 10;
const LIDS: [&str; 5] = ["L0", "L1", "L2", "u0", "u1"];

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap() + Duration::seconds(secs)
}

fn uid(i: usize) -> String {
    format!("u{i}")
}

#[derive(Debug, Clone)]
enum Chan {
    Live(BTreeSet<usize>),
    Hangup(BTreeSet<usize>, i64, Option<u16>),
    Gone(BTreeSet<usize>, i64, i64),
    Restart(BTreeSet<usize>, i64, i64),
}

#[derive(Debug, Clone)]
struct Row {
    uid: Option<usize>,
    lid: Option<usize>,
    ext: Option<u8>,
    answered: i64,
}

#[derive(Debug, Clone)]
struct Scenario {
    /// channel by Uniqueid index (0..UIDS)
    chans: BTreeMap<usize, Chan>,
    rows: Vec<Row>,
    state: ServerState,
    held: Vec<(usize, i64)>,
    policy: Policy,
}

fn lidset() -> impl Strategy<Value = BTreeSet<usize>> {
    proptest::collection::btree_set(0..LIDS.len(), 0..3)
}

fn chan() -> impl Strategy<Value = Chan> {
    prop_oneof![
        3 => lidset().prop_map(Chan::Live),
        2 => (lidset(), -3000i64..0, proptest::option::of(0u16..128)).prop_map(|(l, at, c)| Chan::Hangup(l, at, c)),
        2 => (lidset(), -3000i64..0, 0i64..200).prop_map(|(l, a, d)| Chan::Gone(l, a, a + d)),
        1 => (lidset(), -3000i64..0, 0i64..200).prop_map(|(l, at, d)| Chan::Restart(l, at, at - d)),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        proptest::option::of(0..UIDS + 2),
        proptest::option::of(0..LIDS.len() + 1),
        proptest::option::of(0u8..3),
        prop_oneof![8 => -4000i64..0, 1 => -10i64..10],
    )
        .prop_map(|(uid, lid, ext, answered)| Row {
            uid,
            lid,
            ext,
            answered,
        })
}

fn state() -> impl Strategy<Value = ServerState> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(-600i64..0),
        proptest::option::of(-300i64..0),
        any::<bool>(),
    )
        .prop_map(|(synced, connected, since, listing, before)| ServerState {
            synced,
            connected,
            unsynced_since: since.map(t),
            listing_at: listing.map(t),
            epoch: 1,
            ids_matched_before: before,
            booted_at: None,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        0i64..10,
        100i64..3000,
        0i64..300,
        any::<bool>(),
        prop_oneof![Just(0.0), Just(0.5), Just(0.9), Just(1.0)],
        prop_oneof![0usize..6, Just(50)],
        0i64..40,
    )
        .prop_map(
            |(skew, timeout, fallback, sup, frac, min, confirm)| Policy {
                skew: Duration::seconds(skew),
                timeout: Duration::seconds(timeout),
                fallback_after: Duration::seconds(fallback),
                superseded: sup,
                max_close_fraction: frac,
                max_close_min: min,
                confirm_delay: Duration::seconds(confirm),
                ..Policy::default()
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::btree_map(0..UIDS, chan(), 0..UIDS),
        proptest::collection::vec(row(), 0..14),
        state(),
        proptest::collection::vec((0usize..14, -60i64..0), 0..6),
        policy(),
    )
        .prop_map(|(chans, rows, state, held, policy)| Scenario {
            chans,
            rows,
            state,
            held,
            policy,
        })
}

fn lids(set: &BTreeSet<usize>) -> Vec<String> {
    set.iter().map(|i| LIDS[*i].to_owned()).collect()
}

impl Scenario {
    fn open_rows(&self) -> Vec<OpenRow> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| OpenRow {
                key: format!("r{i}"),
                uniqueid: r.uid.map(uid),
                channel: None,
                linkedid: r.lid.map(|l| {
                    LIDS.get(l)
                        .map_or_else(|| "nowhere".to_owned(), |s| (*s).to_owned())
                }),
                extension: r.ext.map(|e| format!("20{e:02}")),
                answered_at: t(r.answered),
                talk_seconds: None,
            })
            .collect()
    }

    fn view(&self) -> ServerView {
        let mut b = ServerView::builder(self.state);
        for (u, c) in &self.chans {
            match c {
                Chan::Live(l) => {
                    b.live(
                        uid(*u),
                        LiveChannel {
                            linkedids_ever: lids(l),
                            channel: String::new(),
                            first_seen: t(-4000),
                            last_known_alive: t(0),
                            last_activity: t(0),
                            epoch: 1,
                        },
                    );
                }
                Chan::Hangup(l, at, cause) => {
                    b.ended(
                        uid(*u),
                        EndedChannel {
                            linkedids_ever: lids(l),
                            channel: String::new(),
                            end: End::HangupSeen {
                                at: t(*at),
                                cause: *cause,
                                cause_txt: cause.map(|_| "Normal Clearing".to_owned()),
                                after: None,
                                before: None,
                            },
                        },
                    );
                }
                Chan::Gone(l, after, before) => {
                    b.ended(
                        uid(*u),
                        EndedChannel {
                            linkedids_ever: lids(l),
                            channel: String::new(),
                            end: End::Gone {
                                after: t(*after),
                                before: t(*before),
                            },
                        },
                    );
                }
                Chan::Restart(l, at, after) => {
                    b.ended(
                        uid(*u),
                        EndedChannel {
                            linkedids_ever: lids(l),
                            channel: String::new(),
                            end: End::Restart {
                                at: t(*at),
                                after: t(*after),
                                before: None,
                            },
                        },
                    );
                }
            }
        }
        for (r, at) in &self.held {
            b.held(format!("r{r}"), t(*at));
        }
        b.build()
    }

    /// The same server with more channels up: each extra is a new live channel, or an ended one back
    /// up, or a live one that carried more Linkedids (never fewer).
    fn with_more_live(&self, extra: &[(usize, BTreeSet<usize>)]) -> Scenario {
        let mut s = self.clone();
        for (u, l) in extra {
            // a channel never stops being a member of a Linkedid group it belonged to
            let old = match s.chans.get(u) {
                Some(
                    Chan::Live(o) | Chan::Hangup(o, ..) | Chan::Gone(o, ..) | Chan::Restart(o, ..),
                ) => o.clone(),
                None => BTreeSet::new(),
            };
            let merged = old.union(l).copied().collect();
            s.chans.insert(*u, Chan::Live(merged));
        }
        s
    }

    /// True when a live channel answers to the row: its Uniqueid, or (with no channel of that Uniqueid
    /// known) a live channel that ever carried its Linkedid. Computed from the scenario, not the view.
    fn matched_live(&self, r: &Row) -> bool {
        if let Some(u) = r.uid {
            match self.chans.get(&u) {
                Some(Chan::Live(_)) => return true,
                Some(_) => return false,
                None => {}
            }
        }
        r.lid.is_some_and(|l| {
            self.chans
                .values()
                .any(|c| matches!(c, Chan::Live(set) if set.contains(&l)))
        })
    }
}

fn closed_keys(rows: &[OpenRow], d: &[Decision]) -> BTreeMap<String, Reason> {
    rows.iter()
        .zip(d)
        .filter_map(|(r, d)| d.as_close().map(|c| (r.key.clone(), c.reason)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn one_decision_per_row_and_sound_closes(s in scenario()) {
        let rows = s.open_rows();
        let d = decide(&rows, &s.view(), &s.policy, t(0));
        prop_assert_eq!(d.len(), rows.len());
        for (i, d) in d.iter().enumerate() {
            if let Some(c) = d.as_close() {
                let row = &rows[i];
                prop_assert_eq!(c.row, i);
                prop_assert!(c.talk_seconds >= 0);
                prop_assert!(c.ended_at >= row.answered_at);
                prop_assert_eq!(c.talk_seconds, (c.ended_at - row.answered_at).num_seconds());
                if let Some(a) = c.ended_after { prop_assert!(a <= c.ended_at); }
                if let Some(b) = c.ended_before { prop_assert!(c.ended_at <= b); }
                prop_assert!(row.answered_at <= t(0), "a row answered in the future was judged");
                if c.reason != Reason::HangupSeen {
                    prop_assert_eq!(c.cause.as_str(), c.reason.as_str());
                }
                if c.reason == Reason::ChannelGone {
                    prop_assert!(s.state.synced && s.state.connected && s.state.listing_at.is_some());
                }
            }
        }
    }

    #[test]
    fn never_closes_a_row_matched_to_a_live_channel(s in scenario()) {
        let rows = s.open_rows();
        let d = decide(&rows, &s.view(), &s.policy, t(0));
        for (r, d) in s.rows.iter().zip(&d) {
            if s.matched_live(r) {
                prop_assert!(matches!(d, Decision::Keep { .. }), "{:?} for {:?}", d, r);
            }
        }
    }

    #[test]
    fn deciding_again_after_applying_closes_nothing(s in scenario()) {
        let view = s.view();
        let rows = s.open_rows();
        let first = decide(&rows, &view, &s.policy, t(0));
        let rest: Vec<OpenRow> = rows.iter().zip(&first).filter(|(_, d)| !d.is_close()).map(|(r, _)| r.clone()).collect();
        let second = decide(&rest, &view, &s.policy, t(0));
        prop_assert!(second.iter().all(|d| !d.is_close()), "{:?}", second);
    }

    #[test]
    fn more_live_channels_never_mean_more_closes(
        s in scenario(),
        extra in proptest::collection::vec((0..UIDS + 2, lidset()), 1..4),
    ) {
        let more = s.with_more_live(&extra);
        let rows = s.open_rows();
        let fewer_d = decide(&rows, &s.view(), &s.policy, t(0));
        let more_d = decide(&rows, &more.view(), &s.policy, t(0));
        // every row closed with more channels up is closed (or held by the guard) with fewer — unless a
        // newer call of its extension came up, which is what `superseded` is for
        for (i, d) in more_d.iter().enumerate() {
            if let Some(c) = d.as_close() {
                prop_assert!(
                    fewer_d[i].is_close() || fewer_d[i].is_hold() || c.reason == Reason::Superseded,
                    "row {} closed as {} only with more channels up: {:?}", i, c.reason, fewer_d[i]
                );
            }
        }
        // without `superseded` and the guard, the closes are a subset
        let mut plain = s.policy;
        plain.superseded = false;
        plain.max_close_min = usize::MAX;
        let fewer = closed_keys(&rows, &decide(&rows, &s.view(), &plain, t(0)));
        let more = closed_keys(&rows, &decide(&rows, &more.view(), &plain, t(0)));
        prop_assert!(more.len() <= fewer.len());
        for k in more.keys() {
            prop_assert!(fewer.contains_key(k));
        }
    }

    #[test]
    fn an_unsynced_map_within_the_fallback_closes_only_on_evidence(s in scenario()) {
        let mut s = s;
        s.state.synced = false;
        s.state.unsynced_since = Some(t(0));
        s.policy.superseded = false;
        let rows = s.open_rows();
        let d = decide(&rows, &s.view(), &s.policy, t(0));
        for (r, d) in s.rows.iter().zip(&d) {
            if let Some(c) = d.as_close() {
                let has_ids = r.uid.is_some() || r.lid.is_some();
                prop_assert!(
                    matches!(c.reason, Reason::HangupSeen | Reason::AsteriskRestart)
                        || (c.reason == Reason::TimeoutCleanup && !has_ids),
                    "{:?} for {:?}", c, r
                );
            }
        }
    }
}

#[test]
fn extreme_times_and_settings_do_not_panic() {
    let min = DateTime::<Utc>::MIN_UTC;
    let max = DateTime::<Utc>::MAX_UTC;
    let mut policy = Policy::default();
    let mut b = ServerView::builder(ServerState {
        synced: true,
        connected: true,
        unsynced_since: Some(min),
        listing_at: Some(max),
        epoch: u64::MAX,
        ids_matched_before: false,
        booted_at: None,
    });
    b.ended(
        "a",
        EndedChannel {
            linkedids_ever: vec!["a".into()],
            channel: String::new(),
            end: End::Gone {
                after: max,
                before: min,
            },
        },
    );
    b.ended(
        "b",
        EndedChannel {
            linkedids_ever: vec!["a".into()],
            channel: String::new(),
            end: End::Restart {
                at: min,
                after: max,
                before: None,
            },
        },
    );
    b.held("r0", max);
    b.held("r1", min);
    let view = b.build();
    let rows: Vec<OpenRow> = [min, max, min, max]
        .iter()
        .enumerate()
        .map(|(i, at)| OpenRow {
            key: format!("r{i}"),
            uniqueid: (i % 2 == 0).then(|| "a".to_owned()),
            channel: None,
            linkedid: Some("a".into()),
            extension: Some("2001".into()),
            answered_at: *at,
            talk_seconds: Some(-5),
        })
        .collect();
    for (d, n) in [
        (Duration::MAX, usize::MAX),
        (Duration::MIN, 0),
        (Duration::zero(), 1),
    ] {
        policy.skew = d;
        policy.timeout = d;
        policy.fallback_after = d;
        policy.confirm_delay = d;
        policy.max_close_min = n;
        for f in [f64::NAN, f64::INFINITY, -1.0, 0.0, 2.0] {
            policy.max_close_fraction = f;
            for now in [min, max, t(0)] {
                for d in decide(&rows, &view, &policy, now) {
                    if let Some(c) = d.as_close() {
                        assert!(c.talk_seconds >= 0);
                    }
                }
            }
        }
    }
}
