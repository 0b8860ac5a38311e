//! PbxServer and LoadServer over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use ami_proto::synthetic::Totals;
use ami_proto::Message;
use ami_testkit::flow::load_events;
use ami_testkit::{LoadConfig, LoadServer, PbxServer, ScriptedPbx};
use chrono::DateTime;

use crate::client::{fixture, Client};
use crate::pbx::oracle;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Sends CoreShowChannels and reads up to its Complete; returns (events seen before the answer, items).
async fn list(c: &mut Client, id: &str, seen: &mut Vec<Message>) -> Vec<Message> {
    c.send("CoreShowChannels", Some(id), &[]).await;
    let mut items = Vec::new();
    loop {
        let m = c.next_message().await.unwrap();
        if m.action_id() == Some(id) {
            match m.event() {
                Some("CoreShowChannel") => items.push(m),
                Some("CoreShowChannelsComplete") => {
                    assert_eq!(m.get_str("ListItems").unwrap(), items.len().to_string());
                    return items;
                }
                _ => assert_eq!(m.response(), Some("Success")),
            }
        } else if m.event().is_some() {
            seen.push(m);
        }
    }
}

#[tokio::test]
async fn scripted_calls_reach_logged_in_clients_and_listings_agree() {
    let pbx = ScriptedPbx::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap())
        .with_credentials("w", "s3cret");
    let server = PbxServer::start(pbx, any_addr()).await.unwrap();

    // Not logged in: no events, and actions are refused.
    let mut anon = Client::connect(server.local_addr()).await;
    let call = server.with(|p| p.start_call("2001", "2002"));
    anon.send("CoreShowChannels", Some("x"), &[]).await;
    let denied = anon.next_message().await.unwrap();
    assert_eq!(denied.get_str("Message"), Some("Permission denied"));

    let mut c = Client::connect(server.local_addr()).await;
    c.send(
        "Login",
        Some("L"),
        &[("Username", "w"), ("Secret", "s3cret")],
    )
    .await;
    let ok = c.next_message().await.unwrap();
    assert_eq!(ok.get_str("Message"), Some("Authentication accepted"));
    assert_eq!(c.next_message().await.unwrap().event(), Some("FullyBooted"));

    let mut seen = Vec::new();
    let items = list(&mut c, "1", &mut seen).await;
    assert_eq!(items.len(), 2, "the ringing call started before the login");
    assert!(items
        .iter()
        .all(|m| m.get_str("Linkedid") == items[0].get_str("Uniqueid")));

    server.with(|p| p.answer(call)).unwrap();
    let second = server.with(|p| p.start_call("2002", "2003"));
    server.with(|p| p.answer(second)).unwrap();
    server.with(|p| p.transfer(call, second)).unwrap();
    let items = list(&mut c, "2", &mut seen).await;
    assert!(seen.iter().any(|m| m.event() == Some("AttendedTransfer")));
    assert_eq!(items.len(), 2);
    let linked: Vec<_> = items
        .iter()
        .map(|m| m.get_str("Linkedid").unwrap())
        .collect();
    assert_eq!(linked[0], linked[1]);
    server.with(|p| p.hangup(call, 16)).unwrap();
    let items = list(&mut c, "3", &mut seen).await;
    assert!(items.is_empty());
    assert_eq!(
        seen.iter().filter(|m| m.event() == Some("Hangup")).count(),
        4
    );

    server.drop_connection();
    c.read_to_end().await;
    anon.read_to_end().await;
}

