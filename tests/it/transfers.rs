//! Transfers and Linkedid changes, over the 51 flows in `fixtures/peer/cacofonisk/` (real Asterisk event
//! lists recorded by the cacofonisk project: transfers, queues, pickups, call groups, originates).
//!
//! Every expectation comes from [`Oracle`], a small model built from the flow alone: which channels exist
//! after each event (a `Newchannel` creates one, its `Hangup` ends it), which Linkedids each one has carried
//! (any channel snapshot in any event, whatever its key prefix), its current Linkedid (its own latest event)
//! and when it ended. The code under test never feeds the oracle.
//!
//! - [`every_flow_through_the_core`]: each flow through the real sans-IO connection core, logged in to a
//!   scripted PBX: every event comes out unchanged (unknown ones included), the map matches the oracle after
//!   every event and ends empty, and the rows of every call close at exactly the right event.
//! - [`disconnect_at_every_point`]: for every flow, every cut `k` and a few gap lengths `m`, the link drops
//!   after `k` events, the flow goes on unseen to `k + m`, callwatch reconnects and resyncs from the scripted
//!   PBX's listing, and then follows the rest live.
//!
//! The rows are in-memory [`OpenRow`]s decided through `server_view` + `decide`, the same conversion the
//! daemon and `callwatch replay` use; the store's SQL is tested elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ami::channels::{ChannelMap, MapOptions, ServerChannels};
use ami::{Config, Core, Output, Secret};
use ami_proto::{Frame, Limits, Message, Parser};
use ami_testkit::{flow, ScriptedPbx, Session};
use bytes::BytesMut;
use callwatch::pipeline::view::{server_view, ServerMemory};
use chrono::{DateTime, TimeDelta, Utc};
use reconciler::{decide, Close, Decision, OpenRow, Policy, Reason};

/// Events are this far apart on the virtual clock (the flows carry no times).
const SPACING_MS: i64 = 100;
/// Gap lengths tried at every cut.
const GAPS: [usize; 4] = [1, 3, 10, 40];

fn t0() -> DateTime<Utc> {
    ScriptedPbx::default().now()
}

/// When event `i` (from 0) happens: the scripted PBX's schedule, `t0 + (i + 1) × spacing`.
fn at(i: usize) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(SPACING_MS * (i as i64 + 1))
}

/// Halfway between event `i - 1` and event `i` (`i = 0`: halfway between `t0` and event 0).
fn between(i: usize) -> DateTime<Utc> {
    at(i) - TimeDelta::milliseconds(SPACING_MS / 2)
}

/// The application and callwatch share one virtual clock here, so no clock-skew allowance is needed: a
/// row answered before a listing is judged by it. (With the default 5 s allowance, a call answered and
/// ended in the last 5 s of a gap waits for the next listing.)
fn policy() -> Policy {
    Policy {
        skew: TimeDelta::zero(),
        ..Policy::default()
    }
}

struct Flow {
    name: String,
    events: Vec<Message>,
}

fn flows() -> Vec<Flow> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/peer/cacofonisk");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    let flows: Vec<Flow> = paths
        .iter()
        .map(|p| Flow {
            name: p
                .strip_prefix(&root)
                .unwrap()
                .with_extension("")
                .to_string_lossy()
                .into_owned(),
            events: flow::load_events(p).unwrap(),
        })
        .collect();
    assert_eq!(flows.len(), 51, "the cacofonisk fixtures are 51 flows");
    flows
}

// ---------------------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------------------

/// One channel as the flow tells it.
#[derive(Debug, Clone, Default)]
struct Chan {
    /// Its name (the `Newchannel`'s `Channel`).
    name: String,
    /// Index of its `Newchannel`.
    created: usize,
    /// Index of its `Hangup` (`None`: still up at the end of the flow).
    ended: Option<usize>,
    /// Every Linkedid any snapshot of it showed while it lived, with the event index.
    carried: Vec<(usize, String)>,
    /// Its own Linkedid (the `Linkedid` of events whose `Uniqueid` is this channel) after each of its events.
    own: Vec<(usize, String)>,
}

impl Chan {
    /// Its own Linkedid after `j` events (it must exist then).
    fn linkedid_after(&self, j: usize) -> &str {
        self.own
            .iter()
            .rev()
            .find(|(i, _)| *i < j)
            .map(|(_, l)| l.as_str())
            .unwrap_or_default()
    }

