//! `check_mapping`: the configured table and columns against the live database.

use std::collections::HashMap;

use super::get;
use crate::config::IdType;
use crate::dialect::{Dialect, SqlBuilder};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::MappingReport;
use crate::Store;

/// Columns of the audit table that callwatch reads and writes.
const AUDIT_REQUIRED: &[&str] = &[
    "id",
    "batch_id",
    "call_id",
    "outcome",
    "reason",
    "cause",
    "prev_status",
    "prev_hangup_cause",
    "prev_talk_seconds",
    "prev_updated_at",
    "new_ended_at",
    "new_status",
    "new_hangup_cause",
    "new_talk_seconds",
    "new_updated_at",
    "ended_after",
    "ended_before",
    "run_id",
    "decided_at",
    "undone_at",
    "undo_run_id",
    "ended_at_source",
];

/// How a column's type check starts its detail.
const TYPE_DETAIL: &str = "type ";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Time,
}

impl Store {
    /// Checks the mapping against the live tables: the calls table exists, every mapped column exists with a
    /// plausible type, the audit table has callwatch's columns. Never fails on a mismatch (that is a failed
    /// check in the report); fails only when the database cannot be asked.
    pub async fn check_mapping(&self) -> Result<MappingReport> {
        let mut report = self.check_schema().await?;
        if report.ok() {
            // Finally read real rows through the mapping, which also checks the stored timestamps parse.
            match self.in_progress_rows(crate::ServerFilter::Any, None).await {
                Ok(open) if open.unreadable.is_empty() => report.push(
                    "reading calls in progress",
                    true,
                    format!("{} open rows", open.calls.len()),
                ),
                Ok(open) => {
                    let ids: Vec<String> = open
                        .unreadable
                        .iter()
                        .take(10)
                        .map(|r| format!("{} ({})", r.id, r.column))
                        .collect();
                    report.push(
                        "reading calls in progress",
                        true,
                        format!(
                            "{} open rows; {} unreadable row(s) skipped until fixed: {}",
                            open.calls.len(),
                            open.unreadable.len(),
                            ids.join(", ")
                        ),
                    )
                }
                Err(e) => report.push("reading calls in progress", false, e.to_string()),
            }
        }
        Ok(report)
    }

