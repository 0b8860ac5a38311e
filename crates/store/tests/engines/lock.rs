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

/// `HOST:PID:START` as the store tags SQLite lease holders (Linux `/proc`).
#[cfg(target_os = "linux")]
fn process_tag(pid: u32) -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .to_string();
    Some(format!("{}:{pid}:{start}", host.trim()))
}

#[cfg(target_os = "linux")]
async fn write_lease(s: &store::Store, holder: &str) {
    let until = (chrono::Utc::now() + chrono::Duration::seconds(60))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    sqlx::query(
        "INSERT OR REPLACE INTO callwatch_locks (name, holder, expires_at) VALUES ('pbx1', ?, ?)",
    )
    .bind(holder)
    .bind(until)
    .execute(s.pool())
    .await
    .unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_lease_of_a_dead_process_on_this_host_is_taken_at_once() {
    let db = store::testing::TestDb::create(Engine::Sqlite)
        .await
        .unwrap();
    let (s, _) = store(&db).await;
    // A process that held the lease and died without releasing it (a crashed cleanup): its PID is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    let dead_tag = process_tag(dead_pid).expect("the child is not reaped yet");
    child.wait().unwrap();
    write_lease(&s, &format!("h-crashed@{dead_tag}")).await;
    let lock = s.acquire_lock("pbx1").await.unwrap();
    assert!(lock.is_some(), "a dead holder's live lease is taken over");
    drop(lock);

    // A live holder (this very process, another store) keeps it until it expires or is released.
    let live_tag = process_tag(std::process::id()).unwrap();
    write_lease(&s, &format!("h-other-store@{live_tag}")).await;
    assert!(s.acquire_lock("pbx1").await.unwrap().is_none());
    // As does a holder on another host, or one without a tag.
    let (_, rest) = live_tag.split_once(':').unwrap();
    write_lease(&s, &format!("h-remote@other-host:{rest}")).await;
    assert!(s.acquire_lock("pbx1").await.unwrap().is_none());
    write_lease(&s, "h-untagged").await;
    assert!(s.acquire_lock("pbx1").await.unwrap().is_none());
}

/// The session that holds `name` on PostgreSQL/MySQL, seen from another connection (None: nobody holds it).
async fn holder_session(admin: &store::Store, name: &str) -> Option<i64> {
    match admin.dialect() {
        store::Dialect::Postgres => sqlx::query_scalar::<_, i64>(
            "SELECT CAST(pid AS BIGINT) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_optional(admin.pool())
        .await
        .unwrap(),
        _ => sqlx::query_scalar::<_, Option<i64>>(&format!(
            "SELECT CAST(IS_USED_LOCK(CONCAT('callwatch:', DATABASE(), ':{name}')) AS SIGNED)"
        ))
        .fetch_one(admin.pool())
        .await
        .unwrap(),
    }
}

/// `reacquire` when the check itself fails (the pool is exhausted: acquiring a connection times out) while
/// the lock's own session is still alive: that session is closed, never left holding the lock unseen.
#[tokio::test]
async fn reacquire_closes_the_old_session_when_the_check_fails() {
    for db in dbs().await {
        if db.engine() == Engine::Sqlite {
            continue; // a lease has no session to leave behind
        }
        let mut cfg = db.config();
        cfg.max_connections = 2;
        cfg.acquire_timeout = std::time::Duration::from_millis(300);
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        let (admin, _) = store(&db).await;
        let lock = s.acquire_lock("pbx1").await.unwrap().unwrap();
        let session = holder_session(&admin, "pbx1").await;
        assert!(session.is_some(), "{:?}: the lock is held", db.engine());
        // Every pooled connection busy: the check cannot get one.
        let busy = (
            s.pool().acquire().await.unwrap(),
            s.pool().acquire().await.unwrap(),
        );
        assert!(lock.is_held().await.is_err(), "{:?}", db.engine());
        let _ = lock.reacquire().await;
        // The server ends a closed session asynchronously: give it a moment.
        for _ in 0..40 {
            if holder_session(&admin, "pbx1").await.is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            holder_session(&admin, "pbx1").await,
            None,
            "{:?}: the old session still holds the lock",
            db.engine()
        );
        drop(busy);
        assert!(lock.reacquire().await.unwrap(), "{:?}", db.engine());
        assert!(holder_session(&admin, "pbx1").await.is_some());
        let taken_elsewhere = admin.acquire_lock("pbx1").await.unwrap();
        assert!(taken_elsewhere.is_none(), "{:?}", db.engine());
    }
}

/// A lock that was lost, given up and replaced by a new one is no longer checked on writes: the store
/// writes under its new lock instead of refusing with `LockLost` forever.
#[tokio::test]
async fn a_replaced_lock_no_longer_refuses_writes() {
    for db in dbs().await {
        let (s, _) = store(&db).await;
        let (other, _) = store(&db).await;
        let id = insert_call(&s, "101", None, Some("2026-11-24 12:00:00"), None).await;
        let lost = s.acquire_lock("pbx1").await.unwrap().unwrap();
        match db.engine() {
            Engine::Sqlite => {
                sqlx::query("DELETE FROM callwatch_locks")
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
            _ => {
                let session = holder_session(&other, "pbx1").await.unwrap();
                let kill = match db.engine() {
                    Engine::Postgres => format!("SELECT pg_terminate_backend({session})"),
                    _ => format!("KILL CONNECTION {session}"),
                };
                sqlx::query(&kill).execute(other.pool()).await.unwrap();
                // pg_terminate_backend only signals the backend: wait until it has gone.
                for _ in 0..100 {
                    if holder_session(&other, "pbx1").await.is_none() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        let theirs = other.acquire_lock("pbx1").await.unwrap();
        let theirs = theirs.unwrap_or_else(|| panic!("{:?}: free after the loss", db.engine()));
        assert!(!lost.reacquire().await.unwrap(), "{:?}", db.engine());
        drop(lost); // what the daemon does with a lock it could not take back
        theirs.release().await.unwrap();
        let mine = s.acquire_lock("pbx1").await.unwrap();
        assert!(mine.is_some(), "{:?}", db.engine());
        let out = s
            .close(&[req(id, t0(), CloseReason::ChannelGone)], "r")
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.engine()));
        assert_eq!(out.closed.len(), 1);
    }
}
