//! `in_progress`: answered rows without `ended_at`, read in keyset pages.

use super::{bind_id, get, get_id, get_text, sel_id, sel_int, sel_text, sel_ts};
use crate::dialect::{Dialect, SqlBuilder};
use crate::error::{Error, Result};
use crate::model::{CallId, OpenCall, OpenRows, RowKeys, ServerFilter, UnreadableRow};
use crate::Store;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

/// Rows per page.
const PAGE: i64 = 5000;
/// Ids per lookup statement of [`Store::in_progress_matching`].
const LOOKUP_CHUNK: usize = 500;

impl Store {
    /// Answered calls whose row has no `ended_at` (`answered_at IS NOT NULL AND ended_at IS NULL`), ordered by id.
    ///
    /// Rows that cannot be read are left out; [`in_progress_rows`](Self::in_progress_rows) lists them.
    pub async fn in_progress(
        &self,
        server: ServerFilter<'_>,
        answered_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<OpenCall>> {
        Ok(self.in_progress_rows(server, answered_before).await?.calls)
    }

    /// Open rows (answered, not ended) counted by their `server` value (`None`: NULL). Empty when the table
    /// has no server column. The runner compares the values with its configured servers: rows of a server
    /// nobody watches are never read by any round, and are reported instead of left in silence.
    pub async fn open_rows_by_server(&self) -> Result<Vec<(Option<String>, i64)>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let Some(srv) = &m.server else {
            return Ok(Vec::new());
        };
        let server = super::col(d, srv);
        let sql = format!(
            "SELECT {sel}, {n} FROM {table} AS t WHERE {ans} IS NOT NULL AND {end} IS NULL GROUP BY {server}",
            sel = d.as_text(&server),
            n = d.as_int("COUNT(*)"),
            table = m.table.quoted(d),
            ans = super::col(d, &m.answered_at),
            end = super::col(d, &m.ended_at),
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("counting calls in progress by server", e))?;
        rows.iter()
            .map(|row| Ok((get_text(row, 0, srv.name())?, get(row, 1, "count")?)))
            .collect()
    }

