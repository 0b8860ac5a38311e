//! The sans-IO core and the channel map, driven by the real Asterisk recordings on their recorded time.
//!
//! Each subject session's bytes are fed frame by frame at the time the frame's last byte arrived (from
//! `.chunks.jsonl`). ActionIDs in the recording are rewritten to the ones the core chose, by pairing the
//! core's actions with the recorded ones of the same name (sent after the recorded `Login`). When the recorded
//! client never listed the channels, the listing the core asks for is built from `truth.json` (the channels
//! up at that moment), so every session ends synced.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use ami::{AuthMethod, ChannelEnd, ChannelMap, Config, Core, Error, MapSnapshot, Output, Secret};
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/ami")
}

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn truth(scenario: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(format!("{scenario}.truth.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One channel of truth.json.
#[derive(Debug, Clone)]
struct TruthChannel {
    uniqueid: String,
    linkedid: String,
    channel: String,
    created: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
    cause: Option<u64>,
}

fn truth_channels(t: &Value) -> Vec<TruthChannel> {
    let mut out = Vec::new();
    for call in t["calls"].as_array().unwrap() {
        for ch in call["channels"].as_array().unwrap() {
            out.push(TruthChannel {
                uniqueid: ch["uniqueid"].as_str().unwrap().to_string(),
                linkedid: ch["linkedid"].as_str().unwrap().to_string(),
                channel: ch["channel"].as_str().unwrap().to_string(),
                created: ts(&ch["created_at"]).unwrap(),
                ended: ts(&ch["ended_at"]),
                cause: ch["hangup_cause"].as_u64(),
            });
        }
    }
    out
}

fn alive_at(chans: &[TruthChannel], t: DateTime<Utc>) -> BTreeSet<String> {
    chans
        .iter()
        .filter(|c| c.created <= t && c.ended.is_none_or(|e| e > t))
        .map(|c| c.uniqueid.clone())
        .collect()
}

/// A recorded frame (or the banner, or an unfinished tail) and when its last byte arrived.
struct Piece {
    at: DateTime<Utc>,
    raw: Bytes,
    msg: Option<Message>,
}

struct Recording {
    pieces: Vec<Piece>,
    /// Recorded actions after the Login (name, ActionID), in order.
    actions: Vec<(String, String)>,
    connected: DateTime<Utc>,
    closed: DateTime<Utc>,
}

fn load(scenario: &str, label: &str) -> Recording {
    let file = |ext: &str| fixtures().join(format!("{scenario}.{label}.{ext}"));
    let bytes = std::fs::read(file("ami")).unwrap();
    let chunks = std::fs::read_to_string(file("chunks.jsonl")).unwrap();
    let mut rx: Vec<(usize, usize, f64)> = Vec::new();
    let (mut connected, mut closed) = (None, None);
    for line in chunks.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let t = v["t"].as_f64().unwrap();
        match (v["dir"].as_str(), v["what"].as_str()) {
            (Some("rx"), _) => rx.push((
                v["o"].as_u64().unwrap() as usize,
                v["n"].as_u64().unwrap() as usize,
                t,
            )),
            (Some("note"), Some("connect")) => connected = clock::from_unix_seconds(t),
            (Some("note"), Some("close")) => closed = clock::from_unix_seconds(t),
            _ => {}
        }
    }
    let arrival = |end: usize| -> DateTime<Utc> {
        let (_, _, t) = rx
            .iter()
            .find(|(o, n, _)| end > *o && end <= o + n)
            .copied()
            .unwrap();
        clock::from_unix_seconds(t).unwrap()
    };
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&bytes[..]);
    let mut pieces = Vec::new();
    let mut consumed = 0;
    while let Some(frame) = parser.next_frame(&mut buf) {
        let start = consumed;
        consumed = bytes.len() - buf.len();
        let raw = Bytes::copy_from_slice(&bytes[start..consumed]);
        let msg = match frame.unwrap() {
            Frame::Message(m) => Some(m),
            Frame::Banner(_) => None,
        };
        pieces.push(Piece {
            at: arrival(consumed),
            raw,
            msg,
        });
    }
    if consumed < bytes.len() {
        pieces.push(Piece {
            at: arrival(bytes.len()),
            raw: Bytes::copy_from_slice(&bytes[consumed..]),
            msg: None,
        });
    }
    let sent = std::fs::read(file("sent")).unwrap();
    let mut sp = Parser::without_banner(Limits::default());
    let mut sbuf = BytesMut::from(&sent[..]);
    let mut actions = Vec::new();
    let mut after_login = false;
    while let Some(Ok(Frame::Message(m))) = sp.next_frame(&mut sbuf) {
        let name = m.get_str("Action").unwrap().to_string();
        let id = m.action_id().unwrap_or("").to_string();
        if after_login || name.eq_ignore_ascii_case("Challenge") {
            actions.push((name.clone(), id));
        }
        if name.eq_ignore_ascii_case("Login") {
            actions.push((name, m.action_id().unwrap_or("").to_string()));
            after_login = true;
        }
    }
    Recording {
        pieces,
        actions,
        connected: connected.unwrap(),
        closed: closed.unwrap(),
    }
}

/// Feeds one recorded session through a [`Core`].
struct Replay {
    core: Core,
    /// Recorded ActionID → the core's.
    ids: HashMap<String, String>,
    unpaired: VecDeque<(String, String)>,
    /// Every action the core wrote.
    sent: Vec<Message>,
    outputs: Vec<(DateTime<Utc>, Output)>,
    /// Snapshots taken at each `Resynced`.
    resynced: Vec<MapSnapshot>,
    map: ChannelMap,
    server: String,
    truth: Vec<TruthChannel>,
    /// When set, Pings are queued here (send time, ActionID) for the caller to answer in the stream,
    /// instead of being answered at once.
    pings: Option<Vec<(DateTime<Utc>, String)>>,
}

impl Replay {
    fn new(cfg: Config, map: &ChannelMap, rec: &Recording, truth: &Value) -> Self {
        let server = cfg.server.clone();
        let core = Core::new(cfg, map.server(&server), rec.connected);
        Self {
            core,
            ids: HashMap::new(),
            unpaired: rec.actions.iter().cloned().collect(),
            sent: Vec::new(),
            outputs: Vec::new(),
            resynced: Vec::new(),
            map: map.clone(),
            server,
            truth: truth_channels(truth),
            pings: None,
        }
    }

    fn run(&mut self, rec: &Recording) {
        for piece in &rec.pieces {
            self.core.handle_timeout(piece.at);
            let bytes = match &piece.msg {
                Some(m) => self.rewrite(m).unwrap_or_else(|| piece.raw.clone()),
                None => piece.raw.clone(),
            };
            self.core.handle_input(&bytes, piece.at);
            self.pump(piece.at);
        }
        self.core.handle_eof(rec.closed);
        self.pump(rec.closed);
    }

    fn rewrite(&self, m: &Message) -> Option<Bytes> {
        let mapped = self.ids.get(m.action_id()?)?;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = m
            .headers()
            .map(|h| {
                let v = if h.key.eq_ignore_ascii_case(b"ActionID") {
                    mapped.as_bytes().to_vec()
                } else {
                    h.value.to_vec()
                };
                (h.key.to_vec(), v)
            })
            .collect();
        Some(Message::from_pairs(pairs).to_bytes())
    }

    fn pump(&mut self, now: DateTime<Utc>) {
        while let Some(out) = self.core.poll_transmit() {
            let mut p = Parser::without_banner(Limits::default());
            let mut buf = BytesMut::from(&out[..]);
            while let Some(Ok(Frame::Message(action))) = p.next_frame(&mut buf) {
                let name = action.get_str("Action").unwrap().to_string();
                let id = action.action_id().unwrap().to_string();
                let pos = self
                    .unpaired
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case(&name));
                match pos {
                    Some(i) => {
                        let (_, recorded) = self.unpaired.remove(i).unwrap();
                        // Actions recorded before the one we pair with were never sent by the core.
                        self.ids.insert(recorded, id.clone());
                    }
                    None if name == "CoreShowChannels" => self.synthesize_listing(&id, now),
                    None if name == "Ping" && self.pings.is_some() => {
                        if let Some(q) = self.pings.as_mut() {
                            q.push((now, id.clone()));
                        }
                    }
                    // Asterisk answers a Ping after the events it queued before it: here, at once.
                    None if name == "Ping" => self.core.handle_input(
                        &Message::from_pairs([
                            ("Response", "Success"),
                            ("ActionID", id.as_str()),
                            ("Ping", "Pong"),
                        ])
                        .to_bytes(),
                        now,
                    ),
                    None => {}
                }
                self.sent.push(action);
            }
        }
        while let Some(out) = self.core.poll_event() {
            if let Output::Resynced { .. } = out {
                self.resynced.push(self.map.snapshot(&self.server));
            }
            self.outputs.push((now, out));
        }
    }

    /// Answers a `CoreShowChannels` the recorded client never sent, from the truth at `now`.
    fn synthesize_listing(&mut self, id: &str, now: DateTime<Utc>) {
        let live = alive_at(&self.truth, now);
        let mut wire = BytesMut::new();
        Message::from_pairs([
            ("Response", "Success"),
            ("ActionID", id),
            ("EventList", "start"),
            ("Message", "Channels will follow"),
        ])
        .encode_into(&mut wire);
        for c in self.truth.iter().filter(|c| live.contains(&c.uniqueid)) {
            Message::from_pairs([
                ("Event", "CoreShowChannel"),
                ("ActionID", id),
                ("Channel", c.channel.as_str()),
                ("ChannelStateDesc", "Up"),
                ("Uniqueid", c.uniqueid.as_str()),
                ("Linkedid", c.linkedid.as_str()),
            ])
            .encode_into(&mut wire);
        }
        let n = live.len().to_string();
        Message::from_pairs([
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", id),
            ("EventList", "Complete"),
            ("ListItems", n.as_str()),
        ])
        .encode_into(&mut wire);
        self.core.handle_input(&wire, now);
    }

    fn closed_error(&self) -> Option<&Error> {
        self.outputs.iter().find_map(|(_, o)| match o {
            Output::Closed(e) => Some(e),
            _ => None,
        })
    }

    fn logged_in(&self) -> bool {
        self.outputs
            .iter()
            .any(|(_, o)| matches!(o, Output::LoggedIn { .. }))
    }
}

