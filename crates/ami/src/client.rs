//! [`Client`]: the cheap, cloneable handle to a running [`Connection`](crate::Connection).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ami_proto::{Action, Message};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::channels::ServerChannels;
use crate::core::{EventList, Reply, ReplyKind};
use crate::error::Error;

/// Connection state, published on a watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Dialing or logging in.
    Connecting,
    /// Logged in; the channel listing has not started yet.
    LoggedIn,
    /// Logged in; the `CoreShowChannels` listing is streaming (the map is not synced).
    Syncing,
    /// Logged in and the map is synced.
    Synced,
    /// Not connected.
    Disconnected {
        /// Since when.
        since: DateTime<Utc>,
        /// Why (e.g. `AMI connection lost: eof`, `AMI authentication failed …`, a connect error).
        reason: String,
    },
}

/// What subscribers receive.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A session logged in (epoch of the channel map).
    Connected {
        /// The new epoch.
        epoch: u64,
        /// The server's greeting line (`Asterisk Call Manager/X.Y.Z`), when it sent one.
        banner: Option<bytes::Bytes>,
    },
    /// An AMI event (already applied to the channel map).
    Message(Message),
    /// This subscriber missed `n` items because it did not keep up; a resync of the map was requested.
    Lagged(u64),
    /// A listing completed; the map is synced.
    Resynced {
        /// Current epoch.
        epoch: u64,
        /// Live channels after the merge.
        live: usize,
        /// Channels reported gone by the merge.
        gone: usize,
    },
    /// The session ended.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// A subscriber's bounded receiver. Dropping it unsubscribes.
///
/// Events travel in batches (one per socket read) so the reader pays one hand-over per read, not per
/// event; at most `capacity` events are queued (a batch being drained counts until it is taken).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Vec<Event>>,
    queued: Arc<AtomicUsize>,
    current: std::vec::IntoIter<Event>,
}

impl Subscription {
    fn take_batch(&mut self, batch: Vec<Event>) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        self.current = batch.into_iter();
    }

    /// The next event; `None` once the connection task has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.current.next() {
                return Some(e);
            }
            let batch = self.rx.recv().await?;
            self.take_batch(batch);
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.current.next() {
                return Some(e);
            }
            let batch = self.rx.try_recv().ok()?;
            self.take_batch(batch);
        }
    }

    /// Moves up to `limit` events into `buf`, waiting for at least one; returns how many (0 at the end).
    pub async fn recv_many(&mut self, buf: &mut Vec<Event>, limit: usize) -> usize {
        let limit = limit.max(1);
        if self.current.len() == 0 {
            match self.rx.recv().await {
                Some(batch) => self.take_batch(batch),
                None => return 0,
            }
        }
        let mut n = 0;
        while n < limit {
            match self.current.next() {
                Some(e) => {
                    buf.push(e);
                    n += 1;
                }
                None => match self.rx.try_recv() {
                    Ok(batch) => self.take_batch(batch),
                    Err(_) => break,
                },
            }
        }
        n
    }
}

/// Counters shared by a connection and its clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Events handed to subscribers.
    pub events: u64,
    /// Events a subscriber missed (sum over subscribers).
    pub lagged: u64,
    /// Sessions that logged in.
    pub logins: u64,
    /// Connect attempts that failed (refused, timed out, bad login).
    pub failed_attempts: u64,
}

#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) tx: mpsc::UnboundedSender<Vec<Event>>,
    /// Events sent and not yet taken by the subscriber.
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) capacity: usize,
    /// Events missed since the last delivered `Lagged`.
    pub(crate) lagged: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) subscribers: Mutex<Vec<Subscriber>>,
    pub(crate) state: watch::Sender<State>,
    pub(crate) channels: ServerChannels,
    pub(crate) buffer: usize,
    pub(crate) events: AtomicU64,
    pub(crate) lagged: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
}

pub(crate) enum Command {
    Request {
        action: Action,
        kind: ReplyKind,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    Reconnect,
    Resync,
}

/// A handle to an AMI connection. Cheap to clone; the [`Connection`](crate::Connection) stops (after sending
/// `Logoff`) when every clone is dropped.
///
/// # Behavior
///
/// - Actions get an automatic `ActionID` (unless they carry one) and are matched to their reply by it.
/// - An action submitted while the connection is logging in waits for the login; one submitted while it is
///   down fails at once with [`Error::Disconnected`]. Nothing is re-sent after a reconnect.
/// - A dropped link fails every pending action with [`Error::Disconnected`], and an event list cut by it with
///   [`Error::ListIncomplete`]: never a partial success.
/// - The connection reconnects forever with exponential backoff and jitter; after each login it lists the
///   channels (`CoreShowChannels`) and the map becomes synced only when the listing completes.
/// - Subscribers get a bounded channel. The socket reader never waits for them: a full channel drops events,
///   counts them, later delivers [`Event::Lagged`] and requests a resync of the map.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
}

impl Client {
    async fn request(&self, action: Action, kind: ReplyKind) -> Result<Reply, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Request {
                action,
                kind,
                reply,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Sends an action and waits for its response. `Response: Error` becomes [`Error::ActionFailed`].
    pub async fn send_action(&self, action: Action) -> Result<Message, Error> {
        match self.request(action, ReplyKind::Single).await? {
            Reply::Response(m) => Ok(m),
            Reply::List(list) => Ok(list.response),
        }
    }

    /// Sends an action that answers with an event list and waits for the whole list.
    pub async fn send_list(&self, action: Action) -> Result<EventList, Error> {
        match self.request(action, ReplyKind::List).await? {
            Reply::List(list) => Ok(*list),
            Reply::Response(response) => Ok(EventList {
                response,
                items: Vec::new(),
                complete: None,
            }),
        }
    }

    /// The connection state.
    pub fn state(&self) -> watch::Receiver<State> {
        self.shared.state.subscribe()
    }

    /// A new subscriber with the configured buffer size.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_with_capacity(self.shared.buffer)
    }

    /// A new subscriber with its own buffer size.
    pub fn subscribe_with_capacity(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let mut subs = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.push(Subscriber {
            tx,
            queued: queued.clone(),
            capacity: capacity.max(1),
            lagged: 0,
        });
        Subscription {
            rx,
            queued,
            current: Vec::new().into_iter(),
        }
    }

    /// Drops the current connection (if any) and reconnects at once.
    pub fn force_reconnect(&self) {
        let _ = self.cmd.try_send(Command::Reconnect);
    }

    /// Asks for a fresh `CoreShowChannels` listing on the current session (no-op while disconnected: the
    /// next login lists anyway). The map stays synced while it streams; when it completes the state goes
    /// through `Syncing` back to `Synced` and channels absent from it are reported gone.
    pub fn resync(&self) {
        let _ = self.cmd.try_send(Command::Resync);
    }

    /// The channels of this connection's server.
    pub fn channels(&self) -> &ServerChannels {
        &self.shared.channels
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            events: self.shared.events.load(Ordering::Relaxed),
            lagged: self.shared.lagged.load(Ordering::Relaxed),
            logins: self.shared.logins.load(Ordering::Relaxed),
            failed_attempts: self.shared.failed_attempts.load(Ordering::Relaxed),
        }
    }
}
