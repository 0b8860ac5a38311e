//! The status page (`GET /`) of a running `callwatch run`, loaded by a real browser: the DOM it renders
//! shows the AMI connection, the open rows by state, the last closes and the broadcast's health; a
//! screenshot goes to `target/test-output/status-page.png`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use store::testing::{Engine, TestDb};

use crate::browser::{chromium, dump_dom, output_dir, screenshot, text_after};
use crate::daemon::{closed, eventually, insert_row, pbx_with_call, start_answered};

/// A `callwatch run` process, killed on drop.
pub(crate) struct DaemonProcess {
    child: Child,
    log: std::path::PathBuf,
    /// `host:port` of its HTTP listener.
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl DaemonProcess {
    /// Starts `callwatch run --config <config> --database <db>` and waits for its HTTP address.
    pub(crate) async fn start(config: &str, database: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callwatch.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
            .args([
                "run",
                "--config",
                path.to_str().unwrap(),
                "--database",
                database,
            ])
            .env_remove("DATABASE_URL")
            .env_remove("CALLWATCH_CONFIG")
            .env_remove("CALLWATCH_AMI_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Self {
            child,
            log,
            addr: String::new(),
            _dir: dir,
        };
        d.addr = eventually("the HTTP address in the log", || async {
            logged_addr(&d.log_text())
        })
        .await;
        d
    }

    /// Its stderr so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` → body.
    pub(crate) async fn get(&self, path: &str) -> String {
        reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logged_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP endpoints listening"))?;
    let at = line.find("addr=")? + 5;
    Some(line[at..].split_whitespace().next()?.to_string())
}

/// An address on which nothing listens (bound, then closed).
fn dead_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_a_browser() {
    let Some(browser) = chromium() else { return };
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, call_b, agent_b) = pbx_with_call("2002").await;
    let (_call_a, agent_a) = start_answered(&pbx, "2001");
    let now = Utc::now();
    insert_row(&db, 1, &agent_a, "2001", now).await; // alive
    insert_row(&db, 2, &agent_b, "2002", now).await; // hung up below: hangup_seen
    insert_row(&db, 3, "", "2003", now - chrono::Duration::minutes(1)).await; // no ids: awaiting timeout
    insert_row(&db, 4, "1700000000.99", "2004", now).await; // made unreadable below
    insert_row(&db, 5, "1700000000.98", "2005", now).await; // another PBX's row
    let store = db.store().await;
    sqlx::query("UPDATE calls SET server = '<pbx9>' WHERE id = 5")
        .execute(store.pool())
        .await
        .unwrap();
    // A day-first date: SQLite compares it as text, so it passes the "answered before now" filter.
    sqlx::query("UPDATE calls SET answered_at = '02/12/2026 07:48' WHERE id = 4")
        .execute(store.pool())
        .await
        .unwrap();
    store.shutdown().await;
    // Broadcasts go to a webhook on which nothing listens: every delivery fails.
    let config = format!(
        "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
         [broadcast.webhook]\nurl = \"http://{}/hook\"\nsecret = \"hook-secret\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        pbx.local_addr(),
        dead_port()
    );
    let d = DaemonProcess::start(&config, db.url()).await;
    eventually("ready", || async {
        let r = reqwest::get(format!("http://{}/readyz", d.addr))
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call_b, 16)).unwrap();
    tokio::time::timeout(Duration::from_secs(20), closed(&db, 2, "row 2 closed"))
        .await
        .unwrap_or_else(|_| panic!("row 2 not closed:\n{}", d.log_text()));
    eventually("the close and a failed broadcast in /status", || async {
        let s: serde_json::Value = serde_json::from_str(&d.get("/status").await).ok()?;
        // The supervisor refreshes a server's map size once a second: wait for the hung-up call's
        // channels to be gone from it too.
        (s["recent_closes"][0]["id"] == "2"
            && s["broadcast"]["failed"].as_u64()? >= 1
            && s["servers"][0]["channels_live"].as_u64()? == 2)
            .then_some(())
    })
    .await;

    let url = format!("http://{}/", d.addr);
    let dom = dump_dom(&browser, &url);
    let field = |section: &str, after: &str, marker: &str| {
        text_after(&dom, section, after, marker)
            .unwrap_or_else(|| panic!("{section} / {after} / {marker} not in the DOM:\n{dom}"))
    };
    assert!(dom.contains("<title>callwatch status</title>"), "{dom}");
    assert!(dom.contains("http-equiv=\"refresh\""), "refreshes itself");
    assert!(!dom.contains("<script"), "no script");
    let server = "data-server=\"pbx1\"";
    assert_eq!(field("servers", server, "data-field=\"state\""), "synced");
    let since = field("servers", server, "data-field=\"synced-since\"");
    assert!(since.contains(" ago)"), "{since}");
    assert_ne!(field("servers", server, "data-field=\"last-listing\""), "-");
    assert_eq!(field("servers", server, "data-field=\"map-size\""), "2");
    field("servers", server, "data-field=\"events-per-second\"")
        .parse::<f64>()
        .unwrap();
    assert_eq!(field("open-rows", server, "data-state=\"alive\""), "1");
    assert_eq!(
        field("open-rows", server, "data-state=\"awaiting_timeout\""),
        "1"
    );
    assert_eq!(field("open-rows", server, "data-state=\"unreadable\""), "1");
    assert_eq!(
        field("open-rows", server, "data-state=\"held_by_guard\""),
        "0"
    );
    assert_eq!(
        field("closes", "data-row=\"2\"", "data-field=\"reason\""),
        "hangup_seen"
    );
    let ended = field("closes", "data-row=\"2\"", "data-field=\"ended-at\"");
    assert!(
        ended.starts_with(&now.format("%Y-%m-%d").to_string()),
        "{ended}"
    );
    assert_eq!(
        field("broadcast", "<tbody", "data-field=\"transports\""),
        "webhook"
    );
    let failed: u64 = field("broadcast", "<tbody", "data-field=\"failed\"")
        .parse()
        .unwrap();
    assert!(failed >= 1);
    assert!(!field("broadcast", "<tbody", "data-field=\"last-error\"").is_empty());
    // The other PBX's row, its server value escaped.
    assert_eq!(
        field("unknown-servers", "<tbody", "data-field=\"server\""),
        "&lt;pbx9&gt;"
    );
    assert_eq!(
        field("unknown-servers", "<tbody", "data-field=\"rows\""),
        "1"
    );
    // Nothing beyond /status: no caller number, no secret.
    for secret in ["5550100", "lab-secret", "hook-secret"] {
        assert!(!dom.contains(secret), "{secret} in the page");
    }

    let png = output_dir().join("status-page.png");
    screenshot(&browser, &url, &png, 1400, 900);
    eprintln!("screenshot: {}", png.display());
    assert!(Path::new(&png).exists());
}
