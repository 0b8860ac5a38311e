//! [`ChannelMap`]: the live map of Asterisk's channels, per server, keyed by `Uniqueid`.
//!
//! The map is fed by the connection core ([`crate::core::Core`]): every event goes through
//! [`ServerChannels::apply`], and each login is followed by a `CoreShowChannels` listing that is merged in
//! with [`ServerChannels::begin_listing`], [`ServerChannels::listed`] and [`ServerChannels::finish_listing`].
//! It is synchronous and takes time as an argument, so a recording can drive it on virtual time.
//!
//! Invariants:
//! - the map is `synced` only after a *complete* listing on the current connection; a lost link, a cut
//!   listing, a lagging consumer or an Asterisk shutdown make it unsynced;
//! - a channel is reported gone only on evidence: a `Hangup` event (exact time and cause), its absence from a
//!   complete listing (bounds: last time known alive, listing time), or an Asterisk restart;
//! - a channel hung up while a listing streams never comes back from that listing, and one created while it
//!   streams is kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ami_proto::Message;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

/// Per-channel maps keyed by `Uniqueid`. foldhash instead of SipHash: the map is looked up for nearly every
/// event, and foldhash's per-map random seed still keeps keys chosen by a caller from colliding on purpose.
/// Looked up with the header's bytes (see [`Uid`]).
type ByUniqueid<V> = DashMap<Uid, V, foldhash::fast::RandomState>;

/// A `Uniqueid` as a map key: text, hashed and compared as its bytes, so that an event's raw header value
/// finds its channel without a UTF-8 check (a key is checked once, when its entry is created).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Uid(Box<str>);

impl Uid {
    fn new(uid: &str) -> Self {
        Self(Box::from(uid))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::hash::Hash for Uid {
    // As `[u8]` hashes: `Borrow<[u8]>` requires the same hash for the key and its borrowed form.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Uid {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Default time an ended channel stays visible in snapshots.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Default cap on ended channels kept per server (oldest dropped first).
pub const DEFAULT_MAX_TOMBSTONES: usize = 20_000;
/// Default capacity of the [`ChannelGone`] queue (overflow is counted, oldest kept).
pub const DEFAULT_GONE_QUEUE: usize = 100_000;
/// At most this many Linkedids are remembered per channel (the oldest dropped first, never the current
/// one): a channel that lives for days (a stuck SCCP or UnicastRTP channel Asterisk never frees) would
/// otherwise collect every Linkedid it ever touched.
pub const MAX_LINKEDIDS_PER_CHANNEL: usize = 32;

/// Adds `lid` to a channel's Linkedid history unless it is there, dropping the oldest entries other than
/// `current` beyond [`MAX_LINKEDIDS_PER_CHANNEL`].
fn remember_linkedid(ever: &mut Vec<String>, lid: &str, current: &str) {
    if ever.iter().any(|x| x == lid) {
        return;
    }
    ever.push(lid.to_string());
    while ever.len() > MAX_LINKEDIDS_PER_CHANNEL {
        match ever.iter().position(|x| x != current) {
            Some(oldest) => {
                ever.remove(oldest);
            }
            None => break,
        }
    }
}

/// Which channels [`ServerChannels::snapshot_of`] keeps: by Uniqueid, by channel name, by any Linkedid
/// ever carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFilter {
    /// Uniqueids to keep.
    pub uniqueids: std::collections::HashSet<String>,
    /// Linkedids: a channel that ever carried one is kept.
    pub linkedids: std::collections::HashSet<String>,
    /// Channel names to keep.
    pub names: std::collections::HashSet<String>,
}

/// Options of a [`ChannelMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapOptions {
    /// How long ended channels stay in snapshots.
    pub tombstone_retention: Duration,
    /// At most this many ended channels are kept per server.
    pub max_tombstones: usize,
    /// Capacity of the [`ChannelGone`] queue; 0 disables it.
    pub gone_queue: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            max_tombstones: DEFAULT_MAX_TOMBSTONES,
            gone_queue: DEFAULT_GONE_QUEUE,
        }
    }
}

/// How a channel ended, as far as callwatch knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelEnd {
    /// Its `Hangup` event was received.
    HangupSeen {
        /// The event's `Timestamp:` when present (exact). Without one, the event was generated between the
        /// send time of the latest answered action and its read time (`after`, `before`); `at` is then the
        /// read time less the read lag the latest answered action showed, kept within those bounds.
        at: DateTime<Utc>,
        /// Q.850 `Cause`.
        cause: Option<u16>,
        /// `Cause-txt`.
        cause_txt: Option<String>,
        /// It ended no earlier than this (`None`: `at` is exact).
        after: Option<DateTime<Utc>>,
        /// It ended no later than this, its read time (`None`: `at` is exact).
        before: Option<DateTime<Utc>>,
    },
    /// It was missing from a complete `CoreShowChannels` listing: it ended in `(after, before]`.
    Gone {
        /// Last time it was known alive (`None`: never known alive in a synced view).
        after: Option<DateTime<Utc>>,
        /// When the listing that lacked it completed.
        before: DateTime<Utc>,
    },
    /// Asterisk restarted (a `Shutdown` event, or a `FullyBooted` uptime shorter than the gap).
    Restart {
        /// When Asterisk went down: the `Shutdown` event; after a crash found at a reconnect, the moment the
        /// connection dropped (or the new boot, now − uptime, if earlier).
        at: DateTime<Utc>,
        /// Last time the channel was known alive.
        after: Option<DateTime<Utc>>,
        /// It ended no later than this when later than `at`: the new boot, when the connection dropped
        /// before it (a crash drops it at once; a restart later in an outage is still before the boot).
        before: Option<DateTime<Utc>>,
    },
}

impl ChannelEnd {
    /// A short reason: `hangup`, `gone at resync` or `asterisk restarted`.
    pub fn reason(&self) -> &'static str {
        match self {
            ChannelEnd::HangupSeen { .. } => "hangup",
            ChannelEnd::Gone { .. } => "gone at resync",
            ChannelEnd::Restart { .. } => "asterisk restarted",
        }
    }

    /// The latest time it can have ended (for a `HangupSeen` with a `Timestamp:`, its exact time).
    pub fn latest(&self) -> DateTime<Utc> {
        match self {
            ChannelEnd::HangupSeen { at, before, .. } => before.unwrap_or(*at),
            ChannelEnd::Gone { before, .. } => *before,
            ChannelEnd::Restart { at, before, .. } => before.unwrap_or(*at).max(*at),
        }
    }
}

/// Notification that a channel ended, for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGone {
    /// Which Asterisk.
    pub server: Arc<str>,
    /// The channel's `Uniqueid`.
    pub uniqueid: String,
    /// Its last `Linkedid`.
    pub linkedid: String,
    /// Every `Linkedid` it carried, oldest first.
    pub linkedids_ever: Vec<String>,
    /// Channel name (`Local/2007@inbound-0000a1b2;1`).
    pub channel: String,
    /// How and when it ended.
    pub end: ChannelEnd,
}

/// How fresh a server's map is: the status fields of a [`MapSnapshot`], without the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// A complete listing on the current connection, and no lag since.
    pub synced: bool,
    /// A session is logged in.
    pub connected: bool,
    /// When the map last stopped being synced.
    pub unsynced_since: Option<DateTime<Utc>>,
    /// When the last complete listing started (Asterisk snapshots the channels then).
    pub listing_at: Option<DateTime<Utc>>,
    /// Connection epoch.
    pub epoch: u64,
}

/// A channel known to be up, in a [`MapSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChannel {
    /// Current `Linkedid`.
    pub linkedid: String,
    /// Every `Linkedid` it carried, oldest first (the current one last).
    pub linkedids_ever: Vec<String>,
    /// Channel name.
    pub channel: String,
    /// `ChannelStateDesc` (`Down`, `Ring`, `Up`, …).
    pub state: String,
    /// When callwatch first learned of it.
    pub first_seen: DateTime<Utc>,
    /// Latest time it is known to have been alive.
    pub last_known_alive: DateTime<Utc>,
    /// The last event about it (its `Newchannel`, state changes, bridges, …), or when a listing first showed
    /// it. A listing that shows it again is not activity: a channel Asterisk forgot to free is listed forever.
    pub last_activity: DateTime<Utc>,
    /// Connection epoch in which it was last confirmed (created or listed).
    pub epoch: u64,
}

/// An ended channel kept for the retention period, in a [`MapSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedChannel {
    /// Every `Linkedid` it carried.
    pub linkedids_ever: Vec<String>,
    /// Channel name.
    pub channel: String,
    /// How and when it ended.
    pub end: ChannelEnd,
}

/// A consistent-enough copy of one server's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSnapshot {
    /// Server name.
    pub server: Arc<str>,
    /// True only after a complete listing on the current connection, with no lag since.
    pub synced: bool,
    /// A session is logged in.
    pub connected: bool,
    /// When the map last stopped being synced (`None` while synced or before the first connection).
    pub unsynced_since: Option<DateTime<Utc>>,
    /// When the last complete listing started (Asterisk snapshots the channels then).
    pub listing_at: Option<DateTime<Utc>>,
    /// Connection epoch (incremented at every login).
    pub epoch: u64,
    /// When the Asterisk whose channels the map holds booted (from `FullyBooted`'s `Uptime`), if known.
    pub booted_at: Option<DateTime<Utc>>,
    /// Channels up, by `Uniqueid`.
    pub live: HashMap<String, LiveChannel>,
    /// Ended channels still retained, by `Uniqueid`.
    pub ended: HashMap<String, EndedChannel>,
}

#[derive(Debug, Clone)]
struct Live {
    linkedid: String,
    linkedids_ever: Vec<String>,
    channel: String,
    state: String,
    first_seen: i64,
    last_seen: i64,
    /// The last event about it (see [`LiveChannel::last_activity`]).
    last_event: i64,
    epoch: u64,
    /// Listing generation in which it was last confirmed alive.
    gen: u64,
}

