//! [`FakeAmi`]: a TCP server that plays [`Session`]s to successive connections.
//!
//! Connection *i* gets session *i*. Each session is played at its recorded pace divided by a speed factor
//! (or as fast as the socket takes it), through an [`ActionPairing`] so that the client's ActionIDs come back
//! and no recorded response arrives before the client asked for it. When a session's recording ends with a
//! close, the server closes the connection at that moment; a session without a close note (an event list)
//! stays open, answering actions, until the client leaves. A connection ends in order: FIN after the last
//! byte, then the server reads until the client closes (at most [`CLOSE_GRACE`]), so that nothing the
//! client writes meanwhile (a keepalive `Ping`) resets the connection and loses the stream's tail.
//!
//! Between sessions, when pacing, a connection that arrives before the next session's recorded connect time
//! (measured from the previous connection's close, or from its accept while it is still open) is accepted
//! and closed at once, so a recorded disconnection gap really is a gap. After the last session every new
//! connection is closed at once, unless [`FakeAmiConfig::looping`] starts over.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ami_proto::{Frame, Limits, Parser};
use bytes::BytesMut;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pairing::{ActionPairing, ClientOutcome, Progress, UnsentPolicy};
use crate::session::Session;

/// How fast sessions are played.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Pace {
    /// At the recorded pace divided by `speed` (2.0 = twice as fast).
    Recorded {
        /// Speed factor, a positive number.
        speed: f64,
    },
    /// As fast as the socket takes it; no gaps between sessions.
    MaxSpeed,
}

/// Options of a [`FakeAmi`].
#[derive(Debug, Clone)]
pub struct FakeAmiConfig {
    /// Address to listen on; `127.0.0.1:0` by default.
    pub bind: SocketAddr,
    /// The sessions, served to connections in order.
    pub sessions: Vec<Arc<Session>>,
    /// Playing speed.
    pub pace: Pace,
    /// What to do with recorded responses the client has not asked for.
    pub policy: UnsentPolicy,
    /// Per session (by index): close the connection once this many recorded bytes have been sent.
    pub cut_at: Vec<(usize, usize)>,
    /// Per session (by index): once this many recorded bytes have been sent, send nothing more, answer
    /// nothing (not even `Ping`), but keep the socket open: a half-open connection.
    pub silent_at: Vec<(usize, usize)>,
    /// After the last session, start again with the first instead of closing new connections.
    pub looping: bool,
    /// With [`UnsentPolicy::Wait`]: how long to wait for a client action before giving up on it and going on
    /// without its response (`None`: wait forever). A live client that never sends an action the recording's
    /// client sent (e.g. `Status`) then still gets the rest of the recording.
    pub unsent_grace: Option<Duration>,
}

impl FakeAmiConfig {
    /// Serves `sessions` at recorded pace on `127.0.0.1:0`.
    pub fn new(sessions: impl IntoIterator<Item = Session>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            sessions: sessions.into_iter().map(Arc::new).collect(),
            pace: Pace::Recorded { speed: 1.0 },
            policy: UnsentPolicy::Wait,
            cut_at: Vec::new(),
            silent_at: Vec::new(),
            looping: false,
            unsent_grace: None,
        }
    }

    /// Waits at most `grace` for a recorded action the client has not sent, then goes on without it.
    pub fn unsent_grace(mut self, grace: Duration) -> Self {
        self.unsent_grace = Some(grace);
        self
    }

    /// Listens on `addr`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Plays at the recorded pace divided by `speed`.
    pub fn speed(mut self, speed: f64) -> Self {
        self.pace = Pace::Recorded { speed };
        self
    }

    /// Plays as fast as possible.
    pub fn max_speed(mut self) -> Self {
        self.pace = Pace::MaxSpeed;
        self
    }

    /// Sets the policy for unsent actions' responses.
    pub fn policy(mut self, policy: UnsentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Cuts session `session` after `offset` recorded bytes.
    pub fn cut_at(mut self, session: usize, offset: usize) -> Self {
        self.cut_at.push((session, offset));
        self
    }

    /// Makes session `session` go silent after `offset` recorded bytes.
    pub fn silent_at(mut self, session: usize, offset: usize) -> Self {
        self.silent_at.push((session, offset));
        self
    }

    /// Starts over with the first session after the last one.
    pub fn looping(mut self, looping: bool) -> Self {
        self.looping = looping;
        self
    }
}

