//! [`Message`]: one AMI frame as an ordered list of headers.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ParseError;

/// Byte range of one header inside a message's frame.
///
/// `key_end == key_start` marks a raw line without a key (legacy `Response: Follows` command output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) key_start: u32,
    pub(crate) key_end: u32,
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
}

/// Bytes of one encoded [`Span`]: four little-endian `u32`s.
pub(crate) const SPAN_BYTES: usize = 16;

impl Span {
    /// Appends the span's encoding to `out`.
    #[inline]
    pub(crate) fn encode_into(&self, out: &mut BytesMut) {
        let mut b = [0u8; SPAN_BYTES];
        b[0..4].copy_from_slice(&self.key_start.to_le_bytes());
        b[4..8].copy_from_slice(&self.key_end.to_le_bytes());
        b[8..12].copy_from_slice(&self.value_start.to_le_bytes());
        b[12..16].copy_from_slice(&self.value_end.to_le_bytes());
        out.put_slice(&b);
    }

    /// Reads a span back from its encoding (`chunk` is exactly [`SPAN_BYTES`] long).
    #[inline]
    fn decode(chunk: &[u8]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&chunk[i..i + 4]);
            u32::from_le_bytes(w)
        };
        Self {
            key_start: word(0),
            key_end: word(4),
            value_start: word(8),
            value_end: word(12),
        }
    }
}

/// Where the headers every consumer looks for first (`Event`, `Response`, `ActionID`, and a channel event's
/// own `Uniqueid` and `Linkedid`) are, found while the frame is parsed so that classifying a message or
/// finding its channel does not search it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Landmarks {
    event: u32,
    response: u32,
    action_id: u32,
    uniqueid: u32,
    linkedid: u32,
    timestamp: u32,
}

/// "No such header" in [`Landmarks`].
const ABSENT: u32 = u32::MAX;

impl Default for Landmarks {
    fn default() -> Self {
        Self {
            event: ABSENT,
            response: ABSENT,
            action_id: ABSENT,
            uniqueid: ABSENT,
            linkedid: ABSENT,
            timestamp: ABSENT,
        }
    }
}

impl Landmarks {
    /// Notes header number `index` with key `key`; the first header of each name wins, as in
    /// [`Message::get`]. Called for every header while parsing, so it compares whole keys as one word.
    #[inline(always)]
    pub(crate) fn note(&mut self, index: usize, key: &[u8]) {
        let slot = match key.len() {
            5 if word_eq_ignore_case(key, b"event") => &mut self.event,
            8 => match fold_case(key) {
                k if k == fold_case(b"response") => &mut self.response,
                k if k == fold_case(b"actionid") => &mut self.action_id,
                k if k == fold_case(b"uniqueid") => &mut self.uniqueid,
                k if k == fold_case(b"linkedid") => &mut self.linkedid,
                _ => return,
            },
            9 if fold_case(key) == fold_case(b"timestam") && key[8] | 0x20 == b'p' => {
                &mut self.timestamp
            }
            _ => return,
        };
        if *slot == ABSENT {
            *slot = index as u32;
        }
    }
}

/// The first (up to) 8 bytes of `key` as one little-endian word with ASCII letters folded to lower case.
/// Exact for comparisons against all-letter lower-case names: a byte folds onto a letter only when it is
/// that letter in either case.
#[inline(always)]
fn fold_case(key: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = key.len().min(8);
    w[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(w) | 0x2020_2020_2020_2020
}

/// `key` equals the lower-case all-letter `name` (at most 8 bytes, same length), ignoring ASCII case.
#[inline(always)]
fn word_eq_ignore_case(key: &[u8], name: &[u8]) -> bool {
    fold_case(key) == fold_case(name)
}

/// What a message is, by AMI's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// Has an `Event:` header, whatever else it carries (`OriginateResponse` also has `Response:`).
    Event,
    /// Has a `Response:` header and no `Event:` header.
    Response,
}

/// One AMI message: every header in arrival order, repeated keys included.
///
/// The message owns its frame as a reference-counted [`Bytes`]; headers are byte ranges into it, kept in a
/// second [`Bytes`] cut from a buffer the parser shares between many messages, so parsing allocates
/// nothing per header and nothing per message. Lookups are ASCII case-insensitive, as Asterisk's own are.
/// Values are bytes: a value that is not UTF-8 is kept as is and is only unavailable through the `&str`
/// accessors.
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    /// The encoded [`Span`]s, [`SPAN_BYTES`] each.
    spans: Bytes,
    landmarks: Landmarks,
}

/// A borrowed header of a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The key, as sent (case kept). Empty for a raw output line of legacy command output.
    pub key: &'a [u8],
    /// The value, without the `": "` separator and without the line end.
    pub value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The key as text, when it is valid UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.key).ok()
    }

    /// The value as text, when it is valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

