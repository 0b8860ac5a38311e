//! [`ScriptedPbx`]: a sans-IO PBX with its own channel table.
//!
//! It keeps the table the way a client's channel map should: from events. Commands
//! ([`start_call`](ScriptedPbx::start_call), [`answer`](ScriptedPbx::answer),
//! [`hangup`](ScriptedPbx::hangup), [`transfer`](ScriptedPbx::transfer)) build the events Asterisk would send
//! and apply them to the table; [`apply`](ScriptedPbx::apply) takes any event (from a JSON flow, a recording
//! or a test) and does the same. So at any point the answers to `CoreShowChannels` and `Status` are the
//! truth of the events so far: every channel with a `Newchannel` and no `Hangup`, with the `Linkedid`,
//! state, bridge and application of its latest snapshot, and a `Duration` counted on the PBX's clock.
//!
//! Every channel snapshot in an event updates the table, whatever its prefix (`Dest…`, `LocalOne…`,
//! `LocalTwo…`, …): a key ending in `Uniqueid` names a channel, and the keys with the same prefix
//! describe it. That is how `Linkedid` changes after transfers are followed. The snapshots of
//! `AttendedTransfer` and `BlindTransfer` are the exception: Asterisk takes them when the transfer begins,
//! so they can be older than the events before them, and they are ignored.
//!
//! The PBX answers `Login` (plain, or MD5 after `Challenge`), `Challenge`, `Ping`, `CoreShowChannels`,
//! `Status` and `Logoff`; other actions get Asterisk's "Invalid/unknown command" error, and any action but
//! `Login`, `Challenge` and `Logoff` before a login gets "Permission denied".

use std::collections::VecDeque;
use std::fmt;

use ami_proto::Message;
use chrono::{DateTime, TimeDelta, Utc};
use md5::{Digest, Md5};

use crate::error::{Error, Result};
use crate::pairing::{error_response, goodbye, login_accepted, pong};

/// A live channel of the PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel name, e.g. `PJSIP/2001-00000001`.
    pub name: String,
    /// `Uniqueid`.
    pub uniqueid: String,
    /// `Linkedid` as of now.
    pub linkedid: String,
    /// `ChannelState` code (0 Down, 4 Ring, 5 Ringing, 6 Up, …).
    pub state: u8,
    /// `ChannelStateDesc`.
    pub state_desc: String,
    /// `CallerIDNum`.
    pub caller_id_num: String,
    /// `CallerIDName`.
    pub caller_id_name: String,
    /// `ConnectedLineNum`.
    pub connected_line_num: String,
    /// `ConnectedLineName`.
    pub connected_line_name: String,
    /// `Language`.
    pub language: String,
    /// `AccountCode`.
    pub account_code: String,
    /// `Context`.
    pub context: String,
    /// `Exten`.
    pub exten: String,
    /// `Priority`.
    pub priority: String,
    /// Current dialplan application (from `Newexten`).
    pub application: String,
    /// Its data.
    pub application_data: String,
    /// The bridge the channel is in (`BridgeUniqueid`), empty when none.
    pub bridge_id: String,
    /// When the channel was created, on the PBX's clock.
    pub created_at: DateTime<Utc>,
}

/// Asterisk's text for a channel state code.
pub fn state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        1 => "Rsrvd",
        2 => "OffHook",
        3 => "Dialing",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        7 => "Busy",
        8 => "Dialing Offhook",
        9 => "Pre-ring",
        _ => "Unknown",
    }
}

/// Asterisk's `Cause-txt` for a Q.850 cause code.
pub fn cause_txt(cause: u8) -> &'static str {
    match cause {
        0 => "Unknown",
        1 => "Unallocated (unassigned) number",
        16 => "Normal Clearing",
        17 => "User busy",
        18 => "No user responding",
        19 => "User alerting, no answer",
        21 => "Call Rejected",
        27 => "Destination out of order",
        31 => "Normal, unspecified",
        34 => "Circuit/channel congestion",
        127 => "Interworking, unspecified",
        _ => "Unknown",
    }
}

/// A call made with [`ScriptedPbx::start_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(usize);

#[derive(Debug, Clone)]
struct Call {
    caller: String,
    callee: String,
    bridge: Option<String>,
    ended: bool,
}

/// Login credentials the PBX checks; the secret never appears in Debug output.
#[derive(Clone)]
struct Credentials {
    user: String,
    secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Per-connection state of the PBX's manager interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PbxSession {
    /// The connection has logged in; only then does it receive events.
    pub logged_in: bool,
    challenge: Option<String>,
}