/// A tombstone: an ended channel as the map keeps it, packed (the daemon keeps up to 20,000 per server).
/// Strings are boxed (no spare capacity), times are micros, and the cause text is shared per server.
#[derive(Debug, Clone)]
struct Ended {
    linkedids_ever: Box<[Box<str>]>,
    channel: Box<str>,
    end: PackedEnd,
    epoch: u64,
    /// When the tombstone was written (micros), for retention.
    written: i64,
}

/// [`ChannelEnd`] packed: times as micros with [`NO_TIME`] for `None`, the cause text interned.
#[derive(Debug, Clone)]
struct PackedEnd {
    kind: EndKind,
    cause: Option<u16>,
    at: i64,
    after: i64,
    before: i64,
    cause_txt: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndKind {
    HangupSeen,
    Gone,
    Restart,
}

/// `None` among [`PackedEnd`]'s times. No real time is this one (it is before year -290,000).
const NO_TIME: i64 = i64::MIN;

fn pack_time(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(NO_TIME, us)
}

fn unpack_time(t: i64) -> Option<DateTime<Utc>> {
    (t != NO_TIME).then(|| dt(t))
}

/// At most this many distinct cause texts are shared per server; others are kept per tombstone.
const MAX_CAUSE_TEXTS: usize = 64;

impl PackedEnd {
    fn pack(end: ChannelEnd, texts: &Mutex<Vec<Arc<str>>>) -> Self {
        match end {
            ChannelEnd::HangupSeen {
                at,
                cause,
                cause_txt,
                after,
                before,
            } => Self {
                kind: EndKind::HangupSeen,
                cause,
                at: us(at),
                after: pack_time(after),
                before: pack_time(before),
                cause_txt: cause_txt.map(|t| intern(texts, t)),
            },
            ChannelEnd::Gone { after, before } => Self {
                kind: EndKind::Gone,
                cause: None,
                at: us(before),
                after: pack_time(after),
                before: NO_TIME,
                cause_txt: None,
            },
            ChannelEnd::Restart { at, after, before } => Self {
                kind: EndKind::Restart,
                cause: None,
                at: us(at),
                after: pack_time(after),
                before: pack_time(before),
                cause_txt: None,
            },
        }
    }

    fn unpack(&self) -> ChannelEnd {
        match self.kind {
            EndKind::HangupSeen => ChannelEnd::HangupSeen {
                at: dt(self.at),
                cause: self.cause,
                cause_txt: self.cause_txt.as_deref().map(str::to_string),
                after: unpack_time(self.after),
                before: unpack_time(self.before),
            },
            EndKind::Gone => ChannelEnd::Gone {
                after: unpack_time(self.after),
                before: dt(self.at),
            },
            EndKind::Restart => ChannelEnd::Restart {
                at: dt(self.at),
                after: unpack_time(self.after),
                before: unpack_time(self.before),
            },
        }
    }
}

/// The shared copy of `text` (a handful of distinct cause texts in practice), added when there is room.
fn intern(texts: &Mutex<Vec<Arc<str>>>, text: String) -> Arc<str> {
    let mut texts = lock(texts);
    if let Some(t) = texts.iter().find(|t| ***t == *text) {
        return t.clone();
    }
    let t: Arc<str> = Arc::from(text);
    if texts.len() < MAX_CAUSE_TEXTS {
        texts.push(t.clone());
    }
    t
}

#[derive(Debug, Default)]
struct Status {
    epoch: u64,
    connected: bool,
    synced: bool,
    unsynced_since: Option<i64>,
    listing_at: Option<i64>,
    /// Generation and start time of the listing in progress.
    listing: Option<(u64, i64)>,
    /// The proven time (see `ServerInner::proven`) while synced, frozen when the map became unsynced.
    alive_through: Option<i64>,
    session_started: Option<i64>,
    prev_session_started: Option<i64>,
    /// When the last session ended (the connection dropped).
    dropped_at: Option<i64>,
    /// When the Asterisk of the current session booted (from `FullyBooted`'s `Uptime`).
    booted_at: Option<i64>,
    /// Tombstones in write order, for retention.
    order: VecDeque<(i64, Box<str>)>,
}

/// One server's channels. Obtained from [`ChannelMap::server`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerChannels {
    inner: Arc<ServerInner>,
    map: Arc<MapInner>,
}

#[derive(Debug)]
struct ServerInner {
    name: Arc<str>,
    live: ByUniqueid<Live>,
    ended: ByUniqueid<Ended>,
    /// Cause texts shared by the tombstones (see [`intern`]).
    cause_texts: Mutex<Vec<Arc<str>>>,
    status: Mutex<Status>,
    /// Time through which every event Asterisk generated has been read (micros): the send time of the latest
    /// answered action (Asterisk writes an action's response after every event it queued before it), or the
    /// latest event `Timestamp:`. Not the read time: a client reading behind reads events generated earlier.
    proven: AtomicI64,
    /// Read lag shown by the latest answered action (micros): its response's read time less its send time.
    lag: AtomicI64,
    /// An event without `Timestamp:` was seen (said once in the log).
    untimed_seen: AtomicBool,
    /// Current listing generation; events touching a channel confirm it in this generation.
    gen: AtomicU64,
    /// Current epoch, mirrored from `status` for the hot path.
    epoch: AtomicU64,
}

#[derive(Debug)]
struct MapInner {
    options: MapOptions,
    servers: DashMap<Arc<str>, Arc<ServerInner>>,
    gone: Mutex<VecDeque<ChannelGone>>,
    gone_dropped: AtomicU64,
    gone_notify: tokio::sync::Notify,
}

/// The live channel map of every watched Asterisk. Cheap to clone; clones share the map.
#[derive(Debug, Clone)]
pub struct ChannelMap {
    inner: Arc<MapInner>,
}

impl Default for ChannelMap {
    fn default() -> Self {
        Self::new(MapOptions::default())
    }
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn dt(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ChannelMap {
    /// An empty map.
    pub fn new(options: MapOptions) -> Self {
        Self {
            inner: Arc::new(MapInner {
                options,
                servers: DashMap::new(),
                gone: Mutex::new(VecDeque::new()),
                gone_dropped: AtomicU64::new(0),
                gone_notify: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The channels of server `name`, created empty on first use.
    pub fn server(&self, name: &str) -> ServerChannels {
        let inner = match self.inner.servers.get(name) {
            Some(s) => s.clone(),
            None => self
                .inner
                .servers
                .entry(Arc::from(name))
                .or_insert_with(|| {
                    Arc::new(ServerInner {
                        name: Arc::from(name),
                        live: ByUniqueid::default(),
                        ended: ByUniqueid::default(),
                        cause_texts: Mutex::new(Vec::new()),
                        status: Mutex::new(Status::default()),
                        proven: AtomicI64::new(i64::MIN),
                        lag: AtomicI64::new(0),
                        untimed_seen: AtomicBool::new(false),
                        gen: AtomicU64::new(0),
                        epoch: AtomicU64::new(0),
                    })
                })
                .clone(),
        };
        ServerChannels {
            inner,
            map: self.inner.clone(),
        }
    }

    /// Names of the servers in the map.
    pub fn servers(&self) -> Vec<Arc<str>> {
        self.inner.servers.iter().map(|e| e.key().clone()).collect()
    }

    /// A snapshot of server `name` (empty and unsynced if unknown).
    pub fn snapshot(&self, name: &str) -> MapSnapshot {
        self.server(name).snapshot()
    }

    /// Takes every queued [`ChannelGone`] notification, oldest first.
    pub fn take_gone(&self) -> Vec<ChannelGone> {
        lock(&self.inner.gone).drain(..).collect()
    }

    /// Waits until a [`ChannelGone`] notification may be queued (then call [`ChannelMap::take_gone`]).
    ///
    /// Meant for one consumer. A notification queued while nobody waits leaves a permit, so a consumer that
    /// took the queue and then waits is woken at once: no hangup waits for the next periodic round.
    pub async fn gone_ready(&self) {
        self.inner.gone_notify.notified().await
    }

    /// Notifications dropped because the queue was full (the snapshot's tombstones still hold them).
    pub fn gone_dropped(&self) -> u64 {
        self.inner.gone_dropped.load(Ordering::Relaxed)
    }
}

/// The headers of one event that the map reads, gathered in one pass over the message. Values are kept as
/// bytes and turned into text only when used.
#[derive(Default)]
struct Fields<'a> {
    uniqueid: Option<&'a [u8]>,
    linkedid: Option<&'a [u8]>,
    channel: Option<&'a [u8]>,
    state: Option<&'a [u8]>,
    timestamp: Option<&'a [u8]>,
    newname: Option<&'a [u8]>,
    /// `(prefix, value)` of every `<prefix>Uniqueid` header (`DestUniqueid`, `TransferTargetUniqueid`…).
    other_uniqueids: Pairs<'a>,
    /// `(prefix, value)` of every `<prefix>Linkedid` header.
    other_linkedids: Pairs<'a>,
}

/// `(prefix, value)` pairs in arrival order: the first [`Pairs::INLINE`] kept inline (an event names at
/// most a few other channels), the rest in a vector, so reading an event allocates nothing.
#[derive(Default)]
struct Pairs<'a> {
    inline: [(&'a [u8], &'a [u8]); Pairs::INLINE],
    len: usize,
    spill: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Pairs<'a> {
    const INLINE: usize = 4;

    fn push(&mut self, pair: (&'a [u8], &'a [u8])) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = pair;
                self.len += 1;
            }
            None => self.spill.push(pair),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(&'a [u8], &'a [u8])> + '_ {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

/// The first (up to) 8 bytes of `key` as one word with ASCII letters folded to lower case. Equal to
/// `fold8(name)` for an all-letter `name` of the same length exactly when `key` is `name` in any case: only
/// a letter folds onto a letter.
#[inline(always)]
fn fold8(key: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = key.len().min(8);
    w[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(w) | 0x2020_2020_2020_2020
}

/// `fold8` of the all-letter names compared in [`Fields::read`], computed once.
const fn fold8_const(name: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < name.len() && i < 8 {
        w |= ((name[i] | 0x20) as u64) << (8 * i);
        i += 1;
    }
    w | 0x2020_2020_2020_2020
}

/// The value as text, when present and valid UTF-8.
#[inline]
fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|v| std::str::from_utf8(v).ok())
}

impl<'a> Fields<'a> {
    fn read(msg: &'a Message) -> Self {
        const CHANNEL: u64 = fold8_const(b"channel");
        const NEWNAME: u64 = fold8_const(b"newname");
        const UID: u64 = fold8_const(b"uniqueid");
        const LID: u64 = fold8_const(b"linkedid");
        const TIMESTAM: u64 = fold8_const(b"timestam");
        const CHANNELS: u64 = fold8_const(b"channels");
        const TATEDESC: u64 = fold8_const(b"tatedesc");
        let mut f = Fields::default();
        // Keys are compared as folded words (all the names are letters): one comparison per header instead
        // of a byte loop per candidate name.
        for h in msg.headers() {
            let key = h.key;
            let slot = match key.len() {
                7 => match fold8(key) {
                    CHANNEL => &mut f.channel,
                    NEWNAME => &mut f.newname,
                    _ => continue,
                },
                8 => match fold8(key) {
                    UID => &mut f.uniqueid,
                    LID => &mut f.linkedid,
                    _ => continue,
                },
                9 if fold8(key) == TIMESTAM && key[8] | 0x20 == b'p' => &mut f.timestamp,
                16 if fold8(key) == CHANNELS && fold8(&key[8..]) == TATEDESC => &mut f.state,
                // `<prefix>Uniqueid` / `<prefix>Linkedid`: both end in `d`.
                n if n > 8 && key[n - 1] | 0x20 == b'd' => {
                    let (prefix, tail) = key.split_at(n - 8);
                    match fold8(tail) {
                        UID => f.other_uniqueids.push((prefix, h.value)),
                        LID => f.other_linkedids.push((prefix, h.value)),
                        _ => {}
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(h.value);
            }
        }
        f
    }

    /// Only the headers the parser already found (`Uniqueid`, `Linkedid`, `Timestamp`: the first of each,
    /// as [`Fields::read`] takes them), for an event about its own channel whose few other headers are
    /// looked up by name.
    fn own(msg: &'a Message) -> Self {
        Fields {
            uniqueid: msg.uniqueid_bytes(),
            linkedid: msg.linkedid_bytes(),
            timestamp: msg.timestamp_bytes(),
            ..Fields::default()
        }
    }

    fn uniqueid(&self) -> Option<&'a str> {
        text(self.uniqueid)
    }
    fn linkedid(&self) -> Option<&'a str> {
        text(self.linkedid)
    }
    fn channel(&self) -> Option<&'a str> {
        text(self.channel)
    }
    fn state(&self) -> Option<&'a str> {
        text(self.state)
    }
    fn timestamp(&self) -> Option<&'a str> {
        text(self.timestamp)
    }
    fn newname(&self) -> Option<&'a str> {
        text(self.newname)
    }

    /// `(Uniqueid, Linkedid)` of the other channels the event describes, paired by prefix; the Uniqueid as
    /// bytes, for a map lookup.
    fn others(&self) -> impl Iterator<Item = (&'a [u8], &'a str)> + '_ {
        self.other_uniqueids.iter().filter_map(|&(prefix, uid)| {
            let lid = self
                .other_linkedids
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(prefix))
                .and_then(|(_, l)| std::str::from_utf8(l).ok())
                .filter(|l| valid_id(l))?;
            Some((uid, lid))
        })
    }
}

