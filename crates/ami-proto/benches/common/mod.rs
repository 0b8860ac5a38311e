//! Shared by the benches: the measured path and the memchr floor it is compared with.

use ami_proto::{Parser, StreamSummary};
use bytes::BytesMut;

/// Read size used to feed the parser, as a socket read would.
pub const CHUNK: usize = 64 * 1024;

/// Ingest in socket-sized reads, classify, count: what `callwatch events --summary` does per byte.
pub fn parse_summary(data: &[u8]) -> StreamSummary {
    let mut parser = Parser::default();
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut s = StreamSummary::new();
    for chunk in data.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = parser.next_frame(&mut buf) {
            s.record(&frame);
        }
    }
    s.finish(parser.pending_bytes(&buf));
    s
}

/// Frames found by splitting lines with memchr and counting blank lines: the floor for any line parser.
pub fn memchr_split(data: &[u8]) -> u64 {
    let mut frames = 0;
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if nl - line_start <= 1 {
            frames += 1;
        }
        line_start = nl + 1;
    }
    frames
}
