use store::testing::Engine;
use store::{CallId, CloseReason, CloseRequest, IdType, ServerFilter, UndoSelector};

use crate::common::*;

/// A hand-made Laravel-style table with other names, string ids, no status and no server column.
fn create_phone_calls(engine: Engine, table: &str) -> String {
    let (ts, id) = match engine {
        Engine::Postgres => ("timestamp(0) without time zone", "varchar(36) PRIMARY KEY"),
        Engine::MySql => ("datetime", "varchar(36) NOT NULL PRIMARY KEY"),
        Engine::Sqlite => ("datetime", "varchar NOT NULL PRIMARY KEY"),
    };
    format!(
        "CREATE TABLE {table} (uuid {id}, ast_uid varchar(64) NULL, agent_ext varchar(32) NULL, \
         caller_number varchar(32) NULL, answer_time {ts} NULL, hangup_time {ts} NULL, \
         cause varchar(64) NULL, duration int NULL, inserted {ts} NULL, modified {ts} NULL)"
    )
}

fn phone_calls_mapping(cfg: &mut store::DatabaseConfig, table: &str) {
    let m = &mut cfg.mapping;
    m.table = table.into();
    m.id_type = IdType::String;
    let c = &mut m.columns;
    c.id = "uuid".into();
    c.uniqueid = "ast_uid".into();
    c.linkedid = String::new();
    c.channel = String::new();
    c.extension = "agent_ext".into();
    c.caller = "caller_number".into();
    c.server = String::new();
    c.status = String::new();
    c.started_at = String::new();
    c.answered_at = "answer_time".into();
    c.ended_at = "hangup_time".into();
    c.hangup_cause = "cause".into();
    c.talk_seconds = "duration".into();
    c.created_at = "inserted".into();
    c.updated_at = "modified".into();
    cfg.timezone = "Europe/Berlin".into();
}

#[tokio::test]
async fn maps_onto_an_existing_table_with_other_names() {
    for db in dbs().await {
        let table = if db.engine() == Engine::Postgres {
            "app.phone_calls"
        } else {
            "phone_calls"
        };
        if db.engine() == Engine::Postgres {
            db.exec("CREATE SCHEMA app").await;
        }
        db.exec(&create_phone_calls(db.engine(), table)).await;
        let mut cfg = db.config();
        phone_calls_mapping(&mut cfg, table);
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap(); // creates the audit table (and an unused default `calls`)
        let report = s.check_mapping().await.unwrap();
        assert!(report.ok(), "{:?}: {report:#?}", db.engine());

        for (uuid, ext, answered, ended) in [
            ("a1b2", "201", Some("2026-11-24 13:00:00"), None),
            (
                "c3d4",
                "202",
                Some("2026-11-24 13:00:30"),
                Some("2026-11-24 13:01:00"),
            ),
            ("e5f6", "203", None, None),
        ] {
            let q = |v: Option<&str>| v.map(|v| format!("'{v}'")).unwrap_or("NULL".into());
            db.exec(&format!(
                "INSERT INTO {table} (uuid, ast_uid, agent_ext, caller_number, answer_time, hangup_time, inserted, modified) \
                 VALUES ('{uuid}', '1732449600.{ext}', '{ext}', '5550000', {}, {}, {}, {})",
                q(answered),
                q(ended),
                q(answered),
                q(answered)
            ))
            .await;
        }
        let open = s.in_progress(ServerFilter::Default, None).await.unwrap();
        assert_eq!(open.len(), 1, "{:?}", db.engine());
        assert_eq!(open[0].id, CallId::Text("a1b2".into()));
        assert_eq!(open[0].answered_at, t0(), "13:00 Berlin (CET) is 12:00 UTC");
        assert_eq!(open[0].extension.as_deref(), Some("201"));
        assert_eq!(open[0].status, None);
        assert!(s
            .in_progress(ServerFilter::Named("pbx2"), None)
            .await
            .unwrap()
            .is_empty());

        let request = CloseRequest {
            call_id: CallId::Text("a1b2".into()),
            ended_at: t0() + chrono::Duration::seconds(45),
            hangup_cause: "16".into(),
            reason: CloseReason::ChannelGone,
            ended_after: None,
            ended_before: None,
            decided_at: t0() + chrono::Duration::seconds(50),
            ended_at_source: Default::default(),
        };
        let skipped = CloseRequest {
            call_id: CallId::Text("c3d4".into()),
            ..request.clone()
        };
        let out = s.close(&[request, skipped], "map-run").await.unwrap();
        assert_eq!(out.closed.len(), 1);
        assert_eq!(out.closed[0].talk_seconds, 45);
        assert_eq!(out.skipped, vec![CallId::Text("c3d4".into())]);
        let row = row_text(
            &s,
            table,
            "uuid",
            "a1b2",
            &["hangup_time", "cause", "duration", "modified"],
        )
        .await;
        assert_eq!(
            row,
            vec![
                Some("2026-11-24 13:00:45".into()),
                Some("16".into()),
                Some("45".into()),
                Some("2026-11-24 14:00:00".into())
            ],
            "{:?}",
            db.engine()
        );
        let undo = s
            .undo(UndoSelector::Run("map-run".into()), false)
            .await
            .unwrap();
        assert_eq!(undo.restored.len(), 1, "{:?}", db.engine());
        assert_eq!(
            s.in_progress(ServerFilter::Any, None).await.unwrap().len(),
            1
        );
        let st = s
            .stats(chrono::Duration::hours(1), chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!((st.total, st.in_progress), (3, 1));
    }
}

#[tokio::test]
async fn a_wrong_mapping_is_reported_column_by_column() {
    for db in dbs().await {
        db.exec(&create_phone_calls(db.engine(), "phone_calls"))
            .await;
        let mut cfg = db.config();
        phone_calls_mapping(&mut cfg, "phone_calls");
        cfg.mapping.columns.extension = "agent_extension".into(); // no such column
        cfg.mapping.columns.caller = "answer_time".into(); // a timestamp used as text
        cfg.mapping.columns.uniqueid = String::new();
        cfg.mapping.columns.answered_at = "ast_uid".into(); // a string used as a timestamp
        cfg.mapping.id_type = IdType::Integer; // uuid is a varchar
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        let report = s.check_mapping().await.unwrap();
        assert!(!report.ok());
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        assert!(
            failed
                .iter()
                .any(|w| w.contains("extension = phone_calls.agent_extension")),
            "{failed:?}"
        );
        assert!(
            failed.iter().any(|w| w.contains("id = phone_calls.uuid")),
            "{failed:?}"
        );
        assert!(
            failed
                .iter()
                .any(|w| w.contains("caller = phone_calls.answer_time")),
            "{failed:?}"
        );
        assert!(
            failed.iter().any(|w| w.starts_with("audit table")),
            "not migrated yet: {failed:?}"
        );
        if db.engine() != Engine::Sqlite {
            // SQLite has no timestamp type, so text in a time column is plausible there.
            assert!(
                failed
                    .iter()
                    .any(|w| w.contains("answered_at = phone_calls.ast_uid")),
                "{failed:?}"
            );
        }
        let mut cfg = db.config();
        cfg.mapping.table = "no_such_table".into();
        let s = db.store_with(&cfg, clock().1).await;
        let report = s.check_mapping().await.unwrap();
        assert!(!report.checks[0].ok);
    }
}
