//! [`LoadServer`]: streams a generated AMI event stream ([`ami_proto::synthetic`]) as fast as the socket
//! takes it, for loopback load tests and benchmarks of a client.
//!
//! Each connection gets the banner, waits for the client's `Login`, answers it, then streams the
//! generator's `FullyBooted` and calls. Between writes it answers `Ping`, `CoreShowChannels` (an empty
//! listing, which is the truth there: the generator's calls do not overlap and every write ends on a call
//! boundary) and `Logoff`; other actions get an error. After the last call it closes the connection, or
//! keeps it open when configured so.
//!
//! With [`LoadConfig::pregenerate`] the stream is generated once, before the server starts listening, and
//! every connection is served from memory: the server then costs only its socket writes, as a real Asterisk
//! on its own machine would cost the client nothing. Without it, each connection generates as it goes
//! (no memory held, but the generator competes with the client for CPU on a small machine).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ami_proto::synthetic::Synthetic;
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::pairing::{error_response, goodbye, login_accepted, pong};
use crate::session::BANNER;

/// Bytes gathered before each write.
pub const WRITE_BATCH: usize = 256 * 1024;

/// Options of a [`LoadServer`].
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Address to listen on; `127.0.0.1:0` by default.
    pub bind: SocketAddr,
    /// Calls per connection (93 events each).
    pub calls: usize,
    /// Generator seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Close each connection after its last call (default), or keep it open.
    pub close_at_end: bool,
    /// Generate the stream once at start and serve it from memory (off by default).
    pub pregenerate: bool,
}

impl LoadConfig {
    /// `calls` calls per connection from seed 1 on `127.0.0.1:0`, closing at the end.
    pub fn new(calls: usize) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            calls,
            seed: 1,
            close_at_end: true,
            pregenerate: false,
        }
    }
}

/// What a load server has sent, over all connections.
#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    connections: AtomicU64,
}

/// A running load server; dropping it stops accepting.
pub struct LoadServer {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for LoadServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadServer")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Drop for LoadServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl LoadServer {
    /// Binds and starts serving.
    pub async fn start(config: LoadConfig) -> Result<Self> {
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let pregenerated = config
            .pregenerate
            .then(|| Arc::new(Pregenerated::new(config.calls, config.seed)));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (c, config) = (c.clone(), config.clone());
                let source = match &pregenerated {
                    Some(p) => Source::Memory {
                        stream: p.clone(),
                        next: 0,
                    },
                    None => Source::Generator(Box::new(Synthetic::new(config.calls, config.seed))),
                };
                tokio::spawn(async move {
                    let _ = serve(stream, source, &config, &c).await;
                });
            }
        });
        Ok(Self {
            local_addr,
            counters,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Bytes written so far, over all connections.
    pub fn bytes_sent(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }
}

/// A whole generated stream held in memory.
struct Pregenerated {
    /// From the generator's `FullyBooted` on (its banner and Login answer are the server's own).
    preamble: Bytes,
    /// The calls, back to back.
    calls: Bytes,
    /// End offset of each call in `calls`: writes are cut there, so answers never land inside a message.
    call_ends: Vec<usize>,
}

impl Pregenerated {
    fn new(calls: usize, seed: u64) -> Self {
        let mut gen = Synthetic::new(calls, seed);
        let mut pre = Vec::new();
        gen.next_chunk(&mut pre);
        let mut body = Vec::new();
        let mut call_ends = Vec::with_capacity(calls);
        while gen.next_chunk(&mut body) {
            call_ends.push(body.len());
        }
        Self {
            preamble: Bytes::from(fully_booted_on(&pre).to_vec()),
            calls: Bytes::from(body),
            call_ends,
        }
    }
}

/// The generator's preamble from its `FullyBooted` event on (empty if it has none).
fn fully_booted_on(pre: &[u8]) -> &[u8] {
    match pre.windows(19).position(|w| w == b"Event: FullyBooted\r") {
        Some(at) => &pre[at..],
        None => &[],
    }
}

/// Where a connection's calls come from.
enum Source {
    /// Generated as the connection goes.
    Generator(Box<Synthetic>),
    /// Cut from a stream generated at start; `next` is the offset of the next unsent byte.
    Memory {
        stream: Arc<Pregenerated>,
        next: usize,
    },
}

impl Source {
    /// The preamble to send after the Login answer.
    fn preamble(&mut self, out: &mut Vec<u8>) {
        match self {
            Source::Generator(gen) => {
                let mut pre = Vec::new();
                Synthetic::next_chunk(gen, &mut pre);
                out.extend_from_slice(fully_booted_on(&pre));
            }
            Source::Memory { stream, .. } => out.extend_from_slice(&stream.preamble),
        }
    }

    /// The next batch of whole calls, about [`WRITE_BATCH`] bytes: appended to `out` (generator) or returned
    /// as a slice of the shared stream (memory). `more` is set to false after the last call.
    fn next_batch(&mut self, out: &mut Vec<u8>, more: &mut bool) -> Option<Bytes> {
        match self {
            Source::Generator(gen) => {
                while out.len() < WRITE_BATCH {
                    if !Synthetic::next_chunk(gen, out) {
                        *more = false;
                        break;
                    }
                }
                None
            }
            Source::Memory { stream, next } => {
                let want = *next + WRITE_BATCH;
                let ends = &stream.call_ends;
                let end = match ends.partition_point(|&e| e < want) {
                    i if i < ends.len() => ends[i],
                    _ => stream.calls.len(),
                };
                let batch = stream.calls.slice(*next..end);
                *next = end;
                if end == stream.calls.len() {
                    *more = false;
                }
                Some(batch)
            }
        }
    }
}

/// Answers every complete action in `rbuf`; true when the client logged off.
fn answer(parser: &mut Parser, rbuf: &mut BytesMut, out: &mut Vec<u8>) -> bool {
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
            "coreshowchannels" => {
                let mut start = vec![("Response", "Success")];
                let mut done = vec![("Event", "CoreShowChannelsComplete")];
                if let Some(id) = id {
                    start.push(("ActionID", id));
                    done.push(("ActionID", id));
                }
                start.extend([("EventList", "start"), ("Message", "Channels will follow")]);
                done.extend([("EventList", "Complete"), ("ListItems", "0")]);
                out.extend_from_slice(Message::from_pairs(start).raw());
                out.extend_from_slice(Message::from_pairs(done).raw());
            }
            "login" => out.extend_from_slice(&login_accepted(id)),
            _ => out.extend_from_slice(&error_response(id, "Not supported by the load generator")),
        }
    }
    false
}

