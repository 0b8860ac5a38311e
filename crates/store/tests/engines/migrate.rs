use crate::common::*;

#[tokio::test]
async fn migrations_apply_from_empty_and_are_idempotent() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        // `store()` already migrated once; a second run applies nothing.
        let again = s.migrate().await.unwrap();
        assert!(again.applied.is_empty(), "{:?}: {again:?}", db.engine());
        assert!(again.already_applied >= 1);
        let report = s.check_mapping().await.unwrap();
        assert!(report.ok(), "{:?}: {report:#?}", db.engine());
        assert_eq!(count(&s, "calls", "1 = 1").await, 0);
    }
}

#[tokio::test]
async fn first_migration_reports_what_it_applied() {
    for db in dbs().await {
        let (_, shared) = clock();
        let s = db.store_with(&db.config(), shared).await;
        let first = s.migrate().await.unwrap();
        // The calls and audit tables, the daemons' heartbeat table, the audit's `ended_at_source`.
        assert_eq!(first.applied.len(), 3, "{:?}", db.engine());
        assert_eq!(first.already_applied, 0);
        assert_eq!(first.dialect, db.engine().name());
    }
}
