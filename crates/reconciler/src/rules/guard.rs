//! The mass-close guard: a round that would close (almost) every open row on weak evidence waits for a
//! second listing.

use chrono::{DateTime, Utc};

use crate::decision::{Decision, HoldReason};
use crate::model::OpenRow;
use crate::rules::Ctx;

/// When one round would close more than `max_close_fraction` of the open rows, and at least
/// `max_close_min` of them, as `channel_gone` / `timeout_cleanup` / `superseded` without a confirming
/// listing, those closes become holds:
/// - if none of the open rows' ids matches any channel the server's map knows (live or ended) and the
///   runner has never seen them match (`ServerState::ids_matched_before`), it is most likely a
///   column-mapping or server mistake: [`HoldReason::IdsNeverMatched`], an alert, and nothing closes;
/// - otherwise each close waits for a listing taken at least `confirm_delay` after the round that first
///   held it ([`HoldReason::AwaitingConfirmation`]); a row the view says was held at `h` is closed when
///   the map is synced and `listing_at >= h + confirm_delay` — and only if, re-judged on that listing, it
///   is still to be closed.
///
/// `hangup_seen` and `asterisk_restart` are evidence: never held, and not counted.
pub(crate) fn mass_close_guard(
    decisions: &mut [Decision],
    rows: &[OpenRow],
    any_matched: bool,
    ctx: &Ctx<'_>,
) {
    // closes a later listing already confirmed are no longer pending, and do not count
    let unconfirmed = decisions
        .iter()
        .zip(rows)
        .filter(|(d, row)| {
            d.as_close().is_some_and(|c| c.reason.is_guarded())
                && !ctx
                    .view
                    .held_at(&row.key)
                    .is_some_and(|h| confirmed(h, ctx))
        })
        .count();
    if !triggers(unconfirmed, rows.len(), ctx) {
        return;
    }
    let state = ctx.view.state();
    let alert = !any_matched && !state.ids_matched_before;
    for (d, row) in decisions.iter_mut().zip(rows) {
        let Some(would_close) = d.as_close().map(|c| c.reason).filter(|r| r.is_guarded()) else {
            continue;
        };
        if alert {
            *d = Decision::Hold {
                reason: HoldReason::IdsNeverMatched { would_close },
            };
            continue;
        }
        let held_at = ctx.view.held_at(&row.key);
        if held_at.is_some_and(|h| confirmed(h, ctx)) {
            continue;
        }
        let held_at = held_at.unwrap_or(ctx.now);
        *d = Decision::Hold {
            reason: HoldReason::AwaitingConfirmation {
                would_close,
                held_at,
                confirm_at: confirm_at(held_at, ctx),
            },
        };
    }
}

/// True when `guarded` unconfirmed closes out of `open` rows are a mass close.
pub(crate) fn triggers(guarded: usize, open: usize, ctx: &Ctx<'_>) -> bool {
    guarded >= ctx.policy.max_close_min
        && guarded as f64 > ctx.policy.close_fraction() * open as f64
}

/// True when the map is synced and its listing was taken at least `confirm_delay` after `held_at`.
fn confirmed(held_at: DateTime<Utc>, ctx: &Ctx<'_>) -> bool {
    let state = ctx.view.state();
    state.is_synced()
        && state
            .listing_at
            .is_some_and(|l| l.signed_duration_since(held_at) >= ctx.policy.confirm_delay)
}

