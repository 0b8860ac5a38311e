//! Rule `ghost_channel`: a row kept alive longer than `max_call_duration` is a suspected ghost.
//!
//! Asterisk can keep a channel in its channel cache after the call is gone (stuck SCCP and UnicastRTP
//! channels, asterisk/asterisk#783): every listing shows it, so the rows it keeps alive never close. Such a
//! row is reported ([`KeepReason::SuspectGhost`], with the channel), and closed only when the policy says
//! so (`close_ghosts`), on a synced map: `ended_at` = the last activity seen on the channel, bounds
//! [that, now].

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::decision::{Decision, Ghost, KeepReason, MatchedBy, Reason};
use crate::model::{LiveChannel, OpenRow};
use crate::names::ChannelNames;
use crate::rules::{close, Ctx};

/// True when a row matched to a live channel was answered more than `max_call_duration` before `now`.
pub(crate) fn suspected(row: &OpenRow, ctx: &Ctx<'_>) -> bool {
    ctx.policy
        .max_call_duration
        .is_some_and(|max| ctx.now.signed_duration_since(row.answered_at) > max)
}

/// Decides the suspected rows `(index, how it matched)`: one pass over the live channels finds the
/// members of the Linkedid groups concerned (none when no row is suspected).
pub(crate) fn ghost_channel<'v>(
    suspects: &[(usize, MatchedBy)],
    rows: &[OpenRow],
    names: &ChannelNames<'v>,
    ctx: &Ctx<'v>,
) -> Vec<(usize, Decision)> {
    if suspects.is_empty() {
        return Vec::new();
    }
    // Linkedid → the live member with the latest activity.
    let mut groups: HashMap<&str, Option<(&'v str, &'v LiveChannel)>> = suspects
        .iter()
        .filter(|(_, by)| *by == MatchedBy::Linkedid)
        .filter_map(|(i, _)| rows[*i].linkedid.as_deref())
        .map(|l| (l, None))
        .collect();
    if !groups.is_empty() {
        for (uid, ch) in ctx.view.live_channels() {
            for lid in &ch.linkedids_ever {
                if let Some(best) = groups.get_mut(lid.as_str()) {
                    if best.is_none_or(|(_, b)| ch.last_activity > b.last_activity) {
                        *best = Some((uid, ch));
                    }
                }
            }
        }
    }
    suspects
        .iter()
        .filter_map(|&(i, by)| {
            let row = &rows[i];
            let keeper = match by {
                MatchedBy::Uniqueid => row
                    .uniqueid
                    .as_deref()
                    .and_then(|u| Some((u, ctx.view.live_channel(u)?))),
                MatchedBy::Channel => names
                    .live_uniqueid(row)
                    .and_then(|u| Some((u, ctx.view.live_channel(u)?))),
                MatchedBy::Linkedid => row
                    .linkedid
                    .as_deref()
                    .and_then(|l| groups.get(l).copied().flatten()),
            };
            let (uid, ch) = keeper?;
            Some((i, decide_ghost(i, row, by, uid, ch, ctx)))
        })
        .collect()
}

