//! The `calls` table on SQLite, PostgreSQL and MySQL/MariaDB: audited, conditional, set-based closes.
//!
//! callwatch never owns the calls table: it belongs to a call-center application. The store therefore
//! - reads only answered, unended rows ([`Store::in_progress`]);
//! - closes a row only `WHERE id = ? AND ended_at IS NULL`, so a row the application closed meanwhile is
//!   left alone and reported as skipped ([`Store::close`]);
//! - writes an audit row (`call_closures`) with the previous and new values in the same transaction, so
//!   every close can be explained and reverted ([`Store::undo`]);
//! - maps onto an existing table with other names ([`Mapping`]), checked against the live table
//!   ([`Store::check_mapping`]).
//!
//! # Layout
//! - [`config`]: the `[database]` configuration, redacted URLs.
//! - `dialect/`: what differs per engine (one module each); `ident`: identifier validation and quoting.
//! - `time`: timestamps as Laravel stores them (naive `YYYY-MM-DD HH:MM:SS` in a configured timezone).
//! - `ops/`: one module per operation (in_progress, close, undo, stats, check, migrate).
//! - `lock`: the single-active-instance lock.
//! - `testing` (feature `testing`): a throw-away database per test on each engine.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), store::Error> {
//! use std::sync::Arc;
//! use store::{CloseReason, CloseRequest, DatabaseConfig, ServerFilter, Store};
//!
//! let clock: clock::SharedClock = Arc::new(clock::SystemClock);
//! let store = Store::connect(&DatabaseConfig::new("sqlite://calls.db"), clock.clone()).await?;
//! store.migrate().await?;
//! let open = store.in_progress(ServerFilter::Default, None).await?;
//! let now = chrono::Utc::now();
//! let batch: Vec<CloseRequest> = open
//!     .iter()
//!     .map(|c| CloseRequest {
//!         call_id: c.id.clone(),
//!         ended_at: now,
//!         hangup_cause: "Normal Clearing".into(),
//!         reason: CloseReason::ChannelGone,
//!         ended_after: Some(c.answered_at),
//!         ended_before: Some(now),
//!         decided_at: now,
//!         ended_at_source: store::EndedAtSource::Evidence,
//!     })
//!     .collect();
//! let outcome = store.close(&batch, "run-1").await?;
//! println!("closed {}, skipped {}", outcome.closed.len(), outcome.skipped.len());
//! # Ok(()) }
//! ```
//!
//! # Behavior
//! - All times in the API are `DateTime<Utc>`; "now" (`updated_at`, `undone_at`) comes from the
//!   [`clock::SharedClock`] so that replays write virtual times.
//! - A database that is down, or a connection that drops mid-batch, gives [`Error::Unavailable`]
//!   (`is_retryable()`); the transaction rolls back, nothing is half-written. Retrying is the caller's job.
//! - Passwords never appear in errors, logs or `Debug` output.
#![warn(missing_docs)]

pub mod config;
mod dialect;
mod error;
mod ident;
mod lock;
mod model;
mod ops;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use config::{Columns, DatabaseConfig, DatabaseUrl, IdType, Mapping, StatusValues};
pub use dialect::Dialect;
pub use error::{DbError, Error, Result};
pub use ident::Ident;
pub use lock::{this_host, InstanceLock};
pub use model::{
    BusyExtension, CallId, CloseOutcome, CloseReason, CloseRequest, ClosedCall, DaemonBeat,
    EndedAtSource, LastRun, MappingCheck, MappingReport, MigrateReport, OpenCall, OpenRows,
    RecordedClose, RowKeys, ServerFilter, Stats, UndoOutcome, UndoSelector, UnreadableRow,
};
pub use ops::{RefineCandidate, RefineOutcome, RefinedCall, Refinement};
pub use time::TimeCodec;

use config::ResolvedMapping;

