//! [`Session`]: one recorded (or synthetic) AMI connection as pure data.
//!
//! A recorded session is a prefix `DIR/NAME.LABEL` with these files:
//! - `NAME.LABEL.ami` or `NAME.LABEL.ami.gz`: the bytes the server sent (required);
//! - `NAME.LABEL.sent`: the bytes the client sent (its actions), optional;
//! - `NAME.LABEL.chunks.jsonl`: when each read and write happened, plus connect/close notes, optional.
//!
//! A `.json` path is loaded as an event-list flow instead (see [`crate::flow`]): a banner, then one message
//! per event with synthetic arrival times.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ami_proto::{Frame, Limits, Message, MessageKind, Parser};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, Result};
use crate::flow;

/// The banner a synthetic session starts with (Asterisk 22's AMI version).
pub const BANNER: &str = "Asterisk Call Manager/11.0.0";

/// One socket read (or write) of the recording: `len` bytes at `offset` of the stream, arriving at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the first byte in the stream.
    pub offset: usize,
    /// Number of bytes.
    pub len: usize,
    /// When the bytes arrived (wall clock of the recording host).
    pub at: DateTime<Utc>,
}

impl Chunk {
    /// Offset just past the chunk's last byte.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// Why a recorded connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent `Logoff`.
    Logoff,
    /// The client closed its socket.
    ClientClose,
    /// The server closed the connection.
    Eof,
    /// Any other reason, as written in the recording.
    Other(String),
}

/// A connection milestone of the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteKind {
    /// The TCP connection was established.
    Connect,
    /// The client's `Login` succeeded.
    LoggedIn,
    /// The connection closed.
    Close(CloseReason),
    /// A note this crate does not know, by its `what`.
    Other(String),
}

/// A connection milestone with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What happened.
    pub kind: NoteKind,
    /// When.
    pub at: DateTime<Utc>,
}

/// An action the recorded client sent (from `.sent`). Only its name and ActionID are kept, never its other
/// headers (a `Login` carries the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAction {
    /// The `Action:` value, as sent.
    pub name: String,
    /// The `ActionID:` value, if the action had one.
    pub action_id: Option<String>,
    /// Offset of the action in the `.sent` stream.
    pub sent_offset: usize,
    /// When it was written, if the recording has write times.
    pub sent_at: Option<DateTime<Utc>>,
    /// Offset in the received stream of the message that answers it, when found.
    pub response_offset: Option<usize>,
    /// Index in [`Session::frames`] of that message.
    pub response_frame: Option<usize>,
}

/// What a frame of the received stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameKind {
    /// The greeting line.
    Banner,
    /// A message with an `Event:` header.
    Event,
    /// A message with a `Response:` header and no `Event:`.
    Response,
    /// A frame that is neither (or did not parse); passed through untouched.
    Other,
}

/// One complete frame of the received stream, by byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    /// Offset of the frame's first byte.
    pub start: usize,
    /// Offset just past its terminating blank line.
    pub end: usize,
    /// What it is.
    pub kind: FrameKind,
    /// Offset just past the frame's first line (line end included).
    pub first_line_end: usize,
    /// Byte range of the `ActionID` value, when the frame has one.
    pub action_id: Option<(usize, usize)>,
    /// Byte range of the whole `ActionID: …` line, line end included.
    pub action_id_line: Option<(usize, usize)>,
    /// The recorded action (index in [`Session::actions`]) this frame belongs to: its response, or a later
    /// message carrying its ActionID (list items, `OriginateResponse`).
    pub owner: Option<usize>,
}

