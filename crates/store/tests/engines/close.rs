use store::{CallId, CloseReason, ServerFilter};

use crate::common::*;

#[tokio::test]
async fn close_writes_row_and_audit_and_in_progress_sees_only_open_rows() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let open = insert_call(&s, "101", None, Some("2026-11-24 12:00:00"), None).await;
        let other_server =
            insert_call(&s, "102", Some("pbx2"), Some("2026-11-24 12:00:10"), None).await;
        let _ended = insert_call(
            &s,
            "103",
            None,
            Some("2026-11-24 11:00:00"),
            Some("2026-11-24 11:05:00"),
        )
        .await;
        let _ringing = insert_call(&s, "104", None, None, None).await;

        let all = s.in_progress(ServerFilter::Any, None).await.unwrap();
        assert_eq!(
            all.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            vec![CallId::Int(open), CallId::Int(other_server)]
        );
        let default = s.in_progress(ServerFilter::Default, None).await.unwrap();
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].extension.as_deref(), Some("101"));
        assert_eq!(default[0].answered_at, t0());
        let named = s
            .in_progress(ServerFilter::Named("pbx2"), None)
            .await
            .unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].server.as_deref(), Some("pbx2"));
        let before = s
            .in_progress(ServerFilter::Any, Some(t0() + chrono::Duration::seconds(5)))
            .await
            .unwrap();
        assert_eq!(before.len(), 1, "answered_before is exclusive and filters");

        let ended_at = t0() + chrono::Duration::seconds(95) + chrono::Duration::milliseconds(400);
        let out = s
            .close(&[req(open, ended_at, CloseReason::ChannelGone)], "run-a")
            .await
            .unwrap();
        assert!(out.skipped.is_empty());
        assert_eq!(out.closed.len(), 1);
        let c = &out.closed[0];
        assert_eq!(c.talk_seconds, 95);
        assert_eq!(c.ended_at, t0() + chrono::Duration::seconds(95));
        assert_eq!(c.extension.as_deref(), Some("101"));
        let row = row_text(
            &s,
            "calls",
            "id",
            &open.to_string(),
            &[
                "ended_at",
                "hangup_cause",
                "talk_seconds",
                "status",
                "updated_at",
            ],
        )
        .await;
        assert_eq!(
            row,
            vec![
                Some("2026-11-24 12:01:35".into()),
                Some("Normal Clearing".into()),
                Some("95".into()),
                Some("completed".into()),
                Some("2026-11-24 13:00:00".into()), // the virtual clock's now
            ],
            "{:?}",
            db.engine()
        );
        let audit = row_text(
            &s,
            "call_closures",
            "id",
            &c.closure_id.to_string(),
            &[
                "call_id",
                "outcome",
                "reason",
                "prev_status",
                "new_status",
                "new_talk_seconds",
                "run_id",
                "ended_after",
                "prev_updated_at",
            ],
        )
        .await;
        assert_eq!(
            audit,
            vec![
                Some(open.to_string()),
                Some("closed".into()),
                Some("channel_gone".into()),
                Some("in_progress".into()),
                Some("completed".into()),
                Some("95".into()),
                Some("run-a".into()),
                Some("2026-11-24 12:01:05".into()),
                Some("2026-11-24 12:00:00".into()),
            ],
            "{:?}",
            db.engine()
        );
        let left = s.in_progress(ServerFilter::Any, None).await.unwrap();
        assert_eq!(left.len(), 1);
        // Closing again is a skip, audited as such.
        let again = s
            .close(&[req(open, ended_at, CloseReason::ChannelGone)], "run-b")
            .await
            .unwrap();
        assert_eq!(again.skipped, vec![CallId::Int(open)]);
        assert!(again.closed.is_empty());
        assert_eq!(
            count(
                &s,
                "call_closures",
                "outcome = 'skipped' AND run_id = 'run-b'"
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn talk_time_is_never_negative_and_existing_talk_seconds_are_kept() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let early = insert_call(&s, "201", None, Some("2026-11-24 12:00:00"), None).await;
        let preset = insert_call(&s, "202", None, Some("2026-11-24 12:00:00"), None).await;
        sqlx::query(&format!(
            "UPDATE calls SET talk_seconds = 7 WHERE id = {preset}"
        ))
        .execute(s.pool())
        .await
        .unwrap();
        let missing = 987_654_321;
        let out = s
            .close(
                &[
                    req(
                        early,
                        t0() - chrono::Duration::seconds(30),
                        CloseReason::AsteriskRestart,
                    ),
                    req(
                        preset,
                        t0() + chrono::Duration::seconds(60),
                        CloseReason::HangupSeen,
                    ),
                    req(missing, t0(), CloseReason::HangupSeen),
                    req(early, t0(), CloseReason::HangupSeen),
                ],
                "run",
            )
            .await
            .unwrap();
        let by_id: std::collections::HashMap<_, _> =
            out.closed.iter().map(|c| (c.call_id.clone(), c)).collect();
        assert_eq!(
            by_id[&CallId::Int(early)].talk_seconds,
            0,
            "{:?}",
            db.engine()
        );
        assert_eq!(
            by_id[&CallId::Int(early)].ended_at,
            t0(),
            "ended_at raised to answered_at"
        );
        assert_eq!(by_id[&CallId::Int(preset)].talk_seconds, 7);
        assert_eq!(out.skipped, vec![CallId::Int(missing), CallId::Int(early)]);
        assert_eq!(count(&s, "call_closures", "outcome = 'skipped'").await, 2);
    }
}

