//! [`LoadServer`]: streams a generated AMI event stream ([`ami_proto::synthetic`]) as fast as the socket
//! takes it, for loopback load tests and benchmarks of a client.
//!
//! Each connection gets the banner, waits for the client's `Login`, answers it, then streams the
//! generator's `FullyBooted` and calls. Between writes it answers `Ping`, `CoreShowChannels` (an empty
//! listing, which is the truth there: the generator's calls do not overlap and every write ends on a call
//! boundary) and `Logoff`; other actions get an error. After the last call it closes the connection, or
//! keeps it open when configured so.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ami_proto::synthetic::Synthetic;
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::BytesMut;
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
}

impl LoadConfig {
    /// `calls` calls per connection from seed 1 on `127.0.0.1:0`, closing at the end.
    pub fn new(calls: usize) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            calls,
            seed: 1,
            close_at_end: true,
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
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (c, config) = (c.clone(), config.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &config, &c).await;
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

async fn serve(stream: TcpStream, config: &LoadConfig, counters: &Counters) -> std::io::Result<()> {
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
    let mut gen = Synthetic::new(config.calls, config.seed);
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH + 64 * 1024);
    buf.extend_from_slice(&login_accepted(login_id.as_deref()));
    // The generator's preamble: skip its banner and its own Login response, keep FullyBooted.
    let mut pre = Vec::new();
    gen.next_chunk(&mut pre);
    if let Some(at) = pre.windows(19).position(|w| w == b"Event: FullyBooted\r") {
        buf.extend_from_slice(&pre[at..]);
    }
    let mut more = true;
    while more {
        while buf.len() < WRITE_BATCH {
            if !gen.next_chunk(&mut buf) {
                more = false;
                break;
            }
        }
        if !poll_input(&rd, &mut rbuf) {
            return Ok(());
        }
        let logoff = answer(&mut parser, &mut rbuf, &mut buf);
        wr.write_all(&buf).await?;
        counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
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
    Ok(())
}
