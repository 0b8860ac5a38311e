//! End-to-end throughput of the AMI client over loopback TCP.
//!
//! A [`ami_testkit::LoadServer`] streams a generated `read = all` session (about 490 bytes per event) as
//! fast as the socket takes it; the client logs in, lists the channels, applies every event to the channel
//! map and hands it to one subscriber that classifies and counts it. Reports events/s, losses (lag), CPU
//! and this process's peak RSS.
//!
//! The server runs in a child process (this binary again, with `--serve`) that generates the stream before
//! listening, so that neither its memory nor its generator's CPU is counted as the client's; `--live-server`
//! instead runs it in this process, generating as it goes (then RSS and CPU include the server).
//!
//! The client is compared with two baselines that read the same stream from the same server on their own
//! connection, one after the other before it: a bare memchr line split; a single-threaded parse into
//! borrowed header slices (the least a parser must do); and `ami_proto::Parser` with the summary counter on
//! one thread (the client's parsing without its map and threads). The bench prints the client's events/s
//! as a fraction of the last two (`client / borrowed-slice parse`, `client / single-threaded ami-proto
//! parse`).
//!
//! Run: `cargo bench -p ami --bench loopback` (optionally `-- CALLS`, default 10 753 calls = 1 000 030 events;
//! `--tombstones N` keeps N ended channels in the map, default 1 024; `--server ADDR` reads from a running
//! `load_server` example instead of starting one, which must then serve CALLS calls).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ami::{ChannelMap, Config, Event, MapOptions, Secret, TokioClock};
use ami_proto::summary::StreamSummary;
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

/// Server mode: pregenerate, listen, print the address, serve until stdin closes (the parent is gone).
fn serve(calls: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut cfg = LoadConfig::new(calls);
        cfg.pregenerate = true;
        let server = LoadServer::start(cfg).await.unwrap();
        println!("{}", server.local_addr());
        let mut stdin = tokio::io::stdin();
        let mut sink = [0u8; 64];
        while tokio::io::AsyncReadExt::read(&mut stdin, &mut sink)
            .await
            .is_ok_and(|n| n > 0)
        {}
        // The bytes it sent, for the parent's report.
        println!("{}", server.bytes_sent());
    });
}

/// The server the client connects to: a child process, or one in this process.
enum Server {
    Child(
        std::process::Child,
        std::io::BufReader<std::process::ChildStdout>,
    ),
    InProcess(LoadServer),
    /// Given with `--server ADDR` (e.g. `cargo run --release -p ami --example load_server`), so that
    /// `callwatch events --ami` can read the same stream from it right after.
    External,
}

