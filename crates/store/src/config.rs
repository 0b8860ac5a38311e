//! The `[database]` section of callwatch's configuration: URL, pool, timezone and the table mapping.
//!
//! ```toml
//! [database]
//! url = "postgres://callwatch:secret@db/app"
//! max_connections = 5
//! timezone = "Europe/Berlin"
//!
//! [database.mapping]
//! table = "app.phone_calls"
//! id_type = "integer"            # or "string"
//!
//! [database.mapping.columns]
//! uniqueid = "ast_uniqueid"
//! status = ""                    # "" = the table has no such column
//!
//! [database.mapping.status_values]
//! in_progress = "active"
//! completed = "done"
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::Error;
use crate::ident::Ident;

/// Default pool size.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 5;
/// Default time to wait for a pooled connection (also the connect timeout).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default per-statement timeout (PostgreSQL `statement_timeout`, MySQL `max_statement_time`, SQLite busy timeout).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timezone in which timestamps are stored.
pub const DEFAULT_TIMEZONE: &str = "UTC";
/// Default audit table name.
pub const DEFAULT_AUDIT_TABLE: &str = "call_closures";
/// Default number of rows per set-based statement in [`crate::Store::close`].
pub const DEFAULT_BATCH_CHUNK: usize = 1000;

/// A database URL whose password never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its secret; only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password (and `password=` query parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DatabaseUrl)
    }
}

/// Replaces the password of a URL (userinfo and `password=`/`pass=` query parameters) with `***`.
///
/// Unparseable input is reduced to its scheme, so nothing secret can leak through a typo.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret =
                        matches!(k.to_ascii_lowercase().as_str(), "password" | "pass" | "pwd");
                    (
                        k.into_owned(),
                        if secret {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => match raw.split_once(':') {
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{scheme}:<unparseable URL>")
            }
            _ => "<unparseable URL>".to_string(),
        },
    }
}

/// The `[database]` table of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created if missing), `sqlite::memory:`, `postgres://…` or `mysql://…`.
    pub url: DatabaseUrl,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection (connect and pool acquire), e.g. `"10s"`.
    #[serde(with = "duration_str")]
    pub acquire_timeout: Duration,
    /// Per-statement timeout, e.g. `"30s"`.
    #[serde(with = "duration_str")]
    pub statement_timeout: Duration,
    /// IANA timezone in which the table's timestamps are written (`YYYY-MM-DD HH:MM:SS`, no zone).
    pub timezone: String,
    /// Environment variable holding the database password (e.g. Laravel's `DB_PASSWORD`), put into `url` when
    /// connecting; the password then never needs to be written in the configuration.
    pub password_env: Option<String>,
    /// MySQL/MariaDB only: the session `time_zone` to set (`"+00:00"`, `"SYSTEM"`, a named zone), as Laravel's
    /// `connections.mysql.timezone`. Unset (the default), sessions keep the server's zone, as Laravel's do:
    /// `TIMESTAMP` columns then read and write the same local times the application does.
    pub session_time_zone: Option<String>,
    /// When closing a row that already has a non-NULL `talk_seconds`, overwrite it (default: keep it).
    pub overwrite_talk_seconds: bool,
    /// Rows per set-based statement when closing.
    pub batch_chunk: usize,
    /// Table and column names.
    pub mapping: Mapping,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            timezone: DEFAULT_TIMEZONE.to_string(),
            session_time_zone: None,
            password_env: None,
            overwrite_talk_seconds: false,
            batch_chunk: DEFAULT_BATCH_CHUNK,
            mapping: Mapping::default(),
        }
    }
}

