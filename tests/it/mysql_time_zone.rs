//! MySQL/MariaDB session time zones, end to end: a private MariaDB server whose own zone is `+01:00` (started
//! for these tests with `--default-time-zone`, so the shared server's zone is never changed), an "application"
//! that writes through sessions in the server's zone as Laravel does (it never sets `time_zone`), and
//! `callwatch cleanup` on `TIMESTAMP` and `DATETIME` columns with the app timezone UTC and Europe/Berlin.
//! callwatch must read every time as the application wrote it: a 5- and a 29-minute-old call stay open under
//! the 30-minute timeout, a 45-minute-old one is closed with its true talk time, and the application reads
//! back `ended_at` as now.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions as _, Executor as _};

use crate::cleanup::{exec, json, stderr};

/// A throw-away MariaDB server on a Unix socket in a temporary directory, killed on drop.
struct ZonedServer {
    child: Child,
    dir: tempfile::TempDir,
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

impl ZonedServer {
    /// Starts `mariadbd` with `--default-time-zone=zone` on an empty data directory (no grant tables: any
    /// user may connect through the socket). `None` when no server binary is installed, outside CI.
    async fn start(zone: &str) -> Option<ZonedServer> {
        let Some(bin) = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            assert!(!in_ci(), "CI=true requires mariadbd");
            eprintln!("SKIPPED: no mariadbd installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--default-time-zone={zone}"))
            .args([
                "--skip-networking",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=4M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().unwrap();
        let server = ZonedServer { child, dir };
        let mut last = String::new();
        for _ in 0..300 {
            match server.app_session("", None).await {
                Ok(mut c) => {
                    let (global,): (String,) = sqlx::query_as("SELECT @@GLOBAL.time_zone")
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                    assert_eq!(global, zone);
                    return Some(server);
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(server.dir.path().join("err.log")).unwrap_or_default();
        panic!("the private MariaDB did not come up: {last}\n{log}");
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// callwatch's URL for database `db`.
    fn url(&self, db: &str) -> String {
        format!(
            "mysql://root@localhost/{db}?socket={}",
            self.socket().display()
        )
    }

    /// A session as the application's: the driver is told not to touch `time_zone` (PHP's PDO never does),
    /// so it is the server's, unless `zone` is given (Laravel's `connections.mysql.timezone`).
    async fn app_session(&self, db: &str, zone: Option<&str>) -> sqlx::Result<MySqlConnection> {
        let opts = MySqlConnectOptions::from_str(&format!("mysql://root@localhost/{db}"))?
            .socket(self.socket())
            .timezone(None);
        let mut conn = opts.connect().await?;
        if let Some(zone) = zone {
            conn.execute(format!("SET time_zone = '{zone}'").as_str())
                .await?;
        }
        Ok(conn)
    }
}

impl Drop for ZonedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The application's table, as its Laravel migration makes it, with `*_at` columns of type `ty`.
fn create_calls(ty: &str) -> String {
    format!(
        "CREATE TABLE calls (
            id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
            uniqueid varchar(255) NULL, linkedid varchar(255) NULL, channel varchar(255) NULL,
            extension varchar(255) NULL, caller varchar(255) NULL, server varchar(255) NULL,
            status varchar(255) NOT NULL DEFAULT 'ringing',
            started_at {ty} NULL, answered_at {ty} NULL, ended_at {ty} NULL,
            hangup_cause varchar(255) NULL, talk_seconds int NULL,
            created_at timestamp NULL, updated_at timestamp NULL
        )"
    )
}

/// One case: a fresh database `name` on `server`, the app writing `ty` columns in `app_tz` through sessions in
/// `app_zone` (None = the server's); callwatch run with `config` (TOML, may be empty). Returns the cleanup JSON.
async fn case(
    server: &ZonedServer,
    name: &str,
    ty: &str,
    app_tz: Tz,
    app_zone: Option<&str>,
    config: &str,
    args: &[&str],
) -> (serde_json::Value, DateTime<Utc>) {
    let mut admin = server.app_session("", None).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let mut app = server.app_session(name, app_zone).await.unwrap();
    app.execute(create_calls(ty).as_str()).await.unwrap();
    let url = server.url(name);
    let out = exec(&url, &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&app_tz)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    for (id, minutes) in [(1, 5), (2, 29), (3, 45)] {
        let at = local(now - chrono::Duration::minutes(minutes));
        app.execute(
            format!(
                "INSERT INTO calls (id, extension, status, answered_at, created_at, updated_at) \
                 VALUES ({id}, '20{id:02}', 'in_progress', '{at}', '{at}', '{at}')"
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("callwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.display().to_string();
    let mut all: Vec<&str> = vec!["--config", &config_arg, "cleanup", "--json"];
    all.extend_from_slice(args);
    let out = exec(&url, &all, &[("CALLWATCH_TIMEZONE", app_tz.name())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (json(&out), now)
}

/// What the application reads back for row `id`: `(ended_at, talk_seconds)`, `ended_at` as an instant.
async fn app_reads(
    server: &ZonedServer,
    db: &str,
    app_tz: Tz,
    app_zone: Option<&str>,
    id: i64,
) -> (Option<DateTime<Utc>>, Option<i64>) {
    let mut app = server.app_session(db, app_zone).await.unwrap();
    let (ended, talk): (Option<String>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT DATE_FORMAT(ended_at, '%Y-%m-%d %H:%i:%s'), CAST(talk_seconds AS SIGNED) FROM calls WHERE id = {id}"
    ))
    .fetch_one(&mut app)
    .await
    .unwrap();
    let ended = ended.map(|t| {
        let naive = NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S").unwrap();
        app_tz
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    });
    (ended, talk)
}

fn closed_ids(v: &serde_json::Value) -> Vec<i64> {
    v["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

async fn check_case(server: &ZonedServer, ty: &str, app_tz: Tz) {
    let name = format!(
        "tz_{}_{}",
        ty.to_lowercase(),
        app_tz.name().replace('/', "_").to_lowercase()
    );
    let what = format!("{ty} columns, app timezone {}", app_tz.name());
    let (v, now) = case(server, &name, ty, app_tz, None, "", &["--yes"]).await;
    assert_eq!(
        closed_ids(&v),
        [3],
        "{what}: only the 45-minute-old call is stuck: {v:#}"
    );
    let closed = &v["closed"][0];
    let answered: DateTime<Utc> = serde_json::from_value(closed["answered_at"].clone()).unwrap();
    assert_eq!(
        answered,
        now - chrono::Duration::minutes(45),
        "{what}: answered_at read as the application wrote it"
    );
    let (ended, talk) = app_reads(server, &name, app_tz, None, 3).await;
    let ended = ended.expect("row 3 closed");
    assert!(
        (ended - Utc::now()).num_seconds().abs() < 60,
        "{what}: the application reads ended_at {ended} as now"
    );
    let talk = talk.unwrap();
    assert!(
        (45 * 60..45 * 60 + 60).contains(&talk),
        "{what}: talk_seconds {talk}, not the 45 minutes the call lasted"
    );
    assert_eq!(talk, (ended - answered).num_seconds());
    for id in [1, 2] {
        assert_eq!(
            app_reads(server, &name, app_tz, None, id).await.0,
            None,
            "{what}: live call {id} was closed"
        );
    }
}

/// The server's zone is +01:00 and the application's sessions keep it: callwatch reads and writes `TIMESTAMP`
/// and `DATETIME` columns as the application does, with the app timezone UTC and Europe/Berlin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_session_keeps_the_servers_time_zone() {
    let Some(server) = ZonedServer::start("+01:00").await else {
        return;
    };
    for ty in ["TIMESTAMP", "DATETIME"] {
        for tz in [Tz::UTC, Tz::Europe__Berlin] {
            check_case(&server, ty, tz).await;
        }
    }
}

/// An application whose Laravel connection sets `timezone => '+02:00'` writes through `+02:00` sessions;
/// `[database] session_time_zone = "+02:00"` makes callwatch's sessions the same, and without it callwatch
/// reads through the server's zone (+01:00): every time an hour off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_session_time_zone_setting_is_applied() {
    let Some(server) = ZonedServer::start("+01:00").await else {
        return;
    };
    let config = "[database]\nsession_time_zone = \"+02:00\"\n";
    let (v, now) = case(
        &server,
        "tz_configured",
        "TIMESTAMP",
        Tz::UTC,
        Some("+02:00"),
        config,
        &["--yes"],
    )
    .await;
    assert_eq!(closed_ids(&v), [3], "{v:#}");
    let answered: DateTime<Utc> =
        serde_json::from_value(v["closed"][0]["answered_at"].clone()).unwrap();
    assert_eq!(answered, now - chrono::Duration::minutes(45));
    let (ended, talk) = app_reads(&server, "tz_configured", Tz::UTC, Some("+02:00"), 3).await;
    assert!((ended.unwrap() - Utc::now()).num_seconds().abs() < 60);
    assert!((45 * 60..45 * 60 + 60).contains(&talk.unwrap()));

    // The same rows read through the server's zone instead (no setting): an hour younger.
    let (v, _) = case(
        &server,
        "tz_unconfigured",
        "TIMESTAMP",
        Tz::UTC,
        Some("+02:00"),
        "",
        &["--dry-run"],
    )
    .await;
    let row3 = v["to_close"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 3)
        .unwrap_or_else(|| panic!("row 3 not listed: {v:#}"));
    let seen: DateTime<Utc> = serde_json::from_value(row3["answered_at"].clone()).unwrap();
    // Each case seeds its rows relative to its own whole-second "now", which may have moved on by a
    // second since the first case.
    assert!(
        (3599..=3600).contains(&(answered - seen).num_seconds()),
        "read through +01:00 instead of +02:00: {}",
        (answered - seen).num_seconds()
    );
}
