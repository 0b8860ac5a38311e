//! A busy PBX's churn: many overlapping calls, a steady rate of calls starting and ending, every event
//! stamped with `Timestamp:` — the shape of a capture of a busy PBX (about 700 calls up at once and 230
//! ending each second), for replay benchmarks and for the daemon's latency benchmark.
//!
//! [`Churn::generate`] gives the bytes, their arrival times (a [`Timing`], so the stream replays as a
//! [`crate::Session`]) and the calls (what the application would have stored: the inbound channel's
//! Uniqueid, which is also the call's Linkedid, and the answer time). [`ChurnServer`] plays the same stream
//! over TCP paced in real time, answering `CoreShowChannels` with the channels up at that point of the
//! stream.
//!
//! Each call has two channels (the trunk's inbound channel and the agent's) and about 90 events (channel
//! setup with its dialplan steps and variables, the dial, the bridge, the hangup handler's variables and two
//! `Hangup`s). Calls start at the configured rate (evenly, with jitter) and last long enough, on average,
//! for the configured number to be up at once. The stream opens with a quiet second after `FullyBooted`,
//! so a client's first listing completes before the first call. Output depends only on the configuration.

use std::sync::Arc;
use std::time::Duration;

use ami_proto::{Frame, Limits, Message, Parser};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::pairing::{error_response, goodbye, login_accepted, pong};
use crate::session::{Chunk, Note, NoteKind, Timing, BANNER};

/// What to generate.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Calls up at once in the steady state.
    pub concurrent: usize,
    /// Calls starting (and, in the steady state, ending) per second.
    pub calls_per_second: f64,
    /// Seconds during which calls start.
    pub seconds: f64,
    /// Time of the stream's first byte.
    pub start: DateTime<Utc>,
    /// Generator seed.
    pub seed: u64,
}

impl ChurnConfig {
    /// The busy PBX of the captures: 700 concurrent, 230 calls a second, for 60 seconds.
    pub fn busy_pbx(start: DateTime<Utc>) -> Self {
        Self {
            concurrent: 700,
            calls_per_second: 230.0,
            seconds: 60.0,
            start,
            seed: 42,
        }
    }
}

/// One generated call, as the application stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnCall {
    /// The inbound channel's Uniqueid (also the call's Linkedid).
    pub uniqueid: String,
    /// The agent channel's Uniqueid.
    pub agent_uniqueid: String,
    /// The agent's extension.
    pub extension: String,
    /// When the inbound channel appeared.
    pub started_at: DateTime<Utc>,
    /// When the agent answered.
    pub answered_at: DateTime<Utc>,
    /// The inbound channel's `Hangup` (the agent's comes 5 ms before).
    pub ended_at: DateTime<Utc>,
}

/// A generated stream.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Banner, `Login` response, `FullyBooted`, then the calls' events in time order.
    pub bytes: Bytes,
    /// Arrival times of the bytes (one chunk per 5 ms of stream time).
    pub timing: Timing,
    /// Every call, in start order.
    pub calls: Vec<ChurnCall>,
    /// Events in the stream.
    pub events: u64,
}

/// Quiet time between `FullyBooted` and the first call.
pub const LEAD: Duration = Duration::from_secs(1);
/// Stream time covered by one chunk.
const CHUNK: i64 = 5_000;

