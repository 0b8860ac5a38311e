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
/// The message owns its frame as a reference-counted [`Bytes`]; headers are byte ranges into it, so
/// parsing allocates nothing per header. Lookups are ASCII case-insensitive, as Asterisk's own are.
/// Values are bytes: a value that is not UTF-8 is kept as is and is only unavailable through the `&str`
/// accessors.
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    spans: Vec<Span>,
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
    pub(crate) fn from_parts(raw: Bytes, spans: Vec<Span>) -> Self {
        Self { raw, spans }
    }

    /// Builds a message from `(key, value)` pairs, as if it had been received with CRLF line ends.
    ///
    /// Meant for tests and synthetic sessions; keys and values are copied into one frame.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut buf = BytesMut::new();
        let mut spans = Vec::new();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            let key_start = buf.len() as u32;
            buf.put_slice(k);
            let key_end = buf.len() as u32;
            buf.put_slice(b": ");
            let value_start = buf.len() as u32;
            buf.put_slice(v);
            let value_end = buf.len() as u32;
            buf.put_slice(b"\r\n");
            spans.push(Span {
                key_start,
                key_end,
                value_start,
                value_end,
            });
        }
        buf.put_slice(b"\r\n");
        Self {
            raw: buf.freeze(),
            spans,
        }
    }

    /// The frame exactly as received, terminating blank line included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Number of headers (raw output lines included).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the message has no header at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
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
        self.spans.iter().map(move |s| self.header_at(s))
    }

    /// The value of the first header named `key` (ASCII case-insensitive).
    #[inline]
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        self.spans.iter().find_map(|s| {
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

    /// The `Event:` value, when the message is an event.
    pub fn event(&self) -> Option<&str> {
        self.get_str("Event")
    }

    /// The `Response:` value (`Success`, `Error`, `Follows`, `Goodbye`…).
    pub fn response(&self) -> Option<&str> {
        self.get_str("Response")
    }

    /// The `ActionID:` value.
    pub fn action_id(&self) -> Option<&str> {
        self.get_str("ActionID")
    }

    /// Classifies the message: an `Event:` header makes an event whatever else it carries; otherwise a
    /// `Response:` header makes a response; anything else is [`ParseError::Unclassified`].
    pub fn kind(&self) -> Result<MessageKind, ParseError> {
        let mut response = false;
        for s in &self.spans {
            let k = &self.raw[s.key_start as usize..s.key_end as usize];
            if k.eq_ignore_ascii_case(b"Event") {
                return Ok(MessageKind::Event);
            }
            response |= k.eq_ignore_ascii_case(b"Response");
        }
        if response {
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
        self.spans.len() == other.spans.len() && self.headers().eq(other.headers())
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
