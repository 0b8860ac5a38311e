//! Exact end times from Asterisk's CDRs (issue 18), end to end on SQLite, PostgreSQL and MariaDB: the
//! calls table is seeded from the disconnect-gap recording's truth.json as in `replay.rs`, and a FreePBX
//! `cdr` table (or a Master.csv) is built from the same truth: one record per channel that hung up, whole
//! seconds, written in the CDR's own timezone (Europe/Berlin) the way Asterisk writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

use crate::common::{callwatch, fixtures};
use crate::replay::{plan, subject_sessions, ts, Expect, Seeded};

const SCENARIO: &str = "disconnect-gap";
const CDR_TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// One CDR as Asterisk writes it for a channel.
#[derive(Debug, Clone)]
struct Cdr {
    uniqueid: String,
    linkedid: String,
    channel: String,
    start: DateTime<Utc>,
    answer: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
}

impl Cdr {
    fn floor(t: DateTime<Utc>) -> DateTime<Utc> {
        t.duration_trunc(Duration::seconds(1)).unwrap()
    }
    /// `calldate` / `start` as written (whole seconds, local time of the CDR database).
    fn local(t: DateTime<Utc>) -> String {
        Self::floor(t)
            .with_timezone(&CDR_TZ)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }
    /// Whole seconds from start to end, truncated as Asterisk does.
    fn duration(&self) -> i64 {
        (self.end - self.start).num_milliseconds() / 1000
    }
    fn billsec(&self) -> i64 {
        self.answer
            .map(|a| (self.end - a).num_milliseconds() / 1000)
            .unwrap_or(0)
    }
    /// The end the record states (start + duration).
    fn stated_end(&self) -> DateTime<Utc> {
        Self::floor(self.start) + Duration::seconds(self.duration())
    }
}

fn truth() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{SCENARIO}.truth.json"))).unwrap(),
    )
    .unwrap()
}

/// A record for every channel of the truth that hung up.
fn cdrs(truth: &Value) -> Vec<Cdr> {
    let mut out = Vec::new();
    for call in truth["calls"].as_array().unwrap() {
        for ch in call["channels"].as_array().unwrap() {
            let (Some(start), Some(end)) = (ts(&ch["created_at"]), ts(&ch["ended_at"])) else {
                continue;
            };
            out.push(Cdr {
                uniqueid: ch["uniqueid"].as_str().unwrap().into(),
                linkedid: ch["linkedid"].as_str().unwrap().into(),
                channel: ch["channel"].as_str().unwrap().into(),
                start,
                answer: ts(&ch["answered_at"]),
                end,
            });
        }
    }
    out
}

/// FreePBX's `asteriskcdrdb.cdr` (the columns callwatch reads, and the ones around them).
fn cdr_table_sql(engine: Engine) -> String {
    let ts = match engine {
        Engine::Postgres => "timestamp",
        _ => "datetime",
    };
    format!(
        "CREATE TABLE cdr (calldate {ts} NOT NULL, clid varchar(80) NOT NULL DEFAULT '', \
         src varchar(80) NOT NULL DEFAULT '', dst varchar(80) NOT NULL DEFAULT '', \
         dcontext varchar(80) NOT NULL DEFAULT '', channel varchar(80) NOT NULL DEFAULT '', \
         dstchannel varchar(80) NOT NULL DEFAULT '', lastapp varchar(80) NOT NULL DEFAULT '', \
         lastdata varchar(80) NOT NULL DEFAULT '', duration int NOT NULL DEFAULT 0, \
         billsec int NOT NULL DEFAULT 0, disposition varchar(45) NOT NULL DEFAULT '', \
         amaflags int NOT NULL DEFAULT 0, accountcode varchar(20) NOT NULL DEFAULT '', \
         uniqueid varchar(32) NOT NULL DEFAULT '', userfield varchar(255) NOT NULL DEFAULT '', \
         linkedid varchar(32) NOT NULL DEFAULT '', sequence int NOT NULL DEFAULT 0)"
    )
}