impl DatabaseConfig {
    /// A default configuration for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: DatabaseUrl::new(url),
            ..Self::default()
        }
    }

    /// The URL to connect with: `url`, with the password read from `password_env` when that is set.
    pub fn connect_url(&self) -> Result<DatabaseUrl, Error> {
        let Some(var) = &self.password_env else {
            return Ok(self.url.clone());
        };
        let password = std::env::var(var).map_err(|_| {
            Error::Config(format!(
                "[database] password_env: the environment variable {var} is not set"
            ))
        })?;
        let mut url = url::Url::parse(self.url.expose()).map_err(|_| {
            Error::Config(format!("cannot parse database URL {}", self.url.redacted()))
        })?;
        url.set_password(Some(&password)).map_err(|_| {
            Error::Config(format!(
                "[database] password_env: the URL {} cannot carry a password",
                self.url.redacted()
            ))
        })?;
        Ok(DatabaseUrl::new(url.to_string()))
    }

    /// Checks everything that can be checked without a database: URL scheme, timezone, identifiers, sizes.
    pub fn validate(&self) -> Result<(), Error> {
        let dialect = crate::dialect::Dialect::from_url(self.url.expose())?;
        if self.password_env.is_some() && dialect == crate::dialect::Dialect::Sqlite {
            return Err(Error::Config(
                "password_env applies to PostgreSQL and MySQL/MariaDB URLs only".into(),
            ));
        }
        if let Some(zone) = &self.session_time_zone {
            if dialect != crate::dialect::Dialect::MySql {
                return Err(Error::Config(
                    "session_time_zone applies to MySQL/MariaDB only (PostgreSQL sessions use `timezone`)"
                        .into(),
                ));
            }
            if !valid_session_time_zone(zone) {
                return Err(Error::Config(format!(
                    "session_time_zone {zone:?} is not an offset like \"+01:00\", \"SYSTEM\" or a zone name"
                )));
            }
        }
        self.timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| Error::Config(format!("unknown timezone {:?}", self.timezone)))?;
        if self.max_connections == 0 {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        if self.batch_chunk == 0 {
            return Err(Error::Config("batch_chunk must be at least 1".into()));
        }
        self.mapping.resolve().map(|_| ())
    }
}

/// A MySQL `time_zone` value that is safe to quote: `+HH:MM` / `-HH:MM`, `SYSTEM` or a zone name such as
/// `Europe/Berlin` (letters, digits, `_`, `/`, `+`, `-`).
fn valid_session_time_zone(zone: &str) -> bool {
    let b = zone.as_bytes();
    let offset = b.len() == 6
        && matches!(b[0], b'+' | b'-')
        && b[1..3].iter().all(u8::is_ascii_digit)
        && b[3] == b':'
        && b[4..6].iter().all(u8::is_ascii_digit);
    let name = !zone.is_empty()
        && zone.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_/+-".contains(c));
    offset || name
}

/// Whether the table's primary key is an integer or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// A (big) integer, e.g. Laravel's `id()`.
    #[default]
    Integer,
    /// A string, e.g. a UUID.
    String,
}

/// Which table and columns hold the calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    /// The calls table (`table` or `schema.table`).
    pub table: String,
    /// The audit table callwatch owns (created by `migrate` under its default name).
    pub audit_table: String,
    /// Integer or string ids.
    pub id_type: IdType,
    /// Column names.
    pub columns: Columns,
    /// Values written to / understood in the status column.
    pub status_values: StatusValues,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            table: "calls".into(),
            audit_table: DEFAULT_AUDIT_TABLE.into(),
            id_type: IdType::Integer,
            columns: Columns::default(),
            status_values: StatusValues::default(),
        }
    }
}

/// Column names of the calls table. For optional columns an empty string means "this table has no such column".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    /// Primary key (required).
    pub id: String,
    /// Asterisk `Uniqueid` of the call's channel.
    pub uniqueid: String,
    /// Asterisk `Linkedid`.
    pub linkedid: String,
    /// Channel name, e.g. `PJSIP/101-00000001`.
    pub channel: String,
    /// Agent extension.
    pub extension: String,
    /// Caller number.
    pub caller: String,
    /// Asterisk server name (NULL = the default server).
    pub server: String,
    /// Status column (`ringing`/`in_progress`/`completed`…).
    pub status: String,
    /// When the call started ringing.
    pub started_at: String,
    /// When it was answered (required).
    pub answered_at: String,
    /// When it ended (required).
    pub ended_at: String,
    /// Hangup cause text.
    pub hangup_cause: String,
    /// Talk time in seconds.
    pub talk_seconds: String,
    /// Row creation time.
    pub created_at: String,
    /// Row update time (set on every write).
    pub updated_at: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            id: "id".into(),
            uniqueid: "uniqueid".into(),
            linkedid: "linkedid".into(),
            channel: "channel".into(),
            extension: "extension".into(),
            caller: "caller".into(),
            server: "server".into(),
            status: "status".into(),
            started_at: "started_at".into(),
            answered_at: "answered_at".into(),
            ended_at: "ended_at".into(),
            hangup_cause: "hangup_cause".into(),
            talk_seconds: "talk_seconds".into(),
            created_at: "created_at".into(),
            updated_at: "updated_at".into(),
        }
    }
}

/// Status values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusValues {
    /// The value of an answered, running call.
    pub in_progress: String,
    /// The value callwatch writes when it closes a call.
    pub completed: String,
}

