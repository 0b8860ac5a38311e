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
