//! Laravel's default Redis channel, end to end: `callwatch cleanup` with a bare `[broadcast.redis]` logs the
//! full channel name at start and publishes on `laravel_database_calls`, where a default Laravel app's Echo
//! server listens; the update's `status` is the one written to the row.

use futures_util::StreamExt as _;
use store::testing::Engine;

use crate::cleanup::{row, run_async, seeded, stderr, Row};
use crate::daemon::DEADLINE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_prefix_publishes_on_laravel_database_calls_and_logs_it() {
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: Redis is down ({e})");
            return;
        }
        Err(e) => panic!("Redis is down under CI: {e}"),
    };
    pubsub.subscribe("laravel_database_calls").await.unwrap();
    // An extension no other test uses, to pick this test's message out of the shared channel.
    let ext = format!("cw{}", std::process::id());
    let Some(db) = seeded(Engine::Sqlite, &[Row::open(1, &ext, 45, None)]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("callwatch.toml");
    // The app's own completed status is what the row gets and what the update says.
    std::fs::write(
        &cfg,
        "[database.mapping.status_values]\ncompleted = \"ended\"\n[broadcast.redis]\nurl = \"redis://127.0.0.1:6379/\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let out = run_async(&db, &["--config", &cfg, "cleanup", "--yes"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("broadcasting closes on Redis channel laravel_database_calls"),
        "{}",
        stderr(&out)
    );
    let mut messages = pubsub.on_message();
    let data = tokio::time::timeout(DEADLINE, async {
        loop {
            let msg = messages.next().await.unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
            if v["data"]["extension"] == ext.as_str() {
                return v;
            }
        }
    })
    .await
    .expect("no message on laravel_database_calls");
    assert_eq!(data["event"], r"App\Events\CallStatusUpdated");
    assert_eq!(data["data"]["id"], 1);
    assert_eq!(
        data["data"]["status"], "ended",
        "the status written to the row"
    );
    assert_eq!(row(&db, 1).await.3.as_deref(), Some("ended"));
}
