//! Rule `superseded`: one in-progress call per extension.

use chrono::{DateTime, Utc};

use crate::decision::{Close, Reason};
use crate::hash::FxHashMap;
use crate::matching::RowMatch;
use crate::model::OpenRow;
use crate::rules::{close, Ctx};

/// The answer times of the rows whose channel is live, per extension, sorted.
#[derive(Debug, Default)]
pub(crate) struct LiveByExtension<'r> {
    by_ext: FxHashMap<&'r str, Vec<DateTime<Utc>>>,
}

impl<'r> LiveByExtension<'r> {
    /// Indexes the rows at `alive` (indices into `rows` of rows matched to a live channel) whose
    /// extension is one of `wanted`'s (the extensions of the rows that will be asked about).
    pub(crate) fn new(
        rows: &'r [OpenRow],
        alive: impl Iterator<Item = usize>,
        wanted: impl Iterator<Item = &'r str>,
    ) -> Self {
        let mut by_ext: FxHashMap<&'r str, Vec<DateTime<Utc>>> =
            wanted.map(|ext| (ext, Vec::new())).collect();
        if by_ext.is_empty() {
            return LiveByExtension { by_ext };
        }
        for i in alive {
            let Some(row) = rows.get(i) else { continue };
            if let Some(times) = extension(row).and_then(|ext| by_ext.get_mut(ext)) {
                times.push(row.answered_at);
            }
        }
        for times in by_ext.values_mut() {
            times.sort_unstable();
        }
        LiveByExtension { by_ext }
    }

    /// The answer time of the first live call on `ext` answered strictly after `after`.
    pub(crate) fn next_live_after(&self, ext: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let times = self.by_ext.get(ext)?;
        let i = times.partition_point(|t| *t <= after);
        times.get(i).copied()
    }
}

/// The row's extension, if it has a non-empty one.
pub(crate) fn extension(row: &OpenRow) -> Option<&str> {
    row.extension.as_deref().filter(|e| !e.is_empty())
}

/// Closes an older row that cannot be matched to any live channel while a newer call on the same
/// extension is live (the promise of one in-progress call per extension; `Policy::superseded`). Only on a
/// synced map: before the listing completes, the older call's channel may be up and merely not seen yet.
/// The older call ended before the newer one was answered: `ended_at` = the last time its channel was
/// known alive if callwatch saw it, else the newer call's `answered_at`; bounds
/// [last known alive or `answered_at`, newer call's `answered_at`].
pub(crate) fn superseded(
    index: usize,
    row: &OpenRow,
    m: &RowMatch<'_>,
    live: &LiveByExtension<'_>,
    ctx: &Ctx<'_>,
) -> Option<Close> {
    if !ctx.policy.superseded || matches!(m, RowMatch::Alive(_)) || !ctx.view.state().is_synced() {
        return None;
    }
    let ext = extension(row)?;
    let newer = live.next_live_after(ext, row.answered_at)?;
    let (ended_at, after, before) = match m.evidence() {
        Some(e) => (e.point, e.lo, e.hi.min(newer)),
        None => (newer, row.answered_at, newer),
    };
    let reason = Reason::Superseded;
    Some(close(
        index,
        row,
        reason,
        reason.as_str().to_owned(),
        ended_at,
        Some(after),
        Some(before),
    ))
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;
    use crate::Policy;

    #[test]
    fn newer_live_call_on_the_same_extension() {
        // synced: rows with ids are judged by the listing; rows without ids only by the newer call
        let view = synced(-30).live("new", &["new"]).build();
        let rows = [
            row("old").ext("2001").at(-600),
            row("new").uid("new").ext("2001").at(-100),
            row("other").ext("2002").at(-600),
            row("noext").at(-900),
        ];
        check(
            &rows,
            &view,
            &[
                "close superseded at=-100 after=-600 before=-100 cause=superseded talk=500",
                "keep alive(uniqueid)",
                "keep awaiting_timeout(no_ids=true, at=1200)",
                "keep awaiting_timeout(no_ids=true, at=900)",
            ],
        );
        let off = Policy {
            superseded: false,
            ..Policy::default()
        };
        check_at(
            &rows,
            &view,
            &off,
            0,
            &[
                "keep awaiting_timeout(no_ids=true, at=1200)",
                "keep alive(uniqueid)",
                "keep awaiting_timeout(no_ids=true, at=1200)",
                "keep awaiting_timeout(no_ids=true, at=900)",
            ],
        );
    }

    /// Issue 14 (4): while the map is unsynced (logged in, listing not complete yet; or disconnected),
    /// an older call on hold whose channel the map has not seen yet is not closed because a newer call on
    /// its extension is seen live.
    #[test]
    fn not_before_the_map_is_synced() {
        let listing = unsynced(-2)
            .state(|s| s.connected = true)
            .live("new", &["new"]);
        let rows = [
            row("on_hold").uid("held").ext("2001").at(-600),
            row("new").uid("new").ext("2001").at(-100),
            row("no_ids").ext("2001").at(-600),
        ];
        check(
            &rows,
            &listing.build(),
            &[
                "keep not_synced(since=-2)",
                "keep alive(uniqueid)",
                "keep awaiting_timeout(no_ids=true, at=1200)",
            ],
        );
        let away = unsynced(-30).live("new", &["new"]).build();
        check(
            &rows,
            &away,
            &[
                "keep not_synced(since=-30)",
                "keep alive(uniqueid)",
                "keep awaiting_timeout(no_ids=true, at=1200)",
            ],
        );
    }

    #[test]
    fn never_a_live_row_nor_a_newer_one() {
        let view = synced(0).live("a", &["a"]).live("b", &["b"]).build();
        check(
            &[
                row("a").uid("a").ext("2001").at(-600),
                row("b").uid("b").ext("2001").at(-100),
                // newer than the live call: not superseded by it
                row("c").ext("2001").at(-50),
                // same answer time: not newer
                row("d").ext("2001").at(-100),
            ],
            &view,
            &[
                "keep alive(uniqueid)",
                "keep alive(uniqueid)",
                "keep awaiting_timeout(no_ids=true, at=1750)",
                "keep awaiting_timeout(no_ids=true, at=1700)",
            ],
        );
    }

    #[test]
    fn a_channel_gone_row_stays_channel_gone() {
        let view = synced(0).live("new", &["new"]).build();
        check(
            &[
                row("old").uid("old").ext("2001").at(-600),
                row("new").uid("new").ext("2001").at(-100),
            ],
            &view,
            &[
                "close channel_gone at=0 after=-600 before=0 cause=channel_gone talk=600",
                "keep alive(uniqueid)",
            ],
        );
    }

    #[test]
    fn rows_without_ids_are_superseded_too() {
        let view = synced(0).live("new", &["new"]).build();
        check(
            &[
                row("old").ext("2001").at(-600),
                row("new").uid("new").ext("2001").at(-100),
            ],
            &view,
            &[
                "close superseded at=-100 after=-600 before=-100 cause=superseded talk=500",
                "keep alive(uniqueid)",
            ],
        );
    }
}