impl Message {
    /// A message over `raw` with the encoded `spans` and their `landmarks`.
    pub(crate) fn from_parts(raw: Bytes, spans: Bytes, landmarks: Landmarks) -> Self {
        debug_assert_eq!(spans.len() % SPAN_BYTES, 0);
        Self {
            raw,
            spans,
            landmarks,
        }
    }

    /// Builds a message from `(key, value)` pairs, as if it had been received with CRLF line ends.
    ///
    /// Meant for tests and synthetic sessions; keys and values are copied into one frame.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut buf = BytesMut::new();
        let mut spans = BytesMut::new();
        let mut landmarks = Landmarks::default();
        for (index, (k, v)) in pairs.into_iter().enumerate() {
            let (k, v) = (k.as_ref(), v.as_ref());
            let key_start = buf.len() as u32;
            buf.put_slice(k);
            let key_end = buf.len() as u32;
            buf.put_slice(b": ");
            let value_start = buf.len() as u32;
            buf.put_slice(v);
            let value_end = buf.len() as u32;
            buf.put_slice(b"\r\n");
            landmarks.note(index, k);
            Span {
                key_start,
                key_end,
                value_start,
                value_end,
            }
            .encode_into(&mut spans);
        }
        buf.put_slice(b"\r\n");
        Self::from_parts(buf.freeze(), spans.freeze(), landmarks)
    }

    /// The frame exactly as received, terminating blank line included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Number of headers (raw output lines included).
    pub fn len(&self) -> usize {
        self.spans.len() / SPAN_BYTES
    }

    /// True when the message has no header at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.spans.chunks_exact(SPAN_BYTES).map(Span::decode)
    }

    /// The value of the header at `index` (a [`Landmarks`] entry): only the value's half of its span is read.
    #[inline]
    fn landmark_value(&self, index: u32) -> Option<&[u8]> {
        if index == ABSENT {
            return None;
        }
        let at = index as usize * SPAN_BYTES + 8;
        let mut w = [0u8; 8];
        w.copy_from_slice(self.spans.get(at..at + 8)?);
        let w = u64::from_le_bytes(w);
        self.raw.get(w as u32 as usize..(w >> 32) as usize)
    }

    #[inline]
    fn header_at(&self, span: &Span) -> Header<'_> {
        Header {
            key: &self.raw[span.key_start as usize..span.key_end as usize],
            value: &self.raw[span.value_start as usize..span.value_end as usize],
        }
    }

    /// Every header in order, repeated keys included.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.spans().map(move |s| self.header_at(&s))
    }

    /// The value of the first header named `key` (ASCII case-insensitive).
    #[inline]
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        self.spans().find_map(|s| {
            let k = &self.raw[s.key_start as usize..s.key_end as usize];
            k.eq_ignore_ascii_case(key)
                .then(|| &self.raw[s.value_start as usize..s.value_end as usize])
        })
    }

    /// The value of the first header named `key`, when present and valid UTF-8.
    #[inline]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The values of every header named `key`, in order (e.g. all `Output:` or `ChanVariable:` lines).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |h| h.key.eq_ignore_ascii_case(key.as_bytes()))
            .map(|h| h.value)
    }

    /// Raw lines without a key (the body of a legacy `Response: Follows` command output).
    pub fn raw_lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers().filter(|h| h.key.is_empty()).map(|h| h.value)
    }

    /// The `Event:` value, when the message is an event (found at parse time: no search).
    #[inline]
    pub fn event(&self) -> Option<&str> {
        self.event_bytes().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `Event:` value as bytes, when the message is an event.
    #[inline]
    pub fn event_bytes(&self) -> Option<&[u8]> {
        self.landmark_value(self.landmarks.event)
    }

    /// The first `Uniqueid:` value as bytes (found at parse time: no search). In a channel event this is
    /// the channel's own; other channels it describes have prefixed keys (`DestUniqueid`).
    #[inline]
    pub fn uniqueid_bytes(&self) -> Option<&[u8]> {
        self.landmark_value(self.landmarks.uniqueid)
    }

    /// The first `Linkedid:` value as bytes (found at parse time: no search).
    #[inline]
    pub fn linkedid_bytes(&self) -> Option<&[u8]> {
        self.landmark_value(self.landmarks.linkedid)
    }

    /// The first `Timestamp:` value as bytes (found at parse time: no search). Asterisk adds it to every
    /// event when `timestampevents = yes` in `manager.conf`: Unix seconds with microseconds.
    #[inline]
    pub fn timestamp_bytes(&self) -> Option<&[u8]> {
        self.landmark_value(self.landmarks.timestamp)
    }

    /// The `Response:` value (`Success`, `Error`, `Follows`, `Goodbye`…).
    #[inline]
    pub fn response(&self) -> Option<&str> {
        self.landmark_value(self.landmarks.response)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `ActionID:` value.
    #[inline]
    pub fn action_id(&self) -> Option<&str> {
        self.landmark_value(self.landmarks.action_id)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Classifies the message: an `Event:` header makes an event whatever else it carries; otherwise a
    /// `Response:` header makes a response; anything else is [`ParseError::Unclassified`].
    #[inline]
    pub fn kind(&self) -> Result<MessageKind, ParseError> {
        if self.landmarks.event != ABSENT {
            Ok(MessageKind::Event)
        } else if self.landmarks.response != ABSENT {
            Ok(MessageKind::Response)
        } else {
            Err(ParseError::Unclassified)
        }
    }

    /// Appends the message in wire form (`Key: Value\r\n` per header, raw lines as they are, then a blank
    /// line) to `out`. A message received with CRLF line ends re-encodes to its original bytes.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.raw.len() + 2);
        for h in self.headers() {
            if !h.key.is_empty() {
                out.put_slice(h.key);
                out.put_slice(b": ");
            }
            out.put_slice(h.value);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }

    /// The message in wire form; see [`Message::encode_into`].
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }
}

impl fmt::Debug for Message {
    /// Prints headers as text; the value of any `Secret` or `Key` header is redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for h in self.headers() {
            let key = String::from_utf8_lossy(h.key);
            if is_secret_key(h.key) {
                list.entry(&format_args!("{key}: <redacted>"));
            } else {
                list.entry(&format_args!("{key}: {}", String::from_utf8_lossy(h.value)));
            }
        }
        list.finish()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        // Landmarks follow from the headers; comparing them too catches a parser that noted them wrong.
        self.len() == other.len()
            && self.landmarks == other.landmarks
            && self.headers().eq(other.headers())
    }
}

