//! One chaos run: the world, the proxies, the daemons, the seeded faults, then the verdict.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ami_testkit::{PbxServer, ScriptedPbx};
use chrono::{DateTime, NaiveDateTime, Utc};
use fault_proxy::{Direction, FaultProxy};
use futures_util::StreamExt as _;
use store::testing::{Engine, TestDb};

use super::daemons::{DaemonKind, Daemons, Rss, PROCESS_RECONNECT_MAX};
use super::engines::PrivateEngine;
use super::invariants::{self, Bounds, Closure, Injected, Observed, Row, Verdict};
use super::schedule::{schedule, Fault, FaultClass};
use super::world::World;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seed of the fault schedule and the call plan.
    pub seed: u64,
    /// Length of the fault schedule, in seconds.
    pub seconds: u64,
    /// New calls per second.
    pub rate: f64,
    /// The database engine.
    pub engine: Engine,
    /// On a private server started for the run (needed for [`FaultClass::EngineRestart`]).
    pub private_engine: bool,
    /// The fault classes the schedule draws from.
    pub classes: Vec<FaultClass>,
    /// How the daemon runs.
    pub daemons: DaemonKind,
    /// The spawned daemons' `[policy] ended_channels_max` (`None`: the product's default).
    pub ended_channels_max: Option<usize>,
}

/// After a process's map of ended channels is full, RSS is judged from this much later…
const RSS_SETTLE: Duration = Duration::from_secs(10);
/// …over at least this long.
const RSS_JUDGED_SPAN: Duration = Duration::from_secs(60);

/// The schedule CI runs when `CHAOS_SEED` is not given.
pub const CI_SEED: u64 = 2026;

impl ChaosConfig {
    /// `CHAOS_SEED` and `CHAOS_SECONDS` (default `seconds`) from the environment. Without `CHAOS_SEED` a
    /// run draws a fresh random seed, except under `CI=true`, where it is [`CI_SEED`], so that CI runs the
    /// same schedule every time (exploring new seeds is for runs by hand and the soak).
    pub fn from_env(seconds: u64) -> (u64, u64) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| if ci { CI_SEED } else { rand::random() });
        let seconds = std::env::var("CHAOS_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(seconds);
        (seed, seconds)
    }
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    /// The configuration (with the seed to reproduce it).
    pub config: ChaosConfig,
    /// The invariants' verdict.
    pub verdict: Verdict,
    /// Calls started.
    pub calls: usize,
    /// Faults injected.
    pub injected: Vec<Injected>,
    /// Memory of each daemon process.
    pub rss: Vec<Rss>,
    /// How each process's RSS was judged (or why not), one line each.
    pub rss_judged: Vec<String>,
    /// Wall time of the run.
    pub wall: Duration,
    /// The daemons' logs (for failure messages).
    pub logs: String,
    /// When the daemons asked for a listing (as it crossed the AMI proxy).
    pub resyncs: Vec<DateTime<Utc>>,
}

impl Report {
    /// One line per violation, with the command that reproduces the run.
    pub fn failure(&self) -> Option<String> {
        if self.verdict.violations.is_empty() {
            return None;
        }
        // Violations by kind (the text after `call N: `, up to the first digit or comma), a few of each.
        let mut kinds: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
        for v in &self.verdict.violations {
            let rest = v.split_once(": ").map_or(v.as_str(), |(_, r)| r);
            let kind: String = rest
                .chars()
                .take_while(|c| !c.is_ascii_digit() && *c != ',' && *c != '(')
                .collect();
            kinds.entry(kind.trim().to_owned()).or_default().push(v);
        }
        let mut shown = Vec::new();
        for (kind, all) in &kinds {
            shown.push(format!("{} × {kind}", all.len()));
            for v in all.iter().take(4) {
                shown.push(format!("    {v}"));
            }
        }
        Some(format!(
            "{} invariant violations on {} (reproduce with CHAOS_SEED={} CHAOS_SECONDS={}):\n{}\nfaults: {:#?}\nlogs (tail):\n{}",
            self.verdict.violations.len(),
            self.config.engine.name(),
            self.config.seed,
            self.config.seconds,
            shown.join("\n"),
            self.injected,
            tail(&self.logs, 6000),
        ))
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The database of a run: a fresh database on the shared server, or a private server.
enum Db {
    Shared(TestDb),
    Private(PrivateEngine),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Shared(db) => db.url().to_owned(),
            Db::Private(p) => p.url(),
        }
    }

