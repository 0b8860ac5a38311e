//! `callwatch simulate`: the fake Asterisk as a command, driven over real TCP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ami_proto::{Action, Frame, Limits, Message, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Starts `callwatch simulate ARGS` on a free port; returns the child, its output lines and the address.
async fn simulate(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("simulate")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("simulate printed nothing");
    let addr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .parse()
        .unwrap();
    (child, lines, addr)
}

async fn send(stream: &mut TcpStream, name: &str, id: Option<&str>, headers: &[(&str, &str)]) {
    let mut a = Action::new(name).unwrap();
    if let Some(id) = id {
        a = a.with_action_id(id).unwrap();
    }
    for (k, v) in headers {
        a = a.header(k, v).unwrap();
    }
    stream.write_all(&a.to_bytes()).await.unwrap();
}

/// Connects, logs in (ActionID `L`) and asks for the channels (ActionID `C`).
async fn login_and_list(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(
        &mut s,
        "Login",
        Some("L"),
        &[("Username", "watchdog"), ("Secret", "lab-secret")],
    )
    .await;
    send(&mut s, "CoreShowChannels", Some("C"), &[]).await;
    s
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    out
}

fn messages(bytes: &[u8]) -> Vec<Message> {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::from(bytes);
    std::iter::from_fn(|| p.next_frame(&mut buf))
        .filter_map(|f| match f.unwrap() {
            Frame::Message(m) => Some(m),
            Frame::Banner(_) => None,
        })
        .collect()
}