fn confirm_at(held_at: DateTime<Utc>, ctx: &Ctx<'_>) -> DateTime<Utc> {
    held_at
        .checked_add_signed(ctx.policy.confirm_delay)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;
    use crate::{OpenRow, Policy, ServerView};

    /// `n` rows u0..u{n-1}; the first `gone` are absent from the listing (seen alive until -40), the rest live.
    fn fleet(n: usize, gone: usize, v: V) -> (Vec<OpenRow>, ServerView) {
        let mut v = v;
        let mut rows = Vec::new();
        for i in 0..n {
            let uid = format!("u{i}");
            v = if i < gone {
                v.gone(&uid, &[&uid], -40, -2)
            } else {
                v.live(&uid, &[&uid])
            };
            rows.push(row(&format!("r{i}")).uid(&uid));
        }
        (rows, v.build())
    }

    const GONE: &str = "close channel_gone at=-40 after=-40 before=-2 cause=channel_gone talk=560";
    const ALIVE: &str = "keep alive(uniqueid)";
    const HELD: &str = "hold confirm(channel_gone, held=0, at=15)";

    fn expect(n: usize, gone: usize, d: &'static str) -> Vec<&'static str> {
        (0..n).map(|i| if i < gone { d } else { ALIVE }).collect()
    }

    #[test]
    fn thresholds() {
        // 90 of 100 is not more than 90 %
        let (rows, view) = fleet(100, 90, synced(0));
        check(&rows, &view, &expect(100, 90, GONE));
        // 91 of 100 is
        let (rows, view) = fleet(100, 91, synced(0));
        check(&rows, &view, &expect(100, 91, HELD));
        // 49 of 49: fewer than 50
        let (rows, view) = fleet(49, 49, synced(0));
        check(&rows, &view, &expect(49, 49, GONE));
        // 50 of 50
        let (rows, view) = fleet(50, 50, synced(0));
        check(&rows, &view, &expect(50, 50, HELD));
        // other settings
        let policy = Policy {
            max_close_fraction: 0.5,
            max_close_min: 3,
            ..Policy::default()
        };
        let (rows, view) = fleet(6, 4, synced(0));
        check_at(&rows, &view, &policy, 0, &expect(6, 4, HELD));
        let (rows, view) = fleet(6, 3, synced(0));
        check_at(&rows, &view, &policy, 0, &expect(6, 3, GONE));
        // a fraction that is not a number falls back to the default
        let policy = Policy {
            max_close_fraction: f64::NAN,
            ..Policy::default()
        };
        let (rows, view) = fleet(50, 50, synced(0));
        check_at(&rows, &view, &policy, 0, &expect(50, 50, HELD));
    }

    #[test]
    fn confirmed_by_a_later_listing() {
        // held at 0; listing at 14: too early
        let mut v = synced(14);
        for i in 0..60 {
            v = v.held(&format!("r{i}"), 0);
        }
        let (rows, view) = fleet(60, 60, v);
        check_at(&rows, &view, &Policy::default(), 14, &expect(60, 60, HELD));
        // listing at 15: confirmed; r0, first seen gone now, is no mass close on its own
        let mut v = synced(15);
        for i in 1..60 {
            v = v.held(&format!("r{i}"), 0);
        }
        let (rows, view) = fleet(60, 60, v);
        check_at(&rows, &view, &Policy::default(), 20, &expect(60, 60, GONE));
        // 55 rows held at 10 are not confirmed by the listing at 15, and are still a mass close
        let mut v = synced(15);
        for i in 0..60 {
            v = v.held(&format!("r{i}"), if i < 5 { 0 } else { 10 });
        }
        let (rows, view) = fleet(60, 60, v);
        let mut want = expect(60, 60, "hold confirm(channel_gone, held=10, at=25)");
        for w in want.iter_mut().take(5) {
            *w = GONE;
        }
        check_at(&rows, &view, &Policy::default(), 20, &want);
        // confirmation needs a synced map
        let mut v = synced(15).state(|s| s.connected = false);
        for i in 0..60 {
            v = v.held(&format!("r{i}"), 0);
        }
        let (rows, view) = fleet(60, 60, v.gone("x", &["x"], -1, 0));
        let got: Vec<String> = crate::decide(&rows, &view, &Policy::default(), t(20))
            .iter()
            .map(render)
            .collect();
        assert!(
            got.iter().all(|d| d == "keep not_synced(since=-)"),
            "{got:?}"
        );
    }

    #[test]
    fn a_channel_back_in_the_second_listing_is_kept() {
        let mut v = synced(30);
        for i in 0..60 {
            v = v.held(&format!("r{i}"), 0);
        }
        let (rows, view) = fleet(60, 59, v);
        check_at(&rows, &view, &Policy::default(), 30, &expect(60, 59, GONE));
    }

    #[test]
    fn ids_never_matched_raise_an_alert() {
        // the rows carry ids that no channel has: a mapping mistake, not 60 dead calls
        let mut v = synced(0);
        for i in 0..10 {
            v = v.live(&format!("x{i}"), &[]);
        }
        let view = v.build();
        let rows: Vec<_> = (0..60)
            .map(|i| row(&format!("r{i}")).uid(&format!("u{i}")))
            .collect();
        check(
            &rows,
            &view,
            &vec!["hold ids_never_matched(channel_gone)"; 60],
        );
        // the runner has seen them match before: a normal hold
        let view = synced(0)
            .state(|s| s.ids_matched_before = true)
            .live("x", &[])
            .build();
        check(
            &rows,
            &view,
            &vec!["hold confirm(channel_gone, held=0, at=15)"; 60],
        );
    }

    #[test]
    fn outage_timeouts_are_held() {
        // a long AMI outage: every row is past the timeout, none can be judged
        let mut v = unsynced(-600);
        let mut rows = Vec::new();
        for i in 0..60 {
            let uid = format!("u{i}");
            v = v.gone(&uid, &[&uid], -4000, -3600);
            rows.push(row(&format!("r{i}")).uid(&uid).at(-5000));
        }
        check(
            &rows,
            &v.build(),
            &vec!["hold confirm(timeout_cleanup, held=0, at=15)"; 60],
        );
    }

    #[test]
    fn evidence_is_not_held_nor_counted() {
        // 100 % of the rows close, but only 55 % on guarded reasons
        let mut v = synced(0);
        let mut rows = Vec::new();
        for i in 0..100 {
            let uid = format!("u{i}");
            v = if i < 45 {
                v.hangup(&uid, &[&uid], -10, Some(16), Some("Normal Clearing"))
            } else {
                v.gone(&uid, &[&uid], -40, -2)
            };
            rows.push(row(&format!("r{i}")).uid(&uid));
        }
        let want: Vec<_> = (0..100)
            .map(|i| {
                if i < 45 {
                    "close hangup_seen at=-10 after=- before=- cause=normal_clearing talk=590"
                } else {
                    GONE
                }
            })
            .collect();
        check(&rows, &v.build(), &want);
    }
}
