use store::CloseReason;

use crate::common::*;

#[tokio::test]
async fn stats_count_open_stuck_busy_and_closes() {
    for db in dbs().await {
        let (s, vc) = store(&db).await;
        // The clock is at t0 + 1h.
        let old = insert_call(&s, "101", None, Some("2026-11-24 10:00:00"), None).await; // stuck (3h)
        let _a = insert_call(&s, "101", None, Some("2026-11-24 12:50:00"), None).await;
        let _b = insert_call(&s, "102", Some("pbx2"), Some("2026-11-24 12:55:00"), None).await;
        let _c = insert_call(&s, "102", Some("pbx2"), Some("2026-11-24 12:56:00"), None).await;
        let done = insert_call(&s, "103", None, Some("2026-11-24 12:00:00"), None).await;
        let _ended = insert_call(
            &s,
            "104",
            None,
            Some("2026-11-24 11:00:00"),
            Some("2026-11-24 11:01:00"),
        )
        .await;
        s.close(
            &[req(
                done,
                t0() + chrono::Duration::seconds(10),
                CloseReason::HangupSeen,
            )],
            "run-x",
        )
        .await
        .unwrap();
        s.close(
            &[req(
                done,
                t0() + chrono::Duration::seconds(10),
                CloseReason::HangupSeen,
            )],
            "run-y",
        )
        .await
        .unwrap();
        vc.advance(chrono::Duration::minutes(1));
        let st = s
            .stats(chrono::Duration::hours(2), chrono::Duration::hours(24))
            .await
            .unwrap();
        assert_eq!(st.total, 6, "{:?}", db.engine());
        assert_eq!(st.in_progress, 4);
        assert_eq!(st.stuck, 1);
        let busy: Vec<(Option<String>, String, i64)> = st
            .busy_extensions
            .iter()
            .map(|b| (b.server.clone(), b.extension.clone(), b.calls))
            .collect();
        assert_eq!(
            busy,
            vec![
                (None, "101".into(), 2),
                (Some("pbx2".into()), "102".into(), 2)
            ],
            "{:?}",
            db.engine()
        );
        assert_eq!(st.closes_by_reason, vec![("hangup_seen".into(), 1)]);
        assert_eq!(st.skipped_in_window, 1);
        let last = st.last_run.unwrap();
        assert_eq!(last.run_id, "run-y");
        assert_eq!(last.closed, 0);
        // A window that ends before the closes sees none of them.
        vc.advance(chrono::Duration::hours(3));
        let st = s
            .stats(chrono::Duration::hours(2), chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(st.closes_by_reason.is_empty());
        let _ = old;
        serde_json::to_string(&st).unwrap();
    }
}
