//! [`decide`]: runs the rules over one server's open rows.

use chrono::{DateTime, Utc};

use crate::decision::{Decision, KeepReason};
use crate::matching::{match_row, RowMatch};
use crate::model::OpenRow;
use crate::names::ChannelNames;
use crate::policy::Policy;
use crate::rules::asterisk_restart::asterisk_restart;
use crate::rules::channel_gone::{answered_before_listing, channel_gone};
use crate::rules::future::answered_in_future;
use crate::rules::ghost_channel::{ghost_channel, suspected};
use crate::rules::guard::mass_close_guard;
use crate::rules::hangup_seen::hangup_seen;
use crate::rules::superseded::{extension, superseded, LiveByExtension};
use crate::rules::timeout_cleanup::{timeout_at, timeout_cleanup, unsynced_too_long};
use crate::rules::Ctx;
use crate::view::ServerView;

/// Decides what to do with each open row of one server.
///
/// Returns exactly one [`Decision`] per row, in the order of `rows` (a [`crate::Close`] also carries its
/// row's index). For each row, in order:
/// 1. answered after `now` → keep (never judged);
/// 2. matched to a live channel (by Uniqueid or channel name of the same boot, else by any channel that
///    ever carried its Linkedid) → keep; answered more than `max_call_duration` ago → a suspected ghost
///    (`ghost_channel`: reported, or closed when the policy closes ghosts);
/// 3. `hangup_seen`, 4. `asterisk_restart` (evidence);
/// 5. `channel_gone` (synced map only);
/// 6. `superseded` (synced map only; a newer call on its extension is live);
/// 7. `timeout_cleanup` (unjudgeable and old);
/// 8. otherwise keep, saying why.
///
/// Then the mass-close guard may turn the closes of rules 5–7 and `ghost_channel` into holds.
///
/// Pure: no clock (time is `now`), no I/O, no failure; the same input gives the same output.
pub fn decide(
    rows: &[OpenRow],
    view: &ServerView,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let ctx = Ctx { view, policy, now };
    let names = ChannelNames::new(rows, view, policy.skew);
    let mut out: Vec<Decision> = Vec::with_capacity(rows.len());
    // rows no evidence closed and no live channel keeps: (index, match)
    let mut pending: Vec<(usize, RowMatch<'_>)> = Vec::new();
    let mut any_matched = false;
    // rows kept alive longer than `max_call_duration`: (index, how they matched)
    let mut suspects: Vec<(usize, crate::decision::MatchedBy)> = Vec::new();

    for (i, row) in rows.iter().enumerate() {
        if answered_in_future(row, now) {
            out.push(Decision::Keep {
                reason: KeepReason::AnsweredInFuture,
            });
            continue;
        }
        let m = match_row(row, view, &names);
        any_matched |= m.is_matched();
        if let RowMatch::Alive(by) = m {
            if suspected(row, &ctx) {
                suspects.push((i, by));
            }
            out.push(Decision::Keep {
                reason: KeepReason::Alive { by },
            });
            continue;
        }
        let close = hangup_seen(i, row, &m, &ctx)
            .or_else(|| asterisk_restart(i, row, &m))
            .or_else(|| channel_gone(i, row, &m, &ctx));
        match close {
            Some(c) => out.push(Decision::Close(c)),
            None => {
                // placeholder, replaced below
                out.push(Decision::Keep {
                    reason: KeepReason::AnsweredInFuture,
                });
                pending.push((i, m));
            }
        }
    }

    for (i, d) in ghost_channel(&suspects, rows, &names, &ctx) {
        out[i] = d;
    }

    if !pending.is_empty() {
        let live = if policy.superseded {
            let alive = out.iter().enumerate().filter_map(|(i, d)| {
                matches!(
                    d,
                    Decision::Keep {
                        reason: KeepReason::Alive { .. } | KeepReason::SuspectGhost(_)
                    }
                )
                .then_some(i)
            });
            let wanted = pending.iter().filter_map(|(i, _)| extension(&rows[*i]));
            LiveByExtension::new(rows, alive, wanted)
        } else {
            LiveByExtension::default()
        };
        for (i, m) in pending {
            let row = &rows[i];
            out[i] = superseded(i, row, &m, &live, &ctx)
                .or_else(|| timeout_cleanup(i, row, &m, &ctx))
                .map_or_else(
                    || Decision::Keep {
                        reason: why_kept(row, &m, &ctx),
                    },
                    Decision::Close,
                );
        }
    }

    mass_close_guard(&mut out, rows, any_matched, &ctx);
    out
}

/// Why a row that no rule closed stays open.
fn why_kept(row: &OpenRow, m: &RowMatch<'_>, ctx: &Ctx<'_>) -> KeepReason {
    let state = ctx.view.state();
    let awaiting = |no_ids| KeepReason::AwaitingTimeout {
        no_ids,
        timeout_at: timeout_at(row, ctx),
    };
    match m {
        RowMatch::Alive(by) => KeepReason::Alive { by: *by },
        RowMatch::NoIds => awaiting(true),
        _ if !state.is_synced() => {
            if unsynced_too_long(ctx) {
                awaiting(false)
            } else {
                KeepReason::NotSynced {
                    since: state.unsynced_since,
                }
            }
        }
        _ => match state.listing_at {
            Some(listing_at) if !answered_before_listing(row, listing_at, ctx) => {
                KeepReason::AnsweredAfterListing { listing_at }
            }
            // not reached: a synced map closes every other row it does not keep
            _ => KeepReason::NotSynced {
                since: state.unsynced_since,
            },
        },
    }
}
