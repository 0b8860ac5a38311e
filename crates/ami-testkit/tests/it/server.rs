//! FakeAmi over real TCP.

use std::time::Duration;

use ami_testkit::server::{ClosedBy, Refused};
use ami_testkit::{FakeAmi, FakeAmiConfig, ServerEvent, Session};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::client::{fixture, Client};

fn load(name: &str) -> Session {
    Session::load(&fixture("ami").join(name)).unwrap()
}

/// `bytes` with each `ActionID: from` line's value replaced by `to`.
fn replace_ids(bytes: &[u8], map: &[(&str, &str)]) -> Vec<u8> {
    let mut text = bytes.to_vec();
    for (from, to) in map {
        let from = format!("ActionID: {from}\r\n");
        let to = format!("ActionID: {to}\r\n");
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(from.as_bytes()) {
                out.extend_from_slice(to.as_bytes());
                i += from.len();
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        text = out;
    }
    text
}

async fn next_closed(events: &mut broadcast::Receiver<ServerEvent>) -> (usize, ClosedBy) {
    loop {
        if let ServerEvent::Closed { offset, by, .. } = events.recv().await.unwrap() {
            return (offset, by);
        }
    }
}

async fn next_refused(events: &mut broadcast::Receiver<ServerEvent>) -> Refused {
    loop {
        if let ServerEvent::Refused { reason, .. } = events.recv().await.unwrap() {
            return reason;
        }
    }
}

#[tokio::test]
async fn every_recorded_byte_arrives_with_the_clients_action_ids() {
    let s = load("disconnect-gap.subject-2");
    let expected = replace_ids(
        s.bytes(),
        &[
            ("subject-2-login-1", "L"),
            ("subject-2-coreshowchannels-2", "C"),
            ("subject-2-status-3", "S"),
            ("subject-2-logoff-4", "O"),
        ],
    );
    let server = FakeAmi::start(FakeAmiConfig::new([s]).max_speed())
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.send(
        "Login",
        Some("L"),
        &[("Username", "watchdog"), ("Secret", "x")],
    )
    .await;
    c.send("CoreShowChannels", Some("C"), &[]).await;
    c.send("Status", Some("S"), &[]).await;
    c.send("Logoff", Some("O"), &[]).await;
    c.read_to_end().await;
    assert_eq!(c.received.len(), expected.len());
    assert!(c.received == expected, "stream differs from the recording");
}

#[tokio::test]
async fn responses_wait_for_the_client_and_extra_actions_are_answered() {
    let s = load("basic.subject-1");
    let server = FakeAmi::start(FakeAmiConfig::new([s]).max_speed())
        .await
        .unwrap();
    let mut events = server.subscribe();
    let mut c = Client::connect(server.local_addr()).await;
    // Nothing but the banner before the Login.
    assert!(c.fill().await);
    assert_eq!(&c.received[..], b"Asterisk Call Manager/11.0.0\r\n");
    c.send(
        "Login",
        Some("mine-1"),
        &[("Username", "watchdog"), ("Secret", "x")],
    )
    .await;
    let login = c.until(|m| m.response().is_some()).await;
    assert_eq!(login.action_id(), Some("mine-1"));
    assert_eq!(login.get_str("Message"), Some("Authentication accepted"));

    c.send("Ping", Some("p-1"), &[]).await;
    let pong = c.until(|m| m.action_id() == Some("p-1")).await;
    assert_eq!(pong.get_str("Ping"), Some("Pong"));
    assert!(pong.get_str("Timestamp").unwrap().starts_with("1795522"));

    c.send("QueueStatus", Some("q-1"), &[]).await;
    let q = c.until(|m| m.action_id() == Some("q-1")).await;
    assert_eq!(q.response(), Some("Error"));
    assert_eq!(q.get_str("Message"), Some("Not in recording"));

    // The recorded Logoff response is held back until we log off.
    let mut waiting = false;
    while let Ok(e) = events.try_recv() {
        waiting |= matches!(e, ServerEvent::Waiting { ref action, .. } if action == "Logoff");
    }
    if !waiting {
        loop {
            if let ServerEvent::Waiting { action, .. } = events.recv().await.unwrap() {
                assert_eq!(action, "Logoff");
                break;
            }
        }
    }
    c.send("Logoff", Some("bye"), &[]).await;
    let bye = c.until(|m| m.response() == Some("Goodbye")).await;
    assert_eq!(bye.action_id(), Some("bye"));
    assert!(
        c.next_message().await.is_none(),
        "closed after the recording's end"
    );
    assert_eq!(next_closed(&mut events).await.1, ClosedBy::Recording);
}

#[tokio::test]
async fn cut_closes_after_exactly_that_many_bytes() {
    let s = load("basic.subject-1");
    let bytes = s.bytes().clone();
    let cut = 5000;
    let server = FakeAmi::start(FakeAmiConfig::new([s]).max_speed().cut_at(0, cut))
        .await
        .unwrap();
    let mut events = server.subscribe();
    let mut c = Client::connect(server.local_addr()).await;
    // The recorded ActionID, so that lengths match byte for byte.
    c.send(
        "Login",
        Some("subject-1-login-1"),
        &[("Username", "watchdog")],
    )
    .await;
    c.read_to_end().await;
    assert_eq!(&c.received[..], &bytes[..cut]);
    assert_eq!(next_closed(&mut events).await, (cut, ClosedBy::Cut));
}

#[tokio::test(start_paused = true)]
async fn silent_keeps_the_socket_open_and_ignores_pings_until_dropped() {
    let s = load("basic.subject-1");
    let bytes = s.bytes().clone();
    let at = 3000;
    let server = FakeAmi::start(FakeAmiConfig::new([s]).max_speed().silent_at(0, at))
        .await
        .unwrap();
    let mut events = server.subscribe();
    let mut c = Client::connect(server.local_addr()).await;
    c.send(
        "Login",
        Some("subject-1-login-1"),
        &[("Username", "watchdog")],
    )
    .await;
    while c.received.len() < at {
        assert!(c.fill().await);
    }
    assert_eq!(&c.received[..], &bytes[..at]);
    loop {
        if let ServerEvent::Silent { offset, .. } = events.recv().await.unwrap() {
            assert_eq!(offset, at);
            break;
        }
    }
    c.send("Ping", Some("p"), &[]).await;
    // A minute of (virtual) time: no byte, no close.
    let quiet = tokio::time::timeout(Duration::from_secs(60), c.fill()).await;
    assert!(
        quiet.is_err(),
        "a silent connection sent something or closed"
    );
    server.drop_connection();
    assert!(!c.fill().await, "dropped connection must reach EOF");
    assert_eq!(c.received.len(), at);
    assert_eq!(next_closed(&mut events).await.1, ClosedBy::Dropped);
}

#[tokio::test(start_paused = true)]
async fn recorded_pace_is_kept_and_scaled() {
    let s = load("basic.subject-1");
    let t0 = s.connected_at();
    let chunks = s.chunks().to_vec();
    let speed = 4.0;
    let server = FakeAmi::start(FakeAmiConfig::new([s.clone()]).speed(speed))
        .await
        .unwrap();
    let start = Instant::now();
    let mut c = Client::connect(server.local_addr()).await;
    c.send(
        "Login",
        Some("subject-1-login-1"),
        &[("Username", "watchdog")],
    )
    .await;
    c.send("Logoff", Some("subject-1-logoff-2"), &[]).await;
    let mut arrivals = Vec::new();
    while c.fill().await {
        arrivals.push((c.received.len(), start.elapsed()));
    }
    assert_eq!(&c.received[..], &s.bytes()[..]);
    // No byte before its time: chunk k's last byte arrives no earlier than (t_k - t0) / speed.
    for ch in &chunks {
        let due = (ch.at - t0).to_std().unwrap().div_f64(speed);
        let (_, when) = arrivals.iter().find(|(n, _)| *n >= ch.end()).unwrap();
        assert!(
            *when >= due,
            "chunk at {} arrived at {when:?}, due {due:?}",
            ch.offset
        );
        assert!(
            *when <= due + Duration::from_millis(50),
            "chunk at {} late: {when:?} vs {due:?}",
            ch.offset
        );
    }
    let (closed_at, _) = s.closed().unwrap();
    let total = (closed_at - t0).to_std().unwrap().div_f64(speed);
    let (_, last) = arrivals.last().unwrap();
    // Tokio's timers have millisecond resolution.
    assert!(
        *last <= total + Duration::from_millis(1),
        "{last:?} > {total:?}"
    );
    assert!(start.elapsed() >= total);
}

#[tokio::test(start_paused = true)]
async fn a_recorded_gap_between_sessions_refuses_connections() {
    let sessions = Session::load_scenario(&fixture("ami"), "disconnect-gap").unwrap();
    assert_eq!(sessions.len(), 2);
    let (closed1, _) = sessions[0].closed().unwrap();
    let gap = (sessions[1].connected_at() - closed1).to_std().unwrap();
    let speed = 2.0;
    let server = FakeAmi::start(FakeAmiConfig::new(sessions).speed(speed))
        .await
        .unwrap();
    let mut events = server.subscribe();

    let mut c = Client::connect(server.local_addr()).await;
    c.send("Login", Some("a"), &[("Username", "watchdog")])
        .await;
    c.read_to_end().await;
    // A client closes at EOF; the server, which waits for that (up to its grace), reports the close then.
    drop(c);
    assert_eq!(next_closed(&mut events).await.1, ClosedBy::Recording);
    let closed = Instant::now();

    // Inside the gap: accepted and closed at once, no banner.
    let mut early = Client::connect(server.local_addr()).await;
    assert!(!early.fill().await);
    match next_refused(&mut events).await {
        Refused::Gap { remaining } => {
            let expected = gap.div_f64(speed);
            assert!(
                remaining <= expected && remaining + Duration::from_millis(50) >= expected,
                "{remaining:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    tokio::time::sleep_until(closed + gap.div_f64(speed)).await;
    let mut c2 = Client::connect(server.local_addr()).await;
    assert!(c2.fill().await);
    assert!(c2.received.starts_with(b"Asterisk Call Manager/11.0.0\r\n"));
    c2.send("Login", Some("b"), &[("Username", "watchdog")])
        .await;
    let login = c2.until(|m| m.response().is_some()).await;
    assert_eq!(login.action_id(), Some("b"));
    drop(c2);
    assert_eq!(next_closed(&mut events).await.1, ClosedBy::Client);

    // After the last session every connection is closed at once.
    let mut late = Client::connect(server.local_addr()).await;
    assert!(!late.fill().await);
    assert_eq!(next_refused(&mut events).await, Refused::NoMoreSessions);
}

#[tokio::test]
async fn drop_connection_moves_on_restart_and_looping_start_over() {
    let a = load("login-md5.subject-1");
    let b = load("basic.subject-1");
    let server = FakeAmi::start(FakeAmiConfig::new([a, b]).max_speed().looping(true))
        .await
        .unwrap();
    let mut events = server.subscribe();
    let session_of = |e: ServerEvent| match e {
        ServerEvent::Accepted { name, .. } => Some(name),
        _ => None,
    };
    let mut accepted = Vec::new();
    for step in 0..4 {
        let mut c = Client::connect(server.local_addr()).await;
        assert!(c.fill().await);
        loop {
            if let Some(name) = session_of(events.recv().await.unwrap()) {
                accepted.push(name);
                break;
            }
        }
        if step == 1 {
            server.restart();
        } else {
            server.drop_connection();
        }
        c.read_to_end().await;
        assert_eq!(next_closed(&mut events).await.1, ClosedBy::Dropped);
    }
    assert_eq!(
        accepted,
        [
            "login-md5.subject-1",
            "basic.subject-1",
            "login-md5.subject-1",
            "basic.subject-1"
        ]
    );
    // Looping: after the last session, the first again.
    let mut c = Client::connect(server.local_addr()).await;
    assert!(c.fill().await);
    loop {
        if let Some(name) = session_of(events.recv().await.unwrap()) {
            assert_eq!(name, "login-md5.subject-1");
            break;
        }
    }
}

#[tokio::test]
async fn event_list_waits_for_login_then_streams_and_stays_open() {
    let s = Session::load(&fixture("peer/cacofonisk/simple/ab_success_a_hangup.json")).unwrap();
    let n_events = s.frames().len() - 1;
    let server = FakeAmi::start(FakeAmiConfig::new([s]).speed(1000.0))
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    assert!(c.fill().await);
    assert_eq!(&c.received[..], b"Asterisk Call Manager/11.0.0\r\n");
    c.send("Login", Some("l"), &[("Username", "x"), ("Secret", "y")])
        .await;
    let ok = c.next_message().await.unwrap();
    assert_eq!(ok.get_str("Message"), Some("Authentication accepted"));
    for _ in 0..n_events {
        assert!(c.next_message().await.unwrap().event().is_some());
    }
    c.send("Ping", Some("p"), &[]).await;
    let pong = c.next_message().await.unwrap();
    assert_eq!(pong.action_id(), Some("p"));
    c.send("Logoff", None, &[]).await;
    assert_eq!(c.next_message().await.unwrap().response(), Some("Goodbye"));
    assert!(c.next_message().await.is_none());
}

/// A client that gives up on a silent (half-open) connection and reconnects: the next session is served
/// once the recorded time between the two connects has passed, counted from the first accept.
#[tokio::test(start_paused = true)]
async fn after_a_half_open_link_the_next_session_follows_the_recorded_connect_times() {
    let sessions = Session::load_scenario(&fixture("ami"), "disconnect-gap").unwrap();
    let between = (sessions[1].connected_at() - sessions[0].connected_at())
        .to_std()
        .unwrap();
    let speed = 10.0;
    let server = FakeAmi::start(
        FakeAmiConfig::new(sessions)
            .speed(speed)
            .silent_at(0, 10_000),
    )
    .await
    .unwrap();
    let mut events = server.subscribe();
    let accepted = Instant::now();
    let mut c = Client::connect(server.local_addr()).await;
    c.send("Login", Some("a"), &[("Username", "watchdog")])
        .await;
    loop {
        if let ServerEvent::Silent { offset, .. } = events.recv().await.unwrap() {
            assert_eq!(offset, 10_000);
            break;
        }
    }
    // The old socket stays open; a new connection too early is refused.
    let mut early = Client::connect(server.local_addr()).await;
    assert!(!early.fill().await);
    assert!(matches!(
        next_refused(&mut events).await,
        Refused::Gap { .. }
    ));
    tokio::time::sleep_until(accepted + between.div_f64(speed)).await;
    let mut c2 = Client::connect(server.local_addr()).await;
    assert!(c2.fill().await);
    loop {
        if let ServerEvent::Accepted { session, .. } = events.recv().await.unwrap() {
            assert_eq!(session, 1);
            break;
        }
    }
    // The silent connection is still open: what it got before going silent, then nothing, no EOF.
    while let Ok(more) = tokio::time::timeout(Duration::from_secs(5), c.fill()).await {
        assert!(more, "the silent connection was closed");
    }
    assert!(c.received.len() <= 10_000);
}

/// Every `Event:` message of `bytes`, by name, in order (a cut last message is not one).
fn event_names(bytes: &[u8]) -> Vec<String> {
    let mut parser = ami_proto::Parser::new(ami_proto::Limits::default());
    let mut buf = bytes::BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = parser.next_frame(&mut buf) {
        if let Ok(ami_proto::Frame::Message(m)) = frame {
            if let Some(name) = m.event() {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// A session that ends (a recorded cut, or a logoff) while the client still writes — a keepalive `Ping`
/// after the server's last byte — must still deliver its tail: the server shuts down its write side and
/// reads until the client closes, instead of closing over unread input (which resets the connection and
/// makes the client's kernel discard what it had not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_every_disconnect_gap_session_arrives_at_max_speed() {
    let names = [
        "disconnect-gap.observer",
        "disconnect-gap.subject-1",
        "disconnect-gap.subject-2",
    ];
    let sessions: Vec<Session> = names.iter().map(|n| load(n)).collect();
    let expected: Vec<Vec<String>> = sessions.iter().map(|s| event_names(s.bytes())).collect();
    let recorded: Vec<usize> = sessions.iter().map(|s| s.bytes().len()).collect();
    let sent: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(fixture("ami").join(format!("{n}.sent"))).unwrap())
        .collect();
    let server = FakeAmi::start(FakeAmiConfig::new(sessions).max_speed())
        .await
        .unwrap();
    for (i, name) in names.iter().enumerate() {
        let mut c = Client::connect(server.local_addr()).await;
        // The recorded client's actions (so every recorded response is released), then a reader that is
        // slower than the server and sends a keepalive Ping every 64 KiB it reads, as a live client does.
        c.stream.write_all(&sent[i]).await.unwrap();
        let mut since_ping = 0usize;
        let mut pings = 0u32;
        loop {
            let before = c.received.len();
            if !c.fill().await {
                break;
            }
            since_ping += c.received.len() - before;
            if since_ping >= 64 * 1024 {
                since_ping = 0;
                pings += 1;
                // A write may fail once the server has reset the connection; the reads then say so.
                let ping = format!("Action: Ping\r\nActionID: keepalive-{pings}\r\n\r\n");
                let _ = c.stream.write_all(ping.as_bytes()).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let got = event_names(&c.received);
        assert_eq!(
            got.len(),
            expected[i].len(),
            "{name}: {} of {} recorded events arrived ({} bytes received, {} recorded)",
            got.len(),
            expected[i].len(),
            c.received.len(),
            recorded[i]
        );
        assert!(
            got == expected[i],
            "{name}: events differ from the recording"
        );
    }
}
