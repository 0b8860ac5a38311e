//! Reconnecting over real TCP after Asterisk's AMI port was closed for several seconds: the client is back,
//! logged in and resynced within `reconnect_max` + 1 s of the port accepting connections again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ami::{ChannelEnd, ChannelMap, Config, State, TokioClock};
use ami_testkit::{PbxServer, ScriptedPbx};
use chrono::DateTime;
use tokio::time::Instant;

const SECRET: &str = "lab-secret";

/// Waits for `pred` on the client's state, at most `limit`.
async fn wait_state(
    state: &mut tokio::sync::watch::Receiver<State>,
    limit: Duration,
    pred: impl Fn(&State) -> bool,
) {
    tokio::time::timeout(limit, state.wait_for(|s| pred(s)))
        .await
        .expect("state not reached in time")
        .expect("connection task gone");
}

/// Serves a PBX with one answered call, cuts AMI for `cut` (connections closed, the port refusing), ends
/// the call meanwhile, brings the port back and measures how long the client takes to resync.
async fn resync_after_cut(query: &str, reconnect_max: Duration, cut: Duration) {
    let pbx = ScriptedPbx::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap())
        .with_credentials("watchdog", SECRET);
    let server = PbxServer::start(pbx, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr();
    let call = server.with(|p| {
        let call = p.start_call("2001", "2002");
        p.answer(call).unwrap();
        call
    });
    let cfg =
        Config::from_url(&format!("ami://watchdog:{SECRET}@{addr}?server=pbx{query}")).unwrap();
    assert_eq!(cfg.backoff.max, reconnect_max);
    let map = ChannelMap::default();
    let (client, connection) = ami::connect(cfg, map.clone(), Arc::new(TokioClock::new()));
    let mut state = client.state();
    let task = tokio::spawn(connection.run());
    wait_state(&mut state, Duration::from_secs(10), |s| *s == State::Synced).await;
    let channels = map.server("pbx");
    let epoch = channels.epoch();
    let live: Vec<String> = map.snapshot("pbx").live.keys().cloned().collect();
    assert!(!live.is_empty(), "the call's channels listed");

    // The cut: every connection closed and the port refusing for `cut`; the call ends meanwhile.
    server.drop_connection();
    let after_cut = server.with(|p| {
        p.hangup(call, 16).unwrap();
        p.drain_events();
        // The same Asterisk keeps running through the cut: its clock (and so its next `Uptime`) moves on by
        // at least the cut and the reconnect. Ahead of real time is safe (an older boot); behind would read
        // as a new boot.
        p.advance(cut + reconnect_max + Duration::from_secs(5));
        p.clone()
    });
    drop(server);
    wait_state(&mut state, Duration::from_secs(5), |s| *s != State::Synced).await;
    tokio::time::sleep(cut).await;

    // The port comes back, with the same PBX (the call is over).
    let server = PbxServer::start(after_cut, addr).await.unwrap();
    let back = Instant::now();
    let limit = reconnect_max + Duration::from_secs(1);
    wait_state(&mut state, limit + Duration::from_secs(30), |s| {
        *s == State::Synced
    })
    .await;
    let took = back.elapsed();
    assert!(channels.epoch() > epoch, "a new session");
    assert!(
        took <= limit,
        "resynced {took:?} after the AMI port came back, more than reconnect_max {reconnect_max:?} + 1 s"
    );
    // The resync found what ended during the cut.
    let snap = map.snapshot("pbx");
    assert!(snap.live.is_empty(), "{:?}", snap.live);
    for uid in &live {
        let ended = snap.ended.get(uid).expect("ended at the resync");
        assert!(matches!(ended.end, ChannelEnd::Gone { .. }), "{ended:?}");
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_eight_second_cut_the_default_client_resyncs_within_reconnect_max_plus_one_second()
{
    resync_after_cut("", Duration::from_secs(5), Duration::from_secs(8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_max_from_the_url_bounds_the_resync_after_a_cut() {
    resync_after_cut(
        "&reconnect_max=2",
        Duration::from_secs(2),
        Duration::from_secs(6),
    )
    .await;
}
