//! The synthetic stream against the recordings it imitates.

mod common;

use std::collections::BTreeSet;

use ami_proto::synthetic::{generate, Synthetic, Totals, EVENTS_PER_CALL};
use ami_proto::{Event, Frame};
use common::{fixtures_dir, parse_all, summarize};
use serde_json::Value;

#[test]
fn counts_match_the_generator_and_the_recorded_mix_per_call() {
    let calls = 40;
    let bytes = generate(calls, 3);
    let s = summarize(&bytes);
    let expected = Totals::expected(calls as u64);
    assert_eq!(
        (s.frames, s.events, s.responses),
        (expected.frames, expected.events, expected.responses)
    );
    assert_eq!(
        (s.errors, s.unclassified, s.trailing_partial_bytes),
        (0, 0, 0)
    );
    assert_eq!(s.banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));

    // basic.observer: 10 calls, all ended by the agent, as the generator's calls are.
    let truth: Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join("basic.truth.json")).unwrap())
            .unwrap();
    let recorded = truth["observer_connections"][0]["event_counts"]
        .as_object()
        .unwrap();
    let mut per_call_total = 0;
    for (name, count) in recorded {
        if name == "FullyBooted" || name == "SuccessfulAuth" {
            continue;
        }
        let per_call = count.as_u64().unwrap() / 10;
        per_call_total += per_call;
        assert_eq!(
            s.event_counts.get(name).copied(),
            Some(per_call * calls as u64),
            "{name}"
        );
    }
    assert_eq!(per_call_total, EVENTS_PER_CALL);
    let mean = bytes.len() as f64 / s.events as f64;
    assert!((470.0..=510.0).contains(&mean), "{mean} bytes per event");
}

#[test]
fn calls_have_distinct_ids_and_complete_channel_lifecycles() {
    let calls = 25;
    let (frames, _) = parse_all(&generate(calls, 11));
    let mut created = BTreeSet::new();
    let mut hung_up = BTreeSet::new();
    let mut linkedids = BTreeSet::new();
    for f in &frames {
        let Ok(Frame::Message(m)) = f else { continue };
        match Event::from_message(m) {
            Event::Newchannel(e) => {
                assert!(created.insert(e.channel.uniqueid.unwrap().to_owned()));
                linkedids.insert(e.channel.linkedid.unwrap().to_owned());
            }
            Event::Hangup(h) => {
                assert_eq!((h.cause, h.cause_txt), (Some(16), Some("Normal Clearing")));
                assert!(
                    created.contains(h.channel.uniqueid.unwrap()),
                    "hangup before newchannel"
                );
                assert!(hung_up.insert(h.channel.uniqueid.unwrap().to_owned()));
            }
            other => assert!(
                other.timestamp().is_some() || m.kind() != Ok(ami_proto::MessageKind::Event)
            ),
        }
    }
    assert_eq!(created.len(), 4 * calls);
    assert_eq!(hung_up, created);
    assert_eq!(linkedids.len(), calls);
}

#[test]
fn seeds_change_the_stream_not_its_shape() {
    let (a, b) = (generate(5, 1), generate(5, 2));
    assert_ne!(a, b);
    assert_eq!(summarize(&a).event_counts, summarize(&b).event_counts);
    let streamed: Vec<u8> = Synthetic::new(5, 1).flatten().collect();
    assert_eq!(streamed, a);
}
