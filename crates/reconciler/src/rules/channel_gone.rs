//! Rule `channel_gone`: a complete listing shows no live channel for the row.

use crate::decision::{Close, Reason};
use crate::evidence::Kind;
use crate::matching::RowMatch;
use crate::model::OpenRow;
use crate::rules::{close, Ctx};

/// Closes a row when the map is synced (a complete `CoreShowChannels` listing since the last (re)connect,
/// no lag since) and no live channel matches it:
/// - its channel (or group) was seen alive and then absent from a listing: `ended_at` = the last time
///   callwatch knew it alive, bounds [that time, listing];
/// - no channel ever answered to its ids, and it was answered more than `skew` before the listing:
///   `ended_at` = the listing time, bounds [answered_at, listing].
///
/// A row answered later than `listing - skew` may belong to a channel the listing could not show yet.
pub(crate) fn channel_gone(
    index: usize,
    row: &OpenRow,
    m: &RowMatch<'_>,
    ctx: &Ctx<'_>,
) -> Option<Close> {
    let state = ctx.view.state();
    if !state.is_synced() {
        return None;
    }
    let listing_at = state.listing_at?;
    let (ended_at, after, before) = match m {
        RowMatch::Ended(e) if e.kind == Kind::Gone => (e.point, e.lo, e.hi),
        RowMatch::Unknown if answered_before_listing(row, listing_at, ctx) => {
            (listing_at, row.answered_at, listing_at)
        }
        _ => return None,
    };
    let reason = Reason::ChannelGone;
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

/// True when the row was answered more than the skew allowance before the listing.
pub(crate) fn answered_before_listing(
    row: &OpenRow,
    listing_at: chrono::DateTime<chrono::Utc>,
    ctx: &Ctx<'_>,
) -> bool {
    listing_at.signed_duration_since(row.answered_at) > ctx.policy.skew
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;

    #[test]
    fn seen_alive_then_absent() {
        let view = synced(0)
            .gone("u1", &["L1"], -40, -2)
            .gone("g1", &["L2"], -70, -2)
            .gone("g2", &["L2"], -50, -2)
            .build();
        check(
            &[row("a").uid("u1"), row("b").lid("L2"), row("c").lid("L1")],
            &view,
            &[
                "close channel_gone at=-40 after=-40 before=-2 cause=channel_gone talk=560",
                // a group ends with its last member
                "close channel_gone at=-50 after=-50 before=-2 cause=channel_gone talk=550",
                "close channel_gone at=-40 after=-40 before=-2 cause=channel_gone talk=560",
            ],
        );
    }

    #[test]
    fn never_seen() {
        let view = synced(0).live("x", &["X"]).build();
        check(
            &[
                row("a").uid("u9").at(-600),
                row("b").lid("L9").at(-6),
                // within the skew allowance of the listing: not judged by it
                row("c").uid("u9").at(-5),
                row("d").uid("u9").at(-1),
            ],
            &view,
            &[
                "close channel_gone at=0 after=-600 before=0 cause=channel_gone talk=600",
                "close channel_gone at=0 after=-6 before=0 cause=channel_gone talk=6",
                "keep after_listing(0)",
                "keep after_listing(0)",
            ],
        );
    }

    #[test]
    fn listing_older_than_now() {
        // the listing was at -100; now is 0; a row answered at -50 is newer than the listing
        let view = synced(-100).live("x", &["X"]).build();
        check(
            &[row("a").uid("u9").at(-50), row("b").uid("u9").at(-200)],
            &view,
            &[
                "keep after_listing(-100)",
                "close channel_gone at=-100 after=-200 before=-100 cause=channel_gone talk=100",
            ],
        );
    }

    #[test]
    fn needs_a_synced_connected_map() {
        let rows = [row("a").uid("u1"), row("b").uid("u9")];
        let gone = |v: V| v.gone("u1", &["u1"], -40, -2).build();
        check(
            &rows,
            &gone(unsynced(-30)),
            &["keep not_synced(since=-30)", "keep not_synced(since=-30)"],
        );
        // synced flag but disconnected: not trusted
        let view = gone(synced(0).state(|s| s.connected = false));
        check(
            &rows,
            &view,
            &["keep not_synced(since=-)", "keep not_synced(since=-)"],
        );
        // synced flag without a listing time: not trusted
        let view = gone(synced(0).state(|s| s.listing_at = None));
        check(
            &rows,
            &view,
            &["keep not_synced(since=-)", "keep not_synced(since=-)"],
        );
    }

    #[test]
    fn alive_rows_are_kept() {
        let view = synced(0)
            .live("u1", &["L1"])
            .live("u2", &["L0", "L2"])
            .gone("u3", &["L2"], -50, -1)
            .build();
        check(
            &[
                row("a").uid("u1"),
                row("b").lid("L1"),
                row("c").lid("L2"),
                row("d").uid("zz").lid("L0"),
            ],
            &view,
            &[
                "keep alive(uniqueid)",
                "keep alive(linkedid)",
                "keep alive(linkedid)",
                "keep alive(linkedid)",
            ],
        );
    }
}
