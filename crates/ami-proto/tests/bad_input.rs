//! Bad input: every case yields a typed error or a message, never a panic, and never loses the messages
//! around it.

mod common;

use ami_proto::{
    Action, EncodeError, Frame, Limits, MessageKind, ParseError, Parser, StreamSummary,
};
use common::{fixtures_dir, parse_all, parse_chunked, parse_chunked_with, summarize};

fn messages(frames: &[Result<Frame, ParseError>]) -> Vec<&ami_proto::Message> {
    frames
        .iter()
        .filter_map(|f| match f {
            Ok(Frame::Message(m)) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn oversized_frame_at_the_default_limit_resynchronises() {
    let mut input =
        b"Asterisk Call Manager/11.0.0\r\nEvent: Before\r\n\r\nEvent: Huge\r\n".to_vec();
    while input.len() < 1_100_000 {
        input.extend_from_slice(
            b"Output: 0123456789012345678901234567890123456789012345678901234567890123\r\n",
        );
    }
    input.extend_from_slice(b"\r\nEvent: After\r\nUniqueid: 1.1\r\n\r\n");
    for chunk in [1 << 20, 65_536, 4_096, 1_000] {
        let (frames, rest) = parse_chunked(&input, std::iter::repeat(chunk));
        assert!(rest.is_empty(), "chunk {chunk}");
        assert_eq!(frames.len(), 4, "chunk {chunk}: {frames:?}");
        assert_eq!(
            frames[2],
            Err(ParseError::FrameTooLarge { limit: 1024 * 1024 }),
            "chunk {chunk}"
        );
        let names: Vec<_> = messages(&frames)
            .iter()
            .map(|m| m.event().unwrap())
            .collect();
        assert_eq!(names, ["Before", "After"], "chunk {chunk}");
    }
}

#[test]
fn a_peer_that_never_ends_its_frame_cannot_grow_the_buffer() {
    let limits = Limits {
        max_frame_bytes: 4096,
        max_headers: 64,
    };
    let mut parser = Parser::without_banner(limits);
    let mut buf = bytes::BytesMut::new();
    let mut errors = 0;
    for _ in 0..10_000 {
        buf.extend_from_slice(b"Variable: without end of frame\r\n");
        while let Some(f) = parser.next_frame(&mut buf) {
            assert_eq!(f, Err(ParseError::FrameTooLarge { limit: 4096 }));
            errors += 1;
        }
        assert!(buf.len() <= 4096 + 64, "buffer grew to {}", buf.len());
    }
    assert_eq!(errors, 1);
}

#[test]
fn header_without_colon_skips_only_its_frame() {
    let input = b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\nEvent: B\r\nthis line has no colon\r\nX: 1\r\n\r\nEvent: C\r\n\r\n";
    let (frames, _) = parse_all(input);
    assert_eq!(frames[2], Err(ParseError::MissingColon { line: 2 }));
    let names: Vec<_> = messages(&frames)
        .iter()
        .map(|m| m.event().unwrap())
        .collect();
    assert_eq!(names, ["A", "C"]);
    let s = summarize(input);
    assert_eq!((s.frames, s.events, s.errors), (2, 2, 1));
}

#[test]
fn nul_bytes_and_invalid_utf8_are_kept_as_bytes() {
    let input = b"Event: Weird\r\nCallerIDName: A\x00B\r\nName: \xff\xfe\xfd\r\n\xc3\x28Key: v\r\n\r\nEvent: \xffBad\r\n\r\nEvent: Next\r\n\r\n";
    let (frames, rest) = parse_chunked_with(
        Parser::without_banner(Limits::default()),
        input,
        std::iter::repeat(3),
    );
    assert!(rest.is_empty());
    let msgs = messages(&frames);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].get("CallerIDName"), Some(&b"A\x00B"[..]));
    assert_eq!(msgs[0].get_str("CallerIDName"), Some("A\u{0}B"));
    assert_eq!(msgs[0].get("name"), Some(&b"\xff\xfe\xfd"[..]));
    assert_eq!(msgs[0].get_str("name"), None);
    assert_eq!(msgs[0].get(&String::from_utf8_lossy(b"\xc3\x28Key")), None);
    assert_eq!(msgs[0].headers().nth(3).unwrap().key, b"\xc3\x28Key");
    assert_eq!(msgs[1].kind(), Ok(MessageKind::Event));
    assert_eq!(msgs[1].event(), None);
    let mut s = StreamSummary::new();
    for f in &frames {
        s.record(f);
    }
    s.finish(0);
    assert_eq!(s.events, 3);
    assert_eq!(s.event_counts.get("\u{fffd}Bad"), Some(&1));
    assert!(matches!(
        ami_proto::Event::from_message(msgs[1]),
        ami_proto::Event::Other(_)
    ));
}

#[test]
fn message_with_neither_event_nor_response_is_reported_not_fatal() {
    let input = b"Asterisk Call Manager/11.0.0\r\nFoo: bar\r\n\r\nResponse: Success\r\n\r\n";
    let (frames, _) = parse_all(input);
    let msgs = messages(&frames);
    assert_eq!(msgs[0].kind(), Err(ParseError::Unclassified));
    assert_eq!(msgs[1].kind(), Ok(MessageKind::Response));
    let s = summarize(input);
    assert_eq!((s.frames, s.responses, s.unclassified), (2, 1, 1));
}

#[test]
fn stream_cut_mid_message_reports_the_partial_frame_and_keeps_the_rest() {
    let bytes = std::fs::read(fixtures_dir().join("events-off.subject-1.ami")).unwrap();
    let (all, _) = parse_all(&bytes);
    let mut ends = Vec::new();
    let mut pos = 0;
    for f in &all {
        pos += match f {
            Ok(Frame::Banner(b)) => b.len() + 2,
            Ok(Frame::Message(m)) => m.raw().len(),
            Err(e) => panic!("{e}"),
        };
        ends.push(pos);
    }
    // Cut inside several messages, including one byte before the final blank line's LF.
    for &k in &[5usize, 50, 100, ends.len() - 1] {
        let cut = ends[k] - 1;
        let (frames, rest) = parse_all(&bytes[..cut]);
        assert_eq!(frames[..], all[..k], "cut at {cut}");
        assert_eq!(rest.len(), cut - ends[k - 1], "cut at {cut}");
        assert_eq!(
            summarize(&bytes[..cut]).trailing_partial_bytes as usize,
            rest.len()
        );
    }
}

#[test]
fn bare_lf_stream_parses_like_crlf() {
    let crlf = std::fs::read(fixtures_dir().join("command-output.subject-1.ami")).unwrap();
    let lf: Vec<u8> = String::from_utf8_lossy(&crlf)
        .replace("\r\n", "\n")
        .into_bytes();
    assert!(lf.len() < crlf.len());
    let (a, _) = parse_all(&crlf);
    let (b, _) = parse_chunked(&lf, std::iter::repeat(777));
    assert_eq!(a, b);
    let (sa, sb) = (summarize(&crlf), summarize(&lf));
    assert_eq!(
        (sa.frames, sa.events, &sa.event_counts),
        (sb.frames, sb.events, &sb.event_counts)
    );
    assert_eq!(sa.banner, sb.banner);
}

#[test]
fn cr_or_lf_in_an_action_is_rejected() {
    let a = Action::new("Originate").unwrap();
    for bad in ["a\r\nAction: Logoff", "a\nb", "a\rb", "\r\n"] {
        assert_eq!(
            a.clone().header("Variable", bad),
            Err(EncodeError::LineBreak {
                key: "Variable".into()
            })
        );
    }
    assert!(a.clone().header("Var\niable", "x").is_err());
    assert!(a.clone().with_action_id("id\r\n").is_err());
    assert!(Action::new("Ping\r\nAction: Logoff").is_err());
    // The error never echoes the value (it may be a secret).
    let err = Action::new("Login")
        .unwrap()
        .header("Secret", "lab-secret\r\n")
        .unwrap_err();
    assert!(!err.to_string().contains("lab-secret"));
    assert!(!format!("{err:?}").contains("lab-secret"));
}
