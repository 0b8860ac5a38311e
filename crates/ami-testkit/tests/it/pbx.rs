//! ScriptedPbx: listings checked against an independent reading of the events, and against a real
//! Asterisk's own listing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ami_proto::Message;
use ami_testkit::flow::load_events;
use ami_testkit::{PbxSession, ScriptedPbx, Session};
use chrono::DateTime;

use crate::client::fixture;

/// What a listing says about one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub linkedid: String,
    pub state: String,
    pub bridge: String,
    pub created: usize,
}

/// The expected listing after `events`, computed by scanning backwards from the end for each channel's
/// latest snapshot (the PBX itself keeps a table forwards).
pub fn oracle(events: &[Message]) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e.event() != Some("Newchannel") {
            continue;
        }
        let uid = e.get_str("Uniqueid").unwrap().to_owned();
        let hung_up = events[i..]
            .iter()
            .any(|h| h.event() == Some("Hangup") && h.get_str("Uniqueid") == Some(uid.as_str()));
        if hung_up {
            continue;
        }
        // Transfer events carry snapshots taken when the transfer began: not the latest.
        let latest = |field: &str| -> Option<String> {
            events
                .iter()
                .rev()
                .filter(|ev| !matches!(ev.event(), Some("AttendedTransfer" | "BlindTransfer")))
                .find_map(|ev| {
                    ev.headers().find_map(|h| {
                        let key = h.key_str()?;
                        let prefix = key.strip_suffix("Uniqueid")?;
                        if h.value_str()? != uid {
                            return None;
                        }
                        ev.get_str(&format!("{prefix}{field}")).map(str::to_owned)
                    })
                })
        };
        let bridge = events
            .iter()
            .rev()
            .find(|ev| {
                matches!(ev.event(), Some("BridgeEnter" | "BridgeLeave"))
                    && ev.get_str("Uniqueid") == Some(uid.as_str())
            })
            .filter(|ev| ev.event() == Some("BridgeEnter"))
            .and_then(|ev| ev.get_str("BridgeUniqueid"))
            .unwrap_or_default()
            .to_owned();
        out.insert(
            uid.clone(),
            Row {
                linkedid: latest("Linkedid").unwrap(),
                state: latest("ChannelState").unwrap(),
                bridge,
                created: i,
            },
        );
    }
    out
}

/// The PBX's `CoreShowChannels` answer, read back as rows (Duration in seconds in `created`).
fn listing(pbx: &ScriptedPbx) -> (BTreeMap<String, Row>, Vec<Message>) {
    let msgs = pbx.core_show_channels(Some("t"));
    assert_eq!(msgs[0].response(), Some("Success"));
    assert_eq!(msgs[0].get_str("EventList"), Some("start"));
    let last = msgs.last().unwrap();
    assert_eq!(last.event(), Some("CoreShowChannelsComplete"));
    assert_eq!(
        last.get_str("ListItems").unwrap(),
        (msgs.len() - 2).to_string()
    );
    let items = msgs[1..msgs.len() - 1].to_vec();
    let rows = items
        .iter()
        .map(|m| {
            assert_eq!(m.event(), Some("CoreShowChannel"));
            assert_eq!(m.action_id(), Some("t"));
            let d: Vec<usize> = m
                .get_str("Duration")
                .unwrap()
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            (
                m.get_str("Uniqueid").unwrap().to_owned(),
                Row {
                    linkedid: m.get_str("Linkedid").unwrap().to_owned(),
                    state: m.get_str("ChannelState").unwrap().to_owned(),
                    bridge: m.get_str("BridgeId").unwrap().to_owned(),
                    created: d[0] * 3600 + d[1] * 60 + d[2],
                },
            )
        })
        .collect();
    (rows, items)
}

