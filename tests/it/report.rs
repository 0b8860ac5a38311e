//! `replay --report` and `demo --report`: the HTML page's inline SVG is parsed back (one line per row with
//! its reason, `ended_at` and bounds; the AMI connection's up and down periods; the listings) and compared
//! with the command's own JSON; a browser renders each page to `target/test-output/`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use store::testing::{Engine, TestDb};

use crate::browser::{chromium, output_dir, screenshot};
use crate::common::{callwatch, fixtures};
use crate::replay::{plan, run_replay, subject_sessions};

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().map(parse_time)
}

/// One drawn row: id, reason, ended_at, has a bounds rectangle, has a truth mark.
type DrawnRow = (String, String, Option<DateTime<Utc>>, bool, bool);

/// What the report's SVG says.
#[derive(Debug)]
struct Drawn {
    rows: Vec<DrawnRow>,
    /// (from, to, up)
    periods: Vec<(DateTime<Utc>, DateTime<Utc>, bool)>,
    listings: Vec<DateTime<Utc>>,
}

fn read_report(path: &std::path::Path) -> Drawn {
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "src=", "href=", "<link"] {
        assert!(!html.contains(external), "not self-contained: {external}");
    }
    let start = html.find("<svg").expect("an inline SVG");
    let end = html.find("</svg>").unwrap() + "</svg>".len();
    let doc = roxmltree::Document::parse(&html[start..end]).expect("the SVG is well-formed XML");
    let class = |n: &roxmltree::Node, c: &str| n.attribute("class") == Some(c);
    let mut drawn = Drawn {
        rows: Vec::new(),
        periods: Vec::new(),
        listings: Vec::new(),
    };
    for n in doc.descendants() {
        if class(&n, "row") {
            let ended = n.attribute("data-ended").filter(|s| !s.is_empty());
            drawn.rows.push((
                n.attribute("data-id").unwrap().to_string(),
                n.attribute("data-reason").unwrap().to_string(),
                ended.map(parse_time),
                n.children().any(|c| class(&c, "bounds")),
                n.children().any(|c| class(&c, "truth")),
            ));
        } else if class(&n, "period") {
            drawn.periods.push((
                parse_time(n.attribute("data-from").unwrap()),
                parse_time(n.attribute("data-to").unwrap()),
                n.attribute("data-up") == Some("true"),
            ));
        } else if class(&n, "listing") {
            drawn
                .listings
                .push(parse_time(n.attribute("data-at").unwrap()));
        }
    }
    drawn
}

/// Every closed row of the JSON is drawn with its reason, `ended_at` and (when bounded) its window.
fn check_closed_rows(drawn: &Drawn, closed: &[(String, String, DateTime<Utc>, bool)]) {
    for (id, reason, ended_at, bounded) in closed {
        let row = drawn
            .rows
            .iter()
            .find(|r| &r.0 == id)
            .unwrap_or_else(|| panic!("row {id} not drawn: {drawn:?}"));
        assert_eq!(&row.1, reason, "row {id}");
        assert_eq!(row.2, Some(*ended_at), "row {id}");
        assert_eq!(row.3, *bounded, "row {id}: bounds drawn iff known");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_report_draws_rows_connection_and_listings() {
    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    let scenario = "disconnect-gap";
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{scenario}.truth.json"))).unwrap(),
    )
    .unwrap();
    let (rows, inserts) = plan(&truth);
    db.store().await.shutdown().await;
    for sql in &inserts {
        db.exec(sql).await;
    }
    let sessions = subject_sessions(scenario, &truth);
    let path = output_dir().join("replay-report.html");
    let _ = std::fs::remove_file(&path);
    let report = run_replay(&db, &sessions, &["--report", path.to_str().unwrap()]);

    let drawn = read_report(&path);
    assert_eq!(drawn.rows.len(), rows.len(), "one line per seeded row");
    let closed: Vec<_> = report["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].to_string(),
                c["reason"].as_str().unwrap().to_string(),
                ts(&c["ended_at"]).unwrap(),
                !c["ended_after"].is_null(),
            )
        })
        .collect();
    assert!(closed.iter().any(|c| c.3), "the outage's bounded closes");
    check_closed_rows(&drawn, &closed);
    let open = drawn.rows.iter().filter(|r| r.1 == "open").count();
    assert_eq!(open as u64, report["kept_open"].as_u64().unwrap());

    // Two sessions: up, down (the outage), up.
    let ups: Vec<_> = drawn.periods.iter().filter(|p| p.2).collect();
    assert_eq!(ups.len(), 2, "{:?}", drawn.periods);
    let s = report["sessions"].as_array().unwrap();
    assert_eq!(ups[0].0, ts(&s[0]["connected_at"]).unwrap());
    assert_eq!(ups[1].0, ts(&s[1]["connected_at"]).unwrap());
    let down = drawn
        .periods
        .iter()
        .find(|p| !p.2 && p.0 >= ups[0].1 && p.1 <= ups[1].0)
        .expect("the outage between the sessions");
    assert_eq!((down.0, down.1), (ups[0].1, ups[1].0));
    // One listing per session that completed one (the first recorded session never did), inside it.
    let synced: Vec<_> = s.iter().filter(|s| s["synced"] == true).collect();
    assert!(!synced.is_empty());
    assert_eq!(drawn.listings.len(), synced.len(), "{:?}", drawn.listings);
    for l in &drawn.listings {
        assert!(
            ups.iter().any(|p| p.0 <= *l && *l <= p.1),
            "listing {l} outside a session"
        );
    }

    if let Some(browser) = chromium() {
        let png = output_dir().join("replay-report.png");
        screenshot(
            &browser,
            &format!("file://{}", path.display()),
            &png,
            1240,
            1100,
        );
        eprintln!("screenshot: {}", png.display());
    }
}

