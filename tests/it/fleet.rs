//! Fleets: several daemons on one database, one lock per server. Daemons with the same servers split them,
//! daemons with different servers both write, and a daemon killed with SIGKILL leaves its servers to the
//! others within a lock check. No row is ever closed by a daemon that does not own its server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ami_testkit::PbxServer;
use callwatch::daemon::LOCK_CHECK_INTERVAL;
use callwatch::settings::{ServerConfig, Settings};
use chrono::Utc;
use store::testing::{Engine, TestDb};

use crate::daemon::{closed, eventually, insert_row, pbx_with_call, start_daemon, Running};

/// `count` scripted PBXs named pbx1…, each with one answered call, and an open row per call tagged with
/// its server. Returns the servers and their calls.
async fn pbxs(db: &TestDb, count: usize) -> Vec<(PbxServer, ami_testkit::CallId)> {
    let mut out = Vec::new();
    let store = db.store().await;
    for i in 1..=count {
        let ext = format!("20{i:02}");
        let (pbx, call, agent) = pbx_with_call(&ext).await;
        insert_row(db, i as i64, &agent, &ext, Utc::now()).await;
        sqlx::query(&format!(
            "UPDATE calls SET server = 'pbx{i}' WHERE id = {i}"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        out.push((pbx, call));
    }
    store.shutdown().await;
    out
}

fn fleet_settings(db: &TestDb, pbxs: &[&PbxServer], first: usize) -> Settings {
    let mut s = Settings {
        servers: pbxs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                ServerConfig::from_url(&format!(
                    "ami://watchdog:lab-secret@{}?server=pbx{}&ping=1&ping_timeout=1",
                    p.local_addr(),
                    first + i
                ))
            })
            .collect(),
        database: store::DatabaseConfig::new(db.url()),
        ..Settings::default()
    };
    s.http.enabled = false;
    s
}

fn owned(d: &Running) -> BTreeSet<String> {
    d.health.snapshot().owned.into_iter().collect()
}