/// What to send back for one action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Messages to send, in order.
    pub messages: Vec<Message>,
    /// Close the connection after sending them (`Logoff`, failed `Login`).
    pub close: bool,
}

/// A PBX that makes calls on command or plays an event flow, and answers listings from its own state.
#[derive(Debug, Clone)]
pub struct ScriptedPbx {
    now: DateTime<Utc>,
    channels: Vec<Channel>,
    calls: Vec<Call>,
    counter: u64,
    channel_seq: u64,
    bridge_seq: u64,
    challenge_seq: u64,
    credentials: Option<Credentials>,
    flow: Vec<Message>,
    cursor: usize,
    flow_start: DateTime<Utc>,
    spacing: TimeDelta,
    /// Events for clients, each with the boot (see [`ScriptedPbx::boot`]) that produced it.
    outbox: VecDeque<(u64, Message)>,
    booted_at: DateTime<Utc>,
    boot: u64,
}

impl Default for ScriptedPbx {
    fn default() -> Self {
        Self::new(DateTime::from_timestamp(1_795_520_000, 0).unwrap_or(DateTime::UNIX_EPOCH))
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A new PBX has been up this long (its `FullyBooted` says `Uptime: 1486`).
const DEFAULT_UPTIME_SECS: i64 = 1486;

/// `HH:MM:SS` of a non-negative duration.
pub fn hhmmss(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl ScriptedPbx {
    /// An idle PBX whose clock reads `now`; it accepts any login.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            channels: Vec::new(),
            calls: Vec::new(),
            counter: 1,
            channel_seq: 1,
            bridge_seq: 1,
            challenge_seq: 0,
            credentials: None,
            flow: Vec::new(),
            cursor: 0,
            flow_start: now,
            spacing: TimeDelta::milliseconds(100),
            outbox: VecDeque::new(),
            booted_at: now - TimeDelta::seconds(DEFAULT_UPTIME_SECS),
            boot: 0,
        }
    }

    /// Only accepts `user` with `secret` (plain, or MD5 of challenge + secret).
    pub fn with_credentials(mut self, user: &str, secret: &str) -> Self {
        self.credentials = Some(Credentials {
            user: user.to_owned(),
            secret: secret.to_owned(),
        });
        self
    }

    /// Loads a flow to play with [`play_next`](Self::play_next): event `k` (from 0) happens at
    /// `now + (k + 1) × spacing` on the PBX's clock.
    pub fn with_flow(mut self, events: Vec<Message>, spacing: std::time::Duration) -> Self {
        self.flow = events;
        self.cursor = 0;
        self.flow_start = self.now;
        self.spacing = TimeDelta::from_std(spacing).unwrap_or(TimeDelta::zero());
        self
    }

    /// The PBX's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: std::time::Duration) {
        self.now += TimeDelta::from_std(d).unwrap_or(TimeDelta::zero());
    }