/// One AMI connection as data: what the server sent, when, and what the client asked.
#[derive(Clone)]
pub struct Session {
    name: String,
    bytes: Bytes,
    chunks: Vec<Chunk>,
    tx_chunks: Vec<Chunk>,
    notes: Vec<Note>,
    actions: Vec<RecordedAction>,
    frames: Vec<FrameSpan>,
    synthetic: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .field("chunks", &self.chunks.len())
            .field("frames", &self.frames.len())
            .field("actions", &self.actions)
            .field("notes", &self.notes)
            .field("synthetic", &self.synthetic)
            .finish()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn time_of(t: f64) -> Option<DateTime<Utc>> {
    if !t.is_finite() {
        return None;
    }
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    DateTime::from_timestamp(secs as i64, nanos)
}

impl Session {
    /// Loads a session: a `.json` event list, or a recorded prefix `DIR/NAME.LABEL` (a path ending in `.ami`
    /// or `.ami.gz` is accepted too).
    pub fn load(prefix: &Path) -> Result<Self> {
        let text = prefix.to_string_lossy();
        if text.ends_with(".json") {
            let events = flow::load_events(prefix)?;
            return Ok(Self::from_events(
                &flow::flow_name(prefix),
                &events,
                DateTime::UNIX_EPOCH,
                flow::DEFAULT_SPACING,
            ));
        }
        let prefix = if let Some(p) = text.strip_suffix(".ami.gz") {
            PathBuf::from(p)
        } else if let Some(p) = text.strip_suffix(".ami") {
            PathBuf::from(p)
        } else {
            prefix.to_owned()
        };
        let plain = with_suffix(&prefix, ".ami");
        let gz = with_suffix(&prefix, ".ami.gz");
        let bytes = if plain.exists() {
            read_file(&plain)?
        } else if gz.exists() {
            let raw = read_file(&gz)?;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|source| Error::Read {
                    path: gz.clone(),
                    source,
                })?;
            out
        } else {
            return Err(Error::NoStream { prefix });
        };
        let sent_path = with_suffix(&prefix, ".sent");
        let sent = if sent_path.exists() {
            Some(read_file(&sent_path)?)
        } else {
            None
        };
        let chunks_path = with_suffix(&prefix, ".chunks.jsonl");
        let timing = if chunks_path.exists() {
            Some(parse_chunks(&read_file(&chunks_path)?, &chunks_path)?)
        } else {
            None
        };
        let name = prefix
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let session = Self::from_recording(&name, Bytes::from(bytes), sent.as_deref(), timing)?;
        for c in session.chunks.iter() {
            if c.end() > session.bytes.len() {
                return Err(Error::ChunkOutOfRange {
                    path: chunks_path,
                    offset: c.offset,
                    len: c.len,
                    stream_len: session.bytes.len(),
                });
            }
        }
        Ok(session)
    }

    /// Every subject session of a recorded scenario, in order: `DIR/NAME.subject-1`, `DIR/NAME.subject-2`, ….
    pub fn load_scenario(dir: &Path, name: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for i in 1.. {
            let prefix = dir.join(format!("{name}.subject-{i}"));
            if !with_suffix(&prefix, ".ami").exists() && !with_suffix(&prefix, ".ami.gz").exists() {
                break;
            }
            out.push(Self::load(&prefix)?);
        }
        if out.is_empty() {
            return Err(Error::NoStream {
                prefix: dir.join(format!("{name}.subject-1")),
            });
        }
        Ok(out)
    }

    /// A session from recorded bytes, the client's bytes (if known) and the timing file's contents (if
    /// known). Without timing, each frame gets its own chunk, [`flow::DEFAULT_SPACING`] apart from the Unix
    /// epoch.
    pub fn from_recording(
        name: &str,
        bytes: Bytes,
        sent: Option<&[u8]>,
        timing: Option<Timing>,
    ) -> Result<Self> {
        let frames = index_frames(&bytes);
        let Timing { rx, tx, notes } = match timing {
            Some(t) => t,
            None => synthetic_timing(
                &frames,
                bytes.len(),
                DateTime::UNIX_EPOCH,
                flow::DEFAULT_SPACING,
            ),
        };
        let mut s = Self {
            name: name.to_owned(),
            bytes,
            chunks: rx,
            tx_chunks: tx,
            notes,
            actions: Vec::new(),
            frames,
            synthetic: false,
        };
        if let Some(sent) = sent {
            s.actions = parse_sent(sent, &s.tx_chunks);
            s.match_responses();
        }
        Ok(s)
    }

