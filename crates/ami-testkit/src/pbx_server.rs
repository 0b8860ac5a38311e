//! [`PbxServer`]: a [`ScriptedPbx`] behind a TCP listener.
//!
//! Every connection gets the banner, then answers to its actions from the PBX, and, once logged in, every
//! event the PBX produces (commands run through [`PbxServer::with`], or a flow played with
//! [`PbxServer::autoplay`]). A listing is taken under the same lock that orders the events, so each
//! connection sees exactly the events before its listing, then the listing: no event can fall between the
//! two. A connection that falls too far behind is closed, as Asterisk drops a slow reader. A connection belongs
//! to the boot of Asterisk it reached: after a restart or a crash it hears nothing of the new boot (it is
//! another process), however late it is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ami_proto::{Frame, Limits, Parser};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::pbx::ScriptedPbx;
use crate::session::BANNER;

/// Events buffered per connection before it counts as a slow reader and is closed.
pub const EVENT_BACKLOG: usize = 16 * 1024;

struct Shared {
    pbx: Mutex<ScriptedPbx>,
    /// Encoded events, with the boot that produced them.
    events: broadcast::Sender<(u64, Bytes)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ScriptedPbx> {
        self.pbx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what the PBX produced since the last call; must be called with the lock held.
    fn flush(&self, pbx: &mut ScriptedPbx) {
        // One send per run of events from the same boot (a restart in between starts a new run).
        let mut run: Option<(u64, BytesMut)> = None;
        for (boot, event) in pbx.drain_events_by_boot() {
            match &mut run {
                Some((b, buf)) if *b == boot => event.encode_into(buf),
                _ => {
                    if let Some((b, buf)) = run.take() {
                        let _ = self.events.send((b, buf.freeze()));
                    }
                    let mut buf = BytesMut::new();
                    event.encode_into(&mut buf);
                    run = Some((boot, buf));
                }
            }
        }
        if let Some((b, buf)) = run {
            let _ = self.events.send((b, buf.freeze()));
        }
    }
}

/// A running scripted PBX on TCP; dropping it stops the server and closes its connections.
pub struct PbxServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    control: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for PbxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PbxServer")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Drop for PbxServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl PbxServer {
    /// Serves `pbx` on `bind` (e.g. `127.0.0.1:0`).
    pub async fn start(pbx: ScriptedPbx, bind: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let shared = Arc::new(Shared {
            pbx: Mutex::new(pbx),
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

    /// Runs `f` on the PBX (a command, a step of a flow, a clock change), then sends the events it
    /// produced to every logged-in connection.
    pub fn with<R>(&self, f: impl FnOnce(&mut ScriptedPbx) -> R) -> R {
        let mut pbx = self.shared.lock();
        let r = f(&mut pbx);
        self.shared.flush(&mut pbx);
        r
    }

    /// Closes every open connection now, as a network failure would. The PBX keeps its state.
    pub fn drop_connection(&self) {
        self.control.send_modify(|g| *g += 1);
    }

    /// Plays the PBX's flow, one event every `interval` (tokio time), in a task; the handle ends with the
    /// flow.
    pub fn autoplay(&self, interval: Duration) -> JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut pbx = shared.lock();
                let played = pbx.play_next().is_some();
                shared.flush(&mut pbx);
                if !played {
                    return;
                }
            }
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, control: watch::Receiver<u64>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Subscribe before the banner: nothing the PBX does from now on is missed.
        let events = shared.events.subscribe();
        let mut control = control.clone();
        control.mark_unchanged();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = serve(stream, &shared, events, control).await;
        });
    }
}

async fn serve(
    stream: TcpStream,
    shared: &Shared,
    mut events: broadcast::Receiver<(u64, Bytes)>,
    mut control: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(format!("{BANNER}\r\n").as_bytes()).await?;
    let (mut session, boot) = {
        let pbx = shared.lock();
        (pbx.new_session(), pbx.boot())
    };
    let mut parser = Parser::without_banner(Limits::default());
    let mut rbuf = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            biased;
            _ = control.changed() => break,
            ev = events.recv() => match ev {
                Ok((b, bytes)) => if session.logged_in && b == boot {
                    wr.write_all(&bytes).await?;
                },
                // Too slow, or the server is gone.
                Err(_) => break,
            },
            read = rd.read_buf(&mut rbuf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
                let mut out = BytesMut::new();
                let mut close = false;
                while let Some(frame) = parser.next_frame(&mut rbuf) {
                    let Ok(Frame::Message(action)) = frame else { continue };
                    let mut pbx = shared.lock();
                    // Events sent before this point precede the answer.
                    while let Ok((b, bytes)) = events.try_recv() {
                        if session.logged_in && b == boot {
                            out.extend_from_slice(&bytes);
                        }
                    }
                    let reply = pbx.handle_action(&mut session, &action);
                    drop(pbx);
                    for m in &reply.messages {
                        m.encode_into(&mut out);
                    }
                    if reply.close {
                        close = true;
                        break;
                    }
                }
                wr.write_all(&out).await?;
                if close {
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}
