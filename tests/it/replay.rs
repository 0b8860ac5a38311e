//! `callwatch replay` end to end, on SQLite, PostgreSQL and MariaDB: the calls table is seeded from a real
//! recording's truth.json as the application would have left it, the binary replays the subject sessions,
//! and the closes (in its JSON and in the table) are checked against the truth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

use crate::common::{callwatch, fixtures};

/// How a seeded row identifies its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The agent channel's Uniqueid only.
    Uniqueid,
    /// The call's Linkedid only.
    Linkedid,
    /// Both.
    Both,
}

/// One seeded row and what must happen to it.
#[derive(Debug, Clone)]
pub(crate) struct Seeded {
    pub(crate) id: i64,
    pub(crate) call_id: Option<String>,
    pub(crate) answered_at: DateTime<Utc>,
    pub(crate) expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// Closed after a seen Hangup, within 1 s of this truth time.
    HangupSeen(DateTime<Utc>),
    /// Closed by an outage rule, the truth end time inside the audit bounds.
    Bounded(DateTime<Utc>),
    /// A stuck row from before the recording, closed with this reason.
    Stuck(&'static str),
    /// Must stay open.
    Open,
}

pub(crate) fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn sql_time(t: DateTime<Utc>) -> String {
    t.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

fn sql_text(v: Option<&str>) -> String {
    v.map_or("NULL".into(), |s| format!("'{}'", s.replace('\'', "''")))
}

/// Builds the seed rows for `scenario` from its truth.json.
pub(crate) fn plan(truth: &Value) -> (Vec<Seeded>, Vec<String>) {
    let subjects = truth["subject_connections"].as_array().unwrap();
    let windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = subjects
        .iter()
        .map(|s| {
            (
                ts(&s["connected_at"]).unwrap(),
                ts(&s["disconnected_at"]).unwrap(),
            )
        })
        .collect();
    let gaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = truth["reconnects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (ts(&r["gap_start"]).unwrap(), ts(&r["gap_end"]).unwrap()))
        .collect();
    let live_at_end: BTreeSet<String> = truth["live_when_last_subject_left"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let last_left = windows.last().unwrap().1;
    let first_connect = windows.first().unwrap().0;

    let mut rows = Vec::new();
    let mut inserts = Vec::new();
    let mut id = 0i64;
    let mut long_live_done = false;
    for (i, call) in truth["calls"].as_array().unwrap().iter().enumerate() {
        let Some(mut answered) = ts(&call["answered_at"]) else {
            continue;
        };
        let call_id = call["call_id"].as_str().unwrap().to_string();
        let ended = ts(&call["ended_at"]);
        let agent = call["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["role"] == "agent")
            .unwrap();
        let shape = [Shape::Uniqueid, Shape::Linkedid, Shape::Both][i % 3];
        let uniqueid = (shape != Shape::Linkedid).then(|| agent["uniqueid"].as_str().unwrap());
        let linkedid = (shape != Shape::Uniqueid).then(|| call["linkedid"].as_str().unwrap());
        let expect = if live_at_end.contains(&call_id) {
            if !long_live_done {
                // A real call still up when the recording ends, answered 45 minutes ago: the seed's
                // 30-minute cron would cut it; callwatch must not.
                long_live_done = true;
                answered = last_left - Duration::minutes(45);
            }
            Expect::Open
        } else {
            let ended = ended.expect("a call not live at the end has ended");
            let seen = windows.iter().any(|(a, b)| ended >= *a && ended <= *b);
            let in_gap = gaps.iter().any(|(a, b)| ended >= *a && ended <= *b);
            if seen {
                Expect::HangupSeen(ended)
            } else if in_gap {
                Expect::Bounded(ended)
            } else {
                Expect::Open
            }
        };
        id += 1;
        inserts.push(format!(
            "INSERT INTO calls (id, uniqueid, linkedid, channel, extension, caller, server, status, started_at, answered_at, created_at, updated_at) \
             VALUES ({id}, {}, {}, {}, {}, {}, NULL, 'in_progress', {}, {}, {}, {})",
            sql_text(uniqueid),
            sql_text(linkedid),
            sql_text(agent["channel"].as_str()),
            sql_text(call["extension"].as_str()),
            sql_text(call["caller_id_num"].as_str()),
            sql_time(answered - Duration::seconds(1)),
            sql_time(answered),
            sql_time(answered),
            sql_time(answered),
        ));
        rows.push(Seeded {
            id,
            call_id: Some(call_id),
            answered_at: answered,
            expect,
        });
    }
    // Rows stuck from before the recording: ids of channels from an earlier Asterisk boot (closed once a
    // listing shows them gone) when the recording has a listing, else rows without ids (closed by the
    // timeout fallback, which is all that can judge them).
    let has_listing = subjects
        .iter()
        .any(|s| s["event_counts"].get("CoreShowChannelsComplete").is_some());
    for k in 0..3 {
        id += 1;
        let answered = first_connect - Duration::hours(3) - Duration::minutes(k);
        let (uniqueid, reason) = if has_listing {
            (Some(format!("1795000000.{}", 10 + k)), "channel_gone")
        } else {
            (None, "timeout_cleanup")
        };
        inserts.push(format!(
            "INSERT INTO calls (id, uniqueid, linkedid, extension, status, answered_at, created_at, updated_at) \
             VALUES ({id}, {}, NULL, '20{:02}', 'in_progress', {}, {}, {})",
            sql_text(uniqueid.as_deref()),
            30 + k,
            sql_time(answered),
            sql_time(answered),
            sql_time(answered),
        ));
        rows.push(Seeded {
            id,
            call_id: None,
            answered_at: answered,
            expect: Expect::Stuck(reason),
        });
    }
    (rows, inserts)
}

pub(crate) fn subject_sessions(scenario: &str, truth: &Value) -> Vec<PathBuf> {
    truth["subject_connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| fixtures().join(format!("{scenario}.{}", s["label"].as_str().unwrap())))
        .collect()
}

async fn row_state(db: &TestDb, id: i64) -> (Option<String>, Option<i64>, Option<String>) {
    let store = db.store().await;
    let pool = store.pool();
    let (text, int) = match db.engine() {
        Engine::Postgres => ("VARCHAR(19)", "BIGINT"),
        Engine::MySql => ("CHAR(19)", "SIGNED"),
        _ => ("TEXT", "INTEGER"),
    };
    let row: (Option<String>, Option<i64>, Option<String>) = sqlx::query_as(&format!(
        "SELECT CAST(ended_at AS {text}), CAST(talk_seconds AS {int}), hangup_cause FROM calls WHERE id = {id}"
    ))
    .fetch_one(pool)
    .await
    .unwrap();
    store.shutdown().await;
    row
}

pub(crate) fn run_replay(db: &TestDb, sessions: &[PathBuf], extra: &[&str]) -> Value {
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--database".into(),
        db.url().into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(sessions.iter().map(|p| p.display().to_string()));
    let out = callwatch(&args);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("lab-secret")
            && !String::from_utf8_lossy(&out.stderr).contains("lab-secret")
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn check_scenario(engine: Engine, scenario: &str) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{scenario}.truth.json"))).unwrap(),
    )
    .unwrap();
    let (rows, inserts) = plan(&truth);
    let store = db.store().await; // migrated
    store.shutdown().await;
    for sql in &inserts {
        db.exec(sql).await;
    }
    let sessions = subject_sessions(scenario, &truth);

    // A dry run decides the same closes and writes nothing.
    let dry = run_replay(&db, &sessions, &["--dry-run"]);
    for r in &rows {
        assert_eq!(
            row_state(&db, r.id).await.0,
            None,
            "dry run wrote row {}",
            r.id
        );
    }

    let report = run_replay(&db, &sessions, &[]);
    let closed: BTreeMap<i64, &Value> = report["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_i64().unwrap(), c))
        .collect();
    let dry_ids: BTreeSet<i64> = dry["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        dry_ids,
        closed.keys().copied().collect::<BTreeSet<_>>(),
        "{engine:?} {scenario}: dry run and real run disagree"
    );

    let mut counts = BTreeMap::<&str, usize>::new();
    for r in &rows {
        let what = format!("{engine:?} {scenario} row {} ({:?})", r.id, r.call_id);
        let (ended_db, talk_db, cause_db) = row_state(&db, r.id).await;
        match &r.expect {
            Expect::Open => {
                assert!(
                    !closed.contains_key(&r.id),
                    "{what}: closed but must stay open"
                );
                assert_eq!(ended_db, None, "{what}: ended_at written");
                *counts.entry("open").or_default() += 1;
                continue;
            }
            _ => {
                assert!(
                    closed.contains_key(&r.id),
                    "{what}: not closed ({:?})",
                    r.expect
                );
            }
        }
        let c = closed[&r.id];
        let ended_at = ts(&c["ended_at"]).unwrap();
        let reason = c["reason"].as_str().unwrap();
        match &r.expect {
            Expect::HangupSeen(truth_end) => {
                assert_eq!(reason, "hangup_seen", "{what}");
                let diff = (ended_at - *truth_end).num_milliseconds().abs();
                assert!(
                    diff <= 1000,
                    "{what}: ended_at {ended_at} vs truth {truth_end}"
                );
                assert!(
                    ["normal_clearing", "unknown"].contains(&c["hangup_cause"].as_str().unwrap()),
                    "{what}: cause {}",
                    c["hangup_cause"]
                );
            }
            Expect::Bounded(truth_end) => {
                assert_eq!(reason, "channel_gone", "{what}");
                let after = ts(&c["ended_after"]).unwrap();
                let before = ts(&c["ended_before"]).unwrap();
                assert!(
                    after <= *truth_end && *truth_end <= before,
                    "{what}: truth {truth_end} outside [{after}, {before}]"
                );
                assert_eq!(c["hangup_cause"], "channel_gone", "{what}");
            }
            Expect::Stuck(expected) => {
                assert_eq!(reason, *expected, "{what}");
            }
            Expect::Open => unreachable!(),
        }
        *counts.entry(reason_key(reason)).or_default() += 1;
        // The row holds what the report says, and talk_seconds = ended_at - answered_at (whole seconds).
        let ended_db = ended_db.unwrap_or_else(|| panic!("{what}: ended_at not written"));
        assert_eq!(
            ended_db,
            ended_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            "{what}"
        );
        let answered_s = r.answered_at.timestamp();
        assert_eq!(
            talk_db,
            Some((ended_at.timestamp() - answered_s).max(0)),
            "{what}: talk_seconds"
        );
        assert_eq!(cause_db.as_deref(), c["hangup_cause"].as_str(), "{what}");
    }
    assert_eq!(
        closed.len(),
        rows.iter().filter(|r| r.expect != Expect::Open).count()
    );
    eprintln!("{engine:?} {scenario}: {counts:?}");

    // Replaying again closes nothing more.
    let again = run_replay(&db, &sessions, &[]);
    assert_eq!(
        again["closed"].as_array().unwrap().len(),
        0,
        "{engine:?} {scenario}: second replay closed rows"
    );
}

fn reason_key(r: &str) -> &'static str {
    match r {
        "hangup_seen" => "hangup_seen",
        "channel_gone" => "channel_gone",
        "timeout_cleanup" => "timeout_cleanup",
        "asterisk_restart" => "asterisk_restart",
        "superseded" => "superseded",
        _ => "other",
    }
}

macro_rules! scenario_tests {
    ($($name:ident: $engine:expr, $scenario:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check_scenario($engine, $scenario).await;
        }
    )*};
}

scenario_tests! {
    replay_basic_sqlite: Engine::Sqlite, "basic";
    replay_basic_postgres: Engine::Postgres, "basic";
    replay_basic_mysql: Engine::MySql, "basic";
    replay_disconnect_gap_sqlite: Engine::Sqlite, "disconnect-gap";
    replay_disconnect_gap_postgres: Engine::Postgres, "disconnect-gap";
    replay_disconnect_gap_mysql: Engine::MySql, "disconnect-gap";
}

#[test]
fn fixtures_exist() {
    assert!(Path::new(&fixtures().join("disconnect-gap.subject-2.ami")).exists());
}
