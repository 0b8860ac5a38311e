//! callwatch beside a real Laravel 8 application (`tests/laravel/`: Debian's php-laravel-framework, the app's
//! own migration, Eloquent model and `CallStatusUpdated` event), on SQLite, PostgreSQL and MariaDB, with the
//! app's timezone UTC and Europe/Berlin:
//!
//! - `php artisan migrate` creates the `calls` table, Eloquent seeds four answered calls (one live on the
//!   scripted PBX, one whose channel is gone, one without ids, one young), `callwatch cleanup --ami` closes
//!   exactly the gone one (`channel_gone`) and the one without ids (`timeout_cleanup`);
//! - Eloquent reads every row back: the Carbon values are in the app's zone, denote the instants callwatch
//!   reported, the stored text is the app's local time, and Carbon's talk time equals `talk_seconds`;
//! - an Echo client (`Echo.channel('calls').listen('CallStatusUpdated', …)`) receives callwatch's close and
//!   the app's own `broadcast(new CallStatusUpdated($call))` identically — same event name, same payload —
//!   through laravel-echo-server (Redis), and through a Pusher-protocol endpoint whose request signatures
//!   are checked with the official Pusher Node library (Laravel's broadcaster publishes through the test app's
//!   own \Pusher\Pusher HTTP API client, `tests/laravel/lib/Pusher/`); with a wrong secret the app's
//!   broadcast is refused and fails.
//!
//! Needs `php` (Debian: php-cli, php-laravel-framework, php-sqlite3, php-mysql, php-pgsql, php-redis, php-curl),
//! `node` and `tests/laravel/node_modules` (`npm ci`), which `.ci/run` installs.
//! Outside CI a missing tool skips the tests with a message; with `CI=true` it fails them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

use crate::cleanup::{exec, json, pbx_with_a_live_call, stderr, stdout, SECRET};

/// The event name Laravel broadcasts for the app's event class (no `broadcastAs`).
const EVENT: &str = r"App\Events\CallStatusUpdated";
const PUSHER_APP_ID: &str = "4242";
const PUSHER_KEY: &str = "callwatch-it-key";
const PUSHER_SECRET: &str = "callwatch-it-pusher-secret";
/// How long to wait for a process's line or a broadcast.
const DEADLINE: StdDuration = StdDuration::from_secs(20);

fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/laravel")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// What is missing to run the app, if anything.
fn missing_tools() -> Option<String> {
    let php = Command::new("php")
        .args([
            "-r",
            "foreach (['Illuminate/autoload.php'] as $f) { if (!stream_resolve_include_path($f)) { echo \"$f \"; } }
             foreach (['pdo_sqlite', 'pdo_mysql', 'pdo_pgsql', 'redis', 'curl'] as $e) { if (!extension_loaded($e)) { echo \"php-$e \"; } }",
        ])
        .output();
    match php {
        Err(e) => return Some(format!("php ({e})")),
        Ok(out) if !out.status.success() || !out.stdout.is_empty() => {
            return Some(format!(
                "PHP packages: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
        Ok(_) => {}
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".into());
    }
    for m in [
        "laravel-echo",
        "laravel-echo-server",
        "pusher",
        "pusher-js",
        "ws",
    ] {
        if !app_dir().join("node_modules").join(m).is_dir() {
            return Some(format!(
                "tests/laravel/node_modules/{m} (npm ci in tests/laravel)"
            ));
        }
    }
    None
}

/// `true` when the tools are there; outside CI a missing tool is reported and the test skipped.
fn tools_present() -> bool {
    let Some(missing) = missing_tools() else {
        return true;
    };
    if in_ci() {
        panic!("the Laravel test app needs {missing}; CI=true requires it (.ci/run installs it)");
    }
    eprintln!("SKIPPED: the Laravel test app needs {missing}");
    false
}

/// A child process whose stdout lines are read by a thread; killed when dropped. Its stderr goes to a file,
/// shown when the test waits for it in vain.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: tempfile::NamedTempFile,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.into(),
            child,
            lines,
            stderr,
        }
    }

    /// The next JSON line, within [`DEADLINE`].
    fn next_json(&mut self, what: &str) -> Value {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        return v;
                    }
                }
                Err(_) => {
                    let err = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
                    let tail: String = err
                        .chars()
                        .skip(err.chars().count().saturating_sub(3000))
                        .collect();
                    panic!(
                        "{}: no {what} within {DEADLINE:?} (exit status: {:?}); stderr:\n{tail}",
                        self.name,
                        self.child.try_wait().ok().flatten()
                    )
                }
            }
        }
    }

    /// Every JSON line received so far, without waiting.
    fn drain(&mut self) -> Vec<Value> {
        self.lines
            .try_iter()
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(app_dir()).arg(script).args(args);
    cmd
}

