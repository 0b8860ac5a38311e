//! The times `callwatch undo --since` accepts.

use chrono::{DateTime, Utc};
use store::TimeCodec;

/// Parses `text` as a point in time, relative to `now`:
/// - RFC 3339 with an offset (`2026-11-24T19:00:00Z`, `2026-11-24T20:00:00+01:00`);
/// - a local time as the table stores it, in the database timezone (`2026-11-24 19:00:00`,
///   `2026-11-24 19:00`, `2026-11-24`);
/// - a duration ago (`90m`, `2h`, `1day`).
pub fn parse(text: &str, now: DateTime<Utc>, tz: &TimeCodec) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = match text.len() {
        10 => format!("{text} 00:00:00"),
        16 => format!("{text}:00"),
        _ => text.to_string(),
    };
    if let Ok(t) = tz.decode("--since", &local) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(text) {
        let d = chrono::Duration::from_std(d).map_err(|_| format!("{text:?} is too long ago"))?;
        return now
            .checked_sub_signed(d)
            .ok_or_else(|| format!("{text:?} is too long ago"));
    }
    Err(format!(
        "{text:?} is not a time: use 2026-11-24T19:00:00Z, \"2026-11-24 19:00:00\" (database timezone) or a duration ago such as 2h"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let utc = TimeCodec::new("UTC").unwrap();
        let paris = TimeCodec::new("Europe/Paris").unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            parse("2026-11-24T19:00:00Z", now, &utc),
            Ok(at("2026-11-24T19:00:00Z"))
        );
        assert_eq!(
            parse("2026-11-24T19:00:00+01:00", now, &utc),
            Ok(at("2026-11-24T18:00:00Z"))
        );
        assert_eq!(
            parse("2026-11-24 19:00:00", now, &utc),
            Ok(at("2026-11-24T19:00:00Z"))
        );
        assert_eq!(
            parse("2026-11-24 19:00:00", now, &paris),
            Ok(at("2026-11-24T18:00:00Z"))
        );
        assert_eq!(
            parse("2026-11-24 19:30", now, &utc),
            Ok(at("2026-11-24T19:30:00Z"))
        );
        assert_eq!(
            parse("2026-11-24", now, &utc),
            Ok(at("2026-11-24T00:00:00Z"))
        );
        assert_eq!(parse("2h", now, &utc), Ok(at("2026-11-24T18:00:00Z")));
        assert_eq!(parse("90m", now, &utc), Ok(at("2026-11-24T18:30:00Z")));
        assert!(parse("yesterday-ish", now, &utc).is_err());
        assert!(parse("", now, &utc).is_err());
    }
}
