//! A CDR table (FreePBX's `asteriskcdrdb.cdr`, written by cdr_adaptive_odbc / cdr_mysql / cdr_pgsql /
//! cdr_sqlite3_custom) on SQLite, PostgreSQL or MySQL/MariaDB, read through a read-only session.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use store::{Dialect, Ident, TimeCodec};

use crate::config::CdrConfig;
use crate::error::{Error, Result};
use crate::record::CdrRecord;
use crate::Check;

/// Ids per lookup statement.
const CHUNK: usize = 400;

/// The CDR table, read-only.
#[derive(Debug)]
pub struct TableSource {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
    table: Ident,
    columns: Vec<(&'static str, Option<Ident>)>,
    time: TimeCodec,
}

impl TableSource {
    /// Prepares the pool (connections are made when first needed, so an unreachable CDR database never
    /// stops callwatch: closes then keep the evidence's times).
    pub fn open(cfg: &CdrConfig, default_timezone: &str) -> Result<Self> {
        cfg.validate(default_timezone)?;
        sqlx::any::install_default_drivers();
        let full = cfg.connect_url()?;
        let url = full.redacted();
        let dialect = Dialect::from_url(full.expose())
            .map_err(|e| Error::Config(format!("[cdr] url: {e}")))?;
        let tz = cfg.timezone(default_timezone).to_string();
        let time = TimeCodec::new(&tz).map_err(|e| Error::Config(format!("[cdr] {e}")))?;
        let driver_url = match dialect {
            Dialect::Sqlite if !full.expose().contains("mode=") => {
                let sep = if full.expose().contains('?') {
                    '&'
                } else {
                    '?'
                };
                format!("{}{sep}mode=ro", full.expose())
            }
            _ => full.expose().to_string(),
        };
        let opts: AnyConnectOptions = driver_url
            .parse()
            .map_err(|_| Error::Config(format!("[cdr] cannot parse url {url}")))?;
        let setup = session_setup(dialect, &time, cfg.timeout);
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(cfg.timeout)
            .after_connect(move |conn, _meta| {
                let setup = setup.clone();
                Box::pin(async move {
                    for (sql, required) in setup.iter() {
                        if let Err(err) = conn.execute(sql.as_str()).await {
                            if *required {
                                return Err(err);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        let table = Ident::table(&cfg.table).map_err(|e| Error::Config(format!("[cdr] {e}")))?;
        let mut columns = Vec::new();
        for (key, name) in cfg.columns.named() {
            let ident = if name.is_empty() {
                None
            } else {
                Some(Ident::column(name).map_err(|e| Error::Config(format!("[cdr] {e}")))?)
            };
            columns.push((key, ident));
        }
        Ok(Self {
            pool,
            dialect,
            url,
            table,
            columns,
            time,
        })
    }

    /// What this source is (URL without password, table).
    pub fn describe(&self) -> String {
        format!("table {} in {}", self.table, self.url)
    }

    fn column(&self, key: &str) -> Option<&Ident> {
        self.columns
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, c)| c.as_ref())
    }

    fn db_err(&self, context: &'static str, err: sqlx::Error) -> Error {
        Error::Database {
            url: self.url.clone(),
            source: store::Error::from_driver(context, err),
        }
    }

    /// The select list: uniqueid, linkedid, channel, start, duration, billsec, end (all as text).
    fn select_list(&self) -> String {
        let d = self.dialect;
        let text = |key: &str| match self.column(key) {
            Some(c) => d.as_text(&qualified(d, c)),
            None => d.as_text("NULL"),
        };
        let ts = |key: &str| match self.column(key) {
            Some(c) => d.ts_text(&qualified(d, c)),
            None => d.as_text("NULL"),
        };
        [
            text("uniqueid"),
            text("linkedid"),
            text("channel"),
            ts("start"),
            text("duration"),
            text("billsec"),
            ts("end"),
        ]
        .join(", ")
    }

    /// The records of these Uniqueids and Linkedids.
    pub async fn lookup(
        &self,
        uniqueids: &[&str],
        linkedids: &[&str],
        started: Option<crate::Window>,
    ) -> Result<Vec<CdrRecord>> {
        let d = self.dialect;
        let mut out = Vec::new();
        let keys: Vec<(&str, &str)> = uniqueids
            .iter()
            .map(|u| ("uniqueid", *u))
            .chain(linkedids.iter().map(|l| ("linkedid", *l)))
            .collect();
        for part in keys.chunks(CHUNK) {
            let mut n = 0;
            let mut conds = Vec::new();
            for key in ["uniqueid", "linkedid"] {
                let Some(col) = self.column(key) else {
                    continue;
                };
                let ps: Vec<String> = part
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .map(|_| {
                        n += 1;
                        d.placeholder(n)
                    })
                    .collect();
                if !ps.is_empty() {
                    conds.push(format!("{} IN ({})", qualified(d, col), ps.join(", ")));
                }
            }
            if conds.is_empty() {
                continue;
            }
            // The start column compared with local `YYYY-MM-DD HH:MM:SS` text (whole seconds, widened by one).
            let mut range = String::new();
            let mut bounds = Vec::new();
            if let (Some((from, to)), Some(start)) = (started, self.column("start")) {
                let cast = |p: String| match d {
                    Dialect::Postgres => format!("CAST({p} AS TIMESTAMP)"),
                    _ => p,
                };
                let lo = cast(d.placeholder(n + 1));
                let hi = cast(d.placeholder(n + 2));
                range = format!(
                    " AND {col} >= {lo} AND {col} <= {hi}",
                    col = qualified(d, start)
                );
                bounds.push(self.time.encode(from - chrono::Duration::seconds(1)));
                bounds.push(self.time.encode(to + chrono::Duration::seconds(1)));
            }
            let sql = format!(
                "SELECT {} FROM {} AS t WHERE ({}){range}",
                self.select_list(),
                self.table.quoted(d),
                conds.join(" OR ")
            );
            let mut q = sqlx::query(&sql);
            for key in ["uniqueid", "linkedid"] {
                if self.column(key).is_none() {
                    continue;
                }
                for (_, v) in part.iter().filter(|(k, _)| *k == key) {
                    q = q.bind(v.to_string());
                }
            }
            for b in bounds {
                q = q.bind(b);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err("reading CDRs", e))?;
            for row in &rows {
                match self.decode(row) {
                    Ok(r) => out.push(r),
                    Err(detail) => {
                        tracing::warn!(cdr = %self.describe(), %detail, "unreadable CDR skipped")
                    }
                }
            }
        }
        Ok(out)
    }

    fn decode(&self, row: &AnyRow) -> std::result::Result<CdrRecord, String> {
        let text = |i: usize| -> std::result::Result<Option<String>, String> {
            row.try_get::<Option<String>, _>(i)
                .map(|v| v.filter(|s| !s.trim().is_empty()))
                .map_err(|e| e.to_string())
        };
        let secs = |i: usize, name: &str| -> std::result::Result<f64, String> {
            match text(i)? {
                Some(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{name} {s:?} is not a number of seconds")),
                None => Ok(0.0),
            }
        };
        let start_text = text(3)?.ok_or("no start time")?;
        let start = self
            .time
            .decode("start", &start_text)
            .map_err(|e| e.to_string())?;
        let end = match text(6)? {
            Some(t) => Some(self.time.decode("end", &t).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(CdrRecord {
            uniqueid: text(0)?,
            linkedid: text(1)?,
            channel: text(2)?,
            start,
            duration: secs(4, "duration")?,
            billsec: secs(5, "billsec")?,
            end,
        })
    }

    /// `check-config`'s checks: reachable, table present, every configured column present, the latest
    /// record readable.
    pub async fn check(&self) -> Vec<Check> {
        let d = self.dialect;
        let mut out = Vec::new();
        if let Err(e) = sqlx::query("SELECT 1").fetch_one(&self.pool).await {
            out.push(Check::fail(
                "CDR database reachable",
                self.db_err("connecting", e).to_string(),
            ));
            return out;
        }
        out.push(Check::pass("CDR database reachable", self.url.clone()));
        let table = self.table.quoted(d);
        if let Err(e) = sqlx::query(&format!("SELECT 1 FROM {table} WHERE 1 = 0"))
            .fetch_all(&self.pool)
            .await
        {
            let detail = Error::Schema {
                table: self.table.to_string(),
                url: self.url.clone(),
                detail: format!(
                    "cannot be read ({}); set [cdr] table to the table Asterisk writes its CDRs to",
                    store::Error::from_driver("reading the CDR table", e)
                ),
            };
            out.push(Check::fail("CDR table", detail.to_string()));
            return out;
        }
        out.push(Check::pass("CDR table", self.table.to_string()));
        let mut all_present = true;
        for (key, col) in &self.columns {
            let Some(col) = col else { continue };
            // Qualified: SQLite reads an unknown double-quoted name as a string literal.
            let sql = format!("SELECT {} FROM {table} AS t WHERE 1 = 0", qualified(d, col));
            match sqlx::query(&sql).fetch_all(&self.pool).await {
                Ok(_) => out.push(Check::pass(format!("CDR column {key}"), col.to_string())),
                Err(_) => {
                    all_present = false;
                    out.push(Check::fail(
                        format!("CDR column {key}"),
                        format!(
                            "the table {} has no column {col}; set [cdr.columns] {key} to its name{}",
                            self.table,
                            if *key == "end" {
                                " (or remove it: the end is then start + duration)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
        }
        if !all_present {
            return out;
        }
        if let Some(start) = self.column("start") {
            let sql = format!(
                "SELECT {} FROM {table} AS t ORDER BY {} DESC LIMIT 1",
                self.select_list(),
                qualified(d, start)
            );
            match sqlx::query(&sql).fetch_all(&self.pool).await {
                Ok(rows) => match rows.first().map(|r| self.decode(r)) {
                    None => out.push(Check::pass("latest CDR", "the table is empty".to_string())),
                    Some(Ok(r)) => out.push(Check::pass(
                        "latest CDR",
                        format!(
                            "ended {} UTC (read in {}; if that is off by hours, set [cdr] timezone)",
                            r.stated_end().format("%Y-%m-%d %H:%M:%S"),
                            self.time.tz()
                        ),
                    )),
                    Some(Err(detail)) => out.push(Check::fail("latest CDR", detail)),
                },
                Err(e) => out.push(Check::fail(
                    "latest CDR",
                    self.db_err("reading the latest CDR", e).to_string(),
                )),
            }
        }
        out
    }

    /// Closes the pool.
    pub async fn shutdown(&self) {
        self.pool.close().await;
    }
}

/// `t.<column>` quoted (every statement reads the table as `t`). Qualified, a missing column is an error on
/// every engine (SQLite reads an unknown bare `"name"` as a string).
fn qualified(d: Dialect, c: &Ident) -> String {
    format!("t.{}", c.quoted(d))
}

/// Session statements: read-only, the CDR timezone (PostgreSQL), the server's zone (MySQL, whose driver
/// would set +00:00), statement timeouts. `(sql, required)`.
fn session_setup(
    dialect: Dialect,
    time: &TimeCodec,
    timeout: Duration,
) -> std::sync::Arc<Vec<(String, bool)>> {
    let ms = timeout.as_millis().max(1);
    let secs = timeout.as_secs().max(1);
    // The zone was validated against the IANA database: only [A-Za-z0-9_/+-].
    let tz = time.tz().name().to_string();
    std::sync::Arc::new(match dialect {
        Dialect::Postgres => vec![
            ("SET default_transaction_read_only = on".into(), true),
            (format!("SET TIME ZONE '{tz}'"), true),
            (format!("SET statement_timeout = {ms}"), true),
        ],
        Dialect::MySql => vec![
            ("SET SESSION TRANSACTION READ ONLY".into(), true),
            ("SET time_zone = @@GLOBAL.time_zone".into(), true),
            (format!("SET SESSION max_statement_time = {secs}"), false),
            (format!("SET SESSION max_execution_time = {ms}"), false),
        ],
        _ => vec![
            ("PRAGMA query_only = ON".into(), true),
            (format!("PRAGMA busy_timeout = {ms}"), false),
        ],
    })
}
