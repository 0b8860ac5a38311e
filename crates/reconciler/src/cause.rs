//! The `hangup_cause` written for a `hangup_seen` close.

use crate::evidence::Hangup;
use crate::policy::CauseFormat;

/// The cause of the Hangup that ended the call, written as `format` asks; `unknown` when the Hangup
/// carried neither a code nor a text (or none was seen).
pub(crate) fn hangup_cause(hangup: Option<&Hangup<'_>>, format: CauseFormat) -> String {
    let code = hangup.and_then(|h| h.cause);
    let text = hangup
        .and_then(|h| h.cause_txt)
        .map(snake_case)
        .filter(|s| !s.is_empty());
    let chosen = match format {
        CauseFormat::Numeric => code.map(|c| c.to_string()).or(text),
        CauseFormat::Text => text.or_else(|| code.map(|c| c.to_string())),
    };
    chosen.unwrap_or_else(|| "unknown".to_owned())
}

/// `Normal Clearing` → `normal_clearing`; `Normal, unspecified` → `normal_unspecified`: lower case, each
/// run of characters other than ASCII letters and digits becomes one `_`, none at either end.
pub(crate) fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn check(code: Option<u16>, txt: Option<&str>, format: CauseFormat, expect: &str) {
        let h = Hangup {
            uniqueid: "1.1",
            at: Utc.timestamp_opt(0, 0).unwrap(),
            cause: code,
            cause_txt: txt,
        };
        assert_eq!(
            hangup_cause(Some(&h), format),
            expect,
            "{code:?} {txt:?} {format:?}"
        );
    }

    #[test]
    fn causes() {
        use CauseFormat::*;
        check(Some(16), Some("Normal Clearing"), Text, "normal_clearing");
        check(Some(16), Some("Normal Clearing"), Numeric, "16");
        check(
            Some(31),
            Some("Normal, unspecified"),
            Text,
            "normal_unspecified",
        );
        check(
            Some(19),
            Some("User alerting, no answer"),
            Text,
            "user_alerting_no_answer",
        );
        check(Some(0), Some("  Unknown  "), Text, "unknown");
        check(Some(17), None, Text, "17");
        check(None, Some("User busy"), Numeric, "user_busy");
        check(None, Some(" , "), Text, "unknown");
        check(None, None, Numeric, "unknown");
        assert_eq!(hangup_cause(None, Text), "unknown");
    }

    #[test]
    fn snake_case_keeps_only_ascii_words() {
        assert_eq!(snake_case("Call Rejected"), "call_rejected");
        assert_eq!(snake_case("Ünknown—cause 3"), "nknown_cause_3");
        assert_eq!(snake_case(""), "");
    }
}