/// The Laravel app on one database, in one timezone, with its own storage and caches.
struct App {
    env: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl App {
    fn new(db: &TestDb, timezone: &str, app_name: &str, pusher_port: u16) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_string(), v.to_string());
        };
        let storage = dir.path().display().to_string();
        set("APP_ENV", "testing");
        set("APP_TIMEZONE", timezone);
        set("APP_STORAGE_PATH", &storage);
        set("APP_PACKAGES_CACHE", &format!("{storage}/packages.php"));
        set("APP_SERVICES_CACHE", &format!("{storage}/services.php"));
        set("APP_NAME", app_name); // the Redis prefix derives from it (config/database.php)
        set("PUSHER_APP_ID", PUSHER_APP_ID);
        set("PUSHER_APP_KEY", PUSHER_KEY);
        set("PUSHER_APP_SECRET", PUSHER_SECRET);
        set("PUSHER_HOST", "127.0.0.1");
        set("PUSHER_PORT", &pusher_port.to_string());
        let url = reqwest::Url::parse(db.url()).unwrap();
        match db.engine() {
            Engine::Sqlite => {
                // Laravel wants the file to exist; callwatch's URL points at the same file.
                let path = url.path().to_string();
                std::fs::File::create(&path).unwrap();
                set("DB_CONNECTION", "sqlite");
                set("DB_DATABASE", &path);
            }
            engine => {
                set(
                    "DB_CONNECTION",
                    if engine == Engine::Postgres {
                        "pgsql"
                    } else {
                        "mysql"
                    },
                );
                set("DB_HOST", url.host_str().unwrap());
                set("DB_PORT", &url.port().unwrap().to_string());
                set("DB_DATABASE", url.path().trim_start_matches('/'));
                set("DB_USERNAME", url.username());
                set("DB_PASSWORD", url.password().unwrap_or(""));
            }
        }
        App { env, _dir: dir }
    }

    /// `php artisan ARGS` with `extra` environment (which wins over the app's), however it exits.
    fn artisan_output(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        Command::new("php")
            .current_dir(app_dir())
            .arg("artisan")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `php artisan ARGS` with `extra` environment; fails the test unless it exits 0.
    fn artisan(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let out = self.artisan_output(args, extra);
        assert!(
            out.status.success(),
            "php artisan {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn artisan_json(&self, args: &[&str], extra: &[(&str, &str)]) -> Value {
        let out = self.artisan(args, extra);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("php artisan {args:?}: {e}: {}", stdout(&out)))
    }
}

/// laravel-echo-server (Redis → socket.io) and an Echo client on it; a Pusher-protocol endpoint and an Echo
/// client on it.
struct Broadcasting {
    pusher_port: u16,
    pusher_server: Proc,
    socket_io_client: Proc,
    pusher_client: Proc,
    echo_server: Proc,
}

