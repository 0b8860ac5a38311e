//! Incremental AMI framing.
//!
//! [`Parser::next_frame`] takes a growing buffer of received bytes and splits complete frames off its front.
//! Lines are recognised with `nom` streaming parsers, so "not enough bytes yet" is the normal
//! [`nom::Err::Incomplete`] state and simply returns `None`. Work is never repeated: the parser remembers
//! how far into the pending frame it has already read, so a frame that arrives one byte at a time is still
//! read once.
//!
//! Rules:
//! - the first line of a connection is the banner (`Asterisk Call Manager/X.Y.Z`) when it has no `:`;
//! - a frame ends at a blank line; CRLF and bare LF line ends are both accepted;
//! - blank lines between frames are skipped;
//! - legacy `Response: Follows` command output runs to a `--END COMMAND--` line, its raw lines kept as
//!   keyless headers, and blank lines inside it do not end the frame;
//! - a frame over [`Limits::max_frame_bytes`] or [`Limits::max_headers`], or with a line without `:`, is
//!   reported as a [`ParseError`] and skipped up to its blank line; the messages after it are not affected.

use bytes::{Buf, Bytes, BytesMut};
use nom::bytes::streaming::{tag, take_until};
use nom::sequence::terminated;
use nom::IResult;

use crate::error::ParseError;
use crate::message::{Message, Span};

/// Default maximum size of one frame: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Default maximum number of header lines in one frame.
pub const DEFAULT_MAX_HEADERS: usize = 16 * 1024;

/// Size limits that keep a misbehaving peer from growing the buffer without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted, terminating blank line included.
    pub max_frame_bytes: usize,
    /// Most header lines accepted in one frame.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// One unit read off an AMI connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The greeting line, without its line end.
    Banner(Bytes),
    /// A complete message.
    Message(Message),
}

/// Incremental, resumable AMI framer; one per connection.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    expect_banner: bool,
    /// Bytes at the front of the buffer already read as complete lines of the pending frame.
    scanned: usize,
    /// Header spans of the pending frame.
    spans: Vec<Span>,
    /// The pending frame is legacy `Response: Follows` output still waiting for `--END COMMAND--`.
    follows_open: bool,
    /// The pending frame is already known to be bad; it is read to its end, then reported.
    bad: Option<ParseError>,
    /// Skipping the rest of an oversized frame.
    discard: Option<Discard>,
}

#[derive(Debug, Clone, Copy)]
struct Discard {
    /// The next byte begins a line (so a line end right away is a blank line).
    at_line_start: bool,
}

