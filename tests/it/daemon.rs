//! The daemon end to end: the real `daemon::run` (and the `callwatch run` binary) against the testkit's
//! scripted PBX on TCP and a real database on each engine.
//!
//! Waiting is always on a condition (a row closed, the map synced) with a generous deadline, never a fixed
//! sleep standing in for synchronisation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ami_testkit::{PbxServer, ScriptedPbx};
use callwatch::daemon::{self, DaemonOptions, DaemonSummary};
use callwatch::health::Health;
use callwatch::settings::{ServerConfig, Settings};
use chrono::{DateTime, Utc};
use store::testing::{Engine, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `f` every 20 ms until it returns `Some`, or panics after [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn sql_time(t: DateTime<Utc>) -> String {
    t.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

/// Inserts an open row.
pub(crate) async fn insert_row(
    db: &TestDb,
    id: i64,
    uniqueid: &str,
    extension: &str,
    answered_at: DateTime<Utc>,
) {
    db.exec(&format!(
        "INSERT INTO calls (id, uniqueid, extension, status, answered_at, created_at, updated_at) \
         VALUES ({id}, '{uniqueid}', '{extension}', 'in_progress', {t}, {t}, {t})",
        t = sql_time(answered_at)
    ))
    .await;
}

/// `(ended_at, hangup_cause)` of a row, as text.
pub(crate) async fn row(db: &TestDb, id: i64) -> (Option<String>, Option<String>) {
    let (cast, _) = casts(db.engine());
    let store = db.store().await;
    let r: (Option<String>, Option<String>) = sqlx::query_as(&format!(
        "SELECT SUBSTR(CAST(ended_at AS {cast}), 1, 19), hangup_cause FROM calls WHERE id = {id}"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    r
}

/// Waits until row `id` is closed; returns its `ended_at` and `hangup_cause`.
pub(crate) async fn closed(db: &TestDb, id: i64, what: &str) -> (DateTime<Utc>, Option<String>) {
    let (ended, cause) = eventually(what, || async {
        let (ended, cause) = row(db, id).await;
        ended.map(|e| (e, cause))
    })
    .await;
    let ended = chrono::NaiveDateTime::parse_from_str(&ended, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc();
    (ended, cause)
}

/// Audit rows per call id.
pub(crate) async fn audit_counts(db: &TestDb) -> BTreeMap<String, i64> {
    let (text, int) = casts(db.engine());
    let store = db.store().await;
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT CAST(call_id AS {text}), CAST(COUNT(*) AS {int}) FROM call_closures GROUP BY call_id"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    rows.into_iter().collect()
}

/// The reason of each row's `closed` audit, by call id.
pub(crate) async fn audit_reasons(db: &TestDb) -> BTreeMap<String, String> {
    let (text, _) = casts(db.engine());
    let store = db.store().await;
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT CAST(call_id AS {text}), CAST(reason AS {text}) FROM call_closures WHERE outcome = 'closed'"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    rows.into_iter()
        .map(|(id, r)| (id.trim().to_owned(), r.trim().to_owned()))
        .collect()
}

/// SQL types to cast to for text and integers, per engine (sqlx's Any driver decodes only a few types).
pub(crate) fn casts(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Postgres => ("VARCHAR(32)", "BIGINT"),
        Engine::MySql => ("CHAR(32)", "SIGNED"),
        _ => ("TEXT", "INTEGER"),
    }
}

/// A scripted PBX with one answered call from 5550100 to `ext`; returns the server and the agent's Uniqueid.
pub(crate) async fn pbx_with_call(ext: &str) -> (PbxServer, ami_testkit::CallId, String) {
    let server = PbxServer::start(
        ScriptedPbx::new(Utc::now()).with_credentials("watchdog", "lab-secret"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (call, agent) = start_answered(&server, ext);
    (server, call, agent)
}

pub(crate) fn start_answered(server: &PbxServer, ext: &str) -> (ami_testkit::CallId, String) {
    server.with(|p| {
        let call = p.start_call("5550100", ext);
        p.answer(call).unwrap();
        let agent = p
            .channels()
            .iter()
            .rev()
            .find(|c| c.name.contains(ext))
            .map(|c| c.uniqueid.clone())
            .unwrap();
        (call, agent)
    })
}

pub(crate) fn settings_for(db_url: &str, ami: SocketAddr) -> Settings {
    let mut s = Settings {
        servers: vec![ServerConfig::from_url(&format!(
            "ami://watchdog:lab-secret@{ami}?server=pbx1&ping=1&ping_timeout=1"
        ))],
        database: store::DatabaseConfig::new(db_url),
        ..Settings::default()
    };
    s.http.enabled = false;
    s
}

pub(crate) struct Running {
    pub(crate) cancel: CancellationToken,
    pub(crate) health: Health,
    pub(crate) task: JoinHandle<anyhow::Result<DaemonSummary>>,
}

pub(crate) fn start_daemon(settings: Settings) -> Running {
    start_daemon_with(settings, |_| {})
}

/// [`start_daemon`] with `adjust` applied to its options.
pub(crate) fn start_daemon_with(
    settings: Settings,
    adjust: impl FnOnce(&mut DaemonOptions),
) -> Running {
    let cancel = CancellationToken::new();
    let health = Health::new(Utc::now());
    let mut options = DaemonOptions {
        cancel: Some(cancel.clone()),
        health: Some(health.clone()),
        skip_metrics: true,
        tweak_ami: Some(|cfg: &mut ami::Config| {
            cfg.backoff.initial = Duration::from_millis(50);
            cfg.backoff.max = Duration::from_millis(200);
        }),
        ..DaemonOptions::default()
    };
    adjust(&mut options);
    let task = tokio::spawn(daemon::run(settings, options));
    Running {
        cancel,
        health,
        task,
    }
}

impl Running {
    pub(crate) async fn synced(&self) {
        eventually("the map to be synced", || async {
            let s = self.health.snapshot();
            (s.servers.first().is_some_and(|s| s.synced) && s.lock_held).then_some(())
        })
        .await;
    }

    /// Waits until the daemon's map of its first server is synced (whether or not it holds the lock).
    pub(crate) async fn map_synced(&self) {
        eventually("the map to be synced", || async {
            let s = self.health.snapshot();
            s.servers.first().is_some_and(|s| s.synced).then_some(())
        })
        .await;
    }

    pub(crate) async fn stop(self) -> DaemonSummary {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap()
    }
}

/// Found by the soak's heap profile: `callwatch run` kept every row it ever closed for its summary (11 MB
/// after 38,000 closes, growing for as long as it ran). An endless daemon counts its closes and keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_daemon_counts_its_closes_without_keeping_them() {
    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, call, agent) = pbx_with_call("2001").await;
    insert_row(
        &db,
        1,
        &agent,
        "2001",
        Utc::now() - chrono::Duration::seconds(30),
    )
    .await;
    insert_row(
        &db,
        2,
        "1700000000.42",
        "2003",
        Utc::now() - chrono::Duration::hours(2),
    )
    .await;
    let d = start_daemon_with(settings_for(db.url(), pbx.local_addr()), |o| {
        o.forget_closed_rows = true;
    });
    d.synced().await;
    closed(&db, 2, "the stuck row closed").await;
    pbx.with(|p| p.hangup(call, 16)).unwrap();
    closed(&db, 1, "the hung-up row closed").await;
    let summary = d.stop().await;
    assert_eq!(summary.closed_total, 2);
    assert!(summary.closed.is_empty(), "{:?}", summary.closed);
}

async fn closes_hangups_and_gone_channels(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await; // migrated
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    let (_call_b, agent_b) = start_answered(&pbx, "2002");
    let now = Utc::now();
    insert_row(
        &db,
        1,
        &agent_a,
        "2001",
        now - chrono::Duration::seconds(30),
    )
    .await;
    insert_row(
        &db,
        2,
        &agent_b,
        "2002",
        now - chrono::Duration::minutes(45),
    )
    .await;
    insert_row(
        &db,
        3,
        "1700000000.42",
        "2003",
        now - chrono::Duration::hours(2),
    )
    .await;

    let d = start_daemon(settings_for(db.url(), pbx.local_addr()));
    d.synced().await;
    // The stuck row's channel is not in the listing: closed as channel_gone after the resync.
    let (_, cause) = closed(&db, 3, "row 3 closed").await;
    assert_eq!(cause.as_deref(), Some("channel_gone"));

    let hung_up_at = Utc::now();
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    let (ended, cause) = closed(&db, 1, "row 1 closed after its Hangup").await;
    assert_eq!(cause.as_deref(), Some("normal_clearing"));
    assert!(
        (ended - hung_up_at).num_seconds().abs() <= 1,
        "ended_at {ended} is the Hangup's time {hung_up_at}"
    );
    // The 45-minute-old call is live: never closed.
    assert_eq!(row(&db, 2).await.0, None);
    let summary = d.stop().await;
    assert_eq!(summary.closed.len(), 2, "{engine:?}: {:?}", summary.closed);
    assert_eq!(summary.closed_total, 2);
    assert!(summary.held_lock);
    assert_eq!(row(&db, 2).await.0, None);
    let counts = audit_counts(&db).await;
    assert_eq!(counts.get("1"), Some(&1));
    assert_eq!(counts.get("3"), Some(&1));
    assert_eq!(counts.get("2"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_closes_hangups_and_gone_channels_sqlite() {
    closes_hangups_and_gone_channels(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_closes_hangups_and_gone_channels_postgres() {
    closes_hangups_and_gone_channels(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_closes_hangups_and_gone_channels_mysql() {
    closes_hangups_and_gone_channels(Engine::MySql).await;
}

async fn one_of_two_daemons_writes(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    let (call_b, agent_b) = start_answered(&pbx, "2002");
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    insert_row(&db, 2, &agent_b, "2002", Utc::now()).await;
    let first = start_daemon(settings_for(db.url(), pbx.local_addr()));
    first.synced().await;
    let second = start_daemon(settings_for(db.url(), pbx.local_addr()));
    eventually("the second daemon to connect", || async {
        second
            .health
            .snapshot()
            .servers
            .first()
            .is_some_and(|s| s.synced)
            .then_some(())
    })
    .await;
    assert!(first.health.snapshot().lock_held);
    assert!(
        !second.health.snapshot().lock_held,
        "{engine:?}: both daemons hold the lock"
    );

    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    closed(&db, 1, "row 1 closed").await;
    let first_summary = first.stop().await;
    assert_eq!(first_summary.closed.len(), 1);

    // The standby takes over once the lock is free, and writes.
    eventually("the standby to take the lock", || async {
        second.health.snapshot().lock_held.then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call_b, 16)).unwrap();
    closed(&db, 2, "row 2 closed by the standby").await;
    let second_summary = second.stop().await;
    assert_eq!(second_summary.closed.len(), 1);
    let counts = audit_counts(&db).await;
    assert_eq!(
        counts.values().sum::<i64>(),
        2,
        "{engine:?}: each row closed once: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_daemons_writes_sqlite() {
    one_of_two_daemons_writes(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_daemons_writes_postgres() {
    one_of_two_daemons_writes(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_daemons_writes_mysql() {
    one_of_two_daemons_writes(Engine::MySql).await;
}

/// The database goes away for this test's database only (PostgreSQL: connections refused and the open ones
/// terminated), a call ends meanwhile, the database comes back: the row is closed exactly once, at the
/// Hangup's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_loses_and_duplicates_nothing() {
    let Some(db) = TestDb::create(Engine::Postgres).await else {
        return;
    };
    db.store().await.shutdown().await;
    let name = db.url().rsplit('/').next().unwrap().to_string();
    let admin = "postgres://postgres@127.0.0.1:5432/test";
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    let d = start_daemon(settings_for(db.url(), pbx.local_addr()));
    d.synced().await;
    eventually("a first round", || async {
        d.health.snapshot().last_sweep.at.map(|_| ())
    })
    .await;

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} CONNECTION LIMIT 0"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let hung_up_at = Utc::now();
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    eventually("a failed round while the database is away", || async {
        (!d.health.snapshot().database_ok).then_some(())
    })
    .await;

    sqlx::query(&format!("ALTER DATABASE {name} CONNECTION LIMIT -1"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (ended, cause) = closed(&db, 1, "row 1 closed after the database came back").await;
    assert_eq!(cause.as_deref(), Some("normal_clearing"));
    assert!(
        (ended - hung_up_at).num_seconds().abs() <= 1,
        "the Hangup's time was kept: {ended}"
    );
    let summary = d.stop().await;
    assert!(summary.failed_sweeps >= 1);
    assert_eq!(audit_counts(&db).await.get("1"), Some(&1));
}

/// Laravel's Redis broadcaster format, received by a real subscriber on the local Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_are_broadcast_on_redis_like_laravel() {
    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let client = match redis::Client::open("redis://127.0.0.1:6379/") {
        Ok(c) => c,
        Err(e) => panic!("redis: {e}"),
    };
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: Redis is down ({e})");
            return;
        }
        Err(e) => panic!("Redis is down under CI: {e}"),
    };
    // The prefix Laravel derives from APP_NAME "CW Test-<pid>": Str::slug(APP_NAME, '_').'_database_'.
    let app_name = format!("CW Test-{}", std::process::id());
    let channel = format!("cw_test_{}_database_calls", std::process::id());
    pubsub.subscribe(&channel).await.unwrap();
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.broadcast = toml::from_str(&format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379/\"\napp_name = \"{app_name}\""
    ))
    .unwrap();
    let d = start_daemon(settings);
    d.synced().await;
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    let msg = tokio::time::timeout(DEADLINE, futures_next(&mut pubsub))
        .await
        .expect("no broadcast received");
    let payload: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(payload["event"], r"App\Events\CallStatusUpdated");
    assert_eq!(payload["data"]["id"], 1);
    let ended_at = payload["data"]["ended_at"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(ended_at, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok()
            && ended_at.len() == "2026-12-02T05:51:41.000000Z".len(),
        "Eloquent's date format: {ended_at}"
    );
    assert_eq!(payload["data"]["extension"], "2001");
    assert_eq!(payload["data"]["reason"], "hangup_seen");
    assert_eq!(payload["data"]["hangup_cause"], "normal_clearing");
    assert!(payload["socket"].is_null());
    d.stop().await;
}

async fn futures_next(pubsub: &mut redis::aio::PubSub) -> String {
    use futures_util::StreamExt as _;
    let msg = pubsub.on_message().next().await.unwrap();
    msg.get_payload::<String>().unwrap()
}

/// Pusher's HTTP API and the webhook, received by a local HTTP server that checks the signatures from the
/// specification (independently of callwatch's signing code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_and_webhook_requests_are_signed() {
    use hmac::{Hmac, Mac};
    use md5::{Digest as _, Md5};
    use sha2::Sha256;

    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    type Seen = Arc<Mutex<Vec<(String, String, Vec<(String, String)>, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let hs = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    seen.lock().unwrap().push((
                        uri.path().to_string(),
                        uri.query().unwrap_or("").to_string(),
                        hs,
                        body.to_vec(),
                    ));
                    "{}"
                }
            },
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.broadcast = toml::from_str(&format!(
        "[pusher]\nurl = \"http://{http_addr}\"\napp_id = \"42\"\nkey = \"pk\"\nsecret = \"pusher-secret\"\n\
         [webhook]\nurl = \"http://{http_addr}/hook\"\nsecret = \"hook-secret\""
    ))
    .unwrap();
    let d = start_daemon(settings);
    d.synced().await;
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    eventually("both requests", || async {
        (seen.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    d.stop().await;

    let seen = seen.lock().unwrap().clone();
    let pusher = seen
        .iter()
        .find(|r| r.0 == "/apps/42/events")
        .expect("pusher request");
    let params: BTreeMap<String, String> = pusher
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(params["auth_key"], "pk");
    assert_eq!(params["auth_version"], "1.0");
    assert_eq!(params["body_md5"], hex::encode(Md5::digest(&pusher.3)));
    let unsigned: Vec<String> = params
        .iter()
        .filter(|(k, _)| *k != "auth_signature")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"pusher-secret").unwrap();
    mac.update(format!("POST\n/apps/42/events\n{}", unsigned.join("&")).as_bytes());
    assert_eq!(
        params["auth_signature"],
        hex::encode(mac.finalize().into_bytes())
    );
    let body: serde_json::Value = serde_json::from_slice(&pusher.3).unwrap();
    assert_eq!(body["name"], r"App\Events\CallStatusUpdated");
    assert_eq!(body["channels"][0], "calls");
    let data: serde_json::Value = serde_json::from_str(body["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["id"], 1);

    let hook = seen
        .iter()
        .find(|r| r.0 == "/hook")
        .expect("webhook request");
    let sig = hook
        .2
        .iter()
        .find(|(k, _)| k == "x-callwatch-signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-secret").unwrap();
    mac.update(&hook.3);
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
}

/// `callwatch run` as a process: SIGTERM while a large round is being written lets that round finish or roll
/// back whole (every closed row has exactly one audit row, no audit row without its close), the daemon exits
/// cleanly, a second run closes the rest without duplicates, and neither the AMI secret nor the database
/// password appears anywhere in the logs (JSON lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_round_loses_nothing_and_logs_no_secrets() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let Some(db) = TestDb::create(Engine::Postgres).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, _call, _agent) = pbx_with_call("2001").await;
    const ROWS: i64 = 20_000;
    let t = sql_time(Utc::now() - chrono::Duration::hours(2));
    db.exec(&format!(
        "INSERT INTO calls (id, uniqueid, extension, status, answered_at, created_at, updated_at) \
         SELECT g, '1700000000.' || g, '2001', 'in_progress', {t}, {t}, {t} FROM generate_series(1, {ROWS}) g"
    ))
    .await;
    // The password is ignored by the local server's trust authentication; it is here to be kept secret.
    let db_url = db.url().replacen(
        "postgres://postgres@",
        "postgres://postgres:db-secret-pw@",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[server]]\nurl = \"ami://watchdog:lab-secret@{}?server=pbx1\"\n\n[database]\nurl = \"{db_url}\"\n\n\
             [policy]\nmax_close_fraction = 1.0\n\n[http]\nenabled = false\n",
            pbx.local_addr()
        ),
    )
    .unwrap();
    let spawn = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callwatch"))
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--log-format",
                "json",
                "--log",
                "callwatch=debug,info",
            ])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("CALLWATCH_AMI_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn(&[]);
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut signalled = false;
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            // The first round after the listing has all the rows to close: stop the daemon right then.
            if !signalled
                && line.contains("round started")
                && line.contains(&format!("\"open\":{ROWS}"))
                && log.contains("channel map resynced")
            {
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .unwrap();
                signalled = true;
            }
            log.push_str(&line);
            log.push('\n');
        }
        (log, signalled)
    });
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let (log1, signalled) = reader.join().unwrap();
    assert!(signalled, "never saw the big round start:\n{log1}");
    assert!(status.success(), "exit status {status:?}:\n{log1}");

    let counts = audit_counts(&db).await;
    let store = db.store().await;
    let (closed,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM calls WHERE ended_at IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.shutdown().await;
    assert_eq!(
        closed,
        counts.len() as i64,
        "every closed row has its audit row and no audit row lacks its close"
    );
    assert!(counts.values().all(|n| *n == 1));
    eprintln!("closed before SIGTERM took effect: {closed} of {ROWS}");

    // A second run closes the rest, and nothing twice.
    let out = spawn(&["--exit-after", "3s"]).wait_with_output().unwrap();
    let log2 = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log2}");
    let counts = audit_counts(&db).await;
    assert_eq!(
        counts.len() as i64,
        ROWS,
        "all rows closed after the second run"
    );
    assert!(counts.values().all(|n| *n == 1), "a row was closed twice");

    for log in [&log1, &log2] {
        assert!(!log.contains("lab-secret"), "AMI secret in the logs");
        assert!(
            !log.contains("db-secret-pw"),
            "database password in the logs"
        );
        for line in log.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        }
    }
    assert!(log1.contains("Stuck call cleaned up") || log2.contains("Stuck call cleaned up"));
}

/// `/healthz`, `/readyz`, `/metrics` (Prometheus, `callwatch_` names, no per-call labels) and `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_health_readiness_and_metrics() {
    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.http.enabled = true;
    settings.http.listen = "127.0.0.1:0".into();
    let cancel = CancellationToken::new();
    let health = Health::new(Utc::now());
    let task = tokio::spawn(daemon::run(
        settings,
        DaemonOptions {
            cancel: Some(cancel.clone()),
            health: Some(health.clone()),
            ..DaemonOptions::default()
        },
    ));
    let d = Running {
        cancel,
        health,
        task,
    };
    d.synced().await;
    let base = format!("http://{}", d.health.snapshot().http_listen.unwrap());
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(
        get("/readyz").await.0,
        200,
        "lock held and the server synced"
    );
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    closed(&db, 1, "row 1 closed").await;

    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "callwatch_events_total",
        "callwatch_channels_live",
        "callwatch_closes_total",
        "callwatch_sweep_seconds",
        "callwatch_resync_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(metrics.contains("reason=\"hangup_seen\""), "{metrics}");
    assert!(!metrics.contains("call_id"), "no per-call labels");

    let (status, body) = get("/status").await;
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["lock_held"], true);
    assert_eq!(s["servers"][0]["name"], "pbx1");
    assert_eq!(s["servers"][0]["synced"], true);
    assert!(s["closed_total"].as_u64().unwrap() >= 1);

    // Without AMI the daemon is not ready.
    drop(pbx);
    let pbx_gone = eventually("the server to be seen down", || async {
        (!d.health.snapshot().servers[0].connected).then_some(())
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), pbx_gone).await;
    d.stop().await;
}

/// A Hangup the daemon never receives (lost between Asterisk and callwatch) is caught by the listing it asks
/// for every `sweep_interval`: the row is closed as `channel_gone`, not left open until a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_listing_catches_a_lost_hangup() {
    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, _call_a, agent_a) = pbx_with_call("2001").await;
    let (_call_b, agent_b) = start_answered(&pbx, "2002");
    insert_row(
        &db,
        1,
        &agent_a,
        "2001",
        Utc::now() - chrono::Duration::minutes(1),
    )
    .await;
    insert_row(
        &db,
        2,
        &agent_b,
        "2002",
        Utc::now() - chrono::Duration::minutes(1),
    )
    .await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.policy.sweep_interval = Duration::from_secs(1);
    let d = start_daemon(settings);
    d.synced().await;
    // The agent's channel ends in the PBX, but its Hangup never reaches the daemon.
    pbx.with(|p| {
        p.apply(&ami_proto::Message::from_pairs([
            ("Event", "Hangup"),
            ("Uniqueid", agent_a.as_str()),
            ("Cause", "16"),
            ("Cause-txt", "Normal Clearing"),
        ]))
    });
    assert!(
        pbx.with(|p| p.channel(&agent_a).is_none()),
        "the PBX no longer lists it"
    );
    let (_, cause) = closed(&db, 1, "row 1 closed by a periodic listing").await;
    assert_eq!(cause.as_deref(), Some("channel_gone"));
    assert_eq!(row(&db, 2).await.0, None, "the other call is live");
    d.stop().await;
}

/// systemd `Type=notify`: `callwatch run` sends `READY=1` once it holds the lock, and `STOPPING=1` on SIGTERM,
/// to the socket named by `NOTIFY_SOCKET`; with `WATCHDOG_USEC` set it pings `WATCHDOG=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_systemd_readiness_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::process::{Command, Stdio};

    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, _call, _agent) = pbx_with_call("2001").await;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    // systemd names the main process in WATCHDOG_PID; `exec` keeps the shell's pid for callwatch.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_callwatch"),
            "run",
            "--database",
            db.url(),
            "--ami",
            &format!("ami://watchdog:lab-secret@{}", pbx.local_addr()),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let messages = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.contains("READY=1") && !seen.iter().any(|m: &String| m.contains("READY=1")) {
                seen.push(msg);
                continue;
            }
            if msg.contains("WATCHDOG=1") && !seen.iter().any(|m: &String| m.contains("WATCHDOG=1"))
            {
                seen.push(msg);
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .unwrap();
                continue;
            }
            seen.push(msg.clone());
            if msg.contains("STOPPING=1") {
                break;
            }
        }
        // Whatever happened, stop the daemon so the test cannot hang.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        seen
    })
    .await
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let all = messages.join("|");
    assert!(all.contains("READY=1"), "{all}");
    assert!(all.contains("WATCHDOG=1"), "{all}");
    assert!(all.contains("STOPPING=1"), "{all}");
}
