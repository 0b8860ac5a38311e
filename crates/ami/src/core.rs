//! [`Core`]: the sans-IO AMI connection state machine.
//!
//! One `Core` lives for one TCP connection. It takes bytes and time in and gives bytes and
//! [`Output`]s out; it never touches a socket, a timer or the system clock, so the same code runs live (driven
//! by [`crate::Connection`]), from recordings on virtual time (`callwatch replay`) and in tests.
//!
//! ```text
//!   driver                               Core
//!   ──────                               ────
//!   bytes read ─────────────► handle_input(bytes, now)
//!   timer fired ────────────► handle_timeout(now)
//!   EOF / I/O error ────────► close(error, now)
//!   poll_transmit() ◄──────── bytes to write (Login, actions, Ping, CoreShowChannels)
//!   poll_event()    ◄──────── Output: LoggedIn, Event, Reply, Resynced, Closed
//!   next_deadline() ◄──────── when to call handle_timeout next
//! ```
//!
//! What it does, in order: waits for the banner, logs in (plain, or MD5 after a `Challenge`) with the
//! configured `Events:` mask, starts a new epoch in the [`ChannelMap`](crate::ChannelMap), lists the channels
//! with `CoreShowChannels` and merges the listing, then serves: correlates replies by `ActionID`, collects
//! event lists up to their `*Complete` event, applies every event to the map before handing it out, and
//! pings at a fixed interval (no answer within the deadline: the link is dead). Any fatal condition yields
//! exactly one [`Output::Closed`]; after it the core ignores input.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ami_proto::{Action, Frame, Message, MessageKind};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use tokio_util::codec::Decoder;

use crate::channels::{ListingOutcome, ServerChannels};
use crate::codec::{AmiCodec, Decoded};
use crate::config::{AuthMethod, Config};
use crate::error::Error;

/// Identifies a request submitted with [`Core::submit`].
pub type RequestId = u64;

/// Whether a request expects one response or an event list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyKind {
    /// One `Response:` message.
    Single,
    /// `Response: Success` with `EventList: start`, items, then a `*Complete` event.
    List,
}

/// A complete event list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventList {
    /// The `Response: Success` that opened the list.
    pub response: Message,
    /// The items, in arrival order.
    pub items: Vec<Message>,
    /// The `*Complete` event (`None` when the action answered without `EventList: start`).
    pub complete: Option<Message>,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A single response.
    Response(Message),
    /// A complete event list (boxed: replies travel in the same queue as every event, which is then no
    /// wider than an event).
    List(Box<EventList>),
}

/// Something the core wants the driver (or a replay) to know.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Login succeeded; a new epoch of the channel map began.
    LoggedIn {
        /// The new epoch.
        epoch: u64,
        /// The server's greeting line (`Asterisk Call Manager/X.Y.Z`), when it sent one.
        banner: Option<Bytes>,
    },
    /// A `CoreShowChannels` listing started.
    Syncing,
    /// An event (already applied to the channel map), including messages carrying `ActionID`s this
    /// connection never sent (another session's `OriginateResponse`) and late replies.
    Event(Message),
    /// The reply to a request submitted with [`Core::submit`].
    Reply {
        /// Which request.
        id: RequestId,
        /// Its reply or error.
        result: Result<Reply, Error>,
    },
    /// Asterisk refused the `CoreShowChannels` listing, or answered it without an event list (a proxy, an
    /// old Asterisk): the session stays up, the map unsynced.
    ResyncRefused {
        /// Asterisk's `Message:`.
        message: String,
    },
    /// A listing completed and the map is synced.
    Resynced {
        /// Current epoch.
        epoch: u64,
        /// What the merge found.
        outcome: ListingOutcome,
    },
    /// The connection must be closed (emitted once). After a failed login the error is [`Error::Auth`].
    Closed(Error),
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Bytes received.
    pub bytes: u64,
    /// Complete messages received.
    pub frames: u64,
    /// Events handed out as [`Output::Event`].
    pub events: u64,
    /// Frames skipped because they were not valid AMI.
    pub parse_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitBanner,
    Challenge,
    Login,
    Ready,
    LoggingOff,
    Closed,
}

