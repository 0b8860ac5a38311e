//! A TCP proxy whose faults are switched at run time, for tests and benches: it sits between callwatch and
//! AMI, or between callwatch and PostgreSQL / MariaDB, and fails the way networks and peers fail.
//!
//! Faults (each switchable while connections are live):
//! - **cut** ([`FaultProxy::cut`]): every live connection is reset (RST) and the listening socket is closed,
//!   so new connections are refused, for a while;
//! - **half-open** ([`FaultProxy::set_half_open`]): sockets stay open, nothing is forwarded either way;
//! - **latency** ([`FaultProxy::set_latency`]): every chunk is delivered that much later, in order;
//! - **bandwidth throttle** ([`FaultProxy::set_bandwidth`]): bytes per second each way, per connection;
//! - **reset in the middle of a frame** ([`FaultProxy::reset_after`]): the connection is reset after exactly
//!   `k` more bytes in one direction;
//! - **1-byte segments** ([`FaultProxy::set_one_byte_segments`]): every byte is its own write (`TCP_NODELAY`);
//! - **cut on a pattern** ([`FaultProxy::cut_on`]): when the client sends bytes containing a pattern (e.g.
//!   `COMMIT`), they reach the server, its answer never reaches the client, and the connection dies.
//!
//! [`FaultProxy::tap`] records when the client sent a pattern (e.g. `Action: CoreShowChannels`), so a test can
//! tell when a resync began without asking the program under test.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fault_proxy::Error> {
//! use std::time::Duration;
//! let proxy = fault_proxy::FaultProxy::start("127.0.0.1:5038".parse().unwrap()).await?;
//! println!("connect to {}", proxy.local_addr());
//! proxy.set_latency(Duration::from_millis(200));
//! proxy.cut(Duration::from_secs(3)); // reset everything, refuse new connections for 3 s
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod conn;
pub mod error;
pub mod faults;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use faults::{Direction, Faults};

/// How new connections are turned away during a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refusal {
    /// The port is closed: connecting fails with "connection refused" (a host whose server is down). Note
    /// that some clients retry a refused connect until their own timeout (sqlx does, until
    /// `acquire_timeout`).
    #[default]
    Closed,
    /// Connections are accepted and reset at once (a server that dies on every new connection).
    Reset,
}

/// Counters of what the proxy did, for assertions and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections reset by a fault (cut, mid-frame reset, cut on a pattern).
    pub resets: u64,
    /// Bytes forwarded client → server.
    pub to_server: u64,
    /// Bytes forwarded server → client.
    pub to_client: u64,
}

/// Reads a proxy's [`Stats`]; see [`FaultProxy::stats_handle`].
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatsHandle").field(&self.get()).finish()
    }
}

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            to_server: c.to_server.load(Ordering::Relaxed),
            to_client: c.to_client.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    resets: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

