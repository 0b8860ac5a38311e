//! Properties at the split points: however a stream is cut into reads, the parser yields the same frames;
//! arbitrary bytes never panic it.

mod common;

use ami_proto::{Frame, Limits, Message, Parser};
use bytes::BytesMut;
use common::{fixtures_dir, parse_all, parse_chunked, parse_chunked_with, recordings};
use proptest::prelude::*;

fn recording(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap()
}

/// The first `n` messages of a recording (banner included), so that exhaustive splits stay fast.
fn head_of(name: &str, n: usize) -> Vec<u8> {
    let bytes = recording(name);
    let (frames, _) = parse_all(&bytes);
    let len: usize = frames
        .iter()
        .take(n + 1)
        .map(|f| match f {
            Ok(Frame::Banner(b)) => b.len() + 2,
            Ok(Frame::Message(m)) => m.raw().len(),
            Err(e) => panic!("{e}"),
        })
        .sum();
    bytes[..len].to_vec()
}

/// Offsets just after each frame (the boundaries a reader can be cut at).
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let (frames, _) = parse_all(bytes);
    let mut pos = 0;
    frames
        .iter()
        .map(|f| {
            pos += match f {
                Ok(Frame::Banner(b)) => b.len() + 2,
                Ok(Frame::Message(m)) => m.raw().len(),
                Err(e) => panic!("{e}"),
            };
            pos
        })
        .collect()
}

#[test]
fn one_byte_reads_give_the_same_frames() {
    for (name, bytes) in recordings() {
        // Byte-at-a-time over the smaller recordings (and the head of the large ones) keeps the test quick
        // in debug builds.
        let bytes = if bytes.len() > 130_000 {
            head_of(&name, 150)
        } else {
            bytes
        };
        assert_eq!(
            parse_chunked(&bytes, std::iter::repeat(1)),
            parse_all(&bytes),
            "{name}"
        );
    }
}

#[test]
fn cuts_at_every_offset_near_every_boundary() {
    let bytes = head_of("disconnect-gap.subject-2.ami", 120);
    let expected = parse_all(&bytes);
    let bounds = boundaries(&bytes);
    assert_eq!(bounds.len(), 121);
    for delta in -4i64..=4 {
        // Cut the stream at `boundary + delta` for every boundary at once.
        let mut cuts: Vec<usize> = bounds
            .iter()
            .map(|&b| (b as i64 + delta).clamp(0, bytes.len() as i64) as usize)
            .collect();
        cuts.dedup();
        let mut sizes = Vec::new();
        let mut prev = 0;
        for cut in cuts {
            if cut > prev {
                sizes.push(cut - prev);
                prev = cut;
            }
        }
        sizes.push(bytes.len() - prev);
        assert_eq!(
            parse_chunked(&bytes, sizes.into_iter()),
            expected,
            "delta {delta}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_read_sizes_give_the_same_frames(
        which in 0usize..4,
        sizes in proptest::collection::vec(1usize..600, 1..64),
    ) {
        let name = ["login-md5.subject-1.ami", "command-output.subject-1.ami", "filter.subject-1.ami", "login-fail.observer.ami"][which];
        let bytes = recording(name);
        prop_assert_eq!(parse_chunked(&bytes, sizes.into_iter().cycle()), parse_all(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 1usize..300,
        max_frame_bytes in 1usize..400,
        max_headers in 0usize..20,
    ) {
        let limits = Limits { max_frame_bytes, max_headers };
        for parser in [Parser::new(limits), Parser::without_banner(limits), Parser::default()] {
            let (frames, rest) = parse_chunked_with(parser, &data, std::iter::repeat(chunk));
            prop_assert!(rest.len() <= data.len());
            for f in frames.into_iter().flatten() {
                if let Frame::Message(m) = f {
                    let _ = (m.kind(), m.to_bytes(), format!("{m:?}"), ami_proto::Event::from_message(&m));
                }
            }
        }
    }

    #[test]
    fn protocol_shaped_noise_never_panics(
        data in proptest::collection::vec(0usize..8, 0..2000)
            .prop_map(|v| v.into_iter().map(|i| b"\r\n: \0\xffEa"[i]).collect::<Vec<u8>>()),
        chunk in 1usize..64,
        max_frame_bytes in 1usize..200,
    ) {
        let limits = Limits { max_frame_bytes, max_headers: 8 };
        let (frames, _) = parse_chunked_with(Parser::new(limits), &data, std::iter::repeat(chunk));
        for f in frames.into_iter().flatten() {
            if let Frame::Message(m) = f {
                prop_assert!(m.raw().len() <= max_frame_bytes);
                prop_assert!(m.len() <= 8);
            }
        }
    }

    #[test]
    fn encode_then_parse_gives_the_message_back(
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[^\r\n]{0,40}"), 1..20),
    ) {
        let msg = Message::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let wire = msg.to_bytes();
        prop_assert_eq!(&wire, msg.raw());
        let mut parser = Parser::without_banner(Limits::default());
        let mut buf = BytesMut::from(&wire[..]);
        let parsed = parser.next_frame(&mut buf);
        // A value starting with a space keeps it: `Key:  v` parses back as " v".
        prop_assert_eq!(parsed, Some(Ok(Frame::Message(msg))));
        prop_assert!(buf.is_empty());
    }
}