/// Reads whatever the client has sent without waiting; false when it has closed.
fn poll_input(rd: &OwnedReadHalf, rbuf: &mut BytesMut) -> bool {
    let mut tmp = [0u8; 4096];
    loop {
        match rd.try_read(&mut tmp) {
            Ok(0) => return false,
            Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

async fn serve(
    stream: TcpStream,
    mut source: Source,
    config: &LoadConfig,
    counters: &Counters,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let mut parser = Parser::without_banner(Limits::default());
    let mut rbuf = BytesMut::with_capacity(4096);
    let banner = format!("{BANNER}\r\n");
    wr.write_all(banner.as_bytes()).await?;
    counters
        .bytes
        .fetch_add(banner.len() as u64, Ordering::Relaxed);
    // Wait for the Login.
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
            let denied = error_response(m.action_id(), "Permission denied");
            wr.write_all(&denied).await?;
        }
        if let Some(id) = found {
            break id;
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH + 64 * 1024);
    buf.extend_from_slice(&login_accepted(login_id.as_deref()));
    source.preamble(&mut buf);
    let mut more = true;
    while more {
        let batch = source.next_batch(&mut buf, &mut more);
        if !poll_input(&rd, &mut rbuf) {
            return Ok(());
        }
        let logoff = answer(&mut parser, &mut rbuf, &mut buf);
        wr.write_all(&buf).await?;
        let mut sent = buf.len();
        if let Some(batch) = batch {
            wr.write_all(&batch).await?;
            sent += batch.len();
        }
        counters.bytes.fetch_add(sent as u64, Ordering::Relaxed);
        buf.clear();
        if logoff {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
    if !config.close_at_end {
        loop {
            if rd.read_buf(&mut rbuf).await? == 0 {
                return Ok(());
            }
            let logoff = answer(&mut parser, &mut rbuf, &mut buf);
            wr.write_all(&buf).await?;
            buf.clear();
            if logoff {
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    drain_until_closed(rd).await;
    Ok(())
}

/// After the last byte was sent (and the write side shut down), reads until the client closes, for at
/// most [`CLOSE_GRACE`]. Closing a socket with unread input (a keepalive `Ping` sent meanwhile) makes the
/// kernel reset the connection, and the client's kernel then discards whatever the client has not read
/// yet: the tail of the stream would be lost.
async fn drain_until_closed(mut rd: OwnedReadHalf) {
    let mut tmp = [0u8; 4096];
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Ok(n) = rd.read(&mut tmp).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

/// How long a finished session waits for the client to close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