impl Default for StatusValues {
    fn default() -> Self {
        Self {
            in_progress: "in_progress".into(),
            completed: "completed".into(),
        }
    }
}

/// A [`Mapping`] with every identifier validated.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedMapping {
    pub table: Ident,
    pub audit_table: Ident,
    pub id_type: IdType,
    pub id: Ident,
    pub uniqueid: Option<Ident>,
    pub linkedid: Option<Ident>,
    pub channel: Option<Ident>,
    pub extension: Option<Ident>,
    pub caller: Option<Ident>,
    pub server: Option<Ident>,
    pub status: Option<Ident>,
    pub started_at: Option<Ident>,
    pub answered_at: Ident,
    pub ended_at: Ident,
    pub hangup_cause: Option<Ident>,
    pub talk_seconds: Option<Ident>,
    pub created_at: Option<Ident>,
    pub updated_at: Option<Ident>,
    pub status_values: StatusValues,
}

impl ResolvedMapping {
    /// Every mapped column as (role, column).
    pub fn all_columns(&self) -> Vec<(&'static str, &Ident)> {
        let mut v = vec![
            ("id", &self.id),
            ("answered_at", &self.answered_at),
            ("ended_at", &self.ended_at),
        ];
        let optional = [
            ("uniqueid", &self.uniqueid),
            ("linkedid", &self.linkedid),
            ("channel", &self.channel),
            ("extension", &self.extension),
            ("caller", &self.caller),
            ("server", &self.server),
            ("status", &self.status),
            ("started_at", &self.started_at),
            ("hangup_cause", &self.hangup_cause),
            ("talk_seconds", &self.talk_seconds),
            ("created_at", &self.created_at),
            ("updated_at", &self.updated_at),
        ];
        for (role, col) in optional {
            if let Some(c) = col {
                v.push((role, c));
            }
        }
        v
    }
}

impl Mapping {
    /// Validates every identifier.
    pub(crate) fn resolve(&self) -> Result<ResolvedMapping, Error> {
        let c = &self.columns;
        let req = |role: &str, name: &str| {
            if name.is_empty() {
                Err(Error::Config(format!(
                    "column {role} is required and cannot be empty"
                )))
            } else {
                Ident::column(name)
            }
        };
        let opt = |name: &str| {
            if name.is_empty() {
                Ok(None)
            } else {
                Ident::column(name).map(Some)
            }
        };
        let status = opt(&c.status)?;
        if status.is_some()
            && (self.status_values.in_progress.is_empty()
                || self.status_values.completed.is_empty())
        {
            return Err(Error::Config(
                "status_values must not be empty when a status column is mapped".into(),
            ));
        }
        let resolved = ResolvedMapping {
            table: Ident::table(&self.table)?,
            audit_table: Ident::table(&self.audit_table)?,
            id_type: self.id_type,
            id: req("id", &c.id)?,
            uniqueid: opt(&c.uniqueid)?,
            linkedid: opt(&c.linkedid)?,
            channel: opt(&c.channel)?,
            extension: opt(&c.extension)?,
            caller: opt(&c.caller)?,
            server: opt(&c.server)?,
            status,
            started_at: opt(&c.started_at)?,
            answered_at: req("answered_at", &c.answered_at)?,
            ended_at: req("ended_at", &c.ended_at)?,
            hangup_cause: opt(&c.hangup_cause)?,
            talk_seconds: opt(&c.talk_seconds)?,
            created_at: opt(&c.created_at)?,
            updated_at: opt(&c.updated_at)?,
            status_values: self.status_values.clone(),
        };
        let mut seen = std::collections::HashSet::new();
        for (role, col) in resolved.all_columns() {
            if !seen.insert(col.name().to_ascii_lowercase()) {
                return Err(Error::Config(format!(
                    "column {:?} (for {role}) is mapped twice",
                    col.name()
                )));
            }
        }
        Ok(resolved)
    }
}