/// A handle on the calls database. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    dialect: Dialect,
    map: ResolvedMapping,
    time: TimeCodec,
    clock: clock::SharedClock,
    overwrite_talk_seconds: bool,
    batch_chunk: usize,
    url: String,
    /// Locks taken through this store; every write checks, inside its transaction, that they are still held.
    locks: Mutex<Vec<Arc<lock::LockInner>>>,
    #[cfg(feature = "testing")]
    fault: Mutex<Option<testing::Fault>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .field("dialect", &self.inner.dialect)
            .field("table", &self.inner.map.table.to_string())
            .field("timezone", &self.inner.time.tz())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (eagerly: an unreachable database is an [`Error::Unavailable`] now, not later).
    ///
    /// `sqlite://PATH` creates the file if missing; `sqlite::memory:` gives a private in-memory database
    /// (one connection). Session settings: PostgreSQL `TimeZone` = the configured timezone and
    /// `statement_timeout`; MySQL the server's `time_zone` (as the application's sessions have it) unless
    /// `session_time_zone` is set, lock wait and statement timeouts; SQLite WAL and `busy_timeout`.
    pub async fn connect(cfg: &DatabaseConfig, clock: clock::SharedClock) -> Result<Store> {
        Self::open(cfg, clock, true).await
    }

    /// Connects to a database that must already hold callwatch's schema: unlike [`connect`](Self::connect)
    /// it never creates a SQLite file, and it fails with a message saying what is missing and what to do
    /// (run `callwatch migrate`, or fix the mapping) when the calls table, a mapped column, the audit table
    /// or the lock table is not there. Every command but `migrate` (and the throw-away databases of
    /// `replay` and `demo`) opens the database this way.
    pub async fn connect_existing(
        cfg: &DatabaseConfig,
        clock: clock::SharedClock,
    ) -> Result<Store> {
        let store = Self::connect_without_creating(cfg, clock).await?;
        if let Err(err) = store.require_schema().await {
            store.shutdown().await;
            return Err(err);
        }
        Ok(store)
    }

    /// Connects like [`connect`](Self::connect) but never creates a SQLite file (a missing one is an
    /// [`Error::Config`] saying to run `callwatch migrate`); the schema is not checked.
    pub async fn connect_without_creating(
        cfg: &DatabaseConfig,
        clock: clock::SharedClock,
    ) -> Result<Store> {
        Self::open(cfg, clock, false).await
    }

    async fn open(cfg: &DatabaseConfig, clock: clock::SharedClock, create: bool) -> Result<Store> {
        cfg.validate()?;
        sqlx::any::install_default_drivers();
        let map = cfg.mapping.resolve()?;
        let time = TimeCodec::new(&cfg.timezone)?;
        let full_url = cfg.connect_url()?;
        let dialect = Dialect::from_url(full_url.expose())?;
        let redacted = full_url.redacted();
        let (url, memory) = driver_url(dialect, full_url.expose(), create);
        if !create && !memory {
            if let Some(path) = sqlite_file(dialect, full_url.expose()) {
                if !path.exists() {
                    return Err(Error::Config(format!(
                        "the SQLite database {redacted} does not exist (no file {}): run `callwatch migrate` \
                         to create callwatch's schema there, or point --database / DATABASE_URL / [database] url \
                         at the application's database",
                        path.display()
                    )));
                }
            }
        }
        let opts: AnyConnectOptions = url
            .parse()
            .map_err(|_| Error::Config(format!("cannot parse database URL {redacted}")))?;
        let setup = session_setup(
            dialect,
            &cfg.timezone,
            &mysql_time_zone(cfg.session_time_zone.as_deref(), full_url.expose()),
            cfg.statement_timeout,
        );
        let max = if memory { 1 } else { cfg.max_connections };
        let mut pool_opts = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(cfg.acquire_timeout);
        if memory {
            pool_opts = pool_opts
                .idle_timeout(None)
                .max_lifetime(None)
                .min_connections(1);
        }
        let pool = pool_opts
            .after_connect(move |conn, _meta| {
                let setup = setup.clone();
                Box::pin(async move {
                    for stmt in setup.iter() {
                        if let Err(err) = conn.execute(stmt.sql.as_str()).await {
                            if stmt.required {
                                return Err(err);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| Error::sqlx("connecting", e))?;
        tracing::debug!(url = %redacted, dialect = dialect.name(), "database connected");
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                dialect,
                map,
                time,
                clock,
                overwrite_talk_seconds: cfg.overwrite_talk_seconds,
                batch_chunk: cfg.batch_chunk.min(MAX_CHUNK),
                url: redacted,
                locks: Mutex::new(Vec::new()),
                #[cfg(feature = "testing")]
                fault: Mutex::new(None),
            }),
        })
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The database URL with its password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.inner.url
    }

    /// The timestamp codec (configured timezone).
    pub fn time_codec(&self) -> TimeCodec {
        self.inner.time
    }

    /// The underlying pool (the `Any` driver), for tests and tools that need raw SQL.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn shutdown(&self) {
        self.inner.pool.close().await;
    }

    /// The store's clock, which stamps what it writes (heartbeats among them).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }
}

