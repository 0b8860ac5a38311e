//! `refine`: a better end time for a close already written (e.g. from a CDR that arrived after the close),
//! only where the row still holds exactly what the close wrote, audited as outcome `refined` and undoable.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::Connection;

use super::{bind_id, col, get, parse_id, token};
use crate::dialect::SqlBuilder;
use crate::error::{Error, Result};
use crate::model::{CallId, EndedAtSource};
use crate::Store;

/// A recent close whose end came from callwatch's evidence, with a window for the true end: a CDR that
/// arrives later may still make it exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefineCandidate {
    /// The close's audit row.
    pub closure_id: i64,
    /// The row.
    pub call_id: CallId,
    /// The close's reason (`channel_gone`, `asterisk_restart`, `timeout_cleanup`).
    pub reason: String,
    /// The row's Uniqueid at the close.
    pub uniqueid: Option<String>,
    /// The row's Linkedid at the close.
    pub linkedid: Option<String>,
    /// The row's channel (now), if mapped.
    pub channel: Option<String>,
    /// The end time the close wrote.
    pub ended_at: DateTime<Utc>,
    /// Lower bound of the true end.
    pub ended_after: DateTime<Utc>,
    /// Upper bound of the true end.
    pub ended_before: DateTime<Utc>,
}

/// A new end time for a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refinement {
    /// The close's audit row.
    pub closure_id: i64,
    /// The end time to write (raised to `answered_at` if earlier; whole seconds).
    pub ended_at: DateTime<Utc>,
    /// Where it comes from.
    pub source: EndedAtSource,
}

/// A close made more exact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefinedCall {
    /// The row.
    pub call_id: CallId,
    /// The close's audit row.
    pub closure_id: i64,
    /// The refinement's audit row (outcome `refined`).
    pub refinement_id: i64,
    /// The end time the close had written.
    pub prev_ended_at: DateTime<Utc>,
    /// The end time written now.
    pub ended_at: DateTime<Utc>,
    /// The talk seconds now in the row.
    pub talk_seconds: i64,
}

/// What [`Store::refine`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefineOutcome {
    /// Closes refined.
    pub refined: Vec<RefinedCall>,
    /// Closes left alone: the row no longer holds what the close wrote (changed by the application, undone,
    /// refined already), or the close is not a candidate any more.
    pub conflicts: Vec<i64>,
}

/// The close as audited.
struct Close {
    call_id: CallId,
    server: Option<String>,
    uniqueid: Option<String>,
    linkedid: Option<String>,
    reason: String,
    cause: Option<String>,
    new_ended_at: Option<String>,
    new_status: Option<String>,
    new_hangup_cause: Option<String>,
    new_talk_seconds: Option<i64>,
    new_updated_at: Option<String>,
    prev_talk_seconds: Option<i64>,
    ended_after: Option<String>,
    ended_before: Option<String>,
}

/// Reasons whose close time is a guess inside a window (no Hangup was seen).
const REFINABLE: &str = "'channel_gone', 'asterisk_restart', 'timeout_cleanup'";

