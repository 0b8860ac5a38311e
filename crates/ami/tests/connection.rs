//! The tokio driver over in-memory streams, on tokio's paused time: keepalive, cuts, lag, backoff, logins.
//!
//! A scripted peer plays Asterisk on the other half of a `tokio::io::duplex`. No test sleeps to
//! synchronise: time only moves when every task is idle (paused clock), and tests wait on state changes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ami::{
    BoxedTransport, ChannelConnector, ChannelMap, Client, Config, Connection, Error, Event, Secret,
    State, TokioClock,
};
use ami_proto::{Action, Frame, Limits, Message, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const SECRET: &str = "lab-secret";

fn config() -> Config {
    let mut cfg = Config::new("pbx.test", "watchdog", Secret::new(SECRET));
    cfg.server = "pbx".into();
    cfg.ping_interval = Duration::from_secs(10);
    cfg.ping_timeout = Duration::from_secs(5);
    cfg
}

/// The Asterisk side of one connection.
struct Peer {
    io: DuplexStream,
    parser: Parser,
    buf: BytesMut,
}

impl Peer {
    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn send_msg(&mut self, pairs: &[(&str, &str)]) {
        let bytes = Message::from_pairs(pairs.iter().copied()).to_bytes();
        self.send(&bytes).await;
    }

    /// The next action from the client; `None` at EOF.
    async fn action(&mut self) -> Option<Message> {
        loop {
            if let Some(Ok(Frame::Message(m))) = self.parser.next_frame(&mut self.buf) {
                return Some(m);
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next action that is not a `Ping` (pings are answered).
    async fn action_no_ping(&mut self) -> Option<Message> {
        loop {
            let a = self.action().await?;
            if a.get_str("Action") == Some("Ping") {
                let id = a.action_id().unwrap_or("").to_string();
                self.send_msg(&[("Response", "Success"), ("ActionID", &id), ("Ping", "Pong")])
                    .await;
                continue;
            }
            return Some(a);
        }
    }

    /// Banner, Login accepted, FullyBooted, then a `CoreShowChannels` listing of `channels`.
    async fn login_and_list(&mut self, channels: &[&str]) {
        self.send(b"Asterisk Call Manager/11.0.0\r\n").await;
        let login = self.action().await.unwrap();
        assert_eq!(login.get_str("Action"), Some("Login"));
        let id = login.action_id().unwrap().to_string();
        self.send_msg(&[
            ("Response", "Success"),
            ("ActionID", &id),
            ("Message", "Authentication accepted"),
        ])
        .await;
        self.send_msg(&[
            ("Event", "FullyBooted"),
            ("Uptime", "1000"),
            ("LastReload", "1000"),
        ])
        .await;
        self.list(channels).await;
    }

    async fn list(&mut self, channels: &[&str]) {
        let list = self.action_no_ping().await.unwrap();
        assert_eq!(list.get_str("Action"), Some("CoreShowChannels"));
        let id = list.action_id().unwrap().to_string();
        self.send_msg(&[
            ("Response", "Success"),
            ("ActionID", &id),
            ("EventList", "start"),
        ])
        .await;
        for uid in channels {
            self.send_msg(&[
                ("Event", "CoreShowChannel"),
                ("ActionID", &id),
                ("Channel", &format!("Local/2001@inbound-{uid};1")),
                ("ChannelStateDesc", "Up"),
                ("Uniqueid", uid),
                ("Linkedid", uid),
            ])
            .await;
        }
        let n = channels.len().to_string();
        self.send_msg(&[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", &id),
            ("EventList", "Complete"),
            ("ListItems", &n),
        ])
        .await;
    }
}

struct Harness {
    client: Client,
    map: ChannelMap,
    streams: mpsc::UnboundedSender<io::Result<BoxedTransport>>,
    state: watch::Receiver<State>,
}

impl Harness {
    fn start(cfg: Config) -> (Self, Connection) {
        let map = ChannelMap::default();
        let (connector, streams) = ChannelConnector::new();
        let (client, connection) =
            ami::connect_with(cfg, map.clone(), Arc::new(TokioClock::new()), connector);
        let state = client.state();
        (
            Self {
                client,
                map,
                streams,
                state,
            },
            connection,
        )
    }

    /// Queues a new connection and returns Asterisk's side of it.
    fn accept(&self) -> Peer {
        let (a, b) = tokio::io::duplex(1 << 20);
        self.streams.send(Ok(Box::new(a))).unwrap();
        Peer {
            io: b,
            parser: Parser::new(Limits::default()),
            buf: BytesMut::new(),
        }
        .without_banner()
    }

    async fn wait_for(&mut self, pred: impl Fn(&State) -> bool) -> State {
        self.state.wait_for(|s| pred(s)).await.unwrap().clone()
    }
}

impl Peer {
    fn without_banner(mut self) -> Self {
        // The peer parses the client's actions, which have no banner.
        self.parser = Parser::without_banner(Limits::default());
        self
    }
}

fn is_disconnected(s: &State) -> bool {
    matches!(s, State::Disconnected { .. })
}

#[tokio::test(start_paused = true)]
async fn half_open_link_is_detected_within_ping_interval_plus_deadline() {
    let (mut h, conn) = Harness::start(config());
    let task = tokio::spawn(conn.run());
    let mut peer = h.accept();
    peer.login_and_list(&["1.1"]).await;
    h.wait_for(|s| *s == State::Synced).await;
    let synced_at = Instant::now();
    // The server goes silent: it reads pings but never answers.
    let silent = tokio::spawn(async move {
        let mut n = 0;
        while peer.action().await.is_some() {
            n += 1;
        }
        n
    });
    let state = h.wait_for(is_disconnected).await;
    let took = synced_at.elapsed();
    assert!(
        took <= Duration::from_secs(15) + Duration::from_millis(10),
        "{took:?}"
    );
    assert!(took >= Duration::from_secs(15), "{took:?}");
    let State::Disconnected { reason, .. } = state else {
        unreachable!()
    };
    assert!(reason.contains("keepalive"), "{reason}");
    assert_eq!(silent.await.unwrap(), 1, "exactly one unanswered Ping");
    let snap = h.map.snapshot("pbx");
    assert!(!snap.synced && !snap.connected);
    assert!(
        snap.live.contains_key("1.1"),
        "a dead link never ends channels"
    );
    // It reconnects by itself.
    let mut again = h.accept();
    again.login_and_list(&["1.1"]).await;
    h.wait_for(|s| *s == State::Synced).await;
    assert_eq!(h.map.snapshot("pbx").epoch, 2);
    drop(h);
    task.await.unwrap().unwrap();
}

/// A session whose byte stream is cut at `cut`, then a clean reconnect.
async fn cut_then_reconnect(cut: usize) {
    let (mut h, conn) = Harness::start(config());
    let task = tokio::spawn(conn.run());
    let mut events = h.client.subscribe();
    let mut peer = h.accept();
    peer.login_and_list(&["1.1", "2.1"]).await;
    h.wait_for(|s| *s == State::Synced).await;
    // A status list the cut will interrupt, then some events; the stream is cut at `cut`.
    let client = h.client.clone();
    let list = tokio::spawn(async move { client.send_list(Action::new("Status").unwrap()).await });
    let status = peer.action_no_ping().await.unwrap();
    let id = status.action_id().unwrap().to_string();
    let mut wire = BytesMut::new();
    Message::from_pairs([
        ("Response", "Success"),
        ("ActionID", id.as_str()),
        ("EventList", "start"),
    ])
    .encode_into(&mut wire);
    Message::from_pairs([
        ("Event", "Status"),
        ("ActionID", id.as_str()),
        ("Uniqueid", "1.1"),
    ])
    .encode_into(&mut wire);
    Message::from_pairs([
        ("Event", "Hangup"),
        ("Channel", "Local/2001@inbound-2.1;1"),
        ("Uniqueid", "2.1"),
        ("Linkedid", "2.1"),
        ("Cause", "16"),
    ])
    .encode_into(&mut wire);
    Message::from_pairs([
        ("Event", "StatusComplete"),
        ("ActionID", id.as_str()),
        ("EventList", "Complete"),
        ("ListItems", "1"),
    ])
    .encode_into(&mut wire);
    let cut = cut.min(wire.len() - 1);
    peer.send(&wire[..cut]).await;
    drop(peer);
    h.wait_for(is_disconnected).await;
    let err = list.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ListIncomplete { .. } | Error::Disconnected { .. }
        ),
        "cut at {cut}: {err:?}"
    );
    assert!(err.is_retryable());
    let snap = h.map.snapshot("pbx");
    assert!(!snap.synced);
    // Reconnect: 1.1 is still up, 2.1 is gone (its Hangup may or may not have made it before the cut).
    let mut again = h.accept();
    again.login_and_list(&["1.1"]).await;
    h.wait_for(|s| *s == State::Synced).await;
    let snap = h.map.snapshot("pbx");
    assert_eq!(
        snap.live.keys().collect::<Vec<_>>(),
        ["1.1"],
        "cut at {cut}"
    );
    assert!(snap.ended.contains_key("2.1"));
    let mut saw_disconnected = false;
    while let Some(e) = events.try_recv() {
        saw_disconnected |= matches!(e, Event::Disconnected { .. });
    }
    assert!(saw_disconnected);
    drop(h);
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cut_at_any_offset_fails_the_list_and_reconnects() {
    // Every offset of the cut stream (it is about 300 bytes).
    for cut in (0..320).step_by(7) {
        cut_then_reconnect(cut).await;
    }
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_lags_without_blocking_the_reader_and_triggers_a_resync() {
    let mut cfg = config();
    cfg.event_buffer = 4;
    let (mut h, conn) = Harness::start(cfg);
    let task = tokio::spawn(conn.run());
    let mut slow = h.client.subscribe();
    let mut peer = h.accept();
    peer.login_and_list(&[]).await;
    h.wait_for(|s| *s == State::Synced).await;
    // 100 events the consumer does not read.
    for i in 0..100 {
        peer.send_msg(&[
            ("Event", "VarSet"),
            ("Variable", "X"),
            ("Value", &i.to_string()),
        ])
        .await;
    }
    // The reader went on: the map asks for a fresh listing.
    peer.list(&[]).await;
    h.wait_for(|s| *s == State::Synced).await;
    let lagged = h.client.stats().lagged;
    assert!(lagged >= 90, "{lagged}");
    let mut got_lagged = None;
    let mut messages = 0;
    while let Some(e) = slow.try_recv() {
        match e {
            Event::Message(_) => messages += 1,
            Event::Lagged(n) => got_lagged = Some(n),
            _ => {}
        }
    }
    // Session events (Connected, Resynced) are always delivered; AMI messages respect the bound.
    assert!(messages <= 4, "buffer bound respected: {messages}");
    // The lag is reported with the next delivery.
    peer.send_msg(&[("Event", "VarSet"), ("Variable", "Y"), ("Value", "1")])
        .await;
    let next = slow.recv().await.unwrap();
    let n = match (got_lagged, next) {
        (Some(n), _) => n,
        (None, Event::Lagged(n)) => n,
        (None, other) => panic!("expected Lagged, got {other:?}"),
    };
    assert!(n >= 90, "{n}");
    drop(h);
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn refused_connections_back_off_exponentially_with_jitter() {
    let mut cfg = config();
    cfg.backoff.initial = Duration::from_millis(500);
    cfg.backoff.max = Duration::from_secs(8);
    let (mut h, conn) = Harness::start(cfg);
    let task = tokio::spawn(conn.run());
    let mut attempts = Vec::new();
    for _ in 0..7 {
        h.streams
            .send(Err(io::Error::from(io::ErrorKind::ConnectionRefused)))
            .unwrap();
        let s = h.wait_for(is_disconnected).await;
        attempts.push(Instant::now());
        let State::Disconnected { reason, .. } = s else {
            unreachable!()
        };
        assert!(
            reason.contains("refused") || reason.contains("Refused"),
            "{reason}"
        );
        h.wait_for(|s| *s == State::Connecting).await;
    }
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mut nominal: f64 = 0.5;
    for gap in &gaps {
        assert!(
            *gap >= nominal * 0.8 - 0.01 && *gap <= nominal * 1.2 + 0.01,
            "{gaps:?}"
        );
        nominal = (nominal * 2.0).min(8.0);
    }
    assert_eq!(h.client.stats().failed_attempts, 7);
    // An action while down fails at once, it does not hang.
    let err = h
        .client
        .send_action(Action::new("Ping").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    drop(h);
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_login_is_an_auth_error_and_does_not_spin() {
    let mut cfg = config();
    cfg.secret = Secret::new("wrong-secret");
    let (mut h, conn) = Harness::start(cfg);
    let task = tokio::spawn(conn.run());
    for _ in 0..3 {
        let mut peer = h.accept();
        tokio::spawn(async move {
            peer.send(b"Asterisk Call Manager/11.0.0\r\n").await;
            let login = peer.action().await.unwrap();
            let id = login.action_id().unwrap().to_string();
            // Asterisk answers a bad login after about a second, then closes.
            tokio::time::sleep(Duration::from_secs(1)).await;
            peer.send_msg(&[
                ("Response", "Error"),
                ("ActionID", &id),
                ("Message", "Authentication failed"),
            ])
            .await;
        });
    }
    let start = Instant::now();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let State::Disconnected { reason, .. } = h.wait_for(is_disconnected).await else {
            unreachable!()
        };
        reasons.push(reason);
        h.wait_for(|s| *s == State::Connecting).await;
    }
    assert!(
        reasons.iter().all(|r| r.contains("authentication failed")),
        "{reasons:?}"
    );
    assert!(reasons.iter().all(|r| !r.contains("wrong-secret")));
    // 3 answers at 1 s each plus two backoff delays (0.5 s, 1 s, ±20%).
    assert!(
        start.elapsed() >= Duration::from_millis(4200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(h.client.stats().logins, 0);
    drop(h);
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn actions_correlate_and_foreign_action_ids_pass_through_as_events() {
    let (mut h, conn) = Harness::start(config());
    let task = tokio::spawn(conn.run());
    let mut events = h.client.subscribe();
    let mut peer = h.accept();
    peer.login_and_list(&[]).await;
    h.wait_for(|s| *s == State::Synced).await;
    let (c1, c2) = (h.client.clone(), h.client.clone());
    let a = tokio::spawn(async move { c1.send_action(Action::new("CoreStatus").unwrap()).await });
    let b = tokio::spawn(async move {
        c2.send_action(
            Action::new("Hangup")
                .unwrap()
                .header("Channel", "x")
                .unwrap(),
        )
        .await
    });
    let first = peer.action_no_ping().await.unwrap();
    let second = peer.action_no_ping().await.unwrap();
    assert_ne!(first.action_id(), second.action_id());
    // Another session's OriginateResponse, then the answers in reverse order.
    peer.send_msg(&[
        ("Event", "OriginateResponse"),
        ("ActionID", "orig-basic-0001"),
        ("Response", "Success"),
        ("Uniqueid", "1.9"),
    ])
    .await;
    for m in [&second, &first] {
        let id = m.action_id().unwrap().to_string();
        if m.get_str("Action") == Some("Hangup") {
            peer.send_msg(&[
                ("Response", "Error"),
                ("ActionID", &id),
                ("Message", "No such channel"),
            ])
            .await;
        } else {
            peer.send_msg(&[
                ("Response", "Success"),
                ("ActionID", &id),
                ("CoreCurrentCalls", "0"),
            ])
            .await;
        }
    }
    let ok = a.await.unwrap().unwrap();
    assert_eq!(ok.get_str("CoreCurrentCalls"), Some("0"));
    let err = b.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::ActionFailed { action, message } if action == "Hangup" && message == "No such channel")
    );
    let mut foreign = false;
    while let Some(e) = events.try_recv() {
        if let Event::Message(m) = e {
            foreign |= m.action_id() == Some("orig-basic-0001");
        }
    }
    assert!(foreign, "the foreign OriginateResponse reached subscribers");
    drop(h);
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_every_client_logs_off_and_stops() {
    let (mut h, conn) = Harness::start(config());
    let task = tokio::spawn(conn.run());
    let mut peer = h.accept();
    peer.login_and_list(&[]).await;
    h.wait_for(|s| *s == State::Synced).await;
    drop(h);
    let logoff = peer.action_no_ping().await.unwrap();

    assert_eq!(logoff.get_str("Action"), Some("Logoff"));
    let id = logoff.action_id().unwrap().to_string();
    peer.send_msg(&[("Response", "Goodbye"), ("ActionID", &id)])
        .await;
    task.await.unwrap().unwrap();
}

/// Threads named `ami-reader` in this process. Only this test runs a multi-thread runtime in this binary,
/// so the count is this test's own.
fn reader_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == "ami-reader")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits (real time, bounded) until `reader_threads()` is `n`.
async fn expect_reader_threads(n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reader_threads() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} ami-reader threads, expected {n}",
            reader_threads()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_each_session_reads_on_its_own_thread_which_ends_with_it() {
    let mut cfg = config();
    cfg.ping_interval = Duration::from_millis(300);
    cfg.ping_timeout = Duration::from_millis(300);
    let (mut h, conn) = Harness::start(cfg);
    let task = tokio::spawn(conn.run());
    let mut events = h.client.subscribe();
    let mut peer = h.accept();
    peer.login_and_list(&["1.1"]).await;
    h.wait_for(|s| *s == State::Synced).await;
    expect_reader_threads(1).await;
    // Events flow through the reader thread, in order.
    for i in 0..1000 {
        peer.send_msg(&[
            ("Event", "VarSet"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
            ("Value", &i.to_string()),
        ])
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        if let Some(Event::Message(m)) = events.recv().await {
            if m.event() == Some("VarSet") {
                seen.push(m.get_str("Value").unwrap().parse::<u32>().unwrap());
            }
        }
    }
    assert!(seen.iter().copied().eq(0..1000), "order kept");
    // The server goes silent: the keepalive ends the session, and its reader thread (blocked in a read
    // that will never complete) ends with it.
    let silent = tokio::spawn(async move { while peer.action().await.is_some() {} });
    let State::Disconnected { reason, .. } = h.wait_for(is_disconnected).await else {
        unreachable!()
    };
    assert!(reason.contains("keepalive"), "{reason}");
    expect_reader_threads(0).await;
    // Forced reconnects: one reader per live session, never more.
    for _ in 0..3 {
        let mut next = h.accept();
        next.login_and_list(&["1.1"]).await;
        h.wait_for(|s| *s == State::Synced).await;
        expect_reader_threads(1).await;
        h.client.force_reconnect();
        // Disconnected, or already connecting again.
        h.wait_for(|s| *s != State::Synced).await;
        expect_reader_threads(0).await;
        drop(next);
    }
    drop(events);
    drop(h);
    task.await.unwrap().unwrap();
    silent.abort();
    expect_reader_threads(0).await;
}
