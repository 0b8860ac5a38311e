//! Bench binary: parse throughput on a synthetic stream of >= 1 M events, against the limit of a bare
//! memchr line split of the same bytes in the same run.
//!
//! `cargo bench -p ami-proto --features synthetic --bench throughput -- [CALLS] [ROUNDS]`
//!
//! The stream is generated in memory first (not timed); each round then feeds it to a `Parser` in
//! 64 KiB reads (as a socket would), classifies and counts every message (`StreamSummary`), and checks
//! that no message was lost. The ratio is parse time / split time of the same round.
mod common;

use std::time::Instant;

use ami_proto::synthetic::{generate, Totals};
use common::{memchr_split, parse_summary};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(11_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let data = generate(calls, 42);
    let expected = Totals::expected(calls as u64);
    println!(
        "stream: {calls} calls, {} events, {} bytes ({:.0} bytes/event)",
        expected.events,
        data.len(),
        data.len() as f64 / expected.events as f64
    );
    for round in 0..rounds {
        let t = Instant::now();
        let s = parse_summary(&data);
        let parse_s = t.elapsed().as_secs_f64();
        assert_eq!(
            (s.frames, s.events, s.responses, s.errors),
            (expected.frames, expected.events, expected.responses, 0),
            "messages lost"
        );
        let t = Instant::now();
        let split_frames = memchr_split(&data);
        let split_s = t.elapsed().as_secs_f64();
        assert_eq!(split_frames, expected.frames);
        println!(
            "round {round}: parse {:.2} M events/s ({:.0} MB/s); memchr split {:.2} M events/s ({:.0} MB/s); ratio {:.2}",
            s.events as f64 / parse_s / 1e6,
            data.len() as f64 / parse_s / 1e6,
            s.events as f64 / split_s / 1e6,
            data.len() as f64 / split_s / 1e6,
            parse_s / split_s
        );
    }
}
