//! Ghost channels (issue 14, item 6): Asterisk can keep a channel after its call is gone, and every
//! listing shows it. The `callwatch` binary runs against the scripted PBX on SQLite: a row kept alive by a
//! channel longer than `max_call_duration` is counted (`callwatch_suspect_ghost_calls`), listed in the
//! daemon's `/status` and in `callwatch status` with the channel name, warned about once, and left open;
//! with `close_ghosts = true` it is closed as `ghost_channel` with bounds [last activity, now].

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

use crate::daemon::{closed, eventually, insert_row, pbx_with_call, row, DEADLINE};

/// A `callwatch run` process with the configuration file `config` on `db`, logging to `log`.
pub(crate) fn spawn(config: &Path, db: &TestDb, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--database",
            db.url(),
        ])
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("CALLWATCH_AMI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn http_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP endpoints listening"))?;
    let at = line.find("addr=")? + 5;
    Some(line[at..].split_whitespace().next()?.to_string())
}

async fn get(addr: &str, path: &str) -> String {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `(reason, ended_after, ended_before)` of row `id`'s audit record.
async fn audit(db: &TestDb, id: i64) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let store = db.store().await;
    let (reason, after, before): (String, String, String) = sqlx::query_as(&format!(
        "SELECT reason, SUBSTR(CAST(ended_after AS TEXT), 1, 19), \
         SUBSTR(CAST(ended_before AS TEXT), 1, 19) FROM call_closures WHERE call_id = '{id}'"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    let t = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    };
    (reason, t(&after), t(&before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghost_channel_is_reported_and_closed_only_when_asked() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, _call, agent) = pbx_with_call("2001").await;
    let name = pbx.with(|p| {
        p.channels()
            .iter()
            .find(|c| c.uniqueid == agent)
            .map(|c| c.name.clone())
            .unwrap()
    });
    let now = Utc::now();
    // 1: kept alive by the agent's channel for 5 h; 2: the same channel, for an hour; 3: an unknown
    // Uniqueid, but the live channel's name, answered 10 minutes ago (in the scripted PBX's boot).
    insert_row(&db, 1, &agent, "2001", now - chrono::Duration::hours(5)).await;
    insert_row(&db, 2, &agent, "2001", now - chrono::Duration::hours(1)).await;
    insert_row(
        &db,
        3,
        "1700000000.5",
        "2002",
        now - chrono::Duration::minutes(10),
    )
    .await;
    db.exec(&format!(
        "UPDATE calls SET server = 'pbx1', channel = '{name}'"
    ))
    .await;

    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str, listen: &str| {
        format!(
            "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [http]\nlisten = \"{listen}\"\n[policy]\nsweep_interval = \"1s\"\n{extra}",
            pbx.local_addr()
        )
    };
    let reporting = dir.path().join("reporting.toml");
    std::fs::write(&reporting, config("", "127.0.0.1:0")).unwrap();
    let log_path = dir.path().join("reporting.log");
    let mut child = spawn(&reporting, &db, &log_path);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let addr = eventually("the HTTP address in the log", || async {
        http_addr(&read_log())
    })
    .await;
    let deadline = std::time::Instant::now() + DEADLINE;
    let status: Value = loop {
        let m = get(&addr, "/metrics").await;
        let status: Value = serde_json::from_str(&get(&addr, "/status").await).unwrap();
        if m.contains("callwatch_suspect_ghost_calls{server=\"pbx1\"} 1") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no suspected ghost counted:\n{m}\n{status}\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ghosts = status["suspect_ghosts"].as_array().unwrap();
    assert_eq!(ghosts.len(), 1, "{status}");
    assert_eq!(ghosts[0]["call_id"], "1");
    assert_eq!(ghosts[0]["server"], "pbx1");
    assert_eq!(ghosts[0]["channel"], name.as_str());
    assert_eq!(ghosts[0]["uniqueid"], agent.as_str());
    // `callwatch status` asks the daemon and lists it with the channel name
    let asking = dir.path().join("asking.toml");
    std::fs::write(&asking, config("", &addr)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "status",
            "--config",
            asking.to_str().unwrap(),
            "--database",
            db.url(),
        ])
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Suspected ghost calls (1)") && text.contains(&format!("channel {name}")),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // several rounds later: warned once, nothing closed
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = read_log();
    assert_eq!(
        log.matches("suspected ghost channel").count(),
        1,
        "warned once over several rounds:\n{log}"
    );
    assert!(!log.contains("lab-secret"), "{log}");
    for id in [1, 2, 3] {
        assert_eq!(row(&db, id).await.0, None, "row {id} closed:\n{log}");
    }

    // close_ghosts = true: row 1 closes as ghost_channel, bounds [last activity, now]
    let closing = dir.path().join("closing.toml");
    std::fs::write(&closing, config("close_ghosts = true\n", "127.0.0.1:0")).unwrap();
    let log_path = dir.path().join("closing.log");
    let started = Utc::now();
    let mut child = spawn(&closing, &db, &log_path);
    let result = tokio::time::timeout(DEADLINE, closed(&db, 1, "row 1 closed")).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (ended_at, cause) = result.unwrap_or_else(|_| panic!("row 1 not closed:\n{log}"));
    assert_eq!(cause.as_deref(), Some("ghost_channel"));
    let (reason, after, before) = audit(&db, 1).await;
    assert_eq!(reason, "ghost_channel");
    // this daemon knows the channel from its first listing only: that is its last activity; the close
    // is decided after it (times are whole seconds in the table)
    let second = chrono::Duration::seconds(1);
    assert!(
        started - second <= after && after <= ended_at && ended_at <= before,
        "{started} {after} {ended_at} {before}"
    );
    assert!(before <= Utc::now(), "{before}");
    for id in [2, 3] {
        assert_eq!(row(&db, id).await.0, None, "row {id} closed:\n{log}");
    }
}