impl Broadcasting {
    /// Starts the servers and the clients; [`Broadcasting::wait_ready`] waits until the clients are subscribed.
    fn start(redis_prefix: &str) -> Broadcasting {
        let echo_port = free_port().to_string();
        let echo_server = Proc::spawn(
            "laravel-echo-server",
            node(
                "echo-server.js",
                &[&echo_port, redis_prefix, PUSHER_APP_ID, PUSHER_KEY],
            ),
        );
        let mut cmd = node("pusher-server.js", &[PUSHER_APP_ID, PUSHER_KEY]);
        cmd.env("PUSHER_APP_SECRET", PUSHER_SECRET);
        let mut pusher_server = Proc::spawn("pusher endpoint", cmd);
        let pusher_port = pusher_server.next_json("port")["port"].as_u64().unwrap() as u16;
        // (the socket.io client retries until laravel-echo-server listens)
        let echo_addr = format!("127.0.0.1:{echo_port}");
        let pusher_addr = format!("127.0.0.1:{pusher_port}");
        let socket_io_client = Proc::spawn(
            "Echo client (socket.io)",
            node(
                "listen.js",
                &["socket.io", &echo_addr, PUSHER_APP_ID, PUSHER_KEY],
            ),
        );
        let pusher_client = Proc::spawn(
            "Echo client (pusher)",
            node(
                "listen.js",
                &["pusher", &pusher_addr, PUSHER_APP_ID, PUSHER_KEY],
            ),
        );
        Broadcasting {
            pusher_port,
            pusher_server,
            socket_io_client,
            pusher_client,
            echo_server,
        }
    }

    fn wait_ready(&mut self) {
        assert_eq!(self.echo_server.next_json("ready")["ready"], true);
        assert_eq!(self.socket_io_client.next_json("ready")["ready"], true);
        assert_eq!(self.pusher_client.next_json("ready")["ready"], true);
    }
}

/// The next `n` messages of an Echo client, ordered by call id.
fn receive(client: &mut Proc, n: usize, what: &str) -> Vec<Value> {
    let mut got: Vec<Value> = (0..n).map(|_| client.next_json(what)).collect();
    got.sort_by_key(|m| m["data"]["id"].as_i64());
    got
}

