//! The talk time `cleanup` shows is the one it writes: a row whose application already stored `talk_seconds`
//! keeps that value (unless `overwrite_talk_seconds`), and the dry run, the text list and `--json` say so.

use store::testing::Engine;

use crate::cleanup::{json, row, run, seeded, stdout, Row};

/// The value the application stored for row 1 (a 45-minute-old call; the computed talk time is ~2700 s).
const STORED: i64 = 123;

async fn shows_the_talk_time_it_writes(engine: Engine) {
    let Some(db) = seeded(
        engine,
        &[
            Row::open(1, "2001", 45, Some("1795000000.1")),
            Row::open(2, "2002", 50, Some("1795000000.2")),
        ],
    )
    .await
    else {
        return;
    };
    db.exec(&format!(
        "UPDATE calls SET talk_seconds = {STORED} WHERE id = 1"
    ))
    .await;

    let out = run(&db, &["cleanup", "--dry-run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let talk = |v: &serde_json::Value, list: &str, id: i64| {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {list}: {v:#}"))["talk_seconds"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(talk(&v, "to_close", 1), STORED, "the stored value is kept");
    let computed = talk(&v, "to_close", 2);
    assert!((50 * 60..50 * 60 + 60).contains(&computed), "{computed}");

    let text = stdout(&run(&db, &["cleanup", "--dry-run"], &[]));
    let line = text
        .lines()
        .find(|l| l.contains("2001") && l.contains("timeout_cleanup"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.trim_end().ends_with(&format!(" {STORED}")),
        "the text list shows the kept value: {line}"
    );

    // With overwrite_talk_seconds the computed value is shown — and written.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("callwatch.toml");
    std::fs::write(&cfg, "[database]\noverwrite_talk_seconds = true\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let v = json(&run(
        &db,
        &["--config", cfg, "cleanup", "--dry-run", "--json"],
        &[],
    ));
    let overwritten = talk(&v, "to_close", 1);
    assert!(
        (45 * 60..45 * 60 + 60).contains(&overwritten),
        "{overwritten}"
    );

    // The real run writes and reports what the dry run showed.
    let out = run(&db, &["cleanup", "--yes", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(talk(&v, "closed", 1), STORED);
    assert_eq!(row(&db, 1).await.1, Some(STORED));
    assert_eq!(row(&db, 2).await.1, Some(talk(&v, "closed", 2)));
}

#[tokio::test]
async fn dry_run_shows_the_kept_talk_time_sqlite() {
    shows_the_talk_time_it_writes(Engine::Sqlite).await;
}

#[tokio::test]
async fn dry_run_shows_the_kept_talk_time_mysql() {
    shows_the_talk_time_it_writes(Engine::MySql).await;
}
