//! The CDR reader's errors. None of them carries a password.

/// What went wrong reading the CDR source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `[cdr]` configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The CDR database could not be reached or answered with an error.
    #[error("CDR database {url}: {source}")]
    Database {
        /// The URL, password redacted.
        url: String,
        /// What the driver said (reduced to what is safe to log).
        source: store::Error,
    },
    /// The CDR table or one of its columns is missing.
    #[error("CDR table {table} in {url}: {detail}")]
    Schema {
        /// The table.
        table: String,
        /// The URL, password redacted.
        url: String,
        /// What is missing.
        detail: String,
    },
    /// `Master.csv` could not be read.
    #[error("CDR file {path}: {detail}")]
    Csv {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

/// `Result` with the CDR reader's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
