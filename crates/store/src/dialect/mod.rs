//! What differs between SQLite, PostgreSQL and MySQL/MariaDB: placeholders, quoting, casts, time
//! formatting, locking clauses and the set-based UPDATE shape. One module per dialect.

mod mysql;
mod postgres;
mod sqlite;

use crate::error::Error;

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// The dialect of a database URL, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "" => Err(Error::Config(
                "no database URL given (--database, DATABASE_URL or [database] url)".into(),
            )),
            other => Err(Error::Config(format!(
                "unsupported database URL scheme {other:?} (use sqlite://, postgres:// or mysql://)"
            ))),
        }
    }

    /// Lower-case engine name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    pub(crate) fn quote_char(self) -> char {
        match self {
            Dialect::MySql => '`',
            _ => '"',
        }
    }

    /// The `n`-th (1-based) bind placeholder.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            // Positional `?`: callers bind in SQL text order. (SQLite's numbered `?NNN` would free us from
            // that, but looking a numbered parameter up is linear, which makes binding 20,000 of them
            // quadratic: 1.6 s for a 1000-row audit insert.)
            _ => "?".to_string(),
        }
    }

    /// An expression reading `expr` as text (so that the `Any` driver can decode it whatever the column type).
    pub fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// An expression reading `expr` as a 64-bit integer.
    pub(crate) fn as_int(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({expr} AS INTEGER)"),
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
        }
    }

    /// An expression reading the timestamp `expr` as `YYYY-MM-DD HH:MM:SS` text.
    pub fn ts_text(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => sqlite::ts_text(expr),
            Dialect::Postgres => postgres::ts_text(expr),
            Dialect::MySql => mysql::ts_text(expr),
        }
    }

    /// A bound `YYYY-MM-DD HH:MM:SS` text parameter used as a timestamp.
    pub(crate) fn ts_param(self, placeholder: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({placeholder} AS TIMESTAMP)"),
            _ => placeholder.to_string(),
        }
    }

    /// A bound text parameter (PostgreSQL needs to know it is text when it may be NULL).
    pub(crate) fn text_param(self, placeholder: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({placeholder} AS TEXT)"),
            _ => placeholder.to_string(),
        }
    }

    /// A bound integer parameter.
    pub(crate) fn int_param(self, placeholder: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({placeholder} AS BIGINT)"),
            _ => placeholder.to_string(),
        }
    }

    /// The clause that locks selected rows until commit (empty on SQLite, whose write lock covers the file).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            _ => " FOR UPDATE",
        }
    }

    /// Null-safe equality `a` = `b` (NULL equals NULL).
    pub(crate) fn null_safe_eq(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{a} IS {b}"),
            Dialect::Postgres => format!("{a} IS NOT DISTINCT FROM {b}"),
            Dialect::MySql => format!("{a} <=> {b}"),
        }
    }

    /// The statement that opens a write transaction.
    pub(crate) fn begin_write(self) -> Option<&'static str> {
        match self {
            // Take the write lock up front: a deferred transaction that reads first and writes later can fail
            // with SQLITE_BUSY when another connection wrote in between.
            Dialect::Sqlite => Some("BEGIN IMMEDIATE"),
            _ => None,
        }
    }

    /// Set-based UPDATE of `table` from a list of rows.
    ///
    /// `values` are the columns of the derived table `v` (first one is the key compared to `key_col`),
    /// `rows` are already-rendered row tuples of placeholders (without parentheses), `set` is a list of
    /// `(target column, expression over v.* / parameters)`, `extra_where` is ANDed to the match.
    /// The target table is aliased `t`; the derived table `v`.
    pub(crate) fn update_from_values(
        self,
        table: &str,
        key_col: &str,
        values: &[&str],
        rows: &[Vec<String>],
        set: &[(String, String)],
        extra_where: &str,
    ) -> String {
        match self {
            Dialect::Sqlite => {
                sqlite::update_from_values(table, key_col, values, rows, set, extra_where)
            }
            Dialect::Postgres => {
                postgres::update_from_values(table, key_col, values, rows, set, extra_where)
            }
            Dialect::MySql => {
                mysql::update_from_values(table, key_col, values, rows, set, extra_where)
            }
        }
    }
}

/// Builds SQL text with numbered placeholders alongside its arguments.
pub(crate) struct SqlBuilder<'q> {
    pub dialect: Dialect,
    pub sql: String,
    n: usize,
    pub args: sqlx::any::AnyArguments<'q>,
}

impl<'q> SqlBuilder<'q> {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            n: 0,
            args: Default::default(),
        }
    }

    /// Appends raw SQL.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// Binds a value and returns its placeholder (without appending it).
    pub fn bind<T>(&mut self, value: T) -> String
    where
        T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::Arguments;
        self.n += 1;
        // Encoding into AnyArguments only fails for types Any does not support, which we never bind.
        let _ = self.args.add(value);
        self.dialect.placeholder(self.n)
    }

    /// Binds a text value (NULL-safe on PostgreSQL).
    pub fn text(&mut self, value: Option<String>) -> String {
        let p = self.bind(value);
        self.dialect.text_param(&p)
    }

    /// Binds an integer value.
    pub fn int(&mut self, value: Option<i64>) -> String {
        let p = self.bind(value);
        self.dialect.int_param(&p)
    }

    /// Binds a timestamp text value.
    pub fn ts(&mut self, value: Option<String>) -> String {
        let p = self.bind(value);
        self.dialect.ts_param(&p)
    }

    /// Consumes the builder.
    pub fn build(self) -> (String, sqlx::any::AnyArguments<'q>) {
        (self.sql, self.args)
    }
}
