//! Timestamps as Laravel stores them: `YYYY-MM-DD HH:MM:SS`, no zone, in a configured timezone.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::Error;

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Converts between UTC instants and the table's naive local timestamps.
#[derive(Debug, Clone, Copy)]
pub struct TimeCodec {
    tz: Tz,
}

impl TimeCodec {
    /// A codec for the IANA timezone `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let tz = name
            .parse::<Tz>()
            .map_err(|_| Error::Config(format!("unknown timezone {name:?}")))?;
        Ok(Self { tz })
    }

    /// The timezone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The stored form of `at` (truncated to whole seconds).
    pub fn encode(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.tz).format(FORMAT).to_string()
    }

    /// `at` truncated to whole seconds, i.e. exactly what [`encode`](Self::encode) then [`decode`](Self::decode) gives back
    /// (except in the repeated hour of a DST change, see there).
    pub fn truncate(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
    }

    /// Reads a stored timestamp (`YYYY-MM-DD HH:MM:SS`, also accepting a `T` separator and fractional seconds).
    ///
    /// A local time that occurs twice (autumn DST change) is read as the earlier instant; one that does not
    /// exist (spring gap) is read as if the clock had not jumped (shifted by the gap).
    pub fn decode(&self, column: &str, text: &str) -> Result<DateTime<Utc>, Error> {
        let naive = parse_naive(text).ok_or_else(|| Error::Decode {
            column: column.to_string(),
            detail: format!("{text:?} is not a YYYY-MM-DD HH:MM:SS timestamp"),
        })?;
        Ok(match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
            LocalResult::None => {
                // In a gap: interpret with the offset in force just before it.
                let before = naive - chrono::Duration::hours(3);
                let offset = match self.tz.from_local_datetime(&before) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => *t.offset(),
                    LocalResult::None => {
                        return Err(Error::Decode {
                            column: column.to_string(),
                            detail: format!("{text:?} does not exist in {}", self.tz),
                        })
                    }
                };
                use chrono::Offset;
                Utc.from_utc_datetime(&(naive - offset.fix()))
            }
        })
    }

    /// Reads an optional stored timestamp.
    pub fn decode_opt(
        &self,
        column: &str,
        text: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        text.map(|t| self.decode(column, t)).transpose()
    }
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(n);
        }
        if fmt == "%Y-%m-%d" {
            if let Ok(d) = chrono::NaiveDate::parse_from_str(t, fmt) {
                return d.and_hms_opt(0, 0, 0);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_utc_and_berlin() {
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 5).unwrap()
            + chrono::Duration::milliseconds(700);
        let utc = TimeCodec::new("UTC").unwrap();
        assert_eq!(utc.encode(at), "2026-07-01 10:00:05");
        assert_eq!(
            utc.decode("x", "2026-07-01 10:00:05").unwrap(),
            utc.truncate(at)
        );
        let berlin = TimeCodec::new("Europe/Berlin").unwrap();
        assert_eq!(berlin.encode(at), "2026-07-01 12:00:05");
        assert_eq!(
            berlin.decode("x", "2026-07-01 12:00:05").unwrap(),
            utc.truncate(at)
        );
        assert_eq!(
            berlin.decode("x", "2026-07-01T12:00:05.123").unwrap(),
            utc.truncate(at) + chrono::Duration::milliseconds(123)
        );
    }

    #[test]
    fn dst_edges_do_not_fail() {
        let berlin = TimeCodec::new("Europe/Berlin").unwrap();
        // 2026-10-25 02:30 happens twice: take the earlier (CEST, UTC+2).
        assert_eq!(
            berlin.decode("x", "2026-10-25 02:30:00").unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
        );
        // 2026-03-29 02:30 does not exist: read with the winter offset (UTC+1).
        assert_eq!(
            berlin.decode("x", "2026-03-29 02:30:00").unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let utc = TimeCodec::new("UTC").unwrap();
        for bad in [
            "",
            "yesterday",
            "2026-13-01 00:00:00",
            "0000-00-00 00:00:00",
            "2026-01-01 25:00:00",
        ] {
            assert!(utc.decode("answered_at", bad).is_err(), "{bad:?}");
        }
        assert!(TimeCodec::new("Nowhere/Special").is_err());
    }
}
