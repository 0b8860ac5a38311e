//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use ami_proto::{Frame, ParseError, Parser, StreamSummary};
use bytes::BytesMut;

/// `fixtures/ami/` of the workspace.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/ami")
}

/// Every `.ami` recording, sorted by name.
pub fn recordings() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every frame of `bytes` read in one go, and the unparsed rest.
pub fn parse_all(bytes: &[u8]) -> (Vec<Result<Frame, ParseError>>, BytesMut) {
    parse_chunked(bytes, std::iter::once(bytes.len().max(1)))
}

/// Every frame of `bytes` fed in chunks of the given sizes (the last size repeats until the input is used
/// up; a size of 0 counts as 1), and the unparsed rest.
pub fn parse_chunked(
    bytes: &[u8],
    sizes: impl Iterator<Item = usize>,
) -> (Vec<Result<Frame, ParseError>>, BytesMut) {
    parse_chunked_with(Parser::default(), bytes, sizes)
}

/// [`parse_chunked`] with a given parser.
pub fn parse_chunked_with(
    mut parser: Parser,
    bytes: &[u8],
    sizes: impl Iterator<Item = usize>,
) -> (Vec<Result<Frame, ParseError>>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut last = 1;
    let mut sizes = sizes.fuse();
    while pos < bytes.len() {
        let n = sizes.next().unwrap_or(last).max(1);
        last = n;
        let end = (pos + n).min(bytes.len());
        buf.extend_from_slice(&bytes[pos..end]);
        pos = end;
        while let Some(frame) = parser.next_frame(&mut buf) {
            out.push(frame);
        }
    }
    let pending = parser.pending_bytes(&buf);
    let rest = buf.split_to(pending);
    (out, rest)
}

/// The summary of a whole stream.
pub fn summarize(bytes: &[u8]) -> StreamSummary {
    let mut parser = Parser::default();
    let mut buf = BytesMut::from(bytes);
    let mut s = StreamSummary::new();
    while let Some(frame) = parser.next_frame(&mut buf) {
        s.record(&frame);
    }
    s.finish(parser.pending_bytes(&buf));
    s
}