    /// Sets the clock (e.g. to a recorded event's arrival time before [`apply`](Self::apply)).
    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = now;
    }

    /// When this Asterisk (last) booted; `FullyBooted`'s `Uptime` is the time since.
    pub fn booted_at(&self) -> DateTime<Utc> {
        self.booted_at
    }

    /// Asterisk restarts (`core restart now`): it sends `Shutdown` to its clients, every channel is gone
    /// without a `Hangup`, and it boots again at the PBX's current time. The caller drops the connections
    /// (e.g. [`crate::PbxServer::drop_connection`]), as the dying process does. Returns the calls that ended.
    pub fn restart(&mut self) -> Vec<CallId> {
        self.emit(
            "Shutdown",
            pairs(&[("Shutdown", "Uncleanly"), ("Restart", "True")]),
        );
        self.wipe()
    }

    /// Asterisk crashes: no word to its clients, every channel is gone, and it boots again at the PBX's
    /// current time (a new `Uptime` on the next login). The caller drops the connections. Returns the calls
    /// that ended.
    pub fn crash(&mut self) -> Vec<CallId> {
        self.wipe()
    }

    /// Sets when this Asterisk (last) booted: a crashed Asterisk boots again only when it is back, some
    /// seconds after the crash (`crash` and `restart` boot it at once).
    pub fn set_booted_at(&mut self, at: DateTime<Utc>) {
        self.booted_at = at;
    }

    fn wipe(&mut self) -> Vec<CallId> {
        self.channels.clear();
        self.booted_at = self.now;
        self.boot += 1;
        let mut ended = Vec::new();
        for (i, call) in self.calls.iter_mut().enumerate() {
            if !call.ended {
                call.ended = true;
                ended.push(CallId(i));
            }
        }
        ended
    }

    /// The live channels, in creation order.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The live channel with `uniqueid`.
    pub fn channel(&self, uniqueid: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.uniqueid == uniqueid)
    }

    /// Number of flow events played so far.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Number of events in the flow.
    pub fn flow_len(&self) -> usize {
        self.flow.len()
    }

    /// Plays the next flow event: advances the clock to its time, applies it and queues it for clients.
    /// `None` when the flow is over.
    pub fn play_next(&mut self) -> Option<Message> {
        let event = self.flow.get(self.cursor)?.clone();
        self.cursor += 1;
        let at = self.flow_start + self.spacing * i32::try_from(self.cursor).unwrap_or(i32::MAX);
        if at > self.now {
            self.now = at;
        }
        self.apply(&event);
        self.outbox.push_back((self.boot, event.clone()));
        Some(event)
    }

    /// Plays flow events until `k` have been played (or the flow ends); returns how many were played now.
    pub fn play_until(&mut self, k: usize) -> usize {
        let mut n = 0;
        while self.cursor < k && self.play_next().is_some() {
            n += 1;
        }
        n
    }

    /// Takes the events produced since the last call (by commands and by [`play_next`](Self::play_next)),
    /// for sending to logged-in clients.
    pub fn drain_events(&mut self) -> Vec<Message> {
        self.outbox.drain(..).map(|(_, m)| m).collect()
    }

    /// Like [`drain_events`](Self::drain_events), each event with the boot that produced it: a client
    /// connected to one boot never hears a later one (that is another Asterisk process).
    pub fn drain_events_by_boot(&mut self) -> Vec<(u64, Message)> {
        self.outbox.drain(..).collect()
    }

    /// Which boot of Asterisk this is: 0 at first, one more at every [`restart`](Self::restart) and
    /// [`crash`](Self::crash).
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// Applies `event` to the channel table and queues it for clients, as if the PBX had produced it (for
    /// events no command makes, e.g. a `Rename` or a `Shutdown`).
    pub fn inject(&mut self, event: Message) {
        self.apply(&event);
        self.outbox.push_back((self.boot, event));
    }

    /// Applies one event to the channel table (see the module docs). Events that do not concern channels
    /// are ignored.
    pub fn apply(&mut self, event: &Message) {
        let name = event.event().unwrap_or_default();
        if name.eq_ignore_ascii_case("Newchannel") {
            if let Some(uid) = event.get_str("Uniqueid") {
                if self.channel(uid).is_none() {
                    self.channels.push(Channel {
                        name: String::new(),
                        uniqueid: uid.to_owned(),
                        linkedid: uid.to_owned(),
                        state: 0,
                        state_desc: state_desc(0).to_owned(),
                        caller_id_num: String::new(),
                        caller_id_name: String::new(),
                        connected_line_num: String::new(),
                        connected_line_name: String::new(),
                        language: String::new(),
                        account_code: String::new(),
                        context: String::new(),
                        exten: String::new(),
                        priority: String::new(),
                        application: String::new(),
                        application_data: String::new(),
                        bridge_id: String::new(),
                        created_at: self.now,
                    });
                }
            }
        }
        // Every channel snapshot in the event, whatever its prefix — except those of transfer events.
        let prefixes: Vec<(String, String)> = event
            .headers()
            .filter(|_| !is_transfer(name))
            .filter_map(|h| {
                let key = h.key_str()?;
                let cut = key.len().checked_sub("Uniqueid".len())?;
                let tail = key.get(cut..)?;
                tail.eq_ignore_ascii_case("Uniqueid").then(|| {
                    (
                        key[..cut].to_owned(),
                        h.value_str().unwrap_or_default().to_owned(),
                    )
                })
            })
            .collect();
        for (prefix, uid) in prefixes {
            if let Some(i) = self.channels.iter().position(|c| c.uniqueid == uid) {
                update_from_snapshot(&mut self.channels[i], event, &prefix);
            }
        }
        let uid = event.get_str("Uniqueid").unwrap_or_default().to_owned();
        let Some(i) = self.channels.iter().position(|c| c.uniqueid == uid) else {
            return;
        };
        if name.eq_ignore_ascii_case("Hangup") {
            self.channels.remove(i);
        } else if name.eq_ignore_ascii_case("BridgeEnter") {
            self.channels[i].bridge_id = event
                .get_str("BridgeUniqueid")
                .unwrap_or_default()
                .to_owned();
        } else if name.eq_ignore_ascii_case("BridgeLeave") {
            self.channels[i].bridge_id.clear();
        } else if name.eq_ignore_ascii_case("Newexten") {
            if let Some(app) = event.get_str("Application") {
                self.channels[i].application = app.to_owned();
            }
            if let Some(data) = event.get_str("AppData") {
                self.channels[i].application_data = data.to_owned();
            }
        } else if name.eq_ignore_ascii_case("Rename") {
            if let Some(new) = event.get_str("Newname") {
                self.channels[i].name = new.to_owned();
            }
        }
    }

    fn emit(&mut self, name: &str, fields: Vec<(String, String)>) {
        let mut all = pairs(&[("Event", name), ("Privilege", "call,all")]);
        all.extend(fields);
        let m = Message::from_pairs(all);
        self.apply(&m);
        self.outbox.push_back((self.boot, m));
    }

    fn live(&self, uid: &str) -> Result<Channel> {
        self.channel(uid)
            .cloned()
            .ok_or_else(|| Error::Script(format!("channel {uid} is not up")))
    }

    fn call(&self, id: CallId) -> Result<Call> {
        match self.calls.get(id.0) {
            Some(c) if !c.ended => Ok(c.clone()),
            _ => Err(Error::Script(format!(
                "call {} has ended or does not exist",
                id.0
            ))),
        }
    }

    fn next_uniqueid(&mut self) -> String {
        let id = format!("{}.{}", self.now.timestamp(), self.counter);
        self.counter += 1;
        id
    }

    fn next_bridge_id(&mut self) -> String {
        let id = format!("00000000-0000-4000-8000-{:012x}", self.bridge_seq);
        self.bridge_seq += 1;
        id
    }

    fn snapshot(&self, uid: &str, prefix: &str) -> Vec<(String, String)> {
        let Some(c) = self.channel(uid) else {
            return Vec::new();
        };
        let f = |k: &str, v: &str| (format!("{prefix}{k}"), v.to_owned());
        vec![
            f("Channel", &c.name),
            f("ChannelState", &c.state.to_string()),
            f("ChannelStateDesc", &c.state_desc),
            f("CallerIDNum", &c.caller_id_num),
            f("CallerIDName", &c.caller_id_name),
            f("ConnectedLineNum", &c.connected_line_num),
            f("ConnectedLineName", &c.connected_line_name),
            f("Language", &c.language),
            f("AccountCode", &c.account_code),
            f("Context", &c.context),
            f("Exten", &c.exten),
            f("Priority", &c.priority),
            f("Uniqueid", &c.uniqueid),
            f("Linkedid", &c.linkedid),
        ]
    }

    fn new_channel(
        &mut self,
        tech_ext: &str,
        num: &str,
        exten: &str,
        linkedid: Option<&str>,
    ) -> String {
        let uid = self.next_uniqueid();
        let name = format!("PJSIP/{tech_ext}-{:08x}", self.channel_seq);
        self.channel_seq += 1;
        let linked = linkedid.unwrap_or(&uid).to_owned();
        let p = pairs(&[
            ("Channel", &name),
            ("ChannelState", "0"),
            ("ChannelStateDesc", "Down"),
            ("CallerIDNum", num),
            ("CallerIDName", num),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", "from-internal"),
            ("Exten", exten),
            ("Priority", "1"),
            ("Uniqueid", &uid),
            ("Linkedid", &linked),
        ]);
        self.emit("Newchannel", p);
        uid
    }

    fn set_state(&mut self, uid: &str, state: u8) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.uniqueid == uid) {
            c.state = state;
            c.state_desc = state_desc(state).to_owned();
        }
        let snap = self.snapshot(uid, "");
        self.emit("Newstate", snap);
    }

    /// Starts a call from extension `from` to `to`: the caller's channel rings out (Dial), the callee's
    /// rings. Both share the caller's `Linkedid`.
    pub fn start_call(&mut self, from: &str, to: &str) -> CallId {
        let caller = self.new_channel(from, from, to, None);
        self.set_state(&caller, 4);
        let mut p = self.snapshot(&caller, "");
        p.extend(pairs(&[
            ("Application", "Dial"),
            ("AppData", &format!("PJSIP/{to},30")),
        ]));
        self.emit("Newexten", p);
        let linked = self
            .channel(&caller)
            .map(|c| c.linkedid.clone())
            .unwrap_or_default();
        let callee = self.new_channel(to, to, to, Some(&linked));
        let mut p = self.snapshot(&caller, "");
        p.extend(self.snapshot(&callee, "Dest"));
        p.push(("DialString".into(), to.into()));
        self.emit("DialBegin", p);
        self.set_state(&callee, 5);
        self.calls.push(Call {
            caller,
            callee,
            bridge: None,
            ended: false,
        });
        CallId(self.calls.len() - 1)
    }

    /// The callee answers: both channels go Up and are bridged together.
    pub fn answer(&mut self, call: CallId) -> Result<()> {
        let c = self.call(call)?;
        if c.bridge.is_some() {
            return Err(Error::Script(format!(
                "call {} is already answered",
                call.0
            )));
        }
        self.live(&c.caller)?;
        self.live(&c.callee)?;
        self.set_state(&c.callee, 6);
        let mut p = self.snapshot(&c.caller, "");
        p.extend(self.snapshot(&c.callee, "Dest"));
        p.push(("DialStatus".into(), "ANSWER".into()));
        self.emit("DialEnd", p);
        self.set_state(&c.caller, 6);
        let bridge = self.next_bridge_id();
        self.emit("BridgeCreate", bridge_fields(&bridge, 0));
        for (n, uid) in [&c.caller, &c.callee].into_iter().enumerate() {
            let mut p = bridge_fields(&bridge, n + 1);
            p.extend(self.snapshot(uid, ""));
            self.emit("BridgeEnter", p);
        }
        self.calls[call.0].bridge = Some(bridge);
        Ok(())
    }

    fn leave_bridge(&mut self, uid: &str, remaining: usize) {
        let Some(bridge) = self
            .channel(uid)
            .map(|c| c.bridge_id.clone())
            .filter(|b| !b.is_empty())
        else {
            return;
        };
        let mut p = bridge_fields(&bridge, remaining);
        p.extend(self.snapshot(uid, ""));
        self.emit("BridgeLeave", p);
    }

    fn hangup_one(&mut self, uid: &str, cause: u8) {
        let mut p = self.snapshot(uid, "");
        p.push(("Cause".into(), cause.to_string()));
        p.push(("Cause-txt".into(), cause_txt(cause).into()));
        self.emit("Hangup", p);
    }

    /// Ends a call with Q.850 `cause` (16 = normal clearing): a ringing call's dial ends, an answered call's
    /// bridge is torn down, then both channels hang up.
    pub fn hangup(&mut self, call: CallId, cause: u8) -> Result<()> {
        let c = self.call(call)?;
        match &c.bridge {
            Some(bridge) => {
                self.leave_bridge(&c.callee, 1);
                self.leave_bridge(&c.caller, 0);
                self.emit("BridgeDestroy", bridge_fields(bridge, 0));
            }
            None if self.channel(&c.callee).is_some() => {
                let status = match cause {
                    17 => "BUSY",
                    19 => "NOANSWER",
                    21 => "CHANUNAVAIL",
                    _ => "CANCEL",
                };
                let mut p = self.snapshot(&c.caller, "");
                p.extend(self.snapshot(&c.callee, "Dest"));
                p.push(("DialStatus".into(), status.into()));
                self.emit("DialEnd", p);
            }
            None => {}
        }
        for uid in [&c.callee, &c.caller] {
            if self.channel(uid).is_some() {
                self.hangup_one(uid, cause);
            }
        }
        self.calls[call.0].ended = true;
        Ok(())
    }

    /// Hangs up one channel by `uniqueid` (leaving its bridge first), as `Action: Hangup` would.
    pub fn hangup_channel(&mut self, uniqueid: &str, cause: u8) -> Result<()> {
        self.live(uniqueid)?;
        self.leave_bridge(uniqueid, 1);
        self.hangup_one(uniqueid, cause);
        Ok(())
    }

    /// Attended transfer: in `first` (A talking to B) B put A on hold and made `second` (B talking to C);
    /// B completes the transfer. A joins C in `second`'s bridge, both of B's channels hang up, and C takes
    /// A's `Linkedid`. `first` then stands for the call A–C; `second` has ended.
    pub fn transfer(&mut self, first: CallId, second: CallId) -> Result<()> {
        let f = self.call(first)?;
        let s = self.call(second)?;
        let (Some(bridge1), Some(bridge2)) = (f.bridge.clone(), s.bridge.clone()) else {
            return Err(Error::Script(
                "both calls must be answered to transfer".into(),
            ));
        };
        let (a, b, b2, c) = (
            f.caller.clone(),
            f.callee.clone(),
            s.caller.clone(),
            s.callee.clone(),
        );
        for uid in [&a, &b, &b2, &c] {
            self.live(uid)?;
        }
        let mut p = pairs(&[("Result", "Success")]);
        p.extend(self.snapshot(&b, "OrigTransferer"));
        p.extend(
            bridge_fields(&bridge1, 2)
                .into_iter()
                .map(|(k, v)| (format!("OrigTransferer{k}"), v)),
        );
        p.extend(self.snapshot(&b2, "SecondTransferer"));
        p.extend(
            bridge_fields(&bridge2, 2)
                .into_iter()
                .map(|(k, v)| (format!("SecondTransferer{k}"), v)),
        );
        p.extend(pairs(&[
            ("DestType", "Bridge"),
            ("DestBridgeUniqueid", &bridge2),
        ]));
        p.extend(self.snapshot(&a, "Transferee"));
        p.extend(self.snapshot(&c, "TransferTarget"));
        self.emit("AttendedTransfer", p);
        self.leave_bridge(&b, 1);
        self.leave_bridge(&a, 0);
        self.emit("BridgeDestroy", bridge_fields(&bridge1, 0));
        self.leave_bridge(&b2, 1);
        let mut p = bridge_fields(&bridge2, 2);
        p.extend(self.snapshot(&a, ""));
        self.emit("BridgeEnter", p);
        // C now talks to A and joins A's linked call.
        let (a_linked, a_num, a_name) = {
            let ch = self.live(&a)?;
            (ch.linkedid, ch.caller_id_num, ch.caller_id_name)
        };
        if let Some(ch) = self.channels.iter_mut().find(|ch| ch.uniqueid == c) {
            ch.linkedid = a_linked;
            ch.connected_line_num = a_num;
            ch.connected_line_name = a_name;
        }
        let snap = self.snapshot(&c, "");
        self.emit("NewConnectedLine", snap);
        self.hangup_one(&b, 16);
        self.hangup_one(&b2, 16);
        self.calls[first.0].callee = c;
        self.calls[first.0].bridge = Some(bridge2);
        self.calls[second.0].ended = true;
        Ok(())
    }

    /// A new manager connection's state.
    pub fn new_session(&self) -> PbxSession {
        PbxSession::default()
    }

    /// Answers one action of a connection.
    pub fn handle_action(&mut self, session: &mut PbxSession, action: &Message) -> Reply {
        let id = action.action_id();
        let one = |bytes: bytes::Bytes| parse_one(&bytes);
        let Some(name) = action.get_str("Action") else {
            return Reply {
                messages: one(error_response(id, "Missing action in request")),
                close: false,
            };
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "challenge" => {
                if !action.get_str("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
                    return Reply {
                        messages: one(error_response(id, "Must specify AuthType")),
                        close: false,
                    };
                }
                self.challenge_seq += 1;
                let ch = format!("{}", 100_000_000 + self.challenge_seq * 7_919);
                session.challenge = Some(ch.clone());
                Reply {
                    messages: one(crate::pairing::challenge_response(id, &ch)),
                    close: false,
                }
            }
            "login" => {
                if self.login_ok(session, action) {
                    session.logged_in = true;
                    let mut messages = one(login_accepted(id));
                    let uptime = (self.now - self.booted_at).num_seconds().max(0).to_string();
                    messages.push(Message::from_pairs([
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", uptime.as_str()),
                        ("LastReload", uptime.as_str()),
                        ("Status", "Fully Booted"),
                    ]));
                    Reply { messages, close: false }
                } else {
                    Reply {
                        messages: one(error_response(id, "Authentication failed")),
                        close: true,
                    }
                }
            }
            "logoff" => Reply {
                messages: one(goodbye(id)),
                close: true,
            },
            _ if !session.logged_in => Reply {
                messages: one(error_response(id, "Permission denied")),
                close: false,
            },
            "ping" => Reply {
                messages: one(pong(id, self.now)),
                close: false,
            },
            "coreshowchannels" => Reply {
                messages: self.core_show_channels(id),
                close: false,
            },
            "status" => Reply {
                messages: self.status(id),
                close: false,
            },
            _ => Reply {
                messages: one(error_response(
                    id,
                    &format!("Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."),
                )),
                close: false,
            },
        }
    }

    fn login_ok(&self, session: &PbxSession, action: &Message) -> bool {
        let Some(cred) = &self.credentials else {
            return true;
        };
        if action.get_str("Username") != Some(cred.user.as_str()) {
            return false;
        }
        if action
            .get_str("AuthType")
            .is_some_and(|t| t.eq_ignore_ascii_case("md5"))
        {
            let (Some(challenge), Some(key)) = (&session.challenge, action.get_str("Key")) else {
                return false;
            };
            let mut h = Md5::new();
            h.update(challenge.as_bytes());
            h.update(cred.secret.as_bytes());
            return hex::encode(h.finalize()).eq_ignore_ascii_case(key);
        }
        action.get_str("Secret") == Some(cred.secret.as_str())
    }

    /// The answer to `CoreShowChannels`: the start response, one `CoreShowChannel` per live channel, and
    /// `CoreShowChannelsComplete`.
    pub fn core_show_channels(&self, action_id: Option<&str>) -> Vec<Message> {
        let id = action_id.unwrap_or_default();
        let mut out = Vec::with_capacity(self.channels.len() + 2);
        let mut start = vec![("Response", "Success")];
        if action_id.is_some() {
            start.push(("ActionID", id));
        }
        start.extend([("EventList", "start"), ("Message", "Channels will follow")]);
        out.push(Message::from_pairs(start));
        for c in &self.channels {
            let state = c.state.to_string();
            let duration = hhmmss(self.now - c.created_at);
            let mut p = vec![("Event", "CoreShowChannel")];
            if action_id.is_some() {
                p.push(("ActionID", id));
            }
            p.extend([
                ("Channel", c.name.as_str()),
                ("ChannelState", &state),
                ("ChannelStateDesc", &c.state_desc),
                ("CallerIDNum", &c.caller_id_num),
                ("CallerIDName", &c.caller_id_name),
                ("ConnectedLineNum", &c.connected_line_num),
                ("ConnectedLineName", &c.connected_line_name),
                ("Language", &c.language),
                ("AccountCode", &c.account_code),
                ("Context", &c.context),
                ("Exten", &c.exten),
                ("Priority", &c.priority),
                ("Uniqueid", &c.uniqueid),
                ("Linkedid", &c.linkedid),
                ("Application", &c.application),
                ("ApplicationData", &c.application_data),
                ("Duration", &duration),
                ("BridgeId", &c.bridge_id),
            ]);
            out.push(Message::from_pairs(p));
        }
        let n = self.channels.len().to_string();
        let mut done = vec![("Event", "CoreShowChannelsComplete")];
        if action_id.is_some() {
            done.push(("ActionID", id));
        }
        done.extend([("EventList", "Complete"), ("ListItems", n.as_str())]);
        out.push(Message::from_pairs(done));
        out
    }

    /// The answer to `Status`: like Asterisk 22's (`BridgeID`, `Data`, `Seconds`, `Privilege: Call`).
    pub fn status(&self, action_id: Option<&str>) -> Vec<Message> {
        let id = action_id.unwrap_or_default();
        let mut out = Vec::with_capacity(self.channels.len() + 2);
        let mut start = vec![("Response", "Success")];
        if action_id.is_some() {
            start.push(("ActionID", id));
        }
        start.extend([
            ("EventList", "start"),
            ("Message", "Channel status will follow"),
        ]);
        out.push(Message::from_pairs(start));
        for c in &self.channels {
            let state = c.state.to_string();
            let seconds = (self.now - c.created_at).num_seconds().max(0).to_string();
            let tech = c.name.split('/').next().unwrap_or_default();
            let mut p = vec![
                ("Event", "Status"),
                ("Privilege", "Call"),
                ("Channel", c.name.as_str()),
                ("ChannelState", &state),
                ("ChannelStateDesc", &c.state_desc),
                ("CallerIDNum", &c.caller_id_num),
                ("CallerIDName", &c.caller_id_name),
                ("ConnectedLineNum", &c.connected_line_num),
                ("ConnectedLineName", &c.connected_line_name),
                ("Language", &c.language),
                ("AccountCode", &c.account_code),
                ("Context", &c.context),
                ("Exten", &c.exten),
                ("Priority", &c.priority),
                ("Uniqueid", &c.uniqueid),
                ("Linkedid", &c.linkedid),
                ("Type", tech),
                ("BridgeID", &c.bridge_id),
                ("Application", &c.application),
                ("Data", &c.application_data),
                ("Seconds", &seconds),
            ];
            if action_id.is_some() {
                p.push(("ActionID", id));
            }
            out.push(Message::from_pairs(p));
        }
        let n = self.channels.len().to_string();
        let mut done = vec![("Event", "StatusComplete")];
        if action_id.is_some() {
            done.push(("ActionID", id));
        }
        done.extend([
            ("EventList", "Complete"),
            ("ListItems", n.as_str()),
            ("Items", n.as_str()),
        ]);
        out.push(Message::from_pairs(done));
        out
    }
}

