//! Each fault of the proxy, seen from a real client against a real upstream on loopback.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fault_proxy::{Direction, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(10);

/// An upstream that echoes everything and records what it received.
async fn echo() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// An upstream that sends `bytes` in one write on every connection, then waits for the client to close.
async fn sender(bytes: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let _ = s.write_all(&bytes).await;
                let mut sink = [0u8; 64];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    got
}

/// Reads until EOF or an error; returns the bytes and the error kind (None on a clean EOF).
async fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("EOF or error in time")
        {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.kind())),
        }
    }
}

#[tokio::test]
async fn forwards_both_ways_when_clean() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut s, b"Action: Ping\r\n\r\n").await,
        b"Action: Ping\r\n\r\n"
    );
    assert_eq!(&*seen.lock().unwrap(), b"Action: Ping\r\n\r\n");
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.resets), (1, 0));
    assert_eq!((stats.to_server, stats.to_client), (16, 16));
}

#[tokio::test]
async fn cut_resets_live_connections_and_refuses_new_ones_for_a_while() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    roundtrip(&mut s, b"hello").await;
    proxy.cut(Duration::from_millis(600));
    let (_, err) = read_to_end(&mut s).await;
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionReset),
        "a reset, not a clean close"
    );
    assert!(proxy.refusing());
    let refused = TcpStream::connect(proxy.local_addr()).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    // After the window, the same address accepts again and forwards.
    let start = Instant::now();
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(proxy.local_addr()).await {
            break s;
        }
        assert!(start.elapsed() < PATIENCE, "never accepted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "refused for the whole window"
    );
    assert_eq!(roundtrip(&mut s, b"again").await, b"again");
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn half_open_keeps_the_socket_and_forwards_nothing() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    roundtrip(&mut s, b"one").await;
    proxy.set_half_open(true);
    s.write_all(b"two").await.unwrap();
    let mut buf = [0u8; 16];
    let quiet = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "nothing comes back while half-open: {quiet:?}"
    );
    assert_eq!(&*seen.lock().unwrap(), b"one", "nothing reaches the server");
    proxy.set_half_open(false);
    let mut got = [0u8; 3];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got, b"two",
        "the same socket carries on once the fault clears"
    );
    assert_eq!(proxy.stats().resets, 0);
}

#[tokio::test]
async fn latency_delays_every_chunk_in_order() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(150));
    let start = Instant::now();
    s.write_all(b"a").await.unwrap();
    s.write_all(b"b").await.unwrap();
    s.write_all(b"c").await.unwrap();
    let mut got = [0u8; 3];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"abc");
    // Each way is delayed: the echo is at least two latencies late.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn bandwidth_limits_the_rate() {
    let payload = vec![b'x'; 8_000];
    let up = sender(payload.clone()).await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.set_bandwidth(Some(16_000));
    let start = Instant::now();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, payload);
    // 8,000 bytes at 16,000 B/s: half a second at least (less 1/20 s for the first slice).
    assert!(
        start.elapsed() >= Duration::from_millis(440),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn reset_after_k_bytes_cuts_a_frame_in_the_middle() {
    let frame = b"Event: Hangup\r\nUniqueid: 1700000000.1\r\nCause: 16\r\n\r\n".to_vec();
    let up = sender(frame.clone()).await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.reset_after(Direction::ToClient, 21);
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (got, err) = read_to_end(&mut s).await;
    assert_eq!(got, &frame[..21], "exactly k bytes, then nothing");
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    assert_eq!(proxy.stats().resets, 1);
    // One shot: the next connection gets the whole frame.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut all = vec![0u8; frame.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, frame);
}

#[tokio::test]
async fn one_byte_segments_split_every_write() {
    let payload: Vec<u8> = (0..64u8).collect();
    let up = sender(payload.clone()).await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.set_one_byte_segments(true);
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 4096];
    while got.len() < payload.len() {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, payload);
    // The upstream wrote once; the client saw it arrive in many pieces (a clean link delivers it in one).
    assert!(reads >= 16, "only {reads} reads");
    assert_eq!(proxy.stats().to_client, 64);
}

#[tokio::test]
async fn cut_on_a_pattern_lets_the_server_act_and_loses_its_answer() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    roundtrip(&mut s, b"BEGIN;").await;
    proxy.cut_on(b"COMMIT", Duration::from_millis(100));
    // The pattern split over two writes is still seen.
    s.write_all(b"UPDATE x; COM").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"MIT;").await.unwrap();
    let (_, err) = read_to_end(&mut s).await;
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    assert_eq!(
        &*seen.lock().unwrap(),
        b"BEGIN;UPDATE x; COMMIT;",
        "the server got it all"
    );
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn tap_records_when_the_client_sends_a_pattern() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.tap(b"Action: CoreShowChannels");
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    roundtrip(&mut s, b"Action: Ping\r\n\r\n").await;
    assert!(proxy.tap_hits(b"Action: CoreShowChannels").is_empty());
    let before = Instant::now();
    roundtrip(&mut s, b"Action: CoreShow").await;
    roundtrip(&mut s, b"Channels\r\n\r\nAction: CoreShowChannels\r\n\r\n").await;
    let hits = proxy.tap_hits(b"Action: CoreShowChannels");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|t| *t >= before));
}

#[tokio::test]
async fn cut_with_reset_accepts_new_connections_and_resets_them() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.cut_with(Duration::from_secs(3600), fault_proxy::Refusal::Reset);
    let mut s = TcpStream::connect(proxy.local_addr())
        .await
        .expect("the port stays open");
    let _ = s.write_all(b"hello").await;
    let (got, err) = read_to_end(&mut s).await;
    assert!(got.is_empty());
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
    proxy.accept_again();
    let start = Instant::now();
    loop {
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        if s.write_all(b"back").await.is_ok() {
            let mut got = [0u8; 4];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut got)).await
            {
                assert_eq!(&got, b"back");
                break;
            }
        }
        assert!(start.elapsed() < PATIENCE, "never forwarded again");
    }
}