/// Events whose headers carry no other channel's `Uniqueid` together with its `Linkedid` (the bridge
/// events' `BridgeUniqueid` and `SwapUniqueid` come without one): the bulk of a busy stream (dialplan steps
/// and variables, bridging, hangup requests), handled without reading every header. The other channels'
/// Linkedids come with `DialBegin`/`DialState`/`DialEnd` (`Dest…`), `LocalBridge` (`LocalOne…`,
/// `LocalTwo…`) and the transfer events.
fn describes_one_channel(event: &[u8]) -> bool {
    matches!(
        event,
        b"VarSet"
            | b"Newexten"
            | b"Newstate"
            | b"NewCallerid"
            | b"NewConnectedLine"
            | b"NewAccountCode"
            | b"Hold"
            | b"Unhold"
            | b"MusicOnHoldStart"
            | b"MusicOnHoldStop"
            | b"DTMFBegin"
            | b"DTMFEnd"
            | b"HangupRequest"
            | b"SoftHangupRequest"
            | b"BridgeCreate"
            | b"BridgeDestroy"
            | b"BridgeEnter"
            | b"BridgeLeave"
            | b"OriginateResponse"
    )
}

/// Events whose `Uniqueid` proves a channel is alive, so an unknown one is added to the map.
fn proves_alive(event: &[u8]) -> bool {
    matches!(
        event,
        b"Newstate"
            | b"NewCallerid"
            | b"NewConnectedLine"
            | b"NewAccountCode"
            | b"Rename"
            | b"Newexten"
            | b"VarSet"
            | b"BridgeEnter"
            | b"BridgeLeave"
            | b"DialBegin"
            | b"DialEnd"
            | b"DialState"
            | b"Hold"
            | b"Unhold"
            | b"LocalBridge"
            | b"MusicOnHoldStart"
            | b"MusicOnHoldStop"
    )
}

/// An event `Timestamp:` (Unix seconds with microseconds).
fn parse_timestamp(t: &str) -> Option<DateTime<Utc>> {
    let t = t.trim();
    if let Some(micros) = timestamp_micros(t.as_bytes()) {
        return DateTime::from_timestamp_micros(micros);
    }
    t.parse::<f64>().ok().and_then(clock::from_unix_seconds)
}

/// An event `Timestamp:` as microseconds, as `us(parse_timestamp(..))`, without going through a `DateTime`
/// on the fast path (this runs for every timed event).
#[inline]
fn timestamp_us(t: &[u8]) -> Option<i64> {
    match timestamp_micros(t.trim_ascii()) {
        Some(micros) => Some(micros),
        None => parse_timestamp(std::str::from_utf8(t).ok()?).map(us),
    }
}

/// The fast path of [`parse_timestamp`], read on every timed event: `SECONDS[.FRACTION]` with fewer than
/// 2^31 seconds and at most six fraction digits, as Asterisk writes it, read as integer microseconds.
/// `None` for anything else (the float path decides). Gives exactly what the float path gives: below 2^31
/// s the nearest `f64` is within 2^-23 s of the written time, and scaling it by 10^6 adds at most 0.125
/// µs, so rounding to whole microseconds lands on the written value.
#[inline]
fn timestamp_micros(t: &[u8]) -> Option<i64> {
    // Asterisk's own shape, `1700000000.123456`: sixteen digits in fixed places, read as two words of
    // eight digits.
    if let Ok(t) = <&[u8; 17]>::try_from(t) {
        if t[10] != b'.' {
            return None;
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&t[at..at + 8]);
            u64::from_le_bytes(w)
        };
        // The last eight digits: the word at 9 (`S.ffffff`, little-endian) with its `S.` bytes replaced by
        // the two seconds digits at 8 and 9.
        let low = word(9) & !0xffff | u64::from(t[8]) | u64::from(t[9]) << 8;
        let high = eight_digits(word(0))?;
        let low = eight_digits(low)?;
        let n = (high * 100_000_000 + low) as i64;
        return (n < (1i64 << 31) * 1_000_000).then_some(n);
    }
    let (secs, frac) = match t.iter().position(|&b| b == b'.') {
        Some(dot) => (&t[..dot], &t[dot + 1..]),
        None => (t, &t[t.len()..]),
    };
    if secs.is_empty() || secs.len() > 10 || frac.len() > 6 {
        return None;
    }
    let digits = |d: &[u8]| -> Option<i64> {
        d.iter().try_fold(0i64, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let secs = digits(secs).filter(|s| *s < 1 << 31)?;
    let frac = digits(frac)? * 10i64.pow(6 - frac.len() as u32);
    Some(secs * 1_000_000 + frac)
}

/// The value of eight ASCII digits read as a little-endian word (most significant digit in the low byte),
/// `None` unless all eight are digits. One word
/// for all eight: a byte is a digit exactly when neither `b + 0x46` nor `b - 0x30` sets its top bit, and a
/// carry or borrow that crosses into the next byte only comes from a byte that already failed.
#[inline(always)]
fn eight_digits(w: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    if (w.wrapping_add(0x46 * ONES) | w.wrapping_sub(0x30 * ONES)) & (0x80 * ONES) != 0 {
        return None;
    }
    // Little-endian: the first digit is the low byte. Pairs, then quads, then the eight.
    let d = w - 0x30 * ONES;
    let d = (d * 10 + (d >> 8)) & 0x00ff_00ff_00ff_00ff;
    let d = (d * 100 + (d >> 16)) & 0x0000_ffff_0000_ffff;
    Some((d.wrapping_mul(10_000) + (d >> 32)) & 0xffff_ffff)
}

fn valid_id(id: &str) -> bool {
    valid_id_bytes(id.as_bytes())
}

/// [`valid_id`] on a raw header value.
fn valid_id_bytes(id: &[u8]) -> bool {
    !id.is_empty() && id != b"<unknown>"
}

/// What [`ServerChannels::finish_listing`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListingOutcome {
    /// Channels live after the merge.
    pub live: usize,
    /// Channels reported gone because the listing lacked them.
    pub gone: usize,
}