/// Upper bound on rows per statement (bind-parameter limits: SQLite 32766, PostgreSQL/MySQL 65535).
const MAX_CHUNK: usize = 1400;

#[derive(Clone)]
struct SetupStmt {
    sql: String,
    required: bool,
}

/// The MySQL/MariaDB session's `time_zone` statement.
///
/// The driver sets `time_zone = '+00:00'` on every connection (or the URL's `timezone=` parameter). Laravel
/// leaves the session's zone alone unless `connections.mysql.timezone` is set, and `TIMESTAMP` columns convert
/// through the session's zone: reading them through another zone than the application's shifts every time.
/// So: `session_time_zone` when configured; else the URL's `timezone=` (already set by the driver, nothing to
/// do); else back to the server's default, `@@GLOBAL.time_zone`, the zone every other session starts in.
fn mysql_time_zone(configured: Option<&str>, url: &str) -> Option<String> {
    if let Some(zone) = configured {
        // Validated by `DatabaseConfig::validate` (offset, SYSTEM or [A-Za-z0-9_/+-] name): safe to quote.
        return Some(format!("SET time_zone = '{zone}'"));
    }
    let in_url = url::Url::parse(url).is_ok_and(|u| {
        u.query_pairs()
            .any(|(k, _)| k == "timezone" || k == "time-zone")
    });
    (!in_url).then(|| "SET time_zone = @@GLOBAL.time_zone".to_string())
}

fn session_setup(
    dialect: Dialect,
    tz: &str,
    mysql_time_zone: &Option<String>,
    statement_timeout: Duration,
) -> Arc<Vec<SetupStmt>> {
    // `tz` was validated against the IANA database, so it only holds [A-Za-z0-9_/+-].
    let tz: String = tz
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_/+-".contains(*c))
        .collect();
    let ms = statement_timeout.as_millis().max(1);
    let secs = statement_timeout.as_secs().max(1);
    let req = |sql: String| SetupStmt {
        sql,
        required: true,
    };
    let opt = |sql: String| SetupStmt {
        sql,
        required: false,
    };
    Arc::new(match dialect {
        Dialect::Postgres => vec![
            req(format!("SET TIME ZONE '{tz}'")),
            req(format!("SET statement_timeout = {ms}")),
        ],
        Dialect::MySql => mysql_time_zone
            .iter()
            .map(|sql| req(sql.clone()))
            .chain([
                opt(format!("SET SESSION innodb_lock_wait_timeout = {secs}")),
                // MariaDB (seconds) or MySQL (milliseconds, SELECT only): whichever the server knows.
                opt(format!("SET SESSION max_statement_time = {secs}")),
                opt(format!("SET SESSION max_execution_time = {ms}")),
            ])
            .collect(),
        Dialect::Sqlite => vec![
            req(format!("PRAGMA busy_timeout = {ms}")),
            opt("PRAGMA journal_mode = WAL".to_string()),
            opt("PRAGMA synchronous = NORMAL".to_string()),
            // A 10,000-row close dirties one page per row in a large table: with spilling off, its dirty
            // pages stay in memory past the cache size (not written to the WAL mid-transaction and read
            // back) and are let go after the commit. The page cache itself stays at SQLite's 2 MiB per
            // connection: a 64 MiB one filled with the table as it grew, and a long soak's RSS with it
            // (the close took 501 ms with 64 MiB, 499-594 ms with 8 MiB, 516-587 ms with 2 MiB).
            opt(format!("PRAGMA cache_size = -{}", SQLITE_CACHE_KIB)),
            opt("PRAGMA cache_spill = OFF".to_string()),
        ],
    })
}