fn config(auth: AuthMethod, secret: &str) -> Config {
    let mut cfg = Config::new("127.0.0.1", "watchdog", Secret::new(secret));
    cfg.server = "lab".into();
    cfg.auth = auth;
    // The recorded server never answered pings: the replay answers them in the stream, at once.
    cfg.ping_interval = Duration::from_secs(10);
    cfg.login_timeout = Duration::from_secs(3600);
    cfg.list_timeout = Duration::from_secs(3600);
    cfg
}

fn replay(scenario: &str, label: &str, map: &ChannelMap, cfg: Config) -> Replay {
    let t = truth(scenario);
    let rec = load(scenario, label);
    let mut r = Replay::new(cfg, map, &rec, &t);
    r.run(&rec);
    r
}

fn sent_header(r: &Replay, action: &str, key: &str) -> Option<String> {
    r.sent
        .iter()
        .find(|m| m.get_str("Action") == Some(action))
        .and_then(|m| m.get_str(key))
        .map(str::to_string)
}

#[test]
fn plain_login_lists_and_tracks_a_whole_session() {
    let map = ChannelMap::default();
    let r = replay(
        "basic",
        "subject-1",
        &map,
        config(AuthMethod::Plain, "lab-secret"),
    );
    assert_eq!(
        sent_header(&r, "Login", "Username").as_deref(),
        Some("watchdog")
    );
    assert_eq!(
        sent_header(&r, "Login", "Secret").as_deref(),
        Some("lab-secret")
    );
    assert_eq!(sent_header(&r, "Login", "Events").as_deref(), Some("on"));
    assert!(r.logged_in());
    assert_eq!(r.resynced.len(), 1, "one listing after login");
    assert!(r.resynced[0].synced);
    // Every call ended while connected: each channel's Hangup was seen, with its cause.
    let t = truth("basic");
    let chans = truth_channels(&t);
    let snap = map.snapshot("lab");
    assert!(snap.live.is_empty(), "{:?}", snap.live.keys());
    assert_eq!(snap.ended.len(), chans.len());
    for c in &chans {
        let ended = &snap.ended[&c.uniqueid];
        let ChannelEnd::HangupSeen { at, cause, .. } = &ended.end else {
            panic!("{} ended by {:?}", c.uniqueid, ended.end)
        };
        assert_eq!(cause.map(u64::from), c.cause, "{}", c.uniqueid);
        let skew = (*at - c.ended.unwrap()).num_milliseconds().abs();
        assert!(
            skew < 100,
            "{}: hangup at {at}, truth {:?}",
            c.uniqueid,
            c.ended
        );
        assert_eq!(ended.channel, c.channel);
        assert_eq!(ended.linkedids_ever, vec![c.linkedid.clone()]);
    }
    let gone = map.take_gone();
    assert_eq!(gone.len(), chans.len());
    assert!(!map.snapshot("lab").connected);
}

