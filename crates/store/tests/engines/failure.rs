use std::sync::Arc;
use std::time::Duration;

use store::testing::{Engine, Fault};
use store::{CloseReason, DatabaseConfig, Error, Store};

use crate::common::*;

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_error_without_the_password() {
    for url in [
        "postgres://callwatch:hunter2@127.0.0.1:1/app",
        "mysql://callwatch:hunter2@127.0.0.1:1/app",
    ] {
        let mut cfg = DatabaseConfig::new(url);
        cfg.acquire_timeout = Duration::from_secs(2);
        let err = Store::connect(&cfg, Arc::new(clock::SystemClock))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{url}: {err:?}");
        assert!(err.is_retryable());
        for shown in [err.to_string(), format!("{err:?}"), format!("{cfg:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}

#[tokio::test]
async fn a_connection_killed_mid_transaction_writes_nothing() {
    for db in dbs().await {
        if db.engine() == Engine::Sqlite {
            continue; // embedded: there is no connection to kill
        }
        let mut cfg = db.config();
        cfg.batch_chunk = 5;
        let (_, shared) = clock();
        let s = db.store_with(&cfg, shared).await;
        s.migrate().await.unwrap();
        let mut reqs = Vec::new();
        for i in 0..12 {
            let id = insert_call(
                &s,
                &format!("6{i:02}"),
                None,
                Some("2026-11-24 12:00:00"),
                None,
            )
            .await;
            reqs.push(req(
                id,
                t0() + chrono::Duration::seconds(30),
                CloseReason::ChannelGone,
            ));
        }
        // The first chunk's UPDATE and audit INSERT have run inside the transaction when the server kills it.
        s.set_fault(Some(Fault::KillConnectionAfterChunk(0)));
        let err = s.close(&reqs, "doomed").await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { .. }),
            "{:?}: {err:?}",
            db.engine()
        );
        assert!(err.is_retryable());
        assert_eq!(
            count(&s, "calls", "ended_at IS NULL").await,
            12,
            "{:?}: partial write",
            db.engine()
        );
        assert_eq!(count(&s, "call_closures", "1 = 1").await, 0);
        // The caller retries: the pool hands out a healthy connection and the batch goes through whole.
        s.set_fault(None);
        let out = s.close(&reqs, "retry").await.unwrap();
        assert_eq!(out.closed.len(), 12);
        assert_eq!(count(&s, "call_closures", "run_id = 'retry'").await, 12);
    }
}
