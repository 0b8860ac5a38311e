//! `refine`: a later, better end time for a close, guarded like undo, audited as `refined`, undoable.

use chrono::Duration;
use store::{CallId, CloseReason, EndedAtSource, Refinement, UndoSelector};

use crate::common::*;

#[tokio::test]
async fn refine_rewrites_only_closes_still_as_written_and_undo_puts_them_back() {
    for db in dbs().await {
        let e = db.engine();
        let (s, vc) = store(&db).await;
        let answered = "2026-11-24 12:00:00";
        let a = insert_call(&s, "2001", None, Some(answered), None).await;
        let b = insert_call(&s, "2002", None, Some(answered), None).await;
        let c = insert_call(&s, "2003", None, Some(answered), None).await;
        let ended = t0() + Duration::minutes(5);
        let batch = vec![
            req(a, ended, CloseReason::ChannelGone),
            req(b, ended, CloseReason::ChannelGone),
            req(c, ended, CloseReason::HangupSeen),
        ];
        s.close(&batch, "run-close").await.unwrap();
        let since = t0();
        let candidates = s.refine_candidates(since, None, true, 10).await.unwrap();
        let ids: Vec<CallId> = candidates.iter().map(|c| c.call_id.clone()).collect();
        // A seen Hangup is exact already: not a candidate.
        assert_eq!(ids, vec![CallId::Int(b), CallId::Int(a)], "{e:?}");
        let channel = candidates[0].channel.clone();
        assert_eq!(channel.as_deref(), Some("PJSIP/2002-0001"), "{e:?}");
        // The application changes row b meanwhile: its refinement is a conflict, the row is left alone.
        sqlx::query(&format!(
            "UPDATE calls SET hangup_cause = 'app' WHERE id = {b}"
        ))
        .execute(s.pool())
        .await
        .unwrap();
        vc.set(t0() + Duration::hours(2));
        let better = ended - Duration::seconds(100);
        let items: Vec<Refinement> = candidates
            .iter()
            .map(|c| Refinement {
                closure_id: c.closure_id,
                ended_at: better,
                source: EndedAtSource::Cdr,
            })
            .collect();
        let out = s.refine(&items, "run-refine", None).await.unwrap();
        assert_eq!(out.refined.len(), 1, "{e:?}: {out:?}");
        assert_eq!(out.conflicts.len(), 1, "{e:?}: {out:?}");
        let r = &out.refined[0];
        assert_eq!(r.call_id, CallId::Int(a));
        assert_eq!(r.prev_ended_at, ended);
        assert_eq!(r.ended_at, better);
        assert_eq!(r.talk_seconds, 200, "{e:?}: talk time follows the new end");
        let row = row_text(
            &s,
            "calls",
            "id",
            &a.to_string(),
            &["ended_at", "talk_seconds"],
        )
        .await;
        assert_eq!(row[0].as_deref(), Some("2026-11-24 12:03:20"), "{e:?}");
        assert_eq!(row[1].as_deref(), Some("200"), "{e:?}");
        let audit = row_text(
            &s,
            "call_closures",
            "id",
            &r.refinement_id.to_string(),
            &[
                "outcome",
                "ended_at_source",
                "prev_ended_at",
                "new_ended_at",
            ],
        )
        .await;
        assert_eq!(audit[0].as_deref(), Some("refined"));
        assert_eq!(audit[1].as_deref(), Some("cdr"));
        assert_eq!(audit[2].as_deref(), Some("2026-11-24 12:05:00"));
        // Refined once: no longer a candidate, and a second refinement is a conflict.
        assert!(s
            .refine_candidates(since, None, true, 10)
            .await
            .unwrap()
            .iter()
            .all(|c| c.call_id != CallId::Int(a)));
        let again = s.refine(&items[1..], "run-refine", None).await.unwrap();
        assert!(again.refined.is_empty(), "{e:?}");
        // Undo the refinement: the row holds the close's end again, and the refinement is not made again.
        let undone = s
            .undo(UndoSelector::Closures(vec![r.refinement_id]), false)
            .await
            .unwrap();
        assert_eq!(undone.restored.len(), 1, "{e:?}: {undone:?}");
        let row = row_text(
            &s,
            "calls",
            "id",
            &a.to_string(),
            &["ended_at", "talk_seconds"],
        )
        .await;
        assert_eq!(row[0].as_deref(), Some("2026-11-24 12:05:00"), "{e:?}");
        assert_eq!(row[1].as_deref(), Some("300"), "{e:?}");
        let left = s.refine_candidates(since, None, true, 10).await.unwrap();
        assert!(left.iter().all(|c| c.call_id != CallId::Int(a)), "{e:?}");
        // Then the close itself can be undone.
        let undone = s
            .undo(UndoSelector::Closures(vec![r.closure_id]), false)
            .await
            .unwrap();
        assert_eq!(undone.restored.len(), 1, "{e:?}: {undone:?}");
        let row = row_text(&s, "calls", "id", &a.to_string(), &["ended_at"]).await;
        assert_eq!(row[0], None, "{e:?}");
        let stats = s
            .stats(Duration::hours(1), Duration::hours(24))
            .await
            .unwrap();
        assert_eq!(
            stats.refined_by_cdr, 0,
            "{e:?}: undone refinements are not counted"
        );
    }
}
