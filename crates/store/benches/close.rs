//! Store benchmark, per engine: close 10,000 orphaned rows among 1,000,000 (with audit) and scan the
//! in-progress rows.
//!
//! ```sh
//! cargo bench -p store --bench close                       # every engine that is up
//! CALLWATCH_BENCH_ENGINES=sqlite,postgres CALLWATCH_BENCH_ROWS=200000 cargo bench -p store --bench close
//! ```
//!
//! Each engine gets a throw-away database (see `store::testing`). One row in 100 is answered and open;
//! the rest are ended. Timings are wall-clock for one run (the close is destructive) and include every
//! round trip; the seeding is not timed.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use store::testing::{Engine, TestDb};
use store::{CloseReason, CloseRequest, ServerFilter, Store};

/// CPU time (user + system) this process has used so far (Linux; 0 elsewhere). For SQLite that is all of
/// the database work; for the servers it is only the client's share.
fn cpu_seconds() -> f64 {
    bench_report::proc_stats::process_cpu_seconds(std::process::id())
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SELECT n FROM <0..rows>` for each engine.
fn numbers(engine: Engine, rows: usize) -> String {
    match engine {
        Engine::Postgres => format!("SELECT g AS n FROM generate_series(1, {rows}) AS g"),
        Engine::Sqlite => format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT n FROM s"
        ),
        Engine::MySql => {
            let d = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                     UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
            format!(
                "SELECT 1 + a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n \
                 FROM {d} a, {d} b, {d} c, {d} e, {d} f, {d} g HAVING n <= {rows}"
            )
        }
    }
}

async fn seed(db: &TestDb, store: &Store, rows: usize) {
    let engine = db.engine();
    let (concat, mod_) = match engine {
        Engine::MySql => ("CONCAT('ext', n % 500)", "n % 100"),
        _ => ("'ext' || (n % 500)", "n % 100"),
    };
    let ts = |expr: &str| match engine {
        Engine::Postgres => format!("CAST({expr} AS TIMESTAMP)"),
        _ => expr.to_string(),
    };
    let sql = format!(
        "INSERT INTO calls (uniqueid, linkedid, channel, extension, caller, status, started_at, answered_at, ended_at, \
         hangup_cause, talk_seconds, created_at, updated_at) \
         SELECT {uid}, {uid}, 'PJSIP/x', {concat}, '5550000', \
         CASE WHEN {mod_} = 0 THEN 'in_progress' ELSE 'completed' END, {t0}, {t0}, \
         CASE WHEN {mod_} = 0 THEN NULL ELSE {t1} END, \
         CASE WHEN {mod_} = 0 THEN NULL ELSE 'Normal Clearing' END, \
         CASE WHEN {mod_} = 0 THEN NULL ELSE 60 END, {t0}, {t0} FROM ({numbers}) AS nums",
        uid = match engine {
            Engine::MySql => "CONCAT('1732449600.', n)".to_string(),
            _ => "'1732449600.' || n".to_string(),
        },
        t0 = ts("'2026-11-24 12:00:00'"),
        t1 = ts("'2026-11-24 12:01:00'"),
        numbers = numbers(engine, rows),
    );
    sqlx::query(&sql).execute(store.pool()).await.unwrap();
    let analyze = match engine {
        Engine::Postgres => "ANALYZE calls",
        Engine::MySql => "ANALYZE TABLE calls",
        Engine::Sqlite => "ANALYZE",
    };
    sqlx::query(analyze).execute(store.pool()).await.unwrap();
}

async fn bench(engine: Engine, rows: usize) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let clock = Arc::new(clock::VirtualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 24, 13, 0, 0).unwrap(),
    ));
    let mut cfg = db.config();
    cfg.max_connections = 2;
    let store = db.store_with(&cfg, clock).await;
    store.migrate().await.unwrap();
    let started = Instant::now();
    seed(&db, &store, rows).await;
    let seeded = started.elapsed();

    let t = Instant::now();
    let open = store.in_progress(ServerFilter::Any, None).await.unwrap();
    let scan = t.elapsed();
    let t = Instant::now();
    let open_default = store
        .in_progress(ServerFilter::Default, None)
        .await
        .unwrap();
    let scan_default = t.elapsed();
    assert_eq!(open.len(), open_default.len());

    let now = Utc.with_ymd_and_hms(2026, 11, 24, 13, 0, 0).unwrap();
    let batch: Vec<CloseRequest> = open
        .iter()
        .map(|c| CloseRequest {
            call_id: c.id.clone(),
            ended_at: now,
            hangup_cause: "Normal Clearing".into(),
            reason: CloseReason::ChannelGone,
            ended_after: Some(c.answered_at),
            ended_before: Some(now),
            decided_at: now,
            ended_at_source: Default::default(),
        })
        .collect();
    let t = Instant::now();
    let cpu = cpu_seconds();
    let out = store.close(&batch, "bench").await.unwrap();
    let close = t.elapsed();
    let close_cpu = cpu_seconds() - cpu;
    assert_eq!(out.closed.len(), batch.len());
    let t = Instant::now();
    let again = store.close(&batch, "bench-again").await.unwrap();
    let close_skip = t.elapsed();
    assert_eq!(again.skipped.len(), batch.len());
    let t = Instant::now();
    let st = store
        .stats(chrono::Duration::minutes(30), chrono::Duration::hours(24))
        .await
        .unwrap();
    let stats = t.elapsed();
    assert_eq!(st.in_progress, 0);

    println!(
        "{:<9} rows {:>9}  open {:>6}  seed {:>7.2}s | in_progress(Any) {:>7.1} ms  (Default) {:>7.1} ms | \
         close {:>6} {:>7.1} ms (client CPU {:>5.0} ms) | re-close (all skipped) {:>7.1} ms | stats {:>7.1} ms",
        engine.name(),
        rows,
        open.len(),
        seeded.as_secs_f64(),
        scan.as_secs_f64() * 1e3,
        scan_default.as_secs_f64() * 1e3,
        out.closed.len(),
        close.as_secs_f64() * 1e3,
        close_cpu * 1e3,
        close_skip.as_secs_f64() * 1e3,
        stats.as_secs_f64() * 1e3,
    );
    bench_report::record(
        &bench_report::Figure::new(
            format!("store.close.{}", engine.name()),
            format!(
                "store, {}: close {} orphaned rows among {rows} with their audit, one transaction",
                engine.product(),
                out.closed.len()
            ),
            close.as_secs_f64() * 1e3,
            "ms",
        )
        .means(format!(
            "after an outage, the {} orphaned calls of {:.1} busy PBXs (700 calls up each) are closed, audited \
             and committed in {:.2} s",
            out.closed.len(),
            out.closed.len() as f64 / 700.0,
            close.as_secs_f64()
        ))
        .command("cargo bench -p store --bench close"),
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less arguments; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows = env_usize("CALLWATCH_BENCH_ROWS", 1_000_000);
    let engines: Vec<Engine> = match std::env::var("CALLWATCH_BENCH_ENGINES") {
        Ok(list) => Engine::ALL
            .into_iter()
            .filter(|e| list.split(',').any(|n| n.trim() == e.name()))
            .collect(),
        Err(_) => Engine::ALL.to_vec(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for engine in engines {
        rt.block_on(bench(engine, rows));
    }
}
