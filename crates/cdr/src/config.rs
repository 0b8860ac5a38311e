//! The `[cdr]` section of callwatch's configuration.
//!
//! ```toml
//! [cdr]
//! url = "mysql://callwatch@127.0.0.1/asteriskcdrdb"
//! password_env = "CDR_PASSWORD"     # or password_file = "/etc/callwatch/cdr.secret"
//! table = "cdr"
//! timezone = "Europe/Berlin"         # default: [database] timezone
//!
//! [cdr.columns]
//! start = "calldate"
//! end = "end"                        # only when the table has one
//! ```
//!
//! or, for Asterisk's `cdr_csv`: `[cdr] csv = "/var/log/asterisk/cdr-csv/Master.csv"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use store::DatabaseUrl;

use crate::error::Error;

/// Default table name (FreePBX's `asteriskcdrdb.cdr`).
pub const DEFAULT_TABLE: &str = "cdr";
/// Default tolerance around the evidence's bounds.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(2);
/// Default: recent closes are looked at again for a CDR that arrived late during this long.
pub const DEFAULT_RECHECK_WITHIN: Duration = Duration::from_secs(3600);
/// Default: how often the pass over recent closes runs.
pub const DEFAULT_RECHECK_EVERY: Duration = Duration::from_secs(60);
/// Default: how long a query of the CDR source may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[cdr]` table: where Asterisk's CDRs are, read-only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrConfig {
    /// `sqlite://PATH`, `postgres://…` or `mysql://…` of the CDR database (never written).
    pub url: Option<DatabaseUrl>,
    /// Environment variable holding the CDR database's password (put into `url` when connecting).
    pub password_env: Option<String>,
    /// File holding the CDR database's password (first line; put into `url` when connecting).
    pub password_file: Option<PathBuf>,
    /// The CDR table (`table` or `schema.table`).
    pub table: String,
    /// IANA timezone of the CDR's timestamps (default: `[database] timezone`).
    pub timezone: Option<String>,
    /// Asterisk's `Master.csv` instead of a table.
    pub csv: Option<PathBuf>,
    /// Column names of the table.
    pub columns: CdrColumns,
    /// Tolerance around the evidence's window `[ended_after, ended_before]` (whole-second CDR times).
    #[serde(with = "humantime_serde")]
    pub skew: Duration,
    /// A close is looked at again for a CDR that arrived after it (batch mode) during this long.
    #[serde(with = "humantime_serde")]
    pub recheck_within: Duration,
    /// How often that pass over recent closes runs.
    #[serde(with = "humantime_serde")]
    pub recheck_every: Duration,
    /// How long one query of the CDR source may take (connect included) before the close goes on with
    /// the evidence's time.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CdrConfig {
    fn default() -> Self {
        Self {
            url: None,
            password_env: None,
            password_file: None,
            table: DEFAULT_TABLE.to_string(),
            timezone: None,
            csv: None,
            columns: CdrColumns::default(),
            skew: DEFAULT_SKEW,
            recheck_within: DEFAULT_RECHECK_WITHIN,
            recheck_every: DEFAULT_RECHECK_EVERY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `[cdr.columns]`: the CDR table's column names (FreePBX's by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrColumns {
    /// The channel's Uniqueid.
    pub uniqueid: String,
    /// The call's Linkedid.
    pub linkedid: String,
    /// The channel's name (to pick a Linkedid's record for a row's channel).
    pub channel: String,
    /// When the CDR started (FreePBX: `calldate`).
    pub start: String,
    /// Seconds from start to end.
    pub duration: String,
    /// Seconds from answer to end.
    pub billsec: String,
    /// When the channel hung up, if the table has such a column (`""`: none; the end is start + duration).
    pub end: String,
}

impl Default for CdrColumns {
    fn default() -> Self {
        Self {
            uniqueid: "uniqueid".into(),
            linkedid: "linkedid".into(),
            channel: "channel".into(),
            start: "calldate".into(),
            duration: "duration".into(),
            billsec: "billsec".into(),
            end: String::new(),
        }
    }
}

impl CdrConfig {
    /// Checks what can be checked without connecting: exactly one of `url` and `csv`, identifiers, timezone.
    pub fn validate(&self, default_timezone: &str) -> Result<(), Error> {
        match (&self.url, &self.csv) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "[cdr] has both url and csv: give one CDR source".into(),
                ))
            }
            (None, None) => {
                return Err(Error::Config(
                    "[cdr] needs url (the CDR database) or csv (the path of Master.csv)".into(),
                ))
            }
            (Some(url), None) => {
                store::Dialect::from_url(url.expose())
                    .map_err(|e| Error::Config(format!("[cdr] url: {e}")))?;
                store::Ident::table(&self.table)
                    .map_err(|e| Error::Config(format!("[cdr] table: {e}")))?;
                for (key, name) in self.columns.named() {
                    if key == "end" && name.is_empty() {
                        continue;
                    }
                    store::Ident::column(name)
                        .map_err(|e| Error::Config(format!("[cdr.columns] {key}: {e}")))?;
                }
            }
            (None, Some(_)) => {}
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err(Error::Config(
                "[cdr] has both password_env and password_file: give one".into(),
            ));
        }
        store::TimeCodec::new(self.timezone(default_timezone))
            .map_err(|e| Error::Config(format!("[cdr] timezone: {e}")))?;
        Ok(())
    }

    /// The CDR timestamps' timezone: `timezone`, else `default` (the `[database]` one).
    pub fn timezone<'a>(&'a self, default: &'a str) -> &'a str {
        self.timezone.as_deref().unwrap_or(default)
    }

    /// The URL to connect with, the password read from `password_env` / `password_file` when set.
    pub fn connect_url(&self) -> Result<DatabaseUrl, Error> {
        let Some(url) = &self.url else {
            return Err(Error::Config("[cdr] has no url".into()));
        };
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), _) => std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "[cdr] password_env: the environment variable {var} is not set"
                ))
            })?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!(
                        "[cdr] password_file: cannot read {}: {}",
                        path.display(),
                        e.kind()
                    ))
                })?;
                text.lines().next().unwrap_or("").trim_end().to_string()
            }
            (None, None) => return Ok(url.clone()),
        };
        let mut parsed = url::Url::parse(url.expose())
            .map_err(|_| Error::Config(format!("[cdr] cannot parse url {}", url.redacted())))?;
        parsed.set_password(Some(&password)).map_err(|_| {
            Error::Config(format!(
                "[cdr] the url {} cannot carry a password",
                url.redacted()
            ))
        })?;
        Ok(DatabaseUrl::new(parsed.to_string()))
    }
}

