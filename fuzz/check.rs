// The invariants the `parse_message` fuzz target checks. Shared with the seed-replay test in
// `crates/ami-proto/tests/fuzz_seeds.rs` through `include!`, so it is written as plain functions.

/// Parses `data` in reads whose sizes come from its first byte, and checks the invariants:
/// no panic; nothing is lost (banner + frames + skipped + rest = input); a message's raw bytes stay
/// within the limits; re-encoding a message and parsing it again gives the same message; typed
/// views and Debug never panic.
pub fn check_parse(data: &[u8]) {
    use ami_proto::{Event, Frame, Limits, Parser};
    use bytes::BytesMut;

    let (chunk, data) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => return,
    };
    let limits = Limits {
        max_frame_bytes: 4096,
        max_headers: 64,
    };
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    let mut fed = 0usize;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        let before = buf.len();
        let mut taken = 0usize;
        while let Some(frame) = parser.next_frame(&mut buf) {
            match frame {
                Ok(Frame::Banner(b)) => assert!(!b.contains(&b'\n')),
                Ok(Frame::Message(m)) => {
                    assert!(m.raw().len() <= limits.max_frame_bytes);
                    assert!(m.len() <= limits.max_headers);
                    taken += m.raw().len();
                    let _ = (m.kind(), format!("{m:?}"), Event::from_message(&m));
                    check_reencode(&m);
                }
                Err(_) => {}
            }
        }
        consumed += before - buf.len();
        assert!(taken <= before);
    }
    assert_eq!(consumed + buf.len(), fed);
    assert!(parser.pending_bytes(&buf) <= buf.len());
}

/// Encoding then parsing gives the message back (for messages whose every header has a key: a raw
/// line of legacy command output and a `: value` line look alike once encoded).
pub fn check_reencode(m: &ami_proto::Message) {
    use ami_proto::{Frame, Limits, Parser};
    use bytes::BytesMut;

    if m.headers().any(|h| h.key.is_empty()) || m.is_empty() {
        return;
    }
    let wire = m.to_bytes();
    let mut parser = Parser::without_banner(Limits {
        max_frame_bytes: usize::MAX,
        max_headers: usize::MAX,
    });
    let mut buf = BytesMut::from(&wire[..]);
    match parser.next_frame(&mut buf) {
        Some(Ok(Frame::Message(again))) => assert_eq!(&again, m),
        other => panic!("re-encoded message did not parse back: {other:?}"),
    }
    assert!(buf.is_empty());
}
