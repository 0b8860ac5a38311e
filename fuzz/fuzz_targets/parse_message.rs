//! Parsing arbitrary bytes never panics, loses nothing, and every message survives encode + parse.
//!
//! `cargo +nightly fuzz run parse_message fuzz/corpus/parse_message fuzz/seeds/parse_message` (from the
//! workspace root): new inputs go to `fuzz/corpus/` (not tracked), the seeds in `fuzz/seeds/` are kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| check_parse(data));