impl Server {
    async fn start(
        calls: usize,
        in_process: bool,
        external: Option<std::net::SocketAddr>,
    ) -> (Self, std::net::SocketAddr) {
        use std::io::BufRead;
        if let Some(addr) = external {
            return (Server::External, addr);
        }
        if in_process {
            let server = LoadServer::start(LoadConfig::new(calls)).await.unwrap();
            let addr = server.local_addr();
            return (Server::InProcess(server), addr);
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--serve", &calls.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.trim().parse().unwrap();
        (Server::Child(child, out), addr)
    }

    fn finish(self) -> u64 {
        use std::io::BufRead;
        match self {
            Server::InProcess(server) => server.bytes_sent(),
            Server::External => 0,
            Server::Child(mut child, mut out) => {
                drop(child.stdin.take());
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                let _ = child.wait();
                line.trim().parse().unwrap_or(0)
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args
        .iter()
        .take_while(|a| *a != "--tombstones" && *a != "--server")
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_753);
    if args.iter().any(|a| a == "--serve") {
        return serve(calls);
    }
    let in_process = args.iter().any(|a| a == "--live-server");
    let external: Option<std::net::SocketAddr> = args
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    // Ended channels the map keeps as history (the daemon's default is 20 000, about 19 MB here); the
    // streaming path itself needs none, so the default here is that of `callwatch events --ami`.
    let tombstones: usize = args
        .iter()
        .position(|a| a == "--tombstones")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (server, addr) = Server::start(calls, in_process, external).await;
        // The limit first: a bare reader that logs in, reads the same stream with the same read size and
        // splits it with memchr, on its own connection to the same server.
        let (split_frames, split_secs) = memchr_split_over_tcp(addr).await;
        // The baseline: a single-threaded parse of the same stream into borrowed header slices.
        let cpu_base = cpu_seconds().unwrap_or(0.0);
        let base = borrowed_parse_over_tcp(addr).await;
        let cpu_base = cpu_seconds().unwrap_or(0.0) - cpu_base;
        // And the crate's own parser on one thread: read, frame into zero-copy `Message`s, count.
        let cpu_proto = cpu_seconds().unwrap_or(0.0);
        let proto = proto_parse_over_tcp(addr).await;
        let cpu_proto = cpu_seconds().unwrap_or(0.0) - cpu_proto;
        let mut cfg = Config::new(addr.ip().to_string(), "watchdog", Secret::new("lab-secret"));
        cfg.port = addr.port();
        cfg.server = "load".into();
        // As `callwatch events --ami`: a 16,384-event subscriber buffer.
        cfg.event_buffer = 16 * 1024;
        let map = ChannelMap::new(MapOptions {
            gone_queue: 0,
            max_tombstones: tombstones,
            ..MapOptions::default()
        });
        let (client, connection) = ami::connect(cfg, map.clone(), Arc::new(TokioClock::new()));
        let events = client.subscribe();
        let task = tokio::spawn(connection.run());
        // The consumer is a runtime task, as in `callwatch events --ami`: woken by the connection task, it
        // runs next on the same worker.
        let tally = tokio::spawn(consume(events)).await.unwrap();
        let Tally {
            summary,
            lagged,
            started,
        } = tally;
        let (total, responses, counts) = (summary.events, summary.responses, summary.event_counts);
        let (t0, cpu0) = started.expect("never logged in");
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
        drop(client);
        let _ = task.await;
        // Four connections got the whole stream: the three baselines' and the client's.
        let sent = server.finish() / 4;
        println!("bytes of the stream: {sent}");
        println!("elapsed: {elapsed:.3} s");
        println!(
            "throughput: {:.0} events/s ({:.1} MiB/s)",
            total as f64 / elapsed,
            sent as f64 / elapsed / 1048576.0
        );
        println!(
            "map: live {} ended {} (retained, cap {tombstones})",
            snap.live.len(),
            snap.ended.len()
        );
        let whose = if in_process {
            "client, map, consumer and in-process server"
        } else {
            "client, map and consumer; the server is another process"
        };
        println!(
            "CPU: {cpu:.2} s user+system ({whose}) = {:.0} events per CPU-second",
            total as f64 / cpu
        );
        println!(
            "peak RSS of this process ({whose}): {} KiB",
            peak_rss_kib().unwrap_or(0)
        );
        println!("distinct event names: {}", counts.len());
        let frames = total + responses;
        println!(
            "bare TCP read + memchr split of the same stream: {split_frames} frames in {split_secs:.3} s = {:.0} frames/s; \
             client {:.0} frames/s: ratio {:.2}",
            split_frames as f64 / split_secs,
            frames as f64 / elapsed,
            (split_frames as f64 / split_secs) / (frames as f64 / elapsed)
        );
        let base_rate = base.events as f64 / base.secs;
        let client_rate = total as f64 / elapsed;
        println!(
            "single-threaded borrowed-slice parse of the same stream: {} events, {} responses in {:.3} s = {base_rate:.0} events/s",
            base.events, base.responses, base.secs
        );
        println!(
            "client / borrowed-slice parse: {:.2} ({client_rate:.0} / {base_rate:.0} events/s)",
            client_rate / base_rate
        );
        println!(
            "events per CPU-second: client {:.0}, borrowed-slice parse {:.0}, ami-proto parse {:.0}",
            total as f64 / cpu,
            base.events as f64 / cpu_base,
            proto.events as f64 / cpu_proto
        );
        let proto_rate = proto.events as f64 / proto.secs;
        println!(
            "single-threaded ami-proto Parser + summary of the same stream: {} events, {} responses in {:.3} s = {proto_rate:.0} events/s",
            proto.events, proto.responses, proto.secs
        );
        println!(
            "client / single-threaded ami-proto parse: {:.2} ({client_rate:.0} / {proto_rate:.0} events/s)",
            client_rate / proto_rate
        );
        let command = if in_process {
            "cargo bench -p ami --bench loopback -- --live-server"
        } else {
            "cargo bench -p ami --bench loopback"
        };
        bench_report::record(
            &bench_report::Figure::new(
                "ingest.events_per_s",
                format!("AMI client over loopback TCP: parse, channel map, one subscriber ({total} events, 0 lost)"),
                client_rate,
                "events/s",
            )
            .baseline("single-threaded borrowed-slice parse of the same stream", base_rate)
            .means(format!(
                "the client keeps up with the event stream of {:.0} busy PBXs (700 calls up, 230 ending \
                 per second: 21,000 events/s); peak RSS {:.1} MB",
                client_rate / 21_000.0,
                peak_rss_kib().unwrap_or(0) as f64 / 1024.0
            ))
            .command(command),
        );
        assert_eq!(base.events, expected.events, "baseline lost events");
        assert_eq!(proto.events, expected.events, "ami-proto baseline lost events");
        assert_eq!(total, expected.events, "events lost");
        assert_eq!(lagged, 0);
    });
}

/// Logs in on a raw socket, reads until EOF in reads of the client's size and counts frames by splitting
/// lines with memchr (a blank line ends a frame): what any client must at least do. Returns (frames after
/// the login answer, seconds from the first byte of the stream to EOF).
async fn memchr_split_over_tcp(addr: std::net::SocketAddr) -> (u64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    // `carry`: bytes of the current line that came in earlier reads.
    let (mut frames, mut carry) = (0u64, 0usize);
    let mut started = None;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        started.get_or_insert_with(Instant::now);
        let mut line_start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
            if carry + nl - line_start <= 1 {
                frames += 1;
            }
            line_start = nl + 1;
            carry = 0;
        }
        carry += n - line_start;
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    (frames, secs)
}

