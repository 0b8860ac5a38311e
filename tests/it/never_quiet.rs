//! The bad day: AMI never reachable, unreadable rows, the instance lock through outages and hand-overs, a
//! hung loop and systemd's watchdog, and the first contact with an empty database. Each test runs the real
//! daemon (in process or as the `callwatch` binary) against the scripted PBX and a real engine.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use callwatch::settings::Settings;
use chrono::Utc;
use fault_proxy::FaultProxy;
use store::testing::{Engine, TestDb};

use crate::common::callwatch;
use crate::daemon::{
    closed, eventually, insert_row, pbx_with_call, row, settings_for, start_answered, start_daemon,
    DEADLINE,
};

/// An address on which nothing listens (bound, then closed).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `(reason, hangup_cause)` of row `id`'s audit record, if it was closed.
async fn audit_reason(db: &TestDb, id: i64) -> Option<String> {
    let store = db.store().await;
    let text = match db.engine() {
        Engine::Postgres => "VARCHAR(64)",
        Engine::MySql => "CHAR(64)",
        Engine::Sqlite => "TEXT",
    };
    let r: Option<String> = sqlx::query_scalar(&format!(
        "SELECT CAST(reason AS {text}) FROM call_closures WHERE call_id = '{id}' OR call_id = {id}"
    ))
    .fetch_optional(store.pool())
    .await
    .unwrap();
    store.shutdown().await;
    r
}