impl Churn {
    /// Generates the stream described by `config`.
    pub fn generate(config: &ChurnConfig) -> Self {
        let start_us = config.start.timestamp_micros();
        let mut rng = SplitMix(config.seed ^ 0x9e37_79b9_7f4a_7c15);
        let rate = config.calls_per_second.max(0.001);
        let total = (rate * config.seconds).round() as usize;
        // Little's law: the mean call (ring + talk) lasts concurrent / rate seconds.
        let mean_us = (config.concurrent as f64 / rate * 1e6) as i64;
        let mut gen = Gen {
            buf: Vec::with_capacity(total * 90 * 480),
            spans: Vec::with_capacity(total * 92),
        };
        let mut calls = Vec::with_capacity(total);
        let first_us = start_us + LEAD.as_micros() as i64;
        for n in 0..total {
            let t0 = first_us
                + (n as f64 / rate * 1e6) as i64
                + rng.below(200_000 / rate as u64 + 1) as i64;
            // Ring 20–40 % of the mean, talk the rest (uniform around it).
            let ring = mean_us / 5 + rng.below((mean_us / 5).max(1) as u64) as i64;
            let talk_mean = (mean_us - 3 * mean_us / 10).max(1);
            let talk = talk_mean / 4 + rng.below((talk_mean * 3 / 2).max(1) as u64) as i64;
            let call = gen.call(n, t0, ring, talk, &mut rng);
            calls.push(call);
        }
        let Gen { buf, mut spans } = gen;
        spans.sort_by_key(|s| (s.at, s.seq));
        let mut bytes = Vec::with_capacity(buf.len() + 1024);
        bytes.extend_from_slice(BANNER.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&login_accepted(Some("churn-login-1")));
        let booted = stamp(start_us);
        bytes.extend_from_slice(
            format!(
                "Event: FullyBooted\r\nPrivilege: system,all\r\nTimestamp: {booted}\r\nSystemName: pbx-churn\r\n\
                 Uptime: 86400\r\nLastReload: 86400\r\nStatus: Fully Booted\r\n\r\n"
            )
            .as_bytes(),
        );
        let mut rx = vec![Chunk {
            offset: 0,
            len: bytes.len(),
            at: config.start,
        }];
        let mut window = i64::MIN;
        for s in &spans {
            let w = s.at / CHUNK;
            if w != window {
                window = w;
                rx.push(Chunk {
                    offset: bytes.len(),
                    len: 0,
                    at: time(s.at),
                });
            }
            bytes.extend_from_slice(&buf[s.start..s.end]);
            if let Some(last) = rx.last_mut() {
                last.len = bytes.len() - last.offset;
            }
        }
        let events = spans.len() as u64 + 1;
        Self {
            bytes: Bytes::from(bytes),
            timing: Timing {
                rx,
                tx: Vec::new(),
                notes: vec![Note {
                    kind: NoteKind::Connect,
                    at: config.start,
                }],
            },
            calls,
            events,
        }
    }

    /// The channels up at `at`: `(channel, uniqueid, linkedid)`.
    pub fn live_at(&self, at: DateTime<Utc>) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for c in &self.calls {
            if c.started_at <= at && at < c.ended_at {
                out.push((
                    inbound_name(&c.uniqueid),
                    c.uniqueid.clone(),
                    c.uniqueid.clone(),
                ));
            }
            let agent_up = c.started_at + TimeDelta::milliseconds(40);
            if agent_up <= at && at < c.ended_at - TimeDelta::milliseconds(5) {
                out.push((
                    agent_name(&c.extension, &c.agent_uniqueid),
                    c.agent_uniqueid.clone(),
                    c.uniqueid.clone(),
                ));
            }
        }
        out
    }
}