#[test]
fn md5_login_key_matches_the_recorded_one() {
    let map = ChannelMap::default();
    let r = replay(
        "login-md5",
        "subject-1",
        &map,
        config(AuthMethod::Md5, "lab-secret"),
    );
    let rec = std::fs::read_to_string(fixtures().join("login-md5.subject-1.sent")).unwrap();
    let recorded_key = rec
        .lines()
        .find_map(|l| l.strip_prefix("Key: "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(sent_header(&r, "Login", "Key"), Some(recorded_key));
    assert_eq!(sent_header(&r, "Login", "AuthType").as_deref(), Some("MD5"));
    assert_eq!(
        sent_header(&r, "Login", "Secret"),
        None,
        "MD5 login never sends the secret"
    );
    assert!(r.logged_in());
    assert_eq!(r.resynced.len(), 1);
}

#[test]
fn failed_logins_are_auth_errors_not_network_errors() {
    for (label, auth, secret) in [
        ("subject-1", AuthMethod::Plain, "wrong-secret"),
        ("subject-2", AuthMethod::Md5, "wrong-secret"),
        ("subject-3", AuthMethod::Plain, "lab-secret"),
    ] {
        let map = ChannelMap::default();
        let r = replay("login-fail", label, &map, config(auth, secret));
        assert!(!r.logged_in(), "{label}");
        let err = r.closed_error().unwrap();
        assert!(err.is_auth(), "{label}: {err:?}");
        assert!(!err.is_retryable());
        assert!(!format!("{err} {err:?}").contains(secret), "{label}");
        let closes = r
            .outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::Closed(_)))
            .count();
        assert_eq!(closes, 1, "{label}: exactly one Closed");
        assert!(!map.snapshot("lab").synced);
    }
    // An action refused before login (Permission denied) does not stop a later good login.
    let map = ChannelMap::default();
    let r = replay(
        "login-fail",
        "subject-4",
        &map,
        config(AuthMethod::Plain, "lab-secret"),
    );
    assert!(r.logged_in());
    assert_eq!(r.resynced.len(), 1);
}

