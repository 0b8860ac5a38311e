//! The HTML report of a replay or a demo (`--report FILE.html`): one self-contained page (no script, no
//! external file) with an inline SVG timeline. One line per row, from its answer to the `ended_at` callwatch
//! wrote, coloured by the close's reason, with the window that holds the true end shaded; the AMI
//! connection's up and down periods in a band on top, and every complete listing marked. This is what a
//! person looks at after last night's outage.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::html::{duration, escape, time};

/// One row of the timeline.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    /// Row id.
    pub id: String,
    /// A short label beside the id (the extension), if any.
    pub label: Option<String>,
    /// When the call was answered.
    pub answered_at: DateTime<Utc>,
    /// The `ended_at` callwatch wrote (`None`: kept open).
    pub ended_at: Option<DateTime<Utc>>,
    /// The close's reason.
    pub reason: Option<String>,
    /// Lower bound of the true end, when not known exactly.
    pub ended_after: Option<DateTime<Utc>>,
    /// Upper bound of the true end, when not known exactly.
    pub ended_before: Option<DateTime<Utc>>,
    /// When the call really ended, if known (the demo's recorded truth).
    pub truth_ended_at: Option<DateTime<Utc>>,
    /// A word on a row kept open (`live`, `held by the guard`, …).
    pub note: Option<String>,
}

/// A period of the AMI connection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Period {
    /// Start.
    pub from: DateTime<Utc>,
    /// End.
    pub to: DateTime<Utc>,
    /// Logged in (true) or not.
    pub up: bool,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Page title (`callwatch replay`, `callwatch demo`).
    pub title: String,
    /// One line under the title (what was replayed).
    pub subtitle: String,
    /// The rows.
    pub rows: Vec<TimelineRow>,
    /// The AMI connection's periods, in time order.
    pub connection: Vec<Period>,
    /// Start times of the complete `CoreShowChannels` listings.
    pub listings: Vec<DateTime<Utc>>,
    /// Start of the time axis (rows answered earlier start at the left edge, marked).
    pub start: DateTime<Utc>,
    /// End of the time axis.
    pub end: DateTime<Utc>,
}

impl Timeline {
    /// Up periods between `sessions` (connected, closed) in order, down periods in the gaps, over
    /// [`start`, `end`].
    pub fn periods_from_sessions(
        sessions: &[(DateTime<Utc>, DateTime<Utc>)],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<Period> {
        let mut out = Vec::new();
        let mut at = start;
        for (from, to) in sessions {
            if *from > at {
                out.push(Period {
                    from: at,
                    to: *from,
                    up: false,
                });
            }
            out.push(Period {
                from: *from,
                to: *to,
                up: true,
            });
            at = *to;
        }
        if end > at {
            out.push(Period {
                from: at,
                to: end,
                up: false,
            });
        }
        out
    }
}

/// Colour of each reason (and of rows kept open).
pub fn reason_colour(reason: Option<&str>) -> &'static str {
    match reason {
        Some("hangup_seen") => "#2f9e5b",
        Some("channel_gone") => "#3b6fd8",
        Some("asterisk_restart") => "#9b4fc0",
        Some("timeout_cleanup") => "#e07b24",
        Some("superseded") => "#8c7a4b",
        Some("ghost_channel") => "#c0262d",
        Some(_) => "#555c69",
        None => "#9aa1ad",
    }
}

const LEFT: f64 = 190.0;
const WIDTH: f64 = 1180.0;
const RIGHT: f64 = 130.0;
const ROW_H: f64 = 20.0;
const TOP: f64 = 78.0;

struct Scale {
    start: DateTime<Utc>,
    span_ms: f64,
}

impl Scale {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let ms = (t - self.start).num_milliseconds() as f64;
        let frac = (ms / self.span_ms).clamp(0.0, 1.0);
        LEFT + frac * (WIDTH - LEFT - RIGHT)
    }
}