impl Eq for Message {}

/// Header keys whose values are credentials and must never be printed.
pub fn is_secret_key(key: &[u8]) -> bool {
    key.eq_ignore_ascii_case(b"Secret") || key.eq_ignore_ascii_case(b"Key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_keeps_repeats_in_order() {
        let m = Message::from_pairs([
            ("Response", "Success"),
            ("Output", "line one"),
            ("output", "line two"),
        ]);
        assert_eq!(m.get_str("RESPONSE"), Some("Success"));
        let outs: Vec<_> = m.get_all("Output").collect();
        assert_eq!(outs, vec![&b"line one"[..], &b"line two"[..]]);
        assert_eq!(m.kind(), Ok(MessageKind::Response));
    }

    #[test]
    fn event_header_wins_over_response() {
        let m = Message::from_pairs([("Response", "Failure"), ("Event", "OriginateResponse")]);
        assert_eq!(m.kind(), Ok(MessageKind::Event));
        let none = Message::from_pairs([("Foo", "bar")]);
        assert_eq!(none.kind(), Err(ParseError::Unclassified));
    }

    #[test]
    fn landmarks_find_the_first_header_of_each_name_anywhere() {
        let m = Message::from_pairs([
            ("Privilege", "call,all"),
            ("actionid", "a-1"),
            ("EVENT", "OriginateResponse"),
            ("Response", "Failure"),
            ("Event", "Second"),
            ("ActionID", "a-2"),
        ]);
        assert_eq!(m.kind(), Ok(MessageKind::Event));
        assert_eq!(m.event(), Some("OriginateResponse"));
        assert_eq!(m.response(), Some("Failure"));
        assert_eq!(m.action_id(), Some("a-1"));
        assert_eq!(m.event(), m.get_str("Event"));
        let c = Message::from_pairs([
            ("Event", "VarSet"),
            ("DestUniqueid", "2.2"),
            ("UNIQUEID", "1.1"),
            ("Uniqueid", "9.9"),
            ("linkedid", "1.0"),
        ]);
        assert_eq!(c.uniqueid_bytes(), Some(&b"1.1"[..]));
        assert_eq!(c.linkedid_bytes(), Some(&b"1.0"[..]));
        assert_eq!(c.uniqueid_bytes(), c.get("Uniqueid"));
        assert_eq!(m.uniqueid_bytes(), None);
        let t = Message::from_pairs([
            ("Event", "Hangup"),
            ("Privilege", "call,all"),
            ("TIMESTAMP", "1795520003.250000"),
            ("Timestamp", "1.0"),
        ]);
        assert_eq!(t.timestamp_bytes(), Some(&b"1795520003.250000"[..]));
        assert_eq!((c.timestamp_bytes(), m.timestamp_bytes()), (None, None));
        let r = Message::from_pairs([("Message", "x"), ("Response", "Success")]);
        assert_eq!(r.kind(), Ok(MessageKind::Response));
        assert_eq!((r.event(), r.action_id()), (None, None));
    }

    #[test]
    fn debug_redacts_secrets() {
        let m = Message::from_pairs([("Action", "Login"), ("Secret", "lab-secret")]);
        let text = format!("{m:?}");
        assert!(!text.contains("lab-secret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn non_utf8_values_are_bytes_not_errors() {
        let m = Message::from_pairs([(&b"Event"[..], &b"X"[..]), (b"Name", b"\xff\xfe")]);
        assert_eq!(m.get("name"), Some(&b"\xff\xfe"[..]));
        assert_eq!(m.get_str("name"), None);
    }
}
