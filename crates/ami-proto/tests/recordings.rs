//! Every recorded AMI session in `fixtures/ami/` against its `truth.json`: the summary counts match, the
//! messages re-encode to their original bytes, and the socket reads of the recording (`.chunks.jsonl`)
//! give the same messages as one big read.

mod common;

use std::collections::BTreeMap;

use ami_proto::{Frame, Parser, StreamSummary};
use common::{fixtures_dir, parse_all, parse_chunked, summarize};
use serde_json::Value;

/// Every `(truth entry, file bytes)` pair of every scenario.
fn connections() -> Vec<(Value, Vec<u8>)> {
    let dir = fixtures_dir();
    let mut out = Vec::new();
    let mut truths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".truth.json"))
        .collect();
    truths.sort();
    assert!(!truths.is_empty(), "no truth.json in {}", dir.display());
    for path in truths {
        let truth: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for list in ["subject_connections", "observer_connections"] {
            for conn in truth[list].as_array().unwrap() {
                let file = conn["file"].as_str().unwrap();
                let bytes = std::fs::read(dir.join(file)).unwrap();
                out.push((conn.clone(), bytes));
            }
        }
    }
    out
}

fn check_summary(file: &str, conn: &Value, s: &StreamSummary) {
    assert_eq!(
        s.banner.as_deref(),
        conn["banner"].as_str(),
        "{file}: banner"
    );
    assert_eq!(s.frames, conn["frames"].as_u64().unwrap(), "{file}: frames");
    assert_eq!(s.events, conn["events"].as_u64().unwrap(), "{file}: events");
    // Observer entries have no `responses` key; where present it must match.
    if let Some(responses) = conn.get("responses") {
        assert_eq!(
            s.responses,
            responses.as_u64().unwrap(),
            "{file}: responses"
        );
    }
    assert_eq!(
        s.frames,
        s.events + s.responses + s.unclassified,
        "{file}: every frame classified once"
    );
    assert_eq!(s.unclassified, 0, "{file}: unclassified");
    assert_eq!(s.errors, 0, "{file}: parse errors");
    assert_eq!(
        s.trailing_partial_bytes,
        conn["trailing_partial_bytes"].as_u64().unwrap(),
        "{file}: trailing_partial_bytes"
    );
    let expected: BTreeMap<String, u64> = conn["event_counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(s.event_counts, expected, "{file}: event_counts");
}

#[test]
fn summaries_equal_truth_json() {
    let conns = connections();
    // 8 scenarios: 8 observers and 12 subject sessions.
    assert_eq!(conns.len(), 20);
    for (conn, bytes) in &conns {
        let file = conn["file"].as_str().unwrap();
        assert_eq!(
            bytes.len() as u64,
            conn["bytes_received"].as_u64().unwrap(),
            "{file}: size"
        );
        check_summary(file, conn, &summarize(bytes));
    }
}

#[test]
fn recorded_socket_reads_give_the_same_messages() {
    let dir = fixtures_dir();
    for (conn, bytes) in connections() {
        let file = conn["file"].as_str().unwrap();
        let chunks_path = dir.join(file.replace(".ami", ".chunks.jsonl"));
        let mut cuts = Vec::new();
        for line in std::fs::read_to_string(chunks_path).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["dir"] == "rx" {
                let (o, n) = (
                    v["o"].as_u64().unwrap() as usize,
                    v["n"].as_u64().unwrap() as usize,
                );
                assert_eq!(
                    o,
                    cuts.last().copied().unwrap_or(0),
                    "{file}: reads are contiguous"
                );
                cuts.push(o + n);
            }
        }
        assert_eq!(
            cuts.last().copied(),
            Some(bytes.len()),
            "{file}: reads cover the file"
        );
        let mut sizes = Vec::new();
        let mut prev = 0;
        for cut in cuts {
            sizes.push(cut - prev);
            prev = cut;
        }
        assert_eq!(
            parse_chunked(&bytes, sizes.into_iter()),
            parse_all(&bytes),
            "{file}"
        );
    }
}

