//! `callwatch events --ami URL`: the live AMI client end to end, against in-process fake servers.

use ami_proto::synthetic::Totals;
use ami_testkit::{LoadConfig, LoadServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::callwatch;

async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || callwatch(&args))
        .await
        .unwrap()
}

/// `events --ami --summary --json` against a load server generating as it goes, or serving a stream it
/// generated before listening.
async fn live_summary(pregenerate: bool) {
    let calls = 200;
    let mut cfg = LoadConfig::new(calls);
    cfg.pregenerate = pregenerate;
    let server = LoadServer::start(cfg).await.unwrap();
    let url = format!(
        "ami://watchdog:lab-secret@{}?server=load",
        server.local_addr()
    );
    let out = run(vec![
        "events".into(),
        "--ami".into(),
        url,
        "--summary".into(),
        "--json".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = Totals::expected(calls as u64);
    assert_eq!(summary["events"], expected.events, "{summary}");
    assert_eq!(summary["event_counts"]["Hangup"], 4 * calls as u64);
    assert_eq!(
        summary["banner"], "Asterisk Call Manager/11.0.0",
        "{summary}"
    );
    assert!(!stderr.contains("lab-secret"), "{stderr}");
    assert!(!stderr.contains("dropped"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_summary_counts_every_generated_event() {
    live_summary(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_summary_counts_every_pregenerated_event() {
    live_summary(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_refused_login_is_an_error_without_the_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf).to_string();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("ActionID: "))
            .unwrap()
            .to_string();
        let reply =
            format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n");
        s.write_all(reply.as_bytes()).await.unwrap();
        text
    });
    let url = format!("ami://watchdog:not-the-secret@{addr}");
    let out = run(vec![
        "--log".into(),
        "debug".into(),
        "events".into(),
        "--ami".into(),
        url,
    ])
    .await;
    let login = server.await.unwrap();
    assert!(
        login.contains("Secret: not-the-secret"),
        "the server got the secret"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not-the-secret"));
}
