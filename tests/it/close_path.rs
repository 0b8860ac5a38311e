//! The close path at busy-PBX scale (issue 16): incremental rounds read only the rows of the channels that
//! ended and judge them on the whole map; group commit writes the closes of several rounds in one audited
//! transaction; a seen hangup still reaches the table quickly. On all three engines.

use std::sync::Arc;

use ami::channels::ChannelMap;
use ami_proto::Message;
use callwatch::broadcast::Broadcaster;
use callwatch::pipeline::{
    ChangedChannels, GroupCommit, RoundScope, ServerTarget, SweepReport, Sweeper,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use clock::Clock as _;
use store::testing::{Engine, TestDb};
use store::CallId;

use crate::daemon::{casts, closed, insert_row, row, settings_for, start_answered, start_daemon};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_520_000, 0).unwrap() + Duration::seconds(secs)
}

fn listed(uid: &str, lid: &str) -> Message {
    Message::from_pairs([
        ("Event", "CoreShowChannel"),
        ("ActionID", "1"),
        ("Channel", &format!("PJSIP/{uid}")),
        ("ChannelStateDesc", "Up"),
        ("Uniqueid", uid),
        ("Linkedid", lid),
    ])
}

fn hangup(uid: &str, lid: &str, at: DateTime<Utc>) -> Message {
    let ts = format!("{}.000000", at.timestamp());
    Message::from_pairs([
        ("Event", "Hangup"),
        ("Timestamp", ts.as_str()),
        ("Channel", &format!("PJSIP/{uid}")),
        ("Uniqueid", uid),
        ("Linkedid", lid),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    ])
}

/// A migrated store on a virtual clock at `t(20)`, and a sweeper writing through it.
async fn sweeper(db: &TestDb) -> (Sweeper, clock::VirtualClock, store::Store) {
    let vc = clock::VirtualClock::new(t(20));
    let shared: clock::SharedClock = Arc::new(vc.clone());
    let store = db.store_with(&db.config(), shared.clone()).await;
    store.migrate().await.unwrap();
    let sweeper = Sweeper::new(
        store.clone(),
        reconciler::Policy::default(),
        shared,
        "run-close-path".into(),
        false,
        Broadcaster::disabled(),
    );
    (sweeper, vc, store)
}

async fn insert(db: &TestDb, id: i64, uid: &str, lid: &str) {
    db.exec(&format!(
        "INSERT INTO calls (id, uniqueid, linkedid, extension, server, status, answered_at, created_at, updated_at) \
         VALUES ({id}, '{uid}', '{lid}', '2001', 'pbx1', 'in_progress', '{a}', '{a}', '{a}')",
        a = t(-60).format("%Y-%m-%d %H:%M:%S")
    ))
    .await;
}

/// A synced map of server `pbx1` with 150 single-channel calls `100.i`, call 200 (`200.0` with its agent
/// leg `200.1`) and calls `300.0`, `600.0`, `700.0`; and one open row per call (rows 1–150, 200, 300, 600,
/// 700, each on its call's first channel).
async fn busy_pbx(db: &TestDb) -> ChannelMap {
    let map = ChannelMap::default();
    let s = map.server("pbx1");
    s.begin_session(t(0));
    let gen = s.begin_listing(t(0));
    for i in 0..150 {
        let uid = format!("100.{i}");
        s.listed(gen, &listed(&uid, &uid), t(0));
        insert(db, i + 1, &uid, &uid).await;
    }
    for (uid, lid) in [
        ("200.0", "200.0"),
        ("200.1", "200.0"),
        ("300.0", "300.0"),
        ("600.0", "600.0"),
        ("700.0", "700.0"),
    ] {
        s.listed(gen, &listed(uid, lid), t(0));
    }
    s.finish_listing(gen, t(1)).unwrap();
    for (id, uid) in [
        (200, "200.0"),
        (300, "300.0"),
        (600, "600.0"),
        (700, "700.0"),
    ] {
        insert(db, id, uid, uid).await;
    }
    map
}

fn changed(map: &ChannelMap) -> ChangedChannels {
    let mut c = ChangedChannels::default();
    for g in map.take_gone() {
        c.note(&g);
    }
    c
}

fn closed_ids(report: &SweepReport) -> Vec<CallId> {
    report.closed.iter().map(|c| c.id.clone()).collect()
}

