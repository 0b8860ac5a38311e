//! `decide` over 100,000 open rows against 100,000 live channels.
//!
//! Run: `cargo bench -p reconciler --bench decide`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use reconciler::{
    decide, End, EndedChannel, LiveChannel, OpenRow, Policy, ServerState, ServerView,
    ServerViewBuilder,
};

const N: usize = 100_000;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// 25,000 calls of four channels each (Linkedid = the first channel's Uniqueid, like Asterisk's Local
/// channels), all up; plus 5,000 ended channels. Rows: 90 % tracked by Uniqueid, 5 % by Linkedid only, 5 %
/// whose channel ended (half seen hanging up, half absent from the listing).
fn fixture(synced: bool) -> (Vec<OpenRow>, ServerViewBuilder) {
    let now = now();
    let uid = |i: usize| format!("1795520552.{i}");
    let mut view = ServerView::builder(ServerState {
        synced,
        connected: synced,
        unsynced_since: (!synced).then(|| now - Duration::seconds(30)),
        listing_at: Some(now - Duration::seconds(1)),
        epoch: 1,
        ids_matched_before: true,
    });
    for i in 0..N {
        view.live(
            uid(i),
            LiveChannel {
                linkedids_ever: vec![uid(i - i % 4)],
                first_seen: now - Duration::seconds(600),
                last_known_alive: now,
                epoch: 1,
            },
        );
    }
    for i in N..N + N / 20 {
        let end = if i % 2 == 0 {
            End::HangupSeen {
                at: now - Duration::seconds(10),
                cause: Some(16),
                cause_txt: Some("Normal Clearing".into()),
            }
        } else {
            End::Gone {
                after: now - Duration::seconds(20),
                before: now - Duration::seconds(1),
            }
        };
        view.ended(
            uid(i),
            EndedChannel {
                linkedids_ever: vec![uid(i)],
                end,
            },
        );
    }
    let rows = (0..N)
        .map(|r| {
            let (uniqueid, linkedid) = match r % 20 {
                0 => (None, Some(uid(r - r % 4))),
                1 => (Some(uid(N + r / 20)), None),
                _ => (Some(uid(r)), Some(uid(r - r % 4))),
            };
            OpenRow {
                key: r.to_string(),
                uniqueid,
                linkedid,
                extension: Some(format!("{}", 2001 + r % 20_000)),
                answered_at: now - Duration::seconds(300),
                talk_seconds: None,
            }
        })
        .collect();
    (rows, view)
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(30);
    for (name, synced) in [
        ("100k_rows_100k_live_synced", true),
        ("100k_rows_100k_live_unsynced", false),
    ] {
        let (rows, view) = fixture(synced);
        let view = view.build();
        g.bench_function(name, |b| b.iter(|| decide(&rows, &view, &policy, now())));
    }
    g.finish();
    let (_, builder) = fixture(true);
    c.bench_function("build_view_100k_live_5k_ended", |b| {
        b.iter_batched(
            || builder.clone(),
            ServerViewBuilder::build,
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
