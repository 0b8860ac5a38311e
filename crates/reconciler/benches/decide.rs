//! `decide` over 100,000 open rows against 100,000 live channels.
//!
//! Run: `cargo bench -p reconciler --bench decide`.
//!
//! Two measurements: wall-clock time (criterion's default), and on-CPU time of the benchmark thread
//! (Linux `/proc/thread-self/schedstat`), which stays meaningful when other processes compete for the
//! cores — wall-clock time then also counts the time the thread waited for a core.

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
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
        booted_at: None,
    });
    for i in 0..N {
        view.live(
            uid(i),
            LiveChannel {
                linkedids_ever: vec![uid(i - i % 4)],
                channel: String::new(),
                first_seen: now - Duration::seconds(600),
                last_known_alive: now,
                last_activity: now,
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
                after: None,
                before: None,
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
                channel: String::new(),
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
                channel: None,
                linkedid,
                extension: Some(format!("{}", 2001 + r % 20_000)),
                answered_at: now - Duration::seconds(300),
                talk_seconds: None,
            }
        })
        .collect();
    (rows, view)
}

fn bench_decide<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let policy = Policy::default();
    let mut g = c.benchmark_group(group);
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
    let (_, builder) = fixture(true);
    g.bench_function("build_view_100k_live_5k_ended", |b| {
        b.iter_batched(
            || builder.clone(),
            ServerViewBuilder::build,
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench_decide(c, "decide");
}

fn on_cpu(c: &mut Criterion<OnCpu>) {
    if OnCpu::now().is_some() {
        bench_decide(c, "decide_on_cpu");
    }
}

/// The benchmark thread's time on a CPU, in nanoseconds.
struct OnCpu;

impl OnCpu {
    fn now() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        s.split_whitespace().next()?.parse().ok()
    }
}

impl Measurement for OnCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        OnCpu::now().unwrap_or(0)
    }
    fn end(&self, start: u64) -> u64 {
        OnCpu::now().unwrap_or(0).saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

/// Formats nanoseconds as ms (and elements per second of CPU).
struct Nanos;

impl ValueFormatter for Nanos {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values.iter_mut() {
            *v /= 1e6;
        }
        "ms (on CPU)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
        };
        for v in values.iter_mut() {
            *v = n * 1e9 / *v / 1e6;
        }
        "M/s (on CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(OnCpu);
    targets = on_cpu
}
fn main() {
    // What `criterion_main!` does, then the headline figure for `scripts/bench.sh`.
    wall_clock();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        record_headline();
    }
}

/// The median on-CPU time of 9 full synced rounds, recorded for `scripts/bench.sh`.
fn record_headline() {
    let (rows, view) = fixture(true);
    let view = view.build();
    let policy = Policy::default();
    let mut took: Vec<f64> = (0..9)
        .filter_map(|_| {
            let start = bench_report::proc_stats::thread_cpu_seconds()?;
            std::hint::black_box(decide(&rows, &view, &policy, now()));
            Some(bench_report::proc_stats::thread_cpu_seconds()? - start)
        })
        .collect();
    took.sort_by(f64::total_cmp);
    let Some(median) = took.get(took.len() / 2) else {
        return;
    };
    bench_report::record(
        &bench_report::Figure::new(
            "decide.full_round_ms",
            "reconciler: one full round, 100,000 open rows × 100,000 live channels (CPU time)",
            median * 1e3,
            "ms",
        )
        .means(format!(
            "deciding every open call of 140 busy PBXs (700 calls up each) costs {:.0} ms of one core; \
             an incremental round decides only the rows of the channels that changed",
            median * 1e3
        ))
        .command("cargo bench -p reconciler --bench decide"),
    );
}
