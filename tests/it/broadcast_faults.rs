//! A black-holed Redis never stalls the service: the daemon closes rows, the other transport (a webhook)
//! receives every close at once, and shutdown finishes — with Redis accepting connections and never answering,
//! and with a Redis listener that never accepts.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use store::testing::{Engine, TestDb};

use crate::daemon::{
    closed, eventually, insert_row, pbx_with_call, settings_for, start_answered, start_daemon,
    DEADLINE,
};

async fn black_hole(accept: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if accept {
                if let Ok((sock, _)) = listener.accept().await {
                    held.push(sock); // never read, never answered
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        }
    });
    (addr, task)
}

async fn webhook_beside_a_black_holed_redis(accept: bool) {
    let Some(db) = TestDb::create(Engine::Sqlite).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (hole, hole_task) = black_hole(accept).await;
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "{}"
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    let (call_b, agent_b) = start_answered(&pbx, "2002");
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    insert_row(&db, 2, &agent_b, "2002", Utc::now()).await;
    let mut settings = settings_for(db.url(), pbx.local_addr());
    // The default timeout (5 s): the webhook must not wait behind the Redis deliveries at all.
    settings.broadcast = toml::from_str(&format!(
        "[redis]\nurl = \"redis://{hole}/\"\n[webhook]\nurl = \"http://{http}/hook\"\nsecret = \"s\""
    ))
    .unwrap();
    let d = start_daemon(settings);
    d.synced().await;
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    closed(&db, 1, "row 1 closed").await;
    pbx.with(|p| p.hangup(call_b, 16)).unwrap();
    closed(&db, 2, "row 2 closed").await;
    eventually("the webhook to receive both closes", || async {
        (seen.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    let ids: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["data"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    tokio::time::timeout(DEADLINE, d.stop())
        .await
        .unwrap_or_else(|_| panic!("accept={accept}: the daemon did not stop"));
    hole_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_redis_accepting_never_stalls_the_daemon() {
    webhook_beside_a_black_holed_redis(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_redis_never_accepting_never_stalls_the_daemon() {
    webhook_beside_a_black_holed_redis(false).await;
}
