use chrono::TimeZone;
use store::{CloseReason, ServerFilter};

use crate::common::*;

#[tokio::test]
async fn timestamps_are_stored_in_the_configured_timezone() {
    for db in dbs().await {
        let mut cfg = db.config();
        cfg.timezone = "America/New_York".into();
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        // 07:00 in New York on 2026-11-24 (EST, UTC-5) is 12:00 UTC.
        let id = insert_call(&s, "101", None, Some("2026-11-24 07:00:00"), None).await;
        let open = s.in_progress(ServerFilter::Any, None).await.unwrap();
        assert_eq!(open[0].answered_at, t0(), "{:?}", db.engine());
        let none = s.in_progress(ServerFilter::Any, Some(t0())).await.unwrap();
        assert!(
            none.is_empty(),
            "answered_before compares in the table's timezone"
        );
        let some = s
            .in_progress(ServerFilter::Any, Some(t0() + chrono::Duration::seconds(1)))
            .await
            .unwrap();
        assert_eq!(some.len(), 1);
        let out = s
            .close(
                &[req(
                    id,
                    t0() + chrono::Duration::seconds(61),
                    CloseReason::ChannelGone,
                )],
                "tz",
            )
            .await
            .unwrap();
        assert_eq!(out.closed[0].talk_seconds, 61);
        let row = row_text(
            &s,
            "calls",
            "id",
            &id.to_string(),
            &["ended_at", "updated_at"],
        )
        .await;
        // updated_at: the clock's now (13:00 UTC) in New York.
        assert_eq!(
            row,
            vec![
                Some("2026-11-24 07:01:01".into()),
                Some("2026-11-24 08:00:00".into())
            ]
        );
    }
}

#[tokio::test]
async fn summer_time_rows_convert_with_their_own_offset() {
    for db in dbs().await {
        let mut cfg = db.config();
        cfg.timezone = "Europe/Berlin".into();
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        insert_call(&s, "101", None, Some("2026-07-01 14:00:00"), None).await; // CEST, UTC+2
        insert_call(&s, "102", None, Some("2026-11-24 13:00:00"), None).await; // CET, UTC+1
        let open = s.in_progress(ServerFilter::Any, None).await.unwrap();
        assert_eq!(
            open[0].answered_at,
            chrono::Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap()
        );
        assert_eq!(open[1].answered_at, t0());
    }
}
