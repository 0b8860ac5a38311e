//! A deterministic generator of realistic AMI byte streams, for benchmarks and load tests.
//!
//! The stream is what a `read = all` session of Asterisk 22 receives while an automatic call distributor
//! places calls through `Local` channels (the shapes of `fixtures/ami/basic.observer.ami`): the banner, a
//! `Login` response, `FullyBooted`, then, per call, the `Originate` response and
//! [`EVENTS_PER_CALL`] events (4 `Newchannel`, 36 `VarSet`, 15 `Newexten`, 6 `Newstate`, `DialBegin`/
//! `DialState`/`DialEnd` pairs, 2 `LocalBridge`, `BridgeCreate`/`Enter`/`Leave`/`Destroy`, 3
//! `SoftHangupRequest`, 2 `HangupRequest`, 4 `Hangup`, …). Every call has its own Uniqueids, Linkedid,
//! caller ID, agent and durations. Events carry `Timestamp:` (as with `timestampevents = yes`) and
//! `SystemName:` headers, which brings the mean event to about 490 bytes.
//!
//! Calls follow one another (no interleaving). Output depends only on `(calls, seed)`.
//!
//! ```
//! let bytes = ami_proto::synthetic::generate(2, 7);
//! assert!(bytes.starts_with(b"Asterisk Call Manager/11.0.0\r\n"));
//! assert_eq!(bytes, ami_proto::synthetic::generate(2, 7));
//! ```

use std::fmt::Write as _;
use std::io;

/// The banner line the stream starts with (without its CRLF).
pub const BANNER: &str = "Asterisk Call Manager/11.0.0";
/// Events generated per call.
pub const EVENTS_PER_CALL: u64 = 93;
/// Responses generated per call (the `Originate` response).
pub const RESPONSES_PER_CALL: u64 = 1;
/// Events before the first call (`FullyBooted`).
pub const PREAMBLE_EVENTS: u64 = 1;
/// Responses before the first call (the `Login` response).
pub const PREAMBLE_RESPONSES: u64 = 1;

/// The whole stream for `calls` calls, in memory.
pub fn generate(calls: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(calls.saturating_mul(46_000).saturating_add(512));
    let mut synth = Synthetic::new(calls, seed);
    while synth.next_chunk(&mut out) {}
    out
}

/// What a generator has produced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Complete messages (events and responses; the banner is not a message).
    pub frames: u64,
    /// Messages with an `Event:` header.
    pub events: u64,
    /// Messages with a `Response:` header and no `Event:` header.
    pub responses: u64,
    /// Bytes, banner included.
    pub bytes: u64,
}

impl Totals {
    /// The totals of a complete stream of `calls` calls, without generating it (bytes excepted: 0).
    pub fn expected(calls: u64) -> Self {
        let events = PREAMBLE_EVENTS + calls * EVENTS_PER_CALL;
        let responses = PREAMBLE_RESPONSES + calls * RESPONSES_PER_CALL;
        Self {
            frames: events + responses,
            events,
            responses,
            bytes: 0,
        }
    }
}

/// A streaming generator: yields the preamble, then one call at a time, so huge streams never sit in memory.
///
/// Use it as an [`Iterator`] of byte chunks, with [`Synthetic::next_chunk`] to reuse one buffer, or with
/// [`Synthetic::write_to`].
#[derive(Debug, Clone)]
pub struct Synthetic {
    calls: usize,
    next_call: usize,
    preamble_done: bool,
    rng: SplitMix64,
    /// Next Uniqueid counter (Asterisk's channel counter).
    counter: u64,
    /// Next `Local` channel id (the hex part of `Local/…-0000a1b2;1`).
    local_id: u32,
    /// Current time of the simulated PBX, in microseconds since the Unix epoch.
    now_us: u64,
    totals: Totals,
}

impl Synthetic {
    /// A generator of `calls` calls, fully determined by `seed`.
    pub fn new(calls: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let counter = 10_000 + rng.below(50_000);
        let local_id = 0x9000 + rng.below(0x1000) as u32;
        let now_us = 1_795_520_000_000_000 + rng.below(1_000_000);
        Self {
            calls,
            next_call: 0,
            preamble_done: false,
            rng,
            counter,
            local_id,
            now_us,
            totals: Totals::default(),
        }
    }