/// Durations as humane strings (`"500ms"`, `"10s"`, `"2m"`) or plain seconds.
mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?} (use e.g. \"500ms\", \"10s\", \"2m\")"
                ))
            }),
        }
    }

    pub fn parse(t: &str) -> Option<Duration> {
        let t = t.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().ok()?;
        match unit.trim() {
            "ms" => Some(Duration::from_millis(n)),
            "" | "s" => Some(Duration::from_secs(n)),
            "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_everywhere() {
        let u = DatabaseUrl::new("postgres://cw:s3cr3t@db:5432/app?sslmode=disable&password=other");
        for shown in [format!("{u:?}"), u.to_string(), u.redacted()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains("other"), "{shown}");
            assert!(shown.contains("db:5432"), "{shown}");
        }
        assert_eq!(
            redact_url("mysql://root@localhost/test"),
            "mysql://root@localhost/test"
        );
        assert_eq!(
            redact_url("postgres://a:pw@[bad"),
            "postgres:<unparseable URL>"
        );
    }

    #[test]
    fn parses_toml_with_defaults_and_overrides() {
        let cfg: DatabaseConfig = toml::from_str(
            r#"
            url = "sqlite://x.db"
            acquire_timeout = "250ms"
            statement_timeout = 7
            timezone = "Europe/Berlin"
            [mapping]
            table = "app.phone_calls"
            id_type = "string"
            [mapping.columns]
            status = ""
            uniqueid = "ast_uid"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.acquire_timeout, Duration::from_millis(250));
        assert_eq!(cfg.statement_timeout, Duration::from_secs(7));
        assert_eq!(cfg.max_connections, DEFAULT_MAX_CONNECTIONS);
        cfg.validate().unwrap();
        let m = cfg.mapping.resolve().unwrap();
        assert!(m.status.is_none());
        assert_eq!(m.uniqueid.as_ref().unwrap().name(), "ast_uid");
        assert_eq!(m.table.schema(), Some("app"));
        assert_eq!(m.id_type, IdType::String);
    }

    #[test]
    fn rejects_bad_configs() {
        let mut cfg = DatabaseConfig::new("sqlite://x.db");
        cfg.timezone = "Mars/Olympus".into();
        assert!(cfg.validate().is_err());
        let mut cfg = DatabaseConfig::new("sqlite://x.db");
        cfg.mapping.columns.extension = "ext; drop table calls".into();
        assert!(cfg.validate().is_err());
        let mut cfg = DatabaseConfig::new("sqlite://x.db");
        cfg.mapping.columns.ended_at = String::new();
        assert!(cfg.validate().is_err());
        let mut cfg = DatabaseConfig::new("sqlite://x.db");
        cfg.mapping.columns.caller = "extension".into();
        assert!(
            cfg.validate().is_err(),
            "a column mapped twice must be rejected"
        );
        assert!(DatabaseConfig::new("oracle://x").validate().is_err());
        assert!(toml::from_str::<DatabaseConfig>("acquire_timeout = \"ten\"").is_err());
        assert!(toml::from_str::<DatabaseConfig>("unknown_key = 1").is_err());
    }

    #[test]
    fn password_env_goes_into_the_url_and_never_into_errors() {
        let mut cfg = DatabaseConfig::new("mysql://app@db.example:3306/app");
        cfg.password_env = Some("CALLWATCH_TEST_DB_PASSWORD_UNSET".into());
        let err = cfg.connect_url().unwrap_err().to_string();
        assert!(
            err.contains("CALLWATCH_TEST_DB_PASSWORD_UNSET is not set"),
            "{err}"
        );
        cfg.password_env = Some("CALLWATCH_TEST_DB_PASSWORD".into());
        std::env::set_var("CALLWATCH_TEST_DB_PASSWORD", "p@ss:w/rd");
        let url = cfg.connect_url().unwrap();
        assert_eq!(
            url.expose(),
            "mysql://app:p%40ss%3Aw%2Frd@db.example:3306/app"
        );
        assert!(!url.redacted().contains("rd"), "{}", url.redacted());
        let mut cfg = DatabaseConfig::new("sqlite://x.db");
        cfg.password_env = Some("CALLWATCH_TEST_DB_PASSWORD".into());
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn session_time_zone_is_checked() {
        let mut cfg = DatabaseConfig::new("mysql://root@localhost/app");
        assert_eq!(cfg.session_time_zone, None, "the server's zone by default");
        for ok in ["+00:00", "-05:30", "SYSTEM", "Europe/Berlin", "Etc/GMT+1"] {
            cfg.session_time_zone = Some(ok.into());
            cfg.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "+1:00", "UTC'; DROP TABLE calls; --", "+01:00:00", "1"] {
            cfg.session_time_zone = Some(bad.into());
            assert!(cfg.validate().is_err(), "{bad:?} accepted");
        }
        let mut cfg = DatabaseConfig::new("postgres://x/y");
        cfg.session_time_zone = Some("+00:00".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("MySQL/MariaDB only"), "{err}");
    }
}
