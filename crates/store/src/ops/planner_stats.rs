//! `ensure_planner_stats`: on PostgreSQL, a calls table that was never analyzed is analyzed once.

use sqlx::Row;

use crate::dialect::{Dialect, SqlBuilder};
use crate::error::{Error, Result};
use crate::Store;

impl Store {
    /// On PostgreSQL, runs `ANALYZE` on the calls table when it has no planner statistics at all
    /// (`pg_class.reltuples < 0`: never vacuumed or analyzed, as right after the table was created or
    /// bulk-loaded, until autovacuum gets to it). Without them PostgreSQL estimates the open rows at one
    /// and joins the id lookups of incremental rounds and closes by a nested loop over every open row
    /// times every id: 37–100 ms for 700 open rows and 250 ids instead of 1–3 ms, and seconds on a busy
    /// server, which let rounds fall behind a busy PBX. Returns whether it analyzed; `false` on the other
    /// engines and when statistics exist. Fails when the statistics cannot be read or the role may not
    /// analyze the table (the caller warns and goes on: the lookups stay correct, only slower).
    pub async fn ensure_planner_stats(&self) -> Result<bool> {
        let d = self.inner.dialect;
        if d != Dialect::Postgres {
            return Ok(false);
        }
        let table = self.inner.map.table.quoted(d);
        let ctx = "reading the calls table's planner statistics";
        let mut b = SqlBuilder::new(d);
        let name = b.text(Some(table.clone()));
        b.push(&format!(
            "SELECT CAST(COALESCE(MAX(c.reltuples), 0) AS DOUBLE PRECISION) FROM pg_class AS c \
             WHERE c.oid = to_regclass({name})"
        ));
        let (sql, args) = b.build();
        let row = sqlx::query_with(&sql, args)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        let reltuples: f64 = row.try_get(0).map_err(|e| Error::sqlx(ctx, e))?;
        if reltuples >= 0.0 {
            return Ok(false);
        }
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("analyzing the calls table", e))?;
        Ok(true)
    }
}