/// Why a served connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClosedBy {
    /// The recording closed there.
    Recording,
    /// The client logged off (answered by the server, not the recording).
    Logoff,
    /// The client closed its socket.
    Client,
    /// [`FakeAmi::drop_connection`] or [`FakeAmi::restart`].
    Dropped,
    /// The configured cut offset was reached.
    Cut,
    /// Writing to the client failed.
    WriteError,
}

/// Why a connection was refused (accepted and closed at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// Inside a recorded gap between sessions; the next session is available after `remaining`.
    Gap {
        /// Time left until the next session is served.
        remaining: Duration,
    },
    /// Every session has been served.
    NoMoreSessions,
}

/// What the server did, for progress output and tests ([`FakeAmi::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A connection was accepted and is served `session` (index) named `name`.
    Accepted {
        /// Connection number, from 0.
        connection: u64,
        /// Index of the session served.
        session: usize,
        /// The session's name.
        name: String,
        /// The client's address.
        peer: SocketAddr,
    },
    /// A connection was refused.
    Refused {
        /// The client's address.
        peer: SocketAddr,
        /// Why.
        reason: Refused,
    },
    /// The client sent an action (only its name is reported, never its headers).
    ClientAction {
        /// Connection number.
        connection: u64,
        /// The `Action:` name (empty when missing).
        name: String,
        /// How it was handled.
        outcome: ClientOutcome,
    },
    /// The stream waits for the client to send `action`.
    Waiting {
        /// Connection number.
        connection: u64,
        /// The awaited action's name (`Login` for an event list).
        action: String,
    },
    /// The connection went silent at recorded offset `offset`.
    Silent {
        /// Connection number.
        connection: u64,
        /// Recorded bytes sent before going silent.
        offset: usize,
    },
    /// A connection ended.
    Closed {
        /// Connection number.
        connection: u64,
        /// Recorded bytes of the session sent.
        offset: usize,
        /// Why.
        by: ClosedBy,
    },
}

#[derive(Debug, Default)]
struct State {
    next_session: usize,
    next_connection: u64,
    /// (session index, when) of the last accepted connection.
    last_accept: Option<(usize, Instant)>,
    /// (session index, when) of the last closed connection.
    last_close: Option<(usize, Instant)>,
}

struct Shared {
    config: FakeAmiConfig,
    state: Mutex<State>,
    events: broadcast::Sender<ServerEvent>,
}

