//! `callwatch cleanup` (and `undo`) end to end on SQLite, PostgreSQL and MariaDB: the seed's parity case (a
//! 45-minute-old and a 5-minute-old call on extension 2001: only the first is closed), the prompt, the
//! refusal without a terminal, `--dry-run`, `--yes` / `--no-interaction`, `--json`, the instance lock, the
//! fallback when AMI does not answer, and a reachable AMI (the testkit's scripted PBX) that keeps live calls
//! and closes gone ones as `channel_gone`. No output may contain the AMI secret.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use ami_testkit::{PbxServer, ScriptedPbx};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

/// The AMI secret of the tests; it must never be printed.
pub const SECRET: &str = "lab-secret";

/// Runs the built binary on the database at `url` with `args`: no terminal on stdin, no configuration from
/// the environment, the daemon's HTTP address pointed at a closed port unless `env` says otherwise. Fails
/// the test if any output contains the AMI secret.
pub fn exec(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callwatch"));
    cmd.args(args)
        .arg("--database")
        .arg(url)
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_AMI_URL")
        .env_remove("CALLWATCH_TIMEOUT")
        .env("CALLWATCH_LOG", "info")
        .env("NO_COLOR", "1")
        .env("CALLWATCH_HTTP_LISTEN", "127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET), "the AMI secret was printed:\n{all}");
    out
}

/// [`exec`] on `db`.
pub fn run(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    exec(db.url(), args, env)
}

/// [`run`] on a blocking thread, so that servers of the test's runtime keep serving meanwhile.
pub async fn run_async(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    let url = db.url().to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        exec(&url, &args, &env)
    })
    .await
    .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", stdout(out), stderr(out)))
}

/// `t` as the table stores it (UTC, whole seconds).
pub fn sql_time(t: DateTime<Utc>) -> String {
    t.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

/// Now, to the second (as the table stores times).
pub fn now_s() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

/// One row to seed.
pub struct Row<'a> {
    pub id: i64,
    pub extension: &'a str,
    pub uniqueid: Option<&'a str>,
    pub linkedid: Option<&'a str>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl<'a> Row<'a> {
    /// An answered, unended call on `extension`, answered `minutes` ago.
    pub fn open(id: i64, extension: &'a str, minutes: i64, uniqueid: Option<&'a str>) -> Self {
        Row {
            id,
            extension,
            uniqueid,
            linkedid: None,
            answered_at: Some(now_s() - Duration::minutes(minutes)),
            ended_at: None,
        }
    }
}

fn text(v: Option<&str>) -> String {
    v.map_or("NULL".into(), |s| format!("'{s}'"))
}