    /// A synthetic session playing `events` after a banner: event `i` arrives at `start + (i + 1) × spacing`.
    ///
    /// It has no recorded actions and no close note: a server answers `Login` itself, holds the events back
    /// until the client has logged in, and keeps the connection open after the last event.
    pub fn from_events(
        name: &str,
        events: &[Message],
        start: DateTime<Utc>,
        spacing: std::time::Duration,
    ) -> Self {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(BANNER.as_bytes());
        buf.extend_from_slice(b"\r\n");
        for e in events {
            e.encode_into(&mut buf);
        }
        let bytes = buf.freeze();
        let frames = index_frames(&bytes);
        let Timing { rx, tx, notes } = synthetic_timing(&frames, bytes.len(), start, spacing);
        Self {
            name: name.to_owned(),
            bytes,
            chunks: rx,
            tx_chunks: tx,
            notes,
            actions: Vec::new(),
            frames,
            synthetic: true,
        }
    }

    /// The session's name (`NAME.LABEL`, or the flow file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every byte the server sent.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The reads, in order, with their arrival times.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// The client's writes (offsets in the `.sent` stream), if recorded.
    pub fn tx_chunks(&self) -> &[Chunk] {
        &self.tx_chunks
    }

    /// Connection milestones.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// The actions the recorded client sent, in order.
    pub fn actions(&self) -> &[RecordedAction] {
        &self.actions
    }

    /// The complete frames of the stream, in order (a partial last message is not included).
    pub fn frames(&self) -> &[FrameSpan] {
        &self.frames
    }

    /// True for a session made from an event list (no recorded login: the server must answer it).
    pub fn is_synthetic(&self) -> bool {
        self.synthetic
    }

    /// When the connection was made: the connect note, else the first chunk's time.
    pub fn connected_at(&self) -> DateTime<Utc> {
        self.notes
            .iter()
            .find(|n| n.kind == NoteKind::Connect)
            .map(|n| n.at)
            .or_else(|| self.chunks.first().map(|c| c.at))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// When the recorded connection closed, and why (`None` for a session that never closes by itself).
    pub fn closed(&self) -> Option<(DateTime<Utc>, &CloseReason)> {
        self.notes.iter().find_map(|n| match &n.kind {
            NoteKind::Close(r) => Some((n.at, r)),
            _ => None,
        })
    }

    /// Bytes after the last complete frame (a message cut mid-way).
    pub fn trailing_partial(&self) -> &[u8] {
        let end = self.frames.last().map_or(0, |f| f.end);
        &self.bytes[end..]
    }

    /// When the byte at `offset` arrived (the time of the chunk that holds it).
    pub fn arrival_of(&self, offset: usize) -> Option<DateTime<Utc>> {
        let i = self.chunks.partition_point(|c| c.end() <= offset);
        self.chunks
            .get(i)
            .filter(|c| c.offset <= offset)
            .map(|c| c.at)
    }

    /// The complete messages of the stream with the time each one was complete (banner excluded).
    pub fn messages(&self) -> Vec<(DateTime<Utc>, Message)> {
        let mut parser = Parser::new(Limits::default());
        let mut buf = BytesMut::from(&self.bytes[..]);
        let mut out = Vec::new();
        while let Some(frame) = parser.next_frame(&mut buf) {
            let end = self.bytes.len() - buf.len();
            if let Ok(Frame::Message(m)) = frame {
                let at = self
                    .arrival_of(end.saturating_sub(1))
                    .unwrap_or_else(|| self.connected_at());
                out.push((at, m));
            }
        }
        out
    }

    /// Finds each recorded action's response frame and which later frames carry its ActionID.
    fn match_responses(&mut self) {
        let mut claimed = vec![false; self.frames.len()];
        for ai in 0..self.actions.len() {
            let lower = self.actions[ai]
                .sent_at
                .map(|t| rx_offset_at(&self.chunks, t))
                .unwrap_or(0);
            // Responses come in order on one connection: never before the previous action's response.
            let prev = self.actions[..ai]
                .iter()
                .rev()
                .find_map(|a| a.response_frame)
                .map_or(0, |f| f + 1);
            let id = self.actions[ai].action_id.clone();
            let found = (prev..self.frames.len()).find(|&fi| {
                let f = &self.frames[fi];
                if claimed[fi] || f.kind != FrameKind::Response {
                    return false;
                }
                match (&id, f.action_id) {
                    (Some(id), Some((a, b))) => &self.bytes[a..b] == id.as_bytes(),
                    (None, None) => f.start >= lower,
                    _ => false,
                }
            });
            if let Some(fi) = found {
                claimed[fi] = true;
                self.actions[ai].response_frame = Some(fi);
                self.actions[ai].response_offset = Some(self.frames[fi].start);
                self.frames[fi].owner = Some(ai);
            }
        }
        // Later frames with a recorded ActionID belong to the latest action with that ID answered before them.
        for fi in 0..self.frames.len() {
            if self.frames[fi].owner.is_some() {
                continue;
            }
            let Some((a, b)) = self.frames[fi].action_id else {
                continue;
            };
            let id = &self.bytes[a..b];
            self.frames[fi].owner = self
                .actions
                .iter()
                .enumerate()
                .filter(|(_, act)| act.action_id.as_deref().map(str::as_bytes) == Some(id))
                .filter(|(_, act)| act.response_frame.is_some_and(|r| r < fi))
                .map(|(i, _)| i)
                .next_back();
        }
    }
}

/// The contents of a `.chunks.jsonl` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timing {
    /// Reads of the server's stream.
    pub rx: Vec<Chunk>,
    /// Writes of the client's actions.
    pub tx: Vec<Chunk>,
    /// Milestones.
    pub notes: Vec<Note>,
}