fn insert_sql(c: &Cdr, shift: Duration) -> String {
    format!(
        "INSERT INTO cdr (calldate, channel, duration, billsec, disposition, uniqueid, linkedid) \
         VALUES ('{}', '{}', {}, {}, 'ANSWERED', '{}', '{}')",
        Cdr::local(c.start + shift),
        c.channel,
        c.duration(),
        c.billsec(),
        c.uniqueid,
        c.linkedid
    )
}

/// A configuration file with `[cdr]` (and `extra` lines in it).
fn config_file(dir: &Path, cdr: &str) -> PathBuf {
    let path = dir.join("callwatch.toml");
    std::fs::write(&path, format!("[cdr]\n{cdr}")).unwrap();
    path
}

/// Runs `callwatch replay --json` (with `args` first); returns the JSON and stderr.
fn replay(db: &TestDb, config: Option<&Path>, extra: &[&str]) -> (Value, String) {
    let truth = truth();
    let mut args: Vec<String> = Vec::new();
    if let Some(c) = config {
        args.extend(["--config".into(), c.display().to_string()]);
    }
    args.extend([
        "replay".into(),
        "--database".into(),
        db.url().into(),
        "--json".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(
        subject_sessions(SCENARIO, &truth)
            .iter()
            .map(|p| p.display().to_string()),
    );
    let out = callwatch(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "replay failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        stderr,
    )
}

/// Seeds the calls table; returns the seeded rows.
async fn seed(db: &TestDb) -> Vec<Seeded> {
    let (rows, inserts) = plan(&truth());
    db.store().await.shutdown().await; // migrated
    for sql in &inserts {
        db.exec(sql).await;
    }
    rows
}

/// The closes of a replay by row id.
fn closed(report: &Value) -> BTreeMap<i64, Value> {
    report["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_i64().unwrap(), c.clone()))
        .collect()
}

/// The rows closed without a seen Hangup, with their true end.
fn unseen(rows: &[Seeded]) -> Vec<(i64, DateTime<Utc>)> {
    rows.iter()
        .filter_map(|r| match r.expect {
            Expect::Bounded(t) => Some((r.id, t)),
            _ => None,
        })
        .collect()
}

/// The worst |ended_at − truth| over the unseen ends, in milliseconds.
fn worst(report: &Value, unseen: &[(i64, DateTime<Utc>)]) -> i64 {
    let closed = closed(report);
    unseen
        .iter()
        .map(|(id, truth)| {
            let c = &closed[id];
            (ts(&c["ended_at"]).unwrap() - *truth)
                .num_milliseconds()
                .abs()
        })
        .max()
        .unwrap()
}

async fn text_rows(db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let store = db.store().await;
    let rows = sqlx::query(sql).fetch_all(store.pool()).await.unwrap();
    let out = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect();
    store.shutdown().await;
    out
}

async fn ended_at_of(db: &TestDb, engine: Engine, id: i64) -> Option<String> {
    let sql = format!(
        "SELECT {} FROM calls WHERE id = {id}",
        as_text(engine, "ended_at")
    );
    text_rows(db, &sql).await[0][0].clone()
}

fn as_text(engine: Engine, col: &str) -> String {
    match engine {
        Engine::Postgres => format!("CAST({col} AS VARCHAR(19))"),
        Engine::MySql => format!("CAST({col} AS CHAR(19))"),
        _ => format!("CAST({col} AS TEXT)"),
    }
}

/// Every unseen end of the recorded outage within 1.5 s of the truth, from the CDR table; a decoy record
/// per channel whose end lies after the replay's virtual now is never used.
async fn check_table(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let rows = seed(&db).await;
    let unseen = unseen(&rows);
    assert!(!unseen.is_empty(), "the recording has an outage");
    let truth = truth();
    let records = cdrs(&truth);
    db.exec(&cdr_table_sql(engine)).await;
    let last_left = ts(&truth["live_when_last_subject_left"]["at"]).unwrap();
    for c in &records {
        db.exec(&insert_sql(c, Duration::zero())).await;
        // The same channel again, claiming it lasted until ten minutes after the recording: a record from
        // the replay's future (were it seen, it would be the latest and fall outside the window).
        let future = Cdr {
            end: last_left + Duration::minutes(10),
            ..c.clone()
        };
        db.exec(&insert_sql(&future, Duration::zero())).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!("url = \"{}\"\ntimezone = \"Europe/Berlin\"\n", db.url()),
    );

    // Before: the evidence's end times (a dry run without [cdr]).
    let (before, _) = replay(&db, None, &["--dry-run"]);
    let worst_before = worst(&before, &unseen);

    let (report, stderr) = replay(&db, Some(&cfg), &[]);
    let closed = closed(&report);
    for (id, truth_end) in &unseen {
        let c = &closed[id];
        assert_eq!(c["ended_at_source"], "cdr", "{engine:?} row {id}: {c}");
        let ended_at = ts(&c["ended_at"]).unwrap();
        let diff = (ended_at - *truth_end).num_milliseconds().abs();
        assert!(
            diff <= 1500,
            "{engine:?} row {id}: ended_at {ended_at} vs truth {truth_end}"
        );
        assert!(
            ts(&c["ended_after"]).unwrap() <= ended_at
                && ended_at <= ts(&c["ended_before"]).unwrap()
        );
    }
    for r in &rows {
        if let (Expect::HangupSeen(_), Some(c)) = (&r.expect, closed.get(&r.id)) {
            assert_eq!(c["ended_at_source"], "evidence", "row {}", r.id);
        }
    }
    assert!(!stderr.contains("CDR ignored"), "{stderr}");
    let worst_after = worst(&report, &unseen);
    eprintln!(
        "{engine:?} {SCENARIO}: {} unseen ends; worst |ended_at - truth| {} ms from the evidence, {} ms from the CDR table",
        unseen.len(),
        worst_before,
        worst_after
    );
    assert!(worst_after <= 1500 && worst_after < worst_before);

    // The audit says where each end came from, and the rows hold what the report says.
    let audit = text_rows(
        &db,
        "SELECT call_id, ended_at_source FROM call_closures WHERE outcome = 'closed'",
    )
    .await;
    let sources: BTreeMap<String, String> = audit
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap_or_default()))
        .collect();
    for (id, _) in &unseen {
        assert_eq!(sources[&id.to_string()], "cdr", "{engine:?} row {id}");
        let ended = text_rows(
            &db,
            &format!(
                "SELECT {} FROM calls WHERE id = {id}",
                as_text(engine, "ended_at")
            ),
        )
        .await;
        assert_eq!(
            ended[0][0].as_deref().unwrap(),
            ts(&closed[id]["ended_at"])
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        );
    }
    // Read-only: the CDR table is as the test wrote it.
    let n = text_rows(
        &db,
        &format!("SELECT {} FROM cdr", as_text(engine, "COUNT(*)")),
    )
    .await;
    assert_eq!(
        n[0][0].as_deref(),
        Some(records.len() * 2).map(|n| n.to_string()).as_deref()
    );
}

#[tokio::test]
async fn cdr_table_sqlite() {
    check_table(Engine::Sqlite).await;
}

#[tokio::test]
async fn cdr_table_postgres() {
    check_table(Engine::Postgres).await;
}

#[tokio::test]
async fn cdr_table_mysql() {
    check_table(Engine::MySql).await;
}

/// CDRs read through the wrong timezone (an hour off) end outside the evidence's windows: each is ignored
/// with a warning, and the evidence's end times are kept.
#[tokio::test]
async fn cdr_outside_the_window_is_ignored_with_a_warning() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    let rows = seed(&db).await;
    let unseen = unseen(&rows);
    db.exec(&cdr_table_sql(Engine::Sqlite)).await;
    for c in cdrs(&truth()) {
        db.exec(&insert_sql(&c, Duration::zero())).await;
    }
    let dir = tempfile::tempdir().unwrap();
    // Written in Berlin time, read as Tokyo time: every record eight hours early.
    let cfg = config_file(
        dir.path(),
        &format!("url = \"{}\"\ntimezone = \"Asia/Tokyo\"\n", db.url()),
    );
    let (report, stderr) = replay(&db, Some(&cfg), &[]);
    let closed = closed(&report);
    for (id, _) in &unseen {
        assert_eq!(closed[id]["ended_at_source"], "evidence", "row {id}");
    }
    assert!(
        stderr.contains("CDR ignored") && stderr.contains("outside the window"),
        "{stderr}"
    );
}

