//! End-to-end replay throughput: a generated long stream (ami-proto's `synthetic` generator: ~93 events and
//! ~490 bytes per event per call) replayed through the real pipeline — the client's sans-IO core, the live
//! channel map, the reconciler and the store (a SQLite file) — on virtual time, with one open row per call
//! closed at its Hangup.
//!
//! `cargo bench --bench replay -- [CALLS]` (default 2,000 calls ≈ 186,000 events).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use callwatch::broadcast::Broadcaster;
use callwatch::pipeline::{ServerTarget, Sweeper};
use callwatch::replay::Replayer;

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(calls));
}

async fn run(calls: usize) {
    let bytes = Bytes::from(ami_proto::synthetic::generate(calls, 42));
    let session =
        ami_testkit::Session::from_recording("synthetic.bench", bytes.clone(), None, None).unwrap();
    // The first channel of every call (Uniqueid == Linkedid) is what the application stored, with the row
    // answered when that channel appeared: rows open as calls start, as in a real table.
    let mut rows = Vec::new();
    let mut events = 0u64;
    for (at, m) in session.messages() {
        if m.event().is_some() {
            events += 1;
        }
        if m.event() == Some("Newchannel") && m.get("Uniqueid") == m.get("Linkedid") {
            rows.push((m.get_str("Linkedid").unwrap_or_default().to_string(), at));
        }
    }
    let session =
        ami_testkit::Session::from_recording("synthetic.bench", bytes.clone(), None, None).unwrap();
    let first = session.connected_at();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("calls.db").display());
    let clock = clock::VirtualClock::new(first);
    let shared: clock::SharedClock = Arc::new(clock.clone());
    let store = store::Store::connect(&store::DatabaseConfig::new(url), shared.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    for (i, (l, at)) in rows.iter().enumerate() {
        let t = at.format("%Y-%m-%d %H:%M:%S").to_string();
        sqlx::query("INSERT INTO calls (id, linkedid, answered_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            .bind(i as i64 + 1)
            .bind(l.clone())
            .bind(t.clone())
            .bind(t.clone())
            .bind(t.clone())
            .execute(store.pool())
            .await
            .unwrap();
    }
    let mut sweeper = Sweeper::new(
        store.clone(),
        reconciler::Policy::default(),
        shared,
        "bench".into(),
        false,
        Broadcaster::disabled(),
    );
    let map = ami::channels::ChannelMap::new(ami::channels::MapOptions::default());
    let target = ServerTarget {
        name: "default".into(),
        is_default: true,
    };
    let cfg = callwatch::cmd::replay::replay_client_config("default");
    let began = Instant::now();
    let report = Replayer::new(
        &mut sweeper,
        map,
        clock,
        target,
        cfg,
        std::time::Duration::from_secs(600),
    )
    .run(std::slice::from_ref(&session))
    .await
    .unwrap();
    let secs = began.elapsed().as_secs_f64();
    println!(
        "replay: {calls} calls, {events} events, {} MB, {} rows closed, {} rounds in {secs:.2} s: {:.0} events/s, {:.0} closes/s",
        bytes.len() / 1_000_000,
        report.closed.len(),
        report.sweeps,
        events as f64 / secs,
        report.closed.len() as f64 / secs,
    );
    assert_eq!(report.closed.len(), rows.len(), "every call's row closed");
    store.shutdown().await;
}