    /// Answered calls whose row has no `ended_at`, ordered by id, and the open rows that cannot be read.
    ///
    /// `server`: see [`ServerFilter`]. When the table has no server column, `Any` and `Default` return every
    /// open row and `Named` returns none (a table without a server column cannot hold several servers' calls).
    /// `answered_before`: only rows answered strictly before this instant. Rows are read in pages of 5000
    /// (keyset on the id), so a huge backlog never holds one long-running statement.
    ///
    /// A row whose values cannot be understood (a timestamp that is not one, MySQL's zero date) is
    /// quarantined in [`OpenRows::unreadable`] instead of failing the whole read: one odd row never stops
    /// every other row from being judged.
    pub async fn in_progress_rows(
        &self,
        server: ServerFilter<'_>,
        answered_before: Option<DateTime<Utc>>,
    ) -> Result<OpenRows> {
        let m = &self.inner.map;
        let mut out = OpenRows::default();
        if m.server.is_none() && matches!(server, ServerFilter::Named(_)) {
            return Ok(out);
        }
        let mut after: Option<CallId> = None;
        loop {
            let page = self
                .in_progress_page(server, answered_before, after.as_ref())
                .await?;
            let done = page.read < PAGE as usize;
            after = page.last_id;
            out.calls.extend(page.rows.calls);
            out.unreadable.extend(page.rows.unreadable);
            if done || after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn in_progress_page(
        &self,
        server: ServerFilter<'_>,
        answered_before: Option<DateTime<Utc>>,
        after: Option<&CallId>,
    ) -> Result<Page> {
        let d = self.inner.dialect;
        let mut b = SqlBuilder::new(d);
        let id = super::col(d, &self.inner.map.id);
        self.push_open_select(&mut b, server, answered_before);
        if let Some(after) = after {
            let p = bind_id(&mut b, after);
            b.push(&format!(" AND {id} > {p}"));
        }
        b.push(&format!(" ORDER BY {id} LIMIT {PAGE}"));
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading calls in progress", e))?;
        self.decode_page(&rows)
    }

    /// Open rows (as [`in_progress_rows`](Self::in_progress_rows) reads them) whose `uniqueid` is one of
    /// `keys.uniqueids` or whose `linkedid` is one of `keys.linkedids`: the rows that can match the channels
    /// that changed. One indexed lookup per mapped column (and per 500 values), never a scan of the open
    /// rows when the columns are indexed (see [`check_mapping`](Self::check_mapping)'s hints). Ordered by
    /// id, each row once.
    ///
    /// Empty when neither column is mapped ([`matches_by_ids`](Self::matches_by_ids) says so first).
    pub async fn in_progress_matching(
        &self,
        server: ServerFilter<'_>,
        answered_before: Option<DateTime<Utc>>,
        keys: &RowKeys,
    ) -> Result<OpenRows> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let mut out = OpenRows::default();
        if m.server.is_none() && matches!(server, ServerFilter::Named(_)) {
            return Ok(out);
        }
        let mut seen = std::collections::HashSet::new();
        let lookups = [
            (m.uniqueid.as_ref(), &keys.uniqueids),
            (m.linkedid.as_ref(), &keys.linkedids),
        ];
        for (column, values) in lookups {
            let Some(column) = column else { continue };
            let values: Vec<&String> = values.iter().filter(|v| !v.trim().is_empty()).collect();
            for part in values.chunks(LOOKUP_CHUNK) {
                let mut b = SqlBuilder::new(d);
                self.push_open_select(&mut b, server, answered_before);
                let list = if d == Dialect::Postgres {
                    // One array parameter, unnested once by a function scan (see `close`'s id lookup).
                    let p = b.bind(super::close::pg_text_array(part));
                    format!("SELECT k.v FROM unnest(CAST({p} AS text[])) AS k(v)")
                } else {
                    let ps: Vec<String> =
                        part.iter().map(|v| b.text(Some(v.to_string()))).collect();
                    ps.join(", ")
                };
                b.push(&format!(" AND {} IN ({list})", super::col(d, column)));
                let (sql, args) = b.build();
                let rows = sqlx::query_with(&sql, args)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| Error::sqlx("reading calls in progress by id", e))?;
                let page = self.decode_page(&rows)?;
                for call in page.rows.calls {
                    if seen.insert(call.id.clone()) {
                        out.calls.push(call);
                    }
                }
                for row in page.rows.unreadable {
                    if seen.insert(row.id.clone()) {
                        out.unreadable.push(row);
                    }
                }
            }
        }
        out.calls.sort_by(|a, b| a.id.cmp(&b.id));
        out.unreadable.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// True when the mapping names a `uniqueid` or a `linkedid` column, so that
    /// [`in_progress_matching`](Self::in_progress_matching) can find rows by the ids of channels.
    pub fn matches_by_ids(&self) -> bool {
        self.inner.map.uniqueid.is_some() || self.inner.map.linkedid.is_some()
    }

    /// `SELECT <open row columns> FROM <table> WHERE answered AND not ended [AND server] [AND answered <]`.
    fn push_open_select(
        &self,
        b: &mut SqlBuilder<'_>,
        server: ServerFilter<'_>,
        answered_before: Option<DateTime<Utc>>,
    ) {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let sql = format!(
            "SELECT {id_sel}, {uniq}, {linked}, {chan}, {ext}, {caller}, {srv}, {status}, {started}, {answered}, {talk} \
             FROM {table} AS t WHERE {ans} IS NOT NULL AND {end} IS NULL",
            id_sel = sel_id(d, m.id_type, &m.id),
            uniq = sel_text(d, m.uniqueid.as_ref()),
            linked = sel_text(d, m.linkedid.as_ref()),
            chan = sel_text(d, m.channel.as_ref()),
            ext = sel_text(d, m.extension.as_ref()),
            caller = sel_text(d, m.caller.as_ref()),
            srv = sel_text(d, m.server.as_ref()),
            status = sel_text(d, m.status.as_ref()),
            started = sel_ts(d, m.started_at.as_ref()),
            answered = sel_ts(d, Some(&m.answered_at)),
            talk = sel_int(d, m.talk_seconds.as_ref()),
            table = m.table.quoted(d),
            ans = super::col(d, &m.answered_at),
            end = super::col(d, &m.ended_at),
        );
        b.push(&sql);
        if let Some(srv) = &m.server {
            match server {
                ServerFilter::Any => {}
                ServerFilter::Default => {
                    b.push(&format!(" AND {} IS NULL", super::col(d, srv)));
                }
                ServerFilter::Named(name) => {
                    let p = b.text(Some(name.to_string()));
                    b.push(&format!(" AND {} = {p}", super::col(d, srv)));
                }
            }
        }
        if let Some(before) = answered_before {
            let p = b.ts(Some(self.inner.time.encode(before)));
            b.push(&format!(" AND {} < {p}", super::col(d, &m.answered_at)));
        }
    }

    /// Decodes selected open rows, quarantining those that cannot be read.
    fn decode_page(&self, rows: &[AnyRow]) -> Result<Page> {
        let m = &self.inner.map;
        let mut page = Page {
            read: rows.len(),
            ..Page::default()
        };
        for row in rows {
            let id = get_id(row, 0, m.id_type)?;
            page.last_id = Some(id.clone());
            match self.open_call(row, id.clone()) {
                Ok(call) => page.rows.calls.push(call),
                Err(Error::Decode { column, detail }) => page.rows.unreadable.push(UnreadableRow {
                    value: raw_text(row, &column, m),
                    server: get_text(row, 6, "server").ok().flatten(),
                    id,
                    column,
                    detail,
                }),
                Err(other) => return Err(other),
            }
        }
        Ok(page)
    }

    /// Reads one selected row (see [`in_progress_page`](Self::in_progress_page) for the columns).
    fn open_call(&self, row: &AnyRow, id: CallId) -> Result<OpenCall> {
        let m = &self.inner.map;
        let time = &self.inner.time;
        let answered: Option<String> = get(row, 9, m.answered_at.name())?;
        let answered = answered.ok_or_else(|| Error::Decode {
            column: m.answered_at.name().to_string(),
            detail: "NULL in a row selected as answered".into(),
        })?;
        let started_col = m.started_at.as_ref().map_or("started_at", |c| c.name());
        let started: Option<String> = get(row, 8, started_col)?;
        Ok(OpenCall {
            id,
            uniqueid: get(row, 1, "uniqueid")?,
            linkedid: get(row, 2, "linkedid")?,
            channel: get(row, 3, "channel")?,
            extension: get(row, 4, "extension")?,
            caller: get(row, 5, "caller")?,
            server: get(row, 6, "server")?,
            status: get(row, 7, "status")?,
            started_at: time.decode_opt(started_col, started.as_deref())?,
            answered_at: time.decode(m.answered_at.name(), &answered)?,
            talk_seconds: get(
                row,
                10,
                m.talk_seconds.as_ref().map_or("talk_seconds", |c| c.name()),
            )?,
        })
    }
}

/// One page of a keyset read.
#[derive(Default)]
struct Page {
    /// Rows the statement returned (readable or not).
    read: usize,
    /// The last id returned, to continue after.
    last_id: Option<CallId>,
    rows: OpenRows,
}

/// The stored text of the timestamp column `column` of a selected row, for the quarantine report.
fn raw_text(row: &AnyRow, column: &str, m: &crate::config::ResolvedMapping) -> Option<String> {
    let idx = if column == m.answered_at.name() {
        9
    } else if m.started_at.as_ref().is_some_and(|c| c.name() == column) {
        8
    } else {
        return None;
    };
    let text = get_text(row, idx, column).ok().flatten()?;
    Some(text.chars().take(64).collect())
}
