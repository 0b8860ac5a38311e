//! Typed, borrowed views of the events callwatch needs, over the generic [`Message`].
//!
//! [`Event::from_message`] looks at the `Event:` value (case-insensitively) and extracts the fields of the
//! known events; any other message is passed through untouched as [`Event::Other`]. Nothing is copied:
//! every field borrows from the message. A missing or malformed field is `None`, never an error or a panic.
//!
//! ```
//! use ami_proto::{Event, Message};
//!
//! let msg = Message::from_pairs([
//!     ("Event", "Hangup"),
//!     ("Channel", "Local/2007@agents-0000a1b3;2"),
//!     ("Uniqueid", "1795520552.4"),
//!     ("Linkedid", "1795520552.1"),
//!     ("Cause", "16"),
//!     ("Cause-txt", "Normal Clearing"),
//! ]);
//! let Event::Hangup(h) = Event::from_message(&msg) else { panic!() };
//! assert_eq!(h.channel.uniqueid, Some("1795520552.4"));
//! assert_eq!(h.cause, Some(16));
//! ```

use std::time::Duration;

use crate::message::Message;

/// An event, typed when callwatch knows it, else passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A channel was created.
    Newchannel(ChannelEvent<'a>),
    /// A channel changed state (e.g. to `Up` when answered).
    Newstate(ChannelEvent<'a>),
    /// A channel's caller ID changed.
    NewCallerid(ChannelEvent<'a>),
    /// A channel is gone; carries the hangup cause.
    Hangup(Hangup<'a>),
    /// A hangup was requested on a channel (by the channel's own side).
    HangupRequest(HangupRequest<'a>),
    /// A soft hangup was requested; `cause` is Asterisk's internal soft-hangup reason, not a Q.850 cause.
    SoftHangupRequest(HangupRequest<'a>),
    /// A channel was renamed (`Channel` → `Newname`; the Uniqueid stays).
    Rename(Rename<'a>),
    /// A dial attempt started.
    DialBegin(Dial<'a>),
    /// A dial attempt's state changed (e.g. `RINGING`).
    DialState(Dial<'a>),
    /// A dial attempt ended (`DialStatus: ANSWER`, `BUSY`, `NOANSWER`, …).
    DialEnd(Dial<'a>),
    /// A bridge was created.
    BridgeCreate(Bridge<'a>),
    /// A channel entered a bridge.
    BridgeEnter(BridgeMember<'a>),
    /// A channel left a bridge.
    BridgeLeave(BridgeMember<'a>),
    /// A bridge was destroyed.
    BridgeDestroy(Bridge<'a>),
    /// One channel of a `CoreShowChannels` listing.
    CoreShowChannel(CoreShowChannel<'a>),
    /// The end of a `CoreShowChannels` listing.
    CoreShowChannelsComplete(ListComplete<'a>),
    /// One channel of a `Status` listing.
    Status(Status<'a>),
    /// The end of a `Status` listing.
    StatusComplete(ListComplete<'a>),
    /// Asterisk finished booting (also sent right after a successful login).
    FullyBooted(FullyBooted<'a>),
    /// Asterisk is shutting down or restarting.
    Shutdown(Shutdown<'a>),
    /// A module or the whole configuration was reloaded.
    Reload(Reload<'a>),
    /// A manager session authenticated (security event).
    SuccessfulAuth(SuccessfulAuth<'a>),
    /// The outcome of an asynchronous `Originate` (an event that also carries `Response:` and `ActionID:`).
    OriginateResponse(OriginateResponse<'a>),
    /// Any other event, or a message that is not an event: untouched.
    Other(&'a Message),
}

impl<'a> Event<'a> {
    /// The typed view of `msg`; unknown events and non-events are [`Event::Other`].
    pub fn from_message(msg: &'a Message) -> Event<'a> {
        let Some(name) = msg.get("Event") else {
            return Event::Other(msg);
        };
        let mut lower = [0u8; 32];
        if name.len() > lower.len() {
            return Event::Other(msg);
        }
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        match &lower[..name.len()] {
            b"newchannel" => Event::Newchannel(ChannelEvent::new(msg)),
            b"newstate" => Event::Newstate(ChannelEvent::new(msg)),
            b"newcallerid" => Event::NewCallerid(ChannelEvent::new(msg)),
            b"hangup" => Event::Hangup(Hangup::new(msg)),
            b"hanguprequest" => Event::HangupRequest(HangupRequest::new(msg)),
            b"softhanguprequest" => Event::SoftHangupRequest(HangupRequest::new(msg)),
            b"rename" => Event::Rename(Rename::new(msg)),
            b"dialbegin" => Event::DialBegin(Dial::new(msg)),
            b"dialstate" => Event::DialState(Dial::new(msg)),
            b"dialend" => Event::DialEnd(Dial::new(msg)),
            b"bridgecreate" => Event::BridgeCreate(Bridge::new(msg)),
            b"bridgeenter" => Event::BridgeEnter(BridgeMember::new(msg)),
            b"bridgeleave" => Event::BridgeLeave(BridgeMember::new(msg)),
            b"bridgedestroy" => Event::BridgeDestroy(Bridge::new(msg)),
            b"coreshowchannel" => Event::CoreShowChannel(CoreShowChannel::new(msg)),
            b"coreshowchannelscomplete" => Event::CoreShowChannelsComplete(ListComplete::new(msg)),
            b"status" => Event::Status(Status::new(msg)),
            b"statuscomplete" => Event::StatusComplete(ListComplete::new(msg)),
            b"fullybooted" => Event::FullyBooted(FullyBooted::new(msg)),
            b"shutdown" => Event::Shutdown(Shutdown::new(msg)),
            b"reload" => Event::Reload(Reload::new(msg)),
            b"successfulauth" => Event::SuccessfulAuth(SuccessfulAuth::new(msg)),
            b"originateresponse" => Event::OriginateResponse(OriginateResponse::new(msg)),
            _ => Event::Other(msg),
        }
    }

    /// The underlying message.
    pub fn message(&self) -> &'a Message {
        match self {
            Event::Newchannel(e) | Event::Newstate(e) | Event::NewCallerid(e) => e.msg,
            Event::Hangup(e) => e.msg,
            Event::HangupRequest(e) | Event::SoftHangupRequest(e) => e.msg,
            Event::Rename(e) => e.msg,
            Event::DialBegin(e) | Event::DialState(e) | Event::DialEnd(e) => e.msg,
            Event::BridgeCreate(e) | Event::BridgeDestroy(e) => e.msg,
            Event::BridgeEnter(e) | Event::BridgeLeave(e) => e.msg,
            Event::CoreShowChannel(e) => e.msg,
            Event::CoreShowChannelsComplete(e) | Event::StatusComplete(e) => e.msg,
            Event::Status(e) => e.msg,
            Event::FullyBooted(e) => e.msg,
            Event::Shutdown(e) => e.msg,
            Event::Reload(e) => e.msg,
            Event::SuccessfulAuth(e) => e.msg,
            Event::OriginateResponse(e) => e.msg,
            Event::Other(m) => m,
        }
    }

    /// The `Event:` value, `None` for a message that is not an event.
    pub fn name(&self) -> Option<&'a str> {
        self.message().event()
    }

    /// The `Timestamp:` header (present when Asterisk has `timestampevents = yes`).
    pub fn timestamp(&self) -> Option<Timestamp> {
        Timestamp::of(self.message())
    }

    /// The `ActionID:` header (listing items and `OriginateResponse` carry the request's).
    pub fn action_id(&self) -> Option<&'a str> {
        self.message().action_id()
    }
}

/// A `Timestamp:` value: Unix time with microseconds (`1795520552.123456`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch.
    pub secs: u64,
    /// Microseconds within the second (`0..1_000_000`).
    pub micros: u32,
}

impl Timestamp {
    /// The `Timestamp:` header of `msg`, when present and well-formed.
    pub fn of(msg: &Message) -> Option<Self> {
        Self::parse(msg.get_str("Timestamp")?)
    }

    /// Parses `SECONDS[.FRACTION]` (the fraction is truncated to microseconds).
    pub fn parse(text: &str) -> Option<Self> {
        let (secs, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        let secs = parse_digits(secs)?;
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut micros = 0u32;
        for i in 0..6 {
            micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        }
        Some(Self { secs, micros })
    }

    /// As fractional seconds (loses sub-microsecond precision far from the epoch; for display).
    pub fn as_secs_f64(&self) -> f64 {
        self.secs as f64 + f64::from(self.micros) / 1e6
    }
}

/// A channel's state (`ChannelState:` code, as in Asterisk's `enum ast_channel_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelState {
    /// 0: down, available.
    Down,
    /// 1: reserved.
    Reserved,
    /// 2: off hook.
    OffHook,
    /// 3: digits dialed.
    Dialing,
    /// 4: ringing on the line (inbound).
    Ring,
    /// 5: the remote end is ringing.
    Ringing,
    /// 6: up (answered).
    Up,
    /// 7: busy.
    Busy,
    /// 8: dialing while off hook.
    DialingOffhook,
    /// 9: before ringing.
    PreRing,
    /// Any other code.
    Unknown(u8),
}

impl ChannelState {
    /// The state for an Asterisk code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Down,
            1 => Self::Reserved,
            2 => Self::OffHook,
            3 => Self::Dialing,
            4 => Self::Ring,
            5 => Self::Ringing,
            6 => Self::Up,
            7 => Self::Busy,
            8 => Self::DialingOffhook,
            9 => Self::PreRing,
            other => Self::Unknown(other),
        }
    }

    /// True for `Up` (the channel is answered).
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Up)
    }
}

/// The channel snapshot most call events carry (`Channel`, `ChannelState`, `Uniqueid`, `Linkedid`, …),
/// optionally under a key prefix such as `Dest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelInfo<'a> {
    /// `Channel`: the channel name (`Local/2007@agents-0000a1b3;2`).
    pub channel: Option<&'a str>,
    /// `ChannelState`, decoded.
    pub channel_state: Option<ChannelState>,
    /// `ChannelStateDesc` (`Up`, `Ring`, …).
    pub channel_state_desc: Option<&'a str>,
    /// `CallerIDNum`.
    pub caller_id_num: Option<&'a str>,
    /// `CallerIDName`.
    pub caller_id_name: Option<&'a str>,
    /// `Context`.
    pub context: Option<&'a str>,
    /// `Exten`.
    pub exten: Option<&'a str>,
    /// `Uniqueid`: the channel's identity.
    pub uniqueid: Option<&'a str>,
    /// `Linkedid`: shared by the channels of one call.
    pub linkedid: Option<&'a str>,
}

impl<'a> ChannelInfo<'a> {
    /// The snapshot under `prefix` (`""` for the plain one, `"Dest"` for a dial's destination).
    pub fn with_prefix(msg: &'a Message, prefix: &str) -> Self {
        let mut out = Self::default();
        for h in msg.headers() {
            let Some(key) = strip_prefix_ci(h.key, prefix.as_bytes()) else {
                continue;
            };
            let slot = match key.len() {
                7 if key.eq_ignore_ascii_case(b"Channel") => &mut out.channel,
                7 if key.eq_ignore_ascii_case(b"Context") => &mut out.context,
                5 if key.eq_ignore_ascii_case(b"Exten") => &mut out.exten,
                8 if key.eq_ignore_ascii_case(b"Uniqueid") => &mut out.uniqueid,
                8 if key.eq_ignore_ascii_case(b"Linkedid") => &mut out.linkedid,
                11 if key.eq_ignore_ascii_case(b"CallerIDNum") => &mut out.caller_id_num,
                12 if key.eq_ignore_ascii_case(b"CallerIDName") => &mut out.caller_id_name,
                16 if key.eq_ignore_ascii_case(b"ChannelStateDesc") => &mut out.channel_state_desc,
                12 if key.eq_ignore_ascii_case(b"ChannelState") => {
                    if out.channel_state.is_none() {
                        out.channel_state = utf8(h.value)
                            .and_then(|v| v.trim().parse::<u8>().ok())
                            .map(ChannelState::from_code);
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = utf8(h.value);
            }
        }
        out
    }

    /// True when the snapshot names a channel at all (a `DialBegin` of an originate has no caller side).
    pub fn is_present(&self) -> bool {
        self.channel.is_some() || self.uniqueid.is_some()
    }
}

/// An event that is just a channel snapshot (`Newchannel`, `Newstate`, `NewCallerid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEvent<'a> {
    /// The channel.
    pub channel: ChannelInfo<'a>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> ChannelEvent<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            msg,
        }
    }
}

/// `Hangup`: a channel is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hangup<'a> {
    /// The channel.
    pub channel: ChannelInfo<'a>,
    /// `Cause`: the Q.850 cause code (16 = normal clearing, 0 = unknown).
    pub cause: Option<u32>,
    /// `Cause-txt`.
    pub cause_txt: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Hangup<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            cause: parse_u32(msg.get_str("Cause")),
            cause_txt: msg.get_str("Cause-txt"),
            msg,
        }
    }
}

/// `HangupRequest` / `SoftHangupRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HangupRequest<'a> {
    /// The channel.
    pub channel: ChannelInfo<'a>,
    /// `Cause`, when given.
    pub cause: Option<u32>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> HangupRequest<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            cause: parse_u32(msg.get_str("Cause")),
            msg,
        }
    }
}

/// `Rename`: `Channel` is the old name, `Newname` the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rename<'a> {
    /// The channel (under its old name).
    pub channel: ChannelInfo<'a>,
    /// `Newname`.
    pub new_name: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Rename<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            new_name: msg.get_str("Newname"),
            msg,
        }
    }
}

/// `DialBegin` / `DialState` / `DialEnd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial<'a> {
    /// The calling channel; absent (see [`ChannelInfo::is_present`]) when an originate dials.
    pub caller: ChannelInfo<'a>,
    /// The dialed channel (`Dest*` headers).
    pub dest: ChannelInfo<'a>,
    /// `DialStatus` (`RINGING`, `ANSWER`, `BUSY`, `NOANSWER`, …).
    pub dial_status: Option<&'a str>,
    /// `DialString`.
    pub dial_string: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Dial<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            caller: ChannelInfo::with_prefix(msg, ""),
            dest: ChannelInfo::with_prefix(msg, "Dest"),
            dial_status: msg.get_str("DialStatus"),
            dial_string: msg.get_str("DialString"),
            msg,
        }
    }
}

/// `BridgeCreate` / `BridgeDestroy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge<'a> {
    /// `BridgeUniqueid`.
    pub bridge_uniqueid: Option<&'a str>,
    /// `BridgeType` (`basic`, …).
    pub bridge_type: Option<&'a str>,
    /// `BridgeNumChannels`.
    pub num_channels: Option<u32>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Bridge<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            bridge_uniqueid: msg.get_str("BridgeUniqueid"),
            bridge_type: msg.get_str("BridgeType"),
            num_channels: parse_u32(msg.get_str("BridgeNumChannels")),
            msg,
        }
    }
}

