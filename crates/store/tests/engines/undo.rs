use store::{CallId, CloseReason, ServerFilter, UndoSelector};

use crate::common::*;

#[tokio::test]
async fn undo_restores_only_rows_that_still_hold_what_callwatch_wrote() {
    for db in dbs().await {
        let (s, vc) = store(&db).await;
        let a = insert_call(&s, "101", None, Some("2026-11-24 12:00:00"), None).await;
        let b = insert_call(&s, "102", None, Some("2026-11-24 12:00:00"), None).await;
        let c = insert_call(&s, "103", None, Some("2026-11-24 12:00:00"), None).await;
        let end = t0() + chrono::Duration::seconds(60);
        let out = s
            .close(
                &[
                    req(a, end, CloseReason::ChannelGone),
                    req(b, end, CloseReason::ChannelGone),
                ],
                "run-1",
            )
            .await
            .unwrap();
        assert_eq!(out.closed.len(), 2);
        let later = s
            .close(&[req(c, end, CloseReason::TimeoutCleanup)], "run-2")
            .await
            .unwrap();
        // The application edits row b after callwatch closed it: b must not be reopened.
        sqlx::query(&format!(
            "UPDATE calls SET hangup_cause = 'agent wrote a note' WHERE id = {b}"
        ))
        .execute(s.pool())
        .await
        .unwrap();
        vc.advance(chrono::Duration::minutes(5));

        let dry = s
            .undo(UndoSelector::Run("run-1".into()), true)
            .await
            .unwrap();
        assert!(dry.dry_run);
        assert_eq!(
            dry.restored.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            vec![CallId::Int(a)]
        );
        assert_eq!(
            dry.conflicts
                .iter()
                .map(|r| r.1.clone())
                .collect::<Vec<_>>(),
            vec![CallId::Int(b)]
        );
        assert_eq!(
            s.in_progress(ServerFilter::Any, None).await.unwrap().len(),
            0,
            "dry run wrote nothing"
        );

        let real = s
            .undo(UndoSelector::Run("run-1".into()), false)
            .await
            .unwrap();
        assert_eq!(
            real.restored
                .iter()
                .map(|r| r.1.clone())
                .collect::<Vec<_>>(),
            vec![CallId::Int(a)],
            "{:?}",
            db.engine()
        );
        assert_eq!(real.conflicts.len(), 1);
        let row = row_text(
            &s,
            "calls",
            "id",
            &a.to_string(),
            &[
                "ended_at",
                "status",
                "talk_seconds",
                "hangup_cause",
                "updated_at",
            ],
        )
        .await;
        assert_eq!(
            row,
            vec![
                None,
                Some("in_progress".into()),
                None,
                None,
                Some("2026-11-24 13:05:00".into())
            ],
            "{:?}",
            db.engine()
        );
        let b_row = row_text(&s, "calls", "id", &b.to_string(), &["hangup_cause"]).await;
        assert_eq!(b_row, vec![Some("agent wrote a note".into())]);
        let undo_id = real.undo_id.unwrap();
        assert_eq!(
            count(
                &s,
                "call_closures",
                &format!("undo_run_id = '{undo_id}' AND undone_at IS NOT NULL")
            )
            .await,
            1
        );

        // Undoing again finds nothing new to restore; the conflict is still a conflict.
        let again = s
            .undo(UndoSelector::Run("run-1".into()), false)
            .await
            .unwrap();
        assert!(again.restored.is_empty());
        // By closure id and by time.
        let by_id = s
            .undo(
                UndoSelector::Closures(vec![later.closed[0].closure_id]),
                false,
            )
            .await
            .unwrap();
        assert_eq!(by_id.restored.len(), 1);
        let open: Vec<CallId> = s
            .in_progress(ServerFilter::Any, None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(open, vec![CallId::Int(a), CallId::Int(c)]);
        let since = s.undo(UndoSelector::Since(t0()), false).await.unwrap();
        assert!(
            since.restored.is_empty(),
            "already undone closures are not undone twice"
        );
        assert_eq!(since.conflicts.len(), 1);
    }
}
