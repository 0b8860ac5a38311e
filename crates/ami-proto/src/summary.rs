//! [`StreamSummary`]: counts what an AMI byte stream contains, as `truth.json` of the recordings does.
//!
//! The counter is pure: feed it every [`Frame`] or [`ParseError`] a [`Parser`](crate::Parser) returns, then
//! call [`StreamSummary::finish`] with the bytes still buffered at the end of the stream.

use std::collections::{BTreeMap, HashMap};

use crate::error::ParseError;
use crate::message::{Message, MessageKind};
use crate::parse::Frame;

/// Counts of one AMI stream.
///
/// Definitions (those of the recordings' `truth.json`): `frames` counts complete messages; `events` those
/// with an `Event:` header; `responses` those with `Response:` and no `Event:`; `event_counts` events by
/// their `Event:` value; `trailing_partial_bytes` the bytes of an unfinished last message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The banner line, when the stream had one (lossy UTF-8).
    pub banner: Option<String>,
    /// Complete messages.
    pub frames: u64,
    /// Messages with an `Event:` header.
    pub events: u64,
    /// Messages with a `Response:` header and no `Event:` header.
    pub responses: u64,
    /// Complete messages with neither header (protocol errors; also counted in `frames`).
    pub unclassified: u64,
    /// Frames that were skipped as malformed or over a limit (not counted in `frames`).
    pub errors: u64,
    /// Events by their `Event:` value (lossy UTF-8), sorted by name. Complete after
    /// [`StreamSummary::finish`].
    pub event_counts: BTreeMap<String, u64>,
    /// Events by their raw `Event:` value while the stream runs: a hash lookup on bytes per event, no text
    /// check and no ordered-map walk; moved into `event_counts` by `finish`.
    counting: HashMap<Vec<u8>, u64, foldhash::fast::RandomState>,
    /// Bytes of an unfinished last message at the end of the stream.
    pub trailing_partial_bytes: u64,
}

impl StreamSummary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one result of [`Parser::next_frame`](crate::Parser::next_frame).
    pub fn record(&mut self, frame: &Result<Frame, ParseError>) {
        match frame {
            Ok(Frame::Banner(b)) => self.banner = Some(String::from_utf8_lossy(b).into_owned()),
            Ok(Frame::Message(m)) => self.record_message(m),
            Err(_) => self.errors += 1,
        }
    }

    /// Counts one complete message.
    pub fn record_message(&mut self, msg: &Message) {
        self.frames += 1;
        match msg.kind() {
            Ok(MessageKind::Event) => {
                self.events += 1;
                let name = msg.event_bytes().unwrap_or_default();
                // Look up by borrowed name first: no allocation once a name has been seen.
                match self.counting.get_mut(name) {
                    Some(count) => *count += 1,
                    None => {
                        self.counting.insert(name.to_vec(), 1);
                    }
                }
            }
            Ok(MessageKind::Response) => self.responses += 1,
            Err(_) => self.unclassified += 1,
        }
    }

    /// Records the bytes left unparsed at the end of the stream (see
    /// [`Parser::pending_bytes`](crate::Parser::pending_bytes)).
    pub fn finish(&mut self, trailing_partial_bytes: usize) {
        self.trailing_partial_bytes = trailing_partial_bytes as u64;
        for (name, count) in self.counting.drain() {
            *self
                .event_counts
                .entry(String::from_utf8_lossy(&name).into_owned())
                .or_default() += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::Parser;

    #[test]
    fn counts_like_truth_json() {
        let mut parser = Parser::default();
        let mut buf = BytesMut::from(
            &b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\nEvent: Hangup\r\n\r\n\
               Event: OriginateResponse\r\nResponse: Failure\r\n\r\nFoo: bar\r\n\r\nbad line\r\n\r\nEvent: Hang"[..],
        );
        let mut s = StreamSummary::new();
        while let Some(frame) = parser.next_frame(&mut buf) {
            s.record(&frame);
        }
        s.finish(parser.pending_bytes(&buf));
        assert_eq!(s.banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));
        assert_eq!(
            (s.frames, s.events, s.responses, s.unclassified, s.errors),
            (4, 2, 1, 1, 1)
        );
        assert_eq!(s.event_counts.get("Hangup"), Some(&1));
        assert_eq!(s.event_counts.get("OriginateResponse"), Some(&1));
        assert_eq!(s.trailing_partial_bytes, 11);
    }
}