#[test]
fn demo_report_draws_rows_truth_connection_and_listings() {
    let path = output_dir().join("demo-report.html");
    let _ = std::fs::remove_file(&path);
    let out = callwatch(&[
        "demo",
        "--json",
        "--speed",
        "4",
        "--report",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let drawn = read_report(&path);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(drawn.rows.len(), rows.len(), "one line per seeded row");
    let closed: Vec<_> = rows
        .iter()
        .filter(|r| !r["reason"].is_null())
        .map(|r| {
            (
                r["id"].to_string(),
                r["reason"].as_str().unwrap().to_string(),
                ts(&r["ended_at"]).unwrap(),
                !r["ended_after"].is_null(),
            )
        })
        .collect();
    assert!(closed.len() >= 10, "{report}");
    check_closed_rows(&drawn, &closed);
    for r in rows {
        let id = r["id"].to_string();
        let drawn_row = drawn.rows.iter().find(|d| d.0 == id).unwrap();
        assert_eq!(
            drawn_row.4,
            !r["truth_ended_at"].is_null(),
            "truth mark of row {}",
            r["id"]
        );
    }

    // The daemon's view of the connection: up, then down across the recorded outage, then up again.
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("disconnect-gap.truth.json")).unwrap(),
    )
    .unwrap();
    let gap_start = ts(&truth["reconnects"][0]["gap_start"]).unwrap();
    let gap_end = ts(&truth["reconnects"][0]["gap_end"]).unwrap();
    let mid = gap_start + (gap_end - gap_start) / 2;
    let down = drawn
        .periods
        .iter()
        .find(|p| !p.2 && p.0 <= mid && mid <= p.1)
        .unwrap_or_else(|| panic!("no down period over the outage: {:?}", drawn.periods));
    assert!(down.1 - down.0 > chrono::Duration::seconds(20), "{down:?}");
    assert!(drawn.periods.iter().any(|p| p.2 && p.1 <= down.0));
    assert!(drawn.periods.iter().any(|p| p.2 && p.0 >= down.1));
    // The listing after the reconnect (the first recorded session answers none), inside an up period
    // (the demo samples the daemon's state every 20 ms of wall time: 80 ms of recording at 4x).
    let slack = chrono::Duration::milliseconds(250);
    for l in &drawn.listings {
        assert!(
            drawn
                .periods
                .iter()
                .any(|p| p.2 && p.0 - slack <= *l && *l <= p.1),
            "listing {l} outside an up period: {:?}",
            drawn.periods
        );
    }
    assert!(
        drawn.listings.iter().any(|l| *l > gap_end),
        "{:?}",
        drawn.listings
    );

    if let Some(browser) = chromium() {
        let png = output_dir().join("demo-report.png");
        screenshot(
            &browser,
            &format!("file://{}", path.display()),
            &png,
            1240,
            1100,
        );
        eprintln!("screenshot: {}", png.display());
    }
}