/// A daemon whose AMI is never reachable still closes a stuck row that carries a Uniqueid once
/// `fallback_after` has passed since it started (counted from process start: the map was never synced),
/// and keeps a row younger than `timeout`.
async fn falls_back_when_ami_was_never_synced(ami_url: String) {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let now = Utc::now();
    insert_row(
        &db,
        1,
        "1700000000.11",
        "2001",
        now - chrono::Duration::minutes(45),
    )
    .await;
    insert_row(
        &db,
        2,
        "1700000000.12",
        "2002",
        now - chrono::Duration::seconds(10),
    )
    .await;
    let mut settings: Settings = settings_for(db.url(), closed_port());
    settings.servers = vec![callwatch::settings::ServerConfig::from_url(&ami_url)];
    settings.policy.fallback_after = Duration::from_secs(2);
    settings.policy.timeout = Duration::from_secs(60);
    let d = start_daemon(settings);
    let (_, cause) = closed(&db, 1, "the stuck row closed by the fallback").await;
    assert_eq!(cause.as_deref(), Some("timeout_cleanup"));
    assert_eq!(
        audit_reason(&db, 1).await.as_deref(),
        Some("timeout_cleanup")
    );
    assert_eq!(
        row(&db, 2).await.0,
        None,
        "a row younger than timeout stays open"
    );
    assert!(!d.health.snapshot().servers[0].synced);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_falls_back_when_the_ami_port_is_closed() {
    falls_back_when_ami_was_never_synced(format!(
        "ami://watchdog:lab-secret@{}?server=pbx1",
        closed_port()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_falls_back_when_the_ami_login_is_refused() {
    let (pbx, _call, _agent) = pbx_with_call("2001").await;
    falls_back_when_ami_was_never_synced(format!(
        "ami://watchdog:wrong-secret@{}?server=pbx1",
        pbx.local_addr()
    ))
    .await;
    drop(pbx);
}

/// `cleanup --ami URL` whose login fails judges that server's rows by age (the seed's rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_falls_back_when_the_ami_login_fails() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, _call, _agent) = pbx_with_call("2001").await;
    insert_row(
        &db,
        1,
        "1700000000.11",
        "2009",
        Utc::now() - chrono::Duration::minutes(45),
    )
    .await;
    let out = callwatch(&[
        "cleanup",
        "--database",
        db.url(),
        "--ami",
        &format!(
            "ami://watchdog:wrong-secret@{}?server=pbx1",
            pbx.local_addr()
        ),
        "--ami-wait",
        "2s",
        "--yes",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["servers"][0]["synced"], false, "{report}");
    assert_eq!(report["closed"][0]["reason"], "timeout_cleanup", "{report}");
    assert_eq!(row(&db, 1).await.1.as_deref(), Some("timeout_cleanup"));
}

/// `callwatch run` with the server in `CALLWATCH_AMI_URL` and its secret in `CALLWATCH_AMI_SECRET` (as the
/// configuration reference, docs/configuration.md, documents) logs in and closes a call when it hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_the_ami_secret_from_callwatch_ami_secret() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, call, agent) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent, "2001", Utc::now()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "run",
            "--database",
            db.url(),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env(
            "CALLWATCH_AMI_URL",
            format!("ami://watchdog@{}?server=pbx1", pbx.local_addr()),
        )
        .env("CALLWATCH_AMI_SECRET", "lab-secret")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let addr = eventually("the HTTP address in the log", || async {
        logged_http_addr(&read_log())
    })
    .await;
    if let Ok(Some(status)) = child.try_wait() {
        panic!("callwatch run exited ({status}):\n{}", read_log());
    }
    eventually("ready: logged in, listed, lock held", || async {
        let r = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call, 16)).unwrap();
    let result = tokio::time::timeout(DEADLINE, closed(&db, 1, "row 1 closed")).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let (_, cause) = result.unwrap_or_else(|_| panic!("not closed:\n{log}"));
    assert_eq!(cause.as_deref(), Some("normal_clearing"), "{log}");
    assert!(!log.contains("lab-secret"), "{log}");
}

/// One unreadable row (SQLite junk text, MySQL's zero date, PostgreSQL's `infinity`) never stops a
/// cleanup: it is skipped and listed under `unreadable`, every other row is judged, the exit status is 0;
/// `status --json` lists it too.
async fn cleanup_skips_an_unreadable_row(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let old = Utc::now() - chrono::Duration::minutes(45);
    insert_row(&db, 1, "1700000000.11", "2001", old).await;
    insert_row(&db, 2, "1700000000.12", "2002", old).await;
    let (value, setup) = match engine {
        Engine::Sqlite => ("garbage", None),
        Engine::MySql => ("0000-00-00 00:00:00", Some("SET SESSION sql_mode = ''")),
        Engine::Postgres => ("infinity", None),
    };
    let store = db.store().await;
    let mut conn = store.pool().acquire().await.unwrap();
    if let Some(setup) = setup {
        sqlx::query(setup).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(&format!(
        "UPDATE calls SET answered_at = '{value}' WHERE id = 2"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    store.shutdown().await;

    let out = callwatch(&[
        "cleanup",
        "--database",
        db.url(),
        "--no-ami",
        "--yes",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{engine:?}: {stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["closed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["closed"][0]["id"], 1, "{report}");
    assert_eq!(report["unreadable"][0]["id"], 2, "{report}");
    assert_eq!(report["unreadable"][0]["column"], "answered_at", "{report}");
    assert!(stderr.contains("unreadable call row skipped"), "{stderr}");
    assert_eq!(
        row(&db, 2).await.0,
        None,
        "the unreadable row is never written"
    );

    let out = callwatch(&["status", "--database", db.url(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["unreadable"][0]["id"], 2, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_skips_an_unreadable_row_sqlite() {
    cleanup_skips_an_unreadable_row(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_skips_an_unreadable_row_postgres() {
    cleanup_skips_an_unreadable_row(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_skips_an_unreadable_row_mysql() {
    cleanup_skips_an_unreadable_row(Engine::MySql).await;
}

/// `GET /metrics` of a running daemon.
async fn metrics(addr: &str) -> String {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body
}

/// The HTTP address a daemon logged (`HTTP endpoints listening addr=…`).
fn logged_http_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP endpoints listening"))?;
    let at = line.find("addr=")? + 5;
    Some(line[at..].split_whitespace().next()?.to_string())
}

/// The daemon with two servers: an unreadable row is logged once (not every round) and counted in
/// `callwatch_rows_unreadable{server}`; `callwatch_calls_open` is labelled by server; the stuck row beside
/// the unreadable one is still closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_quarantines_unreadable_rows_and_labels_open_rows_by_server() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx1, call, agent1) = pbx_with_call("2001").await;
    let (pbx2, _call2, agent2) = pbx_with_call("3001").await;
    let (_call3, agent3) = start_answered(&pbx2, "3002");
    let now = Utc::now();
    insert_row(&db, 1, &agent1, "2001", now).await;
    insert_row(&db, 2, &agent2, "3001", now).await;
    insert_row(&db, 3, &agent3, "3002", now).await;
    insert_row(&db, 4, "1700000000.99", "2009", now).await;
    insert_row(&db, 5, "1700000000.98", "2010", now).await;
    let store = db.store().await;
    for (id, server) in [
        (1, "pbx1"),
        (2, "pbx2"),
        (3, "pbx2"),
        (4, "pbx1"),
        (5, "pbx9"),
    ] {
        sqlx::query(&format!(
            "UPDATE calls SET server = '{server}' WHERE id = {id}"
        ))
        .execute(store.pool())
        .await
        .unwrap();
    }
    // A day-first date: SQLite compares it as text, so it even passes the "answered before now" filter.
    sqlx::query("UPDATE calls SET answered_at = '02/12/2026 07:48' WHERE id = 4")
        .execute(store.pool())
        .await
        .unwrap();
    store.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [[server]]\nname = \"pbx2\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[policy]\nsweep_interval = \"2s\"\n",
            pbx1.local_addr(),
            pbx2.local_addr()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--database",
            db.url(),
        ])
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("CALLWATCH_AMI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let addr = eventually("the HTTP address in the log", || async {
        logged_http_addr(&read_log())
    })
    .await;
    pbx1.with(|p| p.hangup(call, 16)).unwrap();
    let result = tokio::time::timeout(DEADLINE, closed(&db, 1, "row 1 closed")).await;
    // Several periodic rounds (sweep_interval 2 s) pass over the unreadable row.
    let deadline = std::time::Instant::now() + DEADLINE;
    let m = loop {
        let m = metrics(&addr).await;
        if m.contains("callwatch_calls_open{server=\"pbx2\"} 2")
            && m.contains("callwatch_rows_unreadable{server=\"pbx1\"} 1")
            && m.contains("callwatch_rows_unknown_server{server=\"pbx9\"} 1")
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gauges missing:\n{m}\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = read_log();
    result.unwrap_or_else(|_| panic!("row 1 not closed:\n{log}"));
    assert!(
        m.contains("callwatch_calls_open{server=\"pbx1\"} 0"),
        "row 1 closed, row 4 unreadable:\n{m}"
    );
    assert!(
        m.contains("callwatch_rows_unreadable{server=\"pbx2\"} 0"),
        "{m}"
    );
    assert_eq!(
        log.matches("unreadable call row skipped").count(),
        1,
        "logged once over several rounds:\n{log}"
    );
    assert!(log.contains("call_id=4"), "{log}");
    assert_eq!(row(&db, 4).await.0, None);
    assert_eq!(
        log.matches("open rows name a server this daemon does not watch")
            .count(),
        1,
        "warned once about pbx9:\n{log}"
    );
    let out = callwatch(&[
        "status",
        "--config",
        config.to_str().unwrap(),
        "--database",
        db.url(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["unknown_servers"][0]["server"], "pbx9", "{status}");
    assert_eq!(status["unknown_servers"][0]["rows"], 1, "{status}");
}

/// Several servers but no server column: every row would be judged against one Asterisk's map, so
/// another's live calls would close as gone. That configuration is refused with a way out.
#[test]
fn several_servers_without_a_server_column_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        "[[server]]\nname = \"pbx1\"\nurl = \"ami://w:s@127.0.0.1:5038\"\n\
         [[server]]\nname = \"pbx2\"\nurl = \"ami://w:s@127.0.0.1:5039\"\n\
         [database.mapping.columns]\nserver = \"\"\n",
    )
    .unwrap();
    let out = callwatch(&[
        "check-config",
        "--offline",
        "--config",
        config.to_str().unwrap(),
    ]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("no server column mapped"), "{all}");
    assert!(all.contains("[database.mapping.columns] server"), "{all}");
}

/// A log written to a file (not a terminal) carries no ANSI colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_have_no_colour_codes() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let out = callwatch(&[
        "run",
        "--database",
        db.url(),
        "--ami",
        &format!("ami://watchdog:lab-secret@{}", closed_port()),
        "--http-listen",
        "127.0.0.1:0",
        "--exit-after",
        "2s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("INFO") || stderr.contains("WARN"),
        "some log lines: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
}

/// Every secret a configuration file can hold stays out of the error printed for a broken file, whichever
/// line the TOML parser quotes.
#[test]
fn config_errors_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[server]]\nurl = \"ami://watchdog:S3cret-url@127.0.0.1\" oops\n",
            "S3cret-url",
        ),
        (
            "[[server]]\nurl = \"ami://watchdog@127.0.0.1\"\nsecret = \"S3cret-inline\"\n",
            "S3cret-inline",
        ),
        (
            "[database]\nurl = \"postgres://app:S3cret-db@127.0.0.1/x\" oops\n",
            "S3cret-db",
        ),
        (
            "[database]\nurl = \"postgres://app:S3cret-db2@127.0.0.1/x\nx = 1\n",
            "S3cret-db2",
        ),
        (
            "[broadcast.pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"S3cret-pusher\" oops\n",
            "S3cret-pusher",
        ),
        (
            "[broadcast.pusher]\nsecret = \"S3cret-pusher2\nkey = 1\n",
            "S3cret-pusher2",
        ),
        (
            "[broadcast.webhook]\nurl = \"http://127.0.0.1:1/\"\nsecret = 'S3cret-hook' oops\n",
            "S3cret-hook",
        ),
        (
            "[broadcast.redis]\nurl = \"redis://:S3cret-redis@127.0.0.1:6379/\" oops\n",
            "S3cret-redis",
        ),
        (
            "[broadcast.redis]\nurl = \"redis://u:S3cret-redis2@127.0.0.1:6379/\"\nprefix = 7\n",
            "S3cret-redis2",
        ),
    ];
    for (i, (text, secret)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = callwatch(&[
            "check-config",
            "--offline",
            "--config",
            path.to_str().unwrap(),
        ]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "case {i} should fail: {all}");
        assert!(all.contains("bad"), "case {i} names the file: {all}");
        assert!(!all.contains(secret), "case {i} printed {secret}: {all}");
    }
}

/// First contact: `cleanup` with no configuration in an empty directory creates no file and says what to
/// do, without repeating its cause.
#[test]
fn cleanup_on_a_database_without_schema_says_run_migrate_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(["cleanup", "--no-ami", "--yes"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("CALLWATCH_AMI_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("callwatch migrate"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file created: {stderr}"
    );

    // An existing file without callwatch's schema: the same advice, once.
    let db = dir.path().join("app.db");
    std::fs::write(&db, b"").unwrap();
    let url = format!("sqlite://{}", db.display());
    for cmd in [
        vec!["cleanup", "--no-ami", "--yes"],
        vec!["status"],
        vec!["undo", "--run", "x", "--dry-run"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--database", &url]);
        let out = callwatch(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?}");
        assert!(stderr.contains("callwatch migrate"), "{cmd:?}: {stderr}");
        assert!(stderr.contains("table calls"), "{cmd:?}: {stderr}");
        for line in stderr.lines().filter(|l| l.starts_with("error:")) {
            let parts: Vec<&str> = line.split(": ").collect();
            let mut seen = std::collections::HashSet::new();
            for p in &parts {
                assert!(
                    p.len() < 12 || seen.insert(*p),
                    "{cmd:?}: repeated {p:?} in {line}"
                );
            }
        }
    }
}

/// An admin connection to `db`'s server (not through callwatch's pool).
async fn admin(engine: Engine) -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = match engine {
        Engine::Postgres => "postgres://postgres@127.0.0.1:5432/test",
        _ => "mysql://root@127.0.0.1:3306/test",
    };
    sqlx::AnyConnection::connect(url).await.unwrap()
}

/// Terminates every connection to `db` (PostgreSQL: refusing new ones too, until [`end_outage`]).
async fn cut_connections(conn: &mut sqlx::AnyConnection, db: &TestDb, refuse: bool) {
    let name = db
        .url()
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    match db.engine() {
        Engine::Postgres => {
            if refuse {
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            sqlx::query(&format!(
                "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        _ => {
            let ids: Vec<i64> = sqlx::query_scalar(&format!(
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = '{name}'"
            ))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            for id in ids {
                let _ = sqlx::query(&format!("KILL CONNECTION {id}"))
                    .execute(&mut *conn)
                    .await;
            }
        }
    }
}

/// Lets connections to `db` in again (PostgreSQL).
async fn end_outage(conn: &mut sqlx::AnyConnection, db: &TestDb) {
    if db.engine() == Engine::Postgres {
        let name = db.url().rsplit('/').next().unwrap().to_string();
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// The database is unreachable for 15 s (every connection reset, new ones refused, so every lock check in
/// that time fails): the lock is reported lost meanwhile, and once the database is back the daemon takes the
/// lock again within one lock check and closes the call that ended during the outage.
///
/// `refusal`: how new connections are turned away (see `fault_proxy::Refusal`).
async fn lock_comes_back_after_a_long_outage(engine: Engine, refusal: fault_proxy::Refusal) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let proxy = FaultProxy::start(upstream(engine)).await.unwrap();
    let (pbx, call, agent) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent, "2001", Utc::now()).await;
    let d = start_daemon(settings_for(&through(&db, &proxy), pbx.local_addr()));
    d.synced().await;
    let outage = Duration::from_secs(15);
    let started = std::time::Instant::now();
    let mut lock_seen_lost = false;
    let mut hung_up = false;
    // Every connection reset, new ones turned away until the outage ends.
    proxy.cut_with(Duration::from_secs(3600), refusal);
    while started.elapsed() < outage {
        if !hung_up && started.elapsed() > Duration::from_secs(1) {
            pbx.with(|p| p.hangup(call, 16)).unwrap();
            hung_up = true;
        }
        lock_seen_lost |= !d.health.snapshot().lock_held;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.accept_again();
    let back = std::time::Instant::now();
    assert!(
        lock_seen_lost,
        "{engine:?} {refusal:?}: /readyz kept claiming the lock through a 15 s outage"
    );
    assert_eq!(
        row(&db, 1).await.0,
        None,
        "{engine:?}: nothing written during the outage"
    );
    closed(&db, 1, "row 1 closed after the outage").await;
    let after = back.elapsed();
    assert!(
        after <= callwatch::daemon::LOCK_CHECK_INTERVAL + Duration::from_secs(5),
        "{engine:?}: writes resumed {after:?} after the outage"
    );
    assert!(d.health.snapshot().lock_held, "{engine:?}");
    d.stop().await;
    let counts = crate::daemon::audit_counts(&db).await;
    assert_eq!(counts.get("1"), Some(&1), "{engine:?}: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_comes_back_after_a_long_outage_postgres() {
    lock_comes_back_after_a_long_outage(Engine::Postgres, fault_proxy::Refusal::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_comes_back_after_a_long_outage_mysql() {
    lock_comes_back_after_a_long_outage(Engine::MySql, fault_proxy::Refusal::Reset).await;
}

/// Two daemons on one database: the standby takes over when the active one stops, and the first, started
/// again, stands by until the lock is handed back. Readiness follows the lock each time.
async fn lock_is_handed_over_and_back(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    let (call_b, agent_b) = start_answered(&pbx, "2002");
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    insert_row(&db, 2, &agent_b, "2002", Utc::now()).await;
    let fallback = chrono::Duration::minutes(2);
    let ready = |d: &crate::daemon::Running| d.health.is_ready(Utc::now(), fallback);
    let first = start_daemon(settings_for(db.url(), pbx.local_addr()));
    first.synced().await;
    let second = start_daemon(settings_for(db.url(), pbx.local_addr()));
    eventually("the second daemon synced", || async {
        let s = second.health.snapshot();
        s.servers.first().is_some_and(|s| s.synced).then_some(())
    })
    .await;
    assert!(ready(&first) && !ready(&second), "{engine:?}");

    first.stop().await;
    eventually("the standby takes over", || async {
        ready(&second).then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    closed(&db, 1, "row 1 closed by the second daemon").await;

    let again = start_daemon(settings_for(db.url(), pbx.local_addr()));
    eventually("the first daemon back, synced", || async {
        let s = again.health.snapshot();
        s.servers.first().is_some_and(|s| s.synced).then_some(())
    })
    .await;
    tokio::time::sleep(callwatch::daemon::LOCK_CHECK_INTERVAL).await; // a lock check passes
    assert!(
        !ready(&again) && ready(&second),
        "{engine:?}: the lock stays with its holder"
    );
    let second_summary = second.stop().await;
    eventually("the lock handed back", || async {
        ready(&again).then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call_b, 16)).unwrap();
    closed(&db, 2, "row 2 closed by the first daemon, back").await;
    let again_summary = again.stop().await;
    assert_eq!(second_summary.closed.len(), 1, "{engine:?}");
    assert_eq!(again_summary.closed.len(), 1, "{engine:?}");
    let counts = crate::daemon::audit_counts(&db).await;
    assert_eq!(counts.values().sum::<i64>(), 2, "{engine:?}: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_handed_over_and_back_sqlite() {
    lock_is_handed_over_and_back(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_handed_over_and_back_postgres() {
    lock_is_handed_over_and_back(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_handed_over_and_back_mysql() {
    lock_is_handed_over_and_back(Engine::MySql).await;
}

/// `db`'s URL through `proxy`, and the engine's real address.
fn through(db: &TestDb, proxy: &FaultProxy) -> String {
    let url = db.url().replace(
        &upstream(db.engine()).to_string(),
        &proxy.local_addr().to_string(),
    );
    assert_ne!(url, db.url());
    url
}

fn upstream(engine: Engine) -> SocketAddr {
    match engine {
        Engine::Postgres => "127.0.0.1:5432",
        _ => "127.0.0.1:3306",
    }
    .parse()
    .unwrap()
}

/// The connection dies after `COMMIT` was sent: the close did commit, the daemon did not see it. On its
/// retry the daemon finds its own audit row, counts the row closed and broadcasts it exactly once.
async fn ambiguous_commit_is_announced_once(engine: Engine) {
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    db.store().await.shutdown().await;
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    let prefix = format!("cwdoubt_{}_{}_", engine.name(), std::process::id());
    pubsub.subscribe(format!("{prefix}calls")).await.unwrap();
    let proxy = FaultProxy::start(upstream(engine)).await.unwrap();
    let url = through(&db, &proxy);
    let (pbx, call, agent) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent, "2001", Utc::now()).await;
    let mut settings = settings_for(&url, pbx.local_addr());
    settings.broadcast = toml::from_str(&format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379/\"\nprefix = \"{prefix}\""
    ))
    .unwrap();
    let d = start_daemon(settings);
    d.synced().await;
    eventually("a first round", || async {
        d.health.snapshot().last_sweep.at.map(|_| ())
    })
    .await;
    // The next COMMIT reaches the server; its answer never comes back and the connection dies.
    proxy.cut_on(b"COMMIT", Duration::from_millis(300));
    pbx.with(|p| p.hangup(call, 16)).unwrap();
    closed(&db, 1, "row 1 closed (committed through the cut)").await;
    let first = tokio::time::timeout(DEADLINE, next_message(&mut pubsub))
        .await
        .expect("the close was never broadcast");
    let payload: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(payload["data"]["extension"], "2001", "{payload}");
    let again = tokio::time::timeout(Duration::from_secs(3), next_message(&mut pubsub)).await;
    assert!(again.is_err(), "broadcast twice: {again:?}");
    let summary = d.stop().await;
    assert_eq!(proxy.stats().resets, 1, "the commit was cut");
    assert!(
        summary.failed_sweeps >= 1,
        "{engine:?}: the round saw the connection die"
    );
    let closes: Vec<_> = summary
        .closed
        .iter()
        .filter(|c| c.id.to_text() == "1")
        .collect();
    assert_eq!(
        closes.len(),
        1,
        "{engine:?}: counted closed once: {:?}",
        summary.closed
    );
    let counts = crate::daemon::audit_counts(&db).await;
    assert_eq!(counts.get("1"), Some(&1), "{engine:?}: {counts:?}");
}

async fn next_message(pubsub: &mut redis::aio::PubSub) -> String {
    use futures_util::StreamExt as _;
    let msg = pubsub.on_message().next().await.unwrap();
    msg.get_payload::<String>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_commit_is_announced_once_postgres() {
    ambiguous_commit_is_announced_once(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_commit_is_announced_once_mysql() {
    ambiguous_commit_is_announced_once(Engine::MySql).await;
}

/// systemd's watchdog follows the loop: pings go on through a database outage (the process never exits,
/// keeping its evidence), stop while a round hangs (the calls table locked by another session), and come
/// back when it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_follows_the_loop_not_the_database() {
    use std::os::unix::net::UnixDatagram;
    use std::sync::{Arc, Mutex};
    let Some(db) = TestDb::create(Engine::Postgres).await else {
        return;
    };
    db.store().await.shutdown().await;
    let (pbx, call_a, agent_a) = pbx_with_call("2001").await;
    let (call_b, agent_b) = start_answered(&pbx, "2002");
    insert_row(&db, 1, &agent_a, "2001", Utc::now()).await;
    insert_row(&db, 2, &agent_b, "2002", Utc::now()).await;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_callwatch"),
            "run",
            "--database",
            db.url(),
            "--ami",
            &format!("ami://watchdog:lab-secret@{}?ping=1", pbx.local_addr()),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("CALLWATCH_AMI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let seen: Arc<Mutex<Vec<(std::time::Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    seen.lock().unwrap().push((std::time::Instant::now(), msg));
                }
            }
        })
    };
    let pings_since = |t: std::time::Instant| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(at, m)| *at >= t && m.contains("WATCHDOG=1"))
            .count()
    };
    let t0 = std::time::Instant::now();
    eventually("READY and a first ping", || async {
        (pings_since(t0) > 0).then_some(())
    })
    .await;

    // 1. The database goes away: the loop keeps going (failed rounds are retried), so do the pings.
    let mut conn = admin(Engine::Postgres).await;
    cut_connections(&mut conn, &db, true).await;
    pbx.with(|p| p.hangup(call_a, 16)).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage_check = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited during the outage"
    );
    assert!(
        pings_since(outage_check) >= 2,
        "pings stopped during a database outage"
    );
    end_outage(&mut conn, &db).await;
    closed(&db, 1, "row 1 closed after the outage").await;

    // 2. A round hangs (another session holds the calls table): the pings stop.
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let name = db.url().rsplit('/').next().unwrap().to_string();
    let mut holder = {
        use sqlx::Connection as _;
        sqlx::AnyConnection::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .unwrap()
    };
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    pbx.with(|p| p.hangup(call_b, 16)).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // debounce, then the round blocks
    let hung = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = pings_since(hung);
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    closed(&db, 2, "row 2 closed once the table is free").await;
    let resumed = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pings_since(resumed);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert_eq!(
        during, 0,
        "pings went on while the loop hung in a round:\n{log}"
    );
    assert!(after >= 2, "pings did not come back:\n{log}");
    assert!(status.success(), "{status:?}\n{log}");
}

/// `check-config` against a live AMI logs in, lists the channels, and says when events carry no
/// `Timestamp:` header that `timestampevents = yes` gives exact end times; an unreachable AMI is a warning,
/// not a failed check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_hints_at_timestampevents_against_a_live_ami() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, _call, _agent) = pbx_with_call("2001").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}\"\n\
             [[server]]\nname = \"pbx2\"\nurl = \"ami://watchdog:lab-secret@{}\"\n",
            pbx.local_addr(),
            closed_port()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let (config, url) = (config.clone(), db.url().to_string());
        move || {
            callwatch(&[
                "check-config",
                "--config",
                config.to_str().unwrap(),
                "--database",
                &url,
            ])
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok   AMI pbx1: logged in, 2 channel(s) listed"),
        "{stdout}"
    );
    assert!(stdout.contains("hint AMI pbx1"), "{stdout}");
    assert!(stdout.contains("timestampevents = yes"), "{stdout}");
    assert!(stdout.contains("warn AMI pbx2"), "{stdout}");
    assert!(!stdout.contains("lab-secret"), "{stdout}");
}