fn bridge_fields(bridge: &str, members: usize) -> Vec<(String, String)> {
    pairs(&[
        ("BridgeUniqueid", bridge),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
        ("BridgeNumChannels", &members.to_string()),
        ("BridgeVideoSourceMode", "none"),
    ])
}

/// `AttendedTransfer` and `BlindTransfer` carry snapshots Asterisk took when the transfer began: after an
/// attended transfer they can show a Linkedid the channel has already left (cacofonisk `xfer_abcbac`,
/// `ctd-account-account-xfer-attn-abbcac`), so they never update the table.
fn is_transfer(event: &str) -> bool {
    event.eq_ignore_ascii_case("AttendedTransfer") || event.eq_ignore_ascii_case("BlindTransfer")
}

fn update_from_snapshot(c: &mut Channel, event: &Message, prefix: &str) {
    let get = |k: &str| event.get_str(&format!("{prefix}{k}"));
    if let Some(v) = get("Channel") {
        c.name = v.to_owned();
    }
    if let Some(v) = get("ChannelState").and_then(|s| s.parse::<u8>().ok()) {
        c.state = v;
        c.state_desc = get("ChannelStateDesc").unwrap_or(state_desc(v)).to_owned();
    }
    let fields: [(&str, &mut String); 10] = [
        ("Linkedid", &mut c.linkedid),
        ("CallerIDNum", &mut c.caller_id_num),
        ("CallerIDName", &mut c.caller_id_name),
        ("ConnectedLineNum", &mut c.connected_line_num),
        ("ConnectedLineName", &mut c.connected_line_name),
        ("Language", &mut c.language),
        ("AccountCode", &mut c.account_code),
        ("Context", &mut c.context),
        ("Exten", &mut c.exten),
        ("Priority", &mut c.priority),
    ];
    for (k, slot) in fields {
        if let Some(v) = get(k) {
            v.clone_into(slot);
        }
    }
}