#[derive(Debug)]
enum Origin {
    User(RequestId),
    Challenge,
    Login,
    Ping,
    Resync(u64),
    Logoff,
}

#[derive(Debug)]
struct Pending {
    origin: Origin,
    action: String,
    kind: ReplyKind,
    deadline: DateTime<Utc>,
    /// When it was written: its answer proves every event queued before this has been read.
    sent_at: DateTime<Utc>,
    response: Option<Message>,
    items: Vec<Message>,
    count: usize,
}

/// While events arrive, a `Ping` goes out every `ping_interval / BUSY_PING_DIVISOR` (1 s by default).
const BUSY_PING_DIVISOR: u32 = 10;

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn is_error_response(m: &Message) -> bool {
    matches!(m.response(), Some(r) if r.eq_ignore_ascii_case("Error") || r.eq_ignore_ascii_case("Failure"))
}

fn message_text(m: &Message) -> String {
    m.get_str("Message").unwrap_or("no message").to_string()
}

/// The sans-IO state machine of one AMI connection. See the [module docs](self).
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    channels: ServerChannels,
    codec: AmiCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    phase: Phase,
    next_id: u64,
    pending: HashMap<String, Pending>,
    queued: Vec<(RequestId, Action, ReplyKind, DateTime<Utc>)>,
    outputs: VecDeque<Output>,
    login_deadline: Option<DateTime<Utc>>,
    next_ping: Option<DateTime<Utc>>,
    /// When the latest `Ping` (or the login) was answered.
    last_pong: Option<DateTime<Utc>>,
    /// Events arrived since then (the stream is busy).
    events_since_pong: bool,
    ping_in_flight: bool,
    resync_in_flight: bool,
    booted_checked: bool,
    /// When the `Login` was sent (`FullyBooted` answers it: the bound of its `Uptime`).
    login_sent: Option<DateTime<Utc>>,
    banner: Option<Bytes>,
    stats: CoreStats,
}

impl Core {
    /// A core for a connection that was established at `now`, feeding `channels`.
    pub fn new(cfg: Config, channels: ServerChannels, now: DateTime<Utc>) -> Self {
        let codec = AmiCodec::new(cfg.limits);
        let login_deadline = Some(after(now, cfg.login_timeout));
        Self {
            cfg,
            channels,
            codec,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            phase: Phase::AwaitBanner,
            next_id: 1,
            pending: HashMap::new(),
            queued: Vec::new(),
            outputs: VecDeque::new(),
            login_deadline,
            next_ping: None,
            last_pong: None,
            events_since_pong: false,
            ping_in_flight: false,
            resync_in_flight: false,
            booted_checked: false,
            login_sent: None,
            banner: None,
            stats: CoreStats::default(),
        }
    }

    /// The channel map this core feeds.
    pub fn channels(&self) -> &ServerChannels {
        &self.channels
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// True once logged in (and not closed).
    pub fn is_logged_in(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::LoggingOff)
    }