impl Store {
    /// The recent closes (decided at or after `since`, newest first, at most `limit`) that a CDR could still
    /// make exact: outcome `closed`, not undone, a refinable reason with both bounds, the end from evidence,
    /// and never refined (a refinement that was undone stays undone). `server`: only this server's rows
    /// (and those with no server when `include_unassigned`); `None`: every row.
    pub async fn refine_candidates(
        &self,
        since: DateTime<Utc>,
        server: Option<&str>,
        include_unassigned: bool,
        limit: usize,
    ) -> Result<Vec<RefineCandidate>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let time = &self.inner.time;
        let audit = m.audit_table.quoted(d);
        let mut b = SqlBuilder::new(d);
        let since_p = b.ts(Some(time.encode(since)));
        let server_filter = match server {
            Some(name) => {
                let p = b.text(Some(name.to_string()));
                if include_unassigned {
                    format!(" AND (a.server = {p} OR a.server IS NULL)")
                } else {
                    format!(" AND a.server = {p}")
                }
            }
            None => String::new(),
        };
        b.push(&format!(
            "SELECT {id}, a.call_id, a.reason, a.uniqueid, a.linkedid, {ne}, {ea}, {eb} FROM {audit} AS a \
             WHERE a.outcome = 'closed' AND a.undone_at IS NULL AND a.reason IN ({REFINABLE}) \
             AND a.ended_after IS NOT NULL AND a.ended_before IS NOT NULL \
             AND (a.ended_at_source IS NULL OR a.ended_at_source = 'evidence') \
             AND a.decided_at >= {since_p}{server_filter} \
             AND NOT EXISTS (SELECT 1 FROM {audit} AS r WHERE r.call_id = a.call_id AND r.outcome = 'refined' AND r.id > a.id) \
             ORDER BY a.id DESC LIMIT {limit}",
            id = d.as_int("a.id"),
            ne = d.ts_text("a.new_ended_at"),
            ea = d.ts_text("a.ended_after"),
            eb = d.ts_text("a.ended_before"),
            limit = limit.max(1),
        ));
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading recent closes", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let call: String = get(row, 1, "call_id")?;
            let ts = |i: usize, name: &str| -> Result<DateTime<Utc>> {
                let text: Option<String> = get(row, i, name)?;
                time.decode(name, text.as_deref().unwrap_or(""))
            };
            out.push(RefineCandidate {
                closure_id: get(row, 0, "id")?,
                call_id: parse_id(&call, m.id_type)?,
                reason: get(row, 2, "reason")?,
                uniqueid: get(row, 3, "uniqueid")?,
                linkedid: get(row, 4, "linkedid")?,
                channel: None,
                ended_at: ts(5, "new_ended_at")?,
                ended_after: ts(6, "ended_after")?,
                ended_before: ts(7, "ended_before")?,
            });
        }
        if let (Some(channel), false) = (&m.channel, out.is_empty()) {
            let mut b = SqlBuilder::new(d);
            let ids: Vec<String> = out.iter().map(|c| bind_id(&mut b, &c.call_id)).collect();
            b.push(&format!(
                "SELECT {}, {} FROM {} AS t WHERE {} IN ({})",
                super::sel_id(d, m.id_type, &m.id),
                d.as_text(&col(d, channel)),
                m.table.quoted(d),
                col(d, &m.id),
                ids.join(", ")
            ));
            let (sql, args) = b.build();
            let rows = sqlx::query_with(&sql, args)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| Error::sqlx("reading recent closes", e))?;
            for row in &rows {
                let id = super::get_id(row, 0, m.id_type)?;
                let ch: Option<String> = get(row, 1, "channel")?;
                for c in out.iter_mut().filter(|c| c.call_id == id) {
                    c.channel.clone_from(&ch);
                }
            }
        }
        Ok(out)
    }

    /// Writes better end times for closes already made, in one transaction: for each, the row is updated
    /// only if it still holds exactly what the close wrote (`ended_at`, `hangup_cause`, `talk_seconds`,
    /// `status`, `updated_at`), and the change is audited with outcome `refined` (`prev_*` = what the close
    /// wrote). `talk_seconds` follows the new end as a close would compute it. `callwatch undo` of the
    /// refinement puts the close's values back.
    pub async fn refine(
        &self,
        items: &[Refinement],
        run_id: &str,
        lock: Option<&str>,
    ) -> Result<RefineOutcome> {
        if items.is_empty() {
            return Ok(RefineOutcome::default());
        }
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| Error::sqlx("connecting", e))?;
        let result = self.refine_on(&mut conn, items, run_id, lock).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    async fn refine_on(
        &self,
        conn: &mut AnyConnection,
        items: &[Refinement],
        run_id: &str,
        lock: Option<&str>,
    ) -> Result<RefineOutcome> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let time = &self.inner.time;
        let ctx = "refining closes";
        let now = self.now();
        let now_s = time.encode(now);
        let batch_id = token("r");
        let mut tx = match d.begin_write() {
            Some(stmt) => conn.begin_with(stmt).await,
            None => conn.begin().await,
        }
        .map_err(|e| Error::sqlx(ctx, e))?;
        self.check_locks(&mut tx, lock).await?;
        let mut out = RefineOutcome::default();
        let mut done = Vec::new();
        for item in items {
            let Some(close) = self.read_close(&mut tx, item.closure_id).await? else {
                out.conflicts.push(item.closure_id);
                continue;
            };
            let Some(prev_ended_s) = close.new_ended_at.clone() else {
                out.conflicts.push(item.closure_id);
                continue;
            };
            // The row's answer time, so the new end is never before it and talk time follows.
            let mut b = SqlBuilder::new(d);
            let id = bind_id(&mut b, &close.call_id);
            b.push(&format!(
                "SELECT {} FROM {} AS t WHERE {} = {id}",
                d.ts_text(&col(d, &m.answered_at)),
                m.table.quoted(d),
                col(d, &m.id)
            ));
            let (sql, args) = b.build();
            let row = sqlx::query_with(&sql, args)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| Error::sqlx(ctx, e))?;
            let Some(row) = row else {
                out.conflicts.push(item.closure_id);
                continue;
            };
            let answered: Option<String> = get(&row, 0, m.answered_at.name())?;
            let answered = time.decode_opt(m.answered_at.name(), answered.as_deref())?;
            let mut ended_at = time.truncate(item.ended_at);
            if let Some(a) = answered {
                ended_at = ended_at.max(a);
            }
            let computed = answered
                .map(|a| (ended_at - a).num_seconds().max(0))
                .unwrap_or(0);
            let talk = self.talk_seconds_written(close.prev_talk_seconds, computed);

            // Bind in SQL text order: SET values, id, guards.
            let mut b = SqlBuilder::new(d);
            let mut set = vec![format!(
                "{} = {}",
                m.ended_at.quoted(d),
                b.ts(Some(time.encode(ended_at)))
            )];
            if let Some(t) = &m.talk_seconds {
                set.push(format!("{} = {}", t.quoted(d), b.int(Some(talk))));
            }
            if let Some(u) = &m.updated_at {
                set.push(format!("{} = {}", u.quoted(d), b.ts(Some(now_s.clone()))));
            }
            let id = bind_id(&mut b, &close.call_id);
            let mut guard = vec![format!(
                "{} = {}",
                col(d, &m.ended_at),
                b.ts(Some(prev_ended_s.clone()))
            )];
            if let Some(h) = &m.hangup_cause {
                let p = b.text(close.new_hangup_cause.clone());
                guard.push(d.null_safe_eq(&col(d, h), &p));
            }
            if let Some(t) = &m.talk_seconds {
                let p = b.int(close.new_talk_seconds);
                guard.push(d.null_safe_eq(&col(d, t), &p));
            }
            if let Some(s) = &m.status {
                let p = b.text(close.new_status.clone());
                guard.push(d.null_safe_eq(&col(d, s), &p));
            }
            if let Some(u) = &m.updated_at {
                let p = b.ts(close.new_updated_at.clone());
                guard.push(d.null_safe_eq(&col(d, u), &p));
            }
            b.push(&format!(
                "UPDATE {} AS t SET {} WHERE {} = {id} AND {}",
                m.table.quoted(d),
                set.join(", "),
                col(d, &m.id),
                guard.join(" AND ")
            ));
            let (sql, args) = b.build();
            let updated = sqlx::query_with(&sql, args)
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::sqlx(ctx, e))?;
            if updated.rows_affected() != 1 {
                out.conflicts.push(item.closure_id);
                continue;
            }
            let talk_now = m.talk_seconds.as_ref().map(|_| talk);
            let vals: Vec<(&str, Val)> = vec![
                ("batch_id", Val::Text(Some(batch_id.clone()))),
                ("call_id", Val::Text(Some(close.call_id.to_text()))),
                ("server", Val::Text(close.server.clone())),
                ("uniqueid", Val::Text(close.uniqueid.clone())),
                ("linkedid", Val::Text(close.linkedid.clone())),
                ("outcome", Val::Text(Some("refined".into()))),
                ("reason", Val::Text(Some(close.reason.clone()))),
                ("cause", Val::Text(close.cause.clone())),
                ("prev_ended_at", Val::Ts(Some(prev_ended_s.clone()))),
                ("prev_status", Val::Text(close.new_status.clone())),
                (
                    "prev_hangup_cause",
                    Val::Text(close.new_hangup_cause.clone()),
                ),
                ("prev_talk_seconds", Val::Int(close.new_talk_seconds)),
                ("prev_updated_at", Val::Ts(close.new_updated_at.clone())),
                ("new_ended_at", Val::Ts(Some(time.encode(ended_at)))),
                ("new_status", Val::Text(close.new_status.clone())),
                (
                    "new_hangup_cause",
                    Val::Text(close.new_hangup_cause.clone()),
                ),
                ("new_talk_seconds", Val::Int(talk_now)),
                (
                    "new_updated_at",
                    Val::Ts(m.updated_at.as_ref().map(|_| now_s.clone())),
                ),
                ("ended_after", Val::Ts(close.ended_after.clone())),
                ("ended_before", Val::Ts(close.ended_before.clone())),
                ("run_id", Val::Text(Some(run_id.to_string()))),
                ("decided_at", Val::Ts(Some(now_s.clone()))),
                (
                    "ended_at_source",
                    Val::Text(Some(item.source.as_str().into())),
                ),
            ];
            let mut b = SqlBuilder::new(d);
            let names: Vec<&str> = vals.iter().map(|(n, _)| *n).collect();
            let ps: Vec<String> = vals
                .into_iter()
                .map(|(_, v)| match v {
                    Val::Text(t) => b.text(t),
                    Val::Int(i) => b.int(i),
                    Val::Ts(t) => b.ts(t),
                })
                .collect();
            b.push(&format!(
                "INSERT INTO {} ({}) VALUES ({})",
                m.audit_table.quoted(d),
                names.join(", "),
                ps.join(", ")
            ));
            let (sql, args) = b.build();
            sqlx::query_with(&sql, args)
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::sqlx("writing the audit", e))?;
            done.push((item.closure_id, close.call_id, prev_ended_s, ended_at, talk));
        }
        // The refinements' audit ids.
        let mut b = SqlBuilder::new(d);
        let p = b.text(Some(batch_id.clone()));
        b.push(&format!(
            "SELECT {}, call_id FROM {} WHERE batch_id = {p}",
            d.as_int("id"),
            m.audit_table.quoted(d)
        ));
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| Error::sqlx("reading the audit", e))?;
        tx.commit().await.map_err(|e| Error::sqlx(ctx, e))?;
        let mut ids = std::collections::HashMap::new();
        for row in &rows {
            let id: i64 = get(row, 0, "id")?;
            let call: String = get(row, 1, "call_id")?;
            ids.insert(call, id);
        }
        for (closure_id, call_id, prev, ended_at, talk_seconds) in done {
            let refinement_id = ids.get(&call_id.to_text()).copied().unwrap_or_default();
            out.refined.push(RefinedCall {
                prev_ended_at: time.decode("prev_ended_at", &prev)?,
                call_id,
                closure_id,
                refinement_id,
                ended_at,
                talk_seconds,
            });
        }
        Ok(out)
    }

    /// The close audited as `id`, if it is still a refinable close (outcome `closed`, not undone, never
    /// refined).
    async fn read_close(&self, conn: &mut AnyConnection, id: i64) -> Result<Option<Close>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let audit = m.audit_table.quoted(d);
        let mut b = SqlBuilder::new(d);
        let p = b.int(Some(id));
        b.push(&format!(
            "SELECT a.call_id, a.server, a.uniqueid, a.linkedid, a.reason, a.cause, {ne}, a.new_status, \
             a.new_hangup_cause, {nts}, {nu}, {pts}, {ea}, {eb} FROM {audit} AS a \
             WHERE a.id = {p} AND a.outcome = 'closed' AND a.undone_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM {audit} AS r WHERE r.call_id = a.call_id AND r.outcome = 'refined' AND r.id > a.id)",
            ne = d.ts_text("a.new_ended_at"),
            nts = d.as_int("a.new_talk_seconds"),
            nu = d.ts_text("a.new_updated_at"),
            pts = d.as_int("a.prev_talk_seconds"),
            ea = d.ts_text("a.ended_after"),
            eb = d.ts_text("a.ended_before"),
        ));
        let (sql, args) = b.build();
        let row = sqlx::query_with(&sql, args)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| Error::sqlx("reading the audit", e))?;
        let Some(row) = row else { return Ok(None) };
        let call: String = get(&row, 0, "call_id")?;
        Ok(Some(Close {
            call_id: parse_id(&call, m.id_type)?,
            server: get(&row, 1, "server")?,
            uniqueid: get(&row, 2, "uniqueid")?,
            linkedid: get(&row, 3, "linkedid")?,
            reason: get(&row, 4, "reason")?,
            cause: get(&row, 5, "cause")?,
            new_ended_at: get(&row, 6, "new_ended_at")?,
            new_status: get(&row, 7, "new_status")?,
            new_hangup_cause: get(&row, 8, "new_hangup_cause")?,
            new_talk_seconds: get(&row, 9, "new_talk_seconds")?,
            new_updated_at: get(&row, 10, "new_updated_at")?,
            prev_talk_seconds: get(&row, 11, "prev_talk_seconds")?,
            ended_after: get(&row, 12, "ended_after")?,
            ended_before: get(&row, 13, "ended_before")?,
        }))
    }
}

/// A value of an audit row, by SQL kind.
enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Ts(Option<String>),
}
