//! [`Connection`]: the tokio task that drives a [`Core`] over a socket and reconnects forever.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clock::{Clock, SharedClock};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::channels::ChannelMap;
use crate::client::{Client, Command, Event, Shared, State, Subscriber};
use crate::codec::AmiCodec;
use crate::config::Config;
use crate::connector::{BoxedTransport, Connector, TcpConnector};
use crate::core::{Core, Output, Reply, RequestId};
use crate::error::Error;
use crate::reader::{self, Read};

/// Capacity of the client-to-connection request queue.
const COMMAND_QUEUE: usize = 1024;

/// A wall clock that advances with tokio's monotonic clock (and so with `tokio::time::pause` in tests).
///
/// It reads the system time once, at creation, then adds tokio's elapsed time: immune to wall-clock jumps
/// while running, and virtual under paused time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Anchors the clock at the current system time.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// Anchors the clock at `start_wall`.
    pub fn starting_at(start_wall: DateTime<Utc>) -> Self {
        Self {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.start.elapsed();
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}

/// Connects to the Asterisk described by `cfg` over TCP (TLS for `amis://`).
///
/// Returns the [`Client`] handle and the [`Connection`] task; spawn `Connection::run()`. Events are applied
/// to `map` under `cfg.server`; time comes from `clock`.
pub fn connect(cfg: Config, map: ChannelMap, clock: SharedClock) -> (Client, Connection) {
    let connector = TcpConnector::new(&cfg);
    connect_with(cfg, map, clock, connector)
}

/// Like [`connect`], with a custom [`Connector`] (tests use `tokio::io::duplex` streams).
pub fn connect_with(
    cfg: Config,
    map: ChannelMap,
    clock: SharedClock,
    connector: impl Connector,
) -> (Client, Connection) {
    let channels = map.server(&cfg.server);
    let (state, _) = watch::channel(State::Connecting);
    let shared = Arc::new(Shared {
        subscribers: Mutex::new(Vec::new()),
        state,
        channels,
        buffer: cfg.event_buffer,
        events: Default::default(),
        lagged: Default::default(),
        logins: Default::default(),
        failed_attempts: Default::default(),
    });
    let (cmd, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let backoff = Backoff::new(&cfg.backoff);
    let connection = Connection {
        cfg,
        clock,
        connector: Box::new(connector),
        shared: shared.clone(),
        cmd_rx,
        cancel: CancellationToken::new(),
        backoff,
    };
    (Client { cmd, shared }, connection)
}

/// The connection task. Owns the socket, the [`Core`] and the reconnect loop; see [`Client`] for the behavior.
pub struct Connection {
    cfg: Config,
    clock: SharedClock,
    connector: Box<dyn Connector>,
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    backoff: Backoff,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why one session ended.
enum Exit {
    /// Every client dropped or the task was cancelled: stop.
    Shutdown,
    /// Reconnect at once.
    Reconnect,
    /// The session failed; reconnect after the backoff delay.
    Failed { logged_in: bool },
}

impl Connection {
    /// A token that stops the connection (after `Logoff`) when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    fn set_state(&self, state: State) {
        self.shared.state.send_replace(state);
    }

    fn disconnected(&self, reason: String) {
        let since = self.clock.now();
        self.set_state(State::Disconnected { since, reason });
    }

    /// Runs until every [`Client`] is dropped or the cancel token fires: connects, logs in, resyncs, serves,
    /// and on any failure reconnects after a backoff delay.
    pub async fn run(mut self) -> Result<(), Error> {
        loop {
            self.set_state(State::Connecting);
            let attempt = tokio::time::timeout(self.cfg.connect_timeout, self.connector.connect());
            let stream = tokio::select! {
                r = attempt => r,
                exit = wait_commands(&mut self.cmd_rx, &self.cancel) => match exit {
                    Exit::Shutdown => return Ok(()),
                    _ => continue,
                },
            };
            let exit = match stream {
                Ok(Ok(stream)) => self.serve(stream).await,
                Ok(Err(err)) => {
                    tracing::warn!(server = %self.cfg.server, address = %self.cfg.address(), error = %err, "AMI connect failed");
                    self.disconnected(Error::from(err).to_string());
                    Exit::Failed { logged_in: false }
                }
                Err(_) => {
                    tracing::warn!(server = %self.cfg.server, address = %self.cfg.address(), "AMI connect timed out");
                    self.disconnected(Error::Timeout { what: "connect" }.to_string());
                    Exit::Failed { logged_in: false }
                }
            };
            match exit {
                Exit::Shutdown => return Ok(()),
                Exit::Reconnect => {
                    self.backoff.reset();
                    continue;
                }
                Exit::Failed { logged_in } => {
                    if logged_in {
                        self.backoff.reset();
                    } else {
                        self.shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    }
                    let delay = self.backoff.next_delay();
                    tracing::debug!(server = %self.cfg.server, ?delay, attempts = self.backoff.attempts(), "AMI reconnect backoff");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        exit = wait_commands(&mut self.cmd_rx, &self.cancel) => {
                            if let Exit::Shutdown = exit {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    async fn serve(&mut self, stream: BoxedTransport) -> Exit {
        let now = self.clock.now();
        let mut core = Core::new(self.cfg.clone(), self.shared.channels.clone(), now);
        let (rd, mut wr) = tokio::io::split(stream);
        // Reading and framing run beside the core (channel map, correlation, fan-out): see `reader`.
        let (decoded_tx, mut decoded) = mpsc::channel(reader::QUEUE);
        let _reader = reader::spawn(rd, AmiCodec::new(self.cfg.limits), decoded_tx);
        let mut wbuf = bytes::BytesMut::new();
        let mut replies: HashMap<RequestId, oneshot::Sender<Result<Reply, Error>>> = HashMap::new();
        let mut logged_in = false;
        let mut shutting_down = false;
        let mut reconnect = false;
        let mut fanout = Fanout::default();
        loop {
            // Hand out everything the core produced.
            while let Some(out) = core.poll_event() {
                match out {
                    Output::Event(m) => fanout.push(Event::Message(m)),
                    Output::Reply { id, result } => {
                        if let Some(tx) = replies.remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Output::LoggedIn { epoch, banner } => {
                        logged_in = true;
                        self.shared.logins.fetch_add(1, Ordering::Relaxed);
                        self.set_state(State::LoggedIn);
                        fanout.push(Event::Connected { epoch, banner });
                    }
                    Output::Syncing => self.set_state(State::Syncing),
                    Output::ResyncRefused { .. } => self.set_state(State::LoggedIn),
                    Output::Resynced { epoch, outcome } => {
                        self.set_state(State::Synced);
                        fanout.push(Event::Resynced {
                            epoch,
                            live: outcome.live,
                            gone: outcome.gone,
                        });
                    }
                    Output::Closed(err) => {
                        if err.is_auth() {
                            tracing::error!(server = %self.cfg.server, error = %err, "AMI login refused");
                        } else {
                            tracing::warn!(server = %self.cfg.server, error = %err, "AMI connection closed");
                        }
                        let reason = err.to_string();
                        fanout.push(Event::Disconnected {
                            reason: reason.clone(),
                        });
                        // A lag here needs no resync: the connection is gone and the next login lists anyway.
                        let _ = fanout.flush(&self.shared);
                        self.disconnected(reason);
                        let _ = wr.shutdown().await;
                        return if shutting_down {
                            Exit::Shutdown
                        } else if reconnect {
                            Exit::Reconnect
                        } else {
                            Exit::Failed { logged_in }
                        };
                    }
                }
            }
            let delivered = fanout.has_events();
            if fanout.flush(&self.shared) {
                core.request_resync(self.clock.now());
                continue;
            }
            if delivered {
                // Let the subscribers run: woken from this task, they are scheduled next on this worker,
                // but only once it yields. Without this a busy stream would run this task through many
                // reads (its whole cooperative budget) while their queues fill.
                tokio::task::yield_now().await;
            }
            if let Some(bytes) = core.poll_transmit() {
                wbuf.extend_from_slice(&bytes);
            }
            let sleep_for = core
                .next_deadline()
                .map(|d| (d - self.clock.now()).to_std().unwrap_or(Duration::ZERO));
            tokio::select! {
                biased;
                cmd = self.cmd_rx.recv(), if !shutting_down => match cmd {
                    Some(Command::Request { action, kind, reply }) => {
                        match core.submit(action, kind, self.clock.now()) {
                            Ok(id) => { replies.insert(id, reply); }
                            Err(err) => { let _ = reply.send(Err(err)); }
                        }
                    }
                    Some(Command::Reconnect) => {
                        reconnect = true;
                        core.close(Error::disconnected("reconnect requested"), self.clock.now());
                    }
                    Some(Command::Resync) => core.request_resync(self.clock.now()),
                    None => {
                        shutting_down = true;
                        core.logoff(self.clock.now());
                    }
                },
                _ = self.cancel.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    core.logoff(self.clock.now());
                }
                r = write_all(&mut wr, &mut wbuf), if !wbuf.is_empty() => {
                    if let Err(err) = r {
                        core.close(err.into(), self.clock.now());
                    }
                }
                read = decoded.recv() => match read {
                    Some(Read::Frames { items, bytes }) => core.handle_decoded(items, bytes, self.clock.now()),
                    Some(Read::Eof { pending }) => core.handle_eof_after(pending, self.clock.now()),
                    Some(Read::Failed(err)) => core.close(err.into(), self.clock.now()),
                    None => core.handle_eof(self.clock.now()),
                },
                _ = sleep_opt(sleep_for) => core.handle_timeout(self.clock.now()),
            }
        }
    }
}

async fn write_all<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut bytes::BytesMut,
) -> std::io::Result<()> {
    wr.write_all_buf(buf).await?;
    wr.flush().await
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Serves clients while no session is up: requests fail at once. Returns on shutdown or a reconnect request.
async fn wait_commands(rx: &mut mpsc::Receiver<Command>, cancel: &CancellationToken) -> Exit {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Exit::Shutdown,
            cmd = rx.recv() => match cmd {
                None => return Exit::Shutdown,
                Some(Command::Reconnect) => return Exit::Reconnect,
                Some(Command::Resync) => {}
                Some(Command::Request { reply, .. }) => {
                    let _ = reply.send(Err(Error::disconnected("not connected")));
                }
            },
        }
    }
}

/// Events waiting to be handed to subscribers, flushed once per read.
#[derive(Default)]
struct Fanout {
    queue: Vec<Event>,
    /// Size of the last batch: each batch is handed over whole, so the next one starts at that capacity
    /// instead of growing (and copying) its way up from empty.
    last_batch: usize,
}

impl Fanout {
    fn has_events(&self) -> bool {
        !self.queue.is_empty()
    }

    fn push(&mut self, e: Event) {
        if self.queue.capacity() == 0 {
            self.queue.reserve(self.last_batch);
        }
        self.queue.push(e);
    }

    /// Sends the queued events to every subscriber without waiting, as one batch each. Returns true when a
    /// subscriber started lagging (the caller requests a resync).
    fn flush(&mut self, shared: &Shared) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let mut subs = shared.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.queue.len() as u64;
        self.last_batch = self.queue.len();
        let mut new_lag = false;
        subs.retain(|s| !s.tx.is_closed());
        let batch = std::mem::take(&mut self.queue);
        if let Some((last, rest)) = subs.split_last_mut() {
            for sub in rest {
                new_lag |= deliver(sub, batch.clone(), shared);
            }
            new_lag |= deliver(last, batch, shared);
        }
        shared.events.fetch_add(n, Ordering::Relaxed);
        new_lag
    }
}

/// Hands `batch` to `sub`, as far as its capacity allows; the rest is counted as lag. True when the
/// subscriber starts lagging.
fn deliver(sub: &mut Subscriber, mut batch: Vec<Event>, shared: &Shared) -> bool {
    let queued = sub.queued.load(Ordering::Acquire);
    let room = sub.capacity.saturating_sub(queued);
    let was_lagging = sub.lagged > 0;
    if was_lagging && room > 0 {
        batch.insert(0, Event::Lagged(sub.lagged));
        sub.lagged = 0;
    }
    if batch.len() > room {
        // Over capacity: drop AMI messages only. Connected / Resynced / Disconnected are rare and always
        // delivered, so a lagging consumer still learns that the session changed.
        let mut kept = 0usize;
        let mut missed = 0u64;
        batch.retain(|e| {
            let keep = !matches!(e, Event::Message(_)) || kept < room;
            if keep {
                kept += 1;
            } else {
                missed += 1;
            }
            keep
        });
        sub.lagged += missed;
        shared.lagged.fetch_add(missed, Ordering::Relaxed);
    }
    if !batch.is_empty() {
        sub.queued.fetch_add(batch.len(), Ordering::AcqRel);
        let _ = sub.tx.send(batch);
    }
    !was_lagging && sub.lagged > 0
}