/// `BridgeEnter` / `BridgeLeave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeMember<'a> {
    /// The bridge.
    pub bridge: Bridge<'a>,
    /// The channel entering or leaving.
    pub channel: ChannelInfo<'a>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> BridgeMember<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            bridge: Bridge::new(msg),
            channel: ChannelInfo::with_prefix(msg, ""),
            msg,
        }
    }
}

/// One `CoreShowChannel` item of a `CoreShowChannels` listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreShowChannel<'a> {
    /// The channel (`Uniqueid`, `Linkedid`, `ChannelState`, …).
    pub channel: ChannelInfo<'a>,
    /// `Duration` (`HH:MM:SS`).
    pub duration: Option<Duration>,
    /// `BridgeId`; `None` when empty (not bridged).
    pub bridge_id: Option<&'a str>,
    /// `Application`.
    pub application: Option<&'a str>,
    /// `ApplicationData`.
    pub application_data: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> CoreShowChannel<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            duration: msg.get_str("Duration").and_then(parse_hms),
            bridge_id: non_empty(msg.get_str("BridgeId")),
            application: msg.get_str("Application"),
            application_data: msg.get_str("ApplicationData"),
            msg,
        }
    }
}

/// One `Status` item of a `Status` listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status<'a> {
    /// The channel.
    pub channel: ChannelInfo<'a>,
    /// `BridgeID` (spelled so in `Status`); `None` when empty.
    pub bridge_id: Option<&'a str>,
    /// `Seconds` since the channel was created.
    pub seconds: Option<u64>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Status<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            channel: ChannelInfo::with_prefix(msg, ""),
            bridge_id: non_empty(msg.get_str("BridgeID")),
            seconds: msg.get_str("Seconds").and_then(parse_digits),
            msg,
        }
    }
}