/// Master.csv in cdr_csv's layout with loguniqueid and newcdrcolumns (20 fields), `end` included.
#[tokio::test]
async fn cdr_master_csv() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    let rows = seed(&db).await;
    let unseen = unseen(&rows);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    let mut text = String::new();
    for c in cdrs(&truth()) {
        text.push_str(&format!(
            "\"\",\"5550000\",\"2000\",\"agents\",\"\"\"Caller\"\" <5550000>\",\"{}\",\"\",\"Dial\",\"PJSIP/2000,30\",\"{}\",\"{}\",\"{}\",{},{},\"ANSWERED\",\"DOCUMENTATION\",\"{}\",\"\",\"{}\",\"1\"\n",
            c.channel,
            Cdr::local(c.start),
            c.answer.map(Cdr::local).unwrap_or_default(),
            Cdr::local(c.end),
            c.duration(),
            c.billsec(),
            c.uniqueid,
            c.linkedid,
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            "csv = \"{}\"\ntimezone = \"Europe/Berlin\"\n",
            csv.display()
        ),
    );
    let (report, _) = replay(&db, Some(&cfg), &[]);
    let closed = closed(&report);
    for (id, truth_end) in &unseen {
        let c = &closed[id];
        assert_eq!(c["ended_at_source"], "cdr", "row {id}: {c}");
        let diff = (ts(&c["ended_at"]).unwrap() - *truth_end)
            .num_milliseconds()
            .abs();
        assert!(diff <= 1500, "row {id}: {c} vs {truth_end}");
    }
    eprintln!(
        "Master.csv {SCENARIO}: worst |ended_at - truth| {} ms",
        worst(&report, &unseen)
    );
}

