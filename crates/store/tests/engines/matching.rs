//! Reading the open rows that can match changed channels (`in_progress_matching`), and check-config's hint
//! when the lookup columns have no index.

use store::{CallId, RowKeys, ServerFilter, Store};

use crate::common::*;

/// Inserts a row with the given ids and returns its id.
async fn insert(
    s: &Store,
    uid: &str,
    lid: &str,
    server: Option<&str>,
    answered: &str,
    ended: Option<&str>,
) -> i64 {
    let srv = server.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
    let end = ended.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
    sqlx::query(&format!(
        "INSERT INTO calls (uniqueid, linkedid, extension, server, status, answered_at, ended_at, created_at, updated_at) \
         VALUES ('{uid}', '{lid}', '2001', {srv}, 'in_progress', '{answered}', {end}, '{answered}', '{answered}')"
    ))
    .execute(s.pool())
    .await
    .unwrap();
    let cast = match s.dialect() {
        store::Dialect::MySql => "SIGNED",
        _ => "BIGINT",
    };
    sqlx::query_scalar(&format!("SELECT CAST(MAX(id) AS {cast}) FROM calls"))
        .fetch_one(s.pool())
        .await
        .unwrap()
}

fn ids(rows: &store::OpenRows) -> Vec<CallId> {
    rows.calls.iter().map(|c| c.id.clone()).collect()
}

#[tokio::test]
async fn only_the_open_rows_carrying_a_changed_id_are_read() {
    for db in dbs().await {
        let (s, _clock) = store(&db).await;
        let at = "2026-11-24 12:00:00";
        let by_uid = insert(&s, "u1", "L1", Some("pbx1"), at, None).await;
        let by_lid_a = insert(&s, "u2", "L2", Some("pbx1"), at, None).await;
        let by_lid_b = insert(&s, "u3", "L2", Some("pbx1"), at, None).await;
        let both = insert(&s, "u4", "L2", Some("pbx1"), at, None).await;
        let _ended = insert(&s, "u5", "L5", Some("pbx1"), at, Some(at)).await;
        let _other_server = insert(&s, "u6", "L6", Some("pbx2"), at, None).await;
        let default_row = insert(&s, "u7", "L7", None, at, None).await;
        let _future = insert(&s, "u8", "L8", Some("pbx1"), "2026-11-24 14:00:00", None).await;
        // 200 unrelated open rows: the lookup never returns them.
        for i in 0..200 {
            insert(
                &s,
                &format!("x{i}"),
                &format!("X{i}"),
                Some("pbx1"),
                at,
                None,
            )
            .await;
        }
        let keys = RowKeys {
            uniqueids: ["u1", "u4", "u5", "u6", "u7", "u8", "nobody", ""]
                .map(String::from)
                .to_vec(),
            linkedids: ["L2", "L6"].map(String::from).to_vec(),
        };
        let before = Some(t0() + chrono::Duration::hours(1));
        let named = s
            .in_progress_matching(ServerFilter::Named("pbx1"), before, &keys)
            .await
            .unwrap();
        let want: Vec<CallId> = [by_uid, by_lid_a, by_lid_b, both].map(CallId::Int).to_vec();
        assert_eq!(ids(&named), want, "{}", db.engine().name());
        assert!(named.unreadable.is_empty());
        let default = s
            .in_progress_matching(ServerFilter::Default, before, &keys)
            .await
            .unwrap();
        assert_eq!(ids(&default), vec![CallId::Int(default_row)]);
        // The same rows as the full read gives for them, column for column.
        let all = s
            .in_progress_rows(ServerFilter::Named("pbx1"), before)
            .await
            .unwrap();
        assert_eq!(all.calls.len(), 204);
        let full: Vec<_> = all
            .calls
            .into_iter()
            .filter(|c| want.contains(&c.id))
            .collect();
        assert_eq!(named.calls, full);
        // Many keys: chunked lookups still find each row once.
        let many = RowKeys {
            uniqueids: (0..1200).map(|i| format!("x{i}")).collect(),
            linkedids: (0..1200).map(|i| format!("X{i}")).collect(),
        };
        let found = s
            .in_progress_matching(ServerFilter::Named("pbx1"), before, &many)
            .await
            .unwrap();
        assert_eq!(found.calls.len(), 200);
        assert!(s.matches_by_ids());
    }
}

#[tokio::test]
async fn check_config_hints_at_a_missing_lookup_index() {
    for db in dbs().await {
        let (s, _clock) = store(&db).await;
        let report = s.check_mapping().await.unwrap();
        assert!(
            !report
                .hints
                .iter()
                .any(|h| h.contains("uniqueid") || h.contains("linkedid")),
            "{}: {:?}",
            db.engine().name(),
            report.hints
        );
        let drop = match s.dialect() {
            store::Dialect::MySql => "DROP INDEX calls_uniqueid_index ON calls",
            _ => "DROP INDEX calls_uniqueid_index",
        };
        db.exec(drop).await;
        let report = s.check_mapping().await.unwrap();
        let hints: Vec<&String> = report
            .hints
            .iter()
            .filter(|h| h.contains("rounds triggered by hangups"))
            .collect();
        assert_eq!(hints.len(), 1, "{}: {:?}", db.engine().name(), report.hints);
        assert!(
            hints[0].contains("uniqueid column uniqueid")
                && hints[0].contains("CREATE INDEX calls_uniqueid_index ON"),
            "{}",
            hints[0]
        );
        assert!(report.ok(), "a missing index is a hint, not a failure");
    }
}

/// A calls table PostgreSQL never analyzed (created and filled just now) gets its planner statistics once:
/// without them the id lookups above are joined by a nested loop over every open row times every id.
/// The other engines keep their own statistics: nothing to do there.
#[tokio::test]
async fn a_never_analyzed_calls_table_is_analyzed_once() {
    for db in dbs().await {
        let (s, _clock) = store(&db).await;
        for i in 0..50 {
            insert(
                &s,
                &format!("u{i}"),
                &format!("L{i}"),
                None,
                "2026-11-24 12:00:00",
                None,
            )
            .await;
        }
        let postgres = s.dialect() == store::Dialect::Postgres;
        let reltuples = || async {
            sqlx::query_scalar::<_, f64>(
                "SELECT CAST(reltuples AS DOUBLE PRECISION) FROM pg_class WHERE oid = to_regclass('calls')",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
        };
        if postgres {
            assert!(reltuples().await < 0.0, "a new table has no statistics");
        }
        assert_eq!(
            s.ensure_planner_stats().await.unwrap(),
            postgres,
            "{}",
            db.engine().name()
        );
        if postgres {
            assert_eq!(reltuples().await, 50.0);
        }
        // Statistics exist now (or are the engine's own): never again.
        assert!(!s.ensure_planner_stats().await.unwrap());
    }
}