fn stamp(us: i64) -> String {
    format!(
        "{}.{:06}",
        us.div_euclid(1_000_000),
        us.rem_euclid(1_000_000)
    )
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn inbound_name(uniqueid: &str) -> String {
    let n: u64 = uniqueid
        .rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    format!("PJSIP/trunk-{n:08x}")
}

fn agent_name(ext: &str, uniqueid: &str) -> String {
    let n: u64 = uniqueid
        .rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    format!("PJSIP/{ext}-{n:08x}")
}

/// One event's bytes in [`Gen::buf`], and when it happens.
struct Span {
    at: i64,
    seq: usize,
    start: usize,
    end: usize,
}

/// A channel as its events repeat it.
struct Chan {
    name: String,
    state: (u8, &'static str),
    caller: (String, String),
    connected: (String, String),
    context: &'static str,
    exten: String,
    priority: u32,
    uniqueid: String,
    linkedid: String,
}

struct Gen {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

impl Gen {
    fn begin(&mut self, at: i64, event: &str, privilege: &str) {
        let seq = self.spans.len();
        self.spans.push(Span {
            at,
            seq,
            start: self.buf.len(),
            end: self.buf.len(),
        });
        self.kv("Event", event);
        self.kv("Privilege", privilege);
        self.kv("Timestamp", &stamp(at));
        self.kv("SystemName", "pbx-churn");
    }

    fn kv(&mut self, k: &str, v: &str) {
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    fn chan(&mut self, prefix: &str, c: &Chan) {
        let k = |s: &str| format!("{prefix}{s}");
        self.kv(&k("Channel"), &c.name);
        self.kv(&k("ChannelState"), &c.state.0.to_string());
        self.kv(&k("ChannelStateDesc"), c.state.1);
        self.kv(&k("CallerIDNum"), &c.caller.0);
        self.kv(&k("CallerIDName"), &c.caller.1);
        self.kv(&k("ConnectedLineNum"), &c.connected.0);
        self.kv(&k("ConnectedLineName"), &c.connected.1);
        self.kv(&k("Language"), "en");
        self.kv(&k("AccountCode"), "");
        self.kv(&k("Context"), c.context);
        self.kv(&k("Exten"), &c.exten);
        self.kv(&k("Priority"), &c.priority.to_string());
        self.kv(&k("Uniqueid"), &c.uniqueid);
        self.kv(&k("Linkedid"), &c.linkedid);
    }

    fn end(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
        if let Some(s) = self.spans.last_mut() {
            s.end = self.buf.len();
        }
    }

    fn chan_event(&mut self, at: i64, event: &str, c: &Chan) {
        self.begin(at, event, "call,all");
        self.chan("", c);
        self.end();
    }

    fn varset(&mut self, at: i64, c: &Chan, var: &str, value: &str) {
        self.begin(at, "VarSet", "dialplan,all");
        self.chan("", c);
        self.kv("Variable", var);
        self.kv("Value", value);
        self.end();
    }

    fn newexten(&mut self, at: i64, c: &mut Chan, app: &str, data: &str) {
        self.begin(at, "Newexten", "dialplan,all");
        self.chan("", c);
        self.kv("Extension", &c.exten.clone());
        self.kv("Application", app);
        self.kv("AppData", data);
        self.end();
        c.priority += 1;
    }

    fn newstate(&mut self, at: i64, c: &mut Chan, state: (u8, &'static str)) {
        c.state = state;
        self.chan_event(at, "Newstate", c);
    }

    fn bridge(&mut self, at: i64, event: &str, id: &str, c: Option<&Chan>) {
        self.begin(at, event, "call,all");
        self.kv("BridgeUniqueid", id);
        self.kv("BridgeType", "basic");
        self.kv("BridgeTechnology", "simple_bridge");
        self.kv("BridgeCreator", "<unknown>");
        self.kv("BridgeName", "<unknown>");
        self.kv("BridgeNumChannels", "2");
        self.kv("BridgeVideoSourceMode", "none");
        if let Some(c) = c {
            self.chan("", c);
        }
        self.end();
    }

    fn hangup(&mut self, at: i64, c: &Chan) {
        self.begin(at, "Hangup", "call,all");
        self.chan("", c);
        self.kv("Cause", "16");
        self.kv("Cause-txt", "Normal Clearing");
        self.end();
    }

    /// One call: inbound channel at `t0`, agent answers after `ring`, talks for `talk`.
    fn call(&mut self, n: usize, t0: i64, ring: i64, talk: i64, rng: &mut SplitMix) -> ChurnCall {
        let sec = t0.div_euclid(1_000_000);
        let uid_a = format!("{sec}.{}", 2 * n + 1);
        let uid_b = format!("{sec}.{}", 2 * n + 2);
        let ext = (2001 + rng.below(400)).to_string();
        let cust = (
            format!("55501{:05}", n % 100_000),
            format!("Customer {:06}", n + 1),
        );
        let none = ("<unknown>".to_string(), "<unknown>".to_string());
        let mut a = Chan {
            name: inbound_name(&uid_a),
            state: (4, "Ring"),
            caller: cust.clone(),
            connected: none.clone(),
            context: "from-trunk",
            exten: "18005550100".into(),
            priority: 1,
            uniqueid: uid_a.clone(),
            linkedid: uid_a.clone(),
        };
        let mut b = Chan {
            name: agent_name(&ext, &uid_b),
            state: (0, "Down"),
            caller: (ext.clone(), format!("Agent {ext}")),
            connected: cust.clone(),
            context: "agents",
            exten: ext.clone(),
            priority: 1,
            uniqueid: uid_b.clone(),
            linkedid: uid_a.clone(),
        };
        let ms = 1_000;
        // Setup: 27 events over 30 ms.
        self.chan_event(t0, "Newchannel", &a);
        for (i, (var, value)) in [
            ("SIPCALLID", format!("{:016x}@10.0.0.1", rng.next())),
            ("__FROM_DID", "18005550100".to_string()),
            ("CDR(did)", "18005550100".to_string()),
            ("__CALLTYPE", "inbound".to_string()),
            ("QUEUE_PRIO", "0".to_string()),
            (
                "__MONITOR_FILENAME",
                format!("/var/spool/asterisk/monitor/q-{uid_a}"),
            ),
            ("CHANNEL(language)", "en".to_string()),
            ("TIMEOUT(absolute)", "7200".to_string()),
            ("__TRUNK", "trunk".to_string()),
            ("CALLERID(name)", cust.1.clone()),
        ]
        .iter()
        .enumerate()
        {
            self.varset(t0 + (i as i64 + 1) * ms, &a, var, value);
        }
        for (i, (app, data)) in [
            ("NoOp", "Inbound from trunk"),
            ("Set", "__FROM_DID=18005550100"),
            ("Set", "CDR(did)=18005550100"),
            ("Gosub", "sub-record-check,s,1(in)"),
            ("Set", "__CALLTYPE=inbound"),
            ("Answer", ""),
            ("Set", "TIMEOUT(absolute)=7200"),
            ("Playback", "welcome"),
            ("Set", "QUEUE_PRIO=0"),
            (
                "ExecIf",
                "$[\"${CALLERID(name)}\" = \"\"]?Set(CALLERID(name)=unknown)",
            ),
            ("Set", "__TRUNK=trunk"),
            ("NoOp", "Routing to agents"),
            ("Set", "CHANNEL(language)=en"),
            ("Set", "__MONITOR_FILENAME=q"),
            ("Queue", "support,t,,,300"),
            ("NoOp", "Queue entered"),
        ]
        .iter()
        .enumerate()
        {
            self.newexten(t0 + (i as i64 + 12) * ms, &mut a, app, data);
        }
        // Dial: 9 events at 40 ms.
        let td = t0 + 40 * ms;
        self.begin(td, "DialBegin", "call,all");
        self.chan("", &a);
        self.chan("Dest", &b);
        self.kv("DialString", &format!("PJSIP/{ext}"));
        self.end();
        self.chan_event(td, "Newchannel", &b);
        for (i, (var, value)) in [
            ("__FROM_DID", "18005550100"),
            ("__CALLTYPE", "inbound"),
            ("__TRUNK", "trunk"),
            ("__MONITOR_FILENAME", "q"),
            ("QUEUE_PRIO", "0"),
            ("MEMBERNAME", "agent"),
        ]
        .iter()
        .enumerate()
        {
            self.varset(td + (i as i64 + 1) * ms, &b, var, value);
        }
        self.newstate(td + 8 * ms, &mut b, (5, "Ringing"));
        // Answer: 15 events.
        let ta = t0 + ring;
        self.newstate(ta, &mut b, (6, "Up"));
        self.begin(ta, "DialState", "call,all");
        self.chan("", &a);
        self.chan("Dest", &b);
        self.kv("DialStatus", "ANSWER");
        self.end();
        self.begin(ta + ms, "DialEnd", "call,all");
        self.chan("", &a);
        self.chan("Dest", &b);
        self.kv("DialStatus", "ANSWER");
        self.end();
        self.newstate(ta + ms, &mut a, (6, "Up"));
        a.connected = b.caller.clone();
        self.chan_event(ta + ms, "NewConnectedLine", &a);
        let bridge = format!(
            "{:08x}-{:04x}-4{:03x}",
            rng.next() as u32,
            n % 0xffff,
            n % 0xfff
        );
        self.bridge(ta + 2 * ms, "BridgeCreate", &bridge, None);
        self.bridge(ta + 2 * ms, "BridgeEnter", &bridge, Some(&a));
        self.bridge(ta + 3 * ms, "BridgeEnter", &bridge, Some(&b));
        for (i, (var, value)) in [
            ("BRIDGEPEER", b.name.clone()),
            ("BRIDGEPVTCALLID", uid_b.clone()),
            ("DIALEDPEERNUMBER", format!("PJSIP/{ext}")),
            ("ANSWEREDTIME", "0".to_string()),
            ("DIALSTATUS", "ANSWER".to_string()),
            ("QUEUEPOSITION", "1".to_string()),
            ("MEMBERINTERFACE", format!("PJSIP/{ext}")),
            ("RINGTIME", (ring / 1_000_000).to_string()),
        ]
        .iter()
        .enumerate()
        {
            self.varset(ta + (i as i64 + 4) * ms, &a, var, value);
        }
        // Mid-call: 6 events.
        let tm = ta + talk / 2;
        for (i, var) in [
            "MIXMONITOR_FILENAME",
            "QUEUE_HOLDTIME",
            "AGENT_STATUS",
            "CDR(userfield)",
        ]
        .iter()
        .enumerate()
        {
            self.varset(tm + i as i64 * ms, &b, var, "1");
        }
        self.chan_event(tm + 5 * ms, "NewCallerid", &b);
        self.chan_event(tm + 6 * ms, "NewConnectedLine", &b);
        // End: the agent hangs up; 34 events over 25 ms, the inbound Hangup at `te`.
        let te = ta + talk;
        let tb = te - 5 * ms;
        self.begin(tb - 3 * ms, "SoftHangupRequest", "call,all");
        self.chan("", &b);
        self.kv("Cause", "16");
        self.end();
        self.begin(tb - 3 * ms, "HangupRequest", "call,all");
        self.chan("", &b);
        self.kv("Cause", "16");
        self.end();
        self.bridge(tb - 2 * ms, "BridgeLeave", &bridge, Some(&b));
        self.bridge(tb - 2 * ms, "BridgeLeave", &bridge, Some(&a));
        self.bridge(tb - ms, "BridgeDestroy", &bridge, None);
        for (i, var) in [
            "DIALSTATUS",
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "CDR(disposition)",
            "CDR(billsec)",
            "CDR(duration)",
            "QUEUESTATUS",
            "HANGUPCAUSE",
        ]
        .iter()
        .enumerate()
        {
            self.varset(tb - ms + (i as i64) * 100, &b, var, "16");
        }
        self.hangup(tb, &b);
        b.exten = "h".into();
        b.priority = 1;
        a.exten = "h".into();
        a.priority = 1;
        for (i, (app, data)) in [
            ("NoOp", "Hangup handler"),
            ("Set", "CDR(hangupcause)=16"),
            ("Gosub", "sub-hangup,s,1"),
            ("NoOp", "Call finished"),
            ("Set", "CDR(end)=now"),
            ("Return", ""),
        ]
        .iter()
        .enumerate()
        {
            self.newexten(tb + (i as i64) * 500, &mut a, app, data);
        }
        for (i, var) in [
            "HANGUPCAUSE",
            "HANGUPCAUSE_KEYS",
            "CDR(hangupcause)",
            "CDR(end)",
            "CDR(billsec)",
            "CDR(duration)",
            "QUEUESTATUS",
            "ABANDONED",
            "CALLCOMPLETED",
            "CDR(disposition)",
        ]
        .iter()
        .enumerate()
        {
            self.varset(tb + 3 * ms + (i as i64) * 100, &a, var, "16");
        }
        self.hangup(te, &a);
        ChurnCall {
            uniqueid: uid_a,
            agent_uniqueid: uid_b,
            extension: ext,
            started_at: time(t0),
            answered_at: time(ta),
            ended_at: time(te),
        }
    }
}

/// SplitMix64.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Plays a [`Churn`] over TCP in real time: each connection gets the banner, the `Login` answer, and the
/// stream's chunks at their times (shifted so that the stream's start is the moment the login was
/// answered, when `shift` is set; at their own times otherwise). `Ping`, `CoreShowChannels` (the channels
/// up at that point of the stream) and `Logoff` are answered between writes.
pub struct ChurnServer {
    local_addr: std::net::SocketAddr,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ChurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChurnServer")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Drop for ChurnServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ChurnServer {
    /// Serves `churn` on 127.0.0.1 (a free port), every chunk at its own time (`churn`'s `start` should be
    /// a little in the future: the client logs in meanwhile).
    pub async fn start(churn: Arc<Churn>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local_addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let churn = churn.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &churn).await;
                });
            }
        });
        Ok(Self { local_addr, accept })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }
}