    fn addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Db::Shared(db) => match db.engine() {
                Engine::Postgres => Some(([127, 0, 0, 1], 5432).into()),
                Engine::MySql => Some(([127, 0, 0, 1], 3306).into()),
                Engine::Sqlite => None,
            },
            Db::Private(p) => Some(p.addr()),
        }
    }
}

/// Closes received by the Redis subscriber: row id and arrival time.
type Broadcasts = Vec<(i64, DateTime<Utc>)>;

const AMI_SECRET: &str = "lab-secret";
/// Pattern of the daemon's resync request, as it crosses the AMI proxy.
const LISTING: &[u8] = b"CoreShowChannels\r\n";

/// Runs one chaos schedule. `None` when the engine is not available here (skipped, printed).
pub async fn run(config: ChaosConfig) -> Option<Report> {
    let started = Instant::now();
    let engine = config.engine;
    let db = if config.private_engine {
        Db::Private(PrivateEngine::start(engine).await?)
    } else {
        Db::Shared(TestDb::create(engine).await?)
    };
    let url = db.url();
    let mut cfg = store::DatabaseConfig::new(url.clone());
    cfg.max_connections = 2;
    let app = store::Store::connect(&cfg, Arc::new(clock::SystemClock))
        .await
        .expect("the application's connection");
    app.migrate().await.expect("migrated");

    let pbx = Arc::new(
        PbxServer::start(
            ScriptedPbx::new(Utc::now()).with_credentials("watchdog", AMI_SECRET),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap(),
    );
    let ami = FaultProxy::start(pbx.local_addr()).await.unwrap();
    ami.tap(LISTING);
    let db_proxy = match db.addr() {
        Some(addr) => Some(FaultProxy::start(addr).await.unwrap()),
        None => None,
    };
    let daemon_url = match (&db_proxy, db.addr()) {
        (Some(p), Some(addr)) => {
            let through = url.replace(&addr.to_string(), &p.local_addr().to_string());
            assert_ne!(through, url, "the daemon's database goes through the proxy");
            through
        }
        _ => url.clone(),
    };

    // The Redis subscriber: every close the daemon announces, with its arrival time.
    let channel = format!(
        "chaos_{}_{}_{}",
        config.seed,
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    let broadcasts: Arc<Mutex<Broadcasts>> = Arc::default();
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let Ok(mut pubsub) = redis.get_async_pubsub().await else {
        assert!(
            !matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1")),
            "CI=true requires Redis"
        );
        eprintln!("SKIPPED: Redis is not reachable at 127.0.0.1:6379");
        return None;
    };
    pubsub.subscribe(&channel).await.unwrap();
    let subscriber = {
        let broadcasts = broadcasts.clone();
        tokio::spawn(async move {
            let mut stream = pubsub.on_message();
            while let Some(msg) = stream.next().await {
                let at = Utc::now();
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
                let id = v["data"]["id"]
                    .as_i64()
                    .or_else(|| v["data"]["id"].as_str().and_then(|s| s.parse().ok()));
                if let Some(id) = id {
                    broadcasts.lock().unwrap().push((id, at));
                }
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let fallback_after = Duration::from_secs(10);
    let sweep_interval = Duration::from_secs(5);
    let policy = callwatch::policy::PolicyConfig::default();
    let toml = format!(
        "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:{AMI_SECRET}@{}?ping=1&ping_timeout=1\"\n\
         reconnect_max = \"{}s\"\n\
         [database]\nurl = \"{daemon_url}\"\nmax_connections = 3\nacquire_timeout = \"5s\"\nstatement_timeout = \"5s\"\n\
         [policy]\nfallback_after = \"10s\"\nsweep_interval = \"5s\"\n{ended}\
         [broadcast]\nchannel = \"{channel}\"\n[broadcast.redis]\nurl = \"redis://127.0.0.1:6379/\"\nprefix = \"\"\n\
         [http]\nenabled = false\n",
        ami.local_addr(),
        PROCESS_RECONNECT_MAX.as_secs(),
        ended = config
            .ended_channels_max
            .map_or(String::new(), |n| format!("ended_channels_max = {n}\n")),
    );
    let config_path = dir.path().join("callwatch.toml");
    std::fs::write(&config_path, toml).unwrap();
    let mut daemons = Daemons::start(config.daemons, config_path, dir.path().to_path_buf())
        .expect("daemons started");
    daemons.warm_after = Duration::from_secs((config.seconds / 4).max(10));
    let bounds = Bounds {
        reconnect_max: daemons.reconnect_max(),
        dead_link: Duration::from_secs(2),
        fallback_after,
        sweep_interval,
        confirm_delay: policy.confirm_delay,
        lock_check: callwatch::daemon::LOCK_CHECK_INTERVAL,
        skew: policy.skew,
    };

    // The first listing: the daemon is up.
    let up = Instant::now();
    while ami.tap_hits(LISTING).is_empty() {
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "the daemon never listed the channels:\n{}",
            daemons.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let world = World::new(pbx.clone());
    let driver = world.drive(config.seed, config.rate, engine, app.clone());
    let plan = schedule(config.seed, config.seconds, &config.classes);
    let t0 = Instant::now();
    let base = (Instant::now(), Utc::now());
    let at = |i: Instant| {
        base.1
            + chrono::TimeDelta::from_std(i.saturating_duration_since(base.0)).unwrap_or_default()
    };
    let injected: Arc<Mutex<Vec<Injected>>> = Arc::default();
    let mut checks = Vec::new();
    // The shared database lives (and is dropped) with the run.
    let (mut private, _shared) = match db {
        Db::Private(p) => (Some(p), None),
        Db::Shared(d) => (None, Some(d)),
    };
    for fault in &plan {
        // Sample memory while waiting for the next fault.
        while t0.elapsed() < fault.at {
            daemons.sample_rss();
            let left = fault.at.saturating_sub(t0.elapsed());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        let accepted = ami.stats().accepted;
        let start = Utc::now();
        let clear = inject(
            fault,
            &world,
            &ami,
            db_proxy.as_ref(),
            &mut daemons,
            private.as_mut(),
            &app,
        )
        .await;
        let clear = clear.map_or_else(Utc::now, at);
        let index = {
            let mut all = injected.lock().unwrap();
            all.push(Injected {
                class: fault.class,
                start,
                clear,
                ended_session: false,
            });
            all.len() - 1
        };
        // After the daemon's reconnect time: a new AMI connection means the session ended, and a resync
        // must have followed.
        if fault.class.ends_ami_session() {
            let (injected, ami_stats, wait) = (
                injected.clone(),
                ami.stats_handle(),
                bounds.resync(fault.class),
            );
            checks.push(tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let ended = ami_stats.get().accepted > accepted;
                injected.lock().unwrap()[index].ended_session = ended;
            }));
        }
    }
    while t0.elapsed() < Duration::from_secs(config.seconds) {
        daemons.sample_rss();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    world.freeze();
    let _ = driver.await;
    let end = Utc::now();

    // Drain: every ended call closed, or the longest bound passed.
    let ended: Vec<i64> = world
        .truth()
        .iter()
        .filter(|c| c.ended.is_some() && c.inserted.is_some())
        .map(|c| c.id)
        .collect();
    let longest = [
        FaultClass::AsteriskRestart,
        FaultClass::Sigkill,
        FaultClass::DbCut,
    ]
    .iter()
    .map(|c| bounds.close_after_clear(*c))
    .max()
    .unwrap_or_default();
    let drain = Instant::now();
    while drain.elapsed() < longest + Duration::from_secs(3) {
        daemons.sample_rss();
        let open = open_rows(&app, engine).await.unwrap_or_default();
        if !ended.iter().any(|id| open.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for c in checks {
        let _ = c.await;
    }
    daemons.sample_rss();
    let logs = daemons.logs();
    let stopped = daemons.stop().await;
    // Let the last broadcasts arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.abort();

    let observed = Observed {
        rows: read_rows(&app, engine).await,
        closures: read_closures(&app, engine).await,
        broadcasts: broadcasts.lock().unwrap().clone(),
        resyncs: ami.tap_hits(LISTING).into_iter().map(at).collect(),
    };
    app.shutdown().await;
    let resyncs = observed.resyncs.clone();
    let truth = world.truth();
    let injected = injected.lock().unwrap().clone();
    let mut verdict = invariants::check(&truth, &injected, &observed, &bounds, end);
    if !stopped {
        verdict
            .violations
            .push("a daemon did not stop on SIGTERM".into());
    }
    let rss = daemons.rss.clone();
    // RSS bounded: the map of ended channels grows until it holds all it may (`ended_channels_max`, or an
    // hour of them); from then on, a process that lived a minute or more does not keep growing. A process
    // whose map never filled is not judged (said in the report).
    let cap = config
        .ended_channels_max
        .unwrap_or(callwatch::daemon::MAX_TOMBSTONES);
    let mut rss_judged = Vec::new();
    for r in &rss {
        let retention = r.started + callwatch::daemon::TOMBSTONE_RETENTION;
        let full_at = world
            .nth_channel_end_after(r.started, cap)
            .map_or(retention, |at| at.min(retention));
        match r.after(full_at, RSS_SETTLE) {
            Some((first, last, span)) if span >= RSS_JUDGED_SPAN => {
                let grew = last > first * 5 / 4 + 16 * 1024;
                rss_judged.push(format!(
                    "daemon pid {}: RSS {first} kB → {last} kB over the {:.0} s after its map held {cap} ended channels ({:.0} s after its start){}",
                    r.pid,
                    span.as_secs_f64(),
                    (full_at - r.started).as_secs_f64(),
                    if grew { ": GREW" } else { "" }
                ));
                // Over time, to tell the heap (RssAnon) from mapped files (RssFile, page cache).
                let series: Vec<String> = r
                    .series(full_at + RSS_SETTLE, 8)
                    .iter()
                    .map(|s| {
                        format!(
                            "{:.0} s {:.1}/{:.1}/{:.1}",
                            (s.at - r.started).as_secs_f64(),
                            s.rss_kb as f64 / 1024.0,
                            s.anon_kb as f64 / 1024.0,
                            s.file_kb as f64 / 1024.0
                        )
                    })
                    .collect();
                rss_judged.push(format!(
                    "  over time (s after its start: VmRSS/RssAnon/RssFile MB): {}",
                    series.join(", ")
                ));
                if grew {
                    verdict.violations.push(format!(
                        "daemon pid {}: RSS grew from {first} kB to {last} kB after its map of ended channels was full",
                        r.pid
                    ));
                }
            }
            _ => rss_judged.push(format!(
                "daemon pid {}: RSS not judged (lived {:.0} s; its map of {cap} ended channels was not full {} s before the end)",
                r.pid,
                (r.last_at - r.started).as_secs_f64(),
                (RSS_SETTLE + RSS_JUDGED_SPAN).as_secs()
            )),
        }
    }
    drop(private);
    Some(Report {
        rss_judged,
        resyncs,
        calls: truth.len(),
        verdict,
        injected,
        rss,
        wall: started.elapsed(),
        logs,
        config,
    })
}

/// Injects `fault`; returns when it cleared (`None`: now, after its hold).
async fn inject(
    fault: &Fault,
    world: &World,
    ami: &FaultProxy,
    db: Option<&FaultProxy>,
    daemons: &mut Daemons,
    private: Option<&mut PrivateEngine>,
    app: &store::Store,
) -> Option<Instant> {
    let hold = fault.hold;
    match fault.class {
        FaultClass::AmiCut => ami.cut(hold),
        FaultClass::AmiHalfOpen => ami.set_half_open(true),
        FaultClass::AmiLatency => ami.set_latency(Duration::from_millis(fault.param)),
        FaultClass::AmiThrottle => ami.set_bandwidth(Some(fault.param)),
        FaultClass::AmiOneByte => ami.set_one_byte_segments(true),
        FaultClass::AmiResetMidFrame => {
            let before = ami.stats().resets;
            ami.reset_after(Direction::ToClient, fault.param);
            return Some(
                fired(
                    || ami.stats().resets > before,
                    || ami.reset_after(Direction::ToClient, u64::MAX),
                )
                .await,
            );
        }
        FaultClass::AsteriskRestart => {
            world.wipe(None);
            world.pbx().drop_connection();
            return Some(Instant::now());
        }
        FaultClass::AsteriskCrash => {
            ami.cut(hold);
            world.wipe(Some(hold));
            world.pbx().drop_connection();
        }
        FaultClass::DbCut => {
            if let Some(p) = db {
                p.cut(hold);
            }
        }
        FaultClass::DbHalfOpen => {
            if let Some(p) = db {
                p.set_half_open(true);
            }
        }
        FaultClass::DbLatency => {
            if let Some(p) = db {
                p.set_latency(Duration::from_millis(fault.param));
            }
        }
        FaultClass::DbCommitCut => {
            let p = db?;
            let before = p.stats().resets;
            p.cut_on(b"COMMIT", Duration::from_millis(300));
            return Some(fired(|| p.stats().resets > before, || {}).await);
        }
        FaultClass::Sigkill | FaultClass::Sigterm => {
            let slot = active_slot(daemons, app).await;
            let kill = fault.class == FaultClass::Sigkill;
            let start = Instant::now();
            daemons.stop_slot(slot, kill).await;
            tokio::time::sleep(hold.saturating_sub(start.elapsed())).await;
            let _ = daemons.restart_slot(slot);
            // The fault began at the signal: a standby may take over before the restart.
            return Some(start);
        }
        FaultClass::EngineRestart => {
            if let Some(p) = private {
                let _ = p.restart(hold).await;
            }
            return Some(Instant::now());
        }
    }
    tokio::time::sleep(hold).await;
    match fault.class {
        FaultClass::AmiHalfOpen => ami.set_half_open(false),
        FaultClass::AmiLatency => ami.set_latency(Duration::ZERO),
        FaultClass::AmiThrottle => ami.set_bandwidth(None),
        FaultClass::AmiOneByte => ami.set_one_byte_segments(false),
        FaultClass::DbHalfOpen => {
            if let Some(p) = db {
                p.set_half_open(false);
            }
        }
        FaultClass::DbLatency => {
            if let Some(p) = db {
                p.set_latency(Duration::ZERO);
            }
        }
        _ => {}
    }
    None
}

/// Waits up to 5 s for a one-shot fault to fire (then disarms it); returns when it fired or gave up.
async fn fired(done: impl Fn() -> bool, disarm: impl Fn()) -> Instant {
    let start = Instant::now();
    while !done() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !done() {
        disarm();
    }
    Instant::now()
}

/// The slot of the daemon that holds the server's lock (the first live one when no heartbeat says).
async fn active_slot(daemons: &Daemons, app: &store::Store) -> usize {
    let pids = daemons.pids();
    let beats = app
        .live_daemons(chrono::Duration::seconds(15))
        .await
        .unwrap_or_default();
    let owner = beats
        .iter()
        .filter(|b| !b.owned.is_empty())
        .max_by(|a, b| a.seen_at.cmp(&b.seen_at))
        .map(|b| b.pid);
    owner
        .and_then(|pid| pids.iter().position(|p| p.map(i64::from) == Some(pid)))
        .or_else(|| pids.iter().position(Option::is_some))
        .unwrap_or(0)
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s?.get(..19)?, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

fn casts(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Postgres => ("VARCHAR(64)", "BIGINT"),
        Engine::MySql => ("CHAR(64)", "SIGNED"),
        Engine::Sqlite => ("TEXT", "INTEGER"),
    }
}

async fn open_rows(app: &store::Store, engine: Engine) -> Option<std::collections::HashSet<i64>> {
    let (_, int) = casts(engine);
    let ids: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT CAST(id AS {int}) FROM calls WHERE ended_at IS NULL"
    ))
    .fetch_all(app.pool())
    .await
    .ok()?;
    Some(ids.into_iter().map(|(i,)| i).collect())
}

type RowTuple = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

async fn read_rows(app: &store::Store, engine: Engine) -> Vec<Row> {
    let (text, int) = casts(engine);
    let rows: Vec<RowTuple> = sqlx::query_as(&format!(
        "SELECT CAST(id AS {int}), CAST(answered_at AS {text}), CAST(ended_at AS {text}), \
         CAST(hangup_cause AS {text}), CAST(talk_seconds AS {int}), CAST(status AS {text}) FROM calls"
    ))
    .fetch_all(app.pool())
    .await
    .expect("the calls table");
    rows.into_iter()
        .map(|(id, answered, ended, cause, talk, status)| Row {
            id,
            answered_at: parse_time(answered),
            ended_at: parse_time(ended),
            hangup_cause: cause,
            talk_seconds: talk,
            status,
        })
        .collect()
}

type ClosureTuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn read_closures(app: &store::Store, engine: Engine) -> Vec<Closure> {
    let (text, _) = casts(engine);
    let rows: Vec<ClosureTuple> = sqlx::query_as(&format!(
        "SELECT CAST(call_id AS {text}), CAST(outcome AS {text}), CAST(reason AS {text}), \
         CAST(new_ended_at AS {text}), CAST(ended_after AS {text}), CAST(ended_before AS {text}), \
         CAST(decided_at AS {text}) FROM call_closures"
    ))
    .fetch_all(app.pool())
    .await
    .expect("the audit");
    rows.into_iter()
        .map(
            |(id, outcome, reason, new_ended, after, before, decided)| Closure {
                call_id: id.trim().parse().unwrap_or(-1),
                outcome: outcome.trim().to_owned(),
                reason: reason.trim().to_owned(),
                new_ended_at: parse_time(new_ended),
                ended_after: parse_time(after),
                ended_before: parse_time(before),
                decided_at: parse_time(decided),
            },
        )
        .collect()
}

impl Report {
    /// Per-class figures as a Markdown table, then the totals.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| fault class | injected | violations | calls it delayed | worst close after recovery | worst resync after recovery |\n\
             | --- | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for (class, f) in &self.verdict.classes {
            out.push_str(&format!(
                "| {class} | {} | {} | {} | {:.1} s | {} |\n",
                f.injected,
                f.violations,
                f.calls,
                f.worst_close.as_secs_f64(),
                if f.worst_resync.is_zero() {
                    "–".to_owned()
                } else {
                    format!("{:.1} s", f.worst_resync.as_secs_f64())
                }
            ));
        }
        out.push_str(&format!(
            "\nseed {} on {}{}: {} calls ({} closed, {} live at the end), {} faults, {} violations, {} closes not broadcast after a SIGKILL, wall {:.0} s\n",
            self.config.seed,
            self.config.engine.name(),
            if self.config.private_engine { " (private server)" } else { "" },
            self.calls,
            self.verdict.closed,
            self.verdict.live,
            self.injected.len(),
            self.verdict.violations.len(),
            self.verdict.lost_to_sigkill,
            self.wall.as_secs_f64()
        ));
        for line in &self.rss_judged {
            out.push_str(line);
            out.push('\n');
        }
        for r in &self.rss {
            out.push_str(&format!(
                "daemon pid {}: RSS first {} kB, warm {} kB, last {} kB, max {} kB over {:.0} s\n",
                r.pid,
                r.first_kb,
                r.warm_kb,
                r.last_kb,
                r.max_kb,
                (r.last_at - r.started).as_secs_f64()
            ));
        }
        out
    }
}
