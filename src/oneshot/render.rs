//! Text tables and `--json` shapes of `cleanup`'s plan.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::plan::{Action, Plan, Planned};

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A short age: `45s`, `50m`, `2h05m`, `3d04h`.
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86400, (s / 3600) % 24),
    }
}

/// One planned row as JSON: the row, its age and what happens to it.
pub fn row_json(p: &Planned, now: DateTime<Utc>) -> Value {
    let mut v = json!({
        "id": p.call.id,
        "server": match &p.group { super::groups::Group::Server(s) => Some(s.as_str()), _ => None },
        "extension": p.call.extension,
        "uniqueid": p.call.uniqueid,
        "linkedid": p.call.linkedid,
        "answered_at": p.call.answered_at,
        "age_seconds": (now - p.call.answered_at).num_seconds(),
    });
    let extra = match &p.action {
        Action::Close(c) => json!({
            "action": "close",
            "reason": c.reason.as_str(),
            "hangup_cause": c.cause,
            "ended_at": c.ended_at,
            "ended_after": c.ended_after,
            "ended_before": c.ended_before,
            "talk_seconds": p.talk_seconds.unwrap_or(c.talk_seconds),
        }),
        Action::LongButLive { by } => json!({
            "action": "long_but_live",
            "matched_by": format!("{by:?}").to_lowercase(),
        }),
        Action::Held {
            would_close,
            confirm_at,
            ..
        } => json!({
            "action": "held",
            "would_close": would_close.as_str(),
            "why": if confirm_at.is_some() { "awaiting_confirmation" } else { "ids_never_matched" },
            "confirm_at": confirm_at,
        }),
        Action::Kept { why } => json!({ "action": "kept", "why": why }),
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

/// Which of the plan's `--json` lists a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowList {
    /// `to_close`
    ToClose,
    /// `long_but_live`
    LongButLive,
    /// `held`
    Held,
    /// `kept`
    Kept,
}

impl RowList {
    fn of(action: &Action) -> Self {
        match action {
            Action::Close(_) => RowList::ToClose,
            Action::LongButLive { .. } => RowList::LongButLive,
            Action::Held { .. } => RowList::Held,
            _ => RowList::Kept,
        }
    }
}

/// One of the plan's `--json` lists, serialized row by row as it is written: a report of many thousand
/// rows never exists as one JSON tree in memory.
pub struct RowsJson<'a> {
    plan: &'a Plan,
    now: DateTime<Utc>,
    list: RowList,
}

impl<'a> RowsJson<'a> {
    /// The rows of `plan` that belong to `list`, aged at `now`.
    pub fn new(plan: &'a Plan, now: DateTime<Utc>, list: RowList) -> Self {
        Self { plan, now, list }
    }
}

impl serde::Serialize for RowsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.plan
                .rows
                .iter()
                .filter(|p| RowList::of(&p.action) == self.list)
                .map(|p| row_json(p, self.now)),
        )
    }
}

fn head(p: &Planned, now: DateTime<Utc>) -> String {
    format!(
        "{:>8}  {:<8}  {:<10}  {:<19}  {:>7}",
        p.call.id.to_text(),
        p.group.label(),
        p.call.extension.as_deref().unwrap_or("-"),
        utc(p.call.answered_at),
        age(now - p.call.answered_at)
    )
}

fn head_title() -> String {
    format!(
        "{:>8}  {:<8}  {:<10}  {:<19}  {:>7}",
        "id", "server", "extension", "answered_at (UTC)", "age"
    )
}

/// The plan as text: the rows to close, then the long-but-live, held and otherwise kept ones.
pub fn plan_text(plan: &Plan, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let closes: Vec<_> = plan.closes().collect();
    if !closes.is_empty() {
        let _ = writeln!(out, "To close ({}):", closes.len());
        let _ = writeln!(
            out,
            "{}  {:<16}  {:<19}  {:>7}",
            head_title(),
            "reason",
            "ended_at (UTC)",
            "talk_s"
        );
        for p in closes {
            if let Some(c) = p.close() {
                let _ = writeln!(
                    out,
                    "{}  {:<16}  {:<19}  {:>7}",
                    head(p, now),
                    c.reason.as_str(),
                    utc(c.ended_at),
                    p.talk_seconds.unwrap_or(c.talk_seconds)
                );
            }
        }
    }
    let live: Vec<_> = plan.long_but_live().collect();
    if !live.is_empty() {
        let _ = writeln!(
            out,
            "Long but live, kept ({}): their channels are up in Asterisk",
            live.len()
        );
        let _ = writeln!(out, "{}  matched by", head_title());
        for p in live {
            if let Action::LongButLive { by } = &p.action {
                let by = format!("{by:?}").to_lowercase();
                let _ = writeln!(out, "{}  {by}", head(p, now));
            }
        }
    }
    let held: Vec<_> = plan.held().collect();
    if !held.is_empty() {
        let _ = writeln!(
            out,
            "Held by the mass-close guard, not closed ({}):",
            held.len()
        );
        let _ = writeln!(out, "{}  would close as", head_title());
        for p in held {
            if let Action::Held {
                would_close,
                confirm_at,
                ..
            } = &p.action
            {
                let why = if confirm_at.is_some() {
                    "no confirming listing"
                } else {
                    "no row's id ever matched a channel: check the column mapping and server names"
                };
                let _ = writeln!(out, "{}  {} ({why})", head(p, now), would_close.as_str());
            }
        }
    }
    let kept: Vec<_> = plan
        .rows
        .iter()
        .filter(|p| matches!(p.action, Action::Kept { .. }))
        .collect();
    if !kept.is_empty() {
        let _ = writeln!(out, "Kept ({}):", kept.len());
        for p in kept {
            if let Action::Kept { why } = &p.action {
                let _ = writeln!(out, "{}  {why}", head(p, now));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let s = chrono::Duration::seconds;
        assert_eq!(age(s(-5)), "0s");
        assert_eq!(age(s(45)), "45s");
        assert_eq!(age(s(50 * 60)), "50m");
        assert_eq!(age(s(2 * 3600 + 5 * 60)), "2h05m");
        assert_eq!(age(s(3 * 86400 + 4 * 3600)), "3d04h");
    }
}