/// A migrated database holding `rows`; `None` when the engine is down outside CI.
pub async fn seeded(engine: Engine, rows: &[Row<'_>]) -> Option<TestDb> {
    let db = TestDb::create(engine).await?;
    db.store().await.shutdown().await; // migrated
    for r in rows {
        let status = match (r.answered_at, r.ended_at) {
            (_, Some(_)) => "completed",
            (Some(_), None) => "in_progress",
            _ => "ringing",
        };
        let ts = |t: Option<DateTime<Utc>>| t.map_or("NULL".into(), sql_time);
        db.exec(&format!(
            "INSERT INTO calls (id, uniqueid, linkedid, extension, status, answered_at, ended_at, created_at, updated_at) \
             VALUES ({}, {}, {}, '{}', '{status}', {}, {}, {}, {})",
            r.id,
            text(r.uniqueid),
            text(r.linkedid),
            r.extension,
            ts(r.answered_at),
            ts(r.ended_at),
            ts(r.answered_at),
            ts(r.answered_at),
        ))
        .await;
    }
    Some(db)
}

/// `(ended_at, talk_seconds, hangup_cause, status)` of row `id`.
pub async fn row(
    db: &TestDb,
    id: i64,
) -> (Option<String>, Option<i64>, Option<String>, Option<String>) {
    let store = db.store().await;
    let (text, int) = match db.engine() {
        Engine::Postgres => ("VARCHAR(19)", "BIGINT"),
        Engine::MySql => ("CHAR(19)", "SIGNED"),
        _ => ("TEXT", "INTEGER"),
    };
    let r = sqlx::query_as(&format!(
        "SELECT CAST(ended_at AS {text}), CAST(talk_seconds AS {int}), hangup_cause, status FROM calls WHERE id = {id}"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    r
}

/// The reasons of the audit rows of call `id`, oldest first.
async fn audit_reasons(db: &TestDb, id: i64) -> Vec<String> {
    let store = db.store().await;
    let rows: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT reason FROM call_closures WHERE call_id = '{id}' AND outcome = 'closed' ORDER BY id"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    rows.into_iter().map(|r| r.0).collect()
}

/// The seed's parity case: a 45-minute-old and a 5-minute-old call on extension 2001.
fn parity_rows() -> Vec<Row<'static>> {
    vec![
        Row::open(1, "2001", 45, Some("1795000000.1")),
        Row::open(2, "2001", 5, Some("1795000000.2")),
    ]
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

async fn assert_untouched(db: &TestDb) {
    for id in [1, 2] {
        assert_eq!(row(db, id).await.0, None, "row {id} was changed");
    }
    assert!(audit_reasons(db, 1).await.is_empty());
}

async fn refuses_without_a_terminal(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let out = run(&db, &["cleanup"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no terminal") && err.contains("--yes"),
        "{err}"
    );
    // the list is shown: the old call, not the young one
    let text = stdout(&out);
    assert!(text.contains("To close (1)"), "{text}");
    assert!(text.contains("timeout_cleanup"), "{text}");
    assert_untouched(&db).await;
}

async fn dry_run_lists_and_changes_nothing(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let out = run(&db, &["cleanup", "--dry-run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["outcome"], "dry_run");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["timeout_minutes"], 30);
    assert_eq!(ids(&v["to_close"]), [1]);
    assert_eq!(v["to_close"][0]["reason"], "timeout_cleanup");
    assert_eq!(v["to_close"][0]["extension"], "2001");
    assert_eq!(v["closed"].as_array().unwrap().len(), 0);
    assert!(v["run_id"].is_null());
    // the text dry run says the same
    let out = run(&db, &["cleanup", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Dry run: 1 stuck call(s) would be closed"));
    // a longer timeout finds nothing
    let out = run(&db, &["cleanup", "--dry-run", "--timeout", "60"], &[]);
    assert!(
        stdout(&out).contains("No stuck calls found."),
        "{}",
        stdout(&out)
    );
    assert_untouched(&db).await;
}

async fn yes_closes_only_the_old_call(engine: Engine) {
    let rows = parity_rows();
    let answered = rows[0].answered_at.unwrap();
    let Some(db) = seeded(engine, &rows).await else {
        return;
    };
    let out = run(&db, &["cleanup", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Closed 1 stuck call(s)"),
        "{}",
        stdout(&out)
    );
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|l| l.contains("Stuck call cleaned up"))
        .unwrap_or_else(|| panic!("no close logged: {log}"));
    for field in [
        "call_id=1",
        "extension=\"2001\"",
        "reason=timeout_cleanup",
        "talk_seconds=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let (ended, talk, cause, status) = row(&db, 1).await;
    let ended = ended.expect("row 1 closed");
    let ended_t = chrono::NaiveDateTime::parse_from_str(&ended, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc();
    assert!(
        (ended_t - now_s()).num_seconds().abs() < 120,
        "ended_at {ended} is not now"
    );
    assert_eq!(talk, Some((ended_t - answered).num_seconds()));
    assert!(talk.unwrap() >= 45 * 60);
    assert_eq!(cause.as_deref(), Some("timeout_cleanup"));
    assert_eq!(status.as_deref(), Some("completed"));
    assert_eq!(
        row(&db, 2).await.0,
        None,
        "the 5-minute-old call was closed"
    );
    assert_eq!(audit_reasons(&db, 1).await, ["timeout_cleanup"]);
}

async fn no_interaction_json_and_json_logs(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let out = run(
        &db,
        &[
            "--log-format",
            "json",
            "cleanup",
            "--no-interaction",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["outcome"], "closed");
    assert_eq!(ids(&v["closed"]), [1]);
    let closed = &v["closed"][0];
    assert_eq!(closed["reason"], "timeout_cleanup");
    assert_eq!(closed["hangup_cause"], "timeout_cleanup");
    assert!(closed["closure_id"].as_i64().is_some());
    assert!(v["run_id"].as_str().unwrap().starts_with("cleanup-"));
    // every log line is JSON; the close is logged with the seed's phrase and fields
    let logs: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let close = logs
        .iter()
        .find(|l| l["fields"]["message"] == "Stuck call cleaned up")
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(close["fields"]["call_id"], "1");
    assert_eq!(close["fields"]["reason"], "timeout_cleanup");
    assert_eq!(close["fields"]["extension"], "2001");
    assert!(close["fields"]["ended_at"].is_string());
    assert!(close["fields"]["talk_seconds"].as_i64().unwrap() >= 45 * 60);
    // -n is --no-interaction; a second run finds nothing
    let out = run(&db, &["cleanup", "-n", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["outcome"], "nothing_to_do");
    assert_eq!(row(&db, 2).await.0, None);
}

async fn a_held_lock_stops_it(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let store = db.store().await;
    let lock = store
        .acquire_lock(callwatch::oneshot::LOCK_NAME)
        .await
        .unwrap()
        .unwrap();
    let out = run(&db, &["cleanup", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds the instance lock"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&db).await;
    // a dry run still lists, and says what a real run would do
    let out = run(&db, &["cleanup", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("code 3"), "{}", stdout(&out));
    lock.release().await.unwrap();
    store.shutdown().await;
    let out = run(&db, &["cleanup", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(row(&db, 1).await.0.is_some());
}

async fn unreachable_ami_falls_back_to_the_timeout_rule(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("ami://watchdog:{SECRET}@{closed_port}?server=pbx1");
    let out = run(
        &db,
        &[
            "cleanup",
            "--ami",
            &url,
            "--ami-wait",
            "1s",
            "--yes",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("falling back"), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["servers"][0]["name"], "pbx1");
    assert_eq!(v["servers"][0]["synced"], false);
    assert_eq!(ids(&v["closed"]), [1]);
    assert_eq!(v["closed"][0]["reason"], "timeout_cleanup");
    assert_eq!(row(&db, 2).await.0, None);
}

/// A PBX with one answered call 2001 → 3001; returns the server and (caller uniqueid, linkedid).
pub async fn pbx_with_a_live_call() -> (PbxServer, String, String) {
    let pbx = ScriptedPbx::new(Utc::now()).with_credentials("watchdog", SECRET);
    let server = PbxServer::start(pbx, "127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let (uniqueid, linkedid) = server.with(|p| {
        let call = p.start_call("2001", "3001");
        p.answer(call).unwrap();
        let c = &p.channels()[0];
        (c.uniqueid.clone(), c.linkedid.clone())
    });
    (server, uniqueid, linkedid)
}

async fn reachable_ami_keeps_live_calls_and_closes_gone_ones(engine: Engine) {
    let (pbx, uniqueid, linkedid) = pbx_with_a_live_call().await;
    let gone = "1795000000.77";
    let young_gone = "1795000000.78";
    let mut by_linkedid = Row::open(4, "2004", 50, None);
    by_linkedid.linkedid = Some(&linkedid);
    let rows = vec![
        Row::open(1, "2001", 45, Some(&uniqueid)),
        Row::open(2, "2002", 45, Some(gone)),
        Row::open(3, "2003", 5, Some(young_gone)),
        by_linkedid,
    ];
    let answered_2 = rows[1].answered_at.unwrap();
    let Some(db) = seeded(engine, &rows).await else {
        return;
    };
    let url = format!("ami://watchdog:{SECRET}@{}?server=pbx1", pbx.local_addr());

    let out = run_async(&db, &["cleanup", "--ami", &url, "--dry-run", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dry = json(&out);
    assert_eq!(dry["servers"][0]["synced"], true, "{dry}");
    assert_eq!(ids(&dry["long_but_live"]), [4, 1]);
    assert_eq!(ids(&dry["to_close"]), [2]);
    assert_eq!(row(&db, 2).await.0, None);

    // the text list says which calls are long but live
    let out = run_async(&db, &["cleanup", "--ami", &url, "--dry-run"], &[]).await;
    let text = stdout(&out);
    assert!(text.contains("Long but live, kept (2)"), "{text}");
    assert!(text.contains("channel_gone"), "{text}");

    let out = run_async(&db, &["cleanup", "--ami", &url, "--yes", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(ids(&v["closed"]), [2]);
    let c = &v["closed"][0];
    assert_eq!(c["reason"], "channel_gone");
    assert_eq!(c["hangup_cause"], "channel_gone");
    let ts = |v: &Value| {
        DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    // never seen alive: ended at the listing, bounds [answered_at, listing]
    let listing = ts(&v["servers"][0]["listing_at"]);
    assert_eq!(ts(&c["ended_after"]), answered_2);
    assert_eq!(ts(&c["ended_before"]), listing);
    // (the table keeps whole seconds)
    assert_eq!(ts(&c["ended_at"]).timestamp(), listing.timestamp());
    assert_eq!(
        c["talk_seconds"].as_i64().unwrap(),
        (DateTime::from_timestamp(listing.timestamp(), 0).unwrap() - answered_2).num_seconds()
    );
    for id in [1, 3, 4] {
        assert_eq!(row(&db, id).await.0, None, "row {id} was closed");
    }
    assert_eq!(row(&db, 2).await.2.as_deref(), Some("channel_gone"));
    assert_eq!(audit_reasons(&db, 2).await, ["channel_gone"]);
    assert!(stderr(&out).contains("Stuck call cleaned up"));
    drop(pbx);
}

async fn undo_restores_a_cleanup_run(engine: Engine) {
    let Some(db) = seeded(engine, &parity_rows()).await else {
        return;
    };
    let out = run(&db, &["cleanup", "--yes", "--json"], &[]);
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    assert!(row(&db, 1).await.0.is_some());

    let out = run(&db, &["undo", "--run", &run_id, "--dry-run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["restored"][0]["call_id"], 1);
    assert!(row(&db, 1).await.0.is_some(), "a dry run restored the row");

    let out = run(&db, &["undo", "--run", &run_id], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Restored 1 call(s)"),
        "{}",
        stdout(&out)
    );
    let (ended, talk, cause, status) = row(&db, 1).await;
    assert_eq!((ended, talk, cause), (None, None, None));
    assert_eq!(status.as_deref(), Some("in_progress"));
    let out = run(&db, &["undo", "--run", &run_id], &[]);
    assert!(stdout(&out).contains("Nothing to undo"), "{}", stdout(&out));

    // closed again, then changed by the application: not undone (exit 4)
    run(&db, &["cleanup", "--yes"], &[]);
    db.exec("UPDATE calls SET hangup_cause = 'normal_clearing' WHERE id = 1")
        .await;
    let out = run(&db, &["undo", "--since", "1h", "--json"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["conflicts"][0]["call_id"], 1);
    assert_eq!(row(&db, 1).await.2.as_deref(), Some("normal_clearing"));

    // one selector is required
    let out = run(&db, &["undo"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod sqlite { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::Sqlite).await } )* }
        mod postgres { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::Postgres).await } )* }
        mod mysql { use super::*; $( #[tokio::test] async fn $name() { super::$name(Engine::MySql).await } )* }
    };
}

on_every_engine!(
    refuses_without_a_terminal,
    dry_run_lists_and_changes_nothing,
    yes_closes_only_the_old_call,
    no_interaction_json_and_json_logs,
    a_held_lock_stops_it,
    unreachable_ami_falls_back_to_the_timeout_rule,
    reachable_ami_keeps_live_calls_and_closes_gone_ones,
    undo_restores_a_cleanup_run,
);

/// Runs `callwatch cleanup` on a pseudo-terminal (util-linux `script`), answering `answer`.
fn on_a_terminal(db: &TestDb, answer: &str) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux `script` is not installed (no pseudo-terminal test)");
        return None;
    }
    let cmd = format!(
        "{} cleanup --database '{}'",
        env!("CARGO_BIN_EXE_callwatch"),
        db.url()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_AMI_URL")
        .env("CALLWATCH_HTTP_LISTEN", "127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(answer.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    Some((out.status.code().unwrap_or(-1), text))
}

#[tokio::test]
async fn prompt_on_a_terminal() {
    let Some(db) = seeded(Engine::Sqlite, &parity_rows()).await else {
        return;
    };
    let Some((code, text)) = on_a_terminal(&db, "n\n") else {
        return;
    };
    assert!(text.contains("Close 1 stuck call? [y/N]"), "{text}");
    assert!(text.contains("Nothing was changed."), "{text}");
    assert_eq!(code, 2, "{text}");
    assert_untouched(&db).await;

    let (code, text) = on_a_terminal(&db, "y\n").unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Closed 1 stuck call(s)"), "{text}");
    assert!(row(&db, 1).await.0.is_some());
    assert_eq!(row(&db, 2).await.0, None);
}

/// Seeds 60 old rows whose channels are gone (plus, with `live_young`, a young row on the PBX's live call).
async fn mass_close_db(live_young: Option<&str>) -> Option<TestDb> {
    let gone: Vec<String> = (0..60).map(|i| format!("1795000000.{}", 100 + i)).collect();
    let mut rows: Vec<Row<'_>> = gone
        .iter()
        .enumerate()
        .map(|(i, u)| Row::open(i as i64 + 1, "2001", 60, Some(u)))
        .collect();
    if let Some(u) = live_young {
        rows.push(Row::open(100, "2002", 1, Some(u)));
    }
    seeded(Engine::Sqlite, &rows).await
}

#[tokio::test]
async fn a_mass_close_waits_for_a_confirming_listing() {
    let (pbx, uniqueid, _) = pbx_with_a_live_call().await;
    let Some(db) = mass_close_db(Some(&uniqueid)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(&config, "[policy]\nconfirm_delay = \"1s\"\n").unwrap();
    let config = config.display().to_string();
    let url = format!("ami://watchdog:{SECRET}@{}?server=pbx1", pbx.local_addr());
    let out = run_async(
        &db,
        &[
            "--config", &config, "cleanup", "--ami", &url, "--yes", "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("mass close"), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["closed"].as_array().unwrap().len(), 60, "{v}");
    assert_eq!(v["held"].as_array().unwrap().len(), 0);
    assert!(v["closed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["reason"] == "channel_gone"));
    // the confirming listing is the one the closes were decided on
    let listing = v["servers"][0]["listing_at"].as_str().unwrap().to_string();
    assert_eq!(v["closed"][0]["ended_before"].as_str().unwrap(), listing);
    assert_eq!(row(&db, 100).await.0, None);
    drop(pbx);
}

#[tokio::test]
async fn ids_that_never_match_close_nothing_and_exit_4() {
    let (pbx, _, _) = pbx_with_a_live_call().await;
    let Some(db) = mass_close_db(None).await else {
        return;
    };
    let url = format!("ami://watchdog:{SECRET}@{}?server=pbx1", pbx.local_addr());
    let out = run_async(&db, &["cleanup", "--ami", &url, "--yes", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["held"].as_array().unwrap().len(), 60);
    assert_eq!(v["held"][0]["why"], "ids_never_matched");
    assert_eq!(v["closed"].as_array().unwrap().len(), 0);
    for id in [1, 60] {
        assert_eq!(row(&db, id).await.0, None);
    }
    drop(pbx);
}
