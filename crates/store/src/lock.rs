//! Single active instance per server: PostgreSQL session advisory locks, MySQL `GET_LOCK`, and on SQLite a
//! lease row in `callwatch_locks`.
//!
//! Every write ([`Store::close`], [`Store::undo`]) checks *inside its transaction* that each lock taken
//! through the store is still held (PostgreSQL `pg_locks`, MySQL `IS_USED_LOCK`, SQLite the lease row, which
//! the check also renews). A lost lock (its connection dropped, its lease expired and taken) makes writes fail
//! with [`Error::LockLost`] until [`InstanceLock::reacquire`] succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use sqlx::AnyConnection;
use sqlx::Connection;

use crate::dialect::{Dialect, SqlBuilder};
use crate::error::{Error, Result};
use crate::ops::{get, token};
use crate::Store;

/// How long a SQLite lease lasts without renewal (each write and each [`InstanceLock::is_held`] renews it).
pub const SQLITE_LEASE: chrono::Duration = chrono::Duration::seconds(60);

pub(crate) struct LockInner {
    name: String,
    /// PostgreSQL key / MySQL lock name / SQLite row name.
    key: LockKey,
    /// The session that holds a PostgreSQL/MySQL lock (None on SQLite, or once released/lost).
    conn: tokio::sync::Mutex<Option<AnyConnection>>,
    /// PostgreSQL backend pid / MySQL connection id of `conn`; on SQLite unused.
    session: std::sync::Mutex<i64>,
    /// SQLite lease holder token.
    holder: String,
    released: AtomicBool,
}

#[derive(Clone)]
enum LockKey {
    Pg(i64),
    My(String),
    Lite(String),
}

/// A held single-instance lock. Dropping it without [`release`](Self::release) closes its session
/// (PostgreSQL/MySQL: the server releases the lock) or leaves the SQLite lease to expire.
pub struct InstanceLock {
    inner: Arc<LockInner>,
    store: Store,
}

impl std::fmt::Debug for InstanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLock")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

fn pg_key(name: &str) -> i64 {
    // FNV-1a 64 over a namespaced name: stable across processes and versions.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in "callwatch:".bytes().chain(name.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h as i64
}

/// The MySQL lock name: `callwatch:<database>:<name>` (MySQL locks are server-wide, PostgreSQL advisory
/// locks are per database), or a hash when that is long or has characters other than `[A-Za-z0-9_.:-]`
/// (so it can be written into SQL without escaping).
fn my_name(database: &str, name: &str) -> String {
    let full = format!("callwatch:{database}:{name}");
    let plain = full
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if full.len() <= 64 && plain {
        full
    } else {
        format!("callwatch:{:016x}", pg_key(&full) as u64)
    }
}

impl Store {
    /// Takes the single-instance lock `name` (e.g. the Asterisk server's name) without waiting.
    ///
    /// `Ok(None)`: another instance holds it. While the returned lock lives, every write of this store
    /// (and its clones) checks that it is still held.
    pub async fn acquire_lock(&self, name: &str) -> Result<Option<InstanceLock>> {
        let key = match self.inner.dialect {
            Dialect::Postgres => LockKey::Pg(pg_key(name)),
            Dialect::MySql => {
                let db: Option<String> = sqlx::query_scalar("SELECT CAST(DATABASE() AS CHAR(255))")
                    .fetch_one(&self.inner.pool)
                    .await
                    .map_err(|e| Error::sqlx("taking the instance lock", e))?;
                LockKey::My(my_name(db.as_deref().unwrap_or(""), name))
            }
            Dialect::Sqlite => LockKey::Lite(name.to_string()),
        };
        let inner = Arc::new(LockInner {
            name: name.to_string(),
            key,
            conn: tokio::sync::Mutex::new(None),
            session: std::sync::Mutex::new(0),
            holder: match process_tag() {
                Some(tag) => format!("{}@{tag}", token("h")),
                None => token("h"),
            },
            released: AtomicBool::new(false),
        });
        if !self.try_take(&inner).await? {
            return Ok(None);
        }
        if let Ok(mut locks) = self.inner.locks.lock() {
            locks.push(inner.clone());
        }
        Ok(Some(InstanceLock {
            inner,
            store: self.clone(),
        }))
    }

