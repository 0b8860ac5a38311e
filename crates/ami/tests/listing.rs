//! Issue 14 (3): only a complete `CoreShowChannels` listing syncs the map and marks channels gone.

use ami::{ChannelMap, Config, Core, Secret};
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::BytesMut;
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_520_000 + secs, 0).unwrap()
}

/// The actions the core wrote, as (name, ActionID).
fn actions(core: &mut Core) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut p = Parser::without_banner(Limits::default());
    while let Some(tx) = core.poll_transmit() {
        let mut buf = BytesMut::from(&tx[..]);
        while let Some(Ok(Frame::Message(m))) = p.next_frame(&mut buf) {
            out.push((
                m.get_str("Action").unwrap().to_string(),
                m.action_id().unwrap().to_string(),
            ));
        }
    }
    out
}

fn send(core: &mut Core, pairs: &[(&str, &str)], at: DateTime<Utc>) {
    core.handle_input(&Message::from_pairs(pairs.iter().copied()).to_bytes(), at);
}

/// A core logged in at `t(0)` whose map knew channel `old` (alive until the previous connection dropped)
/// and sees `new` created now; returns it with the ActionID of its `CoreShowChannels`.
fn logged_in(map: &ChannelMap) -> (Core, String) {
    let s = map.server("pbx");
    s.begin_session(t(-100));
    s.apply(
        &Message::from_pairs([
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/2001-00000001"),
            ("Uniqueid", "old"),
            ("Linkedid", "old"),
        ]),
        t(-90),
    );
    s.disconnected(t(-50));
    let mut cfg = Config::new("127.0.0.1", "watchdog", Secret::new("lab-secret"));
    cfg.server = "pbx".into();
    let mut core = Core::new(cfg, s, t(0));
    core.handle_input(b"Asterisk Call Manager/11.0.0\r\n", t(0));
    let login = actions(&mut core).pop().unwrap();
    send(
        &mut core,
        &[("Response", "Success"), ("ActionID", &login.1)],
        t(0),
    );
    let (name, id) = actions(&mut core).pop().unwrap();
    assert_eq!(name, "CoreShowChannels");
    (core, id)
}

fn item(id: &str, uid: &str) -> Vec<(String, String)> {
    [
        ("Event", "CoreShowChannel"),
        ("ActionID", id),
        ("Channel", "PJSIP/2002-00000002"),
        ("ChannelStateDesc", "Up"),
        ("Uniqueid", uid),
        ("Linkedid", uid),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn incomplete(map: &ChannelMap, what: &str) {
    let snap = map.snapshot("pbx");
    assert!(!snap.synced, "{what}: synced");
    assert!(snap.live.contains_key("old"), "{what}: old channel ended");
    assert!(map.take_gone().is_empty(), "{what}: channels reported gone");
}

#[test]
fn a_success_without_an_event_list_is_not_a_listing() {
    // A proxy or an old Asterisk answers CoreShowChannels with a bare Success.
    let map = ChannelMap::default();
    let (mut core, id) = logged_in(&map);
    send(
        &mut core,
        &[
            ("Response", "Success"),
            ("ActionID", &id),
            ("Message", "Channels will follow"),
        ],
        t(1),
    );
    incomplete(&map, "no EventList: start");
}

#[test]
fn a_list_items_count_that_differs_is_not_a_listing() {
    let map = ChannelMap::default();
    let (mut core, id) = logged_in(&map);
    send(
        &mut core,
        &[
            ("Response", "Success"),
            ("ActionID", &id),
            ("EventList", "start"),
        ],
        t(1),
    );
    let it = item(&id, "new");
    core.handle_input(&Message::from_pairs(it).to_bytes(), t(1));
    send(
        &mut core,
        &[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", &id),
            ("EventList", "Complete"),
            ("ListItems", "2"),
        ],
        t(2),
    );
    incomplete(&map, "ListItems 2, 1 received");
    // It lists again; a complete listing then syncs the map and ends the old channel.
    let (name, again) = actions(&mut core).pop().unwrap();
    assert_eq!(name, "CoreShowChannels");
    send(
        &mut core,
        &[
            ("Response", "Success"),
            ("ActionID", &again),
            ("EventList", "start"),
        ],
        t(3),
    );
    core.handle_input(&Message::from_pairs(item(&again, "new")).to_bytes(), t(3));
    send(
        &mut core,
        &[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", &again),
            ("EventList", "Complete"),
            ("ListItems", "1"),
        ],
        t(3),
    );
    let snap = map.snapshot("pbx");
    assert!(snap.synced);
    assert!(!snap.live.contains_key("old"));
    assert_eq!(map.take_gone().len(), 1);
}

#[test]
fn a_listing_cut_before_its_complete_event_is_not_a_listing() {
    let map = ChannelMap::default();
    let (mut core, id) = logged_in(&map);
    send(
        &mut core,
        &[
            ("Response", "Success"),
            ("ActionID", &id),
            ("EventList", "start"),
        ],
        t(1),
    );
    core.handle_input(&Message::from_pairs(item(&id, "new")).to_bytes(), t(1));
    core.handle_eof(t(1) + Duration::milliseconds(300));
    incomplete(&map, "cut");
}