    /// True after [`Output::Closed`].
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The receive buffer, for drivers that read straight into it; call [`Core::handle_buffered`] after.
    pub fn input_buffer(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Bytes received at `now`.
    pub fn handle_input(&mut self, bytes: &[u8], now: DateTime<Utc>) {
        self.rbuf.extend_from_slice(bytes);
        self.handle_buffered(bytes.len(), now);
    }

    /// `n` bytes were appended to [`Core::input_buffer`] at `now`.
    pub fn handle_buffered(&mut self, n: usize, now: DateTime<Utc>) {
        self.stats.bytes += n as u64;
        if self.phase == Phase::Closed {
            self.rbuf.clear();
            return;
        }
        let mut frames = 0u64;
        loop {
            let item = match self.codec.decode(&mut self.rbuf) {
                Ok(Some(item)) => item,
                Ok(None) | Err(_) => break,
            };
            frames += u64::from(self.on_decoded(item, now));
            if self.phase == Phase::Closed {
                self.rbuf.clear();
                break;
            }
        }
        self.frames_seen(frames, now);
    }

    /// Frames that the driver decoded itself at `now` (with its own [`AmiCodec`], on another task, so that
    /// parsing runs beside this core), out of `bytes` received bytes. Same effect as feeding those bytes
    /// to [`Core::handle_input`].
    pub fn handle_decoded(
        &mut self,
        items: impl IntoIterator<Item = Decoded>,
        bytes: usize,
        now: DateTime<Utc>,
    ) {
        self.stats.bytes += bytes as u64;
        if self.phase == Phase::Closed {
            return;
        }
        let mut frames = 0u64;
        for item in items {
            frames += u64::from(self.on_decoded(item, now));
            if self.phase == Phase::Closed {
                break;
            }
        }
        self.frames_seen(frames, now);
    }

    /// Handles one decoded item; true when it was a complete message.
    fn on_decoded(&mut self, item: Decoded, now: DateTime<Utc>) -> bool {
        match item {
            Err(err) => {
                self.stats.parse_errors += 1;
                tracing::warn!(server = %self.channels.name(), error = %err, "skipped a malformed AMI frame");
                false
            }
            Ok(Frame::Banner(banner)) => {
                if self.phase == Phase::AwaitBanner {
                    self.banner = Some(banner);
                    self.start_login(now);
                }
                false
            }
            Ok(Frame::Message(msg)) => {
                if self.phase == Phase::AwaitBanner {
                    self.start_login(now);
                }
                self.on_message(msg, now);
                true
            }
        }
    }

    fn frames_seen(&mut self, frames: u64, now: DateTime<Utc>) {
        if frames == 0 {
            return;
        }
        self.stats.frames += frames;
        // Under load, ping more often: each answer proves how far the events have been read (a client
        // reading behind reads events generated seconds earlier), which keeps the bounds of a channel that
        // ends unseen tight. Busy: events still arrive a while after the latest answer.
        if self.phase == Phase::Ready && !self.ping_in_flight && self.events_since_pong {
            let busy = self
                .last_pong
                .is_some_and(|t| now >= after(t, self.cfg.ping_interval / BUSY_PING_DIVISOR));
            if busy {
                self.send_ping(now);
            }
        }
    }

    /// The peer closed the connection at `now`.
    pub fn handle_eof(&mut self, now: DateTime<Utc>) {
        let pending = self.codec.pending_bytes(&self.rbuf);
        self.handle_eof_after(pending, now);
    }

    /// The peer closed the connection at `now`, leaving `pending` bytes of an unfinished frame (for drivers
    /// that decode themselves; see [`Core::handle_decoded`]).
    pub fn handle_eof_after(&mut self, pending: usize, now: DateTime<Utc>) {
        let reason = match (self.phase, pending) {
            (Phase::LoggingOff, _) => "logoff".to_string(),
            (_, 0) => "eof".to_string(),
            (_, n) => format!("eof inside a message ({n} bytes pending)"),
        };
        let err = if matches!(self.phase, Phase::Login | Phase::Challenge) {
            Error::disconnected(format!("{reason} during login"))
        } else {
            Error::disconnected(reason)
        };
        self.close(err, now);
    }

    /// Closes the connection for `err` (I/O error, forced reconnect): fails every pending request and marks
    /// the map unsynced. Idempotent.
    pub fn close(&mut self, err: Error, now: DateTime<Utc>) {
        if self.phase == Phase::Closed {
            return;
        }
        let was_logged_in = self.is_logged_in();
        self.phase = Phase::Closed;
        let reason = err.to_string();
        for (_, p) in self.pending.drain() {
            if let Origin::User(id) = p.origin {
                let result = if p.kind == ReplyKind::List && p.response.is_some() {
                    Err(Error::ListIncomplete {
                        action: p.action,
                        received: p.count,
                    })
                } else {
                    Err(Error::disconnected(reason.clone()))
                };
                self.outputs.push_back(Output::Reply { id, result });
            }
        }
        for (id, _, _, _) in self.queued.drain(..) {
            self.outputs.push_back(Output::Reply {
                id,
                result: Err(Error::disconnected(reason.clone())),
            });
        }
        if was_logged_in {
            self.channels.disconnected(now);
        }
        self.rbuf.clear();
        self.wbuf.clear();
        self.outputs.push_back(Output::Closed(err));
    }

    /// Bytes to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.wbuf.is_empty()).then(|| self.wbuf.split().freeze())
    }