/// Every subject session of every scenario: the map never reports a live channel gone, Hangup times and
/// causes match the truth, and where events were on, the map equals the truth's live set at the end.
#[test]
fn every_recording_keeps_the_map_honest() {
    for scenario in [
        "basic",
        "disconnect-gap",
        "login-md5",
        "events-off",
        "filter",
        "ping",
        "command-output",
        "login-fail",
    ] {
        let t = truth(scenario);
        let chans = truth_channels(&t);
        let by_id: HashMap<&str, &TruthChannel> =
            chans.iter().map(|c| (c.uniqueid.as_str(), c)).collect();
        let map = ChannelMap::default();
        for s in t["subject_connections"].as_array().unwrap() {
            let label = s["label"].as_str().unwrap();
            let auth = if s["login"] == "md5" {
                AuthMethod::Md5
            } else {
                AuthMethod::Plain
            };
            let secret = if scenario == "login-fail" && label != "subject-4" {
                "wrong"
            } else {
                "lab-secret"
            };
            let r = replay(scenario, label, &map, config(auth, secret));
            for gone in map.take_gone() {
                let c = by_id[gone.uniqueid.as_str()];
                let ended = c.ended.unwrap_or_else(|| {
                    panic!("{scenario}/{label}: live {} reported gone", c.uniqueid)
                });
                assert!(
                    ended <= gone.end.latest() + chrono::Duration::milliseconds(100),
                    "{scenario}/{label}: {} ended {ended}, reported {:?}",
                    c.uniqueid,
                    gone.end
                );
                if let ChannelEnd::HangupSeen { cause, .. } = gone.end {
                    assert_eq!(cause.map(u64::from), c.cause);
                }
                assert_eq!(gone.linkedid, c.linkedid);
            }
            if r.logged_in() && !matches!(scenario, "events-off" | "filter") {
                let end = load(scenario, label).pieces.last().unwrap().at;
                let live: BTreeSet<String> = map.snapshot("lab").live.keys().cloned().collect();
                assert_eq!(live, alive_at(&chans, end), "{scenario}/{label}");
            }
        }
    }
}