impl Shared {
    fn emit(&self, e: ServerEvent) {
        let _ = self.events.send(e);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters inconsistent; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake AMI server; dropping it stops the server and closes its connections.
pub struct FakeAmi {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    control: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeAmi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAmi")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Drop for FakeAmi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn scaled(d: TimeDelta, pace: Pace) -> Duration {
    match pace {
        Pace::MaxSpeed => Duration::ZERO,
        Pace::Recorded { speed } => d.to_std().unwrap_or_default().div_f64(speed),
    }
}

impl FakeAmi {
    /// Binds and starts serving. Must be called inside a tokio runtime.
    pub async fn start(config: FakeAmiConfig) -> Result<Self> {
        if let Pace::Recorded { speed } = config.pace {
            if !(speed.is_finite() && speed > 0.0) {
                return Err(Error::Config(format!(
                    "speed must be a positive number, not {speed}"
                )));
            }
        }
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            events,
        });
        let (control, control_rx) = watch::channel(0u64);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), control_rx));
        Ok(Self {
            local_addr,
            shared,
            control,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Subscribes to what the server does from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.shared.events.subscribe()
    }

    /// Closes every open connection now, as a network failure would; the next connection gets the next
    /// session.
    pub fn drop_connection(&self) {
        self.control.send_modify(|g| *g += 1);
    }

    /// Closes every open connection and starts over with the first session, as an Asterisk restart.
    pub fn restart(&self) {
        {
            let mut st = self.shared.lock();
            st.next_session = 0;
            st.last_accept = None;
            st.last_close = None;
        }
        self.control.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, control: watch::Receiver<u64>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(ok) => ok,
            Err(err) => {
                tracing::warn!(%err, "fake AMI: accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let decision = admit(&shared);
        match decision {
            Err(reason) => {
                shared.emit(ServerEvent::Refused { peer, reason });
                // An orderly close (FIN) rather than a reset, where the client has not written yet.
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = stream.shutdown().await;
                    let mut sink = [0u8; 1024];
                    while let Ok(n) = stream.try_read(&mut sink) {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
            Ok((connection, session)) => {
                let s = shared.config.sessions[session].clone();
                shared.emit(ServerEvent::Accepted {
                    connection,
                    session,
                    name: s.name().to_owned(),
                    peer,
                });
                let shared = shared.clone();
                let mut control = control.clone();
                control.mark_unchanged();
                tokio::spawn(async move {
                    let mut conn = Conn::new(stream, s, session, connection, &shared, control);
                    let by = conn.serve().await;
                    let offset = conn.pairing.position();
                    conn.shut_down().await;
                    // The session ends with its last byte; a recorded gap runs from here.
                    shared.lock().last_close = Some((session, Instant::now()));
                    conn.drain().await;
                    shared.emit(ServerEvent::Closed {
                        connection,
                        offset,
                        by,
                    });
                });
            }
        }
    }
}

/// Picks the session for a new connection, or refuses it.
fn admit(shared: &Shared) -> std::result::Result<(u64, usize), Refused> {
    let cfg = &shared.config;
    let mut st = shared.lock();
    if st.next_session >= cfg.sessions.len() {
        if !cfg.looping || cfg.sessions.is_empty() {
            return Err(Refused::NoMoreSessions);
        }
        st.next_session = 0;
        st.last_accept = None;
        st.last_close = None;
    }
    let i = st.next_session;
    let now = Instant::now();
    if i > 0 {
        let prev = &cfg.sessions[i - 1];
        let cur = &cfg.sessions[i];
        let available = match (st.last_close, st.last_accept) {
            (Some((pi, closed)), _) if pi == i - 1 => {
                let prev_end = prev
                    .closed()
                    .map(|(t, _)| t)
                    .or_else(|| prev.chunks().last().map(|c| c.at));
                closed
                    + scaled(
                        cur.connected_at() - prev_end.unwrap_or(cur.connected_at()),
                        cfg.pace,
                    )
            }
            (_, Some((pi, accepted))) if pi == i - 1 => {
                accepted + scaled(cur.connected_at() - prev.connected_at(), cfg.pace)
            }
            _ => now,
        };
        if now < available {
            return Err(Refused::Gap {
                remaining: available - now,
            });
        }
    }
    st.next_session += 1;
    st.last_accept = Some((i, now));
    let c = st.next_connection;
    st.next_connection += 1;
    Ok((c, i))
}

/// How long an ended connection waits for the client to close before closing anyway (see `Conn::shut_down`).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a wait for client input or time ended with.
enum Woke {
    Time,
    Input,
    Closed(ClosedBy),
}

/// One served connection.
struct Conn<'a> {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    parser: Parser,
    session: Arc<Session>,
    pairing: ActionPairing,
    connection: u64,
    shared: &'a Shared,
    control: watch::Receiver<u64>,
    pace: Pace,
    cut: Option<usize>,
    silent: Option<usize>,
    start: Instant,
    /// Time spent waiting for client actions; the rest of the session is shifted by it.
    shift: Duration,
}

impl<'a> Conn<'a> {
    fn new(
        stream: TcpStream,
        session: Arc<Session>,
        index: usize,
        connection: u64,
        shared: &'a Shared,
        control: watch::Receiver<u64>,
    ) -> Self {
        let (rd, wr) = stream.into_split();
        let cfg = &shared.config;
        let pick =
            |v: &[(usize, usize)]| v.iter().filter(|(i, _)| *i == index).map(|(_, o)| *o).min();
        Self {
            rd,
            wr,
            rbuf: BytesMut::with_capacity(4096),
            parser: Parser::without_banner(Limits::default()),
            pairing: ActionPairing::new(&session, cfg.policy),
            session,
            connection,
            shared,
            control,
            pace: cfg.pace,
            cut: pick(&cfg.cut_at),
            silent: pick(&cfg.silent_at),
            start: Instant::now(),
            shift: Duration::ZERO,
        }
    }

    /// When recorded time `at` is due on this connection.
    fn due(&self, at: DateTime<Utc>) -> Instant {
        self.start + self.shift + scaled(at - self.session.connected_at(), self.pace)
    }

    /// The recording's clock now (stamps `Pong`).
    fn recorded_now(&self) -> DateTime<Utc> {
        match self.pace {
            Pace::MaxSpeed => self
                .session
                .arrival_of(self.pairing.position().saturating_sub(1))
                .unwrap_or_else(|| self.session.connected_at()),
            Pace::Recorded { speed } => {
                let real = self
                    .start
                    .elapsed()
                    .saturating_sub(self.shift)
                    .mul_f64(speed);
                self.session.connected_at() + TimeDelta::from_std(real).unwrap_or(TimeDelta::zero())
            }
        }
    }

    async fn serve(&mut self) -> ClosedBy {
        let chunks: Vec<_> = self.session.chunks().to_vec();
        let stop = match (self.cut, self.silent) {
            (Some(c), Some(s)) => Some(c.min(s)),
            (c, s) => c.or(s),
        };
        let mut ci = 0;
        loop {
            // Skip chunks already produced.
            while ci < chunks.len() && chunks[ci].end() <= self.pairing.position() {
                ci += 1;
            }
            if let Some(stop) = stop {
                if self.pairing.position() >= stop {
                    if self.cut == Some(stop) {
                        return ClosedBy::Cut;
                    }
                    return self.go_silent().await;
                }
            }
            let Some(chunk) = chunks.get(ci).copied() else {
                break;
            };
            let mut upto = match self.pace {
                Pace::MaxSpeed => self.pairing.len(),
                Pace::Recorded { .. } => chunk.end(),
            };
            if let Some(stop) = stop {
                upto = upto.min(stop);
            }
            let when = match self.pace {
                Pace::MaxSpeed => None,
                Pace::Recorded { .. } => Some(self.due(chunk.at)),
            };
            if let Some(when) = when {
                match self.wait(Some(when)).await {
                    Woke::Time => {}
                    Woke::Input => continue,
                    Woke::Closed(by) => return by,
                }
            }
            if let Some(by) = self.produce(upto).await {
                return by;
            }
        }
        // The stream is over: close when the recording closed, or stay and answer.
        let close_at = self.session.closed().map(|(t, _)| self.due(t));
        loop {
            match self.wait(close_at).await {
                Woke::Time => return ClosedBy::Recording,
                Woke::Input => {}
                Woke::Closed(by) => return by,
            }
        }
    }

    /// Produces the stream up to `upto`, waiting for client actions where it must.
    async fn produce(&mut self, upto: usize) -> Option<ClosedBy> {
        loop {
            let out = self.pairing.poll(upto);
            if !out.bytes.is_empty() && self.wr.write_all(&out.bytes).await.is_err() {
                return Some(ClosedBy::WriteError);
            }
            let (awaited, recorded) = match out.progress {
                Progress::Reached => return None,
                Progress::Close => return Some(ClosedBy::Logoff),
                Progress::WaitingFor { name, recorded } => (name, Some(recorded)),
                Progress::WaitingForLogin => ("Login".to_owned(), None),
            };
            self.shared.emit(ServerEvent::Waiting {
                connection: self.connection,
                action: awaited,
            });
            let began = Instant::now();
            let give_up = recorded
                .zip(self.shared.config.unsent_grace)
                .map(|(r, grace)| (r, began + grace));
            loop {
                match self.wait(give_up.map(|(_, at)| at)).await {
                    Woke::Input => break,
                    Woke::Time => {
                        if let Some((r, _)) = give_up {
                            self.pairing.abandon(r);
                            break;
                        }
                    }
                    Woke::Closed(by) => return Some(by),
                }
            }
            if matches!(self.pace, Pace::Recorded { .. }) {
                self.shift += began.elapsed();
            }
        }
    }

    /// Waits for `until` (if any), client input, or a drop. Client actions are handled (and their answers
    /// written) before returning [`Woke::Input`].
    async fn wait(&mut self, until: Option<Instant>) -> Woke {
        let sleep = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = self.control.changed() => {
                let _ = changed;
                Woke::Closed(ClosedBy::Dropped)
            }
            read = self.rd.read_buf(&mut self.rbuf) => match read {
                Ok(0) | Err(_) => Woke::Closed(ClosedBy::Client),
                Ok(_) => match self.handle_input().await {
                    Some(by) => Woke::Closed(by),
                    None => Woke::Input,
                },
            },
            () = sleep => Woke::Time,
        }
    }

    async fn handle_input(&mut self) -> Option<ClosedBy> {
        while let Some(frame) = self.parser.next_frame(&mut self.rbuf) {
            let Ok(Frame::Message(m)) = frame else {
                continue;
            };
            let outcome = self.pairing.on_client_action(&m, self.recorded_now());
            self.shared.emit(ServerEvent::ClientAction {
                connection: self.connection,
                name: m.get_str("Action").unwrap_or_default().to_owned(),
                outcome,
            });
        }
        // Answers go out now if the stream is between messages.
        let out = self.pairing.poll(self.pairing.position());
        if !out.bytes.is_empty() && self.wr.write_all(&out.bytes).await.is_err() {
            return Some(ClosedBy::WriteError);
        }
        (out.progress == Progress::Close).then_some(ClosedBy::Logoff)
    }

    /// Keeps the socket open, reading and ignoring everything, until the client leaves or a drop.
    async fn go_silent(&mut self) -> ClosedBy {
        self.shared.emit(ServerEvent::Silent {
            connection: self.connection,
            offset: self.pairing.position(),
        });
        let mut sink = [0u8; 4096];
        loop {
            tokio::select! {
                biased;
                _ = self.control.changed() => return ClosedBy::Dropped,
                read = self.rd.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) {
                    return ClosedBy::Client;
                },
            }
        }
    }

    /// Ends the connection in order: sends FIN after the last byte, then reads (and discards) what the client
    /// sends until it closes, for at most [`CLOSE_GRACE`].
    ///
    /// Closing a socket that still has unread input, or that receives input after the close (a keepalive
    /// `Ping` the client wrote before it saw the end), makes the kernel reset the connection; the client's
    /// kernel then discards everything the client has not read yet, and a session sent at full speed would
    /// lose its tail.
    async fn shut_down(&mut self) {
        let _ = self.wr.shutdown().await;
    }

    /// See [`Conn::shut_down`]: reads until the client closes, for at most [`CLOSE_GRACE`].
    async fn drain(&mut self) {
        let mut sink = [0u8; 4096];
        let drain = async {
            while let Ok(n) = self.rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
}