    fn alive_after(&self, j: usize) -> bool {
        self.created < j && self.ended.is_none_or(|e| e >= j)
    }
}

/// A call: the first channel that carried a Linkedid.
#[derive(Debug, Clone)]
struct Call {
    linkedid: String,
    uniqueid: String,
    /// Index of the first channel's `Newchannel`: the row is answered then.
    created: usize,
}

/// What the flow says, computed from the events alone.
struct Oracle {
    chans: BTreeMap<String, Chan>,
    calls: Vec<Call>,
}

impl Oracle {
    fn new(events: &[Message]) -> Self {
        let mut chans: BTreeMap<String, Chan> = BTreeMap::new();
        let mut calls: Vec<Call> = Vec::new();
        let mut alive: HashMap<String, ()> = HashMap::new();
        for (i, ev) in events.iter().enumerate() {
            let name = ev.event().unwrap_or_default();
            if name == "Newchannel" {
                let uid = ev.get_str("Uniqueid").unwrap_or_default().to_owned();
                if !uid.is_empty() && !chans.contains_key(&uid) {
                    let lid = ev.get_str("Linkedid").unwrap_or(&uid).to_owned();
                    if !calls.iter().any(|c| c.linkedid == lid) {
                        calls.push(Call {
                            linkedid: lid.clone(),
                            uniqueid: uid.clone(),
                            created: i,
                        });
                    }
                    chans.insert(
                        uid.clone(),
                        Chan {
                            name: ev.get_str("Channel").unwrap_or_default().to_owned(),
                            created: i,
                            ..Chan::default()
                        },
                    );
                    alive.insert(uid, ());
                }
            }
            // Every channel snapshot in the event: `Uniqueid` + `Linkedid`, `DestUniqueid` + `DestLinkedid`, …
            for h in ev.headers() {
                let Some(key) = h.key_str() else { continue };
                let Some(prefix) = key.strip_suffix("Uniqueid") else {
                    continue;
                };
                let uid = h.value_str().unwrap_or_default();
                if !alive.contains_key(uid) {
                    continue;
                }
                let Some(lid) = ev.get_str(&format!("{prefix}Linkedid")) else {
                    continue;
                };
                if lid.is_empty() {
                    continue;
                }
                let c = chans.get_mut(uid).unwrap();
                c.carried.push((i, lid.to_owned()));
                if prefix.is_empty() {
                    c.own.push((i, lid.to_owned()));
                }
            }
            if name == "Hangup" {
                let uid = ev.get_str("Uniqueid").unwrap_or_default();
                if alive.remove(uid).is_some() {
                    chans.get_mut(uid).unwrap().ended = Some(i);
                }
            }
        }
        Oracle { chans, calls }
    }

    /// The channels up after `j` events, with their own current Linkedid.
    fn live_after(&self, j: usize) -> BTreeMap<&str, &str> {
        self.chans
            .iter()
            .filter(|(_, c)| c.alive_after(j))
            .map(|(u, c)| (u.as_str(), c.linkedid_after(j)))
            .collect()
    }

    /// The Linkedids channel `uid` carried in its own events before `j`, oldest first, each once.
    fn own_history(&self, uid: &str, j: usize) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (i, l) in &self.chans[uid].own {
            if *i < j && !out.contains(&l.as_str()) {
                out.push(l);
            }
        }
        out
    }

    /// How a Linkedid group ends as callwatch can know it: the channels that carried `linkedid` in an
    /// event callwatch saw (`seen(i)`), or in the listing taken after `listing` events, and the last
    /// `Hangup` among them.
    fn group_end(
        &self,
        linkedid: &str,
        seen: impl Fn(usize) -> bool,
        listing: Option<usize>,
    ) -> End {
        let mut end = End::NoChannel;
        for c in self.chans.values() {
            let carried = c.carried.iter().any(|(i, l)| l == linkedid && seen(*i))
                || listing.is_some_and(|j| c.alive_after(j) && c.linkedid_after(j) == linkedid);
            if carried {
                end = match (end, c.ended) {
                    (End::NoChannel, Some(e)) => End::At(e),
                    (End::At(a), Some(b)) => End::At(a.max(b)),
                    _ => End::Never,
                };
            }
        }
        end
    }
}

/// When a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At this event's `Hangup`.
    At(usize),
    /// Not within the flow.
    Never,
    /// No channel is known to have carried it.
    NoChannel,
}