/// A client that lists channels while a flow plays must always get the truth of the events it has seen.
#[tokio::test(start_paused = true)]
async fn listing_during_autoplay_matches_the_events_received() {
    let events = load_events(&fixture("peer/cacofonisk/xfer_attended/xfer_abacbc.json")).unwrap();
    let n = events.len();
    let pbx = ScriptedPbx::new(DateTime::UNIX_EPOCH).with_flow(events, Duration::from_millis(100));
    let server = PbxServer::start(pbx, any_addr()).await.unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.send("Login", Some("L"), &[("Username", "u"), ("Secret", "x")])
        .await;
    c.until(|m| m.event() == Some("FullyBooted")).await;
    let player = server.autoplay(Duration::from_millis(100));
    let mut seen = Vec::new();
    let mut listings = 0;
    while seen.len() < n {
        let items = list(&mut c, &format!("l{listings}"), &mut seen).await;
        listings += 1;
        let got: Vec<(String, String)> = {
            let mut v: Vec<_> = items
                .iter()
                .map(|m| {
                    (
                        m.get_str("Uniqueid").unwrap().to_owned(),
                        m.get_str("Linkedid").unwrap().to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let expected: Vec<(String, String)> = oracle(&seen)
            .into_iter()
            .map(|(u, r)| (u, r.linkedid))
            .collect();
        assert_eq!(got, expected, "after {} events", seen.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(listings > 10);
    player.await.unwrap();
}

#[tokio::test]
async fn load_server_streams_every_generated_event() {
    let calls = 200;
    let mut config = LoadConfig::new(calls);
    config.close_at_end = false;
    let server = LoadServer::start(config).await.unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.send("Login", Some("me"), &[("Username", "u"), ("Secret", "x")])
        .await;
    let login = c.next_message().await.unwrap();
    assert_eq!(login.action_id(), Some("me"));
    assert_eq!(login.get_str("Message"), Some("Authentication accepted"));
    let expected = Totals::expected(calls as u64).events;
    let (mut events, mut responses) = (0u64, 0u64);
    while events < expected {
        let m = c.next_message().await.unwrap();
        if m.event().is_some() {
            events += 1;
        } else {
            // The generated calls' Originate responses.
            assert!(m.action_id().unwrap().starts_with("orig-"), "{m:?}");
            responses += 1;
        }
    }
    assert_eq!(responses + 1, Totals::expected(calls as u64).responses);
    assert_eq!(server.bytes_sent(), c.received.len() as u64);
    // Idle at the end: actions are still answered.
    let mut seen = Vec::new();
    assert!(list(&mut c, "l", &mut seen).await.is_empty());
    assert!(seen.is_empty());
    c.send("Ping", Some("p"), &[]).await;
    let pong = c.next_message().await.unwrap();
    assert_eq!(
        (pong.action_id(), pong.get_str("Ping")),
        (Some("p"), Some("Pong"))
    );
    c.send("Logoff", None, &[]).await;
    assert_eq!(c.next_message().await.unwrap().response(), Some("Goodbye"));
    assert!(c.next_message().await.is_none());
    assert_eq!(server.connections(), 1);
}

/// After a restart, a connection to the old boot hears nothing of the new one, however late it is dropped:
/// the chaos soak's daemon once read new-boot calls on the old connection and ended them with that boot.
#[tokio::test]
async fn a_connection_never_hears_a_later_boot() {
    let pbx = ScriptedPbx::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let server = PbxServer::start(pbx, any_addr()).await.unwrap();
    let mut old = Client::connect(server.local_addr()).await;
    old.send("Login", Some("L"), &[("Username", "w"), ("Secret", "x")])
        .await;
    old.until(|m| m.event() == Some("FullyBooted")).await;
    let before = server.with(|p| p.start_call("2001", "2002"));
    server.with(|p| p.answer(before)).unwrap();
    server.with(|p| p.restart());
    let after = server.with(|p| p.start_call("2003", "2004"));
    server.with(|p| p.answer(after)).unwrap();
    let new_boot: Vec<String> =
        server.with(|p| p.channels().iter().map(|c| c.uniqueid.clone()).collect());
    assert_eq!(new_boot.len(), 2);
    // The old connection has had every chance to read what was sent before it is dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.drop_connection();
    let mut heard = Vec::new();
    while let Some(m) = old.next_message().await {
        heard.push(m);
    }
    assert!(heard.iter().any(|m| m.event() == Some("Shutdown")));
    let leaked: Vec<_> = heard
        .iter()
        .filter(|m| {
            m.get_str("Uniqueid")
                .is_some_and(|u| new_boot.iter().any(|n| n == u))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "old connection heard the new boot: {leaked:?}"
    );

    // A connection to the new boot hears it.
    let mut new = Client::connect(server.local_addr()).await;
    new.send("Login", Some("L"), &[("Username", "w"), ("Secret", "x")])
        .await;
    new.until(|m| m.event() == Some("FullyBooted")).await;
    server.with(|p| p.hangup(after, 16)).unwrap();
    let hangup = new.until(|m| m.event() == Some("Hangup")).await;
    assert!(new_boot
        .iter()
        .any(|u| Some(u.as_str()) == hangup.get_str("Uniqueid")));
}