/// What the borrowed-slice baseline parsed.
struct Baseline {
    events: u64,
    responses: u64,
    secs: f64,
}

/// The baseline the client is compared with: logs in on a raw socket, reads in reads of the client's size and
/// parses every message in place on this one thread: each line found with memchr, split at its first `:` into
/// key and value slices of the read buffer (kept in a reused vector, no copy), `Event`/`Response` noted,
/// events counted by name. A message cut by the end of a read is moved to the front and parsed again.
async fn borrowed_parse_over_tcp(addr: std::net::SocketAddr) -> Baseline {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: x\r\n\r\n")
        .await
        .unwrap();
    const READ: usize = 256 * 1024;
    let mut buf = vec![0u8; 2 * READ];
    let mut len = 0usize;
    let mut parse = BorrowedParse {
        banner: true,
        counts: HashMap::new(),
        events: 0,
        responses: 0,
        headers: Vec::with_capacity(64),
    };
    let mut started = None;
    loop {
        if buf.len() - len < READ {
            buf.resize(len + READ, 0);
        }
        let n = s.read(&mut buf[len..]).await.unwrap();
        if n == 0 {
            break;
        }
        started.get_or_insert_with(Instant::now);
        len += n;
        let msg_start = parse.read(&buf[..len]);
        // Keep the unfinished message for the next read.
        buf.copy_within(msg_start..len, 0);
        len -= msg_start;
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    std::hint::black_box(&parse.counts);
    Baseline {
        events: parse.events,
        responses: parse.responses,
        secs,
    }
}

/// The borrowed-slice baseline's parsing state.
struct BorrowedParse {
    banner: bool,
    counts: HashMap<Vec<u8>, u64>,
    events: u64,
    responses: u64,
    /// (key, value) offsets of the current message's headers.
    headers: Vec<(u32, u32, u32, u32)>,
}

impl BorrowedParse {
    /// Parses the complete messages at the front of `data`; returns where the unfinished one starts. Not
    /// inlined, so that a profiler (`valgrind --tool=callgrind`) can tell the baseline's own work apart.
    #[inline(never)]
    fn read(&mut self, data: &[u8]) -> usize {
        let (mut pos, mut msg_start) = (0usize, 0usize);
        self.headers.clear();
        while let Some(nl) = memchr::memchr(b'\n', &data[pos..]) {
            let end = pos + nl;
            let line = &data[pos..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line_start = pos;
            pos = end + 1;
            if self.banner {
                self.banner = false;
                msg_start = pos;
                continue;
            }
            if line.is_empty() {
                let mut kind = None;
                for &(ks, ke, vs, ve) in &self.headers {
                    let key = &data[ks as usize..ke as usize];
                    if key.eq_ignore_ascii_case(b"Event") || key.eq_ignore_ascii_case(b"Response") {
                        kind = Some((key.len() == 5, &data[vs as usize..ve as usize]));
                        break;
                    }
                }
                match kind {
                    Some((true, name)) => {
                        self.events += 1;
                        match self.counts.get_mut(name) {
                            Some(c) => *c += 1,
                            None => {
                                self.counts.insert(name.to_vec(), 1);
                            }
                        }
                    }
                    Some((false, _)) => self.responses += 1,
                    None => {}
                }
                self.headers.clear();
                msg_start = pos;
                continue;
            }
            if let Some(colon) = memchr::memchr(b':', line) {
                let mut vs = line_start + colon + 1;
                let ve = line_start + line.len();
                if data.get(vs) == Some(&b' ') {
                    vs += 1;
                }
                self.headers.push((
                    line_start as u32,
                    (line_start + colon) as u32,
                    vs.min(ve) as u32,
                    ve as u32,
                ));
            }
        }
        msg_start
    }
}

/// The client's own parsing without its pipeline: on this one thread, reads of the client's size into a
/// `BytesMut`, `ami_proto::Parser` frames zero-copy `Message`s (slices of the read buffer) and the same
/// `StreamSummary` as `callwatch events --summary` counts them. No channel map, no hand-off between threads.
async fn proto_parse_over_tcp(addr: std::net::SocketAddr) -> Baseline {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: x\r\n\r\n")
        .await
        .unwrap();
    const READ: usize = 256 * 1024;
    let mut buf = bytes::BytesMut::with_capacity(READ);
    let mut parser = ami_proto::Parser::new(ami_proto::Limits::default());
    let mut summary = StreamSummary::new();
    let mut started = None;
    loop {
        if buf.capacity() - buf.len() < READ / 4 {
            buf.reserve(READ);
        }
        let n = s.read_buf(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        started.get_or_insert_with(Instant::now);
        while let Some(frame) = parser.next_frame(&mut buf) {
            summary.record(&frame);
        }
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Baseline {
        events: summary.events,
        responses: summary.responses,
        secs,
    }
}

/// What the consumer saw.
struct Tally {
    summary: StreamSummary,
    lagged: u64,
    /// Wall time and CPU time at login.
    started: Option<(Instant, f64)>,
}

/// Classifies and counts every message until the session ends, as `callwatch events --ami --summary` does.
async fn consume(mut events: ami::Subscription) -> Tally {
    let mut t = Tally {
        summary: StreamSummary::new(),
        lagged: 0,
        started: None,
    };
    let mut batch = Vec::with_capacity(1024);
    while events.recv_many(&mut batch, 1024).await > 0 {
        for e in batch.drain(..) {
            match e {
                Event::Connected { .. } => {
                    t.started = Some((Instant::now(), cpu_seconds().unwrap_or(0.0)))
                }
                // What `callwatch events --ami --summary` does with each message.
                Event::Message(m) => t.summary.record_message(&m),
                Event::Lagged(n) => t.lagged += n,
                Event::Disconnected { .. } => return t,
                _ => {}
            }
        }
    }
    t.summary.finish(0);
    t
}
