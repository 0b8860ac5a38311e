//! `migrate`: the embedded, per-dialect migrations (`migrations/{sqlite,postgres,mysql}`).

use std::collections::HashSet;

use sqlx::migrate::{Migrate, Migrator};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
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
    /// `callwatch_locks`). Idempotent; an existing application table named `calls` is never altered.
    pub async fn migrate(&self) -> Result<MigrateReport> {
        let d = self.inner.dialect;
        let m = migrator(d);
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