/// The `…Complete` event that ends a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListComplete<'a> {
    /// `ListItems`: how many items the listing had.
    pub list_items: Option<u64>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> ListComplete<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            list_items: msg.get_str("ListItems").and_then(parse_digits),
            msg,
        }
    }
}

/// `FullyBooted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullyBooted<'a> {
    /// `Uptime`, seconds since Asterisk started.
    pub uptime: Option<u64>,
    /// `LastReload`, seconds since the last reload.
    pub last_reload: Option<u64>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> FullyBooted<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            uptime: msg.get_str("Uptime").and_then(parse_digits),
            last_reload: msg.get_str("LastReload").and_then(parse_digits),
            msg,
        }
    }
}

/// `Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown<'a> {
    /// `Shutdown` (`Cleanly` / `Uncleanly`).
    pub shutdown: Option<&'a str>,
    /// `Restart` (`True` / `False`).
    pub restart: Option<bool>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Shutdown<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            shutdown: msg.get_str("Shutdown"),
            restart: msg.get_str("Restart").and_then(parse_bool),
            msg,
        }
    }
}

/// `Reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload<'a> {
    /// `Module`, when one module was reloaded.
    pub module: Option<&'a str>,
    /// `Status`.
    pub status: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> Reload<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            module: msg.get_str("Module"),
            status: msg.get_str("Status"),
            msg,
        }
    }
}

