//! Loopback throughput of the testkit's servers, measured with a raw tokio client that parses every
//! message with ami-proto.
//!
//! `cargo bench -p ami-testkit --bench load [-- CALLS]` (default 11 000 calls ≈ 1.02 M events):
//! - the generator alone, into `io::sink()` (the ceiling for the next line);
//! - `LoadServer`: the generated stream as fast as the socket takes it;
//! - `FakeAmi --max-speed`: the largest recording (`disconnect-gap.observer`, 897 KB) replayed through
//!   `ActionPairing` (unsent responses skipped), 20 connections in a row.

use std::time::Instant;

use ami_proto::{Frame, Limits, Parser};
use ami_testkit::{FakeAmi, FakeAmiConfig, LoadConfig, LoadServer, Session, UnsentPolicy};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads a connection to EOF (or until `stop_after` events); returns (bytes, events).
async fn drain(addr: std::net::SocketAddr, login: bool, stop_after: u64) -> (u64, u64) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if login {
        s.write_all(b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: x\r\n\r\n")
            .await
            .unwrap();
    }
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::with_capacity(1 << 20);
    let (mut bytes, mut events) = (0u64, 0u64);
    loop {
        let n = s.read_buf(&mut buf).await.unwrap();
        if n == 0 {
            return (bytes, events);
        }
        bytes += n as u64;
        while let Some(f) = parser.next_frame(&mut buf) {
            if let Ok(Frame::Message(m)) = f {
                if m.event().is_some() {
                    events += 1;
                }
            }
        }
        if events >= stop_after {
            return (bytes, events);
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(1 << 20);
        }
    }
}

fn report(what: &str, bytes: u64, events: u64, secs: f64) {
    println!(
        "{what}: {events} events, {:.1} MB in {secs:.3} s = {:.0} events/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        events as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(11_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let totals = ami_proto::synthetic::Synthetic::new(calls, 1)
        .write_to(std::io::sink())
        .unwrap();
    report(
        "generator alone (no socket)",
        totals.bytes,
        totals.events,
        t.elapsed().as_secs_f64(),
    );
    rt.block_on(async {
        let server = LoadServer::start(LoadConfig::new(calls)).await.unwrap();
        let t = Instant::now();
        let (bytes, events) = drain(server.local_addr(), true, u64::MAX).await;
        report(
            &format!("LoadServer, {calls} calls"),
            bytes,
            events,
            t.elapsed().as_secs_f64(),
        );

        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/ami/disconnect-gap.observer");
        let session = Session::load(&path).unwrap();
        let rounds = 20;
        let config = FakeAmiConfig::new(std::iter::repeat_n(session, rounds))
            .max_speed()
            .policy(UnsentPolicy::Skip);
        let server = FakeAmi::start(config).await.unwrap();
        let t = Instant::now();
        let (mut bytes, mut events) = (0, 0);
        for _ in 0..rounds {
            let (b, e) = drain(server.local_addr(), false, u64::MAX).await;
            bytes += b;
            events += e;
        }
        report(
            &format!("FakeAmi max speed, disconnect-gap.observer x{rounds}"),
            bytes,
            events,
            t.elapsed().as_secs_f64(),
        );
    });
}
