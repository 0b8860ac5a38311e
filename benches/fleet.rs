//! One daemon watching many PBXs: the real `callwatch run` binary against N scripted PBXs (testkit
//! servers on loopback), each starting and ending calls at a steady rate, with an open row per call.
//! Prints the daemon's CPU (cores, from /proc/PID/stat), peak RSS (VmHWM), and the Hangup-to-close latency:
//! from the moment the PBX hangs the call up to the moment the bench sees the row closed in the database
//! (polled every 50 ms), per PBX and overall.
//!
//! `cargo bench --bench fleet -- [PBXS] [CALLS_PER_SEC_PER_PBX] [SECONDS]` (default 50 5 30); the database
//! is a SQLite file, or `CALLWATCH_BENCH_DATABASE` (e.g. a PostgreSQL URL of a database made for it).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ami_testkit::{PbxServer, ScriptedPbx};
use chrono::Utc;

/// How long each call lasts.
const HOLD: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let pbxs = args.first().copied().unwrap_or(50.0) as usize;
    let rate = args.get(1).copied().unwrap_or(5.0);
    let seconds = args.get(2).copied().unwrap_or(30.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(pbxs, rate, seconds));
}

use bench_report::proc_stats::{process_cpu_seconds as cpu_seconds, status_kb};

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn run(pbxs: usize, rate: f64, seconds: f64) {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("CALLWATCH_BENCH_DATABASE").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("calls.db").display()
        )
    });
    let store = store::Store::connect(
        &store::DatabaseConfig::new(url.clone()),
        std::sync::Arc::new(clock::SystemClock),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();

    let mut servers = Vec::new();
    let mut config = String::from("[http]\nenabled = false\n");
    for i in 0..pbxs {
        let pbx = PbxServer::start(
            ScriptedPbx::new(Utc::now()).with_credentials("watchdog", "lab-secret"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        config.push_str(&format!(
            "[[server]]\nname = \"pbx{i}\"\nurl = \"ami://watchdog:lab-secret@{}\"\n",
            pbx.local_addr()
        ));
        servers.push(pbx);
    }
    let config_path = dir.path().join("callwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--database",
            &url,
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
    tokio::time::sleep(Duration::from_secs(3)).await; // logins and first listings

    // Calls: every PBX starts `rate` calls a second, each answered at once and hung up after HOLD.
    let total = (pbxs as f64 * rate * seconds) as usize;
    let period = Duration::from_secs_f64(1.0 / (pbxs as f64 * rate));
    let mut live: std::collections::VecDeque<(Instant, usize, ami_testkit::CallId, i64)> =
        std::collections::VecDeque::new();
    let mut tick = tokio::time::interval(period);
    // Row id → (PBX, hangup instant); the poller turns them into latencies once the row is closed.
    let pending: std::sync::Arc<std::sync::Mutex<BTreeMap<i64, (usize, Instant)>>> =
        std::sync::Arc::default();
    let latencies: std::sync::Arc<std::sync::Mutex<Vec<(usize, f64)>>> = std::sync::Arc::default();
    let poller = {
        let (pending, latencies, pool) = (pending.clone(), latencies.clone(), store.pool().clone());
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let closed: Vec<i64> = sqlx::query_scalar(
                    "SELECT CAST(id AS BIGINT) FROM calls WHERE ended_at IS NOT NULL",
                )
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                let now = Instant::now();
                let mut p = pending.lock().unwrap();
                for id in closed {
                    if seen.contains(&id) {
                        continue;
                    }
                    if let Some((pbx, at)) = p.remove(&id) {
                        seen.insert(id);
                        latencies
                            .lock()
                            .unwrap()
                            .push((pbx, (now - at).as_secs_f64()));
                    }
                }
            }
        })
    };
    let (cpu0, wall0) = (cpu_seconds(pid), Instant::now());
    let mut hung_up = 0usize;
    for n in 0..total {
        tick.tick().await;
        let i = n % pbxs;
        let id = n as i64 + 1;
        let ext = format!("{}", 2000 + n % 1000);
        let (call, agent) = servers[i].with(|p| {
            p.set_now(Utc::now());
            let call = p.start_call("5550100", &ext);
            p.answer(call).unwrap();
            let agent = p
                .channels()
                .iter()
                .rev()
                .find(|c| c.name.contains(&ext))
                .map(|c| c.uniqueid.clone())
                .unwrap();
            (call, agent)
        });
        let now = Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
        sqlx::query(&format!(
            "INSERT INTO calls (id, uniqueid, extension, server, status, answered_at, created_at, updated_at) \
             VALUES ({id}, '{agent}', '{ext}', 'pbx{i}', 'in_progress', '{now}', '{now}', '{now}')"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        live.push_back((Instant::now(), i, call, id));
        while live
            .front()
            .is_some_and(|(at, _, _, _)| at.elapsed() >= HOLD)
        {
            let (_, i, call, id) = live.pop_front().unwrap();
            servers[i].with(|p| {
                p.set_now(Utc::now());
                let _ = p.hangup(call, 16);
            });
            pending.lock().unwrap().insert(id, (i, Instant::now()));
            hung_up += 1;
        }
    }
    let (cpu1, wall1) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await; // the last closes land
    let hwm = status_kb(pid, "VmHWM:");
    let _ = daemon.kill();
    let _ = daemon.wait();

    poller.abort();
    let closed_rows = latencies.lock().unwrap().len();
    let missed = pending.lock().unwrap().len();
    let mut all: Vec<f64> = latencies.lock().unwrap().iter().map(|(_, s)| *s).collect();
    let mut per: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (pbx, s) in latencies.lock().unwrap().iter() {
        per.entry(*pbx).or_default().push(*s);
    }
    all.sort_by(f64::total_cmp);
    let worst_p99 = per
        .values_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            quantile(v, 0.99)
        })
        .fold(0.0_f64, f64::max);
    let wall = (wall1 - wall0).as_secs_f64();
    println!(
        "fleet: {pbxs} PBXs x {rate} calls/s for {seconds} s ({total} calls started, {hung_up} hung up, \
         {closed_rows} seen closed, {missed} not closed within 3 s of the end)"
    );
    println!(
        "daemon CPU {:.2} cores ({:.1} CPU-s over {:.1} s), peak RSS {:.1} MB",
        (cpu1 - cpu0) / wall,
        cpu1 - cpu0,
        wall,
        hwm as f64 / 1024.0
    );
    println!(
        "Hangup-to-close (50 ms polling): p50 {:.2} s, p99 {:.2} s, max {:.2} s; worst per-PBX p99 {:.2} s",
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN),
        worst_p99
    );
    let cores = (cpu1 - cpu0) / wall;
    let command = format!("cargo bench --bench fleet -- {pbxs} {rate} {seconds}");
    let load = format!("{pbxs} PBXs × {rate} calls/s");
    bench_report::record(
        &bench_report::Figure::new(
            "fleet.cpu_cores",
            format!("one daemon watching {load}: CPU"),
            cores,
            "cores",
        )
        .means(format!(
            "{:.0} calls/s across {pbxs} PBXs cost {:.0} % of one core",
            pbxs as f64 * rate,
            cores * 100.0
        ))
        .command(command.clone()),
    );
    bench_report::record(
        &bench_report::Figure::new(
            "fleet.peak_rss_mb",
            format!("one daemon watching {load}: peak RSS"),
            hwm as f64 / 1024.0,
            "MB",
        )
        .means(format!(
            "{:.1} MB per watched PBX",
            hwm as f64 / 1024.0 / pbxs as f64
        ))
        .command(command.clone()),
    );
    bench_report::record(
        &bench_report::Figure::new(
            "fleet.close_p99_s",
            format!("one daemon watching {load}: Hangup-to-close p99"),
            quantile(&all, 0.99),
            "s",
        )
        .means(format!(
            "99 % of hung-up calls show as ended within {:.2} s (the bench polls every 50 ms)",
            quantile(&all, 0.99)
        ))
        .command(command),
    );
    store.shutdown().await;
}
