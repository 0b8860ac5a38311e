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
    let mut rounds_done: Vec<(f64, f64)> = Vec::new();
    for round in 0..rounds {
        let (parse, s) = timed(|| parse_summary(&data));
        assert_eq!(
            (s.frames, s.events, s.responses, s.errors),
            (expected.frames, expected.events, expected.responses, 0),
            "messages lost"
        );
        let (split, split_frames) = timed(|| memchr_split(&data));
        assert_eq!(split_frames, expected.frames);
        let rate = |secs: f64| s.events as f64 / secs / 1e6;
        rounds_done.push((rate(parse.wall), rate(split.wall)));
        print!(
            "round {round}: wall: parse {:.2} M events/s ({:.0} MB/s), memchr split {:.2} M events/s, ratio {:.2}",
            rate(parse.wall),
            data.len() as f64 / parse.wall / 1e6,
            rate(split.wall),
            parse.wall / split.wall
        );
        match (parse.cpu, split.cpu) {
            (Some(p), Some(q)) if p > 0.0 && q > 0.0 => println!(
                "; thread CPU time: parse {:.2} M events/s, memchr split {:.2} M events/s, ratio {:.2}",
                rate(p),
                rate(q),
                p / q
            ),
            _ => println!(),
        }
    }
    record(rounds_done, expected.events);
}

/// Records the round with the median parse rate for `scripts/bench.sh`.
fn record(mut rounds: Vec<(f64, f64)>, events: u64) {
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(parse, split)) = rounds.get(rounds.len() / 2) else {
        return;
    };
    // The busy reference PBX: 700 calls up, 230 ending each second, 1.39 M events in 66 s.
    let busy_pbx_events_per_s = 21_000.0;
    bench_report::record(
        &bench_report::Figure::new(
            "parse.events_per_s",
            format!("AMI parse + classify + count, from memory ({events} synthetic events)"),
            parse * 1e6,
            "events/s",
        )
        .baseline("bare memchr line split", split * 1e6)
        .means(format!(
            "one core parses the event stream of {:.0} busy PBXs (700 calls up, 230 ending per second: \
             21,000 events/s)",
            parse * 1e6 / busy_pbx_events_per_s
        ))
        .command("cargo bench -p ami-proto --features synthetic --bench throughput -- 11000 3"),
    );
}

/// Wall-clock and on-CPU seconds of one phase. The CPU time of this thread does not count the time the
/// scheduler gave to other processes, so it stays meaningful on a busy machine.
struct Took {
    wall: f64,
    cpu: Option<f64>,
}

fn timed<T>(f: impl FnOnce() -> T) -> (Took, T) {
    let cpu0 = thread_cpu_seconds();
    let t = Instant::now();
    let out = f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    (Took { wall, cpu }, out)
}

/// This thread's time on CPU (Linux: first field of `/proc/thread-self/schedstat`, in ns).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}
