//! Read-only access to Asterisk's call detail records, to learn when a channel really hung up.
//!
//! When callwatch did not see a Hangup (AMI down, Asterisk restarted), it only knows a window in which the
//! call ended. Asterisk itself wrote a CDR when the channel hung up: into a database table (FreePBX's
//! `asteriskcdrdb.cdr`) or into `Master.csv`. This crate reads those, and never writes them.
//!
//! Layout: [`config`] (`[cdr]`), [`record`] (a CDR, its end window, which records describe a row),
//! [`table`] (SQLite/PostgreSQL/MySQL table through a read-only session), [`master_csv`] (cdr_csv's file,
//! read incrementally). [`Source`] is either.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cdr::Error> {
//! let cfg: cdr::CdrConfig = toml::from_str("url = \"mysql://cdr@pbx/asteriskcdrdb\"").unwrap();
//! let source = cdr::Source::open(&cfg, "Europe/Berlin")?;
//! let records = source.lookup(&["1795522161.75563"], &[], None).await?;
//! # Ok(()) }
//! ```
//!
//! It depends on `store` only for its database plumbing (dialects, identifiers, timestamp codec, redacted
//! URLs, safe driver errors); `store` knows nothing of it.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod master_csv;
pub mod record;
pub mod table;

use serde::Serialize;

pub use config::{CdrColumns, CdrConfig};
pub use error::{Error, Result};
pub use record::{matching, CdrRecord, Wanted};

/// A time window `[from, to]`.
pub type Window = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// One check of [`Source::check`] (for `check-config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details, or what to do (never a password).
    pub detail: String,
}

impl Check {
    pub(crate) fn pass(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub(crate) fn fail(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Where the CDRs are.
#[derive(Debug)]
#[non_exhaustive]
pub enum Source {
    /// A CDR table.
    Table(table::TableSource),
    /// `Master.csv`.
    Csv(master_csv::CsvSource),
}

impl Source {
    /// Opens the source `[cdr]` names (lazily: nothing is connected or read yet). `default_timezone`: the
    /// `[database]` timezone, used when `[cdr] timezone` is not set.
    pub fn open(cfg: &CdrConfig, default_timezone: &str) -> Result<Source> {
        cfg.validate(default_timezone)?;
        match &cfg.csv {
            Some(path) => {
                let time = store::TimeCodec::new(cfg.timezone(default_timezone))
                    .map_err(|e| Error::Config(format!("[cdr] {e}")))?;
                Ok(Source::Csv(master_csv::CsvSource::open(path, time)))
            }
            None => Ok(Source::Table(table::TableSource::open(
                cfg,
                default_timezone,
            )?)),
        }
    }

    /// What it is (no password).
    pub fn describe(&self) -> String {
        match self {
            Source::Table(t) => t.describe(),
            Source::Csv(c) => c.describe(),
        }
    }

    /// The records of these Uniqueids and of these Linkedids; with `started`, only those that started within
    /// `[from, to]` (on a table this lets the database use its index on the start column, FreePBX's
    /// `calldate`, instead of scanning a table of years of calls).
    pub async fn lookup(
        &self,
        uniqueids: &[&str],
        linkedids: &[&str],
        started: Option<Window>,
    ) -> Result<Vec<CdrRecord>> {
        if uniqueids.is_empty() && linkedids.is_empty() {
            return Ok(Vec::new());
        }
        let records = match self {
            Source::Table(t) => t.lookup(uniqueids, linkedids, started).await?,
            Source::Csv(c) => c.lookup(uniqueids, linkedids)?,
        };
        Ok(match started {
            Some((from, to)) => records
                .into_iter()
                .filter(|r| r.start >= from - chrono::Duration::seconds(1) && r.start <= to)
                .collect(),
            None => records,
        })
    }

    /// Checks the source for `check-config`.
    pub async fn check(&self) -> Vec<Check> {
        match self {
            Source::Table(t) => t.check().await,
            Source::Csv(c) => c.check(),
        }
    }

    /// Releases connections.
    pub async fn shutdown(&self) {
        if let Source::Table(t) = self {
            t.shutdown().await;
        }
    }
}