/// Answers every complete action in `rbuf` as of stream time `at`; true when the client logged off.
fn answer(
    churn: &Churn,
    parser: &mut Parser,
    rbuf: &mut BytesMut,
    at: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> bool {
    while let Some(frame) = parser.next_frame(rbuf) {
        let Ok(Frame::Message(m)) = frame else {
            continue;
        };
        let id = m.action_id();
        let name = m.get_str("Action").unwrap_or_default().to_ascii_lowercase();
        match name.as_str() {
            "ping" => out.extend_from_slice(&pong(id, Utc::now())),
            "logoff" => {
                out.extend_from_slice(&goodbye(id));
                return true;
            }
            "login" => out.extend_from_slice(&login_accepted(id)),
            "coreshowchannels" => {
                let with_id = |mut pairs: Vec<(&str, String)>| {
                    if let Some(id) = id {
                        pairs.insert(1, ("ActionID", id.to_string()));
                    }
                    Message::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                };
                out.extend_from_slice(
                    with_id(vec![
                        ("Response", "Success".into()),
                        ("EventList", "start".into()),
                        ("Message", "Channels will follow".into()),
                    ])
                    .raw(),
                );
                let live = churn.live_at(at);
                for (channel, uniqueid, linkedid) in &live {
                    out.extend_from_slice(
                        with_id(vec![
                            ("Event", "CoreShowChannel".into()),
                            ("Channel", channel.clone()),
                            ("ChannelState", "6".into()),
                            ("ChannelStateDesc", "Up".into()),
                            ("Uniqueid", uniqueid.clone()),
                            ("Linkedid", linkedid.clone()),
                        ])
                        .raw(),
                    );
                }
                out.extend_from_slice(
                    with_id(vec![
                        ("Event", "CoreShowChannelsComplete".into()),
                        ("EventList", "Complete".into()),
                        ("ListItems", live.len().to_string()),
                    ])
                    .raw(),
                );
            }
            _ => out.extend_from_slice(&error_response(id, "Not supported by the churn server")),
        }
    }
    false
}

async fn serve(stream: TcpStream, churn: &Churn) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let mut parser = Parser::without_banner(Limits::default());
    let mut rbuf = BytesMut::with_capacity(4096);
    // The banner and the Login answer are the stream's first chunk; answer the client's Login with its own id.
    let banner = format!("{BANNER}\r\n");
    wr.write_all(banner.as_bytes()).await?;
    let login_id = loop {
        if rd.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        let mut found = None;
        while let Some(frame) = parser.next_frame(&mut rbuf) {
            let Ok(Frame::Message(m)) = frame else {
                continue;
            };
            if m.get_str("Action")
                .is_some_and(|a| a.eq_ignore_ascii_case("Login"))
            {
                found = Some(m.action_id().map(str::to_owned));
                break;
            }
        }
        if let Some(id) = found {
            break id;
        }
    };
    wr.write_all(&login_accepted(login_id.as_deref())).await?;
    let first = churn.timing.rx.first().map_or(0, |c| c.len);
    let skip = churn.bytes[..first]
        .windows(19)
        .position(|w| w == b"Event: FullyBooted\r")
        .unwrap_or(first);
    let mut out = churn.bytes[skip..first].to_vec();
    let mut rd_buf = rbuf;
    for chunk in churn.timing.rx.iter().skip(1) {
        let wait = (chunk.at - Utc::now()).to_std().unwrap_or_default();
        if !out.is_empty() || wait > Duration::ZERO {
            wr.write_all(&out).await?;
            out.clear();
        }
        if wait > Duration::ZERO {
            // Read actions while waiting.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                n = rd.read_buf(&mut rd_buf) => if n? == 0 { return Ok(()) },
            }
        }
        let now = chunk.at;
        if answer(churn, &mut parser, &mut rd_buf, now, &mut out) {
            wr.write_all(&out).await?;
            return Ok(());
        }
        out.extend_from_slice(&churn.bytes[chunk.offset..chunk.end()]);
    }
    wr.write_all(&out).await?;
    // Keep answering until the client leaves.
    loop {
        if rd.read_buf(&mut rd_buf).await? == 0 {
            return Ok(());
        }
        let at = Utc::now();
        if answer(churn, &mut parser, &mut rd_buf, at, &mut out) {
            wr.write_all(&out).await?;
            return Ok(());
        }
        wr.write_all(&out).await?;
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn churn_has_the_configured_shape() {
        let start = Utc.timestamp_opt(1_795_520_000, 0).unwrap();
        let churn = Churn::generate(&ChurnConfig {
            concurrent: 70,
            calls_per_second: 23.0,
            seconds: 20.0,
            start,
            seed: 1,
        });
        assert_eq!(churn.calls.len(), 460);
        // Steady state (after the ramp): about 70 calls up.
        let mid = start + TimeDelta::seconds(15);
        let up = churn
            .calls
            .iter()
            .filter(|c| c.started_at <= mid && mid < c.ended_at)
            .count();
        assert!((50..=90).contains(&up), "{up} calls up");
        // Every call has two Hangups; the events are in time order, each with a Timestamp.
        let text = String::from_utf8_lossy(&churn.bytes);
        assert_eq!(text.matches("Event: Hangup\r\n").count(), 2 * 460);
        let stamps: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Timestamp: "))
            .map(|s| s.trim().parse().unwrap())
            .collect();
        assert_eq!(stamps.len() as u64, churn.events);
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
        let per_call = churn.events as f64 / 460.0;
        assert!(
            (85.0..95.0).contains(&per_call),
            "{per_call} events per call"
        );
        // Chunks cover the stream exactly, in time order.
        let mut end = 0;
        for c in &churn.timing.rx {
            assert_eq!(c.offset, end);
            end = c.end();
        }
        assert_eq!(end, churn.bytes.len());
        // Listing: both channels of a call in progress.
        let c = &churn.calls[200];
        let at = c.answered_at;
        let live = churn.live_at(at);
        assert!(live.iter().any(|(_, u, _)| *u == c.uniqueid));
        assert!(live
            .iter()
            .any(|(_, u, l)| *u == c.agent_uniqueid && *l == c.uniqueid));
    }
}