/// SQLite's page cache per connection, in KiB.
const SQLITE_CACHE_KIB: u32 = 2 * 1024;

/// The URL handed to the driver: SQLite files are created when missing. Returns (url, is_memory).
/// The driver's URL and whether it is an in-memory SQLite database. A SQLite file is opened read-write,
/// and created when missing only if `create` (an explicit `mode=` in the URL is kept as given).
fn driver_url(dialect: Dialect, url: &str, create: bool) -> (String, bool) {
    if dialect != Dialect::Sqlite {
        return (url.to_string(), false);
    }
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if memory || url.contains("mode=") {
        return (url.to_string(), memory);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let mode = if create { "rwc" } else { "rw" };
    (format!("{url}{sep}mode={mode}"), false)
}

/// The file of a `sqlite://PATH` / `sqlite:PATH` URL (None for other engines and in-memory databases).
fn sqlite_file(dialect: Dialect, url: &str) -> Option<std::path::PathBuf> {
    if dialect != Dialect::Sqlite || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database server that accepts connections and never answers (or never accepts): connecting fails
    /// after `acquire_timeout` with a retryable error, it never hangs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connecting_to_a_black_holed_database_times_out() {
        for accept in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hole = tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    if accept {
                        if let Ok((sock, _)) = listener.accept().await {
                            held.push(sock);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            });
            for url in [
                format!("mysql://root@{addr}/app"),
                format!("postgres://postgres@{addr}/app"),
            ] {
                let mut cfg = DatabaseConfig::new(url.clone());
                cfg.acquire_timeout = Duration::from_millis(300);
                let clock: clock::SharedClock = Arc::new(clock::SystemClock);
                let result =
                    tokio::time::timeout(Duration::from_secs(30), Store::connect(&cfg, clock))
                        .await
                        .unwrap_or_else(|_| panic!("{url} (accept={accept}): connect hung"));
                let err = result.unwrap_err();
                assert!(err.is_retryable(), "{url}: {err}");
            }
            hole.abort();
        }
    }

    #[test]
    fn mysql_sessions_keep_the_servers_zone_unless_configured() {
        assert_eq!(
            mysql_time_zone(None, "mysql://root@localhost/app").as_deref(),
            Some("SET time_zone = @@GLOBAL.time_zone"),
            "the driver's +00:00 is undone"
        );
        assert_eq!(
            mysql_time_zone(Some("+02:00"), "mysql://root@localhost/app").as_deref(),
            Some("SET time_zone = '+02:00'")
        );
        assert_eq!(
            mysql_time_zone(None, "mysql://root@localhost/app?timezone=%2B03:00"),
            None,
            "the URL's timezone= is already set by the driver"
        );
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            driver_url(Dialect::Sqlite, "sqlite://a.db", true).0,
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            driver_url(Dialect::Sqlite, "sqlite://a.db?cache=shared", true).0,
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            driver_url(Dialect::Sqlite, "sqlite://a.db?mode=ro", true).0,
            "sqlite://a.db?mode=ro"
        );
        assert!(driver_url(Dialect::Sqlite, "sqlite::memory:", true).1);
        assert_eq!(
            driver_url(Dialect::Postgres, "postgres://x/y", true).0,
            "postgres://x/y"
        );
        assert_eq!(
            driver_url(Dialect::Sqlite, "sqlite://a.db", false).0,
            "sqlite://a.db?mode=rw"
        );
        assert_eq!(
            sqlite_file(Dialect::Sqlite, "sqlite://dir/a.db?mode=rw"),
            Some(std::path::PathBuf::from("dir/a.db"))
        );
        assert_eq!(sqlite_file(Dialect::Sqlite, "sqlite::memory:"), None);
    }
}