#[test]
fn messages_reencode_to_their_original_bytes() {
    for (conn, bytes) in connections() {
        let file = conn["file"].as_str().unwrap();
        let (frames, rest) = parse_all(&bytes);
        let mut rebuilt = Vec::with_capacity(bytes.len());
        for frame in frames {
            match frame.unwrap() {
                Frame::Banner(b) => {
                    rebuilt.extend_from_slice(&b);
                    rebuilt.extend_from_slice(b"\r\n");
                }
                Frame::Message(m) => {
                    assert_eq!(m.to_bytes(), *m.raw(), "{file}: {m:?}");
                    rebuilt.extend_from_slice(&m.to_bytes());
                }
            }
        }
        rebuilt.extend_from_slice(&rest);
        assert!(rebuilt == bytes, "{file}: frames + rest rebuild the stream");
    }
}

#[test]
fn cut_recordings_report_the_partial_last_message() {
    // Cut a recording inside its last message: every message before the cut is still delivered.
    let bytes = std::fs::read(fixtures_dir().join("basic.subject-1.ami")).unwrap();
    let (all, _) = parse_all(&bytes);
    let cut = bytes.len() - 50;
    let (frames, rest) = parse_all(&bytes[..cut]);
    assert_eq!(frames.len(), all.len() - 1);
    assert_eq!(frames[..], all[..all.len() - 1]);
    let last_len = match all.last().unwrap() {
        Ok(Frame::Message(m)) => m.raw().len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(rest.len(), last_len - 50);
    let mut parser = Parser::default();
    let mut s = StreamSummary::new();
    let mut buf = bytes::BytesMut::from(&bytes[..cut]);
    while let Some(f) = parser.next_frame(&mut buf) {
        s.record(&f);
    }
    s.finish(parser.pending_bytes(&buf));
    assert_eq!(s.trailing_partial_bytes as usize, last_len - 50);
}

#[test]
fn typed_views_of_recorded_events() {
    use ami_proto::Event;
    let mut seen = BTreeMap::<&str, u64>::new();
    for (_, bytes) in common::recordings() {
        let (frames, _) = parse_all(&bytes);
        for frame in frames {
            let Ok(Frame::Message(m)) = frame else {
                continue;
            };
            let event = Event::from_message(&m);
            let key = match event {
                Event::Newchannel(e) => {
                    assert!(
                        e.channel.uniqueid.is_some() && e.channel.linkedid.is_some(),
                        "{m:?}"
                    );
                    assert!(
                        e.channel.channel_state.is_some() && e.channel.channel.is_some(),
                        "{m:?}"
                    );
                    "Newchannel"
                }
                Event::Hangup(h) => {
                    assert!(
                        h.channel.uniqueid.is_some() && h.channel.linkedid.is_some(),
                        "{m:?}"
                    );
                    assert!(h.cause.is_some() && h.cause_txt.is_some(), "{m:?}");
                    "Hangup"
                }
                Event::CoreShowChannel(c) => {
                    assert!(
                        c.channel.uniqueid.is_some() && c.channel.linkedid.is_some(),
                        "{m:?}"
                    );
                    assert!(
                        c.duration.is_some() && c.channel.channel_state.is_some(),
                        "{m:?}"
                    );
                    assert!(event.action_id().is_some());
                    "CoreShowChannel"
                }
                Event::CoreShowChannelsComplete(c) => {
                    assert!(c.list_items.is_some(), "{m:?}");
                    "CoreShowChannelsComplete"
                }
                Event::Status(s) => {
                    assert!(s.channel.uniqueid.is_some() && s.seconds.is_some(), "{m:?}");
                    "Status"
                }
                Event::FullyBooted(f) => {
                    assert!(f.uptime.is_some() && f.last_reload.is_some(), "{m:?}");
                    "FullyBooted"
                }
                Event::DialBegin(d) => {
                    assert!(d.dest.uniqueid.is_some(), "{m:?}");
                    "DialBegin"
                }
                Event::OriginateResponse(o) => {
                    assert!(o.response.is_some() && o.reason.is_some(), "{m:?}");
                    "OriginateResponse"
                }
                Event::Other(other) => {
                    assert!(std::ptr::eq(other, &m));
                    "Other"
                }
                _ => "typed",
            };
            *seen.entry(key).or_default() += 1;
        }
    }
    for key in [
        "Newchannel",
        "Hangup",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
        "Status",
        "FullyBooted",
        "DialBegin",
        "OriginateResponse",
        "Other",
        "typed",
    ] {
        assert!(
            seen.get(key).copied().unwrap_or(0) > 0,
            "no {key} in the recordings: {seen:?}"
        );
    }
}