fn parse_one(bytes: &[u8]) -> Vec<Message> {
    let mut p = ami_proto::Parser::without_banner(ami_proto::Limits::default());
    let mut buf = bytes::BytesMut::from(bytes);
    std::iter::from_fn(|| p.next_frame(&mut buf))
        .filter_map(|f| match f {
            Ok(ami_proto::Frame::Message(m)) => Some(m),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the stale `Transferee…` snapshot of an `AttendedTransfer` (cacofonisk `xfer_abcbac`,
    /// event 85) must not move a channel back to the Linkedid it left.
    #[test]
    fn transfer_snapshots_do_not_roll_a_linkedid_back() {
        let mut pbx = ScriptedPbx::default();
        pbx.apply(&Message::from_pairs([
            ("Event", "Newchannel"),
            ("Channel", "SIP/150010003-0000003e"),
            ("ChannelState", "0"),
            ("Uniqueid", "pbx-1.1800"),
            ("Linkedid", "pbx-1.1800"),
        ]));
        pbx.apply(&Message::from_pairs([
            ("Event", "BridgeEnter"),
            ("Channel", "SIP/150010003-0000003e"),
            ("Uniqueid", "pbx-1.1800"),
            ("Linkedid", "pbx-1.1772"),
        ]));
        pbx.apply(&Message::from_pairs([
            ("Event", "AttendedTransfer"),
            ("TransfereeChannel", "SIP/150010003-0000003e"),
            ("TransfereeChannelState", "6"),
            ("TransfereeUniqueid", "pbx-1.1800"),
            ("TransfereeLinkedid", "pbx-1.1800"),
        ]));
        let ch = pbx.channel("pbx-1.1800").unwrap();
        assert_eq!(ch.linkedid, "pbx-1.1772");
        assert_eq!(ch.state, 0);
    }
}