fn all_flows() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![fixture("peer/cacofonisk")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn all_51_flows_load_as_sessions() {
    let flows = all_flows();
    assert_eq!(flows.len(), 51);
    for f in &flows {
        let events = load_events(f).unwrap();
        let s = Session::load(f).unwrap();
        // Banner + one frame per event, each a complete event, 100 ms apart.
        assert_eq!(s.frames().len(), events.len() + 1, "{}", f.display());
        assert!(s.trailing_partial().is_empty());
        let msgs = s.messages();
        assert_eq!(msgs.len(), events.len());
        for (k, ((at, m), e)) in msgs.iter().zip(&events).enumerate() {
            assert_eq!(m, e);
            assert!(m.event().is_some());
            assert_eq!(
                (*at - s.connected_at()).num_milliseconds(),
                100 * (k as i64 + 1)
            );
        }
    }
}

#[test]
fn listing_is_the_truth_after_every_event_of_every_flow() {
    let mut linkedid_changes = 0;
    for f in all_flows() {
        let events = load_events(&f).unwrap();
        // One step per event, 1 s apart, so that Duration counts events.
        let mut pbx = ScriptedPbx::new(DateTime::UNIX_EPOCH)
            .with_flow(events.clone(), Duration::from_secs(1));
        let mut seen_linked: BTreeMap<String, String> = BTreeMap::new();
        for k in 1..=events.len() {
            assert!(pbx.play_next().is_some());
            assert_eq!(pbx.cursor(), k);
            let (rows, _) = listing(&pbx);
            let mut expected = oracle(&events[..k]);
            // Duration: the channel was created at step `created + 1`, we are at step k.
            for row in expected.values_mut() {
                row.created = k - (row.created + 1);
            }
            assert_eq!(rows, expected, "{} after event {k}", f.display());
            for (uid, row) in rows {
                if let Some(old) = seen_linked.insert(uid, row.linkedid.clone()) {
                    linkedid_changes += usize::from(old != row.linkedid);
                }
            }
        }
        assert!(pbx.play_next().is_none());
    }
    // The transfer flows do move channels to another Linkedid; the check above followed them.
    assert!(linkedid_changes >= 10, "{linkedid_changes}");
}

#[test]
fn play_until_cuts_at_any_point() {
    let events = load_events(&fixture("peer/cacofonisk/xfer_attended/xfer_abacbc.json")).unwrap();
    for k in [0, 1, events.len() / 3, events.len() / 2, events.len()] {
        let mut pbx = ScriptedPbx::new(DateTime::UNIX_EPOCH)
            .with_flow(events.clone(), Duration::from_millis(100));
        assert_eq!(pbx.play_until(k), k);
        assert_eq!(pbx.drain_events().len(), k);
        let (rows, _) = listing(&pbx);
        let expected = oracle(&events[..k]);
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
    }
}

/// Playing the observer's recording into the PBX up to the moment the subject asked `CoreShowChannels`
/// must give what the real Asterisk answered.
#[test]
fn listing_matches_real_asterisk_after_the_disconnect_gap() {
    let observer = Session::load(&fixture("ami/disconnect-gap.observer")).unwrap();
    let subject = Session::load(&fixture("ami/disconnect-gap.subject-2")).unwrap();
    let recorded: Vec<Message> = subject
        .messages()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.event() == Some("CoreShowChannel"))
        .collect();
    let csc = subject
        .actions()
        .iter()
        .find(|a| a.name == "CoreShowChannels")
        .unwrap();
    let asked = subject.arrival_of(csc.response_offset.unwrap()).unwrap();

    let mut pbx = ScriptedPbx::new(observer.connected_at());
    for (at, m) in observer.messages() {
        if at > asked {
            break;
        }
        pbx.set_now(at);
        pbx.apply(&m);
    }
    pbx.set_now(asked);
    let (_, ours) = listing(&pbx);
    assert_eq!(ours.len(), recorded.len());
    assert!(recorded.len() > 40);
    let by_uid = |ms: &[Message]| -> BTreeMap<String, Message> {
        ms.iter()
            .map(|m| (m.get_str("Uniqueid").unwrap().to_owned(), m.clone()))
            .collect()
    };
    let (ours, theirs) = (by_uid(&ours), by_uid(&recorded));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (uid, real) in &theirs {
        let mine = &ours[uid];
        for key in [
            "Channel",
            "ChannelState",
            "ChannelStateDesc",
            "CallerIDNum",
            "ConnectedLineNum",
            "Context",
            "Exten",
            "Linkedid",
            "Application",
            "ApplicationData",
            "BridgeId",
        ] {
            assert_eq!(mine.get_str(key), real.get_str(key), "{uid} {key}");
        }
        let secs = |m: &Message| -> i64 {
            let d: Vec<i64> = m
                .get_str("Duration")
                .unwrap()
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            d[0] * 3600 + d[1] * 60 + d[2]
        };
        assert!(
            (secs(mine) - secs(real)).abs() <= 1,
            "{uid}: {} vs {}",
            secs(mine),
            secs(real)
        );
    }
}

