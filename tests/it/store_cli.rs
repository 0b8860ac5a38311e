//! `callwatch migrate` and `callwatch check-config` end to end.

use store::testing::{Engine, TestDb};

use crate::common::callwatch;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn migrate_creates_the_sqlite_file_and_is_idempotent_then_check_config_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-dir-less.db");
    let url = format!("sqlite://{}", path.display());
    let first = callwatch(&["migrate", "--database", &url]);
    assert!(first.status.success(), "{first:?}");
    assert!(path.exists(), "sqlite:// creates the file");
    assert!(
        stdout(&first).contains("applied: 20261124000001"),
        "{}",
        stdout(&first)
    );
    let second = callwatch(&["migrate", "--database", &url]);
    assert!(second.status.success());
    assert!(
        stdout(&second).contains("schema is up to date"),
        "{}",
        stdout(&second)
    );
    let check = callwatch(&["check-config", "--database", &url]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(stdout(&check).contains("ok   column ended_at = calls.ended_at"));
    assert!(stdout(&check).contains("configuration OK"));
}

#[test]
fn check_config_fails_clearly_on_a_bad_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    assert!(callwatch(&["migrate", "--database", &url]).status.success());
    let cfg = dir.path().join("callwatch.toml");
    std::fs::write(
        &cfg,
        "[database.mapping.columns]\nextension = \"agent_ext\"\n",
    )
    .unwrap();
    let out = callwatch(&[
        "check-config",
        "--config",
        cfg.to_str().unwrap(),
        "--database",
        &url,
    ]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("FAIL column extension = calls.agent_ext: missing from the table"),
        "{text}"
    );
    assert!(text.contains("1 check(s) failed"), "{text}");

    std::fs::write(
        &cfg,
        "[database.mapping]\ntable = \"calls; drop table calls\"\n",
    )
    .unwrap();
    let out = callwatch(&[
        "check-config",
        "--config",
        cfg.to_str().unwrap(),
        "--database",
        &url,
    ]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAIL database settings"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn migrate_on_postgres_never_prints_the_password() {
    let Some(db) = TestDb::create(Engine::Postgres).await else {
        return;
    };
    // The local server trusts 127.0.0.1, so any password is accepted — and must never be shown.
    let url = db.url().replacen(
        "postgres://postgres@",
        "postgres://postgres:supersecret@",
        1,
    );
    assert!(url.contains("supersecret"));
    let out = tokio::task::spawn_blocking(move || callwatch(&["migrate", "--database", &url]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("(postgres)"), "{all}");
    assert!(!all.contains("supersecret"), "{all}");
    let bad = tokio::task::spawn_blocking(|| {
        callwatch(&[
            "migrate",
            "--database",
            "mysql://root:supersecret@127.0.0.1:1/x",
        ])
    })
    .await
    .unwrap();
    assert!(!bad.status.success());
    let all = format!("{}{}", stdout(&bad), String::from_utf8_lossy(&bad.stderr));
    assert!(!all.contains("supersecret"), "{all}");
    assert!(all.contains("***"), "{all}");
}

/// The index definitions on the `calls` table, as the engine reports them (sorted).
async fn calls_indexes(db: &TestDb) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT name || ':' || COALESCE(sql, '') FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls'"
        }
        Engine::Postgres => {
            "SELECT CAST(indexdef AS TEXT) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'calls'"
        }
        Engine::MySql => {
            "SELECT CAST(CONCAT(INDEX_NAME, ':', COLUMN_NAME) AS CHAR) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'calls'"
        }
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    let mut v: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
    v.sort();
    v.into_iter().map(|r| r.0).collect()
}

/// `callwatch migrate` beside an application's existing `calls` table (as its Laravel migration made it, with
/// no index on `ended_at`) creates callwatch's own tables and leaves `calls` exactly as it was: no index is
/// added. `check-config` passes and suggests the index instead; the suggested statement runs as printed, and
/// afterwards there is nothing left to suggest.
async fn migrate_leaves_an_existing_calls_table_alone(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let (id, ts) = match engine {
        Engine::Sqlite => ("integer PRIMARY KEY AUTOINCREMENT NOT NULL", "datetime"),
        Engine::Postgres => ("bigserial PRIMARY KEY", "timestamp(0) without time zone"),
        Engine::MySql => (
            "bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY",
            "timestamp",
        ),
    };
    db.exec(&format!(
        "CREATE TABLE calls (id {id}, uniqueid varchar(255) NULL, linkedid varchar(255) NULL, \
         channel varchar(255) NULL, extension varchar(255) NULL, caller varchar(255) NULL, \
         server varchar(255) NULL, status varchar(255) NOT NULL DEFAULT 'ringing', \
         started_at {ts} NULL, answered_at {ts} NULL, ended_at {ts} NULL, hangup_cause varchar(255) NULL, \
         talk_seconds integer NULL, created_at {ts} NULL, updated_at {ts} NULL)"
    ))
    .await;
    let before = calls_indexes(&db).await;
    let url = db.url().to_string();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || callwatch(&args))
            .await
            .unwrap()
    };
    let out = run(vec!["migrate".into(), "--database".into(), url.clone()]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("table calls exists: left as it is"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        calls_indexes(&db).await,
        before,
        "{engine:?}: migrate changed the application's table"
    );
    let check = run(vec![
        "check-config".into(),
        "--database".into(),
        url.clone(),
    ])
    .await;
    let text = stdout(&check);
    assert!(check.status.success(), "{text}");
    let hint = text
        .lines()
        .find(|l| l.starts_with("hint no index on calls covers ended_at"))
        .unwrap_or_else(|| panic!("{engine:?}: no index suggested: {text}"));
    let statement = hint.split("consider ").nth(1).unwrap();
    assert!(
        statement.starts_with("CREATE INDEX calls_in_progress_index ON"),
        "{statement}"
    );
    db.exec(statement).await;
    // Rounds after hangups look rows up by uniqueid and linkedid: a hint for each column without an index.
    let lookups: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hint no index on calls starts with its"))
        .collect();
    assert_eq!(lookups.len(), 2, "{engine:?}: {text}");
    for hint in lookups {
        db.exec(hint.split("consider ").nth(1).unwrap()).await;
    }
    let check = run(vec![
        "check-config".into(),
        "--database".into(),
        url.clone(),
    ])
    .await;
    assert!(check.status.success());
    assert!(!stdout(&check).contains("hint"), "{}", stdout(&check));
    // A second migrate applies nothing and still leaves the table alone.
    let again = run(vec!["migrate".into(), "--database".into(), url]).await;
    assert!(
        stdout(&again).contains("schema is up to date"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test]
async fn migrate_leaves_an_existing_calls_table_alone_sqlite() {
    migrate_leaves_an_existing_calls_table_alone(Engine::Sqlite).await;
}

#[tokio::test]
async fn migrate_leaves_an_existing_calls_table_alone_postgres() {
    migrate_leaves_an_existing_calls_table_alone(Engine::Postgres).await;
}

#[tokio::test]
async fn migrate_leaves_an_existing_calls_table_alone_mysql() {
    migrate_leaves_an_existing_calls_table_alone(Engine::MySql).await;
}
