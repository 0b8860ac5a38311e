//! Criterion benchmarks of the framing: a recorded session and a synthetic stream, each against a bare
//! memchr line split of the same bytes (the floor for any line-based parser).
//!
//! `cargo bench -p ami-proto --features synthetic --bench parse`

mod common;

use ami_proto::{Event, Parser};
use bytes::BytesMut;
use common::{memchr_split, parse_summary};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Parse plus a typed view of every event (what a channel map does).
fn parse_typed(data: &[u8]) -> usize {
    let mut parser = Parser::default();
    let mut buf = BytesMut::from(data);
    let mut hangups = 0;
    while let Some(frame) = parser.next_frame(&mut buf) {
        if let Ok(ami_proto::Frame::Message(m)) = frame {
            if let Event::Hangup(h) = Event::from_message(&m) {
                hangups += usize::from(h.channel.uniqueid.is_some());
            }
        }
    }
    hangups
}

fn bench(c: &mut Criterion) {
    let recorded = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/ami/disconnect-gap.observer.ami"
    ))
    .unwrap();
    let synthetic = ami_proto::synthetic::generate(200, 42);
    for (name, data) in [("recorded", &recorded), ("synthetic", &synthetic)] {
        let events = parse_summary(data).events;
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(events));
        group.bench_function(BenchmarkId::new("parse_summary", data.len()), |b| {
            b.iter(|| parse_summary(black_box(data)))
        });
        group.bench_function(BenchmarkId::new("parse_typed", data.len()), |b| {
            b.iter(|| parse_typed(black_box(data)))
        });
        group.bench_function(BenchmarkId::new("memchr_split", data.len()), |b| {
            b.iter(|| memchr_split(black_box(data)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