impl ServerChannels {
    /// Server name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// Current connection epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Relaxed)
    }

    /// True when the map is synced.
    pub fn is_synced(&self) -> bool {
        lock(&self.inner.status).synced
    }

    /// The map's freshness without copying its channels (cheap; for health reporting).
    pub fn freshness(&self) -> Freshness {
        let st = lock(&self.inner.status);
        Freshness {
            synced: st.synced,
            connected: st.connected,
            unsynced_since: st.unsynced_since.map(dt),
            listing_at: st.listing_at.map(dt),
            epoch: st.epoch,
        }
    }

    /// Number of live channels.
    pub fn live_count(&self) -> usize {
        self.inner.live.len()
    }

    /// Records that every event Asterisk generated up to `at` has been read (it extends `last_known_alive`
    /// while synced). Never moves back.
    #[inline]
    pub fn read_through(&self, at: DateTime<Utc>) {
        self.inner.proven.fetch_max(us(at), Ordering::Relaxed);
    }

    /// An action sent at `sent` was answered at `read`: every event Asterisk queued before it has been read,
    /// so events are read through `sent`, and `read - sent` is the current read lag.
    pub fn action_answered(&self, sent: DateTime<Utc>, read: DateTime<Utc>) {
        let (sent, read) = (us(sent), us(read));
        self.inner
            .proven
            .fetch_max(sent.min(read), Ordering::Relaxed);
        self.inner
            .lag
            .store(read.saturating_sub(sent).max(0), Ordering::Relaxed);
    }

    /// The time through which every event has been read, if known.
    pub fn proven_through(&self) -> Option<DateTime<Utc>> {
        let p = self.inner.proven.load(Ordering::Relaxed);
        (p != i64::MIN).then(|| dt(p))
    }

    /// Whether an event without a `Timestamp:` header has been seen for this server (Asterisk's
    /// `timestampevents` is off).
    pub fn saw_untimed_event(&self) -> bool {
        self.inner.untimed_seen.load(Ordering::Relaxed)
    }

    /// True the first time an event without a `Timestamp:` header is reported for this server.
    pub fn first_untimed_event(&self) -> bool {
        !self.inner.untimed_seen.swap(true, Ordering::Relaxed)
    }

    /// When an event read at `now` happened, as far as the map can tell: `(earliest, exact)`. With a
    /// `Timestamp:` header, that time (never after `now`) and true; otherwise the proven time (events are
    /// read through it, so one read now was generated no earlier) and false.
    fn event_time(&self, msg: &Message, now: i64) -> (i64, bool) {
        if let Some(ts) = msg.timestamp_bytes().and_then(timestamp_us) {
            let ts = ts.min(now);
            self.inner.proven.fetch_max(ts, Ordering::Relaxed);
            return (ts, true);
        }
        let p = self.inner.proven.load(Ordering::Relaxed);
        (if p == i64::MIN { now } else { p.min(now) }, false)
    }

    /// A session logged in at `now`: a new epoch starts; the map stays unsynced until a listing completes.
    pub fn begin_session(&self, now: DateTime<Utc>) -> u64 {
        let mut st = lock(&self.inner.status);
        st.epoch += 1;
        self.inner.epoch.store(st.epoch, Ordering::Relaxed);
        st.connected = true;
        st.prev_session_started = st.session_started;
        st.session_started = Some(us(now));
        self.make_unsynced(&mut st, us(now), true);
        st.epoch
    }

    /// The session ended at `now` (link lost, logoff, keepalive timeout).
    pub fn disconnected(&self, now: DateTime<Utc>) {
        let mut st = lock(&self.inner.status);
        st.connected = false;
        st.dropped_at = Some(us(now));
        self.make_unsynced(&mut st, us(now), true);
    }

    /// Marks the map unsynced (e.g. a consumer lagged); a new listing is needed.
    pub fn mark_unsynced(&self, now: DateTime<Utc>) {
        let mut st = lock(&self.inner.status);
        self.make_unsynced(&mut st, us(now), false);
    }

    /// Marks the map unsynced. `abort_listing`: the listing in progress (if any) can no longer complete it
    /// (the session is gone); a lag keeps it, since the map itself missed nothing.
    fn make_unsynced(&self, st: &mut Status, now: i64, abort_listing: bool) {
        if st.synced {
            let last = self.inner.proven.load(Ordering::Relaxed);
            st.alive_through = Some(if last == i64::MIN { now } else { last.min(now) });
            st.synced = false;
            st.unsynced_since = Some(now);
        } else if st.unsynced_since.is_none() && st.listing_at.is_some() {
            st.unsynced_since = Some(now);
        }
        if abort_listing {
            st.listing = None;
        }
    }

    /// Time through which every live channel of a synced view is known alive.
    fn alive_through(&self, st: &Status) -> Option<i64> {
        if st.synced {
            let last = self.inner.proven.load(Ordering::Relaxed);
            (last != i64::MIN).then_some(last)
        } else {
            st.alive_through
        }
    }

    fn last_known_alive(live: &Live, alive_through: Option<i64>) -> i64 {
        match alive_through {
            Some(t) if t >= live.first_seen => live.last_seen.max(t),
            _ => live.last_seen,
        }
    }

    /// Applies one event received at `now`. Events that are not about channels are ignored.
    pub fn apply(&self, msg: &Message, now: DateTime<Utc>) {
        // Matched as bytes: no UTF-8 check on the hot path.
        let Some(event) = msg.event_bytes() else {
            return;
        };
        match event {
            b"Hangup" => self.hangup(msg, now),
            b"Shutdown" => self.shutdown(now),
            b"Newchannel" => self.newchannel(msg, now),
            b"CoreShowChannel"
            | b"Status"
            | b"CoreShowChannelsComplete"
            | b"StatusComplete"
            | b"Cdr"
            | b"CEL" => {}
            _ => self.touch(event, msg, now),
        }
    }

    fn newchannel(&self, msg: &Message, now: DateTime<Utc>) {
        let f = Fields::own(msg);
        let (Some(uid), Some(channel)) = (f.uniqueid(), text(msg.get("Channel"))) else {
            return;
        };
        if !valid_id(uid) {
            return;
        }
        let linkedid = f.linkedid().filter(|l| valid_id(l)).unwrap_or(uid);
        let (now, _) = self.event_time(msg, us(now));
        let epoch = self.epoch();
        // A Newchannel for a Uniqueid we still hold from an older epoch: Uniqueids restarted with Asterisk.
        if let Some((_, old)) = self.inner.live.remove(uid.as_bytes()) {
            if old.epoch != epoch {
                let st = lock(&self.inner.status);
                let after = Self::last_known_alive(&old, self.alive_through(&st));
                drop(st);
                self.end(
                    uid,
                    old,
                    ChannelEnd::Restart {
                        at: dt(now),
                        after: Some(dt(after)),
                        before: None,
                    },
                    now,
                );
            }
        }
        self.inner.ended.remove(uid.as_bytes());
        self.inner.live.insert(
            Uid::new(uid),
            Live {
                linkedid: linkedid.to_string(),
                linkedids_ever: vec![linkedid.to_string()],
                channel: channel.to_string(),
                state: text(msg.get("ChannelStateDesc")).unwrap_or("").to_string(),
                first_seen: now,
                last_seen: now,
                last_event: now,
                epoch,
                gen: self.inner.gen.load(Ordering::Relaxed),
            },
        );
    }

    fn touch(&self, event: &[u8], msg: &Message, now: DateTime<Utc>) {
        // The channel's own Uniqueid and Linkedid were found by the parser; the whole message is read only
        // for events that can name other channels, or to add an unknown channel.
        let fields = (!describes_one_channel(event)).then(|| Fields::read(msg));
        if let Some(f) = &fields {
            self.remember_other_linkedids(f);
        }
        // Looked up as bytes: a key in the map is valid UTF-8, so a value that is not finds nothing, and
        // the text is checked only to add a channel.
        let Some(uid) = msg.uniqueid_bytes() else {
            return;
        };
        if !valid_id_bytes(uid) {
            return;
        }
        let gen = self.inner.gen.load(Ordering::Relaxed);
        if let Some(mut live) = self.inner.live.get_mut(uid) {
            // Alive when the event was generated: its Timestamp, else no earlier than the proven time.
            let (now, _) = self.event_time(msg, us(now));
            live.last_seen = live.last_seen.max(now);
            live.last_event = live.last_event.max(now);
            live.gen = gen;
            // Nearly always unchanged: compare bytes, read the text only for a change.
            let linkedid = msg.linkedid_bytes();
            if linkedid.is_some_and(|l| l != live.linkedid.as_bytes()) {
                if let Some(l) = text(linkedid).filter(|l| valid_id(l)) {
                    live.linkedid = l.to_string();
                    remember_linkedid(&mut live.linkedids_ever, l, l);
                }
            }
            match event {
                b"Newstate" => {
                    let s = msg.get("ChannelStateDesc");
                    if s.is_some_and(|s| s != live.state.as_bytes()) {
                        if let Some(s) = text(s) {
                            live.state = s.to_string();
                        }
                    }
                }
                b"Rename" => {
                    if let Some(n) = msg.get_str("Newname") {
                        live.channel = n.to_string();
                    }
                }
                _ => {}
            }
            return;
        }
        let Ok(uid) = std::str::from_utf8(uid) else {
            return;
        };
        let (now, _) = self.event_time(msg, us(now));
        let f = fields.unwrap_or_else(|| Fields::read(msg));
        // A synced map saw every `Newchannel` since its listing: an unknown channel is one that ended before
        // (Asterisk sends a few events after a channel's Hangup), not one to add.
        if !proves_alive(event) || self.inner.ended.contains_key(uid.as_bytes()) || self.is_synced()
        {
            return;
        }
        let (Some(channel), Some(linkedid)) = (
            f.newname().filter(|_| event == b"Rename").or(f.channel()),
            f.linkedid(),
        ) else {
            return;
        };
        self.inner.live.insert(
            Uid::new(uid),
            Live {
                linkedid: linkedid.to_string(),
                linkedids_ever: vec![linkedid.to_string()],
                channel: channel.to_string(),
                state: f.state().unwrap_or("").to_string(),
                first_seen: now,
                last_seen: now,
                last_event: now,
                epoch: self.epoch(),
                gen,
            },
        );
    }

    /// Adds the Linkedids of the other channels an event describes (`DestUniqueid` + `DestLinkedid`,
    /// `TransferTargetUniqueid` + `TransferTargetLinkedid`, …) to those channels' history: they belonged to
    /// that group. Their current Linkedid comes only from their own events, since transfer events carry
    /// snapshots taken when the transfer began.
    fn remember_other_linkedids(&self, f: &Fields<'_>) {
        for (uid, lid) in f.others() {
            if let Some(mut live) = self.inner.live.get_mut(uid) {
                let live = &mut *live;
                remember_linkedid(&mut live.linkedids_ever, lid, &live.linkedid);
            }
        }
    }

    fn hangup(&self, msg: &Message, now: DateTime<Utc>) {
        let f = Fields::own(msg);
        let Some(uid) = f.uniqueid().filter(|u| valid_id(u)) else {
            return;
        };
        let read = us(now);
        let (at, after, before) = match f.timestamp().and_then(parse_timestamp) {
            Some(ts) => {
                self.inner
                    .proven
                    .fetch_max(us(ts).min(read), Ordering::Relaxed);
                (ts, None, None)
            }
            None => {
                // Read behind: generated after the proven time, at the latest when read. The estimate is the
                // read time less the lag the latest answered action showed.
                let (lo, _) = self.event_time(msg, read);
                let lag = self.inner.lag.load(Ordering::Relaxed);
                let at = read.saturating_sub(lag).clamp(lo, read);
                if lo < read {
                    (dt(at), Some(dt(lo)), Some(now))
                } else {
                    (now, None, None)
                }
            }
        };
        let end = ChannelEnd::HangupSeen {
            at,
            cause: text(msg.get("Cause")).and_then(|c| c.trim().parse().ok()),
            cause_txt: text(msg.get("Cause-txt")).map(str::to_string),
            after,
            before,
        };
        let live = match self.inner.live.remove(uid.as_bytes()) {
            Some((_, live)) => live,
            None => {
                let linkedid = f.linkedid().unwrap_or(uid).to_string();
                Live {
                    linkedids_ever: vec![linkedid.clone()],
                    linkedid,
                    channel: text(msg.get("Channel")).unwrap_or("").to_string(),
                    state: String::new(),
                    first_seen: us(at),
                    last_seen: us(at),
                    last_event: us(at),
                    epoch: self.epoch(),
                    gen: 0,
                }
            }
        };
        self.end(uid, live, end, us(now));
    }

    /// Asterisk announced a shutdown: every live channel is gone.
    fn shutdown(&self, now: DateTime<Utc>) {
        let n = us(now);
        let mut st = lock(&self.inner.status);
        let through = self.alive_through(&st);
        self.make_unsynced(&mut st, n, true);
        drop(st);
        self.end_all(
            |_| true,
            |live| ChannelEnd::Restart {
                at: now,
                after: Some(dt(Self::last_known_alive(live, through))),
                before: None,
            },
            n,
        );
    }

    /// Asterisk came up `uptime` before `now` (its `FullyBooted` event, read at `now`, answering a `Login`
    /// sent at `login_sent`). When that boot is certainly later than the previous session's start, Asterisk
    /// restarted in between: every channel of an older epoch is gone, ended no later than the earlier of
    /// the previous connection's drop and the boot (that is the time recorded). Returns the number of
    /// channels ended.
    ///
    /// `Uptime` counts whole seconds from when Asterisk wrote the event, some time between `login_sent` and
    /// `now`: the boot was after `login_sent − uptime − 1 s` and no later than `now − uptime` (the time
    /// kept as the boot). A restart is declared only when the earliest the new boot can be is later than
    /// the previous session's start, so neither a slow link nor a login delayed after a recorded `Uptime`
    /// (a replayed session) makes one. The previous session's own boot is not the anchor: comparing two
    /// boots computed from the wall clock at two moments would read any clock step or replay delay of more
    /// than a second as a restart, and close every live call.
    pub fn fully_booted(
        &self,
        uptime: Duration,
        login_sent: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> usize {
        let n = us(now);
        let up = i64::try_from(uptime.as_micros()).unwrap_or(i64::MAX);
        let mut st = lock(&self.inner.status);
        let booted = n.saturating_sub(up);
        let booted_after = us(login_sent.min(now))
            .saturating_sub(up)
            .saturating_sub(1_000_000);
        st.booted_at = Some(booted);
        let Some(prev) = st.prev_session_started else {
            return 0;
        };
        if booted_after <= prev {
            return 0;
        }
        let through = self.alive_through(&st);
        let epoch = st.epoch;
        // A crash drops the connection when the channels die, seconds before the new boot: they ended no
        // later than the drop (of the previous session) and no later than the boot.
        let died = dt(st
            .dropped_at
            .filter(|d| *d >= prev)
            .map_or(booted, |d| d.min(booted)));
        drop(st);
        let boot = dt(booted);
        self.end_all(
            |live| live.epoch < epoch,
            |live| ChannelEnd::Restart {
                at: died,
                after: Some(dt(Self::last_known_alive(live, through))),
                before: (boot > died).then_some(boot),
            },
            n,
        )
    }

    fn end_all(
        &self,
        which: impl Fn(&Live) -> bool,
        end: impl Fn(&Live) -> ChannelEnd,
        now: i64,
    ) -> usize {
        let victims: Vec<Uid> = self
            .inner
            .live
            .iter()
            .filter(|e| which(e.value()))
            .map(|e| e.key().clone())
            .collect();
        let n = victims.len();
        for uid in victims {
            if let Some((uid, live)) = self.inner.live.remove(uid.0.as_bytes()) {
                let e = end(&live);
                self.end(uid.as_str(), live, e, now);
            }
        }
        n
    }

    fn end(&self, uid: &str, live: Live, end: ChannelEnd, now: i64) {
        let opts = self.map.options;
        if opts.gone_queue > 0 {
            let mut q = lock(&self.map.gone);
            if q.len() < opts.gone_queue {
                q.push_back(ChannelGone {
                    server: self.inner.name.clone(),
                    uniqueid: uid.to_string(),
                    linkedid: live.linkedid.clone(),
                    linkedids_ever: live.linkedids_ever.clone(),
                    channel: live.channel.clone(),
                    end: end.clone(),
                });
                drop(q);
                // `notify_one` keeps a permit when nobody is waiting yet: a consumer that took the queue
                // and is about to wait still wakes for what was queued in between.
                self.map.gone_notify.notify_one();
            } else {
                self.map.gone_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if opts.max_tombstones == 0 {
            return;
        }
        self.inner.ended.insert(
            Uid::new(uid),
            Ended {
                linkedids_ever: live
                    .linkedids_ever
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect(),
                channel: live.channel.into_boxed_str(),
                end: PackedEnd::pack(end, &self.inner.cause_texts),
                epoch: self.epoch(),
                written: now,
            },
        );
        let mut st = lock(&self.inner.status);
        st.order.push_back((now, Box::from(uid)));
        let horizon = now.saturating_sub(
            i64::try_from(opts.tombstone_retention.as_micros()).unwrap_or(i64::MAX),
        );
        while let Some((written, _)) = st.order.front() {
            if *written >= horizon && st.order.len() <= opts.max_tombstones {
                break;
            }
            let Some((written, uid)) = st.order.pop_front() else {
                break;
            };
            self.inner
                .ended
                .remove_if(uid.as_bytes(), |_, e| e.written == written);
        }
    }

    /// A `CoreShowChannels` listing starts; returns its generation.
    pub fn begin_listing(&self, now: DateTime<Utc>) -> u64 {
        let mut st = lock(&self.inner.status);
        let gen = self.inner.gen.fetch_add(1, Ordering::Relaxed) + 1;
        st.listing = Some((gen, us(now)));
        gen
    }

    /// Merges one `CoreShowChannel` item of listing `gen`.
    pub fn listed(&self, gen: u64, item: &Message, now: DateTime<Utc>) {
        let f = Fields::read(item);
        let Some(uid) = f.uniqueid().filter(|u| valid_id(u)) else {
            return;
        };
        let epoch = self.epoch();
        // Hung up during this connection (e.g. while the listing streamed): never revive it.
        if self
            .inner
            .ended
            .get(uid.as_bytes())
            .is_some_and(|e| e.epoch == epoch)
        {
            return;
        }
        // Asterisk took the listing's snapshot after the action was sent: listed channels were alive then
        // (the read time may be later when reading behind).
        let started = lock(&self.inner.status)
            .listing
            .filter(|(g, _)| *g == gen)
            .map(|(_, start)| start);
        let now = started.unwrap_or(us(now)).min(us(now));
        match self.inner.live.get_mut(uid.as_bytes()) {
            Some(mut live) => {
                live.gen = gen;
                live.epoch = epoch;
                live.last_seen = live.last_seen.max(now);
                if let Some(l) = f.linkedid().filter(|l| valid_id(l)) {
                    if live.linkedid != l {
                        live.linkedid = l.to_string();
                        remember_linkedid(&mut live.linkedids_ever, l, l);
                    }
                }
                if let Some(c) = f.channel() {
                    if live.channel != c {
                        live.channel = c.to_string();
                    }
                }
                if let Some(s) = f.state() {
                    if live.state != s {
                        live.state = s.to_string();
                    }
                }
            }
            None => {
                let linkedid = f
                    .linkedid()
                    .filter(|l| valid_id(l))
                    .unwrap_or(uid)
                    .to_string();
                self.inner.ended.remove(uid.as_bytes());
                self.inner.live.insert(
                    Uid::new(uid),
                    Live {
                        linkedids_ever: vec![linkedid.clone()],
                        linkedid,
                        channel: f.channel().unwrap_or("").to_string(),
                        state: f.state().unwrap_or("").to_string(),
                        first_seen: now,
                        last_seen: now,
                        last_event: now,
                        epoch,
                        gen,
                    },
                );
            }
        }
    }

    /// Listing `gen` completed at `now`: channels it neither listed nor saw alive meanwhile are gone, and the
    /// map becomes synced. A stale `gen` (the connection dropped or a newer listing began) changes nothing.
    pub fn finish_listing(&self, gen: u64, now: DateTime<Utc>) -> Option<ListingOutcome> {
        let n = us(now);
        let st = lock(&self.inner.status);
        if st.listing.map(|(g, _)| g) != Some(gen) || !st.connected {
            return None;
        }
        let through = self.alive_through(&st);
        let listing = st.listing;
        let before = now;
        drop(st);
        let gone = self.end_all(
            |live| live.gen < gen,
            |live| ChannelEnd::Gone {
                after: Some(dt(Self::last_known_alive(live, through))),
                before,
            },
            n,
        );
        let mut st = lock(&self.inner.status);
        let epoch = st.epoch;
        for mut e in self.inner.live.iter_mut() {
            e.epoch = epoch;
        }
        st.listing = None;
        st.synced = true;
        st.unsynced_since = None;
        // Asterisk took the snapshot when the action arrived, not when its last item was read: rows
        // are judged against the start.
        st.listing_at = Some(listing.map_or(n, |(_, start)| start.min(n)));
        st.alive_through = None;
        // A complete listing proves every event queued before it was sent has been read.
        if let Some((_, start)) = listing {
            self.inner.proven.fetch_max(start.min(n), Ordering::Relaxed);
        }
        Some(ListingOutcome {
            live: self.inner.live.len(),
            gone,
        })
    }

    /// A snapshot of this server's map.
    pub fn snapshot(&self) -> MapSnapshot {
        self.snapshot_where(|_, _, _| true)
    }

    /// A snapshot holding only the channels, live or ended, that can bear on rows carrying these ids: those
    /// whose Uniqueid is in `filter.uniqueids`, whose name is in `filter.names`, or that ever carried a
    /// Linkedid in `filter.linkedids`. The freshness fields are the whole map's. For a row whose Uniqueid,
    /// channel name and Linkedid are all in the filter, this snapshot holds every channel that
    /// [`snapshot`](Self::snapshot) holds about it (its own channel, its namesakes, its whole Linkedid
    /// group), without copying the rest of the map.
    pub fn snapshot_of(&self, filter: &ChannelFilter) -> MapSnapshot {
        self.snapshot_where(|uid, name, mut linkedids| {
            filter.uniqueids.contains(uid)
                || filter.names.contains(name)
                || Iterator::any(&mut linkedids, |l| filter.linkedids.contains(l))
        })
    }

    /// A snapshot of the channels `keep(uniqueid, name, linkedids_ever)` accepts.
    fn snapshot_where(
        &self,
        keep: impl Fn(&str, &str, &mut dyn Iterator<Item = &str>) -> bool,
    ) -> MapSnapshot {
        let st = lock(&self.inner.status);
        let through = self.alive_through(&st);
        let live = self
            .inner
            .live
            .iter()
            .filter(|e| {
                let l = e.value();
                keep(
                    e.key().as_str(),
                    &l.channel,
                    &mut l.linkedids_ever.iter().map(String::as_str),
                )
            })
            .map(|e| {
                let l = e.value();
                (
                    e.key().as_str().to_string(),
                    LiveChannel {
                        linkedid: l.linkedid.clone(),
                        linkedids_ever: l.linkedids_ever.clone(),
                        channel: l.channel.clone(),
                        state: l.state.clone(),
                        first_seen: dt(l.first_seen),
                        last_known_alive: dt(Self::last_known_alive(l, through)),
                        last_activity: dt(l.last_event),
                        epoch: l.epoch,
                    },
                )
            })
            .collect();
        let ended = self
            .inner
            .ended
            .iter()
            .filter(|e| {
                let x = e.value();
                keep(
                    e.key().as_str(),
                    &x.channel,
                    &mut x.linkedids_ever.iter().map(|l| &**l),
                )
            })
            .map(|e| {
                let x = e.value();
                (
                    e.key().as_str().to_string(),
                    EndedChannel {
                        linkedids_ever: x.linkedids_ever.iter().map(|l| l.to_string()).collect(),
                        channel: x.channel.to_string(),
                        end: x.end.unpack(),
                    },
                )
            })
            .collect();
        MapSnapshot {
            server: self.inner.name.clone(),
            synced: st.synced,
            connected: st.connected,
            unsynced_since: st.unsynced_since.map(dt),
            listing_at: st.listing_at.map(dt),
            epoch: st.epoch,
            booted_at: st.booted_at.map(dt),
            live,
            ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_795_520_000 + secs, 0).unwrap()
    }

    fn newchannel(uid: &str, linkedid: &str) -> Message {
        Message::from_pairs([
            ("Event", "Newchannel"),
            ("Channel", &*format!("Local/2001@inbound-{uid};1")),
            ("ChannelStateDesc", "Down"),
            ("Uniqueid", uid),
            ("Linkedid", linkedid),
        ])
    }

    fn hangup(uid: &str, cause: &str) -> Message {
        Message::from_pairs([
            ("Event", "Hangup"),
            ("Channel", "Local/2001@inbound-x;1"),
            ("Uniqueid", uid),
            ("Linkedid", uid),
            ("Cause", cause),
            ("Cause-txt", "Normal Clearing"),
        ])
    }

    fn item(uid: &str, linkedid: &str) -> Message {
        Message::from_pairs([
            ("Event", "CoreShowChannel"),
            ("ActionID", "1"),
            ("Channel", "Local/2001@inbound-x;1"),
            ("ChannelStateDesc", "Up"),
            ("Uniqueid", uid),
            ("Linkedid", linkedid),
        ])
    }

    #[test]
    fn a_packed_tombstone_gives_back_exactly_the_end_it_was_given_and_shares_cause_texts() {
        let texts = Mutex::new(Vec::new());
        let ends = [
            ChannelEnd::HangupSeen {
                at: t(5),
                cause: Some(16),
                cause_txt: Some("Normal Clearing".into()),
                after: None,
                before: None,
            },
            ChannelEnd::HangupSeen {
                at: t(5),
                cause: None,
                cause_txt: None,
                after: Some(t(4)),
                before: Some(t(6)),
            },
            ChannelEnd::Gone {
                after: Some(t(1)),
                before: t(9),
            },
            ChannelEnd::Gone {
                after: None,
                before: t(9),
            },
            ChannelEnd::Restart {
                at: t(3),
                after: Some(t(2)),
                before: Some(t(7)),
            },
            ChannelEnd::Restart {
                at: t(3),
                after: None,
                before: None,
            },
        ];
        for end in ends {
            assert_eq!(PackedEnd::pack(end.clone(), &texts).unpack(), end);
        }
        let a = PackedEnd::pack(ends_with_text("User busy"), &texts);
        let b = PackedEnd::pack(ends_with_text("User busy"), &texts);
        assert!(Arc::ptr_eq(
            a.cause_txt.as_ref().unwrap(),
            b.cause_txt.as_ref().unwrap()
        ));
        assert_eq!(lock(&texts).len(), 2);
        // Past the cap a text is still kept, unshared.
        for i in 0..MAX_CAUSE_TEXTS + 5 {
            let p = PackedEnd::pack(ends_with_text(&format!("text {i}")), &texts);
            assert_eq!(p.unpack(), ends_with_text(&format!("text {i}")));
        }
        assert_eq!(lock(&texts).len(), MAX_CAUSE_TEXTS);
    }

    /// The digit loop [`eight_digits`] replaced.
    fn eight_digits_simple(bytes: [u8; 8]) -> Option<u64> {
        bytes.iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        })
    }

    #[test]
    fn eight_digits_agrees_with_a_digit_loop() {
        let mut cases: Vec<[u8; 8]> = vec![
            *b"00000000",
            *b"99999999",
            *b"12345678",
            *b"1234567/",
            *b"/2345678",
            *b"1234:678",
            [0xff, b'2', b'3', b'4', b'5', b'6', b'7', b'8'],
            [b'9' + 1; 8],
            [b'0' - 1; 8],
            [0xba; 8],
            [0xff; 8],
            [0x80; 8],
            [0; 8],
        ];
        // Every byte value in every place among digits.
        for place in 0..8 {
            for b in 0..=255u8 {
                let mut c = *b"31415926";
                c[place] = b;
                cases.push(c);
            }
        }
        for c in &cases {
            assert_eq!(
                eight_digits(u64::from_le_bytes(*c)),
                eight_digits_simple(*c),
                "{c:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn eight_digits_agrees_on_any_bytes(bytes in proptest::array::uniform8(proptest::prelude::any::<u8>())) {
            proptest::prop_assert_eq!(eight_digits(u64::from_le_bytes(bytes)), eight_digits_simple(bytes));
        }

        #[test]
        fn eight_digits_agrees_on_mostly_digits(
            digits in proptest::array::uniform8(b'0'..=b'9'),
            place in 0usize..9,
            b in proptest::prelude::any::<u8>(),
        ) {
            let mut bytes = digits;
            if let Some(slot) = bytes.get_mut(place) {
                *slot = b;
            }
            proptest::prop_assert_eq!(eight_digits(u64::from_le_bytes(bytes)), eight_digits_simple(bytes));
        }

        #[test]
        fn the_timestamp_fast_path_agrees_with_a_digit_loop(t in proptest::collection::vec(
            proptest::prop_oneof![8 => b'0'..=b'9', 1 => proptest::prelude::any::<u8>(), 1 => proptest::prelude::Just(b'.')],
            17,
        )) {
            let simple = (t[10] == b'.')
                .then(|| t[..10].iter().chain(&t[11..]).try_fold(0i64, |n, &b| {
                    b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
                }))
                .flatten()
                .filter(|n| *n < (1i64 << 31) * 1_000_000);
            proptest::prop_assert_eq!(timestamp_micros(&t), simple);
        }
    }

    fn ends_with_text(text: &str) -> ChannelEnd {
        ChannelEnd::HangupSeen {
            at: t(1),
            cause: Some(17),
            cause_txt: Some(text.into()),
            after: None,
            before: None,
        }
    }

    #[test]
    fn the_timestamp_fast_path_agrees_with_the_float_path() {
        let float = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .and_then(clock::from_unix_seconds)
        };
        let mut cases: Vec<String> = [
            "1795520552.123456",
            "1795520552.999999",
            "1795520552.000001",
            "1795520552.5",
            "1795520552",
            "1795520552.",
            "0.000001",
            "2147483647.999999",
            " 1795520552.100000 ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A spread of microsecond values across this era's seconds.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = 1_000_000_000 + x % 1_147_483_647;
            let digits = 1 + (x >> 40) as usize % 6;
            let frac = (x >> 20) % 10u64.pow(digits as u32);
            cases.push(format!("{secs}.{frac:0digits$}"));
        }
        for t in &cases {
            assert!(timestamp_micros(t.trim().as_bytes()).is_some(), "{t}");
            assert_eq!(parse_timestamp(t), float(t), "{t}");
            assert_eq!(timestamp_us(t.as_bytes()), float(t).map(us), "{t}");
        }
        // Outside the fast path: the float path decides, as before.
        for t in [
            "-1.5",
            "+1795520552.1",
            "1795520552.1234567",
            "99999999999.5",
            "2147483648.000000",
            "17955205x2.123456",
            "1795520552.12345x",
            "1795520552.12.456",
            "1e9",
            "x",
            "",
        ] {
            assert!(timestamp_micros(t.as_bytes()).is_none(), "{t}");
            assert_eq!(parse_timestamp(t), float(t), "{t}");
            assert_eq!(timestamp_us(t.as_bytes()), float(t).map(us), "{t}");
        }
    }

    fn live_ids(s: &MapSnapshot) -> Vec<String> {
        let mut v: Vec<String> = s.live.keys().cloned().collect();
        v.sort();
        v
    }

    /// The race of a consumer that takes the queue, then waits: a channel that ends in between (after the
    /// take, before the wait) must still wake it.
    #[tokio::test]
    async fn a_channel_ending_between_take_and_wait_wakes_the_consumer() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        s.apply(&newchannel("a", "a"), t(1));
        assert!(map.take_gone().is_empty());
        s.apply(&hangup("a", "16"), t(2)); // nobody is waiting yet
        tokio::time::timeout(std::time::Duration::from_secs(2), map.gone_ready())
            .await
            .expect("the notification queued before the wait was lost");
        assert_eq!(map.take_gone().len(), 1);
    }

    #[test]
    fn listing_merge_keeps_mid_listing_news_and_never_revives_hangups() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        // Known from the previous connection: a (still up), b (hung up during the gap, unseen), c.
        for uid in ["a", "b", "c"] {
            s.apply(&newchannel(uid, uid), t(1));
        }
        s.read_through(t(2));
        let gen = s.begin_listing(t(2));
        for uid in ["a", "b", "c"] {
            s.listed(gen, &item(uid, uid), t(2));
        }
        assert_eq!(
            s.finish_listing(gen, t(2)),
            Some(ListingOutcome { live: 3, gone: 0 })
        );
        s.read_through(t(5));
        s.disconnected(t(6));
        let _ = map.take_gone();

        s.begin_session(t(40));
        let gen = s.begin_listing(t(40));
        s.listed(gen, &item("a", "a"), t(40));
        // c hangs up while the listing streams, before its own item arrives: it must not come back.
        s.apply(&hangup("c", "16"), t(40));
        s.listed(gen, &item("c", "c"), t(40));
        // d is created mid-listing and is not in it: it must be kept.
        s.apply(&newchannel("d", "d"), t(40));
        assert!(!s.is_synced());
        let outcome = s.finish_listing(gen, t(41)).unwrap();
        assert_eq!(outcome, ListingOutcome { live: 2, gone: 1 });
        let snap = s.snapshot();
        assert!(snap.synced && snap.connected);
        assert_eq!(live_ids(&snap), ["a", "d"]);
        assert_eq!(
            snap.ended["b"].end,
            ChannelEnd::Gone {
                after: Some(t(5)),
                before: t(41)
            }
        );
        assert!(matches!(
            snap.ended["c"].end,
            ChannelEnd::HangupSeen {
                cause: Some(16),
                ..
            }
        ));
        let gone: Vec<(String, &'static str)> = map
            .take_gone()
            .into_iter()
            .map(|g| (g.uniqueid, g.end.reason()))
            .collect();
        assert_eq!(
            gone,
            [
                ("c".to_string(), "hangup"),
                ("b".to_string(), "gone at resync")
            ]
        );
    }

    #[test]
    fn a_cut_listing_never_syncs_nor_ends_channels() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        s.apply(&newchannel("a", "a"), t(1));
        let gen = s.begin_listing(t(2));
        s.disconnected(t(3));
        assert_eq!(s.finish_listing(gen, t(4)), None);
        let snap = s.snapshot();
        assert!(!snap.synced);
        assert_eq!(live_ids(&snap), ["a"]);
        assert!(map.take_gone().is_empty());
    }

    #[test]
    fn a_lag_during_a_listing_is_cured_by_that_listing() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        let gen = s.begin_listing(t(0));
        s.mark_unsynced(t(1));
        s.listed(gen, &item("a", "a"), t(1));
        assert!(s.finish_listing(gen, t(2)).is_some());
        assert!(s.is_synced());
        // A lag after it makes the map unsynced until the next listing.
        s.mark_unsynced(t(3));
        let snap = s.snapshot();
        assert!(!snap.synced);
        assert_eq!(snap.unsynced_since, Some(t(3)));
    }

    #[test]
    fn hangup_uses_the_timestamp_header_when_present() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.apply(&newchannel("a", "a"), t(1));
        let mut h: Vec<(String, String)> = hangup("a", "16")
            .headers()
            .map(|h| (h.key_str().unwrap().into(), h.value_str().unwrap().into()))
            .collect();
        h.push(("Timestamp".into(), "1795520003.250000".into()));
        s.apply(&Message::from_pairs(h), t(9));
        let ChannelEnd::HangupSeen { at, .. } = &s.snapshot().ended["a"].end else {
            panic!()
        };
        assert_eq!(*at, t(3) + chrono::Duration::milliseconds(250));
    }

    #[test]
    fn linkedid_changes_are_applied_and_remembered() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.apply(&newchannel("srv1-1795520001.7", "srv1-1795520001.7"), t(1));
        let transfer = Message::from_pairs([
            ("Event", "BridgeEnter"),
            ("Channel", "PJSIP/2001-00000001"),
            ("Uniqueid", "srv1-1795520001.7"),
            ("Linkedid", "srv1-1795520000.2"),
        ]);
        s.apply(&transfer, t(2));
        let snap = s.snapshot();
        let ch = &snap.live["srv1-1795520001.7"];
        assert_eq!(ch.linkedid, "srv1-1795520000.2");
        assert_eq!(
            ch.linkedids_ever,
            ["srv1-1795520001.7", "srv1-1795520000.2"]
        );
        s.apply(&hangup("srv1-1795520001.7", "16"), t(3));
        let ended = &s.snapshot().ended["srv1-1795520001.7"];
        assert_eq!(
            ended.linkedids_ever,
            ["srv1-1795520001.7", "srv1-1795520000.2"]
        );
        let gone = map.take_gone();
        assert_eq!(gone[0].linkedid, "srv1-1795520000.2");
    }

    /// Issue 14 (6): a channel that lives for days (a ghost Asterisk never frees) keeps at most
    /// [`MAX_LINKEDIDS_PER_CHANNEL`] Linkedids, the oldest dropped and the current one kept; a listing that
    /// shows it again is no activity.
    #[test]
    fn linkedid_history_is_capped_and_listings_are_not_activity() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        let gen = s.begin_listing(t(0));
        s.finish_listing(gen, t(0)).unwrap();
        s.apply(&newchannel("1795520001.1", "1795520001.1"), t(1));
        for i in 0..100 {
            let lid = format!("1795520002.{i}");
            let own = Message::from_pairs([
                ("Event", "BridgeEnter"),
                ("Channel", "SCCP/2001-00000001"),
                ("Uniqueid", "1795520001.1"),
                ("Linkedid", lid.as_str()),
            ]);
            s.read_through(t(2 + i));
            s.apply(&own, t(2 + i));
        }
        let snap = s.snapshot();
        let ch = &snap.live["1795520001.1"];
        let want: Vec<String> = (68..100).map(|i| format!("1795520002.{i}")).collect();
        assert_eq!(ch.linkedids_ever, want);
        assert_eq!(ch.last_activity, t(101));
        // another channel's event names it with a new Linkedid: the oldest goes, the current stays
        let other = Message::from_pairs([
            ("Event", "AttendedTransfer"),
            ("OrigTransfererUniqueid", "1795520009.1"),
            ("OrigTransfererLinkedid", "1795520009.1"),
            ("TransfereeUniqueid", "1795520001.1"),
            ("TransfereeLinkedid", "1795520003.1"),
        ]);
        s.apply(&other, t(102));
        let ch = &s.snapshot().live["1795520001.1"];
        assert_eq!(ch.linkedids_ever.len(), MAX_LINKEDIDS_PER_CHANNEL);
        assert_eq!(ch.linkedids_ever[0], "1795520002.69");
        assert_eq!(ch.linkedid, "1795520002.99");
        assert!(ch.linkedids_ever.contains(&ch.linkedid));
        assert_eq!(ch.linkedids_ever.last().unwrap(), "1795520003.1");
        // listed again much later: still up, but no activity since t(101)
        s.disconnected(t(500));
        s.begin_session(t(600));
        let gen = s.begin_listing(t(600));
        s.listed(gen, &item("1795520001.1", "1795520002.99"), t(600));
        s.finish_listing(gen, t(600)).unwrap();
        let ch = &s.snapshot().live["1795520001.1"];
        assert_eq!(ch.last_activity, t(101));
        assert!(ch.last_known_alive >= t(600));
    }

    /// Regression (cacofonisk `ctd-account-account-xfer-attn-abbcac` with a gap): the transfer target was
    /// created while callwatch was away and listed with its new Linkedid; only the `AttendedTransfer`
    /// event shows it belonged to the consultation call, whose row must stay open while it is up.
    #[test]
    fn other_channels_snapshots_add_to_the_history_but_not_the_current_linkedid() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.apply(&newchannel("pbx-1.970", "pbx-1.868"), t(1));
        let transfer = Message::from_pairs([
            ("Event", "AttendedTransfer"),
            ("OrigTransfererUniqueid", "pbx-1.929"),
            ("OrigTransfererLinkedid", "pbx-1.868"),
            ("TransferTargetChannel", "SIP/150010003-00000035"),
            ("TransferTargetUniqueid", "pbx-1.970"),
            ("TransferTargetLinkedid", "pbx-1.962"),
            ("TransfereeUniqueid", "pbx-1.868"),
            ("TransfereeLinkedid", "<unknown>"),
        ]);
        s.apply(&transfer, t(2));
        let snap = s.snapshot();
        let ch = &snap.live["pbx-1.970"];
        assert_eq!(ch.linkedid, "pbx-1.868");
        assert_eq!(ch.linkedids_ever, ["pbx-1.868", "pbx-1.962"]);
        // channels it does not know are not added by another channel's snapshot
        assert_eq!(live_ids(&snap), ["pbx-1.970"]);
    }

    /// Regression (cacofonisk `queue_simple` with a gap): a channel created and hung up while callwatch was
    /// away, whose late `NewConnectedLine` arrives after the resync, is not added to a synced map.
    #[test]
    fn a_synced_map_does_not_add_channels_from_late_events() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        let gen = s.begin_listing(t(0));
        s.finish_listing(gen, t(0));
        let late = Message::from_pairs([
            ("Event", "NewConnectedLine"),
            (
                "Channel",
                "Local/ID730152@osvpi_route_phoneaccount-00000015;1",
            ),
            ("Uniqueid", "pbx-1.538"),
            ("Linkedid", "pbx-1.518"),
        ]);
        s.apply(&late, t(1));
        assert!(s.snapshot().live.is_empty());
    }

    #[test]
    fn shutdown_ends_every_channel_as_a_restart() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        s.apply(&newchannel("a", "a"), t(1));
        let gen = s.begin_listing(t(1));
        s.listed(gen, &item("a", "a"), t(1));
        s.finish_listing(gen, t(1));
        s.read_through(t(4));
        s.apply(
            &Message::from_pairs([
                ("Event", "Shutdown"),
                ("Shutdown", "Cleanly"),
                ("Restart", "True"),
            ]),
            t(5),
        );
        let snap = s.snapshot();
        assert!(snap.live.is_empty());
        assert!(!snap.synced);
        assert_eq!(
            snap.ended["a"].end,
            ChannelEnd::Restart {
                at: t(5),
                after: Some(t(4)),
                before: None,
            }
        );
        assert_eq!(map.take_gone()[0].end.reason(), "asterisk restarted");
    }

    #[test]
    fn fully_booted_uptime_detects_a_restart_during_the_gap() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        assert_eq!(s.snapshot().booted_at, None);
        assert_eq!(s.fully_booted(Duration::from_secs(900), t(0), t(0)), 0);
        assert_eq!(s.snapshot().booted_at, Some(t(-900)));
        s.apply(&newchannel("1795520001.1", "1795520001.1"), t(1));
        s.disconnected(t(10));
        // Back 100 s later; Asterisk has been up 1000 s: no restart.
        s.begin_session(t(100));
        assert_eq!(s.fully_booted(Duration::from_secs(1000), t(100), t(100)), 0);
        assert_eq!(s.live_count(), 1);
        s.disconnected(t(110));
        // Back at 200 s, up for only 30 s: it restarted after the previous session began.
        s.begin_session(t(200));
        assert_eq!(s.fully_booted(Duration::from_secs(30), t(200), t(200)), 1);
        let snap = s.snapshot();
        assert_eq!(snap.booted_at, Some(t(170)));
        assert!(snap.live.is_empty());
        assert!(
            matches!(snap.ended["1795520001.1"].end, ChannelEnd::Restart { at, before, .. } if at == t(110) && before == Some(t(170)))
        );
        // Uniqueids restart with Asterisk: the same id is a new channel now.
        s.apply(&newchannel("1795520001.1", "1795520001.1"), t(201));
        assert_eq!(s.snapshot().live["1795520001.1"].first_seen, t(201));
    }

    /// A session from 0 s to Asterisk up 900 s, one channel up, the connection dropped at 10 s.
    fn one_call_dropped_at_10() -> ServerChannels {
        let s = ChannelMap::default().server("pbx");
        s.begin_session(t(0));
        assert_eq!(s.fully_booted(Duration::from_secs(900), t(0), t(0)), 0);
        s.apply(&newchannel("1795520001.1", "1795520001.1"), t(1));
        s.disconnected(t(10));
        s
    }

    /// Found by the fault-injection soak: Asterisk crashed less than a second after a session began (the
    /// client had just reconnected after another fault). Its new boot, counted from when the Login was sent,
    /// is certainly after that session's start: a restart.
    #[test]
    fn a_crash_just_after_a_reconnect_is_a_restart() {
        let s = one_call_dropped_at_10();
        // Back at 20 s: the same Asterisk (up 920 s).
        s.begin_session(t(20));
        assert_eq!(s.fully_booted(Duration::from_secs(920), t(20), t(20)), 0);
        assert_eq!(s.live_count(), 1);
        // It crashes half a second later and boots again at 22.5 s; the login at 25 s finds it up 2 s:
        // booted after 22 s, certainly after the previous session began (20 s).
        let crash = t(20) + chrono::Duration::milliseconds(500);
        s.disconnected(crash);
        s.begin_session(t(25));
        assert_eq!(s.fully_booted(Duration::from_secs(2), t(25), t(25)), 1);
        assert!(matches!(
            s.snapshot().ended["1795520001.1"].end,
            ChannelEnd::Restart { at, .. } if at == crash
        ));
    }

    /// The same Asterisk, its `FullyBooted` slow to arrive (a slow link): the boot computed from the arrival
    /// is seconds later than the previous session's, but not later than what the Login's sending allows.
    #[test]
    fn a_slow_login_is_not_a_restart() {
        let s = one_call_dropped_at_10();
        // Login sent at 20 s; Asterisk answered at 20 s (up 920 s); the answer arrived at 24 s.
        s.begin_session(t(24));
        assert_eq!(s.fully_booted(Duration::from_secs(920), t(20), t(24)), 0);
        assert_eq!(s.live_count(), 1);
    }

    /// A recorded session replayed (the demo, the simulator) answers a Login sent later than the recording's
    /// with the recorded `Uptime`: the boot computed now is seconds later than the one the previous session
    /// computed, but not later than that session's start. Not a restart: the live calls stay.
    #[test]
    fn a_stale_uptime_from_a_delayed_login_is_not_a_restart() {
        let s = one_call_dropped_at_10();
        // The recording's second Login was at 20 s (up 920 s); the replay's is 30 s later.
        s.begin_session(t(50));
        assert_eq!(s.fully_booted(Duration::from_secs(920), t(50), t(50)), 0);
        assert_eq!(s.live_count(), 1);
    }

    /// Issue 14 (8): after a crash the channels died no later than the moment the connection dropped
    /// (and no later than the new boot): that is the end written, not the new Asterisk's start.
    #[test]
    fn a_crash_ends_the_channels_at_the_drop() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        s.apply(&newchannel("1795520001.1", "1795520001.1"), t(1));
        let gen = s.begin_listing(t(1));
        s.listed(gen, &item("1795520001.1", "1795520001.1"), t(1));
        s.finish_listing(gen, t(1));
        s.read_through(t(9));
        // kill -9 at t(10): the connection drops; Asterisk is back at t(20) and we log in at t(40).
        s.disconnected(t(10));
        s.begin_session(t(40));
        assert_eq!(s.fully_booted(Duration::from_secs(20), t(40), t(40)), 1);
        assert_eq!(
            s.snapshot().ended["1795520001.1"].end,
            ChannelEnd::Restart {
                at: t(10),
                after: Some(t(9)),
                before: Some(t(20)),
            }
        );
    }

    #[test]
    fn tombstones_expire_and_are_capped() {
        let map = ChannelMap::new(MapOptions {
            tombstone_retention: Duration::from_secs(60),
            max_tombstones: 3,
            gone_queue: 2,
        });
        let s = map.server("pbx");
        for i in 0..5 {
            let uid = format!("u{i}");
            s.apply(&newchannel(&uid, &uid), t(i));
            s.apply(&hangup(&uid, "16"), t(i));
        }
        assert_eq!(s.snapshot().ended.len(), 3);
        assert_eq!(map.take_gone().len(), 2);
        assert_eq!(map.gone_dropped(), 3);
        s.apply(&newchannel("late", "late"), t(200));
        s.apply(&hangup("late", "16"), t(200));
        let ended: Vec<String> = s.snapshot().ended.keys().cloned().collect();
        assert_eq!(ended, ["late"]);
    }

    #[test]
    fn events_for_unknown_channels_add_them_but_never_after_a_hangup() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        let newstate = |uid: &str| {
            Message::from_pairs([
                ("Event", "Newstate"),
                ("Channel", "PJSIP/1-1"),
                ("ChannelStateDesc", "Up"),
                ("Uniqueid", uid),
                ("Linkedid", uid),
            ])
        };
        s.apply(&newstate("x"), t(1));
        assert_eq!(s.snapshot().live["x"].state, "Up");
        s.apply(&hangup("y", "16"), t(2));
        s.apply(&newstate("y"), t(3));
        let cdr = Message::from_pairs([
            ("Event", "Cdr"),
            ("UniqueID", "z"),
            ("Channel", "PJSIP/1-1"),
        ]);
        s.apply(&cdr, t(3));
        assert_eq!(live_ids(&s.snapshot()), ["x"]);
    }
}