/// Parses a `.chunks.jsonl` file; `path` is only used in error messages.
pub fn parse_chunks(text: &[u8], path: &Path) -> Result<Timing> {
    let mut t = Timing::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |reason: &str| Error::Chunks {
            path: path.to_owned(),
            line: i + 1,
            reason: reason.to_owned(),
        };
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| bad(&e.to_string()))?;
        let at = v
            .get("t")
            .and_then(serde_json::Value::as_f64)
            .and_then(time_of)
            .ok_or_else(|| bad("missing or invalid time \"t\""))?;
        match v.get("dir").and_then(serde_json::Value::as_str) {
            Some(dir @ ("rx" | "tx")) => {
                let num = |k: &str| {
                    v.get(k)
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad(&format!("missing or invalid \"{k}\"")))
                };
                let chunk = Chunk {
                    offset: num("o")?,
                    len: num("n")?,
                    at,
                };
                if dir == "rx" {
                    t.rx.push(chunk)
                } else {
                    t.tx.push(chunk)
                }
            }
            Some("note") => {
                let what = v
                    .get("what")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                let kind = match what {
                    "connect" => NoteKind::Connect,
                    "logged-in" => NoteKind::LoggedIn,
                    "close" => NoteKind::Close(
                        match v
                            .get("reason")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("")
                        {
                            "logoff" => CloseReason::Logoff,
                            "client-close" => CloseReason::ClientClose,
                            "eof" => CloseReason::Eof,
                            other => CloseReason::Other(other.to_owned()),
                        },
                    ),
                    other => NoteKind::Other(other.to_owned()),
                };
                t.notes.push(Note { kind, at });
            }
            _ => return Err(bad("\"dir\" must be rx, tx or note")),
        }
    }
    t.rx.sort_by_key(|c| c.offset);
    t.tx.sort_by_key(|c| c.offset);
    Ok(t)
}

/// Offset of the received stream reached at time `t`: the end of the last read at or before `t`.
fn rx_offset_at(chunks: &[Chunk], t: DateTime<Utc>) -> usize {
    chunks
        .iter()
        .filter(|c| c.at <= t)
        .map(Chunk::end)
        .max()
        .unwrap_or(0)
}

/// One chunk per frame (and one for a trailing partial frame), `spacing` apart, the banner at `start`.
fn synthetic_timing(
    frames: &[FrameSpan],
    len: usize,
    start: DateTime<Utc>,
    spacing: std::time::Duration,
) -> Timing {
    let step = TimeDelta::from_std(spacing).unwrap_or(TimeDelta::zero());
    let mut rx = Vec::with_capacity(frames.len() + 1);
    let mut at = start;
    let mut prev_end = 0;
    for f in frames {
        rx.push(Chunk {
            offset: prev_end,
            len: f.end - prev_end,
            at,
        });
        prev_end = f.end;
        at += step;
    }
    if prev_end < len {
        rx.push(Chunk {
            offset: prev_end,
            len: len - prev_end,
            at,
        });
    }
    Timing {
        rx,
        tx: Vec::new(),
        notes: vec![Note {
            kind: NoteKind::Connect,
            at: start,
        }],
    }
}

