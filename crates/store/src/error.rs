//! The store's one error type.

use std::fmt;

/// A store operation failed.
///
/// Messages never contain a database password: URLs are redacted before they are put into an error, and
/// driver errors are rendered from their message only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (bad URL, unknown timezone, bad identifier, …).
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The configured mapping does not match the live table.
    #[error("the column mapping does not match the database: {0}")]
    Mapping(String),
    /// The database could not be reached or the connection broke (retry with backoff).
    #[error("database unavailable ({context}): {source}")]
    Unavailable {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: DbError,
    },
    /// The database answered with an error (a bug in the SQL, a constraint, a type mismatch…).
    #[error("database error ({context}): {source}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: DbError,
    },
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// A value read from the database could not be understood (e.g. a malformed timestamp).
    #[error("unexpected value in column {column}: {detail}")]
    Decode {
        /// The column (as mapped).
        column: String,
        /// What was wrong.
        detail: String,
    },
    /// The single-instance lock this store writes under was lost (its connection dropped, or its lease
    /// was taken over). Writes stop until [`crate::InstanceLock::reacquire`] succeeds.
    #[error(
        "the instance lock {0:?} is no longer held; writes are stopped until it is re-acquired"
    )]
    LockLost(String),
}

impl Error {
    /// Whether retrying the same operation later (with backoff) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::LockLost(_) => true,
            Error::Database { source, .. } => source.transient,
            _ => false,
        }
    }

    /// Classifies a driver error met while `context` (for other crates reading a database through sqlx, e.g.
    /// the CDR reader): the message is reduced to what is safe to log.
    pub fn from_driver(context: &'static str, err: sqlx::Error) -> Self {
        Self::sqlx(context, err)
    }

    /// Classifies a driver error.
    pub(crate) fn sqlx(context: &'static str, err: sqlx::Error) -> Self {
        let transient = is_transient(&err);
        let source = DbError {
            message: render(&err),
            transient,
        };
        if is_connection_error(&err) {
            Error::Unavailable { context, source }
        } else {
            Error::Database { context, source }
        }
    }
}

/// A database driver error, reduced to a message that is safe to log.
#[derive(Debug, Clone)]
pub struct DbError {
    message: String,
    transient: bool,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

fn render(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Configuration(_) => "invalid connection options".to_string(),
        sqlx::Error::Io(io) => format!("I/O error: {}", io.kind()),
        sqlx::Error::Tls(_) => "TLS error".to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        sqlx::Error::PoolClosed => "connection pool closed".to_string(),
        other => other.to_string(),
    }
}

/// Errors that mean "the connection is gone or could not be made".
pub(crate) fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // PostgreSQL: admin shutdown / crash shutdown / cannot connect now / connection failures.
            Some("57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" | "08001" | "08004")
            // MySQL: server gone / lost connection / connection killed.
            | Some("2006" | "2013" | "1927" | "70100")
        ),
        _ => false,
    }
}

fn is_transient(err: &sqlx::Error) -> bool {
    if is_connection_error(err) {
        return true;
    }
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // PostgreSQL serialization failure / deadlock / lock timeout / statement timeout,
            // MySQL lock wait timeout / deadlock, SQLite busy / locked.
            matches!(
                code,
                "40001" | "40P01" | "55P03" | "57014" | "1205" | "1213" | "5" | "6" | "517" | "261"
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
