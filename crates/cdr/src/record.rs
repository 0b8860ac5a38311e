//! One CDR and what it says about when its channel hung up.

use chrono::{DateTime, Duration, Timelike, Utc};

/// One call detail record, as read from the table or `Master.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrRecord {
    /// The channel's Uniqueid (absent in a `Master.csv` written without `loguniqueid`).
    pub uniqueid: Option<String>,
    /// The call's Linkedid, when the source has it.
    pub linkedid: Option<String>,
    /// The channel's name.
    pub channel: Option<String>,
    /// When the CDR started (`calldate` / `start`).
    pub start: DateTime<Utc>,
    /// Seconds from start to end (whole seconds, or fractional with `hrtime`).
    pub duration: f64,
    /// Seconds from answer to end.
    pub billsec: f64,
    /// When the channel hung up, when the source records it (`end`).
    pub end: Option<DateTime<Utc>>,
}

fn whole(t: DateTime<Utc>) -> bool {
    t.nanosecond() == 0
}

impl CdrRecord {
    /// What the record says about the hang-up instant: `[earliest, latest)`.
    ///
    /// Asterisk truncates its times to whole seconds when it writes them (`calldate`, `end`) and truncates
    /// `duration` = end − start to whole seconds too. So with an `end` the true end is in `[end, end + 1 s)`;
    /// from `start + duration` alone it is in `[start + duration, start + duration + 2 s)`. Fractional values
    /// (`hrtime = yes`) are taken as exact.
    pub fn end_window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        if let Some(end) = self.end {
            let slack = if whole(end) { 1000 } else { 0 };
            return (end, end + Duration::milliseconds(slack));
        }
        let dur_ms = (self.duration.max(0.0) * 1000.0).round() as i64;
        let lo = self.start + Duration::milliseconds(dur_ms);
        let mut slack = 0;
        if whole(self.start) {
            slack += 1000;
        }
        if self.duration.fract() == 0.0 {
            slack += 1000;
        }
        (lo, lo + Duration::milliseconds(slack))
    }

    /// The single best end time: the middle of [`end_window`](Self::end_window).
    pub fn end_estimate(&self) -> DateTime<Utc> {
        let (lo, hi) = self.end_window();
        lo + (hi - lo) / 2
    }

    /// The end as the record states it (the window's start): a record whose stated end lies after "now"
    /// cannot exist yet.
    pub fn stated_end(&self) -> DateTime<Utc> {
        self.end_window().0
    }
}

/// What a call row knows about its channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// The row's Uniqueid.
    pub uniqueid: Option<&'a str>,
    /// The row's Linkedid.
    pub linkedid: Option<&'a str>,
    /// The row's channel name.
    pub channel: Option<&'a str>,
}

/// The records that describe the row's channel: those of its Uniqueid; else the Linkedid's records for the
/// row's channel; else, for a row without a channel, all of the Linkedid's records (the call ended with
/// its last leg).
pub fn matching<'r>(records: &'r [CdrRecord], wanted: &Wanted<'_>) -> Vec<&'r CdrRecord> {
    if let Some(u) = wanted.uniqueid.filter(|u| !u.is_empty()) {
        let by_uniqueid: Vec<&CdrRecord> = records
            .iter()
            .filter(|r| r.uniqueid.as_deref() == Some(u))
            .collect();
        if !by_uniqueid.is_empty() {
            return by_uniqueid;
        }
    }
    let Some(l) = wanted.linkedid.filter(|l| !l.is_empty()) else {
        return Vec::new();
    };
    let of_call = records.iter().filter(|r| r.linkedid.as_deref() == Some(l));
    match wanted.channel.filter(|c| !c.is_empty()) {
        Some(c) => of_call
            .filter(|r| r.channel.as_deref() == Some(c))
            .collect(),
        None => of_call.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 9, s).unwrap()
    }

    fn rec(u: &str, l: &str, ch: &str, start: u32, duration: f64) -> CdrRecord {
        CdrRecord {
            uniqueid: Some(u.into()),
            linkedid: Some(l.into()),
            channel: Some(ch.into()),
            start: at(start),
            duration,
            billsec: duration,
            end: None,
        }
    }

    #[test]
    fn whole_seconds_give_a_two_second_window_and_its_middle() {
        let r = rec("1.1", "1.1", "PJSIP/a-1", 20, 28.0);
        assert_eq!(r.end_window(), (at(48), at(50)));
        assert_eq!(r.end_estimate(), at(49));
        let exact = CdrRecord {
            end: Some(at(48) + Duration::milliseconds(794)),
            ..r.clone()
        };
        assert_eq!(exact.end_estimate(), at(48) + Duration::milliseconds(794));
        let with_end = CdrRecord {
            end: Some(at(48)),
            ..r
        };
        assert_eq!(with_end.end_window(), (at(48), at(49)));
    }

    #[test]
    fn uniqueid_first_then_linkedid_and_channel() {
        let records = vec![
            rec("1.1", "1.1", "PJSIP/caller-1", 20, 30.0),
            rec("1.2", "1.1", "PJSIP/agent-2", 21, 20.0),
            rec("9.9", "9.9", "PJSIP/other-9", 21, 5.0),
        ];
        let w = Wanted {
            uniqueid: Some("1.2"),
            ..Wanted::default()
        };
        assert_eq!(matching(&records, &w), vec![&records[1]]);
        let w = Wanted {
            uniqueid: Some("7.7"),
            linkedid: Some("1.1"),
            channel: Some("PJSIP/agent-2"),
        };
        assert_eq!(matching(&records, &w), vec![&records[1]]);
        let w = Wanted {
            linkedid: Some("1.1"),
            channel: Some("PJSIP/nobody-3"),
            ..Wanted::default()
        };
        assert!(matching(&records, &w).is_empty());
        let w = Wanted {
            linkedid: Some("1.1"),
            ..Wanted::default()
        };
        assert_eq!(matching(&records, &w).len(), 2);
        assert!(matching(&records, &Wanted::default()).is_empty());
    }
}