/// `SuccessfulAuth` (security event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuccessfulAuth<'a> {
    /// `AccountID`: the manager user.
    pub account_id: Option<&'a str>,
    /// `SessionID`.
    pub session_id: Option<&'a str>,
    /// `RemoteAddress`.
    pub remote_address: Option<&'a str>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> SuccessfulAuth<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            account_id: msg.get_str("AccountID"),
            session_id: msg.get_str("SessionID"),
            remote_address: msg.get_str("RemoteAddress"),
            msg,
        }
    }
}

/// `OriginateResponse`: an event (broadcast to every session with `call` access) that carries the
/// originating session's `ActionID` and a `Response:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginateResponse<'a> {
    /// `Response` (`Success` / `Failure`).
    pub response: Option<&'a str>,
    /// `Channel` (the dial string when the originate failed).
    pub channel: Option<&'a str>,
    /// `Uniqueid`; `None` for `<unknown>`.
    pub uniqueid: Option<&'a str>,
    /// `Reason` (4 = answered).
    pub reason: Option<u32>,
    /// The whole message.
    pub msg: &'a Message,
}

impl<'a> OriginateResponse<'a> {
    fn new(msg: &'a Message) -> Self {
        Self {
            response: msg.get_str("Response"),
            channel: msg.get_str("Channel"),
            uniqueid: msg.get_str("Uniqueid").filter(|u| *u != "<unknown>"),
            reason: parse_u32(msg.get_str("Reason")),
            msg,
        }
    }
}