    /// Tries to take `lock` now; true when held afterwards.
    async fn try_take(&self, lock: &LockInner) -> Result<bool> {
        let ctx = "taking the instance lock";
        match &lock.key {
            LockKey::Pg(_) | LockKey::My(_) => {
                let mut conn = self
                    .inner
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?
                    .detach();
                let (take, session) = if let LockKey::Pg(k) = &lock.key {
                    (
                        format!("SELECT CAST(CASE WHEN pg_try_advisory_lock({k}) THEN 1 ELSE 0 END AS BIGINT)"),
                        "SELECT CAST(pg_backend_pid() AS BIGINT)",
                    )
                } else {
                    let n = match &lock.key {
                        LockKey::My(n) => n.as_str(),
                        _ => "",
                    };
                    (
                        format!("SELECT CAST(GET_LOCK('{n}', 0) AS SIGNED)"),
                        "SELECT CAST(CONNECTION_ID() AS SIGNED)",
                    )
                };
                let got: Option<i64> = sqlx::query_scalar(&take)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                if got != Some(1) {
                    let _ = conn.close().await;
                    return Ok(false);
                }
                let id: i64 = sqlx::query_scalar(session)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                if let Ok(mut s) = lock.session.lock() {
                    *s = id;
                }
                *lock.conn.lock().await = Some(conn);
                Ok(true)
            }
            LockKey::Lite(name) => {
                let mut conn = self
                    .inner
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                let mut tx = conn
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                let now = Utc::now();
                let mut b = SqlBuilder::new(Dialect::Sqlite);
                let (pn, ph, pnow) = (
                    b.text(Some(name.clone())),
                    b.text(Some(lock.holder.clone())),
                    b.text(Some(lease_text(now))),
                );
                b.push(&format!(
                    "SELECT holder FROM callwatch_locks WHERE name = {pn} AND holder <> {ph} AND expires_at > {pnow}"
                ));
                let (sql, args) = b.build();
                let other: Option<String> = sqlx::query_scalar_with(&sql, args)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                if let Some(other) = other {
                    if !holder_is_dead(&other) {
                        return Ok(false);
                    }
                    // A process on this host that died holding the lease (a crashed cleanup): its lease would
                    // block everyone until it expires; the process is gone, so take it now.
                    tracing::warn!(lock = %lock.name, holder = %other, "taking over the lease of a process that is gone");
                }
                let mut b = SqlBuilder::new(Dialect::Sqlite);
                let (pn, ph, pexp) = (
                    b.text(Some(name.clone())),
                    b.text(Some(lock.holder.clone())),
                    b.text(Some(lease_text(now + SQLITE_LEASE))),
                );
                b.push(&format!(
                    "INSERT OR REPLACE INTO callwatch_locks (name, holder, expires_at) VALUES ({pn}, {ph}, {pexp})"
                ));
                let (sql, args) = b.build();
                sqlx::query_with(&sql, args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                tx.commit().await.map_err(|e| Error::sqlx(ctx, e))?;
                Ok(true)
            }
        }
    }

    /// Whether `lock` is held, checked on `conn` (inside the caller's transaction for writes). Renews SQLite leases.
    async fn lock_held_on(&self, conn: &mut AnyConnection, lock: &LockInner) -> Result<bool> {
        if lock.released.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let ctx = "checking the instance lock";
        let session = lock.session.lock().map(|s| *s).unwrap_or(0);
        let mut b = SqlBuilder::new(self.inner.dialect);
        match &lock.key {
            LockKey::Pg(k) => {
                let (hi, lo) = (
                    ((*k as u64) >> 32) as i64,
                    ((*k as u64) & 0xffff_ffff) as i64,
                );
                b.push(&format!(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
                     AND pid = {session} AND CAST(classid AS BIGINT) = {hi} AND CAST(objid AS BIGINT) = {lo}"
                ));
            }
            LockKey::My(n) => {
                b.push(&format!(
                    "SELECT CAST(COALESCE(IS_USED_LOCK('{n}') = {session}, 0) AS SIGNED)"
                ));
            }
            LockKey::Lite(name) => {
                let now = Utc::now();
                let (pexp, pn, ph, pnow) = (
                    b.text(Some(lease_text(now + SQLITE_LEASE))),
                    b.text(Some(name.clone())),
                    b.text(Some(lock.holder.clone())),
                    b.text(Some(lease_text(now))),
                );
                b.push(&format!(
                    "UPDATE callwatch_locks SET expires_at = {pexp} WHERE name = {pn} AND holder = {ph} AND expires_at > {pnow}"
                ));
                let (sql, args) = b.build();
                let done = sqlx::query_with(&sql, args)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
                return Ok(done.rows_affected() == 1);
            }
        }
        let (sql, args) = b.build();
        let row = sqlx::query_with(&sql, args)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        let n: i64 = get(&row, 0, "lock")?;
        Ok(n == 1)
    }

    /// Pings the session of every lock taken through this store (PostgreSQL/MySQL: a round trip on the
    /// connection that holds it; SQLite leases have none, and pass). A session that answers still holds its
    /// lock; one that fails (the database unreachable, the link reset, the server restarted) has lost it, or
    /// cannot prove it holds it. Independent of the pool: a probe never waits for a pooled connection.
    ///
    /// A lock whose session is in use (being taken again or released) is skipped. The caller bounds the
    /// wait: a black-holed link never answers.
    pub async fn ping_locks(&self) -> Result<()> {
        let locks: Vec<Arc<LockInner>> = self
            .inner
            .locks
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        for lock in locks {
            if lock.released.load(Ordering::SeqCst) || matches!(lock.key, LockKey::Lite(_)) {
                continue;
            }
            let Ok(mut conn) = lock.conn.try_lock() else {
                continue;
            };
            match conn.as_mut() {
                Some(c) => c
                    .ping()
                    .await
                    .map_err(|e| Error::sqlx("checking the instance lock's session", e))?,
                None => return Err(Error::LockLost(lock.name.clone())),
            }
        }
        Ok(())
    }

    /// Takes a pooled connection and pings it: whether the database answers rounds again (after an outage,
    /// the daemon retries its failed rounds as soon as this succeeds rather than at the end of its backoff).
    /// The caller bounds the wait: a black-holed link never answers.
    pub async fn ping(&self) -> Result<()> {
        let ctx = "pinging the database";
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        conn.ping().await.map_err(|e| Error::sqlx(ctx, e))
    }

    /// Checks every lock taken through this store (only the lock named `scope`, when given: a daemon that
    /// owns several servers writes one server's rows under that server's lock); [`Error::LockLost`] if one
    /// is gone.
    pub(crate) async fn check_locks(
        &self,
        conn: &mut AnyConnection,
        scope: Option<&str>,
    ) -> Result<()> {
        let locks: Vec<Arc<LockInner>> = self
            .inner
            .locks
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|lock| scope.is_none_or(|name| lock.name == name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for lock in locks {
            if !self.lock_held_on(conn, &lock).await? {
                return Err(Error::LockLost(lock.name.clone()));
            }
        }
        Ok(())
    }
}

/// `HOST:PID:START` of this process (START: its start time in clock ticks since boot, which tells a reused
/// PID apart), appended to SQLite lease holders so that another process on the same host can tell when the
/// holder is gone. `None` where the process table cannot be read (then leases only expire).
fn process_tag() -> Option<String> {
    let pid = std::process::id();
    Some(format!("{}:{pid}:{}", hostname()?, start_time(pid)?))
}

/// This host's name, as the kernel has it (`unknown` where it cannot be read).
pub fn this_host() -> String {
    hostname().unwrap_or_else(|| "unknown".to_string())
}

/// This host's name, as the kernel has it.
fn hostname() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(host.trim().to_owned())
}

/// Start time of process `pid` (field 22 of `/proc/PID/stat`), `None` if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the last `)`.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// True only when `holder` carries a process tag of this host and that process no longer exists (or its
/// PID now belongs to a process started later). Anything else, untagged holders included, counts as alive.
fn holder_is_dead(holder: &str) -> bool {
    let Some((_, tag)) = holder.rsplit_once('@') else {
        return false;
    };
    let mut parts = tag.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else {
        return false;
    };
    if hostname().as_deref() != Some(host) {
        return false;
    }
    start_time(pid) != Some(start)
}

fn lease_text(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

impl InstanceLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the lock is still held (asks the database; renews a SQLite lease).
    pub async fn is_held(&self) -> Result<bool> {
        let mut conn = self
            .store
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| Error::sqlx("checking the instance lock", e))?;
        self.store.lock_held_on(&mut conn, &self.inner).await
    }