/// Renders the page.
pub fn render(t: &Timeline) -> String {
    let span_ms = ((t.end - t.start).num_milliseconds() as f64).max(1000.0);
    let sc = Scale {
        start: t.start,
        span_ms,
    };
    let height = TOP + t.rows.len() as f64 * ROW_H + 40.0;
    let mut svg = String::with_capacity(64 * 1024);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"timeline\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"system-ui, sans-serif\" font-size=\"11\">"
    );
    // Time axis: about ten ticks on whole seconds/minutes.
    let step = tick_step(span_ms / 1000.0);
    let first = (t.start.timestamp() / step + 1) * step;
    let mut tick = first;
    while tick <= t.end.timestamp() {
        if let Some(at) = DateTime::from_timestamp(tick, 0) {
            let x = sc.x(at);
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#e4e6eb\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5a6272\">{}</text>",
                TOP - 8.0,
                height - 28.0,
                height - 14.0,
                at.format("%H:%M:%S")
            );
        }
        tick += step;
    }
    // The AMI connection band.
    svg.push_str("<g id=\"connection\">");
    let _ = write!(
        svg,
        "<text x=\"8\" y=\"26\" fill=\"#1d2330\" font-weight=\"600\">AMI connection</text>"
    );
    for p in &t.connection {
        let (x1, x2) = (sc.x(p.from), sc.x(p.to));
        let (fill, word) = if p.up {
            ("#bfe5cd", "up")
        } else {
            ("#f3c0c3", "down")
        };
        let _ = write!(
            svg,
            "<rect class=\"period\" data-up=\"{}\" data-from=\"{}\" data-to=\"{}\" x=\"{x1:.1}\" y=\"14\" \
             width=\"{:.1}\" height=\"18\" fill=\"{fill}\"><title>AMI {word} {} – {} ({})</title></rect>",
            p.up,
            p.from.to_rfc3339(),
            p.to.to_rfc3339(),
            (x2 - x1).max(0.5),
            time(Some(p.from)),
            time(Some(p.to)),
            duration(p.to - p.from),
        );
    }
    svg.push_str("</g><g id=\"listings\">");
    let _ = write!(
        svg,
        "<text x=\"8\" y=\"52\" fill=\"#1d2330\" font-weight=\"600\">listings</text>"
    );
    for at in &t.listings {
        let x = sc.x(*at);
        let _ = write!(
            svg,
            "<g class=\"listing\" data-at=\"{}\"><line x1=\"{x:.1}\" y1=\"38\" x2=\"{x:.1}\" y2=\"{}\" \
             stroke=\"#3b6fd8\" stroke-dasharray=\"2 3\" stroke-opacity=\"0.5\"/><path d=\"M{:.1} 40 l5 9 h-10 z\" \
             fill=\"#3b6fd8\"/><title>CoreShowChannels listing at {}</title></g>",
            at.to_rfc3339(),
            height - 28.0,
            x,
            time(Some(*at))
        );
    }
    svg.push_str("</g><g id=\"rows\">");
    for (i, r) in t.rows.iter().enumerate() {
        row_svg(&mut svg, &sc, r, TOP + i as f64 * ROW_H, t.end);
    }
    svg.push_str("</g></svg>");

    let mut h = String::with_capacity(svg.len() + 8 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#1d2330;background:#fff}}\
         h1{{font-size:20px;margin:0 0 4px}} p{{margin:4px 0 12px;color:#5a6272}}\
         .legend span{{display:inline-block;margin-right:14px}} .legend i{{display:inline-block;width:14px;height:8px;\
         margin-right:4px;vertical-align:middle}} table{{border-collapse:collapse;margin-top:16px}}\
         td,th{{padding:2px 8px;border-bottom:1px solid #e4e6eb;text-align:left;white-space:nowrap}}\
         </style></head><body><h1>{title}</h1><p>{subtitle}</p><div class=\"legend\">",
        title = escape(&t.title),
        subtitle = escape(&t.subtitle),
    );
    for reason in [
        "hangup_seen",
        "channel_gone",
        "asterisk_restart",
        "timeout_cleanup",
        "superseded",
    ] {
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>{reason}</span>",
            reason_colour(Some(reason))
        );
    }
    let _ = write!(
        h,
        "<span><i style=\"background:{}\"></i>kept open</span>\
         <span><i style=\"background:#000;opacity:.15\"></i>window holding the true end</span>\
         <span>● callwatch's ended_at</span><span>| true end (when known)</span>\
         <span>▲ listing</span></div>\n{svg}\n",
        reason_colour(None)
    );
    summary_table(&mut h, t);
    h.push_str("</body></html>\n");
    h
}

fn row_svg(svg: &mut String, sc: &Scale, r: &TimelineRow, y: f64, end: DateTime<Utc>) {
    let colour = reason_colour(r.reason.as_deref());
    let mid = y + 12.0;
    let label = match &r.label {
        Some(l) => format!("#{} {}", r.id, l),
        None => format!("#{}", r.id),
    };
    let _ = write!(
        svg,
        "<g class=\"row\" data-id=\"{}\" data-reason=\"{}\" data-answered=\"{}\" data-ended=\"{}\">\
         <text x=\"8\" y=\"{:.1}\" fill=\"#1d2330\">{}</text>",
        escape(&r.id),
        escape(r.reason.as_deref().unwrap_or("open")),
        r.answered_at.to_rfc3339(),
        r.ended_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        mid + 4.0,
        escape(&label),
    );
    if let (Some(a), Some(b)) = (r.ended_after, r.ended_before) {
        let (x1, x2) = (sc.x(a), sc.x(b));
        let _ = write!(
            svg,
            "<rect class=\"bounds\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" \
             fill-opacity=\"0.25\"><title>true end between {} and {}</title></rect>",
            y + 2.0,
            (x2 - x1).max(1.0),
            ROW_H - 4.0,
            time(Some(a)),
            time(Some(b)),
        );
    }
    let x1 = sc.x(r.answered_at);
    let x2 = sc.x(r.ended_at.unwrap_or(end));
    let dash = if r.ended_at.is_none() {
        " stroke-dasharray=\"4 3\""
    } else {
        ""
    };
    let _ = write!(
        svg,
        "<line class=\"call\" x1=\"{x1:.1}\" y1=\"{mid:.1}\" x2=\"{x2:.1}\" y2=\"{mid:.1}\" stroke=\"{colour}\" \
         stroke-width=\"4\"{dash}><title>#{}: answered {}, {}</title></line>",
        escape(&r.id),
        time(Some(r.answered_at)),
        escape(&match (&r.ended_at, &r.reason) {
            (Some(e), Some(reason)) => format!("ended_at {} ({reason})", time(Some(*e))),
            _ => format!("kept open{}", r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()),
        }),
    );
    if r.answered_at < sc.start {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#5a6272\" font-size=\"9\">◀ answered {} earlier</text>",
            LEFT + 4.0,
            y + 7.0,
            duration(sc.start - r.answered_at)
        );
    }
    if let Some(e) = r.ended_at {
        let _ = write!(
            svg,
            "<circle class=\"ended\" cx=\"{:.1}\" cy=\"{mid:.1}\" r=\"4\" fill=\"{colour}\" stroke=\"#fff\"/>",
            sc.x(e)
        );
    }
    if let Some(t) = r.truth_ended_at {
        let x = sc.x(t);
        let _ = write!(
            svg,
            "<line class=\"truth\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000\" \
             stroke-width=\"1.5\"><title>really ended {}</title></line>",
            y + 1.0,
            y + ROW_H - 1.0,
            time(Some(t))
        );
    }
    if let Some(note) = &r.note {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#5a6272\" font-size=\"10\">{}</text>",
            WIDTH - RIGHT + 8.0,
            mid + 4.0,
            escape(note)
        );
    }
    svg.push_str("</g>");
}