#[tokio::test]
async fn overwrite_talk_seconds_when_configured() {
    for db in dbs().await {
        let mut cfg = db.config();
        cfg.overwrite_talk_seconds = true;
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        let id = insert_call(&s, "301", None, Some("2026-11-24 12:00:00"), None).await;
        sqlx::query(&format!(
            "UPDATE calls SET talk_seconds = 7 WHERE id = {id}"
        ))
        .execute(s.pool())
        .await
        .unwrap();
        let out = s
            .close(
                &[req(
                    id,
                    t0() + chrono::Duration::seconds(42),
                    CloseReason::Manual,
                )],
                "r",
            )
            .await
            .unwrap();
        assert_eq!(out.closed[0].talk_seconds, 42);
    }
}

#[tokio::test]
async fn the_app_closing_first_wins_and_the_audit_says_skipped() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let id = insert_call(&s, "401", None, Some("2026-11-24 12:00:00"), None).await;
        let app_end = "2026-11-24 12:00:20";
        if db.engine() == store::testing::Engine::Sqlite {
            // SQLite serialises writers: the app's write lands first.
            sqlx::query(&format!("UPDATE calls SET ended_at = '{app_end}', talk_seconds = 20, hangup_cause = 'app' WHERE id = {id}"))
                .execute(s.pool())
                .await
                .unwrap();
            let out = s
                .close(
                    &[req(
                        id,
                        t0() + chrono::Duration::seconds(90),
                        CloseReason::ChannelGone,
                    )],
                    "r",
                )
                .await
                .unwrap();
            assert_eq!(out.skipped, vec![CallId::Int(id)]);
        } else {
            // The app's transaction holds the row while callwatch tries to close it; whichever way the race
            // goes (callwatch blocked on the row lock, or running after the commit) the app's values must win.
            let mut app = s.pool().begin().await.unwrap();
            sqlx::query(&format!("UPDATE calls SET ended_at = '{app_end}', talk_seconds = 20, hangup_cause = 'app' WHERE id = {id}"))
                .execute(&mut *app)
                .await
                .unwrap();
            let s2 = s.clone();
            let closer = tokio::spawn(async move {
                s2.close(
                    &[req(
                        id,
                        t0() + chrono::Duration::seconds(90),
                        CloseReason::ChannelGone,
                    )],
                    "r",
                )
                .await
            });
            tokio::task::yield_now().await;
            app.commit().await.unwrap();
            let out = closer.await.unwrap().unwrap();
            assert_eq!(out.skipped, vec![CallId::Int(id)], "{:?}", db.engine());
            assert!(out.closed.is_empty());
        }
        let row = row_text(
            &s,
            "calls",
            "id",
            &id.to_string(),
            &["ended_at", "talk_seconds", "hangup_cause"],
        )
        .await;
        assert_eq!(
            row,
            vec![Some(app_end.into()), Some("20".into()), Some("app".into())]
        );
        assert_eq!(count(&s, "call_closures", "outcome = 'skipped'").await, 1);
        assert_eq!(count(&s, "call_closures", "outcome = 'closed'").await, 0);
    }
}

#[tokio::test]
async fn large_batches_span_several_chunks() {
    for db in dbs().await {
        let mut cfg = db.config();
        cfg.batch_chunk = 7;
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        let mut reqs = Vec::new();
        for i in 0..30 {
            let id = insert_call(
                &s,
                &format!("5{i:02}"),
                None,
                Some("2026-11-24 12:00:00"),
                None,
            )
            .await;
            reqs.push(req(
                id,
                t0() + chrono::Duration::seconds(i),
                CloseReason::ChannelGone,
            ));
        }
        let out = s.close(&reqs, "big").await.unwrap();
        assert_eq!(out.closed.len(), 30);
        let mut ids: Vec<i64> = out.closed.iter().map(|c| c.closure_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 30, "each close has its own audit row");
        for c in &out.closed {
            let CallId::Int(id) = c.call_id else { panic!() };
            let row = row_text(&s, "calls", "id", &id.to_string(), &["talk_seconds"]).await;
            assert_eq!(row[0], Some(c.talk_seconds.to_string()));
        }
        assert_eq!(
            s.in_progress(ServerFilter::Any, None).await.unwrap().len(),
            0
        );
    }
}

#[tokio::test]
async fn awkward_text_survives_the_audit_verbatim() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let id = insert_call(&s, "701", None, Some("2026-11-24 12:00:00"), None).await;
        let cause = r#"He said "no", \ {x} NULL ',"#;
        let mut r = req(id, t0() + chrono::Duration::seconds(5), CloseReason::Manual);
        r.hangup_cause = cause.into();
        r.ended_after = None;
        let out = s.close(&[r], "quote\"run").await.unwrap();
        let audit = row_text(
            &s,
            "call_closures",
            "id",
            &out.closed[0].closure_id.to_string(),
            &["cause", "run_id", "ended_after", "new_hangup_cause"],
        )
        .await;
        assert_eq!(
            audit,
            vec![
                Some(cause.into()),
                Some("quote\"run".into()),
                None,
                Some(cause.into())
            ],
            "{:?}",
            db.engine()
        );
    }
}
