//! Memory of the channel map's tombstones (ended channels kept for the reconciler): bytes allocated per
//! tombstone, counted by an instrumented global allocator (`stats_alloc`).
//!
//! Plays N channels (calls of four `Local` channels sharing a Linkedid, names and ids shaped like the
//! recordings') through `Newchannel` and `Hangup` (with `Cause` and `Cause-txt`), with a tombstone cap of N,
//! and reports the heap bytes the map holds afterwards per tombstone, and those of one snapshot of it.
//!
//! Run: `cargo bench -p ami --bench tombstones` (optionally `-- N`, default 20 000, the daemon's cap).

use ami::{ChannelMap, MapOptions};
use ami_proto::Message;
use chrono::{DateTime, TimeDelta};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// The system allocator, counting what is allocated and freed.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not freed since `region` began.
fn held(region: &Region<'_, std::alloc::System>) -> isize {
    let c = region.change();
    // A reallocation adds its growth to `bytes_allocated` (its shrinkage to `bytes_deallocated`) already.
    c.bytes_allocated as isize - c.bytes_deallocated as isize
}

/// Resident set size of this process (Linux `/proc/self/status`), KiB.
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let t0 = DateTime::from_timestamp(1_795_520_552, 0).unwrap();
    let map = ChannelMap::new(MapOptions {
        max_tombstones: n,
        gone_queue: 0,
        ..MapOptions::default()
    });
    let server = map.server("pbx1");
    let rss0 = rss_kib();
    let region = Region::new(GLOBAL);
    for i in 0..n {
        let call = i / 4;
        let leg = i % 4;
        let now = t0 + TimeDelta::milliseconds(i as i64);
        let uid = format!("1795520552.{}", 1000 + i);
        let lid = format!("1795520552.{}", 1000 + call * 4);
        let ctx = if leg < 2 { "inbound" } else { "agents" };
        let channel = format!(
            "Local/{}@{ctx}-{:08x};{}",
            2001 + call % 20,
            0xa1b2 + call,
            1 + leg % 2
        );
        let newchannel = Message::from_pairs([
            ("Event", "Newchannel"),
            ("Privilege", "call,all"),
            ("Channel", channel.as_str()),
            ("ChannelState", "0"),
            ("ChannelStateDesc", "Down"),
            ("CallerIDNum", "5550110001"),
            ("Context", ctx),
            ("Exten", "2001"),
            ("Uniqueid", uid.as_str()),
            ("Linkedid", lid.as_str()),
        ]);
        server.apply(&newchannel, now);
        let hangup = Message::from_pairs([
            ("Event", "Hangup"),
            ("Privilege", "call,all"),
            ("Channel", channel.as_str()),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("Uniqueid", uid.as_str()),
            ("Linkedid", lid.as_str()),
            ("Cause", "16"),
            ("Cause-txt", "Normal Clearing"),
        ]);
        server.apply(&hangup, now + TimeDelta::seconds(30));
    }
    let map_bytes = held(&region);
    let rss = rss_kib() - rss0;
    let snap = map.snapshot("pbx1");
    let with_snapshot = held(&region);
    assert_eq!(snap.ended.len(), n, "every tombstone kept");
    assert!(snap.live.is_empty());
    println!("tombstones: {n}");
    println!(
        "heap held by the map: {map_bytes} bytes = {:.0} bytes/tombstone",
        map_bytes as f64 / n as f64
    );
    println!(
        "resident memory growth (allocator overhead included): {rss} KiB = {:.0} bytes/tombstone",
        rss as f64 * 1024.0 / n as f64
    );
    println!(
        "one snapshot of it: {} bytes = {:.0} bytes/tombstone",
        with_snapshot - map_bytes,
        (with_snapshot - map_bytes) as f64 / n as f64
    );
    drop(snap);
    let per = rss as f64 * 1024.0 / n as f64;
    bench_report::record(
        &bench_report::Figure::new(
            "map.tombstone_bytes",
            format!("channel map: resident memory per ended channel kept ({n} kept)"),
            per,
            "bytes",
        )
        .baseline("heap bytes the map holds per ended channel", map_bytes as f64 / n as f64)
        .means(format!(
            "the daemon keeps up to 100,000 ended channels per PBX for an hour (the evidence for closes \
             after an outage): {:.0} MB when full, reached after 8 minutes of a busy PBX (~200 ended a second)",
            per * 100_000.0 / 1e6
        ))
        .command("cargo bench -p ami --bench tombstones"),
    );
}