/// `nom` streaming parser for one line: everything up to a `\n`, which is consumed.
fn line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(take_until("\n"), tag("\n"))(input)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Parser {
    /// A parser for a new connection, expecting the banner line first.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            expect_banner: true,
            scanned: 0,
            spans: Vec::with_capacity(32),
            follows_open: false,
            bad: None,
            discard: None,
        }
    }

    /// A parser for a stream that has no banner line (e.g. the client-to-server direction).
    pub fn without_banner(limits: Limits) -> Self {
        Self {
            expect_banner: false,
            ..Self::new(limits)
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Splits the next complete frame off the front of `buf`.
    ///
    /// Returns `None` when more bytes are needed, `Some(Err(_))` for a frame that was skipped (the call after
    /// it continues with the next frame), and `Some(Ok(frame))` otherwise. Consumed bytes are removed from
    /// `buf`; an incomplete frame is left in place.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Option<Result<Frame, ParseError>> {
        loop {
            if let Some(discard) = self.discard {
                if !self.skip_discarded(buf, discard) {
                    return None;
                }
                continue;
            }
            if self.expect_banner {
                match self.banner(buf) {
                    Some(Some(banner)) => return Some(Ok(Frame::Banner(banner))),
                    Some(None) => {}
                    None => return None,
                }
            }
            let (_, lf) = match line(&buf[self.scanned..]) {
                Ok((rest, l)) => (rest, l),
                Err(_) => {
                    if buf.len() > self.limits.max_frame_bytes {
                        return Some(Err(self.start_discard(buf, false)));
                    }
                    return None;
                }
            };
            let line_len = lf.len() + 1;
            let line_start = self.scanned;
            let line_end = line_start + line_len;
            if line_end > self.limits.max_frame_bytes {
                return Some(Err(self.start_discard(buf, true)));
            }
            let text = strip_cr(lf);
            if text.is_empty() && !self.follows_open {
                if self.spans.is_empty() && self.bad.is_none() {
                    // A stray blank line between frames.
                    buf.advance(line_end);
                    self.scanned = 0;
                    continue;
                }
                let raw = buf.split_to(line_end).freeze();
                self.scanned = 0;
                let spans = std::mem::replace(&mut self.spans, Vec::with_capacity(32));
                if let Some(err) = self.bad.take() {
                    return Some(Err(err));
                }
                return Some(Ok(Frame::Message(Message::from_parts(raw, spans))));
            }
            self.read_line(line_start, text);
            self.scanned = line_end;
        }
    }

    /// Reads the banner if the buffer starts with one. `None`: need more bytes; `Some(None)`: no banner.
    fn banner(&mut self, buf: &mut BytesMut) -> Option<Option<Bytes>> {
        let (_, lf) = match line(&buf[..]) {
            Ok(ok) => ok,
            Err(_) => {
                // A banner is one short line; a long line without a line end is not one.
                if buf.len() > 256 || memchr::memchr(b':', buf).is_some() {
                    self.expect_banner = false;
                    return Some(None);
                }
                return None;
            }
        };
        self.expect_banner = false;
        let text = strip_cr(lf);
        if text.is_empty() || memchr::memchr(b':', text).is_some() {
            return Some(None);
        }
        let len = text.len();
        let mut banner = buf.split_to(lf.len() + 1);
        banner.truncate(len);
        Some(Some(banner.freeze()))
    }

    /// Records one non-blank line of the pending frame, starting at `start` in the buffer.
    fn read_line(&mut self, start: usize, text: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        if self.spans.len() >= self.limits.max_headers {
            self.bad = Some(ParseError::TooManyHeaders {
                limit: self.limits.max_headers,
            });
            return;
        }
        let start32 = start as u32;
        let end32 = (start + text.len()) as u32;
        if self.follows_open {
            if text.ends_with(b"--END COMMAND--") {
                self.follows_open = false;
            }
            // Header-shaped lines before the first raw line are still headers (Privilege, ActionID).
            if !self.spans.iter().any(|s| s.key_start == s.key_end) {
                if let Some(colon) = memchr::memchr(b':', text) {
                    self.push_header(start, text, colon);
                    return;
                }
            }
            self.spans.push(Span {
                key_start: start32,
                key_end: start32,
                value_start: start32,
                value_end: end32,
            });
            return;
        }
        match memchr::memchr(b':', text) {
            Some(colon) => {
                self.push_header(start, text, colon);
                if self.spans.len() == 1 {
                    let h = &text[..colon];
                    let v = &text[colon + 1..];
                    let v = v.strip_prefix(b" ").unwrap_or(v);
                    if h.eq_ignore_ascii_case(b"Response") && v.eq_ignore_ascii_case(b"Follows") {
                        self.follows_open = true;
                    }
                }
            }
            None => {
                self.bad = Some(ParseError::MissingColon {
                    line: self.spans.len() + 1,
                });
            }
        }
    }

    fn push_header(&mut self, start: usize, text: &[u8], colon: usize) {
        let value_start = if text.get(colon + 1) == Some(&b' ') {
            colon + 2
        } else {
            colon + 1
        };
        self.spans.push(Span {
            key_start: start as u32,
            key_end: (start + colon) as u32,
            value_start: (start + value_start) as u32,
            value_end: (start + text.len()) as u32,
        });
    }

    /// Drops the pending frame and enters discard mode. `line_complete`: the buffer's line at `scanned` ends
    /// within the buffer.
    fn start_discard(&mut self, buf: &mut BytesMut, line_complete: bool) -> ParseError {
        let _ = line_complete;
        buf.advance(self.scanned);
        self.scanned = 0;
        self.spans.clear();
        self.bad = None;
        self.follows_open = false;
        // We are somewhere inside the frame's current line: not at a line start.
        self.discard = Some(Discard {
            at_line_start: false,
        });
        ParseError::FrameTooLarge {
            limit: self.limits.max_frame_bytes,
        }
    }

    /// Skips discarded bytes; true once the blank line ending the bad frame has been consumed.
    fn skip_discarded(&mut self, buf: &mut BytesMut, mut state: Discard) -> bool {
        loop {
            match memchr::memchr(b'\n', buf) {
                Some(nl) => {
                    let blank = state.at_line_start && strip_cr(&buf[..nl]).is_empty();
                    buf.advance(nl + 1);
                    if blank {
                        self.discard = None;
                        return true;
                    }
                    state.at_line_start = true;
                }
                None => {
                    // Keep a lone CR at a line start: it may be the first half of a blank line.
                    if state.at_line_start && buf.as_ref() == b"\r" {
                        self.discard = Some(state);
                        return false;
                    }
                    if !buf.is_empty() {
                        state.at_line_start = false;
                    }
                    buf.clear();
                    self.discard = Some(state);
                    return false;
                }
            }
        }
    }

    /// Bytes of an unfinished frame at the front of `buf` (call at end of stream): what
    /// `trailing_partial_bytes` counts. Zero while skipping an oversized frame.
    pub fn pending_bytes(&self, buf: &BytesMut) -> usize {
        if self.discard.is_some() {
            0
        } else {
            buf.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut Parser, buf: &mut BytesMut) -> Vec<Result<Frame, ParseError>> {
        std::iter::from_fn(|| parser.next_frame(buf)).collect()
    }

    #[test]
    fn banner_then_messages() {
        let mut p = Parser::default();
        let mut buf = BytesMut::from(
            &b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\nEvent: A\r\n\r\nEvent: B"[..],
        );
        let frames = all(&mut p, &mut buf);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            Ok(Frame::Banner(Bytes::from_static(
                b"Asterisk Call Manager/11.0.0"
            )))
        );
        assert_eq!(&buf[..], b"Event: B");
        assert_eq!(p.pending_bytes(&buf), 8);
    }

    #[test]
    fn bare_lf_is_accepted() {
        let mut p = Parser::default();
        let mut buf =
            BytesMut::from(&b"Asterisk Call Manager/2.10.0\nEvent: Hangup\nCause: 16\n\n"[..]);
        let frames = all(&mut p, &mut buf);
        let Ok(Frame::Message(m)) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(m.get_str("cause"), Some("16"));
    }

    #[test]
    fn missing_colon_skips_only_that_frame() {
        let mut p = Parser::without_banner(Limits::default());
        let mut buf = BytesMut::from(&b"Event: A\r\ngarbage\r\n\r\nEvent: B\r\n\r\n"[..]);
        let frames = all(&mut p, &mut buf);
        assert_eq!(frames[0], Err(ParseError::MissingColon { line: 2 }));
        assert!(matches!(&frames[1], Ok(Frame::Message(m)) if m.event() == Some("B")));
    }

    #[test]
    fn oversized_frame_resynchronises() {
        let limits = Limits {
            max_frame_bytes: 64,
            max_headers: 100,
        };
        let mut p = Parser::without_banner(limits);
        let mut big = b"Event: Big\r\n".to_vec();
        for _ in 0..20 {
            big.extend_from_slice(b"Variable: xxxxxxxxxxxxxxxx\r\n");
        }
        big.extend_from_slice(b"\r\nEvent: After\r\n\r\n");
        // Feed in small chunks to exercise the discard path across reads.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in big.chunks(7) {
            buf.extend_from_slice(chunk);
            out.extend(all(&mut p, &mut buf));
        }
        assert_eq!(out[0], Err(ParseError::FrameTooLarge { limit: 64 }));
        assert!(matches!(&out[1], Ok(Frame::Message(m)) if m.event() == Some("After")));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn legacy_follows_output() {
        let mut p = Parser::without_banner(Limits::default());
        let mut buf = BytesMut::from(
            &b"Response: Follows\r\nPrivilege: Command\r\nActionID: 1\r\nline one\n\nline three\n--END COMMAND--\r\n\r\nEvent: X\r\n\r\n"[..],
        );
        let frames = all(&mut p, &mut buf);
        let Ok(Frame::Message(m)) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(m.action_id(), Some("1"));
        let lines: Vec<_> = m.raw_lines().collect();
        assert_eq!(
            lines,
            vec![&b"line one"[..], b"", b"line three", b"--END COMMAND--"]
        );
        assert!(matches!(&frames[1], Ok(Frame::Message(m)) if m.event() == Some("X")));
    }
}
