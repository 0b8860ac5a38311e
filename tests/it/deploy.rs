//! `deploy/grafana/callwatch.json` and `deploy/prometheus/callwatch-alerts.yml`: every PromQL expression
//! parses (promql-parser), the rules file has Prometheus's rule-file shape, and every metric they query is
//! exported by the `/metrics` of a running daemon that watched a PBX, closed a call and failed a broadcast.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde::Deserialize;
use store::testing::{Engine, TestDb};

use crate::daemon::{closed, eventually, insert_row, pbx_with_call};
use crate::status_page::DaemonProcess;

/// Prometheus's rule file (`groups:` of `rules:`), unknown keys refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", default)]
    for_: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Metric names an expression selects.
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let vs = match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        if let Some(name) = vs.and_then(|v| v.name.clone()) {
            self.0.insert(name);
        }
        Ok(true)
    }
}

/// Parses `expr` (Grafana's variables replaced by example values) and returns the metrics it selects.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let concrete = expr
        .replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$server", "pbx1");
    let ast = parser::parse(&concrete).unwrap_or_else(|e| panic!("`{expr}` does not parse: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast).unwrap();
    assert!(!names.0.is_empty(), "`{expr}` selects no metric");
    names.0
}

fn deploy(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(path),
    )
    .unwrap()
}

/// Every `expr` in a Grafana dashboard (panels, nested rows, templating queries), with the panel's title.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn panels(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in v.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    out
}

/// Prometheus durations: `30s`, `2m`, `1h30m`.
fn is_duration(s: &str) -> bool {
    let mut digits = false;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else { return false };
        rest = &rest[unit.len()..];
        digits = true;
    }
    digits
}

#[test]
fn alert_rules_have_prometheus_rule_file_shape() {
    let file: RuleFile = serde_yaml::from_str(&deploy("prometheus/callwatch-alerts.yml")).unwrap();
    assert_eq!(file.groups.len(), 1);
    let group = &file.groups[0];
    assert_eq!(group.name, "callwatch");
    assert!(group.interval.as_deref().is_none_or(is_duration));
    let mut alerts = BTreeSet::new();
    for rule in &group.rules {
        assert!(rule.record.is_none(), "alerting rules only");
        let name = rule.alert.clone().unwrap();
        assert!(alerts.insert(name.clone()), "{name} twice");
        metric_names(&rule.expr);
        if let Some(f) = &rule.for_ {
            assert!(is_duration(f), "{name}: for: {f}");
        }
        assert!(["warning", "critical"].contains(&rule.labels["severity"].as_str()));
        assert!(rule.annotations.contains_key("summary"), "{name}");
    }
    for required in [
        "CallwatchAmiUnsyncedPastFallback",
        "CallwatchAmiDown",
        "CallwatchGuardHolding",
        "CallwatchSuspectedGhostCalls",
        "CallwatchUnreadableRows",
        "CallwatchBroadcastErrors",
        "CallwatchNoRound",
    ] {
        assert!(alerts.contains(required), "{required} missing: {alerts:?}");
    }
    // Not a rule file: refused.
    assert!(serde_yaml::from_str::<RuleFile>(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expression: up\n"
    )
    .is_err());
    assert!(std::panic::catch_unwind(|| metric_names("rate(callwatch_closes_total[5m]")).is_err());
}

#[test]
fn dashboard_covers_the_operations_topics() {
    let dash: serde_json::Value = serde_json::from_str(&deploy("grafana/callwatch.json")).unwrap();
    assert_eq!(dash["uid"], "callwatch");
    let exprs = dashboard_exprs(&dash);
    let titles: BTreeSet<String> = exprs.iter().map(|(t, _)| t.to_lowercase()).collect();
    for topic in [
        "ami state per server",
        "closes by reason",
        "close latency",
        "open rows by state",
        "broadcast errors",
        "guard holds",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(topic)),
            "no panel for {topic}: {titles:?}"
        );
    }
    for (_, expr) in &exprs {
        metric_names(expr);
    }
    let var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "server")
        .unwrap();
    let query = var["definition"].as_str().unwrap();
    assert_eq!(query, "label_values(callwatch_ami_up, server)");
}

/// Names of the samples in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let mut wanted = BTreeSet::new();
    let dash: serde_json::Value = serde_json::from_str(&deploy("grafana/callwatch.json")).unwrap();
    for (_, expr) in dashboard_exprs(&dash) {
        wanted.extend(metric_names(&expr));
    }
    let rules: RuleFile = serde_yaml::from_str(&deploy("prometheus/callwatch-alerts.yml")).unwrap();
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        wanted.extend(metric_names(&rule.expr));
    }

    let db = TestDb::create(Engine::Sqlite).await.unwrap();
    db.store().await.shutdown().await;
    let (pbx, call, agent) = pbx_with_call("2001").await;
    insert_row(&db, 1, &agent, "2001", Utc::now()).await;
    insert_row(&db, 2, "1700000000.98", "2005", Utc::now()).await;
    let store = db.store().await;
    sqlx::query("UPDATE calls SET server = 'pbx9' WHERE id = 2")
        .execute(store.pool())
        .await
        .unwrap();
    store.shutdown().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[[server]]\nname = \"pbx1\"\nurl = \"ami://watchdog:lab-secret@{}?ping=1\"\n\
         [broadcast]\ntimeout = \"1s\"\n[broadcast.webhook]\nurl = \"http://{dead}/hook\"\nsecret = \"hook-secret\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        pbx.local_addr(),
    );
    let d = DaemonProcess::start(&config, db.url()).await;
    eventually("ready", || async {
        let r = reqwest::get(format!("http://{}/readyz", d.addr))
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    pbx.with(|p| p.hangup(call, 16)).unwrap();
    tokio::time::timeout(Duration::from_secs(20), closed(&db, 1, "row 1 closed"))
        .await
        .unwrap_or_else(|_| panic!("row 1 not closed:\n{}", d.log_text()));
    // The failed broadcast is given up after its attempts: errors and drops counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = d.get("/metrics").await;
        let missing: Vec<_> = wanted.difference(&exported(&m)).cloned().collect();
        if missing.is_empty() {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queried but not exported: {missing:?}\n{m}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Real values, not placeholders.
    assert!(
        metrics.contains("callwatch_ami_up{server=\"pbx1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_ami_synced{server=\"pbx1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_fallback_after_seconds 120"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_sweep_interval_seconds 600"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_close_latency_seconds_count{reason=\"hangup_seen\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_open_rows{server=\"pbx1\",state=\"alive\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callwatch_rows_unknown_server"),
        "{metrics}"
    );
}