impl End {
    /// The end of a call that lasts while either of two things is up.
    fn or(self, other: End) -> End {
        match (self, other) {
            (End::NoChannel, x) | (x, End::NoChannel) => x,
            (End::At(a), End::At(b)) => End::At(a.max(b)),
            _ => End::Never,
        }
    }

    fn at(self) -> Option<usize> {
        match self {
            End::At(e) => Some(e),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------------------

/// The three shapes of a call's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Only the first channel's Uniqueid.
    Uniqueid,
    /// Only the Linkedid.
    Linkedid,
    /// Both (the Uniqueid decides).
    Both,
    /// The Linkedid and the first channel's name, as applications usually fill the `channel` column.
    LinkedidChannel,
}

#[derive(Debug, Clone)]
struct RowSpec {
    call: usize,
    shape: Shape,
    row: OpenRow,
}

fn rows_of(oracle: &Oracle) -> Vec<RowSpec> {
    let mut out = Vec::new();
    for (ci, call) in oracle.calls.iter().enumerate() {
        for shape in [
            Shape::Uniqueid,
            Shape::Linkedid,
            Shape::Both,
            Shape::LinkedidChannel,
        ] {
            let (uniqueid, linkedid) = match shape {
                Shape::Uniqueid => (Some(call.uniqueid.clone()), None),
                Shape::Linkedid | Shape::LinkedidChannel => (None, Some(call.linkedid.clone())),
                Shape::Both => (Some(call.uniqueid.clone()), Some(call.linkedid.clone())),
            };
            let channel = (shape == Shape::LinkedidChannel)
                .then(|| oracle.chans[&call.uniqueid].name.clone());
            out.push(RowSpec {
                call: ci,
                shape,
                row: OpenRow {
                    key: format!("{}/{shape:?}", call.linkedid),
                    uniqueid,
                    linkedid,
                    channel,
                    extension: None,
                    answered_at: at(call.created),
                    talk_seconds: None,
                },
            });
        }
    }
    out
}

/// The event at which a row's call ends as callwatch can know it: its channel's `Hangup`, or for a
/// Linkedid row the last `Hangup` among the channels seen carrying the Linkedid. A row with both ids whose
/// channel callwatch never saw (created and ended while it was away) follows its Linkedid, as the
/// reconciler's matching rule says.
fn row_end(
    oracle: &Oracle,
    spec: &RowSpec,
    seen: impl Fn(usize) -> bool,
    listing: Option<usize>,
) -> End {
    let call = &oracle.calls[spec.call];
    let chan = &oracle.chans[&call.uniqueid];
    let known = seen(chan.created) || listing.is_some_and(|j| chan.alive_after(j));
    let own = chan.ended.map_or(End::Never, End::At);
    match spec.shape {
        Shape::Both if !known => oracle.group_end(&call.linkedid, seen, listing),
        Shape::Uniqueid | Shape::Both => own,
        Shape::Linkedid => oracle.group_end(&call.linkedid, seen, listing),
        // The named channel (when callwatch knows it) and the group: the call lasts while either is up.
        Shape::LinkedidChannel if known => oracle.group_end(&call.linkedid, seen, listing).or(own),
        Shape::LinkedidChannel => oracle.group_end(&call.linkedid, seen, listing),
    }
}

/// The documented unobservable case, from the flow alone: the row follows its Linkedid alone (no Uniqueid
/// callwatch knows, and no channel of its name up after the gap), no channel callwatch saw carrying the
/// Linkedid is up after the gap, yet a channel that is up then was created during the gap and carried the
/// Linkedid only then: it was listed with its new one. Returns that channel.
fn unobservable_witness<'o>(
    oracle: &'o Oracle,
    spec: &RowSpec,
    k: usize,
    j: usize,
) -> Option<&'o str> {
    let call = &oracle.calls[spec.call];
    let first = &oracle.chans[&call.uniqueid];
    let first_known = first.created < k || first.alive_after(j);
    let alone = match spec.shape {
        Shape::Linkedid => true,
        Shape::LinkedidChannel => !first.alive_after(j),
        Shape::Both => !first_known,
        Shape::Uniqueid => false,
    };
    let seen = |i: usize| i < k || i >= j;
    let group_gone = matches!(
        oracle.group_end(&call.linkedid, seen, Some(j)),
        End::At(e) if e < j
    ) || oracle.group_end(&call.linkedid, seen, Some(j)) == End::NoChannel;
    if !alone || !group_gone {
        return None;
    }
    oracle.chans.iter().find_map(|(uid, c)| {
        let carried_in_gap = c
            .carried
            .iter()
            .any(|(i, l)| *l == call.linkedid && (k..j).contains(i));
        (c.alive_after(j)
            && (k..j).contains(&c.created)
            && carried_in_gap
            && c.linkedid_after(j) != call.linkedid)
            .then_some(uid.as_str())
    })
}