#[test]
fn disconnect_gap_resync_matches_truth() {
    let t = truth("disconnect-gap");
    let gap = &t["reconnects"][0];
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let map = ChannelMap::default();
    let first = replay(
        "disconnect-gap",
        "subject-1",
        &map,
        config(AuthMethod::Plain, "lab-secret"),
    );
    assert_eq!(first.resynced.len(), 1);
    let s1 = &t["subject_connections"][0];
    let snap = map.snapshot("lab");
    assert!(!snap.synced && !snap.connected);
    let live: BTreeSet<String> = snap.live.keys().cloned().collect();
    assert_eq!(live, set(&s1["known_live_when_disconnected"]));
    let epoch1 = snap.epoch;

    let second = replay(
        "disconnect-gap",
        "subject-2",
        &map,
        config(AuthMethod::Plain, "lab-secret"),
    );
    assert_eq!(
        second.resynced.len(),
        1,
        "the recorded CoreShowChannels completed our listing"
    );
    let at_resync = &second.resynced[0];
    assert!(at_resync.synced);
    assert_eq!(at_resync.epoch, epoch1 + 1);
    let live: BTreeSet<String> = at_resync.live.keys().cloned().collect();
    assert_eq!(live, set(&gap["live_at_reconnect"]));
    let last_frame = ts(&gap["last_frame_received_at"]).unwrap();
    let gap_end = ts(&gap["gap_end"]).unwrap();
    let ended_at: HashMap<String, DateTime<Utc>> = truth_channels(&t)
        .into_iter()
        .filter_map(|c| Some((c.uniqueid, c.ended?)))
        .collect();
    let mut gone = BTreeSet::new();
    for (uid, ended) in &at_resync.ended {
        if let ChannelEnd::Gone { after, before } = &ended.end {
            gone.insert(uid.clone());
            let after = after.unwrap();
            // Known alive through the send time of the last answered Ping (events carry no Timestamp):
            // never after the true end, and no more than a busy-ping interval before the last frame.
            assert!(after <= ended_at[uid], "{uid}: after {after}");
            assert!(
                last_frame - after <= chrono::Duration::milliseconds(1100),
                "{uid}: after {after}, last frame {last_frame}"
            );
            assert!(*before >= gap_end, "{uid}: before {before}");
        }
    }
    assert_eq!(gone, set(&gap["missed_hangups"]));
    // Channels that stayed up are known alive through the last answered Ping of the old connection.
    for uid in set(&gap["known_and_still_live"]) {
        assert!(
            last_frame - at_resync.live[&uid].last_known_alive
                <= chrono::Duration::milliseconds(1100)
        );
    }
}

