//! End-to-end throughput of the AMI client over loopback TCP.
//!
//! A [`ami_testkit::LoadServer`] streams a generated `read = all` session (about 490 bytes per event) as
//! fast as the socket takes it; the client logs in, lists the channels, applies every event to the channel
//! map and hands it to one subscriber that classifies and counts it. Reports events/s, losses (lag) and the
//! process's peak RSS (server included).
//!
//! Run: `cargo bench -p ami --bench loopback` (optionally `-- CALLS`, default 10 753 calls = 1 000 030 events).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ami::{ChannelMap, Config, Event, MapOptions, Secret, TokioClock};
use ami_proto::synthetic::Totals;
use ami_testkit::{LoadConfig, LoadServer};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds used by this process so far (Linux `/proc/self/stat`, 100 ticks per second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_753);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let server = LoadServer::start(LoadConfig::new(calls)).await.unwrap();
        let addr = server.local_addr();
        let mut cfg = Config::new(addr.ip().to_string(), "watchdog", Secret::new("lab-secret"));
        cfg.port = addr.port();
        cfg.server = "load".into();
        let map = ChannelMap::new(MapOptions {
            gone_queue: 0,
            ..MapOptions::default()
        });
        let (client, connection) = ami::connect(cfg, map.clone(), Arc::new(TokioClock::new()));
        let mut events = client.subscribe();
        let task = tokio::spawn(connection.run());
        let mut counts: HashMap<String, u64> = HashMap::new();
        let (mut total, mut responses, mut lagged) = (0u64, 0u64, 0u64);
        let mut started = None;
        let mut batch = Vec::with_capacity(1024);
        'run: while events.recv_many(&mut batch, 1024).await > 0 {
            for e in batch.drain(..) {
                match e {
                    Event::Connected { .. } => {
                        started = Some((Instant::now(), cpu_seconds().unwrap_or(0.0)))
                    }
                    Event::Message(m) => match m.event() {
                        Some(name) => {
                            total += 1;
                            match counts.get_mut(name) {
                                Some(c) => *c += 1,
                                None => {
                                    counts.insert(name.to_string(), 1);
                                }
                            }
                        }
                        None => responses += 1,
                    },
                    Event::Lagged(n) => lagged += n,
                    Event::Disconnected { .. } => break 'run,
                    _ => {}
                }
            }
        }
        let (t0, cpu0) = started.unwrap();
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds().unwrap_or(0.0) - cpu0;
        let expected = Totals::expected(calls as u64);
        let snap = map.snapshot("load");
        println!("calls: {calls}");
        println!(
            "events received: {total} (expected {}), responses passed through: {responses}",
            expected.events
        );
        println!(
            "lagged: {lagged}, client lag counter: {}",
            client.stats().lagged
        );
        println!("bytes sent by the server: {}", server.bytes_sent());
        println!("elapsed: {elapsed:.3} s");
        println!(
            "throughput: {:.0} events/s ({:.1} MiB/s)",
            total as f64 / elapsed,
            server.bytes_sent() as f64 / elapsed / 1048576.0
        );
        println!(
            "map: live {} ended {} (retained)",
            snap.live.len(),
            snap.ended.len()
        );
        println!(
            "CPU: {cpu:.2} s user+system (client, map, consumer and server together) = {:.0} events per CPU-second",
            total as f64 / cpu
        );
        println!(
            "peak RSS (process, server included): {} KiB",
            peak_rss_kib().unwrap_or(0)
        );
        println!("distinct event names: {}", counts.len());
        assert_eq!(total, expected.events, "events lost");
        assert_eq!(lagged, 0);
        drop(events);
        drop(client);
        let _ = task.await;
    });
}