/// An `EventList:` marker of a listing action's response or final event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventList {
    /// `EventList: start`: items follow.
    Start,
    /// `EventList: Complete`, with `ListItems` when given.
    Complete {
        /// `ListItems`.
        items: Option<u64>,
    },
    /// `EventList: Cancelled`.
    Cancelled,
}

impl EventList {
    /// The marker of `msg`, if it has a known `EventList:` header.
    pub fn of(msg: &Message) -> Option<Self> {
        let v = msg.get_str("EventList")?.trim();
        if v.eq_ignore_ascii_case("start") {
            Some(Self::Start)
        } else if v.eq_ignore_ascii_case("complete") {
            Some(Self::Complete {
                items: msg.get_str("ListItems").and_then(parse_digits),
            })
        } else if v.eq_ignore_ascii_case("cancelled") {
            Some(Self::Cancelled)
        } else {
            None
        }
    }
}

fn utf8(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}

fn strip_prefix_ci<'k>(key: &'k [u8], prefix: &[u8]) -> Option<&'k [u8]> {
    if key.len() < prefix.len() || !key[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    Some(&key[prefix.len()..])
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

/// Decimal digits only (no sign, no spaces inside), surrounding spaces allowed.
fn parse_digits(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn parse_u32(text: Option<&str>) -> Option<u32> {
    parse_digits(text?).and_then(|v| u32::try_from(v).ok())
}

fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if ["true", "yes", "1"]
        .iter()
        .any(|v| t.eq_ignore_ascii_case(v))
    {
        Some(true)
    } else if ["false", "no", "0"]
        .iter()
        .any(|v| t.eq_ignore_ascii_case(v))
    {
        Some(false)
    } else {
        None
    }
}

/// `HH:MM:SS` (hours may exceed 24 and have more digits).
fn parse_hms(text: &str) -> Option<Duration> {
    let mut parts = text.trim().split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m, s) = (parse_digits(h)?, parse_digits(m)?, parse_digits(s)?);
    if m >= 60 || s >= 60 {
        return None;
    }
    let secs = h.checked_mul(3600)?.checked_add(m * 60 + s)?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(pairs: &[(&str, &str)]) -> Message {
        Message::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn hangup_fields_and_case_insensitive_name() {
        let m = msg(&[
            ("event", "HANGUP"),
            ("Timestamp", "1795520552.123456"),
            ("Channel", "Local/2007@agents-0000a1b3;2"),
            ("ChannelState", "6"),
            ("Uniqueid", "1795520552.4"),
            ("Linkedid", "1795520552.1"),
            ("Cause", "16"),
            ("Cause-txt", "Normal Clearing"),
        ]);
        let e = Event::from_message(&m);
        let Event::Hangup(h) = e else { panic!("{e:?}") };
        assert_eq!(h.channel.uniqueid, Some("1795520552.4"));
        assert_eq!(h.channel.linkedid, Some("1795520552.1"));
        assert_eq!(h.channel.channel_state, Some(ChannelState::Up));
        assert_eq!((h.cause, h.cause_txt), (Some(16), Some("Normal Clearing")));
        assert_eq!(
            e.timestamp(),
            Some(Timestamp {
                secs: 1_795_520_552,
                micros: 123_456
            })
        );
        assert_eq!(e.name(), Some("HANGUP"));
    }

    #[test]
    fn missing_and_malformed_fields_are_none() {
        let m = msg(&[
            ("Event", "Hangup"),
            ("Cause", "sixteen"),
            ("ChannelState", "x"),
        ]);
        let Event::Hangup(h) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!(h.cause, None);
        assert_eq!(h.channel, ChannelInfo::default());
        assert!(!h.channel.is_present());
        let m = msg(&[
            ("Event", "CoreShowChannel"),
            ("Duration", "1:99:00"),
            ("BridgeId", ""),
        ]);
        let Event::CoreShowChannel(c) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((c.duration, c.bridge_id), (None, None));
        let m = msg(&[("Event", "FullyBooted"), ("Uptime", "-5")]);
        let Event::FullyBooted(f) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((f.uptime, f.last_reload), (None, None));
    }

    #[test]
    fn dial_without_caller_has_dest() {
        let m = msg(&[
            ("Event", "DialBegin"),
            ("DestChannel", "Local/2019@inbound-00009380;1"),
            ("DestUniqueid", "1795522145.75520"),
            ("DialString", "2019@inbound"),
        ]);
        let Event::DialBegin(d) = Event::from_message(&m) else {
            panic!()
        };
        assert!(!d.caller.is_present());
        assert_eq!(d.dest.uniqueid, Some("1795522145.75520"));
        assert_eq!(d.dest.channel, Some("Local/2019@inbound-00009380;1"));
        assert_eq!(d.dial_string, Some("2019@inbound"));
    }

    #[test]
    fn listing_items() {
        let m = msg(&[
            ("Event", "CoreShowChannel"),
            ("ActionID", "resync-1"),
            ("Channel", "Local/2001@inbound-00000001;1"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
            ("ChannelState", "6"),
            ("Duration", "01:02:03"),
            ("BridgeId", "b-1"),
        ]);
        let e = Event::from_message(&m);
        let Event::CoreShowChannel(c) = e else {
            panic!()
        };
        assert_eq!(c.duration, Some(Duration::from_secs(3723)));
        assert_eq!(c.bridge_id, Some("b-1"));
        assert_eq!(e.action_id(), Some("resync-1"));
        let m = msg(&[
            ("Event", "Status"),
            ("BridgeID", "b-2"),
            ("Seconds", "42"),
            ("Uniqueid", "1.2"),
        ]);
        let Event::Status(s) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!(
            (s.bridge_id, s.seconds, s.channel.uniqueid),
            (Some("b-2"), Some(42), Some("1.2"))
        );
        let m = msg(&[
            ("Event", "CoreShowChannelsComplete"),
            ("EventList", "Complete"),
            ("ListItems", "3"),
        ]);
        assert!(matches!(
            Event::from_message(&m),
            Event::CoreShowChannelsComplete(ListComplete {
                list_items: Some(3),
                ..
            })
        ));
        assert_eq!(
            EventList::of(&m),
            Some(EventList::Complete { items: Some(3) })
        );
        let start = msg(&[("Response", "Success"), ("EventList", "start")]);
        assert_eq!(EventList::of(&start), Some(EventList::Start));
        assert!(matches!(Event::from_message(&start), Event::Other(_)));
    }

    #[test]
    fn system_events() {
        let m = msg(&[
            ("Event", "Shutdown"),
            ("Shutdown", "Cleanly"),
            ("Restart", "True"),
        ]);
        let Event::Shutdown(s) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((s.shutdown, s.restart), (Some("Cleanly"), Some(true)));
        let m = msg(&[
            ("Event", "FullyBooted"),
            ("Uptime", "1417"),
            ("LastReload", "12"),
        ]);
        let Event::FullyBooted(f) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((f.uptime, f.last_reload), (Some(1417), Some(12)));
        let m = msg(&[
            ("Event", "Rename"),
            ("Channel", "old"),
            ("Newname", "new"),
            ("Uniqueid", "1.3"),
        ]);
        let Event::Rename(r) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((r.channel.channel, r.new_name), (Some("old"), Some("new")));
        let m = msg(&[
            ("Event", "OriginateResponse"),
            ("Response", "Failure"),
            ("Uniqueid", "<unknown>"),
        ]);
        let Event::OriginateResponse(o) = Event::from_message(&m) else {
            panic!()
        };
        assert_eq!((o.response, o.uniqueid), (Some("Failure"), None));
    }

    #[test]
    fn unknown_events_pass_through_untouched() {
        let m = msg(&[("Event", "VarSet"), ("Variable", "X"), ("Value", "1")]);
        let e = Event::from_message(&m);
        assert!(matches!(e, Event::Other(inner) if std::ptr::eq(inner, &m)));
        let long = "X".repeat(100);
        let m = msg(&[("Event", long.as_str())]);
        assert!(matches!(Event::from_message(&m), Event::Other(_)));
    }

    #[test]
    fn timestamp_parsing() {
        assert_eq!(
            Timestamp::parse("12.5"),
            Some(Timestamp {
                secs: 12,
                micros: 500_000
            })
        );
        assert_eq!(
            Timestamp::parse("12"),
            Some(Timestamp {
                secs: 12,
                micros: 0
            })
        );
        assert_eq!(
            Timestamp::parse("12.1234567"),
            Some(Timestamp {
                secs: 12,
                micros: 123_456
            })
        );
        assert_eq!(Timestamp::parse("1e5"), None);
        assert_eq!(Timestamp::parse("12.-5"), None);
        assert_eq!(Timestamp::parse(""), None);
    }
}