fn decide_ghost(
    index: usize,
    row: &OpenRow,
    by: MatchedBy,
    uniqueid: &str,
    ch: &LiveChannel,
    ctx: &Ctx<'_>,
) -> Decision {
    let last: DateTime<Utc> = ch.last_activity.min(ctx.now);
    if ctx.policy.close_ghosts && ctx.view.state().is_synced() {
        let reason = Reason::GhostChannel;
        return Decision::Close(close(
            index,
            row,
            reason,
            reason.as_str().to_owned(),
            last,
            Some(last),
            Some(ctx.now),
        ));
    }
    Decision::Keep {
        reason: KeepReason::SuspectGhost(Ghost {
            by,
            uniqueid: uniqueid.to_owned(),
            channel: ch.channel.clone(),
            last_activity: ch.last_activity,
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use crate::rules::testkit::*;
    use crate::Policy;

    const H: i64 = 3600;

    fn closing() -> Policy {
        Policy {
            close_ghosts: true,
            ..Policy::default()
        }
    }

    /// An SCCP channel Asterisk never freed (last active 5 h ago), a UnicastRTP channel that once carried
    /// the row's Linkedid, and a live call of an hour.
    fn view() -> V {
        synced(0)
            .live_active("g1", "SCCP/2001-00000001", &["g1"], -5 * H)
            .live_active(
                "rtp",
                "UnicastRTP/127.0.0.1:5000-0000002a",
                &["L", "M"],
                -5 * H + 60,
            )
            .live_active(
                "rtp2",
                "UnicastRTP/127.0.0.1:5002-0000002b",
                &["L"],
                -5 * H + 30,
            )
            .live_active("ok", "PJSIP/2002-00000003", &["ok"], -10)
    }

    #[test]
    fn suspected_after_max_call_duration_and_reported_by_default() {
        let view = view().build();
        check(
            &[
                row("a").uid("g1").at(-5 * H),
                // a Linkedid group: the member with the latest activity is named
                row("b").lid("L").at(-5 * H),
                row("c").lid("M").at(-5 * H),
                row("d").chan("SCCP/2001-00000001").at(-5 * H),
                // not longer than 4 h
                row("e").uid("g1").at(-4 * H),
                row("f").uid("ok").at(-H),
            ],
            &view,
            &[
                "keep suspect_ghost(uniqueid, g1 SCCP/2001-00000001, last=-18000)",
                "keep suspect_ghost(linkedid, rtp UnicastRTP/127.0.0.1:5000-0000002a, last=-17940)",
                "keep suspect_ghost(linkedid, rtp UnicastRTP/127.0.0.1:5000-0000002a, last=-17940)",
                "keep suspect_ghost(channel, g1 SCCP/2001-00000001, last=-18000)",
                "keep alive(uniqueid)",
                "keep alive(uniqueid)",
            ],
        );
    }

    #[test]
    fn closed_only_when_asked_and_synced() {
        let rows = [
            row("a").uid("g1").at(-5 * H),
            row("b").lid("L").at(-5 * H - 100),
            row("f").uid("ok").at(-H),
        ];
        check_at(
            &rows,
            &view().build(),
            &closing(),
            0,
            &[
                "close ghost_channel at=-18000 after=-18000 before=0 cause=ghost_channel talk=0",
                "close ghost_channel at=-17940 after=-17940 before=0 cause=ghost_channel talk=160",
                "keep alive(uniqueid)",
            ],
        );
        // an unsynced map reports, never closes
        let unsynced = view().state(|s| s.connected = false).build();
        check_at(
            &rows[..1],
            &unsynced,
            &closing(),
            0,
            &["keep suspect_ghost(uniqueid, g1 SCCP/2001-00000001, last=-18000)"],
        );
    }

    #[test]
    fn off_with_no_max_call_duration() {
        let policy = Policy {
            max_call_duration: None,
            close_ghosts: true,
            ..Policy::default()
        };
        check_at(
            &[row("a").uid("g1").at(-50 * H)],
            &view().build(),
            &policy,
            0,
            &["keep alive(uniqueid)"],
        );
        // a shorter maximum
        let policy = Policy {
            max_call_duration: Some(Duration::minutes(90)),
            ..Policy::default()
        };
        check_at(
            &[row("f").uid("ok").at(-H), row("g").uid("ok").at(-2 * H)],
            &view().build(),
            &policy,
            0,
            &[
                "keep alive(uniqueid)",
                "keep suspect_ghost(uniqueid, ok PJSIP/2002-00000003, last=-10)",
            ],
        );
    }

    #[test]
    fn many_ghosts_at_once_wait_for_a_second_listing() {
        let mut v = synced(0);
        let mut rows = Vec::new();
        for i in 0..60 {
            let uid = format!("g{i}");
            v = v.live_active(&uid, "SCCP/x", &[&uid], -5 * H);
            rows.push(row(&format!("r{i}")).uid(&uid).at(-6 * H));
        }
        check_at(
            &rows,
            &v.build(),
            &closing(),
            0,
            &vec!["hold confirm(ghost_channel, held=0, at=15)"; 60],
        );
    }
}