/// Splits the received stream into frames, recording where each one's ActionID is.
pub(crate) fn index_frames(bytes: &Bytes) -> Vec<FrameSpan> {
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    let total = bytes.len();
    let mut prev_end = 0;
    while let Some(frame) = parser.next_frame(&mut buf) {
        let end = total - buf.len();
        let span = match frame {
            Ok(Frame::Banner(_)) => FrameSpan {
                start: 0,
                end,
                kind: FrameKind::Banner,
                first_line_end: end,
                action_id: None,
                action_id_line: None,
                owner: None,
            },
            Ok(Frame::Message(m)) => {
                let start = end - m.raw().len();
                let base = m.raw().as_ptr() as usize;
                let kind = match m.kind() {
                    Ok(MessageKind::Event) => FrameKind::Event,
                    Ok(MessageKind::Response) => FrameKind::Response,
                    _ => FrameKind::Other,
                };
                let raw = &m.raw()[..];
                let line_end = |from: usize| memchr_nl(raw, from).map_or(raw.len(), |i| i + 1);
                let first_line_end = start + line_end(0);
                let mut action_id = None;
                let mut action_id_line = None;
                if let Some(h) = m
                    .headers()
                    .find(|h| h.key.eq_ignore_ascii_case(b"ActionID"))
                {
                    let ks = h.key.as_ptr() as usize - base;
                    let vs = h.value.as_ptr() as usize - base;
                    let ve = vs + h.value.len();
                    action_id = Some((start + vs, start + ve));
                    action_id_line = Some((start + ks, start + line_end(ve)));
                }
                FrameSpan {
                    start,
                    end,
                    kind,
                    first_line_end,
                    action_id,
                    action_id_line,
                    owner: None,
                }
            }
            Err(_) => FrameSpan {
                start: prev_end,
                end,
                kind: FrameKind::Other,
                first_line_end: end,
                action_id: None,
                action_id_line: None,
                owner: None,
            },
        };
        prev_end = end;
        out.push(span);
    }
    out
}

fn memchr_nl(raw: &[u8], from: usize) -> Option<usize> {
    raw.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| i + from)
}