fn summary_table(h: &mut String, t: &Timeline) {
    h.push_str(
        "<table id=\"rows-table\"><thead><tr><th>row</th><th>answered_at</th><th>ended_at</th><th>reason</th>\
         <th>true end within</th><th>true end</th></tr></thead><tbody>",
    );
    for r in &t.rows {
        let bounds = match (r.ended_after, r.ended_before) {
            (Some(a), Some(b)) if a == b => "exact".to_string(),
            (Some(a), Some(b)) => format!("{} – {}", time(Some(a)), b.format("%H:%M:%S")),
            _ => "-".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.id),
            escape(&time(Some(r.answered_at))),
            escape(&time(r.ended_at)),
            escape(
                r.reason
                    .as_deref()
                    .or(r.note.as_deref())
                    .unwrap_or("kept open")
            ),
            escape(&bounds),
            escape(&time(r.truth_ended_at)),
        );
    }
    h.push_str("</tbody></table>\n");
}

/// A tick step (seconds) giving about ten ticks over `span` seconds.
fn tick_step(span: f64) -> i64 {
    const STEPS: &[i64] = &[
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= 12.0)
        .unwrap_or(86_400)
}

/// Writes the page to `path`.
pub fn write(path: &std::path::Path, t: &Timeline) -> anyhow::Result<()> {
    std::fs::write(path, render(t))
        .map_err(|e| anyhow::anyhow!("cannot write the report {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn periods_fill_the_gaps_with_down() {
        let p = Timeline::periods_from_sessions(&[(t(0), t(10)), (t(45), t(60))], t(0), t(70));
        let shape: Vec<_> = p.iter().map(|p| (p.from, p.to, p.up)).collect();
        assert_eq!(
            shape,
            vec![
                (t(0), t(10), true),
                (t(10), t(45), false),
                (t(45), t(60), true),
                (t(60), t(70), false)
            ]
        );
    }

    #[test]
    fn the_page_is_escaped_and_self_contained() {
        let tl = Timeline {
            title: "replay <x>".into(),
            subtitle: "a & b".into(),
            rows: vec![TimelineRow {
                id: "<1>".into(),
                label: Some("\"2001\"".into()),
                answered_at: t(-3600),
                ended_at: Some(t(20)),
                reason: Some("channel_gone".into()),
                ended_after: Some(t(10)),
                ended_before: Some(t(45)),
                truth_ended_at: Some(t(15)),
                note: None,
            }],
            connection: Timeline::periods_from_sessions(&[(t(0), t(10))], t(0), t(60)),
            listings: vec![t(1)],
            start: t(0),
            end: t(60),
        };
        let page = render(&tl);
        assert!(!page.contains("<x>") && !page.contains("<1>"), "{page}");
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
        assert!(page.contains("answered 1 h 0 min earlier"), "{page}");
    }
}