async fn incremental_rounds_read_only_the_changed_rows(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let (mut sweeper, vc, store) = sweeper(&db).await;
    let map = busy_pbx(&db).await;
    let target = ServerTarget {
        name: "pbx1".into(),
        is_default: false,
    };
    let s = map.server("pbx1");
    // Call 200's agent leg and call 300 hang up.
    s.apply(&hangup("200.1", "200.0", t(10)), t(10));
    s.apply(&hangup("300.0", "300.0", t(11)), t(11));
    vc.set(t(12));
    let report = sweeper
        .sweep_changed(&target, &map.server("pbx1"), &changed(&map))
        .await
        .unwrap();
    assert_eq!(report.scope, RoundScope::Changed);
    // Row 300 (its Uniqueid) and row 200 (its Linkedid is the agent leg's): not the 150 others.
    assert_eq!(report.rows_read, 2, "{engine:?}");
    assert_eq!(closed_ids(&report), vec![CallId::Int(300)]);
    // Row 200 was read through its Linkedid only; the whole map says its own channel is up: kept.
    assert_eq!(report.kept, 1);
    assert_eq!(report.closed[0].ended_at, t(11));
    assert_eq!(row(&db, 200).await.0, None, "a live call is never closed");

    // The caller leg hangs up: row 200 closes, read alone.
    s.apply(&hangup("200.0", "200.0", t(13)), t(13));
    vc.set(t(14));
    let report = sweeper
        .sweep_changed(&target, &map.server("pbx1"), &changed(&map))
        .await
        .unwrap();
    assert_eq!(report.rows_read, 1);
    assert_eq!(closed_ids(&report), vec![CallId::Int(200)]);

    // A full round reads every open row, and closes nothing more.
    let report = sweeper.sweep(&target, &map.snapshot("pbx1")).await.unwrap();
    assert_eq!(report.scope, RoundScope::Full);
    assert_eq!(report.rows_read, 152);
    assert!(report.closed.is_empty());
    let (_, int) = casts(engine);
    let audited: i64 = sqlx::query_scalar(&format!(
        "SELECT CAST(COUNT(*) AS {int}) FROM call_closures"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 2);
    store.shutdown().await;
}

#[tokio::test]
async fn incremental_rounds_read_only_the_changed_rows_sqlite() {
    incremental_rounds_read_only_the_changed_rows(Engine::Sqlite).await;
}

#[tokio::test]
async fn incremental_rounds_read_only_the_changed_rows_postgres() {
    incremental_rounds_read_only_the_changed_rows(Engine::Postgres).await;
}

#[tokio::test]
async fn incremental_rounds_read_only_the_changed_rows_mysql() {
    incremental_rounds_read_only_the_changed_rows(Engine::MySql).await;
}

async fn group_commit_writes_several_rounds_in_one_transaction(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let (mut sweeper, vc, store) = sweeper(&db).await;
    let map = busy_pbx(&db).await;
    sweeper.set_group_commit(GroupCommit {
        window: std::time::Duration::from_millis(50),
        max_rows: 3,
    });
    let target = ServerTarget {
        name: "pbx1".into(),
        is_default: false,
    };
    let s = map.server("pbx1");
    let start = vc.now();
    // Three rounds 20 ms apart, each deciding one close.
    let mut reports = Vec::new();
    for (i, uid) in ["300.0", "600.0"].iter().enumerate() {
        s.apply(&hangup(uid, uid, t(10 + i as i64)), start);
        let report = sweeper
            .sweep_changed(&target, &map.server("pbx1"), &changed(&map))
            .await
            .unwrap();
        assert!(report.closed.is_empty(), "queued, not yet written");
        assert_eq!(report.queued, i + 1);
        reports.push(report);
        vc.set(vc.now() + Duration::milliseconds(20));
    }
    // Nothing written yet; due 50 ms after the first was queued.
    assert_eq!(row(&db, 300).await.0, None);
    assert_eq!(
        sweeper.commit_due(),
        Some(start + Duration::milliseconds(50))
    );
    assert!(sweeper.commits_due().is_empty());
    // A full round meanwhile does not decide the queued rows again.
    let full = sweeper.sweep(&target, &map.snapshot("pbx1")).await.unwrap();
    assert_eq!(full.rows_read, 154);
    assert_eq!(full.open, 152);
    vc.set(start + Duration::milliseconds(50));
    assert_eq!(sweeper.commits_due(), vec!["pbx1".to_string()]);
    let committed = sweeper.commit("pbx1").await.unwrap();
    let mut ids: Vec<CallId> = committed.closed.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![CallId::Int(300), CallId::Int(600)]);
    assert!(sweeper.commit_due().is_none());

    // One batch for both, each row audited once.
    let (text, int) = casts(engine);
    let batches: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT CAST(batch_id AS {text}), CAST(COUNT(*) AS {int}) FROM call_closures GROUP BY batch_id"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(batches.len(), 1, "{engine:?}: {batches:?}");
    assert_eq!(batches[0].1, 2);

    // A full queue is written at once: three closes (max_rows) in the round that fills it.
    for (id, uid) in [(1, "100.0"), (2, "100.1")] {
        s.apply(&hangup(uid, uid, t(13)), vc.now());
        let report = sweeper
            .sweep_changed(&target, &map.server("pbx1"), &changed(&map))
            .await
            .unwrap();
        assert!(report.closed.is_empty(), "row {id} queued");
    }
    s.apply(&hangup("700.0", "700.0", t(13)), vc.now());
    let report = sweeper
        .sweep_changed(&target, &map.server("pbx1"), &changed(&map))
        .await
        .unwrap();
    let mut ids = closed_ids(&report);
    ids.sort();
    assert_eq!(ids, vec![CallId::Int(1), CallId::Int(2), CallId::Int(700)]);
    assert_eq!(report.queued, 0);
    let batches: i64 = sqlx::query_scalar(&format!(
        "SELECT CAST(COUNT(DISTINCT batch_id) AS {int}) FROM call_closures"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(batches, 2);
    store.shutdown().await;
}

#[tokio::test]
async fn group_commit_writes_several_rounds_in_one_transaction_sqlite() {
    group_commit_writes_several_rounds_in_one_transaction(Engine::Sqlite).await;
}

#[tokio::test]
async fn group_commit_writes_several_rounds_in_one_transaction_postgres() {
    group_commit_writes_several_rounds_in_one_transaction(Engine::Postgres).await;
}

#[tokio::test]
async fn group_commit_writes_several_rounds_in_one_transaction_mysql() {
    group_commit_writes_several_rounds_in_one_transaction(Engine::MySql).await;
}

/// The daemon with its defaults (group commit, incremental rounds): a burst of hangups among many live
/// calls reaches the table (checked with a generous deadline), the live calls stay open, each close is
/// audited once, and the rounds after the hangups read only the hung-up calls' rows.
async fn daemon_burst_of_hangups(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await; // migrated
    let pbx = ami_testkit::PbxServer::start(
        ami_testkit::ScriptedPbx::new(Utc::now()).with_credentials("watchdog", "lab-secret"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let answered = Utc::now() - Duration::seconds(30);
    let mut calls = Vec::new();
    for i in 0..120i64 {
        let ext = format!("{}", 3000 + i);
        let (call, agent) = start_answered(&pbx, &ext);
        insert_row(&db, i + 1, &agent, &ext, answered).await;
        calls.push(call);
    }
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.policy.sweep_interval = std::time::Duration::from_secs(3600);
    let d = start_daemon(settings);
    d.synced().await;
    // Hang up 30 calls at once, in two bursts: the first may meet the full round that follows the
    // listing still pending (it then closes them); the second meets only incremental rounds.
    for burst in [0..15, 15..30] {
        for call in &calls[burst.clone()] {
            pbx.with(|p| p.hangup(*call, 16)).unwrap();
        }
        for i in burst {
            let id = i as i64 + 1;
            let (_, cause) = closed(&db, id, "a hung-up call's row closed").await;
            assert_eq!(cause.as_deref(), Some("normal_clearing"));
        }
    }
    let summary = d.stop().await;
    for id in 31..=120 {
        assert_eq!(row(&db, id).await.0, None, "live call {id} closed");
    }
    let counts = crate::daemon::audit_counts(&db).await;
    assert_eq!(counts.len(), 30);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(summary.changed_rounds >= 1, "{summary:?}");
    // Each incremental round read hung-up calls' rows only (a row may be read once per channel of its
    // call); a full round reads all 120.
    assert!(
        summary.changed_rows_read <= 2 * 30,
        "{engine:?}: {} rows read by {} incremental rounds",
        summary.changed_rows_read,
        summary.changed_rounds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_burst_of_hangups_sqlite() {
    daemon_burst_of_hangups(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_burst_of_hangups_postgres() {
    daemon_burst_of_hangups(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_burst_of_hangups_mysql() {
    daemon_burst_of_hangups(Engine::MySql).await;
}