/// A CDR that arrives after the close (batch mode) refines it in a later pass: never before the record's
/// end has come in the replay's virtual time, audited as `refined`, counted by `status`, and undone by
/// `callwatch undo` back to the close's values, after which the close itself can be undone.
async fn check_later_pass(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let rows = seed(&db).await;
    let unseen = unseen(&rows);
    db.exec(&cdr_table_sql(engine)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            "url = \"{}\"\ntimezone = \"Europe/Berlin\"\nrecheck_every = \"1s\"\n",
            db.url()
        ),
    );
    // The CDR table is still empty when the calls are closed.
    let (first, _) = replay(&db, Some(&cfg), &[]);
    let first_closed = closed(&first);
    for (id, _) in &unseen {
        assert_eq!(first_closed[id]["ended_at_source"], "evidence");
    }
    assert!(first["refined"].as_array().unwrap().is_empty());
    let records = cdrs(&truth());
    for c in &records {
        db.exec(&insert_sql(c, Duration::zero())).await;
    }
    // The same recording again: its rounds run the later pass as virtual time goes on.
    let (second, _) = replay(&db, Some(&cfg), &[]);
    assert!(closed(&second).is_empty());
    let refined: BTreeMap<i64, Value> = second["refined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["call_id"].as_i64().unwrap(), r.clone()))
        .collect();
    for (id, truth_end) in &unseen {
        let r = refined
            .get(id)
            .unwrap_or_else(|| panic!("{engine:?} row {id} not refined: {second}"));
        let diff = (ts(&r["ended_at"]).unwrap() - *truth_end)
            .num_milliseconds()
            .abs();
        assert!(diff <= 1500, "{engine:?} row {id}: {r} vs {truth_end}");
        assert_eq!(r["prev_ended_at"], first_closed[id]["ended_at"]);
    }
    // No record from the future: each refinement was decided after its record's stated end.
    let audit = text_rows(
        &db,
        &format!(
            "SELECT call_id, {}, ended_at_source, {} FROM call_closures WHERE outcome = 'refined'",
            as_text(engine, "decided_at"),
            as_text(engine, "id")
        ),
    )
    .await;
    assert_eq!(audit.len(), unseen.len());
    let truth = truth();
    for a in &audit {
        let id: i64 = a[0].as_deref().unwrap().parse().unwrap();
        assert_eq!(a[2].as_deref(), Some("cdr"));
        let decided =
            chrono::NaiveDateTime::parse_from_str(a[1].as_deref().unwrap(), "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc();
        let seeded = rows.iter().find(|r| r.id == id).unwrap();
        let call = truth["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"].as_str() == seeded.call_id.as_deref())
            .unwrap();
        let stated: Vec<DateTime<Utc>> = records
            .iter()
            .filter(|c| c.linkedid == call["linkedid"].as_str().unwrap())
            .map(Cdr::stated_end)
            .collect();
        assert!(
            stated.iter().any(|s| *s <= decided),
            "{engine:?} row {id}: refined at {decided} before any of its records ended ({stated:?})"
        );
    }

    // `status` counts the refined closes (moved into its 24-hour window: the replay wrote virtual times).
    let now = Utc::now().format("%Y-%m-%d %H:%M:%S");
    db.exec(&format!("UPDATE call_closures SET decided_at = '{now}'"))
        .await;
    let out = callwatch(&["status", "--database", db.url(), "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(status["refined_by_cdr_last_24h"], unseen.len() as i64);
    let out = callwatch(&["status", "--database", db.url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "end time from Asterisk's CDR, at the close or refined later: {}",
            unseen.len()
        )),
        "{text}"
    );

    // Undo one refinement: the row holds the close's end again; then the close itself can be undone.
    let (id, _) = unseen[0];
    let r = &refined[&id];
    let refinement = r["refinement_id"].as_i64().unwrap().to_string();
    let out = callwatch(&["undo", "--database", db.url(), "--closure", &refinement]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ended_at_of(&db, engine, id).await.as_deref(),
        Some(
            ts(&first_closed[&id]["ended_at"])
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
                .as_str()
        )
    );
    let close = r["closure_id"].as_i64().unwrap().to_string();
    let out = callwatch(&["undo", "--database", db.url(), "--closure", &close]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ended_at_of(&db, engine, id).await, None);
}

#[tokio::test]
async fn cdr_later_pass_sqlite() {
    check_later_pass(Engine::Sqlite).await;
}

#[tokio::test]
async fn cdr_later_pass_postgres() {
    check_later_pass(Engine::Postgres).await;
}

#[tokio::test]
async fn cdr_later_pass_mysql() {
    check_later_pass(Engine::MySql).await;
}

/// `check-config` checks the CDR source: reachable, table and columns present; clear errors, no password.
#[tokio::test]
async fn check_config_checks_the_cdr_source() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    db.exec(&cdr_table_sql(Engine::Sqlite)).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |cdr: &str| {
        let cfg = config_file(dir.path(), cdr);
        let out = callwatch(&[
            "--config",
            cfg.to_str().unwrap(),
            "--database",
            db.url(),
            "check-config",
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, text) = run(&format!("url = \"{}\"\n", db.url()));
    assert!(ok, "{text}");
    assert!(
        text.contains("ok   CDR table") && text.contains("ok   CDR column start"),
        "{text}"
    );
    let (ok, text) = run(&format!(
        "url = \"{}\"\n[cdr.columns]\nend = \"end_time\"\n",
        db.url()
    ));
    assert!(!ok);
    assert!(
        text.contains("FAIL CDR column end") && text.contains("no column end_time"),
        "{text}"
    );
    let (ok, text) = run(&format!("url = \"{}\"\ntable = \"cdrs\"\n", db.url()));
    assert!(
        !ok && text.contains("FAIL CDR table") && text.contains("[cdr] table"),
        "{text}"
    );
    // An unreachable server with a password: the error names the server, never the password.
    let (ok, text) =
        run("url = \"postgres://cdr:s3cr3t-cdr@127.0.0.1:1/asteriskcdrdb\"\ntimeout = \"2s\"\n");
    assert!(
        !ok && text.contains("FAIL CDR database reachable"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-cdr"), "{text}");
    let (ok, text) = run("csv = \"/nonexistent/Master.csv\"\n");
    assert!(!ok && text.contains("FAIL CDR file readable"), "{text}");
}

/// The daemon refines from the CDR too, not only replay: a Hangup lost on the way (the channel ends in the
/// PBX, the daemon never hears of it) is caught by the periodic listing as `channel_gone`, and the row ends
/// at the CDR's end (the middle of its whole-second window), audited as `cdr` — at the close, or by the
/// later pass when the record's end was still ahead of the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_takes_a_lost_hangups_end_from_the_cdr() {
    use crate::daemon::{insert_row, pbx_with_call, settings_for, start_daemon};

    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    db.exec(&cdr_table_sql(Engine::Sqlite)).await;
    let (pbx, _call, agent) = pbx_with_call("2001").await;
    let answered = Utc::now() - Duration::seconds(90);
    insert_row(&db, 1, &agent, "2001", answered).await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    settings.policy.sweep_interval = std::time::Duration::from_secs(1);
    settings.cdr = Some(
        toml::from_str(&format!(
            "url = \"{}\"\nrecheck_every = \"1s\"\ntimezone = \"UTC\"",
            db.url()
        ))
        .unwrap(),
    );
    let d = start_daemon(settings);
    d.synced().await;

    // The agent's channel ends in the PBX; the Hangup never reaches the daemon, the CDR is written.
    let ended = Utc::now();
    let channel = pbx.with(|p| p.channel(&agent).map(|c| c.name.clone()).unwrap());
    pbx.with(|p| {
        p.apply(&ami_proto::Message::from_pairs([
            ("Event", "Hangup"),
            ("Uniqueid", agent.as_str()),
            ("Cause", "16"),
            ("Cause-txt", "Normal Clearing"),
        ]))
    });
    let record = Cdr {
        uniqueid: agent.clone(),
        linkedid: agent.clone(),
        channel,
        start: answered,
        answer: Some(answered),
        end: ended,
    };
    db.exec(&format!(
        "INSERT INTO cdr (calldate, channel, duration, billsec, disposition, uniqueid, linkedid) \
         VALUES ('{}', '{}', {}, {}, 'ANSWERED', '{}', '{}')",
        Cdr::floor(record.start).format("%Y-%m-%d %H:%M:%S"),
        record.channel,
        record.duration(),
        record.billsec(),
        record.uniqueid,
        record.linkedid
    ))
    .await;
    // The record says [start + duration, + 2 s): callwatch writes the middle.
    let cdr_end = record.stated_end() + Duration::seconds(1);

    let from_cdr = crate::daemon::eventually("the row to end at the CDR's end", || async {
        let rows = text_rows(
            &db,
            "SELECT outcome, ended_at_source, reason FROM call_closures WHERE call_id = '1' \
             ORDER BY id",
        )
        .await;
        let ended_at = ended_at_of(&db, Engine::Sqlite, 1).await;
        rows.iter()
            .any(|r| r[1].as_deref() == Some("cdr"))
            .then_some((rows, ended_at))
    })
    .await;
    d.stop().await;
    let (audit, ended_at) = from_cdr;
    assert_eq!(audit[0][0].as_deref(), Some("closed"), "{audit:?}");
    assert_eq!(audit[0][2].as_deref(), Some("channel_gone"), "{audit:?}");
    assert_eq!(
        ended_at.as_deref(),
        Some(cdr_end.format("%Y-%m-%d %H:%M:%S").to_string().as_str()),
        "the true end was {ended}; audit {audit:?}"
    );
}
