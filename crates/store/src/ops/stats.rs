//! `stats`: totals, in progress, stuck, busy extensions, closes by reason, last run.

use sqlx::any::AnyRow;

use super::{col, get};
use crate::dialect::SqlBuilder;
use crate::error::{Error, Result};
use crate::model::{BusyExtension, LastRun, Stats};
use crate::Store;

impl Store {
    /// Summary numbers. `stuck_after`: an open call answered longer ago than this is "stuck".
    /// `window`: closes counted over the last `window` (by `decided_at`; undone closes excluded).
    pub async fn stats(
        &self,
        stuck_after: chrono::Duration,
        window: chrono::Duration,
    ) -> Result<Stats> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let time = &self.inner.time;
        let now = self.now();
        let table = m.table.quoted(d);
        let audit = m.audit_table.quoted(d);
        let open = format!(
            "{} IS NOT NULL AND {} IS NULL",
            col(d, &m.answered_at),
            col(d, &m.ended_at)
        );

        let mut b = SqlBuilder::new(d);
        let stuck_p = b.ts(Some(time.encode(now - stuck_after)));
        b.push(&format!(
            "SELECT {}, {}, {} FROM {table} AS t",
            d.as_int("COUNT(*)"),
            d.as_int(&format!(
                "COALESCE(SUM(CASE WHEN {open} THEN 1 ELSE 0 END), 0)"
            )),
            d.as_int(&format!(
                "COALESCE(SUM(CASE WHEN {open} AND {} < {stuck_p} THEN 1 ELSE 0 END), 0)",
                col(d, &m.answered_at)
            )),
        ));
        let row = self.one(b).await?;
        let mut stats = Stats {
            at: Some(now),
            total: get(&row, 0, "total")?,
            in_progress: get(&row, 1, "in_progress")?,
            stuck: get(&row, 2, "stuck")?,
            ..Default::default()
        };

        if let Some(ext) = &m.extension {
            let srv = match &m.server {
                Some(s) => d.as_text(&col(d, s)),
                None => d.as_text("NULL"),
            };
            let group = match &m.server {
                Some(s) => format!("{}, {}", col(d, s), col(d, ext)),
                None => col(d, ext),
            };
            let mut b = SqlBuilder::new(d);
            b.push(&format!(
                "SELECT {srv}, {e}, {n} FROM {table} AS t WHERE {open} AND {ec} IS NOT NULL GROUP BY {group} \
                 HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC, {ec} LIMIT 100",
                e = d.as_text(&col(d, ext)),
                n = d.as_int("COUNT(*)"),
                ec = col(d, ext),
            ));
            for row in self.all(b).await? {
                stats.busy_extensions.push(BusyExtension {
                    server: get(&row, 0, "server")?,
                    extension: get::<Option<String>>(&row, 1, "extension")?.unwrap_or_default(),
                    calls: get(&row, 2, "count")?,
                });
            }
        }

        let mut b = SqlBuilder::new(d);
        let since = b.ts(Some(time.encode(now - window)));
        b.push(&format!(
            "SELECT {r}, {o}, {n} FROM {audit} WHERE decided_at >= {since} AND undone_at IS NULL GROUP BY reason, outcome ORDER BY reason",
            r = d.as_text("reason"),
            o = d.as_text("outcome"),
            n = d.as_int("COUNT(*)"),
        ));
        for row in self.all(b).await? {
            let reason: String = get(&row, 0, "reason")?;
            let outcome: String = get(&row, 1, "outcome")?;
            let n: i64 = get(&row, 2, "count")?;
            if outcome == "closed" {
                stats.closes_by_reason.push((reason, n));
            } else if outcome == "skipped" {
                stats.skipped_in_window += n;
            }
        }

        let mut b = SqlBuilder::new(d);
        let since = b.ts(Some(time.encode(now - window)));
        b.push(&format!(
            "SELECT {n} FROM {audit} WHERE decided_at >= {since} AND undone_at IS NULL \
             AND ended_at_source = 'cdr' AND outcome IN ('closed', 'refined')",
            n = d.as_int("COUNT(*)"),
        ));
        stats.refined_by_cdr = get(&self.one(b).await?, 0, "count")?;

        let mut b = SqlBuilder::new(d);
        b.push(&format!(
            "SELECT {r}, {t} FROM {audit} ORDER BY id DESC LIMIT 1",
            r = d.as_text("run_id"),
            t = d.ts_text("decided_at")
        ));
        if let Some(row) = self.all(b).await?.into_iter().next() {
            let run_id: String = get(&row, 0, "run_id")?;
            let at: Option<String> = get(&row, 1, "decided_at")?;
            let mut b = SqlBuilder::new(d);
            let p = b.text(Some(run_id.clone()));
            b.push(&format!(
                "SELECT {} FROM {audit} WHERE run_id = {p} AND outcome = 'closed'",
                d.as_int("COUNT(*)")
            ));
            let closed: i64 = get(&self.one(b).await?, 0, "count")?;
            if let Some(at) = time.decode_opt("decided_at", at.as_deref())? {
                stats.last_run = Some(LastRun {
                    run_id,
                    decided_at: at,
                    closed,
                });
            }
        }
        Ok(stats)
    }

    async fn all(&self, b: SqlBuilder<'_>) -> Result<Vec<AnyRow>> {
        let (sql, args) = b.build();
        sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading statistics", e))
    }

    async fn one(&self, b: SqlBuilder<'_>) -> Result<AnyRow> {
        let (sql, args) = b.build();
        sqlx::query_with(&sql, args)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading statistics", e))
    }
}
