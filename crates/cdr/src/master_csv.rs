//! Asterisk's `Master.csv` (cdr_csv), read incrementally as it grows.
//!
//! cdr_csv writes, in this order: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
//! lastdata, start, answer, end, duration, billsec, disposition, amaflags; then `uniqueid` when
//! `loguniqueid = yes`, `userfield` when `loguserfield = yes`, and `peeraccount, linkedid, sequence` when
//! `newcdrcolumns = yes`. Which optional columns a line has is told by its length:
//!
//! | fields | optional columns |
//! | --- | --- |
//! | 16 | none (no Uniqueid: such lines cannot be matched, and `check-config` says to set `loguniqueid`) |
//! | 17 | uniqueid |
//! | 18 | uniqueid, userfield |
//! | 19 | peeraccount, linkedid, sequence (no Uniqueid) |
//! | 20 | uniqueid, peeraccount, linkedid, sequence |
//! | 21 | uniqueid, userfield, peeraccount, linkedid, sequence |
//!
//! Times are `YYYY-MM-DD HH:MM:SS` in the `[cdr] timezone` (`usegmtime = yes`: set it to `UTC`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Duration;
use store::TimeCodec;

use crate::error::{Error, Result};
use crate::record::CdrRecord;
use crate::Check;

/// Records older than this before the newest one read are forgotten (lookups are about recent closes).
const KEEP: Duration = Duration::days(2);

/// `Master.csv`, read-only.
#[derive(Debug)]
pub struct CsvSource {
    path: PathBuf,
    time: TimeCodec,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of the file parsed so far (whole lines).
    offset: u64,
    records: Vec<CdrRecord>,
    /// Lines without a Uniqueid (`loguniqueid = no`), counted for the warning.
    without_uniqueid: u64,
}

/// The field positions of a line with `n` fields: (uniqueid, linkedid).
fn layout(n: usize) -> Option<(Option<usize>, Option<usize>)> {
    match n {
        16 => Some((None, None)),
        17 | 18 => Some((Some(16), None)),
        19 => Some((None, Some(17))),
        20 => Some((Some(16), Some(18))),
        21 => Some((Some(16), Some(19))),
        _ => None,
    }
}

