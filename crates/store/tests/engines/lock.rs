use store::testing::Engine;
use store::{CloseReason, Error};

use crate::common::*;

#[tokio::test]
async fn only_one_instance_holds_a_server_lock() {
    for db in dbs().await {
        let (one, _) = store(&db).await;
        let (two, _) = store(&db).await; // a second pool: another process as far as the database can tell
        let held = one
            .acquire_lock("pbx1")
            .await
            .unwrap()
            .expect("first instance gets the lock");
        assert!(held.is_held().await.unwrap());
        assert!(
            two.acquire_lock("pbx1").await.unwrap().is_none(),
            "{:?}",
            db.engine()
        );
        let other = two.acquire_lock("pbx2").await.unwrap();
        assert!(other.is_some(), "locks are per server name");
        held.release().await.unwrap();
        let taken = two.acquire_lock("pbx1").await.unwrap();
        assert!(
            taken.is_some(),
            "released lock can be taken by the other instance"
        );
    }
}

#[tokio::test]
async fn a_lost_lock_stops_writes_until_reacquired() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let id = insert_call(&s, "101", None, Some("2026-11-24 12:00:00"), None).await;
        let lock = s.acquire_lock("pbx1").await.unwrap().unwrap();
        match db.engine() {
            Engine::Postgres => {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .execute(s.pool())
                .await
                .unwrap();
            }
            Engine::MySql => {
                let conn_id: i64 = sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(CONCAT('callwatch:', DATABASE(), ':pbx1')) AS SIGNED)")
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
                sqlx::query(&format!("KILL CONNECTION {conn_id}"))
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
            Engine::Sqlite => {
                // Another instance took the lease over (e.g. after it expired while this one was stalled).
                sqlx::query(
                    "UPDATE callwatch_locks SET holder = 'someone-else' WHERE name = 'pbx1'",
                )
                .execute(s.pool())
                .await
                .unwrap();
            }
        }
        assert!(!lock.is_held().await.unwrap(), "{:?}", db.engine());
        let err = s
            .close(&[req(id, t0(), CloseReason::ChannelGone)], "r")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::LockLost(_)),
            "{:?}: {err}",
            db.engine()
        );
        assert!(err.is_retryable());
        assert_eq!(
            count(&s, "calls", "ended_at IS NULL").await,
            1,
            "nothing written"
        );
        assert_eq!(count(&s, "call_closures", "1 = 1").await, 0);
        if db.engine() == Engine::Sqlite {
            // The other holder's lease is live: re-acquiring must fail until it is released.
            assert!(!lock.reacquire().await.unwrap());
            sqlx::query("DELETE FROM callwatch_locks")
                .execute(s.pool())
                .await
                .unwrap();
        }
        assert!(lock.reacquire().await.unwrap(), "{:?}", db.engine());
        assert!(lock.is_held().await.unwrap());
        let out = s
            .close(&[req(id, t0(), CloseReason::ChannelGone)], "r")
            .await
            .unwrap();
        assert_eq!(out.closed.len(), 1);
    }
}
