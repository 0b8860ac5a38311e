//! Rule `timeout_cleanup`: the fallback for rows that cannot be judged.

use chrono::{DateTime, Utc};

use crate::decision::{Close, Reason};
use crate::matching::RowMatch;
use crate::model::OpenRow;
use crate::rules::{close, Ctx};

/// True when the row cannot be judged by the channels: it has no Uniqueid and no Linkedid, or the map
/// has been unsynced for longer than `fallback_after`. A row matched to a live channel is always
/// judged (it is alive).
pub(crate) fn unjudgeable(m: &RowMatch<'_>, ctx: &Ctx<'_>) -> bool {
    match m {
        RowMatch::Alive(_) => false,
        RowMatch::NoIds => true,
        RowMatch::Ended(_) | RowMatch::Unknown => unsynced_too_long(ctx),
    }
}

/// True when the map is not synced and has been so for longer than `fallback_after`. With no
/// `unsynced_since` the duration is unknown and this is false.
pub(crate) fn unsynced_too_long(ctx: &Ctx<'_>) -> bool {
    let state = ctx.view.state();
    !state.is_synced()
        && state
            .unsynced_since
            .is_some_and(|since| ctx.now.signed_duration_since(since) > ctx.policy.fallback_after)
}

/// `answered_at + timeout`, saturating.
pub(crate) fn timeout_at(row: &OpenRow, ctx: &Ctx<'_>) -> DateTime<Utc> {
    row.answered_at
        .checked_add_signed(ctx.policy.timeout)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The seed's rule, now a fallback: closes an unjudgeable row answered more than `timeout` ago. Never a
/// row whose channel is known alive. `ended_at` = the last time its channel was known alive if
/// callwatch saw it, else `now`; bounds [that time or `answered_at`, `now`].
pub(crate) fn timeout_cleanup(
    index: usize,
    row: &OpenRow,
    m: &RowMatch<'_>,
    ctx: &Ctx<'_>,
) -> Option<Close> {
    if !unjudgeable(m, ctx) || ctx.now.signed_duration_since(row.answered_at) <= ctx.policy.timeout
    {
        return None;
    }
    let (ended_at, after, before) = match m.evidence() {
        Some(e) => (e.point, e.lo, e.hi.min(ctx.now)),
        None => (ctx.now, row.answered_at, ctx.now),
    };
    let reason = Reason::TimeoutCleanup;
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

    #[test]
    fn unsynced_past_fallback_and_timeout() {
        // unsynced since -121 s (> 2 min fallback)
        let view = unsynced(-121)
            .live("live", &["live"])
            .gone("g", &["g"], -1900, -1890)
            .build();
        check(
            &[
                row("old").uid("u").at(-1801),
                row("young").uid("u").at(-1800),
                row("alive").uid("live").at(-99999),
                row("seen").uid("g").at(-2000),
            ],
            &view,
            &[
                "close timeout_cleanup at=0 after=-1801 before=0 cause=timeout_cleanup talk=1801",
                "keep awaiting_timeout(no_ids=false, at=0)",
                // alive for 27 h: a suspected ghost, kept (never a timeout)
                "keep suspect_ghost(uniqueid, live PJSIP/live, last=-1000)",
                "close timeout_cleanup at=-1900 after=-1900 before=-1890 cause=timeout_cleanup talk=100",
            ],
        );
    }

    #[test]
    fn unsynced_within_fallback() {
        let view = unsynced(-120).build();
        check(
            &[row("old").uid("u").at(-99999)],
            &view,
            &["keep not_synced(since=-120)"],
        );
        // unknown since when: never reaches the fallback
        let view = unsynced(0).state(|s| s.unsynced_since = None).build();
        check(
            &[row("old").uid("u").at(-99999)],
            &view,
            &["keep not_synced(since=-)"],
        );
    }

    #[test]
    fn rows_without_ids() {
        let view = synced(0).live("x", &["x"]).build();
        check(
            &[
                row("a").at(-1801),
                row("b").at(-1800),
                row("c").uid("").lid("").at(-1801),
            ],
            &view,
            &[
                "close timeout_cleanup at=0 after=-1801 before=0 cause=timeout_cleanup talk=1801",
                "keep awaiting_timeout(no_ids=true, at=0)",
                "close timeout_cleanup at=0 after=-1801 before=0 cause=timeout_cleanup talk=1801",
            ],
        );
    }

    #[test]
    fn synced_rows_are_judged_by_listing_not_timeout() {
        let view = synced(-100).build();
        // answered after the last listing: waits for the next one, whatever its age
        check(
            &[row("a").uid("u").at(-99)],
            &view,
            &["keep after_listing(-100)"],
        );
    }
}
