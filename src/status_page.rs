//! The status page (`GET /` on the HTTP listener): one server-rendered HTML page of what `/status` says,
//! readable at a glance. No script: it refreshes itself with `<meta http-equiv="refresh">`. It shows the
//! same data as `/status` (no secrets, no phone numbers), every value HTML-escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::health::{DaemonStatus, OpenRowsHealth, ServerHealth, RECENT_CLOSES};
use crate::html::{duration, escape, time};

/// Seconds between the page's automatic reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// The open-row states every round reports, in display order, with their labels.
const STATES: &[(&str, &str)] = &[
    ("alive", "alive"),
    ("awaiting_listing", "awaiting listing"),
    ("awaiting_timeout", "awaiting timeout"),
    ("held_by_guard", "held by the guard"),
    ("unreadable", "unreadable"),
    ("suspected_ghost", "suspected ghosts"),
];

/// Labels of states shown only when a round reports them.
const OTHER_LABELS: &[(&str, &str)] = &[
    ("unknown_server", "unknown server"),
    ("answered_in_future", "answered in the future"),
];

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}
header span{opacity:.85}
main{padding:16px 24px;display:grid;gap:16px}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e6eb;white-space:nowrap}
th{font-weight:600;color:#5a6272;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#0a7f3f;font-weight:600}.warn{color:#a15c00;font-weight:600}.bad{color:#c0262d;font-weight:600}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e4e6eb}
.r-hangup_seen{background:#d6f0e0}.r-channel_gone{background:#dbe7fb}.r-asterisk_restart{background:#f3e0f7}
.r-timeout_cleanup{background:#fbe3cf}.r-superseded{background:#eee6d3}.r-ghost_channel{background:#f8d7da}
.muted{color:#8a91a0}
ul.alerts{margin:0;padding-left:18px;color:#c0262d}
";

/// Renders the page for `status` as of `now`; `fallback_after` is the policy's, shown beside unsynced servers.
pub fn render(
    status: &DaemonStatus,
    now: DateTime<Utc>,
    fallback_after: chrono::Duration,
) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>callwatch status</title><style>{STYLE}</style></head><body>\n"
    );
    header(&mut h, status, now);
    h.push_str("<main>\n");
    alerts(&mut h, status);
    servers(&mut h, &status.servers, now, fallback_after);
    open_rows(&mut h, &status.open_rows);
    unknown_servers(&mut h, status);
    broadcast(&mut h, status);
    closes(&mut h, status);
    h.push_str("</main></body></html>\n");
    h
}

fn yes_no(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=\"ok\">{}</span>", escape(yes))
    } else {
        format!("<span class=\"bad\">{}</span>", escape(no))
    }
}

fn header(h: &mut String, s: &DaemonStatus, now: DateTime<Utc>) {
    let up = s
        .started_at
        .map(|t| format!("up {}", duration(now - t)))
        .unwrap_or_default();
    let sweep = s.last_sweep.at.map_or_else(
        || "no round yet".to_string(),
        |at| format!("last round {} ago", duration(now - at)),
    );
    let _ = writeln!(
        h,
        "<header><h1>callwatch</h1><span id=\"version\">{}</span><span>{}</span>\
         <span id=\"lock\">lock: {}{}</span><span id=\"database\">database: {}</span>\
         <span id=\"last-round\">{}</span><span id=\"closed-total\">{} closed since start</span>\
         <span class=\"muted\" id=\"rendered-at\">{} UTC, refreshes every {REFRESH_SECONDS} s</span></header>",
        escape(&s.version),
        escape(&up),
        yes_no(s.lock_held, "held (this daemon writes)", "not held (standby)"),
        if s.owned.is_empty() {
            String::new()
        } else {
            format!(" for {}", escape(&s.owned.join(", ")))
        },
        yes_no(s.database_ok, "ok", "unreachable"),
        escape(&sweep),
        s.closed_total,
        escape(&time(Some(now))),
    );
}

fn alerts(h: &mut String, s: &DaemonStatus) {
    if s.alerts.is_empty() {
        return;
    }
    h.push_str("<section id=\"alerts\"><h2>Alerts</h2><ul class=\"alerts\">");
    for a in &s.alerts {
        let _ = write!(h, "<li>{}</li>", escape(a));
    }
    h.push_str("</ul></section>\n");
}

fn servers(
    h: &mut String,
    servers: &[ServerHealth],
    now: DateTime<Utc>,
    fallback_after: chrono::Duration,
) {
    h.push_str(
        "<section id=\"servers\"><h2>AMI connections</h2><table><thead><tr><th>server</th><th>state</th>\
         <th>synced since</th><th>last listing</th><th class=\"num\">events/s</th><th class=\"num\">map size</th>\
         <th>last error</th></tr></thead><tbody>\n",
    );
    if servers.is_empty() {
        h.push_str("<tr><td colspan=\"7\" class=\"muted\">no server yet</td></tr>\n");
    }
    for s in servers {
        let class = match (s.synced, s.connected) {
            (true, _) => "ok",
            (false, true) => "warn",
            (false, false) => "bad",
        };
        let since = if s.synced {
            s.synced_since.map_or_else(
                || "synced".to_string(),
                |t| format!("{} ({} ago)", time(Some(t)), duration(now - t)),
            )
        } else {
            match s.unsynced_since {
                Some(t) => {
                    let late = now - t >= fallback_after;
                    format!(
                        "unsynced for {}{}",
                        duration(now - t),
                        if late {
                            " (past fallback_after: old rows close by timeout)"
                        } else {
                            ""
                        }
                    )
                }
                None => "never synced".to_string(),
            }
        };
        let _ = writeln!(
            h,
            "<tr data-server=\"{name}\"><td data-field=\"name\">{name}</td>\
             <td data-field=\"state\" class=\"{class}\">{state}</td><td data-field=\"synced-since\">{since}</td>\
             <td data-field=\"last-listing\">{listing}</td><td data-field=\"events-per-second\" class=\"num\">{eps:.1}</td>\
             <td data-field=\"map-size\" class=\"num\">{live}</td><td data-field=\"last-error\">{error}</td></tr>",
            name = escape(&s.name),
            state = escape(&s.state),
            since = escape(&since),
            listing = escape(&time(s.last_listing_at)),
            eps = s.events_per_second,
            live = s.channels_live,
            error = escape(s.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn open_rows(h: &mut String, rows: &[OpenRowsHealth]) {
    // The fixed states first, then any other state the rounds reported.
    let mut states: Vec<(String, String)> = STATES
        .iter()
        .map(|(k, l)| (k.to_string(), l.to_string()))
        .collect();
    for r in rows {
        for k in r.states.keys() {
            if !states.iter().any(|(s, _)| s == k) {
                let label = OTHER_LABELS
                    .iter()
                    .find(|(key, _)| key == k)
                    .map_or_else(|| k.replace('_', " "), |(_, l)| l.to_string());
                states.push((k.clone(), label));
            }
        }
    }
    h.push_str("<section id=\"open-rows\"><h2>Open rows by state</h2><table><thead><tr><th>server</th><th>as of</th>");
    for (_, label) in &states {
        let _ = write!(h, "<th class=\"num\">{}</th>", escape(label));
    }
    h.push_str("</tr></thead><tbody>\n");
    if rows.is_empty() {
        let _ = writeln!(
            h,
            "<tr><td colspan=\"{}\" class=\"muted\">no round yet</td></tr>",
            states.len() + 2
        );
    }
    for r in rows {
        let _ = write!(
            h,
            "<tr data-server=\"{name}\"><td>{name}</td><td>{at}</td>",
            name = escape(&r.server),
            at = escape(&time(r.at)),
        );
        for (key, _) in &states {
            let n = r.states.get(key).copied().unwrap_or(0);
            let _ = write!(
                h,
                "<td class=\"num{}\" data-state=\"{}\">{n}</td>",
                if n > 0
                    && matches!(
                        key.as_str(),
                        "held_by_guard" | "unreadable" | "unknown_server" | "suspected_ghost"
                    )
                {
                    " bad"
                } else {
                    ""
                },
                escape(key)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn unknown_servers(h: &mut String, s: &DaemonStatus) {
    if s.unknown_servers.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"unknown-servers\"><h2>Open rows for servers this daemon does not watch</h2><table><thead>\
         <tr><th>server value</th><th class=\"num\">open rows</th></tr></thead><tbody>\n",
    );
    for u in &s.unknown_servers {
        let _ = writeln!(
            h,
            "<tr><td data-field=\"server\">{}</td><td class=\"num bad\" data-field=\"rows\">{}</td></tr>",
            escape(u.server.as_deref().unwrap_or("NULL")),
            u.rows
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn broadcast(h: &mut String, s: &DaemonStatus) {
    h.push_str("<section id=\"broadcast\"><h2>Broadcast</h2>");
    match &s.broadcast {
        None => {
            h.push_str("<p class=\"muted\" data-field=\"transports\">no transport configured</p>")
        }
        Some(b) => {
            let _ = write!(
                h,
                "<table><thead><tr><th>transports</th><th class=\"num\">delivered</th><th class=\"num\">failed attempts</th>\
                 <th class=\"num\">dropped</th><th>last error</th></tr></thead><tbody><tr>\
                 <td data-field=\"transports\">{}</td><td class=\"num\" data-field=\"delivered\">{}</td>\
                 <td class=\"num{}\" data-field=\"failed\">{}</td><td class=\"num{}\" data-field=\"dropped\">{}</td>\
                 <td data-field=\"last-error\">{}</td></tr></tbody></table>",
                escape(&b.transports.join(", ")),
                b.delivered,
                if b.failed > 0 { " bad" } else { "" },
                b.failed,
                if b.dropped > 0 { " bad" } else { "" },
                b.dropped,
                escape(&match (&b.last_error, b.last_error_at) {
                    (Some(e), Some(at)) => format!("{} — {e}", time(Some(at))),
                    (Some(e), None) => e.clone(),
                    _ => String::new(),
                }),
            );
        }
    }
    h.push_str("</section>\n");
}

fn closes(h: &mut String, s: &DaemonStatus) {
    let _ = writeln!(
        h,
        "<section id=\"closes\"><h2>Last closes ({} of at most {RECENT_CLOSES})</h2><table><thead><tr><th>row</th><th>server</th><th>reason</th>\
         <th>hangup_cause</th><th>answered_at</th><th>ended_at</th><th>true end within</th><th>closed at</th>\
         </tr></thead><tbody>",
        s.recent_closes.len()
    );
    if s.recent_closes.is_empty() {
        h.push_str("<tr><td colspan=\"8\" class=\"muted\">nothing closed since start</td></tr>\n");
    }
    for c in &s.recent_closes {
        let bounds = match (c.ended_after, c.ended_before) {
            (Some(a), Some(b)) if a == b => "exact".to_string(),
            (Some(a), Some(b)) => format!("{} – {}", time(Some(a)), b.format("%H:%M:%S")),
            (Some(a), None) => format!("after {}", time(Some(a))),
            (None, Some(b)) => format!("before {}", time(Some(b))),
            (None, None) => "exact".to_string(),
        };
        let _ = writeln!(
            h,
            "<tr data-row=\"{id}\"><td>{id}</td><td>{server}</td>\
             <td data-field=\"reason\"><span class=\"pill r-{reason}\">{reason}</span></td><td>{cause}</td>\
             <td>{answered}</td><td data-field=\"ended-at\">{ended}</td><td data-field=\"bounds\">{bounds}</td>\
             <td>{decided}</td></tr>",
            id = escape(&c.id),
            server = escape(&c.server),
            reason = escape(&c.reason),
            cause = escape(&c.hangup_cause),
            answered = escape(&time(Some(c.answered_at))),
            ended = escape(&time(Some(c.ended_at))),
            bounds = escape(&bounds),
            decided = escape(&time(Some(c.decided_at))),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{BroadcastHealth, RecentClose};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn everything_shown_is_escaped() {
        let status = DaemonStatus {
            version: "0.1.0".into(),
            started_at: Some(t(0)),
            servers: vec![ServerHealth {
                name: "<b>pbx</b>".into(),
                state: "disconnected".into(),
                last_error: Some("<script>alert(1)</script>".into()),
                unsynced_since: Some(t(10)),
                ..ServerHealth::default()
            }],
            alerts: vec!["row \"1\" & <i>".into()],
            open_rows: vec![OpenRowsHealth {
                server: "<b>pbx</b>".into(),
                at: Some(t(20)),
                states: [("alive".to_string(), 3), ("<x>".to_string(), 1)].into(),
            }],
            recent_closes: vec![RecentClose {
                id: "<7>".into(),
                server: "pbx".into(),
                reason: "hangup_seen\"><script>".into(),
                hangup_cause: "normal_clearing".into(),
                answered_at: t(1),
                ended_at: t(2),
                ended_after: Some(t(1)),
                ended_before: Some(t(3)),
                decided_at: t(4),
            }],
            broadcast: Some(BroadcastHealth {
                transports: vec!["webhook".into()],
                failed: 2,
                last_error: Some("answered <503>".into()),
                ..BroadcastHealth::default()
            }),
            ..DaemonStatus::default()
        };
        let page = render(&status, t(200), chrono::Duration::minutes(2));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("<x>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("row &quot;1&quot; &amp; &lt;i&gt;"));
        assert!(page.contains("answered &lt;503&gt;"));
        assert!(
            page.contains("past fallback_after"),
            "unsynced 190 s > 2 min"
        );
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    }
}
