//! The close path at busy-PBX scale, on a generated churn stream (`ami_testkit::churn`: two channels and
//! about 90 events per call, every event with `Timestamp:`), with one open row per call.
//!
//! - `cargo bench --bench churn -- replay ENGINE [CONCURRENT CALLS_PER_S SECONDS]` (default 700 230 60):
//!   the stream replayed through the real pipeline on virtual time (`callwatch replay`'s code: the client's
//!   sans-IO core, the channel map, the reconciler, the store). Prints the wall time, the speed against real
//!   time, rounds, rows read per round and closes.
//! - `cargo bench --bench churn -- live ENGINE [CONCURRENT CALLS_PER_S SECONDS]` (default 700 250 60):
//!   the real `callwatch run` binary against a churn server playing the stream in real time. Prints the
//!   daemon's CPU (cores, /proc/PID/stat, over the stream), peak RSS, rounds per second and rows read per
//!   round (from its `/metrics`), and the Hangup-to-committed-close latency: from the inbound channel's
//!   `Hangup` (the stream writes it at its `Timestamp:`) to the moment the bench sees the audit row (polled
//!   every 20 ms).
//!
//! ENGINE is `sqlite` (a file), `postgres` or `mysql` (a fresh database on the test servers, as the store
//! tests use: `CALLWATCH_TEST_POSTGRES_URL` / `CALLWATCH_TEST_MYSQL_URL`).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ami_testkit::churn::{Churn, ChurnConfig, ChurnServer};
use bench_report::proc_stats::{process_cpu_seconds as cpu_seconds, status_kb};
use callwatch::broadcast::Broadcaster;
use callwatch::pipeline::{ServerTarget, Sweeper};
use callwatch::replay::Replayer;
use chrono::Utc;
use store::testing::{Engine, TestDb};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args
        .iter()
        .find(|a| *a == "replay" || *a == "live")
        .cloned()
        .unwrap_or_else(|| "replay".into());
    let engine = match args
        .iter()
        .find(|a| ["sqlite", "postgres", "mysql"].contains(&a.as_str()))
    {
        Some(e) if e == "postgres" => Engine::Postgres,
        Some(e) if e == "mysql" => Engine::MySql,
        _ => Engine::Sqlite,
    };
    let nums: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let default_rate = if mode == "live" { 250.0 } else { 230.0 };
    let shape = (
        nums.first().copied().unwrap_or(700.0) as usize,
        nums.get(1).copied().unwrap_or(default_rate),
        nums.get(2).copied().unwrap_or(60.0),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        if mode == "live" {
            live(engine, shape).await
        } else {
            replay(engine, shape).await
        }
    });
}

