//! Criterion benchmarks of the framing: a recorded session and a synthetic stream, each against a bare
//! memchr line split of the same bytes (the floor for any line-based parser).
//!
//! `cargo bench -p ami-proto --features synthetic --bench parse`

use ami_proto::{Event, Parser, StreamSummary};
use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHUNK: usize = 64 * 1024;

/// Ingest in socket-sized reads, classify, count: what `callwatch events --summary` does per byte.
fn parse_summary(data: &[u8]) -> StreamSummary {
    let mut parser = Parser::default();
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut s = StreamSummary::new();
    for chunk in data.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = parser.next_frame(&mut buf) {
            s.record(&frame);
        }
    }
    s.finish(parser.pending_bytes(&buf));
    s
}

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

fn memchr_split(data: &[u8]) -> u64 {
    let mut frames = 0;
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if nl - line_start <= 1 {
            frames += 1;
        }
        line_start = nl + 1;
    }
    frames
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