    /// What has been produced so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Appends the next chunk (the preamble, then one call per call) to `out`; false when the stream is done
    /// (nothing appended).
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if !self.preamble_done {
            self.preamble_done = true;
            self.preamble(out);
        } else if self.next_call < self.calls {
            let n = self.next_call;
            self.next_call += 1;
            self.call(out, n);
        } else {
            return false;
        }
        self.totals.bytes += (out.len() - start) as u64;
        true
    }

    /// Writes the rest of the stream to `w`, one call at a time; returns the final totals.
    pub fn write_to<W: io::Write>(mut self, mut w: W) -> io::Result<Totals> {
        let mut buf = Vec::with_capacity(64 * 1024);
        while self.next_chunk(&mut buf) {
            w.write_all(&buf)?;
            buf.clear();
        }
        w.flush()?;
        Ok(self.totals)
    }

    fn preamble(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(BANNER.as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut w = Writer::new(out, self.now_us);
        w.response("Success", "synth-login-1", "Authentication accepted");
        w.event("FullyBooted", "system,all");
        w.kv("Uptime", "1417");
        w.kv("LastReload", "1417");
        w.kv("Status", "Fully Booted");
        w.end();
        self.totals.events += w.events;
        self.totals.responses += w.responses;
        self.totals.frames += w.events + w.responses;
    }

    fn uniqueid(&mut self) -> String {
        let id = format!("{}.{}", self.now_us / 1_000_000, self.counter);
        self.counter += 1;
        id
    }

    /// One call of [`EVENTS_PER_CALL`] events, following the recorded order of a call that the agent ends.
    fn call(&mut self, out: &mut Vec<u8>, n: usize) {
        // Calls start 0.2–0.6 s apart.
        self.now_us += 200_000 + self.rng.below(400_000);
        let ext = (2001 + self.rng.below(20)).to_string();
        let duration = (2 + self.rng.below(7)).to_string();
        let ring_tenths = 10 + self.rng.below(20);
        let ring = format!("{}.{}", ring_tenths / 10, ring_tenths % 10);
        let cust_num = format!("55501{:05}", n % 100_000);
        let cust_name = format!("Customer {:06}", n + 1);
        let bridge = self.rng.uuid();
        let (in_id, ag_id) = (self.local_id, self.local_id + 1);
        self.local_id = self.local_id.wrapping_add(2);

        let linkedid = self.uniqueid();
        let mut c = [
            Chan::new(
                format!("Local/{ext}@inbound-{in_id:08x};1"),
                0,
                "inbound",
                &ext,
                linkedid.clone(),
                &linkedid,
            ),
            Chan::new(
                format!("Local/{ext}@inbound-{in_id:08x};2"),
                4,
                "inbound",
                &ext,
                self.uniqueid(),
                &linkedid,
            ),
            Chan::new(
                format!("Local/{ext}@agents-{ag_id:08x};1"),
                0,
                "agents",
                &ext,
                String::new(),
                &linkedid,
            ),
            Chan::new(
                format!("Local/{ext}@agents-{ag_id:08x};2"),
                4,
                "agents",
                &ext,
                String::new(),
                &linkedid,
            ),
        ];
        c[2].uniqueid = self.uniqueid();
        c[3].uniqueid = self.uniqueid();
        let answered_ms = 1000 * (2 + ring_tenths / 10) + self.rng.below(999);
        let talk_us = 1_000_000 * (2 + ring_tenths / 10 + self.rng.below(7));

        let mut w = Writer::new(out, self.now_us);
        w.response(
            "Success",
            &format!("orig-synth-{:07}", n + 1),
            "Originate successfully queued",
        );
        w.chan_event("Newchannel", "call,all", &c[0]).end();
        w.chan_event("Newchannel", "call,all", &c[1]).end();
        w.newexten(&c[0], "AppDial2", "(Outgoing Line)");
        w.varset(&c[0], "__RING", &ring);
        w.varset(&c[0], "__DURATION", &duration);
        c[0].set_callerid(&cust_num, &cust_name);
        w.chan_event("NewCallerid", "call,all", &c[0])
            .kv("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
            .end();
        c[0].set_connected(&cust_num, &cust_name);
        w.chan_event("NewConnectedLine", "call,all", &c[0]).end();
        w.varset(&c[1], "__DURATION", &duration);
        w.varset(&c[1], "__RING", &ring);
        c[1].set_callerid(&cust_num, &cust_name);
        c[1].set_connected(&cust_num, &cust_name);
        w.chan_event("NewCallerid", "call,all", &c[1])
            .kv("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
            .end();
        w.chan_event("NewConnectedLine", "call,all", &c[1]).end();
        w.local_bridge(&c[0], &c[1], "inbound", &ext);
        w.event("DialBegin", "call,all");
        w.chan("Dest", &c[0])
            .kv("DialString", &format!("{ext}@inbound"))
            .end();
        w.newexten(&c[1], "NoOp", &format!("Inbound call for agent {ext}"));
        c[1].priority = 2;
        w.newexten(&c[1], "Dial", &format!("Local/{ext}@agents,30"));
        for var in [
            "DIALSTATUS",
            "DIALEDPEERNUMBER",
            "DIALEDPEERNAME",
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "RINGTIME",
            "RINGTIME_MS",
            "PROGRESSTIME",
            "PROGRESSTIME_MS",
        ] {
            w.varset(&c[1], var, "");
        }
        w.chan_event("Newchannel", "call,all", &c[2]).end();
        w.chan_event("Newchannel", "call,all", &c[3]).end();
        let dialed = format!("{ext}@agents");
        for i in [2, 3] {
            w.varset(&c[i], "DIALEDPEERNUMBER", &dialed);
            w.varset(&c[i], "__DURATION", &duration);
            w.varset(&c[i], "__RING", &ring);
            if i == 2 {
                c[2].set_callerid(&ext, &cust_name);
                c[2].set_connected(&cust_num, &cust_name);
                w.newexten(&c[2], "AppDial", "(Outgoing Line)");
            } else {
                c[3].set_callerid(&cust_num, &cust_name);
                c[3].set_connected(&ext, &cust_name);
            }
            w.chan_event("NewCallerid", "call,all", &c[i])
                .kv("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
                .end();
            w.chan_event("NewConnectedLine", "call,all", &c[i]).end();
        }
        w.local_bridge(&c[2], &c[3], "agents", &ext);
        w.chan_event("DialBegin", "call,all", &c[1])
            .chan("Dest", &c[2])
            .kv("DialString", &dialed)
            .end();
        w.newexten(
            &c[3],
            "NoOp",
            &format!("Agent {ext}: ring {ring}, talk {duration}, outcome "),
        );
        c[3].priority = 2;
        w.newexten(&c[3], "GotoIf", "0?busy");
        c[3].priority = 3;
        w.newexten(&c[3], "GotoIf", "0?noanswer");
        c[3].priority = 4;
        w.newexten(&c[3], "Ringing", "");
        c[2].state = 5;
        w.chan_event("Newstate", "call,all", &c[2]).end();
        c[3].priority = 5;
        w.newexten(&c[3], "Wait", &ring);
        c[0].state = 5;
        w.chan_event("Newstate", "call,all", &c[0]).end();
        w.varset(&c[1], "RINGTIME", "0");
        w.varset(&c[1], "RINGTIME_MS", "0");
        w.chan_event("DialState", "call,all", &c[1])
            .chan("Dest", &c[2])
            .kv("DialStatus", "RINGING")
            .end();
        w.event("DialState", "call,all");
        w.chan("Dest", &c[0]).kv("DialStatus", "RINGING").end();

        // The agent answers after the ring time.
        w.advance(100_000 * ring_tenths);
        c[3].priority = 6;
        w.newexten(&c[3], "Answer", "");
        c[3].state = 6;
        w.chan_event("Newstate", "call,all", &c[3]).end();
        c[2].state = 6;
        w.chan_event("Newstate", "call,all", &c[2]).end();
        w.varset(&c[1], "DIALSTATUS", "ANSWER");
        w.varset(&c[1], "DIALEDPEERNAME", &c[2].name);
        w.varset(&c[1], "DIALEDPEERNUMBER", &dialed);
        w.chan_event("DialEnd", "call,all", &c[1])
            .chan("Dest", &c[2])
            .kv("DialStatus", "ANSWER")
            .end();
        c[1].state = 6;
        w.chan_event("Newstate", "call,all", &c[1]).end();
        w.event("OriginateResponse", "call,all");
        w.kv("ActionID", &format!("orig-synth-{:07}", n + 1))
            .kv("Response", "Success")
            .kv("Channel", &c[0].name)
            .kv("Context", "caller")
            .kv("Exten", "s")
            .kv("Reason", "4")
            .kv("Uniqueid", &c[0].uniqueid)
            .kv("CallerIDNum", &cust_num)
            .kv("CallerIDName", &cust_name)
            .end();
        c[2].exten.clear();
        w.newexten(&c[2], "AppDial", "(Outgoing Line)");
        w.bridge_event("BridgeCreate", &bridge, 0).end();
        w.bridge_event("BridgeEnter", &bridge, 1)
            .chan("", &c[2])
            .end();
        c[0].state = 6;
        w.chan_event("Newstate", "call,all", &c[0]).end();
        w.event("DialEnd", "call,all");
        w.chan("Dest", &c[0]).kv("DialStatus", "ANSWER").end();
        c[0].context = "caller";
        c[0].exten = "s".into();
        w.newexten(&c[0], "NoOp", "Caller connected");
        c[0].priority = 2;
        w.newexten(&c[0], "Echo", "");
        w.bridge_event("BridgeEnter", &bridge, 2)
            .chan("", &c[1])
            .end();
        w.varset(&c[2], "BRIDGEPEER", &c[1].name);
        w.varset(&c[1], "BRIDGEPEER", &c[2].name);
        c[3].priority = 7;
        w.newexten(&c[3], "Wait", &duration);

        // The agent's timer runs out: the agent side hangs up first.
        w.advance(talk_us);
        c[3].priority = 8;
        w.newexten(&c[3], "Hangup", "16");
        w.chan_event("SoftHangupRequest", "call,all", &c[3])
            .kv("Cause", "16")
            .end();
        w.chan_event("HangupRequest", "call,all", &c[2])
            .kv("Cause", "16")
            .end();
        w.hangup(&c[3]);
        w.varset(&c[2], "BRIDGEPEER", "");
        w.varset(&c[1], "BRIDGEPEER", "");
        w.bridge_event("BridgeLeave", &bridge, 1)
            .chan("", &c[2])
            .end();
        w.hangup(&c[2]);
        w.bridge_event("BridgeLeave", &bridge, 0)
            .chan("", &c[1])
            .end();
        let talk_ms = talk_us / 1000;
        w.varset(&c[1], "ANSWEREDTIME", &(talk_ms / 1000).to_string());
        w.varset(&c[1], "ANSWEREDTIME_MS", &talk_ms.to_string());
        w.varset(
            &c[1],
            "DIALEDTIME",
            &((talk_ms + answered_ms) / 1000).to_string(),
        );
        w.varset(&c[1], "DIALEDTIME_MS", &(talk_ms + answered_ms).to_string());
        w.varset(&c[1], "DIALSTATUS", "ANSWER");
        w.chan_event("SoftHangupRequest", "call,all", &c[1])
            .kv("Cause", "16")
            .end();
        w.varset(&c[0], "CHANLOCALSTATUS", "ANSWER");
        w.chan_event("HangupRequest", "call,all", &c[0])
            .kv("Cause", "16")
            .end();
        w.hangup(&c[1]);
        w.bridge_event("BridgeDestroy", &bridge, 0).end();
        w.chan_event("SoftHangupRequest", "call,all", &c[0])
            .kv("Cause", "16")
            .end();
        w.hangup(&c[0]);

        debug_assert_eq!(w.events, EVENTS_PER_CALL);
        self.totals.events += w.events;
        self.totals.responses += w.responses;
        self.totals.frames += w.events + w.responses;
        // The PBX clock moves on only by the call set-up time, so calls overlap as on a busy PBX.
        self.now_us += 50_000;
    }
}

impl Iterator for Synthetic {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.next_chunk(&mut out).then_some(out)
    }
}

/// The state of one channel, as every channel event repeats it.
#[derive(Debug)]
struct Chan {
    name: String,
    state: u8,
    cid_num: String,
    cid_name: String,
    conn_num: String,
    conn_name: String,
    context: &'static str,
    exten: String,
    priority: u32,
    uniqueid: String,
    linkedid: String,
}

impl Chan {
    fn new(
        name: String,
        state: u8,
        context: &'static str,
        exten: &str,
        uniqueid: String,
        linkedid: &str,
    ) -> Self {
        Self {
            name,
            state,
            cid_num: "<unknown>".into(),
            cid_name: "<unknown>".into(),
            conn_num: "<unknown>".into(),
            conn_name: "<unknown>".into(),
            context,
            exten: exten.into(),
            priority: 1,
            uniqueid,
            linkedid: linkedid.into(),
        }
    }

    fn set_callerid(&mut self, num: &str, name: &str) {
        self.cid_num = num.into();
        self.cid_name = name.into();
    }

    fn set_connected(&mut self, num: &str, name: &str) {
        self.conn_num = num.into();
        self.conn_name = name.into();
    }
}

fn state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        _ => "Unknown",
    }
}