/// Inserts one open row per call (Uniqueid = Linkedid = the inbound channel's), answered when the agent
/// answered.
async fn insert_rows(store: &store::Store, churn: &Churn) {
    for (part, calls) in churn.calls.chunks(500).enumerate() {
        let values: Vec<String> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let t = c.answered_at.format("%Y-%m-%d %H:%M:%S");
                format!(
                    "({}, '{}', '{}', '{}', 'in_progress', '{t}', '{t}', '{t}')",
                    part * 500 + i + 1,
                    c.uniqueid,
                    c.uniqueid,
                    c.extension
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO calls (id, uniqueid, linkedid, extension, status, answered_at, created_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .execute(store.pool())
        .await
        .unwrap();
    }
}

/// A metric's value (summed over its labels) in a Prometheus text rendering.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Rounds and rows read from a `/metrics` rendering (rows read: `None` where not counted).
fn rounds_and_rows(text: &str) -> (f64, Option<f64>) {
    (
        metric(text, "callwatch_sweep_seconds_count").unwrap_or(0.0),
        metric(text, "callwatch_rows_read_total"),
    )
}

fn per_round(rows: Option<f64>, rounds: f64) -> String {
    match rows {
        Some(r) if rounds > 0.0 => format!("{:.1}", r / rounds),
        _ => "n/a".into(),
    }
}

async fn replay(engine: Engine, (concurrent, rate, seconds): (usize, f64, f64)) {
    let start = chrono::DateTime::from_timestamp(1_795_520_000, 0).unwrap();
    let churn = Churn::generate(&ChurnConfig {
        concurrent,
        calls_per_second: rate,
        seconds,
        start,
        seed: 42,
    });
    let session = ami_testkit::Session::from_recording(
        "churn.bench",
        churn.bytes.clone(),
        None,
        Some(churn.timing.clone()),
    )
    .unwrap();
    let stream_secs = (churn.timing.rx.last().unwrap().at - start).num_milliseconds() as f64 / 1e3;
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let clock = clock::VirtualClock::new(start);
    let shared: clock::SharedClock = Arc::new(clock.clone());
    let store = db.store_with(&db.config(), shared.clone()).await;
    store.migrate().await.unwrap();
    insert_rows(&store, &churn).await;
    let prometheus = callwatch::metrics::install();
    let mut sweeper = Sweeper::new(
        store.clone(),
        reconciler::Policy::default(),
        shared,
        "bench".into(),
        false,
        Broadcaster::disabled(),
    );
    let map = ami::channels::ChannelMap::new(ami::channels::MapOptions::default());
    let target = ServerTarget {
        name: "default".into(),
        is_default: true,
    };
    let cfg = callwatch::cmd::replay::replay_client_config("default");
    let began = Instant::now();
    let report = Replayer::new(
        &mut sweeper,
        map,
        clock,
        target,
        cfg,
        Duration::from_secs(600),
    )
    .run(std::slice::from_ref(&session))
    .await
    .unwrap();
    let secs = began.elapsed().as_secs_f64();
    let text = prometheus.map(|p| p.render()).unwrap_or_default();
    let (rounds, rows) = rounds_and_rows(&text);
    println!(
        "churn replay on {}: {} calls ({concurrent} concurrent, {rate}/s), {} events, {} MB, {stream_secs:.1} s of stream \
         in {secs:.2} s: {:.1}x real time; {} rows closed of {}, {} rounds, rows read per round {}",
        engine.name(),
        churn.calls.len(),
        churn.events,
        churn.bytes.len() / 1_000_000,
        stream_secs / secs,
        report.closed.len(),
        churn.calls.len(),
        report.sweeps,
        per_round(rows, rounds),
    );
    let speed = stream_secs / secs;
    bench_report::record(
        &bench_report::Figure::new(
            format!("churn.replay_speed.{}", engine.name()),
            format!(
                "replay of a busy PBX ({concurrent} calls up, {rate} calls/s, {stream_secs:.0} s), {}",
                engine.product()
            ),
            speed,
            "x real time",
        )
        .means(format!(
            "a minute of that PBX's AMI stream is reconciled and closed in {:.1} s; rows read per round: {}",
            60.0 / speed,
            per_round(rows, rounds)
        ))
        .command(format!(
            "cargo bench --bench churn -- replay {} {concurrent} {rate} {}",
            engine.name(),
            seconds
        )),
    );
    assert_eq!(
        report.closed.len(),
        churn.calls.len(),
        "every call's row closed"
    );
    store.shutdown().await;
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    match client.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn live(engine: Engine, (concurrent, rate, seconds): (usize, f64, f64)) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let store = db.store().await;
    // The stream starts a few seconds from now: the daemon starts, logs in and lists meanwhile.
    let start = Utc::now() + chrono::Duration::seconds(4);
    let churn = Arc::new(Churn::generate(&ChurnConfig {
        concurrent,
        calls_per_second: rate,
        seconds,
        start,
        seed: 42,
    }));
    insert_rows(&store, &churn).await;
    let server = ChurnServer::start(churn.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[[server]]\nname = \"default\"\nurl = \"ami://watchdog:lab-secret@{}\"\n",
        server.local_addr()
    );
    let config_path = dir.path().join("callwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--database",
            db.url(),
        ])
        .env("CALLWATCH_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("CALLWATCH_AMI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");

    // Hangup time of each row.
    let hangups: HashMap<String, chrono::DateTime<Utc>> = churn
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| ((i + 1).to_string(), c.ended_at))
        .collect();
    let first_call = churn.calls.first().map(|c| c.started_at).unwrap_or(start);
    tokio::time::sleep((first_call - Utc::now()).to_std().unwrap_or_default()).await;
    let (cpu0, wall0) = (cpu_seconds(pid), Instant::now());
    let m0 = rounds_and_rows(&scrape(&http, &metrics_url).await);
    let last_hangup = churn
        .calls
        .iter()
        .map(|c| c.ended_at)
        .max()
        .unwrap_or(start);
    let mut latencies: Vec<f64> = Vec::with_capacity(churn.calls.len());
    let mut cpu1 = None;
    let mut last_id = 0i64;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = Utc::now();
        let int = if engine == Engine::MySql {
            "SIGNED"
        } else {
            "BIGINT"
        };
        let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
            "SELECT CAST(id AS {int}), call_id FROM call_closures WHERE id > {last_id} AND outcome = 'closed' ORDER BY id"
        ))
        .fetch_all(store.pool())
        .await
        .unwrap_or_default();
        for (id, call) in rows {
            last_id = last_id.max(id);
            if let Some(at) = hangups.get(&call) {
                latencies.push((now - *at).num_milliseconds() as f64 / 1e3);
            }
        }
        if cpu1.is_none() && now >= last_hangup {
            cpu1 = Some((
                cpu_seconds(pid),
                Instant::now(),
                rounds_and_rows(&scrape(&http, &metrics_url).await),
            ));
        }
        let done = now >= last_hangup + chrono::Duration::seconds(5)
            || latencies.len() == churn.calls.len();
        if done && cpu1.is_some() {
            break;
        }
    }
    let (cpu1, wall1, m1) = cpu1.unwrap();
    let hwm = status_kb(pid, "VmHWM:");
    let _ = daemon.kill();
    let _ = daemon.wait();
    latencies.sort_by(f64::total_cmp);
    let wall = (wall1 - wall0).as_secs_f64();
    let rounds = m1.0 - m0.0;
    let rows = m1.1.map(|r| r - m0.1.unwrap_or(0.0));
    println!(
        "churn live on {}: {} calls ({concurrent} concurrent, {rate} hangups/s for {seconds} s), {} closed, {} not closed \
         within 5 s of the last hangup",
        engine.name(),
        churn.calls.len(),
        latencies.len(),
        churn.calls.len() - latencies.len()
    );
    println!(
        "daemon CPU {:.2} cores ({:.1} CPU-s over {wall:.1} s), peak RSS {:.1} MB; {:.1} rounds/s, rows read per round {}",
        (cpu1 - cpu0) / wall,
        cpu1 - cpu0,
        hwm as f64 / 1024.0,
        rounds / wall,
        per_round(rows, rounds),
    );
    println!(
        "Hangup-to-committed-close (20 ms polling): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    let command = format!(
        "cargo bench --bench churn -- live {} {concurrent} {rate} {seconds}",
        engine.name()
    );
    let what = format!(
        "live daemon, {concurrent} calls up, {rate} hangups/s, {}",
        engine.product()
    );
    bench_report::record(
        &bench_report::Figure::new(
            format!("churn.live_p99_s.{}", engine.name()),
            format!("{what}: Hangup-to-committed-close p99"),
            quantile(&latencies, 0.99),
            "s",
        )
        .means(format!(
            "99 % of the calls of a busy PBX show as ended within {:.2} s of their Hangup (p50 {:.2} s)",
            quantile(&latencies, 0.99),
            quantile(&latencies, 0.5)
        ))
        .command(command.clone()),
    );
    bench_report::record(
        &bench_report::Figure::new(
            format!("churn.live_cpu.{}", engine.name()),
            format!("{what}: daemon CPU, parsing included"),
            (cpu1 - cpu0) / wall,
            "cores",
        )
        .means(format!(
            "{:.1} rounds/s reading {} rows each; peak RSS {:.1} MB",
            rounds / wall,
            per_round(rows, rounds),
            hwm as f64 / 1024.0
        ))
        .command(command),
    );
    store.shutdown().await;
}