/// State shared by the proxy handle, the accept loop and every connection.
pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    pub(crate) faults: watch::Sender<Faults>,
    /// Cancelled to reset every live connection; replaced by a fresh token at once.
    pub(crate) generation: Mutex<CancellationToken>,
    /// Bytes left before a mid-frame reset, per direction (`u64::MAX`: disarmed).
    pub(crate) reset_after: [AtomicU64; 2],
    /// Armed pattern cuts: pattern, and how long the server gets to act on it before both sides die.
    pub(crate) cut_on: Mutex<Vec<(Vec<u8>, Duration)>>,
    /// Patterns watched client → server, with the instants they were seen.
    pub(crate) taps: Mutex<Vec<(Vec<u8>, Vec<Instant>)>>,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn token(&self) -> CancellationToken {
        lock(&self.generation).clone()
    }

    pub(crate) fn reset_all(&self) {
        let mut g = lock(&self.generation);
        g.cancel();
        *g = CancellationToken::new();
    }

    pub(crate) fn count_reset(&self) {
        self.counters.resets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_bytes(&self, dir: Direction, n: usize) {
        let c = match dir {
            Direction::ToServer => &self.counters.to_server,
            Direction::ToClient => &self.counters.to_client,
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy; dropping it stops accepting and resets every connection.
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// `Some((until, how))` while new connections are refused.
    refuse: watch::Sender<Option<(Instant, Refusal)>>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &*self.shared.faults.borrow())
            .finish()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.reset_all();
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`, with no fault.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::Bind)?;
        let local_addr = listener.local_addr().map_err(Error::Bind)?;
        let shared = Arc::new(Shared {
            upstream,
            faults: watch::Sender::new(Faults::default()),
            generation: Mutex::new(CancellationToken::new()),
            reset_after: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            cut_on: Mutex::new(Vec::new()),
            taps: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let (refuse, refuse_rx) = watch::channel(None);
        let accept = tokio::spawn(accept_loop(listener, local_addr, shared.clone(), refuse_rx));
        Ok(Self {
            local_addr,
            shared,
            refuse,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults.borrow().clone()
    }

    /// Replaces every switchable fault at once (see [`Faults`]); [`Faults::default`] clears them.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// Sockets stay open but nothing is forwarded either way (`true`), or forwarding resumes (`false`).
    pub fn set_half_open(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.half_open = on);
    }

    /// Delays every chunk read from now on by `latency`, keeping order.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Limits each direction of each connection to `bytes_per_second` (`None`: unlimited).
    pub fn set_bandwidth(&self, bytes_per_second: Option<u64>) {
        self.shared
            .faults
            .send_modify(|f| f.bandwidth = bytes_per_second.filter(|b| *b > 0));
    }

    /// Writes every byte on its own (`true`), or whole chunks again (`false`).
    pub fn set_one_byte_segments(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.one_byte_segments = on);
    }

    /// Resets all live connections now (RST to both sides) and refuses new ones for `refuse_for` (the port
    /// closed: [`Refusal::Closed`]).
    pub fn cut(&self, refuse_for: Duration) {
        self.cut_with(refuse_for, Refusal::Closed);
    }

    /// Resets all live connections now and turns new ones away for `refuse_for`, as `how` says.
    pub fn cut_with(&self, refuse_for: Duration, how: Refusal) {
        self.refuse
            .send_replace(Some((Instant::now() + refuse_for, how)));
        self.shared.reset_all();
    }

    /// Turns new connections away for `refuse_for`, as `how` says, and leaves the live ones alone (a server
    /// at its connection limit, a pooler refusing clients): sessions already open go on working.
    pub fn refuse_new(&self, refuse_for: Duration, how: Refusal) {
        self.refuse
            .send_replace(Some((Instant::now() + refuse_for, how)));
    }

    /// Whether new connections are refused right now.
    pub fn refusing(&self) -> bool {
        self.refuse
            .borrow()
            .is_some_and(|(until, _)| Instant::now() < until)
    }

    /// Ends a refusal early: connections are accepted again.
    pub fn accept_again(&self) {
        self.refuse.send_replace(None);
    }

    /// Resets the connection that carries the next `k` bytes in `dir`, just after forwarding them: a frame
    /// cut in the middle when `k` falls inside one. One shot.
    pub fn reset_after(&self, dir: Direction, k: u64) {
        self.shared.reset_after[dir.index()].store(k, Ordering::SeqCst);
    }

    /// The next time the client sends bytes containing `pattern`, they are forwarded, the server's answer is
    /// never forwarded, and after `settle` (time for the server to act on them) both sides are reset. One
    /// shot per call; the number of cuts made shows in [`Stats::resets`].
    pub fn cut_on(&self, pattern: &[u8], settle: Duration) {
        lock(&self.shared.cut_on).push((pattern.to_vec(), settle));
    }

    /// Starts recording when the client sends `pattern` (see [`tap_hits`](Self::tap_hits)).
    pub fn tap(&self, pattern: &[u8]) {
        let mut taps = lock(&self.shared.taps);
        if !taps.iter().any(|(p, _)| p == pattern) {
            taps.push((pattern.to_vec(), Vec::new()));
        }
    }

    /// The instants the client sent `pattern`, oldest first (empty unless [`tap`](Self::tap)ped).
    pub fn tap_hits(&self, pattern: &[u8]) -> Vec<Instant> {
        lock(&self.shared.taps)
            .iter()
            .find(|(p, _)| p == pattern)
            .map(|(_, hits)| hits.clone())
            .unwrap_or_default()
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> Stats {
        self.stats_handle().get()
    }

    /// A handle that reads the counters from another task, even after the proxy is dropped.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut refuse: watch::Receiver<Option<(Instant, Refusal)>>,
) {
    loop {
        let refusal = *refuse.borrow_and_update();
        let refusal = refusal.filter(|(u, _)| *u > Instant::now());
        if let Some((until, Refusal::Reset)) = refusal {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        conn::reset(client);
                    }
                }
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = refuse.changed() => {}
            }
            continue;
        }
        if let Some((until, Refusal::Closed)) = refusal {
            // Close the listening socket: connections are refused by the kernel, as by a host that is down.
            drop(listener);
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = refuse.changed() => {}
            }
            listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    tokio::task::yield_now().await;
                    continue;
                };
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(conn::serve(client, shared.clone()));
            }
            _ = refuse.changed() => {}
        }
    }
}
