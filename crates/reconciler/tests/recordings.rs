//! `decide` on views built from the real Asterisk 22 recordings' ground truth (fixtures/ami/*.truth.json):
//! the view a correct channel map holds at a given moment, and rows as an application would store them
//! (by Linkedid, by the agent's Uniqueid, or by the caller's Uniqueid). The decisions must agree with what
//! really happened.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use reconciler::{
    decide, Decision, End, EndedChannel, KeepReason, LiveChannel, OpenRow, Policy, Reason,
    ServerState, ServerView,
};
use serde_json::Value;

fn truth(scenario: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/ami")
        .join(format!("{scenario}.truth.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn opt_ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().map(|_| ts(v))
}

fn strs(v: &Value) -> HashSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The causes the recordings contain, as `hangup_cause` must spell them.
fn snake(cause_txt: &str) -> &'static str {
    match cause_txt {
        "Normal Clearing" => "normal_clearing",
        "Unknown" => "unknown",
        other => panic!("cause {other:?} not expected in the recordings"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Linkedid,
    AgentUniqueid,
    CallerUniqueid,
}

const TRACKS: [Track; 3] = [Track::Linkedid, Track::AgentUniqueid, Track::CallerUniqueid];

fn channel<'a>(call: &'a Value, role: &str) -> &'a Value {
    call["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == role)
        .unwrap()
}

/// The row an application keeps for `call`.
fn open_row(call: &Value, track: Track) -> OpenRow {
    let (uniqueid, linkedid) = match track {
        Track::Linkedid => (None, Some(call["linkedid"].as_str().unwrap().to_owned())),
        Track::AgentUniqueid => (
            Some(
                channel(call, "agent")["uniqueid"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            None,
        ),
        Track::CallerUniqueid => (
            Some(
                channel(call, "caller")["uniqueid"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            None,
        ),
    };
    OpenRow {
        key: call["call_id"].as_str().unwrap().to_owned(),
        uniqueid,
        channel: None,
        linkedid,
        extension: Some(call["extension"].as_str().unwrap().to_owned()),
        answered_at: ts(&call["answered_at"]),
        talk_seconds: None,
    }
}

/// When the tracked channel(s) really ended: the whole group for a Linkedid row, else the channel.
fn true_end(call: &Value, track: Track) -> (DateTime<Utc>, &str) {
    match track {
        Track::Linkedid => (
            ts(&call["all_channels_ended_at"]),
            call["hangup_cause_txt"].as_str().unwrap(),
        ),
        Track::AgentUniqueid | Track::CallerUniqueid => {
            let role = if track == Track::AgentUniqueid {
                "agent"
            } else {
                "caller"
            };
            let ch = channel(call, role);
            (
                ts(&ch["ended_at"]),
                ch["hangup_cause_txt"].as_str().unwrap(),
            )
        }
    }
}

fn all_channels(t: &Value) -> impl Iterator<Item = &Value> {
    t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["channels"].as_array().unwrap())
}

#[test]
fn basic_every_hangup_seen() {
    // the subject stayed connected: the map saw every Hangup
    let t = truth("basic");
    let subject = &t["subject_connections"][0];
    let mut view = ServerView::builder(ServerState {
        synced: true,
        connected: true,
        listing_at: Some(ts(&subject["logged_in_at"])),
        epoch: 1,
        ..ServerState::default()
    });
    let mut last_end = ts(&subject["logged_in_at"]);
    for ch in all_channels(&t) {
        let at = ts(&ch["ended_at"]);
        last_end = last_end.max(at);
        view.ended(
            ch["uniqueid"].as_str().unwrap(),
            EndedChannel {
                linkedids_ever: vec![ch["linkedid"].as_str().unwrap().to_owned()],
                channel: String::new(),
                end: End::HangupSeen {
                    at,
                    cause: ch["hangup_cause"].as_u64().map(|c| c as u16),
                    cause_txt: ch["hangup_cause_txt"].as_str().map(str::to_owned),
                    after: None,
                    before: None,
                },
            },
        );
    }
    let view = view.build();
    let calls: Vec<&Value> = t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["answered_at"].is_null())
        .collect();
    assert_eq!(calls.len(), 10);
    for track in TRACKS {
        let rows: Vec<OpenRow> = calls.iter().map(|c| open_row(c, track)).collect();
        let now = last_end + Duration::seconds(1);
        let decisions = decide(&rows, &view, &Policy::default(), now);
        for ((call, row), d) in calls.iter().zip(&rows).zip(&decisions) {
            let c = d.as_close().unwrap_or_else(|| panic!("{track:?} {d:?}"));
            let (end, cause_txt) = true_end(call, track);
            assert_eq!(c.reason, Reason::HangupSeen);
            assert_eq!(c.ended_at, end, "{track:?} {}", row.key);
            assert_eq!(c.cause, snake(cause_txt), "{track:?} {}", row.key);
            assert_eq!(c.talk_seconds, (end - row.answered_at).num_seconds());
            assert_eq!((c.ended_after, c.ended_before), (None, None));
        }
    }
}

#[test]
fn disconnect_gap_resync_closes_exactly_the_calls_that_ended() {
    let t = truth("disconnect-gap");
    let gap = &t["reconnects"][0];
    let listing_at = ts(&gap["gap_end"]);
    let last_frame = ts(&gap["last_frame_received_at"]);
    let live_uids = strs(&gap["live_at_reconnect"]);
    let missed = strs(&gap["missed_hangups"]);
    let live_calls = strs(&gap["calls_live_at_reconnect"]);
    let missed_calls = strs(&gap["missed_hangups_calls"]);
    assert!(!live_uids.is_empty() && !missed.is_empty());

    // the map after the resync: the listing's channels live, the ones it knew and lost gone
    let linkedid: HashMap<&str, &str> = all_channels(&t)
        .map(|c| {
            (
                c["uniqueid"].as_str().unwrap(),
                c["linkedid"].as_str().unwrap(),
            )
        })
        .collect();
    let mut view = ServerView::builder(ServerState {
        synced: true,
        connected: true,
        listing_at: Some(listing_at),
        epoch: 2,
        ..ServerState::default()
    });
    for ch in all_channels(&t) {
        let uid = ch["uniqueid"].as_str().unwrap();
        let lids = vec![linkedid[uid].to_owned()];
        if live_uids.contains(uid) {
            view.live(
                uid,
                LiveChannel {
                    linkedids_ever: lids,
                    channel: String::new(),
                    first_seen: ts(&ch["created_at"]),
                    last_known_alive: listing_at,
                    last_activity: listing_at,
                    epoch: 2,
                },
            );
        } else if missed.contains(uid) {
            view.ended(
                uid,
                EndedChannel {
                    linkedids_ever: lids,
                    channel: String::new(),
                    end: End::Gone {
                        after: last_frame,
                        before: listing_at,
                    },
                },
            );
        }
    }
    let view = view.build();

    // every call answered before the listing has an open row
    let calls: Vec<&Value> = t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| opt_ts(&c["answered_at"]).is_some_and(|a| a < listing_at))
        .collect();
    assert_eq!(calls.len(), 22);
    let now = listing_at + Duration::seconds(1);
    for track in TRACKS {
        let rows: Vec<OpenRow> = calls.iter().map(|c| open_row(c, track)).collect();
        let decisions = decide(&rows, &view, &Policy::default(), now);
        let mut closed = 0;
        for ((call, row), d) in calls.iter().zip(&rows).zip(&decisions) {
            let id = row.key.as_str();
            if live_calls.contains(id) {
                assert!(
                    matches!(
                        d,
                        Decision::Keep {
                            reason: KeepReason::Alive { .. }
                        }
                    ),
                    "{track:?} {id}: {d:?}"
                );
                continue;
            }
            closed += 1;
            let c = d
                .as_close()
                .unwrap_or_else(|| panic!("{track:?} {id}: {d:?}"));
            assert_eq!(c.reason, Reason::ChannelGone, "{track:?} {id}");
            assert_eq!(c.cause, "channel_gone");
            let (end, _) = true_end(call, track);
            let (after, before) = (c.ended_after.unwrap(), c.ended_before.unwrap());
            assert!(
                after <= end && end <= before,
                "{track:?} {id}: {end} not in [{after}, {before}]"
            );
            if missed_calls.contains(id) {
                // seen alive until the old connection's last frame
                assert_eq!(
                    (c.ended_at, after, before),
                    (last_frame, last_frame, listing_at)
                );
            } else {
                // began and ended unseen while disconnected
                assert_eq!(
                    (c.ended_at, after, before),
                    (listing_at, row.answered_at, listing_at)
                );
            }
        }
        assert_eq!(closed, strs(&gap["calls_ended_during_gap"]).len());
    }
}
