//! `callwatch status` end to end on SQLite, PostgreSQL and MariaDB: totals, in progress, stuck, extensions
//! with more than one call in progress (with the calls), closes by reason, the last run, and the daemon's
//! per-server state from its `/status` endpoint (a real `http::router` served here) or "not running".

use chrono::Duration;
use serde_json::Value;
use store::testing::Engine;

use crate::cleanup::{json, now_s, run, run_async, seeded, stdout, Row};

fn rows() -> Vec<Row<'static>> {
    let mut ended = Row::open(3, "2002", 90, Some("1795000000.3"));
    ended.ended_at = Some(now_s() - Duration::minutes(80));
    let mut ringing = Row::open(4, "2003", 0, None);
    ringing.answered_at = None;
    vec![
        Row::open(1, "2001", 45, Some("1795000000.1")),
        Row::open(2, "2001", 5, Some("1795000000.2")),
        ended,
        ringing,
    ]
}

fn call_ids(v: &Value) -> Vec<i64> {
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

async fn counts_and_busy_extensions(engine: Engine) {
    let Some(db) = seeded(engine, &rows()).await else {
        return;
    };
    let out = run(&db, &["status", "--json"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::cleanup::stderr(&out)
    );
    let v = json(&out);
    assert_eq!(v["total"], 4);
    assert_eq!(v["in_progress"], 2);
    assert_eq!(v["stuck"], 1);
    assert_eq!(v["stuck_after_minutes"], 30);
    let busy = v["busy_extensions"].as_array().unwrap();
    assert_eq!(busy.len(), 1, "{v}");
    assert_eq!(busy[0]["extension"], "2001");
    assert_eq!(call_ids(&busy[0]), [1, 2]);
    assert_eq!(v["closes_last_24h"], serde_json::json!({}));
    assert!(v["last_run"].is_null());
    assert_eq!(v["daemon"]["running"], false);
    // a shorter threshold makes both stuck
    let v = json(&run(&db, &["status", "--json", "--timeout", "1"], &[]));
    assert_eq!(v["stuck"], 2);

    let text = stdout(&run(&db, &["status"], &[]));
    for want in [
        "Total calls:        4",
        "In progress:        2",
        "Stuck (> 30m):      1",
        "2001 (2 calls)",
        "Daemon: not running",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }

    // after a cleanup: the close by reason and the run
    let cleaned = json(&run(&db, &["cleanup", "--yes", "--json"], &[]));
    let run_id = cleaned["run_id"].as_str().unwrap();
    let v = json(&run(&db, &["status", "--json"], &[]));
    assert_eq!(v["in_progress"], 1);
    assert_eq!(v["stuck"], 0);
    assert_eq!(v["busy_extensions"].as_array().unwrap().len(), 0);
    assert_eq!(v["closes_last_24h"]["timeout_cleanup"], 1);
    assert_eq!(v["last_run"]["run_id"], run_id);
    assert_eq!(v["last_run"]["closed"], 1);
    let text = stdout(&run(&db, &["status"], &[]));
    assert!(text.contains("timeout_cleanup    1"), "{text}");
    assert!(text.contains(&format!("Last run: {run_id}")), "{text}");
}

async fn daemon_state_from_its_endpoint(engine: Engine) {
    let Some(db) = seeded(engine, &rows()).await else {
        return;
    };
    let health = callwatch::health::Health::new(chrono::Utc::now());
    health.update(|s| {
        s.lock_held = true;
        s.database_ok = true;
    });
    health.set_server(callwatch::health::ServerHealth {
        name: "pbx1".into(),
        state: "synced".into(),
        connected: true,
        synced: true,
        channels_live: 7,
        ..Default::default()
    });
    health.set_server(callwatch::health::ServerHealth {
        name: "pbx2".into(),
        state: "disconnected".into(),
        last_error: Some("AMI connection lost: eof".into()),
        ..Default::default()
    });
    let router = callwatch::http::router(
        health,
        None,
        chrono::Duration::minutes(2),
        std::sync::Arc::new(clock::SystemClock),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _task) = callwatch::http::serve("127.0.0.1:0", router, cancel.clone())
        .await
        .unwrap();
    let listen = addr.to_string();
    let env = [("CALLWATCH_HTTP_LISTEN", listen.as_str())];

    let v = json(&run_async(&db, &["status", "--json"], &env).await);
    assert_eq!(v["daemon"]["running"], true, "{v}");
    let servers = v["daemon"]["status"]["servers"].as_array().unwrap();
    assert_eq!(servers[0]["name"], "pbx1");
    assert_eq!(servers[0]["synced"], true);
    assert_eq!(servers[1]["synced"], false);

    let text = stdout(&run_async(&db, &["status"], &env).await);
    for want in [
        "Daemon: running",
        "holds the lock",
        "AMI pbx1: connected, synced, 7 channel(s) up",
        "AMI pbx2: not connected, NOT synced",
        "last error: AMI connection lost: eof",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    cancel.cancel();
}

macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod sqlite { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::Sqlite).await } )* }
        mod postgres { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::Postgres).await } )* }
        mod mysql { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::MySql).await } )* }
    };
}

on_every_engine!(counts_and_busy_extensions, daemon_state_from_its_endpoint);

/// A database password given in the URL appears nowhere: not in `status` (which names the database), not in
/// `cleanup`'s output or debug logs, not in the error when the database is unreachable.
#[tokio::test]
async fn database_passwords_are_never_printed() {
    const PASSWORD: &str = "db-pass-4242";
    let check = |out: &std::process::Output| {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(PASSWORD), "password printed:\n{all}");
        all
    };
    // unreachable: an error (exit 1) that names the database without its password
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(&config, "[database]\nacquire_timeout = \"1s\"\n").unwrap();
    let config = config.display().to_string();
    for cmd in [
        &["status"][..],
        &["cleanup", "--yes"],
        &["undo", "--since", "1h"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--log", "debug", "--config", &config]);
        let out = crate::cleanup::exec(
            &format!("postgres://app:{PASSWORD}@127.0.0.1:1/calls"),
            &args,
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", check(&out));
        check(&out);
    }
    // reachable (PostgreSQL on trust authentication accepts any password)
    let Some(db) = seeded(Engine::Postgres, &rows()).await else {
        return;
    };
    let url = db
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert!(url.contains(PASSWORD));
    let out = crate::cleanup::exec(&url, &["--log", "debug", "status"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", check(&out));
    assert!(check(&out).contains("postgres://postgres"));
    let out = crate::cleanup::exec(&url, &["--log", "debug", "cleanup", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", check(&out));
    check(&out);
}