    /// The next output, if any.
    pub fn poll_event(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.phase == Phase::Closed {
            return None;
        }
        let pending = self.pending.values().map(|p| p.deadline);
        let queued = self.queued.iter().map(|q| q.3);
        let ping = self
            .next_ping
            .filter(|_| self.phase == Phase::Ready && !self.ping_in_flight);
        self.login_deadline
            .into_iter()
            .chain(ping)
            .chain(pending)
            .chain(queued)
            .min()
    }

    /// Time passed: fires the login deadline, keepalive pings and request timeouts due at `now`.
    pub fn handle_timeout(&mut self, now: DateTime<Utc>) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.login_deadline.is_some_and(|d| now >= d) {
            self.close(Error::Timeout { what: "login" }, now);
            return;
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            match p.origin {
                Origin::User(id) => self.outputs.push_back(Output::Reply {
                    id,
                    result: Err(Error::Timeout {
                        what: if p.kind == ReplyKind::List {
                            "event list"
                        } else {
                            "action"
                        },
                    }),
                }),
                Origin::Ping => {
                    self.close(
                        Error::Timeout {
                            what: "keepalive ping",
                        },
                        now,
                    );
                    return;
                }
                Origin::Resync(_) => {
                    self.close(
                        Error::Timeout {
                            what: "CoreShowChannels listing",
                        },
                        now,
                    );
                    return;
                }
                Origin::Logoff => {
                    self.close(Error::disconnected("logoff"), now);
                    return;
                }
                Origin::Challenge | Origin::Login => {}
            }
        }
        let timed_out: Vec<RequestId> = self
            .queued
            .iter()
            .filter(|q| now >= q.3)
            .map(|q| q.0)
            .collect();
        if !timed_out.is_empty() {
            self.queued.retain(|q| now < q.3);
            for id in timed_out {
                self.outputs.push_back(Output::Reply {
                    id,
                    result: Err(Error::Timeout {
                        what: "action (not logged in)",
                    }),
                });
            }
        }
        if self.phase == Phase::Ready
            && !self.ping_in_flight
            && self.next_ping.is_some_and(|p| now >= p)
        {
            self.send_ping(now);
        }
    }

    /// Submits an action. An `ActionID` is assigned unless the action has one. Before login the action waits
    /// (its timeout runs). The reply comes as [`Output::Reply`] with the returned id.
    pub fn submit(
        &mut self,
        action: Action,
        kind: ReplyKind,
        now: DateTime<Utc>,
    ) -> Result<RequestId, Error> {
        if matches!(self.phase, Phase::Closed | Phase::LoggingOff) {
            return Err(Error::disconnected("connection closing"));
        }
        let id = self.next_id;
        self.next_id += 1;
        let action = match action.action_id() {
            Some(aid) => {
                if self.pending.contains_key(aid) {
                    return Err(Error::DuplicateActionId(aid.to_string()));
                }
                action
            }
            None => action.with_action_id(&format!("cw-{id}"))?,
        };
        let timeout = match kind {
            ReplyKind::Single => self.cfg.action_timeout,
            ReplyKind::List => self.cfg.list_timeout,
        };
        let deadline = after(now, timeout);
        if self.phase == Phase::Ready {
            self.send(action, Origin::User(id), kind, deadline, now);
        } else {
            self.queued.push((id, action, kind, deadline));
        }
        Ok(id)
    }

    /// Starts a new `CoreShowChannels` listing unless one is running (e.g. after a consumer lagged); the map
    /// is unsynced until it completes.
    pub fn request_resync(&mut self, now: DateTime<Utc>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.channels.mark_unsynced(now);
        if self.phase == Phase::Ready && !self.resync_in_flight {
            self.start_resync(now);
        }
    }

    /// Sends `Logoff`; the core closes when the server answers or hangs up (or at the action timeout).
    pub fn logoff(&mut self, now: DateTime<Utc>) {
        if self.phase != Phase::Ready {
            self.close(Error::disconnected("logoff"), now);
            return;
        }
        if let Some(action) = self.internal("Logoff", &[]) {
            let deadline = after(now, self.cfg.action_timeout.min(Duration::from_secs(2)));
            self.send(action, Origin::Logoff, ReplyKind::Single, deadline, now);
        }
        self.next_ping = None;
        self.phase = Phase::LoggingOff;
    }

    fn fresh_id(&mut self, what: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("cw-{what}-{n}")
    }

    fn send(
        &mut self,
        action: Action,
        origin: Origin,
        kind: ReplyKind,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let Some(aid) = action.action_id().map(str::to_string) else {
            return;
        };
        if matches!(origin, Origin::Login) {
            self.login_sent = Some(now);
        }
        action.encode_into(&mut self.wbuf);
        self.pending.insert(
            aid,
            Pending {
                origin,
                action: action.name().to_string(),
                kind,
                deadline,
                sent_at: now,
                response: None,
                items: Vec::new(),
                count: 0,
            },
        );
    }

    fn internal(&mut self, name: &str, headers: &[(&str, &str)]) -> Option<Action> {
        let id = self.fresh_id(&name.to_ascii_lowercase());
        let mut action = Action::new(name).and_then(|a| a.with_action_id(&id));
        for (k, v) in headers {
            action = action.and_then(|a| a.header(k, v));
        }
        action.ok()
    }

    fn fail_login(&mut self, message: String, now: DateTime<Utc>) {
        let err = Error::Auth {
            username: self.cfg.username.clone(),
            message,
        };
        self.close(err, now);
    }

    fn start_login(&mut self, now: DateTime<Utc>) {
        let deadline = self.login_deadline.unwrap_or(now);
        match self.cfg.auth {
            AuthMethod::Md5 => {
                self.phase = Phase::Challenge;
                match self.internal("Challenge", &[("AuthType", "MD5")]) {
                    Some(a) => self.send(a, Origin::Challenge, ReplyKind::Single, deadline, now),
                    None => self.fail_login("cannot encode the Challenge action".into(), now),
                }
            }
            AuthMethod::Plain => {
                self.phase = Phase::Login;
                let user = self.cfg.username.clone();
                let secret = self.cfg.secret.clone();
                let events = self.cfg.events.clone();
                let action = self.internal(
                    "Login",
                    &[
                        ("Username", &user),
                        ("Secret", secret.expose()),
                        ("Events", &events),
                    ],
                );
                match action {
                    Some(a) => self.send(a, Origin::Login, ReplyKind::Single, deadline, now),
                    None => self.fail_login(
                        "user name, secret or events mask contains a line break".into(),
                        now,
                    ),
                }
            }
        }
    }

    fn md5_login(&mut self, challenge: &str, now: DateTime<Utc>) {
        self.phase = Phase::Login;
        let mut h = Md5::new();
        h.update(challenge.as_bytes());
        h.update(self.cfg.secret.expose().as_bytes());
        let key = hex::encode(h.finalize());
        let user = self.cfg.username.clone();
        let events = self.cfg.events.clone();
        let deadline = self.login_deadline.unwrap_or(now);
        match self.internal(
            "Login",
            &[
                ("AuthType", "MD5"),
                ("Username", &user),
                ("Key", &key),
                ("Events", &events),
            ],
        ) {
            Some(a) => self.send(a, Origin::Login, ReplyKind::Single, deadline, now),
            None => self.fail_login("user name or events mask contains a line break".into(), now),
        }
    }

    fn logged_in(&mut self, now: DateTime<Utc>) {
        self.phase = Phase::Ready;
        self.login_deadline = None;
        let epoch = self.channels.begin_session(now);
        tracing::info!(server = %self.channels.name(), user = %self.cfg.username, epoch, "AMI logged in");
        self.outputs.push_back(Output::LoggedIn {
            epoch,
            banner: self.banner.clone(),
        });
        self.next_ping = Some(after(now, self.cfg.ping_interval));
        self.last_pong = Some(now);
        for (id, action, kind, deadline) in std::mem::take(&mut self.queued) {
            self.send(action, Origin::User(id), kind, deadline, now);
        }
        self.start_resync(now);
    }

    fn start_resync(&mut self, now: DateTime<Utc>) {
        let gen = self.channels.begin_listing(now);
        let Some(action) = self.internal("CoreShowChannels", &[]) else {
            return;
        };
        self.send(
            action,
            Origin::Resync(gen),
            ReplyKind::List,
            after(now, self.cfg.list_timeout),
            now,
        );
        self.resync_in_flight = true;
        self.outputs.push_back(Output::Syncing);
    }

    fn send_ping(&mut self, now: DateTime<Utc>) {
        if let Some(a) = self.internal("Ping", &[]) {
            self.send(
                a,
                Origin::Ping,
                ReplyKind::Single,
                after(now, self.cfg.ping_timeout),
                now,
            );
            self.ping_in_flight = true;
            self.next_ping = None;
        }
    }

    fn on_message(&mut self, msg: Message, now: DateTime<Utc>) {
        let kind = match msg.kind() {
            Ok(k) => k,
            Err(_) => {
                self.stats.parse_errors += 1;
                return;
            }
        };
        if !self.pending.is_empty() {
            if let Some(aid) = msg.action_id() {
                if self.pending.contains_key(aid) {
                    let aid = aid.to_string();
                    if self.on_correlated(&aid, kind, msg.clone(), now) {
                        return;
                    }
                }
            }
        }
        if kind == MessageKind::Event {
            if !self.booted_checked
                && msg.event() == Some("FullyBooted")
                && self.phase == Phase::Ready
            {
                self.booted_checked = true;
                if let Some(uptime) = msg
                    .get_str("Uptime")
                    .and_then(|u| u.trim().parse::<u64>().ok())
                {
                    let ended = self.channels.fully_booted(
                        Duration::from_secs(uptime),
                        self.login_sent.unwrap_or(now),
                        now,
                    );
                    if ended > 0 {
                        tracing::warn!(server = %self.channels.name(), ended, "Asterisk restarted while disconnected");
                    }
                }
            }
            if msg.timestamp_bytes().is_none() && self.channels.first_untimed_event() {
                tracing::info!(
                    server = %self.channels.name(),
                    "AMI events carry no Timestamp: header, so event times are bounded by read times and \
                     pings; `timestampevents = yes` in Asterisk's manager.conf gives exact times"
                );
            }
            self.channels.apply(&msg, now);
            self.stats.events += 1;
            self.events_since_pong = true;
        } else {
            tracing::debug!(server = %self.channels.name(), "response with an unknown ActionID passed through");
        }
        self.outputs.push_back(Output::Event(msg));
    }

    /// Handles a message whose ActionID is pending. Returns false when the message is not part of the
    /// request after all (an event carrying the ActionID of a single-response action).
    fn on_correlated(
        &mut self,
        aid: &str,
        kind: MessageKind,
        msg: Message,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(p) = self.pending.get_mut(aid) else {
            return false;
        };
        if kind == MessageKind::Response {
            // Asterisk answers after writing every event it queued before the action arrived.
            self.channels.action_answered(p.sent_at, now);
        }
        match (kind, p.kind) {
            (MessageKind::Response, ReplyKind::Single) => {
                let Some(p) = self.pending.remove(aid) else {
                    return false;
                };
                self.finish_single(p, msg, now);
                true
            }
            (MessageKind::Response, ReplyKind::List) => {
                if is_error_response(&msg) {
                    let Some(p) = self.pending.remove(aid) else {
                        return false;
                    };
                    self.finish_list_error(p, &msg, now);
                    return true;
                }
                let starts = msg
                    .get_str("EventList")
                    .is_some_and(|v| v.eq_ignore_ascii_case("start"));
                if starts {
                    p.response = Some(msg);
                } else {
                    let Some(p) = self.pending.remove(aid) else {
                        return false;
                    };
                    if matches!(p.origin, Origin::Resync(_)) {
                        // A proxy or an old Asterisk: no list follows, so nothing says which channels
                        // are gone. The map stays unsynced; seen Hangups are still evidence.
                        self.resync_in_flight = false;
                        let message =
                            "CoreShowChannels answered without an event list (EventList: start)"
                                .to_string();
                        tracing::error!(server = %self.channels.name(), %message, "the map stays unsynced");
                        self.outputs.push_back(Output::ResyncRefused { message });
                    } else {
                        self.finish_list(p, msg, None, now);
                    }
                }
                true
            }
            (MessageKind::Event, ReplyKind::List) => {
                let complete = msg
                    .get_str("EventList")
                    .is_some_and(|v| v.eq_ignore_ascii_case("Complete"))
                    || msg.event().is_some_and(|e| e.ends_with("Complete"));
                if complete {
                    let Some(p) = self.pending.remove(aid) else {
                        return false;
                    };
                    let response = p.response.clone().unwrap_or_else(|| msg.clone());
                    self.finish_list(p, response, Some(msg), now);
                } else if let Origin::Resync(gen) = p.origin {
                    // Items are merged into the map as they arrive; only their count is kept.
                    self.channels.listed(gen, &msg, now);
                    p.count += 1;
                } else {
                    p.items.push(msg);
                    p.count += 1;
                }
                true
            }
            _ => false,
        }
    }

    fn finish_single(&mut self, p: Pending, msg: Message, now: DateTime<Utc>) {
        match p.origin {
            Origin::User(id) => {
                let result = if is_error_response(&msg) {
                    Err(Error::ActionFailed {
                        action: p.action,
                        message: message_text(&msg),
                    })
                } else {
                    Ok(Reply::Response(msg))
                };
                self.outputs.push_back(Output::Reply { id, result });
            }
            Origin::Challenge => match msg
                .get_str("Challenge")
                .filter(|_| !is_error_response(&msg))
            {
                Some(challenge) => {
                    let challenge = challenge.to_string();
                    self.md5_login(&challenge, now);
                }
                None => self.fail_login(message_text(&msg), now),
            },
            Origin::Login => {
                if is_error_response(&msg) {
                    self.fail_login(message_text(&msg), now);
                } else {
                    self.logged_in(now);
                }
            }
            Origin::Ping => {
                self.ping_in_flight = false;
                self.last_pong = Some(now);
                self.events_since_pong = false;
                self.next_ping = Some(after(now, self.cfg.ping_interval));
            }
            Origin::Logoff => self.close(Error::disconnected("logoff"), now),
            Origin::Resync(_) => {}
        }
    }

    fn finish_list_error(&mut self, p: Pending, msg: &Message, now: DateTime<Utc>) {
        match p.origin {
            Origin::User(id) => self.outputs.push_back(Output::Reply {
                id,
                result: Err(Error::ActionFailed {
                    action: p.action,
                    message: message_text(msg),
                }),
            }),
            Origin::Resync(_) => {
                self.resync_in_flight = false;
                let message = message_text(msg);
                // Stay connected: seen Hangups are still exact evidence. The map stays unsynced, so
                // nothing is closed as "gone" until a later listing succeeds (next reconnect).
                let _ = now;
                tracing::error!(server = %self.channels.name(), %message, "CoreShowChannels refused; the map stays unsynced");
                self.outputs.push_back(Output::ResyncRefused { message });
            }
            _ => {}
        }
    }

    fn finish_list(
        &mut self,
        p: Pending,
        response: Message,
        complete: Option<Message>,
        now: DateTime<Utc>,
    ) {
        let declared = complete
            .as_ref()
            .and_then(|c| c.get_str("ListItems"))
            .and_then(|n| n.trim().parse::<usize>().ok());
        match p.origin {
            Origin::User(id) => {
                let result = match declared {
                    Some(n) if n != p.items.len() => Err(Error::ListIncomplete {
                        action: p.action,
                        received: p.items.len(),
                    }),
                    _ => Ok(Reply::List(Box::new(EventList {
                        response,
                        items: p.items,
                        complete,
                    }))),
                };
                self.outputs.push_back(Output::Reply { id, result });
            }
            Origin::Resync(gen) => {
                self.resync_in_flight = false;
                let received = p.count;
                if declared.is_some_and(|n| n != received) {
                    tracing::warn!(server = %self.channels.name(), received, declared, "CoreShowChannels listing incomplete; listing again");
                    self.start_resync(now);
                    return;
                }
                if let Some(outcome) = self.channels.finish_listing(gen, now) {
                    tracing::info!(server = %self.channels.name(), live = outcome.live, gone = outcome.gone, "channel map resynced");
                    self.outputs.push_back(Output::Resynced {
                        epoch: self.channels.epoch(),
                        outcome,
                    });
                }
            }
            _ => {}
        }
    }
}
