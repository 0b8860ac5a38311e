//! Small helpers for the HTML the runner writes (the status page, replay and demo reports): escaping and
//! time formatting. Every value that reaches a page goes through [`escape`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-12-02 07:48:01` (UTC), or `-`.
pub fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// A duration in words: `45 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub fn duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let mut out = String::new();
    let _ = match s {
        0..=59 => write!(out, "{s} s"),
        60..=3599 => write!(out, "{} min {} s", s / 60, s % 60),
        3600..=86_399 => write!(out, "{} h {} min", s / 3600, s % 3600 / 60),
        _ => write!(out, "{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(chrono::Duration::seconds(45)), "45 s");
        assert_eq!(duration(chrono::Duration::seconds(185)), "3 min 5 s");
        assert_eq!(duration(chrono::Duration::minutes(130)), "2 h 10 min");
        assert_eq!(duration(chrono::Duration::hours(76)), "3 d 4 h");
    }
}