/// Appends messages to a buffer and counts them; `now_us` ticks a little per event.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    now_us: u64,
    events: u64,
    responses: u64,
    scratch: String,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>, now_us: u64) -> Self {
        Self {
            out,
            now_us,
            events: 0,
            responses: 0,
            scratch: String::with_capacity(32),
        }
    }

    fn advance(&mut self, us: u64) {
        self.now_us += us;
    }

    fn kv(&mut self, key: &str, value: &str) -> &mut Self {
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    fn end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }

    fn response(&mut self, response: &str, action_id: &str, message: &str) {
        self.responses += 1;
        self.kv("Response", response)
            .kv("ActionID", action_id)
            .kv("Message", message)
            .end();
    }

    /// Starts an event: `Event`, `Privilege`, `Timestamp`, `SystemName`, in Asterisk's order.
    fn event(&mut self, name: &str, privilege: &str) -> &mut Self {
        self.events += 1;
        self.now_us += 137;
        self.scratch.clear();
        let _ = write!(
            self.scratch,
            "{}.{:06}",
            self.now_us / 1_000_000,
            self.now_us % 1_000_000
        );
        let ts = std::mem::take(&mut self.scratch);
        self.kv("Event", name)
            .kv("Privilege", privilege)
            .kv("Timestamp", &ts);
        self.scratch = ts;
        self.kv("SystemName", "callcenter-pbx-01")
    }

    /// The channel snapshot block, each key prefixed with `prefix` (`Dest`, `LocalOne`, …).
    fn chan(&mut self, prefix: &str, c: &Chan) -> &mut Self {
        let mut put = |key: &str, value: &str| {
            self.out.extend_from_slice(prefix.as_bytes());
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(value.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        };
        put("Channel", &c.name);
        put("ChannelState", &c.state.to_string());
        put("ChannelStateDesc", state_desc(c.state));
        put("CallerIDNum", &c.cid_num);
        put("CallerIDName", &c.cid_name);
        put("ConnectedLineNum", &c.conn_num);
        put("ConnectedLineName", &c.conn_name);
        put("Language", "en");
        put("AccountCode", "");
        put("Context", c.context);
        put("Exten", &c.exten);
        put("Priority", &c.priority.to_string());
        put("Uniqueid", &c.uniqueid);
        put("Linkedid", &c.linkedid);
        self
    }

    fn chan_event(&mut self, name: &str, privilege: &str, c: &Chan) -> &mut Self {
        self.event(name, privilege).chan("", c)
    }

    fn newexten(&mut self, c: &Chan, app: &str, data: &str) {
        self.chan_event("Newexten", "dialplan,all", c)
            .kv("Extension", &c.exten)
            .kv("Application", app)
            .kv("AppData", data)
            .end();
    }

    fn varset(&mut self, c: &Chan, var: &str, value: &str) {
        self.chan_event("VarSet", "dialplan,all", c)
            .kv("Variable", var)
            .kv("Value", value)
            .end();
    }

    fn hangup(&mut self, c: &Chan) {
        self.chan_event("Hangup", "call,all", c)
            .kv("Cause", "16")
            .kv("Cause-txt", "Normal Clearing")
            .end();
    }

    fn local_bridge(&mut self, one: &Chan, two: &Chan, context: &str, exten: &str) {
        self.event("LocalBridge", "call,all")
            .chan("LocalOne", one)
            .chan("LocalTwo", two)
            .kv("Context", context)
            .kv("Exten", exten)
            .kv("LocalOptimization", "Yes")
            .end();
    }

    fn bridge_event(&mut self, name: &str, bridge: &str, channels: u32) -> &mut Self {
        self.event(name, "call,all")
            .kv("BridgeUniqueid", bridge)
            .kv("BridgeType", "basic")
            .kv("BridgeTechnology", "simple_bridge")
            .kv("BridgeCreator", "<unknown>")
            .kv("BridgeName", "<unknown>")
            .kv("BridgeNumChannels", &channels.to_string())
            .kv("BridgeVideoSourceMode", "none")
    }
}

/// SplitMix64: small, fast, deterministic; good enough to vary a benchmark stream.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        assert_eq!(generate(3, 1), generate(3, 1));
        assert_ne!(generate(3, 1), generate(3, 2));
    }

    #[test]
    fn streaming_equals_in_memory() {
        let mut streamed = Vec::new();
        let totals = Synthetic::new(5, 9).write_to(&mut streamed).unwrap();
        assert_eq!(streamed, generate(5, 9));
        assert_eq!(totals.bytes, streamed.len() as u64);
        let chunks: Vec<u8> = Synthetic::new(5, 9).flatten().collect();
        assert_eq!(chunks, streamed);
        let expected = Totals::expected(5);
        assert_eq!(
            (totals.frames, totals.events, totals.responses),
            (expected.frames, expected.events, expected.responses)
        );
    }

    #[test]
    fn zero_calls_is_just_the_preamble() {
        let bytes = generate(0, 0);
        assert!(bytes.starts_with(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n"));
        assert!(bytes.ends_with(b"Status: Fully Booted\r\n\r\n"));
    }
}