impl CdrColumns {
    /// Every column by its configuration key.
    pub fn named(&self) -> [(&'static str, &str); 7] {
        [
            ("uniqueid", &self.uniqueid),
            ("linkedid", &self.linkedid),
            ("channel", &self.channel),
            ("start", &self.start),
            ("duration", &self.duration),
            ("billsec", &self.billsec),
            ("end", &self.end),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_freepbx_and_keys_parse() {
        let c: CdrConfig = toml::from_str(
            "url = \"mysql://cdr@db/asteriskcdrdb\"\ntimezone = \"Europe/Berlin\"\nskew = \"3s\"\n\
             [columns]\nend = \"end\"\n",
        )
        .unwrap();
        assert_eq!(c.table, "cdr");
        assert_eq!(c.columns.start, "calldate");
        assert_eq!(c.columns.end, "end");
        assert_eq!(c.skew, Duration::from_secs(3));
        c.validate("UTC").unwrap();
        assert_eq!(c.timezone("UTC"), "Europe/Berlin");
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let none = CdrConfig::default();
        assert!(none
            .validate("UTC")
            .unwrap_err()
            .to_string()
            .contains("url"));
        let both: CdrConfig =
            toml::from_str("url = \"sqlite://x.db\"\ncsv = \"/tmp/Master.csv\"").unwrap();
        assert!(both
            .validate("UTC")
            .unwrap_err()
            .to_string()
            .contains("both"));
        let bad: CdrConfig =
            toml::from_str("url = \"sqlite://x.db\"\n[columns]\nstart = \"call date\"").unwrap();
        assert!(bad
            .validate("UTC")
            .unwrap_err()
            .to_string()
            .contains("start"));
        let tz: CdrConfig =
            toml::from_str("csv = \"/tmp/Master.csv\"\ntimezone = \"Mars/Base\"").unwrap();
        assert!(tz
            .validate("UTC")
            .unwrap_err()
            .to_string()
            .contains("timezone"));
        assert!(toml::from_str::<CdrConfig>("tabel = \"x\"").is_err());
    }

    #[test]
    fn the_password_comes_from_a_file_and_stays_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cdr.secret");
        std::fs::write(&file, "s3cr3t-cdr\n").unwrap();
        let c = CdrConfig {
            url: Some(DatabaseUrl::new("mysql://cdr@db/asteriskcdrdb")),
            password_file: Some(file),
            ..CdrConfig::default()
        };
        let url = c.connect_url().unwrap();
        assert!(url.expose().contains("s3cr3t-cdr"));
        assert!(!format!("{url:?} {url} {c:?}").contains("s3cr3t-cdr"));
    }
}