#[test]
fn commands_emit_events_that_a_client_can_follow() {
    let mut pbx = ScriptedPbx::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let mut log: Vec<Message> = Vec::new();
    fn check(pbx: &mut ScriptedPbx, log: &mut Vec<Message>) -> BTreeMap<String, Row> {
        log.extend(pbx.drain_events());
        let (rows, _) = listing(pbx);
        let expected = oracle(log);
        assert_eq!(
            rows.iter()
                .map(|(u, r)| (
                    u.clone(),
                    r.linkedid.clone(),
                    r.state.clone(),
                    r.bridge.clone()
                ))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|(u, r)| (
                    u.clone(),
                    r.linkedid.clone(),
                    r.state.clone(),
                    r.bridge.clone()
                ))
                .collect::<Vec<_>>()
        );
        rows
    }
    let ab = pbx.start_call("2001", "2002");
    let rows = check(&mut pbx, &mut log);
    assert_eq!(rows.len(), 2);
    let states: Vec<_> = pbx.channels().iter().map(|c| c.state).collect();
    assert_eq!(states, [4, 5]);
    let a_linked = pbx.channels()[0].uniqueid.clone();
    assert!(rows
        .values()
        .all(|r| r.linkedid == a_linked && r.bridge.is_empty()));

    pbx.advance(Duration::from_secs(3));
    pbx.answer(ab).unwrap();
    let rows = check(&mut pbx, &mut log);
    assert!(rows
        .values()
        .all(|r| r.state == "6" && !r.bridge.is_empty()));
    assert!(pbx.answer(ab).is_err());

    pbx.advance(Duration::from_secs(10));
    let bc = pbx.start_call("2002", "2003");
    pbx.answer(bc).unwrap();
    let rows = check(&mut pbx, &mut log);
    assert_eq!(rows.len(), 4);
    let c_uid = pbx.channels()[3].uniqueid.clone();
    assert_ne!(rows[&c_uid].linkedid, a_linked);

    pbx.advance(Duration::from_secs(5));
    pbx.transfer(ab, bc).unwrap();
    let rows = check(&mut pbx, &mut log);
    assert_eq!(rows.len(), 2, "A and C remain");
    assert_eq!(rows[&c_uid].linkedid, a_linked, "C joined A's Linkedid");
    assert_eq!(rows[&c_uid].bridge, rows[&a_linked].bridge);
    assert!(
        pbx.hangup(bc, 16).is_err(),
        "the second call ended with the transfer"
    );
    // Durations on the PBX clock: A is 18 s old, C 5 s.
    let (_, items) = listing(&pbx);
    let dur = |uid: &str| {
        items
            .iter()
            .find(|m| m.get_str("Uniqueid") == Some(uid))
            .unwrap()
            .get_str("Duration")
            .unwrap()
            .to_owned()
    };
    assert_eq!(dur(&a_linked), "00:00:18");
    assert_eq!(dur(&c_uid), "00:00:05");

    pbx.hangup(ab, 16).unwrap();
    let rows = check(&mut pbx, &mut log);
    assert!(rows.is_empty());
    let hangups: Vec<_> = log.iter().filter(|m| m.event() == Some("Hangup")).collect();
    assert_eq!(hangups.len(), 4);
    assert!(hangups
        .iter()
        .all(|h| h.get_str("Cause") == Some("16")
            && h.get_str("Cause-txt") == Some("Normal Clearing")));

    // An injected event is applied and sent like the PBX's own.
    pbx.inject(Message::from_pairs([
        ("Event", "Shutdown"),
        ("Shutdown", "Cleanly"),
        ("Restart", "False"),
    ]));
    assert_eq!(pbx.drain_events()[0].event(), Some("Shutdown"));

    // A ringing call that is rejected: DialEnd with the status, then the hangups.
    let busy = pbx.start_call("2004", "2005");
    pbx.hangup(busy, 17).unwrap();
    check(&mut pbx, &mut log);
    assert!(log
        .iter()
        .any(|m| m.event() == Some("DialEnd") && m.get_str("DialStatus") == Some("BUSY")));
    assert!(pbx.channels().is_empty());
}

fn act(pairs: &[(&str, &str)]) -> Message {
    Message::from_pairs(pairs.iter().copied())
}