    /// Takes the lock again after it was lost (no-op if still held). False if another instance has it now.
    ///
    /// When the check itself fails (the database is unreachable, the pool timed out), the lock cannot be
    /// trusted: its session is closed first, so that it can never be left holding the lock unseen, and
    /// the lock is taken anew.
    pub async fn reacquire(&self) -> Result<bool> {
        if self.inner.released.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match self.is_held().await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(err) => {
                tracing::debug!(lock = %self.inner.name, error = %err, "cannot check the instance lock; taking it anew");
            }
        }
        if let Some(old) = self.inner.conn.lock().await.take() {
            let _ = old.close_hard().await;
        }
        self.store.try_take(&self.inner).await
    }

    /// Stops checking this lock on writes (it is released, lost or dropped).
    fn unregister(&self) {
        self.inner.released.store(true, Ordering::SeqCst);
        if let Ok(mut locks) = self.store.inner.locks.lock() {
            locks.retain(|l| !Arc::ptr_eq(l, &self.inner));
        }
    }

    /// Releases the lock and stops checking it on writes.
    pub async fn release(self) -> Result<()> {
        self.unregister();
        let ctx = "releasing the instance lock";
        match &self.inner.key {
            LockKey::Pg(k) => {
                if let Some(mut conn) = self.inner.conn.lock().await.take() {
                    let _ = sqlx::query(&format!("SELECT pg_advisory_unlock({k})"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            }
            LockKey::My(n) => {
                if let Some(mut conn) = self.inner.conn.lock().await.take() {
                    let _ = sqlx::query(&format!("SELECT RELEASE_LOCK('{n}')"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            }
            LockKey::Lite(name) => {
                let mut b = SqlBuilder::new(Dialect::Sqlite);
                let (pn, ph) = (
                    b.text(Some(name.clone())),
                    b.text(Some(self.inner.holder.clone())),
                );
                b.push(&format!(
                    "DELETE FROM callwatch_locks WHERE name = {pn} AND holder = {ph}"
                ));
                let (sql, args) = b.build();
                sqlx::query_with(&sql, args)
                    .execute(&self.store.inner.pool)
                    .await
                    .map_err(|e| Error::sqlx(ctx, e))?;
            }
        }
        Ok(())
    }
}

/// A lock given up without [`InstanceLock::release`] (lost, replaced, or the holder stopping): it is no
/// longer checked on writes, and its session is closed, so the server frees a PostgreSQL advisory lock
/// or a MySQL `GET_LOCK` at once (a SQLite lease expires).
impl Drop for InstanceLock {
    fn drop(&mut self) {
        self.unregister();
        if let Ok(mut conn) = self.inner.conn.try_lock() {
            // Dropping the connection closes its socket; the server ends the session and its locks.
            drop(conn.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_stable_and_bounded() {
        assert_eq!(pg_key("pbx1"), pg_key("pbx1"));
        assert_ne!(pg_key("pbx1"), pg_key("pbx2"));
        assert_eq!(my_name("app", "pbx1"), "callwatch:app:pbx1");
        assert!(my_name("app", &"x".repeat(200)).len() <= 64);
        let quoted = my_name("app", "a'b");
        assert!(!quoted.contains('\''), "{quoted}");
        assert_ne!(my_name("app", "pbx1"), my_name("other", "pbx1"));
    }
}
