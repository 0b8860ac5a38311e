//! `callwatch demo` (the README's first command) end to end, at a higher speed-up.

use serde_json::Value;

use crate::common::callwatch;

#[test]
fn demo_closes_the_outage_calls_and_keeps_the_live_ones() {
    let out = callwatch(&["demo", "--json", "--speed", "12"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["live_closed"], 0, "a live call was closed");
    assert_eq!(report["live_kept"], 14);
    assert_eq!(report["cron_cuts_live"], 1, "the 45-minute-old live call");
    let rows = report["rows"].as_array().unwrap();
    let ts = |v: &Value| {
        v.as_str().map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        })
    };
    let mut gap_closed = 0;
    for r in rows {
        let live = r["live_at_end"].as_bool().unwrap();
        match (live, ts(&r["truth_ended_at"]), r["reason"].as_str()) {
            (true, _, reason) => assert_eq!(reason, None, "live row {} closed", r["id"]),
            (false, Some(truth), Some("channel_gone")) => {
                let (a, b) = (
                    ts(&r["ended_after"]).unwrap(),
                    ts(&r["ended_before"]).unwrap(),
                );
                assert!(
                    a <= truth && truth <= b,
                    "row {}: truth {truth} outside [{a}, {b}]",
                    r["id"]
                );
                gap_closed += 1;
            }
            (false, Some(_), other) => {
                panic!("row {} ended during the outage but got {other:?}", r["id"])
            }
            (false, None, reason) => {
                assert_eq!(reason, Some("channel_gone"), "stuck row {}", r["id"])
            }
        }
    }
    assert_eq!(gap_closed, 9, "the nine calls that ended during the outage");
    assert!(
        !stderr.contains("lab-secret")
            && !String::from_utf8_lossy(&out.stdout).contains("lab-secret")
    );
}
