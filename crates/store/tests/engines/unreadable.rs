//! One open row whose answer time cannot be read never stops the others from being read and closed.

use store::testing::Engine;
use store::{CallId, CloseReason, ServerFilter};

use crate::common::*;

/// Writes a value no timestamp reader understands into `answered_at` of row `id`, the way each engine's
/// applications manage to: SQLite junk text, MySQL's zero date, PostgreSQL's `infinity`.
async fn spoil_answered_at(s: &store::Store, engine: Engine, id: i64) -> &'static str {
    let (value, setup) = match engine {
        Engine::Sqlite => ("yesterday-ish", None),
        Engine::MySql => ("0000-00-00 00:00:00", Some("SET SESSION sql_mode = ''")),
        Engine::Postgres => ("infinity", None),
    };
    let mut conn = s.pool().acquire().await.unwrap();
    if let Some(setup) = setup {
        sqlx::query(setup).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(&format!(
        "UPDATE calls SET answered_at = '{value}' WHERE id = {id}"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    value
}

#[tokio::test]
async fn an_unreadable_row_is_set_apart_and_the_rest_is_read() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let good = insert_call(&s, "101", None, Some("2026-11-24 12:00:00"), None).await;
        let bad = insert_call(&s, "102", None, Some("2026-11-24 12:00:00"), None).await;
        let later = insert_call(&s, "103", None, Some("2026-11-24 12:05:00"), None).await;
        let value = spoil_answered_at(&s, db.engine(), bad).await;

        let rows = s
            .in_progress_rows(ServerFilter::Any, None)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.engine()));
        let ids: Vec<CallId> = rows.calls.iter().map(|c| c.id.clone()).collect();
        assert_eq!(
            ids,
            [CallId::Int(good), CallId::Int(later)],
            "{:?}",
            db.engine()
        );
        assert_eq!(rows.unreadable.len(), 1, "{:?}", db.engine());
        let u = &rows.unreadable[0];
        assert_eq!(u.id, CallId::Int(bad));
        assert_eq!(u.column, "answered_at");
        if db.engine() != Engine::Postgres {
            // PostgreSQL renders `infinity` as an empty string through to_char.
            assert_eq!(u.value.as_deref(), Some(value), "{:?}", db.engine());
        }
        assert_eq!(
            s.in_progress(ServerFilter::Any, None).await.unwrap().len(),
            2,
            "{:?}: in_progress leaves the unreadable row out",
            db.engine()
        );
        let out = s
            .close(&[req(good, t0(), CloseReason::ChannelGone)], "r")
            .await
            .unwrap();
        assert_eq!(out.closed.len(), 1);
        let report = s.check_mapping().await.unwrap();
        let read = report
            .checks
            .iter()
            .find(|c| c.what == "reading calls in progress")
            .unwrap();
        assert!(read.detail.contains("1 unreadable"), "{}", read.detail);
    }
}