/// The disconnect-gap session cut at many offsets (inside messages included): exactly one `Closed`, the
/// map ends unsynced, nothing is reported gone without a Hangup, and the next session resyncs it.
#[test]
fn a_recording_cut_anywhere_then_reconnected() {
    let t = truth("disconnect-gap");
    let rec = load("disconnect-gap", "subject-1");
    let total: usize = rec.pieces.iter().map(|p| p.raw.len()).sum();
    for k in 1..40 {
        let cut = total * k / 40 + k * 13;
        let map = ChannelMap::default();
        let mut r = Replay::new(config(AuthMethod::Plain, "lab-secret"), &map, &rec, &t);
        let mut fed = 0;
        let mut last = rec.connected;
        for piece in &rec.pieces {
            if fed >= cut {
                break;
            }
            let take = piece.raw.len().min(cut - fed);
            let bytes = match (&piece.msg, take == piece.raw.len()) {
                (Some(m), true) => r.rewrite(m).unwrap_or_else(|| piece.raw.clone()),
                _ => piece.raw.slice(..take),
            };
            r.core.handle_input(&bytes, piece.at);
            r.pump(piece.at);
            fed += take;
            last = piece.at;
        }
        r.core.handle_eof(last);
        r.pump(last);
        let closes = r
            .outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::Closed(_)))
            .count();
        assert_eq!(closes, 1, "cut at {cut}");
        let snap = map.snapshot("lab");
        assert!(!snap.synced && !snap.connected, "cut at {cut}");
        for gone in map.take_gone() {
            assert!(
                matches!(gone.end, ChannelEnd::HangupSeen { .. }),
                "cut at {cut}: {gone:?}"
            );
        }
        // Reconnect: the recorded second session lists the channels and the map is synced and right.
        let second = replay(
            "disconnect-gap",
            "subject-2",
            &map,
            config(AuthMethod::Plain, "lab-secret"),
        );
        assert_eq!(second.resynced.len(), 1, "cut at {cut}");
        let live: BTreeSet<String> = second.resynced[0].live.keys().cloned().collect();
        let expected: BTreeSet<String> = t["reconnects"][0]["live_at_reconnect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(live, expected, "cut at {cut}");
    }
}

/// A `Response: Success` to a Ping.
fn pong(id: &str) -> Bytes {
    Message::from_pairs([("Response", "Success"), ("ActionID", id), ("Ping", "Pong")]).to_bytes()
}