/// Reads one line's fields into a record (`Err`: why the line is not a CDR).
pub(crate) fn parse_line(
    fields: &csv::StringRecord,
    time: &TimeCodec,
) -> std::result::Result<CdrRecord, String> {
    let (uniqueid, linkedid) =
        layout(fields.len()).ok_or_else(|| format!("{} fields", fields.len()))?;
    let get = |i: usize| {
        fields
            .get(i)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let secs = |i: usize| -> std::result::Result<f64, String> {
        let s = get(i).unwrap_or_default();
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{s:?} is not a number of seconds"))
    };
    let start = time
        .decode("start", &get(9).ok_or("no start time")?)
        .map_err(|e| e.to_string())?;
    let end = match get(11) {
        Some(t) => Some(time.decode("end", &t).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(CdrRecord {
        uniqueid: uniqueid.and_then(get),
        linkedid: linkedid.and_then(get),
        channel: get(5),
        start,
        duration: secs(12)?,
        billsec: secs(13)?,
        end,
    })
}

impl CsvSource {
    /// A reader of `path` (read when first looked up; a missing file is not an error until then).
    pub fn open(path: &Path, time: TimeCodec) -> Self {
        Self {
            path: path.to_path_buf(),
            time,
            state: Mutex::new(State::default()),
        }
    }

    /// What this source is.
    pub fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Csv {
            path: self.path.display().to_string(),
            detail: detail.into(),
        }
    }

    /// Reads what was appended since the last read (from the start again when the file shrank: rotated).
    fn catch_up(&self, state: &mut State) -> Result<()> {
        let mut file = std::fs::File::open(&self.path)
            .map_err(|e| self.err(format!("cannot open: {}", e.kind())))?;
        let len = file
            .metadata()
            .map_err(|e| self.err(format!("cannot stat: {}", e.kind())))?
            .len();
        if len < state.offset {
            *state = State::default();
        }
        if len == state.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(state.offset))
            .map_err(|e| self.err(format!("cannot seek: {}", e.kind())))?;
        let mut bytes = Vec::with_capacity((len - state.offset) as usize);
        file.take(len - state.offset)
            .read_to_end(&mut bytes)
            .map_err(|e| self.err(format!("cannot read: {}", e.kind())))?;
        // Only whole lines: the last one may still be being written.
        let Some(last_nl) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let whole = &bytes[..=last_nl];
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(whole);
        for (i, fields) in reader.records().enumerate() {
            let fields = match fields {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "unreadable Master.csv line skipped");
                    continue;
                }
            };
            match parse_line(&fields, &self.time) {
                Ok(r) => {
                    if r.uniqueid.is_none() {
                        state.without_uniqueid += 1;
                    }
                    state.records.push(r);
                }
                Err(detail) => tracing::warn!(
                    file = %self.path.display(),
                    line = i + 1,
                    %detail,
                    "Master.csv line is not a CDR of cdr_csv's standard layout; skipped"
                ),
            }
        }
        state.offset += whole.len() as u64;
        if let Some(newest) = state.records.iter().map(|r| r.stated_end()).max() {
            state.records.retain(|r| r.stated_end() >= newest - KEEP);
        }
        Ok(())
    }

    /// The records of these Uniqueids and Linkedids.
    pub fn lookup(&self, uniqueids: &[&str], linkedids: &[&str]) -> Result<Vec<CdrRecord>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.catch_up(&mut state)?;
        Ok(state
            .records
            .iter()
            .filter(|r| {
                r.uniqueid
                    .as_deref()
                    .is_some_and(|u| uniqueids.contains(&u))
                    || r.linkedid
                        .as_deref()
                        .is_some_and(|l| linkedids.contains(&l))
            })
            .cloned()
            .collect())
    }

    /// `check-config`'s checks: the file is readable, its lines have cdr_csv's layout with a Uniqueid.
    pub fn check(&self) -> Vec<Check> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.catch_up(&mut state) {
            return vec![Check::fail(
                "CDR file readable",
                format!("{e}; set [cdr] csv to the path of cdr_csv's Master.csv (usually /var/log/asterisk/cdr-csv/Master.csv)"),
            )];
        }
        let mut out = vec![Check::pass(
            "CDR file readable",
            format!(
                "{} ({} recent records)",
                self.path.display(),
                state.records.len()
            ),
        )];
        if state.without_uniqueid > 0 {
            out.push(Check::fail(
                "CDR file has Uniqueids",
                format!(
                    "{} records have no uniqueid: set loguniqueid = yes in cdr.conf's [csv] section",
                    state.without_uniqueid
                ),
            ));
        }
        if let Some(r) = state.records.iter().max_by_key(|r| r.stated_end()) {
            out.push(Check::pass(
                "latest CDR",
                format!(
                    "ended {} UTC (read in {}; if that is off by hours, set [cdr] timezone)",
                    r.stated_end().format("%Y-%m-%d %H:%M:%S"),
                    self.time.tz()
                ),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    const LINE_20: &str = "\"\",\"5552020001\",\"2013\",\"inbound\",\"\"\"Caller\"\" <5552020001>\",\"Local/2013@agents-00009395;2\",\"\",\"Dial\",\"PJSIP/2013,30\",\"2026-11-24 13:09:21\",\"2026-11-24 13:09:22\",\"2026-11-24 13:09:50\",29,28,\"ANSWERED\",\"DOCUMENTATION\",\"1795522161.75563\",\"\",\"1795522161.75560\",\"7\"\n";

    #[test]
    fn standard_layouts_are_read_by_their_length() {
        let berlin = TimeCodec::new("Europe/Berlin").unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LINE_20.as_bytes());
        let fields = reader.records().next().unwrap().unwrap();
        let r = parse_line(&fields, &berlin).unwrap();
        assert_eq!(r.uniqueid.as_deref(), Some("1795522161.75563"));
        assert_eq!(r.linkedid.as_deref(), Some("1795522161.75560"));
        assert_eq!(r.channel.as_deref(), Some("Local/2013@agents-00009395;2"));
        assert_eq!(
            r.end,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 12, 9, 50).unwrap())
        );
        assert_eq!(r.duration, 29.0);
        let short = csv::StringRecord::from(vec!["x"; 12]);
        assert!(parse_line(&short, &berlin).is_err());
    }

    #[test]
    fn the_file_is_read_as_it_grows_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        let (first, rest) = LINE_20.split_at(40);
        std::fs::write(&path, first).unwrap();
        let src = CsvSource::open(&path, TimeCodec::new("Europe/Berlin").unwrap());
        assert!(src.lookup(&["1795522161.75563"], &[]).unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, rest.as_bytes()).unwrap();
        let found = src.lookup(&["1795522161.75563"], &[]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(src.lookup(&[], &["1795522161.75560"]).unwrap().len(), 1);
        // Rotated (shorter): read again from the start.
        std::fs::write(&path, "").unwrap();
        assert!(src.lookup(&["1795522161.75563"], &[]).unwrap().is_empty());
        let missing = CsvSource::open(&dir.path().join("nope.csv"), TimeCodec::new("UTC").unwrap());
        let err = missing.lookup(&["1"], &[]).unwrap_err();
        assert!(err.to_string().contains("nope.csv"), "{err}");
    }
}