/// The actions in a `.sent` stream, with the time each was written when the writes are known.
fn parse_sent(sent: &[u8], tx: &[Chunk]) -> Vec<RecordedAction> {
    let mut parser = Parser::without_banner(Limits::default());
    let mut buf = BytesMut::from(sent);
    let mut out = Vec::new();
    while let Some(frame) = parser.next_frame(&mut buf) {
        let end = sent.len() - buf.len();
        let Ok(Frame::Message(m)) = frame else {
            continue;
        };
        let Some(name) = m.get_str("Action") else {
            continue;
        };
        let offset = end - m.raw().len();
        let sent_at = tx
            .iter()
            .find(|c| c.offset <= offset && offset < c.end())
            .map(|c| c.at);
        out.push(RecordedAction {
            name: name.to_owned(),
            action_id: m.action_id().map(str::to_owned),
            sent_offset: offset,
            sent_at,
            response_offset: None,
            response_frame: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/ami")
            .join(name)
    }

    #[test]
    fn loads_a_recording_with_actions_and_responses() {
        let s = Session::load(&fixture("disconnect-gap.subject-2")).unwrap();
        assert_eq!(s.name(), "disconnect-gap.subject-2");
        assert_eq!(s.bytes().len(), 92995);
        assert!(s.bytes().starts_with(b"Asterisk Call Manager/11.0.0\r\n"));
        let names: Vec<_> = s.actions().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Login", "CoreShowChannels", "Status", "Logoff"]);
        for a in s.actions() {
            let off = a.response_offset.unwrap();
            let f = &s.frames()[a.response_frame.unwrap()];
            let (x, y) = f.action_id.unwrap();
            assert_eq!(&s.bytes()[x..y], a.action_id.as_deref().unwrap().as_bytes());
            assert_eq!(f.start, off);
            assert!(s.bytes()[off..].starts_with(b"Response: "));
        }
        assert_eq!(
            s.closed().map(|(_, r)| r.clone()),
            Some(CloseReason::Logoff)
        );
        assert!(s.connected_at() < s.chunks()[1].at);
        // Chunks tile the stream.
        let mut end = 0;
        for c in s.chunks() {
            assert_eq!(c.offset, end);
            end = c.end();
        }
        assert_eq!(end, s.bytes().len());
    }

    #[test]
    fn list_items_belong_to_their_action() {
        let s = Session::load(&fixture("disconnect-gap.subject-2")).unwrap();
        let csc = s
            .actions()
            .iter()
            .position(|a| a.name == "CoreShowChannels")
            .unwrap();
        let items = s
            .frames()
            .iter()
            .filter(|f| f.owner == Some(csc) && f.kind == FrameKind::Event)
            .count();
        // One item per listed channel, plus the CoreShowChannelsComplete event.
        let listed = s
            .messages()
            .iter()
            .filter(|(_, m)| m.event() == Some("CoreShowChannel"))
            .count();
        assert_eq!(items, listed + 1);
    }

    #[test]
    fn ping_without_action_id_is_matched_by_time_and_order() {
        let s = Session::load(&fixture("ping.subject-1")).unwrap();
        let last_ping = s.actions().iter().rfind(|a| a.name == "Ping").unwrap();
        assert_eq!(last_ping.action_id, None);
        let f = &s.frames()[last_ping.response_frame.unwrap()];
        assert_eq!(f.action_id, None);
        assert!(s.bytes()[f.start..f.end]
            .windows(10)
            .any(|w| w == b"Ping: Pong"));
        assert!(
            f.start >= s.frames()[s.actions()[s.actions().len() - 3].response_frame.unwrap()].end
        );
    }

    #[test]
    fn every_fixture_loads_and_frames_tile_the_stream() {
        let dir = fixture("");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let Some(prefix) = p.to_str().and_then(|s| s.strip_suffix(".ami")) else {
                continue;
            };
            let s = Session::load(Path::new(prefix)).unwrap();
            let mut end = 0;
            for f in s.frames() {
                assert!(f.start >= end);
                end = f.end;
            }
            assert_eq!(end + s.trailing_partial().len(), s.bytes().len());
            for a in s.actions() {
                // Every recorded action was answered, except where the connection was cut first.
                if a.response_offset.is_none() {
                    assert!(
                        s.closed().is_some_and(|(_, r)| *r != CloseReason::Logoff),
                        "{}: {a:?}",
                        s.name()
                    );
                }
            }
            n += 1;
        }
        assert!(n >= 20, "{n}");
    }

    #[test]
    fn missing_stream_is_an_error() {
        assert!(matches!(
            Session::load(&fixture("nope.subject-1")),
            Err(Error::NoStream { .. })
        ));
    }

    #[test]
    fn gzip_stream_loads_like_the_plain_one() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ami-testkit-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = std::fs::read(fixture("basic.subject-1.ami")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        std::fs::write(dir.join("basic.subject-1.ami.gz"), enc.finish().unwrap()).unwrap();
        let s = Session::load(&dir.join("basic.subject-1")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&s.bytes()[..], &plain[..]);
        assert_eq!(s.chunks().len(), s.frames().len());
    }

    #[test]
    fn malformed_chunks_are_reported_with_line_numbers() {
        let err = parse_chunks(
            b"{\"dir\":\"rx\",\"o\":0,\"n\":3,\"t\":1.5}\n{\"dir\":\"rx\",\"t\":2}\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Chunks { line: 2, .. }), "{err}");
    }

    #[test]
    fn event_list_session_has_banner_and_spaced_chunks() {
        let events = vec![
            Message::from_pairs([("Event", "A")]),
            Message::from_pairs([("Event", "B")]),
        ];
        let s = Session::from_events(
            "t",
            &events,
            DateTime::UNIX_EPOCH,
            std::time::Duration::from_millis(100),
        );
        assert_eq!(
            &s.bytes()[..],
            b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\nEvent: B\r\n\r\n"
        );
        let times: Vec<i64> = s.chunks().iter().map(|c| c.at.timestamp_millis()).collect();
        assert_eq!(times, [0, 100, 200]);
        assert!(s.is_synthetic());
        assert!(s.closed().is_none());
    }
}