/// Plays `rec` through a reader that falls behind (a throttled link, a slow consumer): frames generated
/// before `slow_from` are read when they were recorded; from then on the link carries `rate` bytes per
/// second, so frames queue up and are read later than Asterisk generated them (the recorded arrival
/// time). A Ping is answered in the stream after every frame generated before it was sent, as Asterisk
/// does. `stamp` adds each event's generation time as its `Timestamp:` header (`timestampevents = yes`).
/// The connection ends at `cut` or earlier on the core's own ping deadline; returns that time.
fn play_behind(
    r: &mut Replay,
    rec: &Recording,
    slow_from: DateTime<Utc>,
    rate: f64,
    cut: DateTime<Utc>,
    stamp: bool,
) -> DateTime<Utc> {
    r.pings = Some(Vec::new());
    let mut clock = rec.connected;
    let mut next = 0;
    loop {
        // The next thing Asterisk wrote: a queued Pong, or the next recorded frame if generated earlier.
        let queued = r.pings.as_ref().and_then(|q| q.first().cloned());
        let piece = rec.pieces.get(next);
        let (generated, len, is_pong) = match (&queued, piece) {
            (Some((at, _)), p) if p.is_none_or(|p| *at <= p.at) => (*at, pong("x").len(), true),
            (_, Some(p)) => (p.at, p.raw.len(), false),
            (None, None) => break,
            _ => unreachable!(),
        };
        let ready = generated.max(clock);
        let read_at = if generated < slow_from {
            ready
        } else {
            ready + chrono::Duration::microseconds((len as f64 / rate * 1e6) as i64)
        };
        // Timers due first (a Ping sent now goes into the stream before what is read later).
        if let Some(due) = r.core.next_deadline().filter(|d| *d <= read_at.min(cut)) {
            r.core.handle_timeout(due);
            r.pump(due);
            clock = clock.max(due);
            if r.core.is_closed() {
                return due;
            }
            continue;
        }
        if read_at > cut {
            break;
        }
        let bytes = if is_pong {
            let (_, id) = r.pings.as_mut().unwrap().remove(0);
            pong(&id)
        } else {
            let p = &rec.pieces[next];
            next += 1;
            match &p.msg {
                Some(m) if stamp && m.event().is_some() => {
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = m
                        .headers()
                        .map(|h| (h.key.to_vec(), h.value.to_vec()))
                        .collect();
                    let ts = format!("{:.6}", p.at.timestamp_micros() as f64 / 1e6);
                    pairs.insert(1, (b"Timestamp".to_vec(), ts.into_bytes()));
                    let m = Message::from_pairs(pairs);
                    r.rewrite(&m).unwrap_or_else(|| m.to_bytes())
                }
                Some(m) => r.rewrite(m).unwrap_or_else(|| p.raw.clone()),
                None => p.raw.clone(),
            }
        };
        r.core.handle_input(&bytes, read_at);
        r.pump(read_at);
        clock = read_at;
        if r.core.is_closed() {
            return read_at;
        }
    }
    r.core.handle_eof(cut);
    r.pump(cut);
    cut
}

/// A session that logs in at `at` and lists the channels up then (from the truth), for a reconnect.
fn reconnect_at(scenario: &str, map: &ChannelMap, at: DateTime<Utc>) -> Replay {
    let t = truth(scenario);
    let banner = Bytes::from_static(b"Asterisk Call Manager/11.0.0\r\n");
    let login = Message::from_pairs([
        ("Response", "Success"),
        ("ActionID", "rec-login"),
        ("Message", "Authentication accepted"),
    ]);
    let rec = Recording {
        pieces: vec![
            Piece {
                at,
                raw: banner,
                msg: None,
            },
            Piece {
                at,
                raw: login.to_bytes(),
                msg: Some(login),
            },
        ],
        actions: vec![("Login".into(), "rec-login".into())],
        connected: at,
        closed: at + chrono::Duration::seconds(1),
    };
    let mut r = Replay::new(config(AuthMethod::Plain, "lab-secret"), map, &rec, &t);
    r.run(&rec);
    r
}