    /// Fails with [`Error::Mapping`] unless the calls table, its mapped columns, the audit table (and on
    /// SQLite the lock table) are all there: what every command but `migrate` needs. The message says
    /// what is missing and what to do (run `callwatch migrate`, or fix the mapping).
    pub async fn require_schema(&self) -> Result<()> {
        let report = self.check_schema().await?;
        let failed: Vec<String> = report
            .checks
            .iter()
            // A column of an unexpected type is check-config's warning, not a reason to refuse to run.
            .filter(|c| !c.ok && !c.detail.starts_with(TYPE_DETAIL))
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Mapping(failed.join("; ")))
        }
    }

    /// The structural part of [`check_mapping`](Self::check_mapping): tables and columns, no rows read.
    async fn check_schema(&self) -> Result<MappingReport> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let mut report = MappingReport::default();
        let cols = self.live_columns(&m.table).await?;
        if cols.is_empty() {
            report.push(
                format!("table {}", m.table),
                false,
                "not found (run `callwatch migrate` for the default schema, or fix [database.mapping] table)",
            );
        } else {
            report.push(
                format!("table {}", m.table),
                true,
                format!("{} columns", cols.len()),
            );
            for (role, c) in m.all_columns() {
                let want = match role {
                    "id" => match m.id_type {
                        IdType::Integer => Kind::Int,
                        IdType::String => Kind::Text,
                    },
                    "talk_seconds" => Kind::Int,
                    r if r.ends_with("_at") => Kind::Time,
                    _ => Kind::Text,
                };
                let what = format!("column {role} = {}.{}", m.table.name(), c.name());
                match cols.get(&c.name().to_ascii_lowercase()) {
                    None => report.push(what, false, "missing from the table"),
                    Some(ty) => {
                        let ok = plausible(d, want, ty);
                        let detail = if ok {
                            format!("{TYPE_DETAIL}{ty}")
                        } else {
                            format!("{TYPE_DETAIL}{ty} does not look like {}", kind_name(want))
                        };
                        report.push(what, ok, detail);
                    }
                }
            }
        }
        if !cols.is_empty() && !self.has_in_progress_index().await? {
            report.hints.push(format!(
                "no index on {} covers {}: reading the calls in progress scans the table; consider {}",
                m.table,
                m.ended_at.name(),
                self.suggested_in_progress_index()
            ));
        }
        if !cols.is_empty() {
            for hint in self.missing_lookup_indexes().await? {
                report.hints.push(hint);
            }
        }
        let audit = self.live_columns(&m.audit_table).await?;
        if audit.is_empty() {
            report.push(
                format!("audit table {}", m.audit_table),
                false,
                "not found (run `callwatch migrate`)",
            );
        } else {
            let missing: Vec<&str> = AUDIT_REQUIRED
                .iter()
                .copied()
                .filter(|c| !audit.contains_key(*c))
                .collect();
            report.push(
                format!("audit table {}", m.audit_table),
                missing.is_empty(),
                if missing.is_empty() {
                    "all callwatch columns present".to_string()
                } else {
                    format!("missing columns: {}", missing.join(", "))
                },
            );
        }
        if d == Dialect::Sqlite {
            let locks = self.live_columns(&Ident::table("callwatch_locks")?).await?;
            report.push(
                "lock table callwatch_locks",
                !locks.is_empty(),
                if locks.is_empty() {
                    "not found (run `callwatch migrate`)"
                } else {
                    "present"
                },
            );
        }
        Ok(report)
    }

    /// Whether some index of the calls table names its `ended_at` column (in its columns or, on SQLite and
    /// PostgreSQL, in a partial index's condition).
    async fn has_in_progress_index(&self) -> Result<bool> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let mut b = SqlBuilder::new(d);
        match d {
            Dialect::Sqlite => {
                let name = b.text(Some(m.table.name().to_string()));
                let master = match m.table.schema() {
                    Some(s) => format!("{s}.sqlite_master"),
                    None => "sqlite_master".to_string(),
                };
                b.push(&format!(
                    "SELECT sql FROM {master} WHERE type = 'index' AND tbl_name = {name} AND sql IS NOT NULL"
                ));
            }
            Dialect::Postgres => {
                let schema = match m.table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "current_schema()".to_string(),
                };
                let name = b.text(Some(m.table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(indexdef AS TEXT) FROM pg_indexes WHERE schemaname = {schema} AND tablename = {name}"
                ));
            }
            Dialect::MySql => {
                let schema = match m.table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "DATABASE()".to_string(),
                };
                let name = b.text(Some(m.table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.statistics \
                     WHERE table_schema = {schema} AND table_name = {name}"
                ));
            }
        }
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading the table's indexes", e))?;
        let column = m.ended_at.name().to_ascii_lowercase();
        for row in &rows {
            let def: Option<String> = get(row, 0, "index")?;
            let def = def.unwrap_or_default().to_ascii_lowercase();
            let names_it = def
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == column);
            if names_it {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One hint per mapped `uniqueid` / `linkedid` column that leads no index of the calls table: a round
    /// triggered by hangups looks rows up by those columns ([`Store::in_progress_matching`]), and without
    /// an index each lookup scans the table.
    async fn missing_lookup_indexes(&self) -> Result<Vec<String>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let leading = self.indexed_leading_columns().await?;
        let mut hints = Vec::new();
        for (role, column) in [("uniqueid", &m.uniqueid), ("linkedid", &m.linkedid)] {
            let Some(column) = column else { continue };
            if leading.contains(&column.name().to_ascii_lowercase()) {
                continue;
            }
            hints.push(format!(
                "no index on {table} starts with its {role} column {name}: rounds triggered by hangups look rows \
                 up by it and scan the table without one; consider CREATE INDEX {table_name}_{role}_index ON {q_table} ({q_col})",
                table = m.table,
                name = column.name(),
                table_name = m.table.name(),
                q_table = m.table.quoted(d),
                q_col = column.quoted(d),
            ));
        }
        Ok(hints)
    }

    /// Lower-cased first column of every index of the calls table.
    async fn indexed_leading_columns(&self) -> Result<std::collections::HashSet<String>> {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let mut b = SqlBuilder::new(d);
        match d {
            Dialect::Sqlite => {
                let name = b.text(Some(m.table.name().to_string()));
                let master = match m.table.schema() {
                    Some(s) => format!("{s}.sqlite_master"),
                    None => "sqlite_master".to_string(),
                };
                b.push(&format!(
                    "SELECT sql FROM {master} WHERE type = 'index' AND tbl_name = {name} AND sql IS NOT NULL"
                ));
            }
            Dialect::Postgres => {
                let schema = match m.table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "current_schema()".to_string(),
                };
                let name = b.text(Some(m.table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(indexdef AS TEXT) FROM pg_indexes WHERE schemaname = {schema} AND tablename = {name}"
                ));
            }
            Dialect::MySql => {
                let schema = match m.table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "DATABASE()".to_string(),
                };
                let name = b.text(Some(m.table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.statistics \
                     WHERE table_schema = {schema} AND table_name = {name} AND SEQ_IN_INDEX = 1"
                ));
            }
        }
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading the table's indexes", e))?;
        let mut out = std::collections::HashSet::new();
        for row in &rows {
            let def: Option<String> = get(row, 0, "index")?;
            let def = def.unwrap_or_default().to_ascii_lowercase();
            let first = match d {
                Dialect::MySql => Some(def.as_str()),
                // `CREATE INDEX … ON t (col, …)` / `… USING btree (col, …)`: the first name in the parentheses.
                _ => def.split_once('(').map(|(_, rest)| rest),
            };
            if let Some(first) = first {
                let name: String = first
                    .trim_start()
                    .trim_start_matches(['"', '`', '['])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        Ok(out)
    }

    /// The index that serves callwatch's read of the calls in progress, for the mapped table and columns.
    fn suggested_in_progress_index(&self) -> String {
        let d = self.inner.dialect;
        let m = &self.inner.map;
        let q = |i: &Ident| i.quoted(d);
        let name = format!("{}_in_progress_index", m.table.name());
        match d {
            Dialect::MySql => {
                let mut cols = vec![q(&m.ended_at)];
                cols.extend(m.server.iter().map(q));
                cols.push(q(&m.answered_at));
                format!(
                    "CREATE INDEX {name} ON {} ({})",
                    q(&m.table),
                    cols.join(", ")
                )
            }
            _ => {
                let mut cols: Vec<String> = m.server.iter().map(q).collect();
                cols.push(q(&m.answered_at));
                format!(
                    "CREATE INDEX {name} ON {} ({}) WHERE {} IS NULL AND {} IS NOT NULL",
                    q(&m.table),
                    cols.join(", "),
                    q(&m.ended_at),
                    q(&m.answered_at)
                )
            }
        }
    }

    /// Lower-cased column name → lower-cased type of a live table (empty when the table does not exist).
    pub(crate) async fn live_columns(&self, table: &Ident) -> Result<HashMap<String, String>> {
        let d = self.inner.dialect;
        // Bound in SQL text order (MySQL placeholders are positional).
        let mut b = SqlBuilder::new(d);
        match d {
            Dialect::Sqlite => {
                let name = b.text(Some(table.name().to_string()));
                let schema = b.text(Some(table.schema().unwrap_or("main").to_string()));
                b.push(&format!(
                    "SELECT name, type FROM pragma_table_info({name}, {schema})"
                ));
            }
            Dialect::Postgres => {
                let schema = match table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "current_schema()".to_string(),
                };
                let name = b.text(Some(table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                     WHERE table_schema = {schema} AND table_name = {name}"
                ));
            }
            Dialect::MySql => {
                let schema = match table.schema() {
                    Some(s) => b.text(Some(s.to_string())),
                    None => "DATABASE()".to_string(),
                };
                let name = b.text(Some(table.name().to_string()));
                b.push(&format!(
                    "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.columns \
                     WHERE table_schema = {schema} AND table_name = {name}"
                ));
            }
        }
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading the table's columns", e))?;
        let mut out = HashMap::new();
        for row in &rows {
            let n: String = get(row, 0, "column_name")?;
            let t: Option<String> = get(row, 1, "data_type")?;
            out.insert(
                n.to_ascii_lowercase(),
                t.unwrap_or_default().to_ascii_lowercase(),
            );
        }
        Ok(out)
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Int => "an integer",
        Kind::Text => "a string",
        Kind::Time => "a timestamp",
    }
}

fn plausible(d: Dialect, want: Kind, ty: &str) -> bool {
    let int = ty.contains("int") || ty.contains("serial");
    let text = ty.contains("char") || ty.contains("text") || ty.contains("clob");
    let time = ty.contains("timestamp") || ty.contains("datetime") || ty == "date";
    match (d, want) {
        (_, Kind::Int) => int || (d == Dialect::Sqlite && ty.is_empty()),
        (_, Kind::Text) => text || (d == Dialect::Sqlite && ty.is_empty()),
        // SQLite has no timestamp type: Laravel declares `datetime`, others use text.
        (Dialect::Sqlite, Kind::Time) => time || text || ty.is_empty(),
        (_, Kind::Time) => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_plausibility() {
        assert!(plausible(
            Dialect::Postgres,
            Kind::Time,
            "timestamp without time zone"
        ));
        assert!(!plausible(
            Dialect::Postgres,
            Kind::Time,
            "character varying"
        ));
        assert!(plausible(Dialect::MySql, Kind::Int, "bigint(20) unsigned"));
        assert!(plausible(Dialect::Sqlite, Kind::Time, "varchar"));
        assert!(!plausible(Dialect::MySql, Kind::Text, "datetime"));
    }
}
