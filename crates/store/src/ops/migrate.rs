//! `migrate`: the embedded, per-dialect migrations (`migrations/{sqlite,postgres,mysql}`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use sqlx::migrate::{Migrate, Migration, MigrationSource, Migrator};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::MigrateReport;
use crate::Store;

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");
static MYSQL: Migrator = sqlx::migrate!("../../migrations/mysql");

fn migrator(d: Dialect) -> &'static Migrator {
    match d {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
        Dialect::MySql => &MYSQL,
    }
}

impl Store {
    /// Creates or upgrades callwatch's default schema (`calls` if missing, `call_closures`, and on SQLite
    /// `callwatch_locks`). Idempotent; an existing application table named `calls` is never altered: when it
    /// exists, the migrations run without their statements on `calls` (its `CREATE TABLE` and its indexes),
    /// recorded under the same checksums. `check-config` suggests the index instead.
    pub async fn migrate(&self) -> Result<MigrateReport> {
        let d = self.inner.dialect;
        let calls_existed = !self
            .live_columns(&Ident::table(DEFAULT_TABLE)?)
            .await?
            .is_empty();
        let owned;
        let m = if calls_existed {
            owned = Migrator::new(WithoutTable {
                migrations: migrator(d).iter().cloned().collect(),
                table: DEFAULT_TABLE,
            })
            .await
            .map_err(|e| Error::Migrate(e.to_string()))?;
            &owned
        } else {
            migrator(d)
        };
        let before: HashSet<i64> = {
            let mut conn = self
                .inner
                .pool
                .acquire()
                .await
                .map_err(|e| Error::sqlx("connecting", e))?;
            conn.ensure_migrations_table()
                .await
                .map_err(|e| Error::Migrate(e.to_string()))?;
            conn.list_applied_migrations()
                .await
                .map_err(|e| Error::Migrate(e.to_string()))?
                .into_iter()
                .map(|a| a.version)
                .collect()
        };
        m.run(&self.inner.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => Error::sqlx("migrating", inner),
            other => Error::Migrate(other.to_string()),
        })?;
        let mut report = MigrateReport {
            dialect: d.name().to_string(),
            left_alone: calls_existed.then(|| DEFAULT_TABLE.to_string()),
            ..Default::default()
        };
        for mig in m.iter() {
            if before.contains(&mig.version) {
                report.already_applied += 1;
            } else {
                report
                    .applied
                    .push((mig.version, mig.description.to_string()));
            }
        }
        Ok(report)
    }
}

/// The table the default schema creates when it is missing.
const DEFAULT_TABLE: &str = "calls";

/// Embedded migrations minus their statements on an application's existing table, checksums unchanged.
#[derive(Debug)]
struct WithoutTable {
    migrations: Vec<Migration>,
    table: &'static str,
}

type Resolved = std::result::Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>;

impl MigrationSource<'static> for WithoutTable {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Resolved> + Send + 'static>> {
        let table = self.table;
        let migrations = self
            .migrations
            .into_iter()
            .map(|m| Migration {
                sql: Cow::Owned(without_statements_on(&m.sql, table)),
                ..m
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// `sql` without the statements that create `table` or an index on it (statements end with `;`; the
/// migrations hold no `;` inside literals or comments, see the test).
fn without_statements_on(sql: &str, table: &str) -> String {
    let table = table.to_ascii_uppercase();
    sql.split_inclusive(';')
        .filter(|stmt| {
            let code: Vec<&str> = stmt
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect();
            let words: Vec<String> = code
                .join(" ")
                .replace('(', " ( ")
                .split_whitespace()
                .map(|w| w.trim_matches(['"', '`']).to_ascii_uppercase())
                .collect();
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            let creates_table = w.starts_with(&["CREATE", "TABLE", "IF", "NOT", "EXISTS"])
                && w.get(5) == Some(&table.as_str());
            let index_on_table = w.first() == Some(&"CREATE")
                && w.iter().take(3).any(|x| *x == "INDEX")
                && w.windows(2).any(|p| p[0] == "ON" && p[1] == table);
            !(creates_table || index_on_table)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tables_statements_are_left_out() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            // The first migration creates `calls` among callwatch's own tables; later ones leave it alone.
            for m in migrator(d).iter().take(1) {
                let kept = without_statements_on(&m.sql, "calls");
                let upper = kept.to_ascii_uppercase();
                assert!(!upper.contains("EXISTS CALLS "), "{d:?}: {kept}");
                assert!(!upper.contains(" ON CALLS "), "{d:?}: {kept}");
                assert!(upper.contains("CREATE TABLE IF NOT EXISTS CALL_CLOSURES"));
                assert!(upper.contains("CALL_CLOSURES_RUN_ID_INDEX"));
                // Only `calls` statements are gone; every other statement is kept as written.
                let dropped =
                    m.sql.split_inclusive(';').count() - kept.split_inclusive(';').count();
                let expected = match d {
                    Dialect::MySql => 1,
                    _ => 4,
                };
                assert_eq!(dropped, expected, "{d:?}");
            }
            for m in migrator(d).iter().skip(1) {
                assert_eq!(without_statements_on(&m.sql, "calls"), m.sql, "{d:?}");
            }
        }
    }
}
