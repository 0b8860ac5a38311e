//! [`AmiCodec`]: a thin tokio-util `Decoder`/`Encoder` over [`ami_proto::Parser`].
//!
//! The banner line is a codec state (the parser expects it first); decoding advances the buffer by exactly
//! the bytes of each frame and never exposes nom types. Bad frames are reported as
//! [`ami_proto::ParseError`] and skipped; decoding continues with the next frame.

use ami_proto::{Action, Frame, Limits, ParseError, Parser};
use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// One decoded item.
pub type Decoded = Result<Frame, ParseError>;

/// Decoder of server-to-client AMI frames and encoder of actions.
#[derive(Debug)]
pub struct AmiCodec {
    parser: Parser,
}

impl AmiCodec {
    /// A codec for a new connection: the first line is the banner.
    pub fn new(limits: Limits) -> Self {
        Self {
            parser: Parser::new(limits),
        }
    }

    /// A codec for a stream without banner.
    pub fn without_banner(limits: Limits) -> Self {
        Self {
            parser: Parser::without_banner(limits),
        }
    }

    /// Bytes of an unfinished frame at the front of `buf` (meaningful at end of stream).
    pub fn pending_bytes(&self, buf: &BytesMut) -> usize {
        self.parser.pending_bytes(buf)
    }
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Decoder for AmiCodec {
    /// A frame, or a skipped bad frame (not fatal: the stream goes on).
    type Item = Decoded;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self.parser.next_frame(src))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() || self.parser.pending_bytes(buf) == 0 => Ok(None),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed inside an AMI message ({} bytes pending)",
                    buf.len()
                ),
            )),
        }
    }
}

impl Encoder<&Action> for AmiCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &Action, dst: &mut BytesMut) -> Result<(), Self::Error> {
        item.encode_into(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_banner_then_messages_in_any_chunking() {
        let wire = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\nEvent: Hangup\r\nUniqueid: 1.2\r\n\r\n";
        for step in 1..wire.len() {
            let mut codec = AmiCodec::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(item) = codec.decode(&mut buf).unwrap() {
                    out.push(item.unwrap());
                }
            }
            assert_eq!(out.len(), 3, "step {step}");
            assert!(
                matches!(&out[0], Frame::Banner(b) if &b[..] == b"Asterisk Call Manager/11.0.0")
            );
            assert!(matches!(&out[2], Frame::Message(m) if m.get_str("Uniqueid") == Some("1.2")));
        }
    }

    #[test]
    fn eof_inside_a_message_is_an_error() {
        let mut codec = AmiCodec::without_banner(Limits::default());
        let mut buf = BytesMut::from(&b"Event: Hangup\r\nUniq"[..]);
        assert!(codec.decode_eof(&mut buf).is_err());
        let mut codec = AmiCodec::without_banner(Limits::default());
        let mut buf = BytesMut::new();
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encodes_actions() {
        let mut codec = AmiCodec::default();
        let mut dst = BytesMut::new();
        codec
            .encode(&Action::new("Ping").unwrap(), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], b"Action: Ping\r\n\r\n");
    }
}
