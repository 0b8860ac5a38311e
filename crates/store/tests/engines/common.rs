//! Helpers shared by the engine tests.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use store::testing::{Engine, TestDb};
use store::{CallId, CloseReason, CloseRequest, Store};

/// 2026-11-24 12:00:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// A virtual clock at `t0() + 1h`.
pub fn clock() -> (clock::VirtualClock, clock::SharedClock) {
    let c = clock::VirtualClock::new(t0() + chrono::Duration::hours(1));
    (c.clone(), Arc::new(c))
}

/// Every engine that is up, with a fresh database.
pub async fn dbs() -> Vec<TestDb> {
    let mut out = Vec::new();
    for e in Engine::ALL {
        if let Some(db) = TestDb::create(e).await {
            out.push(db);
        }
    }
    out
}

/// A migrated store on a virtual clock.
pub async fn store(db: &TestDb) -> (Store, clock::VirtualClock) {
    let (vc, shared) = clock();
    let s = db.store_with(&db.config(), shared).await;
    s.migrate().await.unwrap();
    (s, vc)
}

/// Inserts a call into the default `calls` table and returns its id.
pub async fn insert_call(
    s: &Store,
    ext: &str,
    server: Option<&str>,
    answered: Option<&str>,
    ended: Option<&str>,
) -> i64 {
    let srv = server.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
    let ans = answered.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
    let end = ended.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
    let status = if ended.is_some() {
        "completed"
    } else if answered.is_some() {
        "in_progress"
    } else {
        "ringing"
    };
    let uid = format!("{}.{}", 1_700_000_000 + rand_u16() as i64, ext);
    let sql = format!(
        "INSERT INTO calls (uniqueid, linkedid, channel, extension, caller, server, status, started_at, answered_at, ended_at, created_at, updated_at) \
         VALUES ('{uid}', '{uid}', 'PJSIP/{ext}-0001', '{ext}', '5551234', {srv}, '{status}', {ans}, {ans}, {end}, {ans}, {ans})"
    );
    sqlx::query(&sql).execute(s.pool()).await.unwrap();
    let max: i64 = sqlx::query_scalar(match s.dialect() {
        store::Dialect::MySql => "SELECT CAST(MAX(id) AS SIGNED) FROM calls",
        _ => "SELECT CAST(MAX(id) AS BIGINT) FROM calls",
    })
    .fetch_one(s.pool())
    .await
    .unwrap();
    max
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(1);
    h.finish() as u16
}

/// A close request for `id` ending at `ended`.
pub fn req(id: i64, ended: DateTime<Utc>, reason: CloseReason) -> CloseRequest {
    CloseRequest {
        call_id: CallId::Int(id),
        ended_at: ended,
        hangup_cause: "Normal Clearing".into(),
        reason,
        ended_after: Some(ended - chrono::Duration::seconds(30)),
        ended_before: Some(ended),
        decided_at: ended + chrono::Duration::seconds(1),
        ended_at_source: Default::default(),
    }
}

/// Reads text columns of one row (each cast to text), `None` for NULL.
pub async fn row_text(
    s: &Store,
    table: &str,
    id_col: &str,
    id: &str,
    cols: &[&str],
) -> Vec<Option<String>> {
    let d = s.dialect();
    let exprs: Vec<String> = cols
        .iter()
        .map(|c| {
            let is_time = c.ends_with("_at") || c.ends_with("_after") || c.ends_with("_before");
            match d {
                store::Dialect::Postgres if is_time => {
                    format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS')")
                }
                store::Dialect::MySql => format!("CAST({c} AS CHAR(255))"),
                _ => format!("CAST({c} AS TEXT)"),
            }
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {table} WHERE {id_col} = '{id}'",
        exprs.join(", ")
    );
    let row = sqlx::query(&sql).fetch_one(s.pool()).await.unwrap();
    use sqlx::Row;
    (0..cols.len())
        .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
        .collect()
}

/// Count rows matching a WHERE clause.
pub async fn count(s: &Store, table: &str, filter: &str) -> i64 {
    let cast = match s.dialect() {
        store::Dialect::MySql => "SIGNED",
        _ => "BIGINT",
    };
    let sql = format!("SELECT CAST(COUNT(*) AS {cast}) FROM {table} WHERE {filter}");
    sqlx::query_scalar(&sql).fetch_one(s.pool()).await.unwrap()
}