async fn rest(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    let mut out = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn serves_a_recording_with_the_clients_action_ids_then_exits() {
    let prefix = fixture("ami/disconnect-gap.subject-2");
    let (mut child, mut lines, addr) = simulate(&["--max-speed", prefix.to_str().unwrap()]).await;
    let mut s = login_and_list(addr).await;
    send(&mut s, "Status", Some("S"), &[]).await;
    send(&mut s, "Logoff", Some("O"), &[]).await;
    let got = read_to_end(&mut s).await;

    let recorded = std::fs::read(prefix.with_extension("subject-2.ami")).unwrap();
    let mut expected = String::from_utf8(recorded).unwrap();
    for (from, to) in [
        ("subject-2-login-1", "L"),
        ("subject-2-coreshowchannels-2", "C"),
        ("subject-2-status-3", "S"),
        ("subject-2-logoff-4", "O"),
    ] {
        expected = expected.replace(
            &format!("ActionID: {from}\r\n"),
            &format!("ActionID: {to}\r\n"),
        );
    }
    assert!(
        got == expected.as_bytes(),
        "stream differs from the recording"
    );

    let status = child.wait().await.unwrap();
    assert!(status.success());
    let out = rest(&mut lines).await;
    assert!(
        out.contains("serving session 0 (disconnect-gap.subject-2)"),
        "{out}"
    );
    assert!(
        out.contains("client sent CoreShowChannels, paired with recorded action #1"),
        "{out}"
    );
    assert!(out.contains("(the recording ends here)"), "{out}");
    assert!(!out.contains("lab-secret"));
}

#[tokio::test]
async fn a_scenario_argument_serves_all_its_subject_sessions() {
    let scenario = fixture("ami/disconnect-gap");
    let (mut child, mut lines, _addr) =
        simulate(&["--speed", "100", scenario.to_str().unwrap()]).await;
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "2 session(s) to serve"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_json_flow_waits_for_login_then_plays_its_events() {
    let flow = fixture("peer/cacofonisk/simple/ab_success_a_hangup.json");
    let n = ami_testkit::flow::load_events(&flow).unwrap().len();
    let (mut child, _lines, addr) = simulate(&["--max-speed", flow.to_str().unwrap()]).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(
        &mut s,
        "Login",
        Some("L"),
        &[("Username", "u"), ("Secret", "x")],
    )
    .await;
    // Read until every event has arrived, then log off.
    let mut buf = Vec::new();
    loop {
        let mut tmp = [0u8; 8192];
        let k = s.read(&mut tmp).await.unwrap();
        assert!(k > 0, "closed early");
        buf.extend_from_slice(&tmp[..k]);
        if messages(&buf).len() == n + 1 {
            break;
        }
    }
    send(&mut s, "Logoff", Some("O"), &[]).await;
    buf.extend(read_to_end(&mut s).await);
    let msgs = messages(&buf);
    assert_eq!(msgs[0].get_str("Message"), Some("Authentication accepted"));
    assert_eq!(
        msgs[1..=n].iter().filter(|m| m.event().is_some()).count(),
        n
    );
    assert_eq!(msgs[n + 1].response(), Some("Goodbye"));
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn scripted_mode_answers_listings_from_the_pbx() {
    let flow = fixture("peer/cacofonisk/xfer_attended/xfer_abacbc.json");
    let (mut child, _lines, addr) =
        simulate(&["--scripted", "--speed", "1000", flow.to_str().unwrap()]).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(
        &mut s,
        "Login",
        Some("L"),
        &[("Username", "u"), ("Secret", "x")],
    )
    .await;
    send(&mut s, "CoreShowChannels", Some("C"), &[]).await;
    let mut buf = Vec::new();
    let complete = loop {
        let mut tmp = [0u8; 8192];
        let k = tokio::time::timeout(Duration::from_secs(30), s.read(&mut tmp))
            .await
            .unwrap()
            .unwrap();
        assert!(k > 0, "closed early");
        buf.extend_from_slice(&tmp[..k]);
        if let Some(m) = messages(&buf)
            .into_iter()
            .find(|m| m.event() == Some("CoreShowChannelsComplete"))
        {
            break m;
        }
    };
    assert_eq!(complete.action_id(), Some("C"));
    let items = messages(&buf)
        .iter()
        .filter(|m| m.event() == Some("CoreShowChannel"))
        .count();
    assert_eq!(complete.get_str("ListItems").unwrap(), items.to_string());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_missing_session_is_an_error_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "/nonexistent/nothing.subject-1",
        ])
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/nothing.subject-1"), "{err}");
}

#[tokio::test]
async fn unsent_grace_goes_on_without_actions_the_client_never_sends() {
    let prefix = fixture("ami/disconnect-gap.subject-2");
    let (mut child, mut lines, addr) = simulate(&[
        "--max-speed",
        "--unsent-grace",
        "100ms",
        prefix.to_str().unwrap(),
    ])
    .await;
    // A client that logs in and lists, but never sends the recording's `Status` nor its `Logoff`.
    let mut s = login_and_list(addr).await;
    // Without the grace the stream would wait for `Status` forever.
    let got = tokio::time::timeout(Duration::from_secs(60), read_to_end(&mut s))
        .await
        .expect("the stream waited for an action the client never sent");
    let got = messages(&got);

    let recorded = std::fs::read(prefix.with_extension("subject-2.ami")).unwrap();
    let expected: Vec<Message> = messages(&recorded)
        .into_iter()
        .filter(|m| {
            !matches!(
                m.action_id(),
                Some("subject-2-status-3") | Some("subject-2-logoff-4")
            )
        })
        .collect();
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got.len(), expected.len(), "every other recorded message");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.event(), e.event());
        assert_eq!(g.response(), e.response());
        assert_eq!(g.get("Uniqueid"), e.get("Uniqueid"));
        match e.action_id() {
            Some("subject-2-login-1") => assert_eq!(g.action_id(), Some("L")),
            Some("subject-2-coreshowchannels-2") => assert_eq!(g.action_id(), Some("C")),
            other => assert_eq!(g.action_id(), other),
        }
    }
    assert!(child.wait().await.unwrap().success());
    let out = rest(&mut lines).await;
    assert!(out.contains("(the recording ends here)"), "{out}");
}

#[tokio::test]
async fn unsent_grace_and_skip_unsent_are_exclusive() {
    let out = crate::common::callwatch(&["simulate", "--unsent-grace", "1s", "--skip-unsent", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