/// `server` → run ids that closed its rows, from the audit table.
async fn closers(db: &TestDb) -> BTreeMap<String, BTreeSet<String>> {
    let store = db.store().await;
    let text = match db.engine() {
        Engine::Postgres => "VARCHAR(128)",
        Engine::MySql => "CHAR(128)",
        Engine::Sqlite => "TEXT",
    };
    let rows: Vec<(Option<String>, String)> = sqlx::query_as(&format!(
        "SELECT CAST(server AS {text}), CAST(run_id AS {text}) FROM call_closures WHERE outcome = 'closed'"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (server, run) in rows {
        out.entry(server.unwrap_or_default())
            .or_default()
            .insert(run);
    }
    out
}

/// Two daemons configured for the same four servers split them two and two, and each closes only the
/// calls of the servers it owns.
async fn same_servers_are_split(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbxs = pbxs(&db, 4).await;
    let refs: Vec<&PbxServer> = pbxs.iter().map(|(p, _)| p).collect();
    let a = start_daemon(fleet_settings(&db, &refs, 1));
    eventually("the first daemon owns all four", || async {
        (owned(&a).len() == 4).then_some(())
    })
    .await;
    let b = start_daemon(fleet_settings(&db, &refs, 1));
    let deadline = std::time::Instant::now() + LOCK_CHECK_INTERVAL * 6;
    loop {
        let (oa, ob) = (owned(&a), owned(&b));
        if oa.len() == 2 && ob.len() == 2 {
            assert!(oa.is_disjoint(&ob), "{engine:?}: {oa:?} {ob:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{engine:?}: no even split: {oa:?} / {ob:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (oa, ob) = (owned(&a), owned(&b));
    for (pbx, call) in &pbxs {
        pbx.with(|p| p.hangup(*call, 16)).unwrap();
    }
    for i in 1..=4 {
        closed(&db, i, "every row closed by its owner").await;
    }
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert_eq!(sa.closed.len() + sb.closed.len(), 4, "{engine:?}");
    let by_server = closers(&db).await;
    for (server, runs) in &by_server {
        assert_eq!(runs.len(), 1, "{engine:?}: {server} closed by {runs:?}");
    }
    let runs_of = |set: &BTreeSet<String>| -> BTreeSet<String> {
        set.iter()
            .flat_map(|s| by_server[s].iter().cloned())
            .collect()
    };
    assert_eq!(runs_of(&oa).len(), 1, "{engine:?}: {by_server:?}");
    assert_eq!(runs_of(&ob).len(), 1, "{engine:?}: {by_server:?}");
    assert_ne!(runs_of(&oa), runs_of(&ob), "{engine:?}: {by_server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_servers_are_split_sqlite() {
    same_servers_are_split(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_servers_are_split_postgres() {
    same_servers_are_split(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_servers_are_split_mysql() {
    same_servers_are_split(Engine::MySql).await;
}

/// Two daemons for different servers on one database both write (one global lock made the second idle).
async fn disjoint_servers_both_write(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbxs = pbxs(&db, 2).await;
    let a = start_daemon(fleet_settings(&db, &[&pbxs[0].0], 1));
    let b = start_daemon(fleet_settings(&db, &[&pbxs[1].0], 2));
    eventually("both daemons own their server", || async {
        (owned(&a).contains("pbx1") && owned(&b).contains("pbx2")).then_some(())
    })
    .await;
    for (pbx, call) in &pbxs {
        pbx.with(|p| p.hangup(*call, 16)).unwrap();
    }
    closed(&db, 1, "pbx1's row closed").await;
    closed(&db, 2, "pbx2's row closed").await;
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert_eq!(sa.closed.len(), 1, "{engine:?}");
    assert_eq!(sb.closed.len(), 1, "{engine:?}");
    let by_server = closers(&db).await;
    assert_ne!(
        by_server["pbx1"], by_server["pbx2"],
        "{engine:?}: {by_server:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_servers_both_write_sqlite() {
    disjoint_servers_both_write(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_servers_both_write_postgres() {
    disjoint_servers_both_write(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_servers_both_write_mysql() {
    disjoint_servers_both_write(Engine::MySql).await;
}

/// A daemon process killed with SIGKILL: the other daemon owns its servers within one lock check and
/// closes their calls.
async fn sigkill_hands_the_servers_over(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbxs = pbxs(&db, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [[server]]\nname = \"pbx2\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [http]\nenabled = false\n",
            pbxs[0].0.local_addr(),
            pbxs[1].0.local_addr()
        ),
    )
    .unwrap();
    let mut victim = crate::ghosts::spawn(&config, &db, &dir.path().join("victim.log"));
    // Let the process own both servers first, so the survivor starts as a standby that must be balanced in.
    let store = db.store().await;
    eventually("the process owns both servers", || async {
        let live = store
            .live_daemons(chrono::Duration::seconds(15))
            .await
            .ok()?;
        live.iter().any(|d| d.owned.len() == 2).then_some(())
    })
    .await;
    let survivor = start_daemon(fleet_settings(&db, &[&pbxs[0].0, &pbxs[1].0], 1));
    eventually("the servers split one and one", || async {
        (owned(&survivor).len() == 1).then_some(())
    })
    .await;
    let theirs = if owned(&survivor).contains("pbx1") {
        1
    } else {
        0
    };
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let killed = std::time::Instant::now();
    eventually("the survivor owns both", || async {
        (owned(&survivor).len() == 2).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    let (pbx, call) = &pbxs[theirs];
    pbx.with(|p| p.hangup(*call, 16)).unwrap();
    closed(
        &db,
        theirs as i64 + 1,
        "the dead daemon's server's call closed",
    )
    .await;
    let summary = survivor.stop().await;
    store.shutdown().await;
    let log = std::fs::read_to_string(dir.path().join("victim.log")).unwrap();
    assert!(
        takeover <= LOCK_CHECK_INTERVAL + Duration::from_secs(2),
        "{engine:?}: took {takeover:?}\n{log}"
    );
    assert_eq!(summary.closed.len(), 1, "{engine:?}");
    eprintln!("{engine:?}: servers owned again {takeover:?} after SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_hands_the_servers_over_sqlite() {
    sigkill_hands_the_servers_over(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_hands_the_servers_over_postgres() {
    sigkill_hands_the_servers_over(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_hands_the_servers_over_mysql() {
    sigkill_hands_the_servers_over(Engine::MySql).await;
}

/// A newcomer (a daemon restarted after a crash, say) starts as the lock of pbx1 becomes free, beside a
/// standby that watches pbx1 already: the standby takes the lock and closes the call; the newcomer, though
/// its map is synced, leaves the lock alone (it has not seen what ended before it started). Once the
/// standby is gone, the newcomer, alone, takes the lock at once.
async fn a_newcomer_leaves_a_free_lock_to_the_watching_standby(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbxs = pbxs(&db, 1).await;
    let (pbx, call) = &pbxs[0];
    let owner = start_daemon(fleet_settings(&db, &[pbx], 1));
    owner.synced().await;
    let standby = start_daemon(fleet_settings(&db, &[pbx], 1));
    standby.map_synced().await;
    assert!(owned(&standby).is_empty());
    owner.stop().await; // frees the lock and leaves
    let newcomer = start_daemon(fleet_settings(&db, &[pbx], 1));
    newcomer.map_synced().await;
    eventually("the standby owns pbx1", || async {
        owned(&standby).contains("pbx1").then_some(())
    })
    .await;
    assert!(owned(&newcomer).is_empty(), "{engine:?}");
    pbx.with(|p| p.hangup(*call, 16)).unwrap();
    closed(&db, 1, "the call closed by the standby").await;
    let summary = standby.stop().await;
    assert_eq!(summary.closed.len(), 1, "{engine:?}");
    eventually("the newcomer, alone now, owns pbx1", || async {
        owned(&newcomer).contains("pbx1").then_some(())
    })
    .await;
    let summary = newcomer.stop().await;
    assert!(summary.closed.is_empty(), "{engine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_leaves_a_free_lock_to_the_watching_standby_sqlite() {
    a_newcomer_leaves_a_free_lock_to_the_watching_standby(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_leaves_a_free_lock_to_the_watching_standby_postgres() {
    a_newcomer_leaves_a_free_lock_to_the_watching_standby(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_leaves_a_free_lock_to_the_watching_standby_mysql() {
    a_newcomer_leaves_a_free_lock_to_the_watching_standby(Engine::MySql).await;
}

/// Found by the soak: the standby is killed (SIGKILL, before its next lock check) just as the owner stops, and
/// a newcomer starts. The standby's heartbeat row outlives it; the newcomer, which leaves a free lock to a
/// live standby, must not wait on that row for its whole patience: a standby that has not beaten for more
/// than a lock check is not checking, and the newcomer takes the lock (it waited the full 10 s before).
async fn a_newcomer_does_not_wait_on_a_killed_standby(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbxs = pbxs(&db, 1).await;
    let (pbx, call) = &pbxs[0];
    let owner = start_daemon(fleet_settings(&db, &[pbx], 1));
    owner.synced().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [http]\nenabled = false\n",
            pbx.local_addr()
        ),
    )
    .unwrap();
    let mut standby = crate::ghosts::spawn(&config, &db, &dir.path().join("standby.log"));
    let store = db.store().await;
    let ttl = callwatch::fleet::heartbeat_ttl(LOCK_CHECK_INTERVAL);
    eventually("the standby beats", || async {
        let live = store.live_daemons(ttl).await.ok()?;
        (live.len() == 2).then_some(())
    })
    .await;
    standby.kill().unwrap(); // SIGKILL: its row stays live for the heartbeat's TTL
    standby.wait().unwrap();
    owner.stop().await; // frees the lock and leaves
                        // Start the newcomer once the standby's beat is older than a lock check and the grace, but its row
                        // is still live (the newcomer counts it among its elders).
    tokio::time::sleep(LOCK_CHECK_INTERVAL + callwatch::fleet::STANDBY_BEAT_GRACE).await;
    let live = store.live_daemons(ttl).await.unwrap();
    assert_eq!(
        live.len(),
        1,
        "{engine:?}: the killed standby's row is live"
    );
    let newcomer = start_daemon(fleet_settings(&db, &[pbx], 1));
    let started = std::time::Instant::now();
    eventually("the newcomer owns pbx1", || async {
        owned(&newcomer).contains("pbx1").then_some(())
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited < callwatch::fleet::TAKEOVER_PATIENCE / 2,
        "{engine:?}: the newcomer waited {waited:?} on a dead standby"
    );
    pbx.with(|p| p.hangup(*call, 16)).unwrap();
    closed(&db, 1, "the call closed by the newcomer").await;
    let summary = newcomer.stop().await;
    store.shutdown().await;
    assert_eq!(summary.closed.len(), 1, "{engine:?}");
    eprintln!("{engine:?}: the newcomer owned pbx1 {waited:?} after its start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_does_not_wait_on_a_killed_standby_sqlite() {
    a_newcomer_does_not_wait_on_a_killed_standby(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_does_not_wait_on_a_killed_standby_postgres() {
    a_newcomer_does_not_wait_on_a_killed_standby(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_does_not_wait_on_a_killed_standby_mysql() {
    a_newcomer_does_not_wait_on_a_killed_standby(Engine::MySql).await;
}

/// Found by the soak: on a busy PBX, channels end all the time, and the daemon's loop took that wake-up
/// before its timers, so a standby (which runs no rounds) never reached its lock check: when the owner
/// stopped, nobody took the lock until a daemon started anew. Here calls end every 20 ms (faster than the
/// loop's 150 ms debounce) while the owner stops; the standby owns the server within a lock check.
async fn a_standby_on_a_busy_pbx_takes_the_lock(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let pbx = std::sync::Arc::new(pbxs(&db, 1).await.remove(0).0);
    let owner = start_daemon(fleet_settings(&db, &[&pbx], 1));
    owner.synced().await;
    let standby = start_daemon(fleet_settings(&db, &[&pbx], 1));
    standby.map_synced().await;
    // Calls come and go every 20 ms (no rows: only the channels' ends matter here).
    let busy = tokio::spawn({
        let pbx = pbx.clone();
        async move {
            let mut up = std::collections::VecDeque::new();
            for i in 0..u32::MAX {
                let ext = format!("3{:03}", i % 1000);
                up.push_back(pbx.with(|p| {
                    let call = p.start_call("5550100", &ext);
                    let _ = p.answer(call);
                    call
                }));
                if up.len() > 20 {
                    let call = up.pop_front().unwrap();
                    pbx.with(|p| p.hangup(call, 16)).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    owner.stop().await; // frees the lock
    let freed = std::time::Instant::now();
    let deadline = freed + LOCK_CHECK_INTERVAL + Duration::from_secs(3);
    while !owned(&standby).contains("pbx1") {
        assert!(
            std::time::Instant::now() < deadline,
            "{engine:?}: the standby did not take the lock within {:?}",
            deadline - freed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{engine:?}: the standby owned pbx1 {:?} after the owner stopped",
        freed.elapsed()
    );
    busy.abort();
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_on_a_busy_pbx_takes_the_lock_sqlite() {
    a_standby_on_a_busy_pbx_takes_the_lock(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_on_a_busy_pbx_takes_the_lock_postgres() {
    a_standby_on_a_busy_pbx_takes_the_lock(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_on_a_busy_pbx_takes_the_lock_mysql() {
    a_standby_on_a_busy_pbx_takes_the_lock(Engine::MySql).await;
}