/// How far each reported end's bounds miss the true end (0 when they contain it), in milliseconds, and
/// the largest such miss.
fn bound_misses(ends: &[(String, ChannelEnd)], truth: &[TruthChannel]) -> (Vec<String>, i64) {
    let by_id: HashMap<&str, &TruthChannel> =
        truth.iter().map(|c| (c.uniqueid.as_str(), c)).collect();
    let mut worst = 0;
    let mut lines = Vec::new();
    for (uid, end) in ends {
        let Some(ended) = by_id.get(uid.as_str()).and_then(|c| c.ended) else {
            lines.push(format!("{uid}: live channel reported ended: {end:?}"));
            worst = i64::MAX;
            continue;
        };
        let (lo, hi) = match end {
            ChannelEnd::Gone { after, before } => (after.unwrap_or(*before), *before),
            ChannelEnd::Restart { at, after, .. } => (after.unwrap_or(*at), end.latest()),
            // a Hangup stamped by Asterisk is exact (the recording's clock: within 100 ms)
            ChannelEnd::HangupSeen {
                at, after: None, ..
            } => (
                *at - chrono::Duration::milliseconds(100),
                *at + chrono::Duration::milliseconds(100),
            ),
            ChannelEnd::HangupSeen {
                at, after, before, ..
            } => (after.unwrap_or(*at), before.unwrap_or(*at)),
            other => panic!("{other:?}"),
        };
        let miss = (lo - ended).max(ended - hi).num_milliseconds().max(0);
        if miss > 0 {
            lines.push(format!(
                "{uid}: ended {ended}, bounds [{lo}, {hi}]: {miss} ms off"
            ));
        }
        worst = worst.max(miss);
    }
    (lines, worst)
}

/// Issue 14 (1): a reader that falls seconds behind Asterisk, then loses the link. Every end the map
/// reports — Hangups read late, channels gone at the resync — has bounds that contain the true end, with
/// and without `Timestamp:` headers. The observer's recorded stream of the disconnect-gap scenario (every
/// event of the whole scenario) is read through a 3 KB/s link from 12:09:45, so the Hangups of
/// 12:09:47–12:10:00 are read late or never; the reconnect lists the channels up 5 s after the cut.
#[test]
fn a_reader_behind_asterisk_reports_bounds_that_contain_the_true_end() {
    let t = truth("disconnect-gap");
    let chans = truth_channels(&t);
    let rec = load("disconnect-gap", "observer");
    let slow_from = ts(&serde_json::json!("2026-11-24T12:09:45Z")).unwrap();
    let cut = ts(&serde_json::json!("2026-11-24T12:10:05Z")).unwrap();
    for stamp in [false, true] {
        let map = ChannelMap::default();
        let mut r = Replay::new(config(AuthMethod::Plain, "lab-secret"), &map, &rec, &t);
        let dropped = play_behind(&mut r, &rec, slow_from, 3000.0, cut, stamp);
        let read_behind: Vec<(String, ChannelEnd)> = map
            .take_gone()
            .into_iter()
            .map(|g| (g.uniqueid, g.end))
            .collect();
        let again = reconnect_at(
            "disconnect-gap",
            &map,
            dropped + chrono::Duration::seconds(5),
        );
        assert_eq!(again.resynced.len(), 1);
        let at_resync: Vec<(String, ChannelEnd)> = map
            .take_gone()
            .into_iter()
            .map(|g| (g.uniqueid, g.end))
            .collect();
        let gone = at_resync
            .iter()
            .filter(|(_, e)| matches!(e, ChannelEnd::Gone { .. }))
            .count();
        let all: Vec<(String, ChannelEnd)> = read_behind.iter().cloned().chain(at_resync).collect();
        let (misses, worst) = bound_misses(&all, &chans);
        eprintln!(
            "timestamps {stamp}: link dropped at {dropped}; {} Hangups read, {gone} channels gone at the \
             resync; largest bound miss {worst} ms",
            read_behind.len()
        );
        assert!(
            gone > 0 && !read_behind.is_empty(),
            "the backlog must hide some Hangups"
        );
        assert!(
            misses.is_empty(),
            "timestamps {stamp}:\n{}",
            misses.join("\n")
        );
    }
}
