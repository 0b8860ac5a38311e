//! One module per store operation. Shared helpers live here.

mod check;
mod close;
mod fleet;
mod in_progress;
mod migrate;
mod planner_stats;
mod refine;
mod stats;
mod undo;

pub use refine::{RefineCandidate, RefineOutcome, RefinedCall, Refinement};

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::config::IdType;
use crate::dialect::{Dialect, SqlBuilder};
use crate::error::Error;
use crate::ident::Ident;
use crate::model::CallId;

/// `t.<col>` quoted.
pub(crate) fn col(d: Dialect, c: &Ident) -> String {
    format!("t.{}", c.quoted(d))
}

/// A select expression for an optional text column (`NULL` when unmapped).
pub(crate) fn sel_text(d: Dialect, c: Option<&Ident>) -> String {
    match c {
        Some(c) => d.as_text(&col(d, c)),
        None => d.as_text("NULL"),
    }
}

/// A select expression for an optional timestamp column.
pub(crate) fn sel_ts(d: Dialect, c: Option<&Ident>) -> String {
    match c {
        Some(c) => d.ts_text(&col(d, c)),
        None => d.as_text("NULL"),
    }
}

/// A select expression for an optional integer column.
pub(crate) fn sel_int(d: Dialect, c: Option<&Ident>) -> String {
    match c {
        Some(c) => d.as_int(&col(d, c)),
        None => d.as_int("NULL"),
    }
}

/// A select expression for the id.
pub(crate) fn sel_id(d: Dialect, id_type: IdType, c: &Ident) -> String {
    match id_type {
        IdType::Integer => d.as_int(&col(d, c)),
        IdType::String => d.as_text(&col(d, c)),
    }
}

/// Binds an id.
pub(crate) fn bind_id(b: &mut SqlBuilder<'_>, id: &CallId) -> String {
    match id {
        CallId::Int(i) => b.int(Some(*i)),
        CallId::Text(s) => b.text(Some(s.clone())),
    }
}

/// Reads the id at `idx`.
pub(crate) fn get_id(row: &AnyRow, idx: usize, id_type: IdType) -> Result<CallId, Error> {
    match id_type {
        IdType::Integer => get::<i64>(row, idx, "id").map(CallId::Int),
        IdType::String => {
            get_text(row, idx, "id")?
                .map(CallId::Text)
                .ok_or_else(|| Error::Decode {
                    column: "id".into(),
                    detail: "NULL id".into(),
                })
        }
    }
}

/// Reads a value, turning decode failures into [`Error::Decode`].
pub(crate) fn get<T: Col>(row: &AnyRow, idx: usize, column: &str) -> Result<T, Error> {
    T::read(row, idx, column)
}

/// A value the store reads from a row.
pub(crate) trait Col: Sized {
    fn read(row: &AnyRow, idx: usize, column: &str) -> Result<Self, Error>;
}

fn decode_err(column: &str, e: impl std::fmt::Display) -> Error {
    Error::Decode {
        column: column.to_string(),
        detail: e.to_string(),
    }
}

impl Col for Option<i64> {
    fn read(row: &AnyRow, idx: usize, column: &str) -> Result<Self, Error> {
        row.try_get::<Option<i64>, _>(idx)
            .map_err(|e| decode_err(column, e))
    }
}

impl Col for i64 {
    fn read(row: &AnyRow, idx: usize, column: &str) -> Result<Self, Error> {
        Option::<i64>::read(row, idx, column)?.ok_or_else(|| decode_err(column, "unexpected NULL"))
    }
}

impl Col for Option<String> {
    fn read(row: &AnyRow, idx: usize, column: &str) -> Result<Self, Error> {
        get_text(row, idx, column)
    }
}

impl Col for String {
    fn read(row: &AnyRow, idx: usize, column: &str) -> Result<Self, Error> {
        get_text(row, idx, column)?.ok_or_else(|| decode_err(column, "unexpected NULL"))
    }
}

/// Reads an optional text value; MySQL reports TEXT columns as BLOB, which is read as UTF-8.
pub(crate) fn get_text(row: &AnyRow, idx: usize, column: &str) -> Result<Option<String>, Error> {
    match row.try_get::<Option<String>, _>(idx) {
        Ok(v) => Ok(v),
        Err(first) => match row.try_get::<Option<Vec<u8>>, _>(idx) {
            Ok(v) => Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned())),
            Err(_) => Err(Error::Decode {
                column: column.to_string(),
                detail: first.to_string(),
            }),
        },
    }
}

/// Parses a text id from the audit table back into a [`CallId`].
pub(crate) fn parse_id(text: &str, id_type: IdType) -> Result<CallId, Error> {
    match id_type {
        IdType::Integer => text
            .parse::<i64>()
            .map(CallId::Int)
            .map_err(|_| Error::Decode {
                column: "call_id".into(),
                detail: format!("{text:?} is not an integer id"),
            }),
        IdType::String => Ok(CallId::Text(text.to_string())),
    }
}

/// A fresh, practically unique token (process id, time, a per-process counter and a random key).
pub(crate) fn token(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{:x}-{:x}-{n:x}-{:08x}",
        std::process::id(),
        nanos,
        h.finish() as u32
    )
}