/// Checks that callwatch's and Laravel's messages for the same calls were received identically.
fn assert_same_reception(transport: &str, callwatch: &[Value], laravel: &[Value]) {
    assert_eq!(callwatch.len(), laravel.len());
    for (c, l) in callwatch.iter().zip(laravel) {
        let id = &l["data"]["id"];
        assert_eq!(l["event"], EVENT, "{transport}: Laravel's event name: {l}");
        assert_eq!(
            c["event"], l["event"],
            "{transport}, call {id}: callwatch's event name differs from the app's own\n callwatch: {c}\n Laravel:   {l}"
        );
        assert_eq!(
            l["echo"], true,
            "{transport}: Echo's listener missed Laravel's own event: {l}"
        );
        assert_eq!(
            c["echo"], true,
            "{transport}, call {id}: Echo.channel('calls').listen('CallStatusUpdated') did not receive callwatch's close: {c}"
        );
        let (cd, ld) = (
            c["data"].as_object().unwrap(),
            l["data"].as_object().unwrap(),
        );
        let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(cd),
            keys(ld),
            "{transport}, call {id}: payload keys differ\n callwatch: {c}\n Laravel:   {l}"
        );
        for (k, lv) in ld {
            assert_eq!(
                json_type(&cd[k]),
                json_type(lv),
                "{transport}, call {id}: `{k}` has another JSON type\n callwatch: {c}\n Laravel:   {l}"
            );
        }
        assert_eq!(
            c["data"], l["data"],
            "{transport}, call {id}: payload values differ\n callwatch: {c}\n Laravel:   {l}"
        );
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn utc(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// `t` in `tz` as Carbon's `Y-m-d\TH:i:sP` and as Laravel stores it (`Y-m-d H:i:s`).
fn local(t: DateTime<Utc>, tz: &str) -> (String, String) {
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    let l = t.with_timezone(&tz);
    (
        l.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        l.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// A request signed with the wrong secret, which the Pusher endpoint must refuse.
async fn badly_signed_request(port: u16) -> u16 {
    let path = format!("/apps/{PUSHER_APP_ID}/events");
    let body = br#"{"name":"x","channel":"calls","data":"{}"}"#;
    let query = callwatch::broadcast::pusher_query(
        &path,
        PUSHER_KEY,
        "not-the-secret",
        Utc::now().timestamp(),
        body,
    );
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}?{query}"))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn laravel_app(engine: Engine, timezone: &str) {
    if !tools_present() {
        return;
    }
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    // Laravel's default Redis prefix is Str::slug(APP_NAME, '_').'_database_'; callwatch derives the same from
    // `app_name`, and laravel-echo-server is told the prefix as an operator would write it.
    let tag = format!("{:08x}", rand_u32());
    let app_name = format!("Call Center {tag}");
    let mut bc = Broadcasting::start(&format!("call_center_{tag}_database_"));
    let app = App::new(&db, timezone, &app_name, bc.pusher_port);

    // The app's own migration makes the table; callwatch's adds its audit table.
    app.artisan(&["migrate", "--force"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\ntimezone = \"{timezone}\"\n\n\
             [broadcast.redis]\nurl = \"redis://127.0.0.1:6379/\"\napp_name = \"{app_name}\"\n\n\
             [broadcast.pusher]\nurl = \"http://127.0.0.1:{}\"\napp_id = \"{PUSHER_APP_ID}\"\nkey = \"{PUSHER_KEY}\"\n\
             secret_env = \"CW_IT_PUSHER_SECRET\"\n",
            bc.pusher_port
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [("CW_IT_PUSHER_SECRET", PUSHER_SECRET)];
    let out = exec(db.url(), &["migrate", "--config", &config], &env);
    assert!(out.status.success(), "callwatch migrate: {}", stderr(&out));
    let out = exec(db.url(), &["check-config", "--config", &config], &env);
    assert!(
        out.status.success(),
        "callwatch check-config on Laravel's table:\n{}{}",
        stdout(&out),
        stderr(&out)
    );

    // Eloquent seeds the calls, as the app does when a call is answered.
    let (pbx, live, _) = pbx_with_a_live_call().await;
    let rows = serde_json::json!([
        { "extension": "2001", "uniqueid": live, "answered_minutes_ago": 45 },
        { "extension": "2002", "uniqueid": "1795000000.77", "answered_minutes_ago": 45 },
        { "extension": "2003", "answered_minutes_ago": 40 },
        { "extension": "2004", "uniqueid": "1795000000.78", "answered_minutes_ago": 5 },
    ]);
    let seeded = app.artisan_json(&["calls:seed", &rows.to_string()], &[]);
    let ids: Vec<i64> = seeded
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);

    // callwatch closes the gone call and the one it cannot match, keeps the live and the young one.
    bc.wait_ready();
    let ami = format!("ami://watchdog:{SECRET}@{}?server=pbx1", pbx.local_addr());
    let url = db.url().to_string();
    let args = [
        "cleanup", "--config", &config, "--ami", &ami, "--yes", "--json",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        exec(&url, &args, &env)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let closed: BTreeMap<i64, &Value> = report["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_i64().unwrap(), c))
        .collect();
    assert_eq!(
        closed.keys().copied().collect::<Vec<_>>(),
        [2, 3],
        "{report}"
    );
    assert_eq!(closed[&2]["reason"], "channel_gone");
    assert_eq!(closed[&3]["reason"], "timeout_cleanup");
    drop(pbx);
    let from_callwatch = [
        (
            "laravel-echo-server",
            receive(&mut bc.socket_io_client, 2, "callwatch's broadcast"),
        ),
        (
            "pusher",
            receive(&mut bc.pusher_client, 2, "callwatch's broadcast"),
        ),
    ];

    // Eloquent reads the rows back.
    let shown = app.artisan_json(&["calls:show"], &[]);
    assert_eq!(shown["timezone"], timezone);
    let calls = shown["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 4);
    for (call, seed) in calls.iter().zip(seeded.as_array().unwrap()) {
        let id = call["id"].as_i64().unwrap();
        let answered = &call["answered_at"];
        assert_eq!(
            answered["utc"], seed["answered_at"],
            "answered_at of call {id} changed"
        );
        assert_eq!(answered["timezone"], timezone);
        let (text, raw) = local(utc(&answered["utc"]), timezone);
        assert_eq!(
            (&answered["local"], &answered["raw"]),
            (&Value::from(text), &Value::from(raw))
        );
        let Some(c) = closed.get(&id) else {
            assert!(call["ended_at"].is_null(), "call {id} was closed: {call}");
            assert_eq!(call["status"], "in_progress");
            assert!(call["hangup_cause"].is_null() && call["talk_seconds"].is_null());
            continue;
        };
        let ended = &call["ended_at"];
        assert_eq!(ended["timezone"], timezone, "call {id}: {call}");
        // the instant callwatch reported (the table keeps whole seconds)
        let at = utc(&ended["utc"]);
        assert_eq!(
            at.timestamp(),
            utc(&c["ended_at"]).timestamp(),
            "call {id}: {call} vs {c}"
        );
        // stored as the app stores it: its local time, as text
        let (text, raw) = local(at, timezone);
        assert_eq!(ended["local"], text, "call {id}");
        assert_eq!(
            ended["raw"], raw,
            "call {id}: stored text is not the app's local time"
        );
        assert_eq!(call["status"], "completed");
        assert_eq!(call["hangup_cause"], c["hangup_cause"]);
        assert_eq!(call["talk_seconds"], c["talk_seconds"], "call {id}");
        assert_eq!(
            call["carbon_talk_seconds"], c["talk_seconds"],
            "call {id}: Carbon's diff"
        );
        assert!(call["talk_seconds"].as_i64().unwrap() >= 40 * 60);
    }

    // The app broadcasts its own event for the same calls, through each broadcaster.
    for id in ["2", "3"] {
        app.artisan(&["calls:broadcast", id], &[("BROADCAST_DRIVER", "redis")]);
        app.artisan(&["calls:broadcast", id], &[("BROADCAST_DRIVER", "pusher")]);
    }
    let from_laravel = [
        receive(&mut bc.socket_io_client, 2, "Laravel's broadcast"),
        receive(&mut bc.pusher_client, 2, "Laravel's broadcast"),
    ];
    for ((transport, cw), l) in from_callwatch.iter().zip(&from_laravel) {
        assert_same_reception(transport, cw, l);
        for m in l {
            // Laravel's own serialisation, as Eloquent reads the row
            let id = m["data"]["id"].as_i64().unwrap();
            let call = calls.iter().find(|c| c["id"] == id).unwrap();
            assert_eq!(m["data"]["ended_at"], call["ended_at"]["json"]);
            assert!(NaiveDateTime::parse_from_str(
                m["data"]["ended_at"].as_str().unwrap(),
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            )
            .is_ok());
        }
    }
    assert!(bc.socket_io_client.drain().is_empty());
    assert!(bc.pusher_client.drain().is_empty());

    // Every request reached the endpoint signed right (4 = callwatch's 2 + the app's 2); a wrong
    // signature is refused, so the check is real.
    let requests = bc.pusher_server.drain();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(requests.iter().all(|r| r["valid"] == true), "{requests:?}");
    assert_eq!(badly_signed_request(bc.pusher_port).await, 401);
    let refused = bc.pusher_server.next_json("the refused request");
    assert_eq!(refused["error"], "invalid auth_signature", "{refused}");

    // The app's client signs with the app's secret: with a wrong one the endpoint refuses the request and
    // Laravel's broadcaster reports it as a failed broadcast.
    let out = app.artisan_output(
        &["calls:broadcast", "2"],
        &[
            ("BROADCAST_DRIVER", "pusher"),
            ("PUSHER_APP_SECRET", "not-the-secret"),
        ],
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !out.status.success()
            && said.contains("Pusher error")
            && said.contains("invalid auth_signature"),
        "a broadcast signed with a wrong secret: {:?}\n{said}",
        out.status
    );
    let refused = bc.pusher_server.next_json("the app's refused request");
    assert_eq!(refused["error"], "invalid auth_signature", "{refused}");
    assert!(bc.pusher_client.drain().is_empty());
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

macro_rules! on_engines {
    ($($engine:ident => $variant:expr),*) => {$(
        mod $engine {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn utc() {
                laravel_app($variant, "UTC").await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn europe_berlin() {
                laravel_app($variant, "Europe/Berlin").await
            }
        }
    )*};
}

on_engines!(sqlite => Engine::Sqlite, postgres => Engine::Postgres, mysql => Engine::MySql);
