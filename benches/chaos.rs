//! The fault-injection soak: `callwatch run` processes (an active daemon and a standby) against the
//! scripted PBX and a real database, through fault proxies, with every fault class mixed on a seeded
//! schedule; prints per fault class the times injected, the invariant violations and the worst close
//! latency after recovery, and the daemons' RSS over the soak.
//!
//! `cargo bench --bench chaos -- [--seconds N] [--rate CALLS_PER_S] [--seed S] [--engine sqlite|postgres|mysql]
//! [--private] [--in-process] [--only CLASS,…]` (defaults: 120 s, 100 calls/s, a random seed, SQLite). `--private` runs a
//! private PostgreSQL / MariaDB server and adds engine restarts; `--in-process` runs the daemon inside the
//! bench (fast reconnects, no process faults); `--only` keeps the named fault classes (as the report
//! names them, e.g. `--only "ami cut,SIGKILL daemon"`). `CHAOS_SEED` / `CHAOS_SECONDS` work too. Exits non-zero on
//! any violation. `--ended-channels-max N` sets the daemons' `[policy] ended_channels_max` (default 100,000,
//! about 8 minutes of this load's ended channels): their RSS is judged once their map of ended channels is
//! full, so a shorter soak needs a smaller cap to judge it. `--logs PATH` writes the daemons' logs there (`CHAOS_DAEMON_LOG=debug` for more).
//! `CHAOS_DAEMON_WRAP="heaptrack -o /tmp/ht"` runs each daemon process under that program (a heap profiler;
//! the RSS figures are then the wrapper's).

#[path = "../tests/chaos/mod.rs"]
mod harness;

use harness::{run, ChaosConfig, DaemonKind, FaultClass};
use store::testing::Engine;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (env_seed, env_seconds) = ChaosConfig::from_env(120);
    let seconds = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(env_seconds);
    let seed = arg(&args, "--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(env_seed);
    let rate = arg(&args, "--rate")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0);
    let engine = match arg(&args, "--engine").as_deref() {
        Some("postgres") => Engine::Postgres,
        Some("mysql") => Engine::MySql,
        _ => Engine::Sqlite,
    };
    let private_engine = args.iter().any(|a| a == "--private") && engine != Engine::Sqlite;
    let in_process = args.iter().any(|a| a == "--in-process");
    let mut classes = FaultClass::AMI.to_vec();
    if engine != Engine::Sqlite {
        classes.extend(FaultClass::DB);
    }
    if private_engine {
        classes.push(FaultClass::EngineRestart);
    }
    if !in_process {
        classes.extend(FaultClass::PROCESS);
    }
    // `--only "ami cut,SIGKILL daemon"`: only these classes (their report names), e.g. to study one.
    if let Some(only) = arg(&args, "--only") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        classes.retain(|c| wanted.contains(&c.name()));
        assert!(
            !classes.is_empty(),
            "--only names no class of this run: {only}"
        );
    }
    let config = ChaosConfig {
        seed,
        seconds,
        rate,
        engine,
        private_engine,
        classes,
        daemons: if in_process {
            DaemonKind::InProcess
        } else {
            DaemonKind::Processes(2)
        },
        ended_channels_max: arg(&args, "--ended-channels-max").and_then(|s| s.parse().ok()),
    };
    eprintln!(
        "chaos soak: CHAOS_SEED={seed} --seconds {seconds} --rate {rate} on {}",
        engine.name()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(report) = runtime.block_on(run(config)) else {
        eprintln!("skipped: the engine is not available");
        return;
    };
    println!("{}", report.table());
    // `--logs PATH`: the daemons' logs (their level: `CHAOS_DAEMON_LOG`, default `warn`).
    if let Some(path) = arg(&args, "--logs") {
        let mut text = format!(
            "faults: {:#?}\nresyncs: {:?}\nviolations:\n{}\n",
            report.injected,
            report.resyncs,
            report.verdict.violations.join("\n")
        );
        text.push_str(&report.logs);
        std::fs::write(&path, text).expect("the logs written");
    }
    if let Some(failure) = report.failure() {
        eprintln!("{failure}");
        std::process::exit(1);
    }
}