#[test]
fn login_plain_md5_and_permissions() {
    let mut pbx = ScriptedPbx::default().with_credentials("watchdog", "lab-secret");
    assert!(!format!("{pbx:?}").contains("lab-secret"));

    let mut s = PbxSession::default();
    let r = pbx.handle_action(
        &mut s,
        &act(&[("Action", "CoreShowChannels"), ("ActionID", "1")]),
    );
    assert_eq!(r.messages[0].get_str("Message"), Some("Permission denied"));
    assert!(!r.close);
    let r = pbx.handle_action(
        &mut s,
        &act(&[
            ("Action", "Login"),
            ("Username", "watchdog"),
            ("Secret", "nope"),
        ]),
    );
    assert_eq!(
        r.messages[0].get_str("Message"),
        Some("Authentication failed")
    );
    assert!(r.close);

    let mut s = PbxSession::default();
    let r = pbx.handle_action(
        &mut s,
        &act(&[
            ("Action", "Login"),
            ("ActionID", "L"),
            ("Username", "watchdog"),
            ("Secret", "lab-secret"),
        ]),
    );
    assert_eq!(
        r.messages[0].get_str("Message"),
        Some("Authentication accepted")
    );
    assert_eq!(r.messages[0].action_id(), Some("L"));
    assert_eq!(r.messages[1].event(), Some("FullyBooted"));
    assert!(s.logged_in);

    let mut s = PbxSession::default();
    let r = pbx.handle_action(
        &mut s,
        &act(&[("Action", "Challenge"), ("AuthType", "MD5")]),
    );
    let challenge = r.messages[0].get_str("Challenge").unwrap().to_owned();
    let key = {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(format!("{challenge}lab-secret"));
        hex::encode(h.finalize())
    };
    let r = pbx.handle_action(
        &mut s,
        &act(&[
            ("Action", "Login"),
            ("AuthType", "MD5"),
            ("Username", "watchdog"),
            ("Key", &key),
        ]),
    );
    assert_eq!(
        r.messages[0].response(),
        Some("Success"),
        "{:?}",
        r.messages
    );
    let r = pbx.handle_action(&mut s, &act(&[("Action", "Ping"), ("ActionID", "p")]));
    assert_eq!(r.messages[0].get_str("Ping"), Some("Pong"));
    let r = pbx.handle_action(&mut s, &act(&[("Action", "Originate"), ("ActionID", "o")]));
    assert_eq!(r.messages[0].response(), Some("Error"));
    let r = pbx.handle_action(&mut s, &act(&[("Action", "Status"), ("ActionID", "s")]));
    assert_eq!(r.messages.last().unwrap().event(), Some("StatusComplete"));
    let r = pbx.handle_action(&mut s, &act(&[("Action", "Logoff")]));
    assert_eq!(r.messages[0].response(), Some("Goodbye"));
    assert!(r.close);
}

fn login(pbx: &mut ScriptedPbx, session: &mut PbxSession) -> Vec<Message> {
    pbx.handle_action(
        session,
        &Message::from_pairs([("Action", "Login"), ("Username", "u"), ("Secret", "s")]),
    )
    .messages
}

fn uptime(messages: &[Message]) -> Option<&str> {
    messages
        .iter()
        .find(|m| m.event() == Some("FullyBooted"))
        .and_then(|m| m.get_str("Uptime"))
}

/// A restart says `Shutdown`, a crash says nothing; after either every channel is gone, the listing is
/// empty, and the next login's `FullyBooted` carries the new (short) uptime.
#[test]
fn restart_and_crash_wipe_the_channels_and_boot_anew() {
    for crash in [false, true] {
        let t0 = DateTime::from_timestamp(1_795_520_000, 0).unwrap();
        let mut pbx = ScriptedPbx::new(t0);
        let mut s = pbx.new_session();
        assert_eq!(uptime(&login(&mut pbx, &mut s)), Some("1486"));
        let a = pbx.start_call("5550100", "2001");
        pbx.answer(a).unwrap();
        let b = pbx.start_call("5550101", "2002");
        let done = pbx.start_call("5550102", "2003");
        pbx.hangup(done, 16).unwrap();
        pbx.drain_events();
        pbx.advance(Duration::from_secs(60));
        let ended = if crash { pbx.crash() } else { pbx.restart() };
        assert_eq!(ended, vec![a, b], "crash={crash}: the calls still up ended");
        let events = pbx.drain_events();
        let names: Vec<_> = events.iter().filter_map(|e| e.event()).collect();
        assert_eq!(names, if crash { vec![] } else { vec!["Shutdown"] });
        assert!(pbx.channels().is_empty());
        assert_eq!(pbx.booted_at(), t0 + chrono::TimeDelta::seconds(60));
        assert!(
            pbx.hangup(a, 16).is_err(),
            "an ended call cannot hang up again"
        );
        pbx.advance(Duration::from_secs(7));
        let mut s = pbx.new_session();
        assert_eq!(uptime(&login(&mut pbx, &mut s)), Some("7"));
        let listing = pbx.core_show_channels(Some("1"));
        assert_eq!(listing.len(), 2, "start and Complete only: {listing:?}");
    }
}
