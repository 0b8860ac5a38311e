//! `undo`: restore what a close changed, only where the row still holds what callwatch wrote.

use sqlx::AnyConnection;
use sqlx::Connection;

use super::{bind_id, col, get, parse_id, token};
use crate::dialect::SqlBuilder;
use crate::error::{Error, Result};
use crate::model::{CallId, UndoOutcome, UndoSelector};
use crate::Store;

struct Closure {
    id: i64,
    /// `closed`, or `refined` (a later, better end time: undoing it puts the close's values back).
    refined: bool,
    prev_ended_at: Option<String>,
    prev_updated_at: Option<String>,
    call_id: CallId,
    prev_status: Option<String>,
    prev_hangup_cause: Option<String>,
    prev_talk_seconds: Option<i64>,
    new_ended_at: Option<String>,
    new_status: Option<String>,
    new_hangup_cause: Option<String>,
    new_talk_seconds: Option<i64>,
    new_updated_at: Option<String>,
}

impl Store {
    /// Reverts closes: for each selected audit row (outcome `closed`, not yet undone, newest first) sets
    /// `ended_at` back to NULL (for outcome `refined`, a later better end time: back to the close's end time
    /// and `updated_at`) and restores `status`, `hangup_cause` and `talk_seconds` — but only if the row
    /// still holds exactly what callwatch wrote (`ended_at`, `hangup_cause`, `talk_seconds`, `status` and
    /// `updated_at`); otherwise the closure is reported as a conflict and left alone. `updated_at` becomes
    /// the clock's now. Each undone audit row gets `undone_at` and `undo_run_id`.
    ///
    /// `dry_run`: everything runs inside a transaction that is rolled back, so the outcome is exactly what a
    /// real run would do at this moment. One statement per closure (undo is rare and operator-driven).
    pub async fn undo(&self, what: UndoSelector, dry_run: bool) -> Result<UndoOutcome> {
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| Error::sqlx("connecting", e))?;
        let result = self.undo_on(&mut conn, what, dry_run).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    async fn undo_on(
        &self,
        conn: &mut AnyConnection,
        what: UndoSelector,
        dry_run: bool,
    ) -> Result<UndoOutcome> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let time = &self.inner.time;
        let ctx = "undoing closes";
        let now_s = time.encode(self.now());
        let undo_id = token("u");
        let mut tx = match d.begin_write() {
            Some(stmt) => conn.begin_with(stmt).await,
            None => conn.begin().await,
        }
        .map_err(|e| Error::sqlx(ctx, e))?;
        if !dry_run {
            self.check_locks(&mut tx, None).await?;
        }
        let closures = self.select_closures(&mut tx, &what).await?;
        let mut out = UndoOutcome {
            dry_run,
            ..Default::default()
        };
        for c in closures {
            // Bind in SQL text order (MySQL placeholders are positional): SET values, id, then guards.
            let mut b = SqlBuilder::new(d);
            let mut set = vec![if c.refined {
                format!(
                    "{} = {}",
                    m.ended_at.quoted(d),
                    b.ts(c.prev_ended_at.clone())
                )
            } else {
                format!("{} = NULL", m.ended_at.quoted(d))
            }];
            if let Some(h) = &m.hangup_cause {
                set.push(format!(
                    "{} = {}",
                    h.quoted(d),
                    b.text(c.prev_hangup_cause.clone())
                ));
            }
            if let Some(t) = &m.talk_seconds {
                set.push(format!("{} = {}", t.quoted(d), b.int(c.prev_talk_seconds)));
            }
            if let Some(s) = &m.status {
                set.push(format!(
                    "{} = {}",
                    s.quoted(d),
                    b.text(c.prev_status.clone())
                ));
            }
            if let Some(u) = &m.updated_at {
                // A refinement undone leaves the row exactly as its close wrote it, so that close can be
                // undone in turn.
                let at = if c.refined {
                    c.prev_updated_at.clone()
                } else {
                    Some(now_s.clone())
                };
                set.push(format!("{} = {}", u.quoted(d), b.ts(at)));
            }
            let id = bind_id(&mut b, &c.call_id);
            let mut guard = vec![format!(
                "{} = {}",
                col(d, &m.ended_at),
                b.ts(c.new_ended_at.clone())
            )];
            if let Some(h) = &m.hangup_cause {
                let p = b.text(c.new_hangup_cause.clone());
                guard.push(d.null_safe_eq(&col(d, h), &p));
            }
            if let Some(t) = &m.talk_seconds {
                let p = b.int(c.new_talk_seconds);
                guard.push(d.null_safe_eq(&col(d, t), &p));
            }
            if let Some(s) = &m.status {
                let p = b.text(c.new_status.clone());
                guard.push(d.null_safe_eq(&col(d, s), &p));
            }
            if let Some(u) = &m.updated_at {
                let p = b.ts(c.new_updated_at.clone());
                guard.push(d.null_safe_eq(&col(d, u), &p));
            }
            // Assignments are unqualified; the WHERE uses the alias `t` (supported by all three engines).
            let sql = format!(
                "UPDATE {} AS t SET {} WHERE {} = {id} AND {}",
                m.table.quoted(d),
                set.join(", "),
                col(d, &m.id),
                guard.join(" AND ")
            );
            b.push(&sql);
            let (sql, args) = b.build();
            let done = sqlx::query_with(&sql, args)
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::sqlx(ctx, e))?;
            if done.rows_affected() == 1 {
                let mut b = SqlBuilder::new(d);
                let (pu, pr, pid) = (
                    b.ts(Some(now_s.clone())),
                    b.text(Some(undo_id.clone())),
                    b.int(Some(c.id)),
                );
                b.push(&format!(
                    "UPDATE {} SET undone_at = {pu}, undo_run_id = {pr} WHERE id = {pid}",
                    m.audit_table.quoted(d)
                ));
                let (sql, args) = b.build();
                sqlx::query_with(&sql, args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                out.restored.push((c.id, c.call_id));
            } else {
                out.conflicts.push((c.id, c.call_id));
            }
        }
        if dry_run {
            tx.rollback().await.map_err(|e| Error::sqlx(ctx, e))?;
        } else {
            tx.commit().await.map_err(|e| Error::sqlx(ctx, e))?;
        }
        out.undo_id = (!dry_run).then_some(undo_id);
        Ok(out)
    }

    async fn select_closures(
        &self,
        conn: &mut AnyConnection,
        what: &UndoSelector,
    ) -> Result<Vec<Closure>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let mut b = SqlBuilder::new(d);
        let filter = match what {
            UndoSelector::Closures(ids) if ids.is_empty() => return Ok(Vec::new()),
            UndoSelector::Closures(ids) => {
                let ps: Vec<String> = ids.iter().map(|i| b.int(Some(*i))).collect();
                format!("id IN ({})", ps.join(", "))
            }
            UndoSelector::Run(run) => format!("run_id = {}", b.text(Some(run.clone()))),
            UndoSelector::Since(t) => {
                format!("decided_at >= {}", b.ts(Some(self.inner.time.encode(*t))))
            }
        };
        let sql = format!(
            "SELECT {id}, call_id, prev_status, prev_hangup_cause, {pts}, {ne}, new_status, new_hangup_cause, {nts}, {nu}, \
             outcome, {pe}, {pu} \
             FROM {audit} WHERE outcome IN ('closed', 'refined') AND undone_at IS NULL AND {filter} ORDER BY id DESC{lock}",
            id = d.as_int("id"),
            pts = d.as_int("prev_talk_seconds"),
            ne = d.ts_text("new_ended_at"),
            nts = d.as_int("new_talk_seconds"),
            nu = d.ts_text("new_updated_at"),
            pe = d.ts_text("prev_ended_at"),
            pu = d.ts_text("prev_updated_at"),
            audit = m.audit_table.quoted(d),
            lock = d.for_update(),
        );
        b.push(&sql);
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| Error::sqlx("reading the audit", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let call: String = get(row, 1, "call_id")?;
            out.push(Closure {
                id: get(row, 0, "id")?,
                call_id: parse_id(&call, m.id_type)?,
                prev_status: get(row, 2, "prev_status")?,
                prev_hangup_cause: get(row, 3, "prev_hangup_cause")?,
                prev_talk_seconds: get(row, 4, "prev_talk_seconds")?,
                new_ended_at: get(row, 5, "new_ended_at")?,
                new_status: get(row, 6, "new_status")?,
                new_hangup_cause: get(row, 7, "new_hangup_cause")?,
                new_talk_seconds: get(row, 8, "new_talk_seconds")?,
                new_updated_at: get(row, 9, "new_updated_at")?,
                refined: get::<String>(row, 10, "outcome")? == "refined",
                prev_ended_at: get(row, 11, "prev_ended_at")?,
                prev_updated_at: get(row, 12, "prev_updated_at")?,
            });
        }
        Ok(out)
    }
}