/// Decides the open rows against a snapshot of the map, as the daemon does.
fn judge(map: &ServerChannels, rows: &[OpenRow], now: DateTime<Utc>) -> Vec<Decision> {
    let view = server_view(&map.snapshot(), &ServerMemory::default());
    decide(rows, &view, &policy(), now)
}

/// The open rows of one run, with what is expected of each.
struct Ledger<'a> {
    specs: &'a [RowSpec],
    /// Indices into `specs` of the open rows, and the rows themselves (same order).
    open: Vec<usize>,
    rows: Vec<OpenRow>,
}

impl<'a> Ledger<'a> {
    fn new(specs: &'a [RowSpec]) -> Self {
        Self {
            specs,
            open: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn open(&mut self, i: usize) {
        self.open.push(i);
        self.rows.push(self.specs[i].row.clone());
    }

    /// Decides and removes the closed rows; returns `(spec index, close)` for each.
    fn sweep(&mut self, map: &ServerChannels, now: DateTime<Utc>) -> Vec<(usize, Close)> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        let decisions = judge(map, &self.rows, now);
        let mut closed = Vec::new();
        let mut keep = Vec::with_capacity(self.open.len());
        for (pos, d) in decisions.into_iter().enumerate() {
            match d {
                Decision::Close(c) => closed.push((self.open[pos], c)),
                _ => keep.push(pos),
            }
        }
        if !closed.is_empty() {
            self.rows = keep.iter().map(|&p| self.rows[p].clone()).collect();
            self.open = keep.iter().map(|&p| self.open[p]).collect();
        }
        closed
    }
}

/// True when the close says the call ended at `end` (exactly, or within its bounds).
fn close_matches(c: &Close, end: DateTime<Utc>) -> bool {
    match (c.ended_after, c.ended_before) {
        (Some(a), Some(b)) => a <= end && end <= b && a <= c.ended_at && c.ended_at <= b,
        _ => c.ended_at == end,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Driving the real connection core against the scripted PBX
// ---------------------------------------------------------------------------------------------------------

/// A connection core logged in to a scripted PBX, sans IO: the core's writes are parsed and answered by
/// the PBX, the answers fed back as bytes.
struct Link {
    core: Core,
    session: ami_testkit::PbxSession,
    parser: Parser,
    wbuf: BytesMut,
}

impl Link {
    fn connect(map: &ServerChannels, pbx: &mut ScriptedPbx, now: DateTime<Utc>) -> Self {
        let cfg = Config::new("pbx.test", "callwatch", Secret::new("not-a-secret"));
        let mut link = Link {
            core: Core::new(cfg, map.clone(), now),
            session: pbx.new_session(),
            parser: Parser::without_banner(Limits::default()),
            wbuf: BytesMut::new(),
        };
        link.core.handle_input(
            format!("{}\r\n", ami_testkit::session::BANNER).as_bytes(),
            now,
        );
        link.pump(pbx, now);
        link
    }

    /// Answers everything the core wrote, until it writes nothing more.
    fn pump(&mut self, pbx: &mut ScriptedPbx, now: DateTime<Utc>) {
        while let Some(bytes) = self.core.poll_transmit() {
            self.wbuf.extend_from_slice(&bytes);
            while let Some(frame) = self.parser.next_frame(&mut self.wbuf) {
                if let Ok(Frame::Message(action)) = frame {
                    let reply = pbx.handle_action(&mut self.session, &action);
                    for m in reply.messages {
                        self.core.handle_input(&m.to_bytes(), now);
                    }
                }
            }
        }
    }

    /// Feeds one event at `now` (pinging on schedule), and returns what the core handed out.
    fn event(&mut self, pbx: &mut ScriptedPbx, ev: &Message, now: DateTime<Utc>) -> Vec<Output> {
        if self.core.next_deadline().is_some_and(|d| d <= now) {
            self.core.handle_timeout(now);
            self.pump(pbx, now);
        }
        self.core.handle_input(&ev.to_bytes(), now);
        self.pump(pbx, now);
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }
}

/// Compares the map's live channels with the oracle after `j` events; returns a description of the first
/// difference.
fn map_differs(oracle: &Oracle, map: &ServerChannels, j: usize, history: bool) -> Option<String> {
    let snap = map.snapshot();
    let want = oracle.live_after(j);
    let got: BTreeMap<&str, &str> = snap
        .live
        .iter()
        .map(|(u, c)| (u.as_str(), c.linkedid.as_str()))
        .collect();
    if got != want {
        return Some(format!("live channels {got:?}, expected {want:?}"));
    }
    if history {
        for (uid, c) in &snap.live {
            let want = oracle.own_history(uid, j);
            if c.linkedids_ever != want {
                return Some(format!(
                    "{uid} carried {:?}, expected {want:?}",
                    c.linkedids_ever
                ));
            }
        }
    }
    None
}

#[test]
fn every_flow_through_the_core() {
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let (mut events_total, mut rows_total, mut changes) = (0usize, 0usize, 0usize);
    for flow in flows() {
        let oracle = Oracle::new(&flow.events);
        let specs = rows_of(&oracle);
        rows_total += specs.len();
        events_total += flow.events.len();
        let mut fail = |msg: String| failures.push(format!("{}: {msg}", flow.name));

        let map = ChannelMap::new(MapOptions::default());
        let server = map.server("pbx");
        let mut pbx = ScriptedPbx::default()
            .with_flow(flow.events.clone(), std::time::Duration::from_millis(100));
        let mut link = Link::connect(&server, &mut pbx, t0());
        let _ = std::iter::from_fn(|| link.core.poll_event()).count();
        if !server.is_synced() {
            fail("not synced after login".into());
            continue;
        }
        let mut ledger = Ledger::new(&specs);
        let mut expected_end: Vec<Option<usize>> = specs
            .iter()
            .map(|s| row_end(&oracle, s, |_| true, None).at())
            .collect();
        for (i, ev) in flow.events.iter().enumerate() {
            let played = pbx.play_next();
            assert_eq!(played.as_ref(), Some(ev));
            pbx.drain_events();
            let out = link.event(&mut pbx, ev, at(i));
            // The event comes out unchanged, whatever it is; nothing else does.
            let passed: Vec<&Message> = out
                .iter()
                .filter_map(|o| match o {
                    Output::Event(m) => Some(m),
                    _ => None,
                })
                .collect();
            if passed != [ev] {
                fail(format!("event {i} passed through as {passed:?}"));
            }
            if let Some(d) = map_differs(&oracle, &server, i + 1, true) {
                fail(format!("after event {i} ({:?}): {d}", ev.event()));
            }
            for (si, spec) in specs.iter().enumerate() {
                if oracle.calls[spec.call].created == i {
                    ledger.open(si);
                }
            }
            for (si, close) in ledger.sweep(&server, at(i)) {
                let spec = &specs[si];
                match expected_end[si].take() {
                    Some(e)
                        if e == i
                            && close.reason == Reason::HangupSeen
                            && close_matches(&close, at(e)) => {}
                    want => fail(format!(
                        "row {} closed at event {i} ({} at {}), expected at event {want:?}",
                        spec.row.key, close.reason, close.ended_at
                    )),
                }
            }
        }
        for (si, want) in expected_end.iter().enumerate() {
            if let Some(e) = want {
                fail(format!(
                    "row {} never closed (expected at event {e})",
                    specs[si].row.key
                ));
            }
        }
        if !ledger.rows.is_empty() {
            fail(format!("{} rows still open at the end", ledger.rows.len()));
        }
        let snap = server.snapshot();
        if !snap.live.is_empty() {
            fail(format!("map not empty at the end: {:?}", snap.live.keys()));
        }
        changes += oracle
            .chans
            .values()
            .filter(|c| oracle.own_history_len(c) > 1)
            .count();
    }
    println!(
        "transfers: {events_total} events, {rows_total} rows, {changes} channels whose Linkedid changed, {:?}",
        started.elapsed()
    );
    assert!(changes >= 17, "the flows change Linkedids: {changes}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

impl Oracle {
    fn own_history_len(&self, c: &Chan) -> usize {
        let mut seen: Vec<&str> = Vec::new();
        for (_, l) in &c.own {
            if !seen.contains(&l.as_str()) {
                seen.push(l);
            }
        }
        seen.len()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Disconnects at every point
// ---------------------------------------------------------------------------------------------------------

/// Per flow, what every case shares: the listing the PBX gives after each number of events.
struct Prepared {
    flow: Flow,
    oracle: Oracle,
    specs: Vec<RowSpec>,
    /// `listings[j]`: the `CoreShowChannel` items after `j` events.
    listings: Vec<Vec<Message>>,
    /// `live_end[s]`: the event at which row `s` closes when nothing is missed.
    live_end: Vec<Option<usize>>,
}

fn prepare(flow: Flow) -> Prepared {
    let oracle = Oracle::new(&flow.events);
    let specs = rows_of(&oracle);
    let mut pbx = ScriptedPbx::default()
        .with_flow(flow.events.clone(), std::time::Duration::from_millis(100));
    let mut listings = Vec::with_capacity(flow.events.len() + 1);
    loop {
        let items: Vec<Message> = pbx
            .core_show_channels(Some("resync"))
            .into_iter()
            .filter(|m| m.event() == Some("CoreShowChannel"))
            .collect();
        listings.push(items);
        if pbx.play_next().is_none() {
            break;
        }
    }
    let live_end = specs
        .iter()
        .map(|s| row_end(&oracle, s, |_| true, None).at())
        .collect();
    Prepared {
        flow,
        oracle,
        specs,
        listings,
        live_end,
    }
}

/// What one disconnect case found.
#[derive(Default)]
struct CaseTally {
    /// Rows closed at the resync.
    closed_at_resync: usize,
    /// Of those, rows whose Linkedid a live channel had carried only while callwatch was away (the
    /// documented case, each checked by [`unobservable_witness`]).
    unobservable: usize,
    /// Rows with a channel name in that same situation, kept because their named channel is up.
    kept_by_name: usize,
    /// Rows with both ids whose channel lived and died while callwatch was away (they follow the Linkedid).
    both_by_linkedid: usize,
}

/// Connects a fresh session to `server` and merges the listing taken after `j` events, at `now`, with the
/// calls the connection core makes.
fn resync(server: &ServerChannels, listing: &[Message], now: DateTime<Utc>) {
    server.begin_session(now);
    let gen = server.begin_listing(now);
    for item in listing {
        server.listed(gen, item, now);
    }
    server.finish_listing(gen, now);
}

/// Feeds event `i` as the connection core does.
fn feed(server: &ServerChannels, ev: &Message, i: usize) {
    server.read_through(at(i));
    server.apply(ev, at(i));
}

/// One case: cut after `k` events, gap of `m` events, resync, rest of the flow live.
fn run_case(p: &Prepared, k: usize, m: usize, fail: &mut dyn FnMut(String)) -> CaseTally {
    let (oracle, specs, events) = (&p.oracle, &p.specs, &p.flow.events);
    let j = k + m;
    let mut tally = CaseTally::default();
    let map = ChannelMap::new(MapOptions {
        gone_queue: 0,
        ..MapOptions::default()
    });
    let server = map.server("pbx");
    resync(&server, &p.listings[0], t0());
    for (i, ev) in events[..k].iter().enumerate() {
        feed(&server, ev, i);
    }
    server.disconnected(between(k));
    // The rows open at the cut (the live run closed the others at their events), and the rows the
    // application answered during the gap.
    let mut ledger = Ledger::new(specs);
    for (si, spec) in specs.iter().enumerate() {
        let created = oracle.calls[spec.call].created;
        if created < j && p.live_end[si].is_none_or(|e| e >= k) {
            ledger.open(si);
        }
    }
    let seen = |i: usize| i < k || i >= j;
    let reconnect = between(j);
    resync(&server, &p.listings[j], reconnect);
    if let Some(d) = map_differs(oracle, &server, j, false) {
        fail(format!("k={k} m={m}: after the resync: {d}"));
    }
    // A row closes at the resync when its call ended during the gap as far as callwatch can know: its
    // channel hung up then, or no channel seen carrying its Linkedid is still up. Otherwise it closes at
    // the event the oracle says.
    let ends: Vec<End> = specs
        .iter()
        .map(|s| row_end(oracle, s, seen, Some(j)))
        .collect();
    let at_resync = |si: usize| match ends[si] {
        End::At(e) => e < j,
        End::NoChannel => true,
        End::Never => false,
    };
    let mut expected: Vec<Option<usize>> =
        ends.iter().map(|e| e.at().filter(|e| *e >= j)).collect();
    tally.both_by_linkedid = ledger
        .open
        .iter()
        .filter(|&&si| {
            let chan = &oracle.chans[&oracle.calls[specs[si].call].uniqueid];
            specs[si].shape == Shape::Both && chan.created >= k && !chan.alive_after(j)
        })
        .count();
    tally.kept_by_name = ledger
        .open
        .iter()
        .filter(|&&si| {
            let spec = &specs[si];
            let first = &oracle.chans[&oracle.calls[spec.call].uniqueid];
            let as_linkedid_only = RowSpec {
                shape: Shape::Linkedid,
                ..spec.clone()
            };
            spec.shape == Shape::LinkedidChannel
                && first.alive_after(j)
                && unobservable_witness(oracle, &as_linkedid_only, k, j).is_some()
        })
        .count();
    let mut due: Vec<usize> = ledger
        .open
        .iter()
        .copied()
        .filter(|&si| at_resync(si))
        .collect();
    for (si, close) in ledger.sweep(&server, reconnect) {
        let spec = &specs[si];
        tally.closed_at_resync += 1;
        let Some(pos) = due.iter().position(|&d| d == si) else {
            fail(format!(
                "k={k} m={m}: row {} closed at the resync, expected at event {:?}",
                spec.row.key, expected[si]
            ));
            continue;
        };
        due.swap_remove(pos);
        expected[si] = None;
        match p.live_end[si] {
            // Ended during the gap: closed on the listing, with bounds that contain the true end.
            Some(e) if (k..j).contains(&e) => {
                if close.reason != Reason::ChannelGone || !close_matches(&close, at(e)) {
                    fail(format!(
                        "k={k} m={m}: row {} ended at event {e} ({}), closed as {} at {} in [{:?}, {:?}]",
                        spec.row.key,
                        at(e),
                        close.reason,
                        close.ended_at,
                        close.ended_after,
                        close.ended_before
                    ));
                }
            }
            // Its Linkedid lives on only in a channel that took it (and left it) while callwatch was away.
            _ if close.reason == Reason::ChannelGone
                && unobservable_witness(oracle, spec, k, j).is_some() =>
            {
                tally.unobservable += 1;
            }
            want => fail(format!(
                "k={k} m={m}: row {} closed at the resync as {}, expected at event {want:?}",
                spec.row.key, close.reason
            )),
        }
    }
    for si in due {
        fail(format!(
            "k={k} m={m}: row {} ended during the gap ({:?}) but is still open after the resync",
            specs[si].row.key, ends[si]
        ));
    }
    for (i, ev) in events.iter().enumerate().skip(j) {
        feed(&server, ev, i);
        let mut answered = false;
        for (si, spec) in specs.iter().enumerate() {
            if oracle.calls[spec.call].created == i {
                ledger.open(si);
                answered = true;
            }
        }
        // Rows are judged after every event that ends a channel or answers a row, and after the last one.
        // In between the map only learns of new channels and Linkedids, which can keep a row open but
        // never close one; `every_flow_through_the_core` judges after every single event.
        if !(answered || i + 1 == events.len() || ev.event() == Some("Hangup")) {
            continue;
        }
        for (si, close) in ledger.sweep(&server, at(i)) {
            match expected[si].take() {
                Some(e) if e == i && close_matches(&close, at(e)) => {}
                want => fail(format!(
                    "k={k} m={m}: row {} closed at event {i} ({} at {}), expected at event {want:?}",
                    specs[si].row.key, close.reason, close.ended_at
                )),
            }
        }
    }
    if !ledger.rows.is_empty() {
        let keys: Vec<&str> = ledger.rows.iter().map(|r| r.key.as_str()).collect();
        fail(format!("k={k} m={m}: rows still open at the end: {keys:?}"));
    }
    if let Some(d) = map_differs(oracle, &server, events.len(), false) {
        fail(format!("k={k} m={m}: at the end: {d}"));
    }
    tally
}

/// Every `(k, m)` case of one flow: its name, the number of cases, their tallies summed, the failures.
fn run_flow(flow: &Flow) -> (String, usize, CaseTally, Vec<String>) {
    let p = prepare(Flow {
        name: flow.name.clone(),
        events: flow.events.clone(),
    });
    let n = p.flow.events.len();
    let mut failures = Vec::new();
    let mut total = CaseTally::default();
    let mut cases = 0;
    for k in 0..n {
        for m in GAPS.into_iter().filter(|m| k + m <= n) {
            let mut fail = |msg: String| failures.push(format!("{}: {msg}", flow.name));
            let tally = run_case(&p, k, m, &mut fail);
            cases += 1;
            total.closed_at_resync += tally.closed_at_resync;
            total.unobservable += tally.unobservable;
            total.both_by_linkedid += tally.both_by_linkedid;
            total.kept_by_name += tally.kept_by_name;
        }
    }
    (flow.name.clone(), cases, total, failures)
}

#[test]
fn disconnect_at_every_point() {
    let started = Instant::now();
    let flows = flows();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    // Flows are independent: spread them over the cores (each case builds its own map).
    let results: Vec<(String, usize, CaseTally, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(flow) =
                        flows.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        out.push(run_flow(flow));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let (mut cases, mut resync_closes, mut unobservable, mut both, mut by_name) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    let mut per_flow = String::new();
    for (name, flow_cases, tally, fails) in results {
        cases += flow_cases;
        resync_closes += tally.closed_at_resync;
        unobservable += tally.unobservable;
        both += tally.both_by_linkedid;
        by_name += tally.kept_by_name;
        failures.extend(fails);
        let _ = writeln!(per_flow, "  {name}: {flow_cases}");
    }
    println!(
        "disconnects: {cases} (fixture, k, m) cases, gaps {GAPS:?}; {resync_closes} rows closed at a resync, \
         {unobservable} of them on a Linkedid change callwatch could not see; {both} rows with both ids \
         followed their Linkedid (channel unseen); {by_name} rows in that case kept by their live channel \
         name; {:?}",
        started.elapsed()
    );
    assert!(
        by_name > 0,
        "the grid has rows whose Linkedid moved away unseen while their named channel stayed up"
    );
    if std::env::var_os("TRANSFERS_VERBOSE").is_some() {
        print!("{per_flow}");
    }
    let expected: usize = flows
        .iter()
        .map(|f| {
            let n = f.events.len();
            GAPS.iter()
                .filter(|&&m| m <= n)
                .map(|&m| n - m + 1)
                .sum::<usize>()
        })
        .sum();
    assert_eq!(cases, expected, "every (flow, k, m) with k + m <= n ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------------------
// The testkit's part (issue item 1), checked against the oracle
// ---------------------------------------------------------------------------------------------------------

/// A `.json` flow loads as a session of AMI wire bytes: the banner, then each event as `Key: Value` lines
/// with CRLF and a blank line, event `i` arriving `(i + 1) × 100 ms` after the start.
#[test]
fn json_flows_load_as_sessions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/peer/cacofonisk");
    for flow in flows() {
        let session = Session::load(&root.join(format!("{}.json", flow.name))).unwrap();
        let bytes = session.bytes();
        let banner = format!("{}\r\n", ami_testkit::session::BANNER);
        assert!(bytes.starts_with(banner.as_bytes()), "{}", flow.name);
        let messages = session.messages();
        assert_eq!(messages.len(), flow.events.len(), "{}", flow.name);
        let start = session.connected_at();
        for (i, ((when, m), ev)) in messages.iter().zip(&flow.events).enumerate() {
            assert_eq!(m, ev, "{} event {i}", flow.name);
            assert_eq!(
                *when - start,
                TimeDelta::milliseconds(SPACING_MS * (i as i64 + 1)),
                "{} event {i}",
                flow.name
            );
        }
        // Every line of the stream ends in CRLF and every message in a blank line.
        let body = &bytes[banner.len()..];
        assert!(body.ends_with(b"\r\n\r\n"), "{}", flow.name);
        assert!(
            !body
                .windows(2)
                .enumerate()
                .any(|(i, w)| w[1] == b'\n' && w[0] != b'\r' && i > 0),
            "{}: bare LF",
            flow.name
        );
    }
}

/// The scripted PBX's listing after any number of events is the oracle's: the channels up, each with the
/// Linkedid of its own latest event.
#[test]
fn scripted_pbx_lists_the_truth_at_every_point() {
    let mut failures = Vec::new();
    for flow in flows() {
        let oracle = Oracle::new(&flow.events);
        let p = prepare(flow);
        for (j, listing) in p.listings.iter().enumerate() {
            let got: BTreeMap<&str, &str> = listing
                .iter()
                .map(|m| {
                    (
                        m.get_str("Uniqueid").unwrap_or_default(),
                        m.get_str("Linkedid").unwrap_or_default(),
                    )
                })
                .collect();
            let want = oracle.live_after(j);
            if got != want {
                failures.push(format!(
                    "{} after {j} events: listed {got:?}, expected {want:?}",
                    p.flow.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
