//! `callwatch_daemons`: the heartbeat rows through which daemons sharing a database see each other.

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::{get, get_text};
use crate::dialect::SqlBuilder;
use crate::error::{Error, Result};
use crate::model::DaemonBeat;
use crate::Store;

/// Rows not renewed for this long are deleted by the next heartbeat of any daemon.
const FORGET_AFTER: chrono::Duration = chrono::Duration::hours(1);

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

impl Store {
    /// Writes this daemon's heartbeat row (stamped with the store's clock) and returns every daemon seen
    /// within `ttl`, this one included, ordered by id. Fails when the table is missing (`callwatch migrate`
    /// creates it) or the database is unreachable.
    pub async fn heartbeat(
        &self,
        me: &DaemonBeat,
        ttl: chrono::Duration,
    ) -> Result<Vec<DaemonBeat>> {
        let d = self.inner.dialect;
        let now = self.now();
        let ctx = "writing the daemon heartbeat";
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        let mut tx = conn.begin().await.map_err(|e| Error::sqlx(ctx, e))?;
        let mut b = SqlBuilder::new(d);
        let (id, old) = (
            b.text(Some(me.id.clone())),
            b.text(Some(stamp(now - FORGET_AFTER))),
        );
        b.push(&format!(
            "DELETE FROM callwatch_daemons WHERE id = {id} OR seen_at < {old}"
        ));
        let (sql, args) = b.build();
        sqlx::query_with(&sql, args)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        let mut b = SqlBuilder::new(d);
        let values = [
            b.text(Some(me.id.clone())),
            b.text(Some(me.host.clone())),
            b.int(Some(me.pid)),
            b.int(Some(me.servers_wanted)),
            b.int(Some(me.owned.len() as i64)),
            b.text(Some(me.owned.join(","))),
            b.text(Some(stamp(now))),
        ];
        b.push(&format!(
            "INSERT INTO callwatch_daemons (id, host, pid, servers_wanted, servers_owned, owned, seen_at) \
             VALUES ({})",
            values.join(", ")
        ));
        let (sql, args) = b.build();
        sqlx::query_with(&sql, args)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::sqlx(ctx, e))?;
        tx.commit().await.map_err(|e| Error::sqlx(ctx, e))?;
        drop(conn);
        self.live_daemons(ttl).await
    }

    /// Every daemon whose heartbeat is younger than `ttl`, ordered by id.
    pub async fn live_daemons(&self, ttl: chrono::Duration) -> Result<Vec<DaemonBeat>> {
        let d = self.inner.dialect;
        let mut b = SqlBuilder::new(d);
        let since = b.text(Some(stamp(self.now() - ttl)));
        b.push(&format!(
            "SELECT {}, {}, {}, {}, {}, {}, {} FROM callwatch_daemons WHERE seen_at >= {since} ORDER BY id",
            d.as_text("id"),
            d.as_text("host"),
            d.as_int("pid"),
            d.as_int("servers_wanted"),
            d.as_int("servers_owned"),
            d.as_text("owned"),
            d.as_text("seen_at"),
        ));
        let (sql, args) = b.build();
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("reading the daemon heartbeats", e))?;
        rows.iter()
            .map(|row| {
                let owned: Option<String> = get_text(row, 5, "owned")?;
                Ok(DaemonBeat {
                    id: get(row, 0, "id")?,
                    host: get(row, 1, "host")?,
                    pid: get(row, 2, "pid")?,
                    servers_wanted: get(row, 3, "servers_wanted")?,
                    owned: owned
                        .unwrap_or_default()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    seen_at: get(row, 6, "seen_at")?,
                })
            })
            .collect()
    }

    /// Removes this daemon's heartbeat row (it is stopping).
    pub async fn leave(&self, id: &str) -> Result<()> {
        let mut b = SqlBuilder::new(self.inner.dialect);
        let p = b.text(Some(id.to_string()));
        b.push(&format!("DELETE FROM callwatch_daemons WHERE id = {p}"));
        let (sql, args) = b.build();
        sqlx::query_with(&sql, args)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| Error::sqlx("removing the daemon heartbeat", e))?;
        Ok(())
    }
}
