//! Replays the seed corpus of the `parse_message` fuzz target (`fuzz/seeds/parse_message/`) through the
//! target's own checks, so the invariants are exercised by `cargo test` without nightly or libFuzzer.

use std::path::PathBuf;

include!("../../../fuzz/check.rs");

#[test]
fn fuzz_seed_corpus_passes_the_target_checks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/parse_message");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 20,
        "seed corpus missing in {}",
        dir.display()
    );
    for path in seeds {
        let data = std::fs::read(&path).unwrap();
        check_parse(&data);
        // The same bytes with other read sizes.
        for chunk in [1u8, 2, 13, 255] {
            let mut reread = data.clone();
            if let Some(first) = reread.first_mut() {
                *first = chunk;
            }
            check_parse(&reread);
        }
    }
}

#[test]
fn check_reencode_catches_a_lossy_message() {
    // A message whose encoding would not parse back the same must fail the check: guard against a
    // check that cannot fail.
    let m = ami_proto::Message::from_pairs([("Event", "X"), ("Bad", "line\r\nInjected: 1")]);
    let caught = std::panic::catch_unwind(|| check_reencode(&m));
    assert!(caught.is_err());
}
