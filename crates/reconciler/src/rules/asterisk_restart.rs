//! Rule `asterisk_restart`: Asterisk restarted, and the row's channels died with it.

use crate::decision::{Close, Reason};
use crate::evidence::Kind;
use crate::matching::RowMatch;
use crate::model::OpenRow;
use crate::rules::close;

/// Closes a row whose channel (or Linkedid group) ended with an Asterisk restart (a `Shutdown` event, or a
/// `FullyBooted` whose `Uptime` shows a new boot) at the restart/EOF time, with bounds
/// [last known alive, restart]. A channel whose Hangup was seen before the restart is `hangup_seen`
/// instead; a group mixing seen Hangups and the restart is closed here, at its latest end.
/// Evidence: applies whether or not the map is synced, never held.
pub(crate) fn asterisk_restart(index: usize, row: &OpenRow, m: &RowMatch<'_>) -> Option<Close> {
    let e = m.evidence()?;
    if e.kind != Kind::Restart {
        return None;
    }
    let reason = Reason::AsteriskRestart;
    Some(close(
        index,
        row,
        reason,
        reason.as_str().to_owned(),
        e.point,
        Some(e.lo),
        Some(e.hi),
    ))
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;
    use crate::End;

    #[test]
    fn closes_at_the_restart() {
        let view = unsynced(-20)
            .restart("u1", &["u1"], -20, -25)
            .hangup("h", &["H"], -40, Some(16), Some("Normal Clearing"))
            .restart("g1", &["G"], -20, -25)
            .hangup("g2", &["G"], -30, Some(16), Some("Normal Clearing"))
            .build();
        check(
            &[row("a").uid("u1"), row("b").uid("h"), row("c").lid("G")],
            &view,
            &[
                "close asterisk_restart at=-20 after=-25 before=-20 cause=asterisk_restart talk=580",
                // its Hangup was seen before the restart
                "close hangup_seen at=-40 after=- before=- cause=normal_clearing talk=560",
                "close asterisk_restart at=-20 after=-25 before=-20 cause=asterisk_restart talk=580",
            ],
        );
    }

    /// Issue 14 (8): a crash found at a reconnect ends at the connection's drop, bounded by the new boot.
    #[test]
    fn a_crash_closes_at_the_drop_within_the_boot() {
        let view = unsynced(-20)
            .ended(
                "u1",
                &["u1"],
                End::Restart {
                    at: t(-20),
                    after: t(-21),
                    before: Some(t(-10)),
                },
            )
            .build();
        check_one(
            &row("a").uid("u1"),
            &view,
            "close asterisk_restart at=-20 after=-21 before=-10 cause=asterisk_restart talk=580",
        );
    }

    #[test]
    fn is_never_held() {
        // every one of 60 open calls dies with Asterisk: evidence, so no guard
        let mut v = synced(0);
        let mut rows = Vec::new();
        for i in 0..60 {
            let uid = format!("u{i}");
            v = v.restart(&uid, &[&uid], -20, -25);
            rows.push(row(&format!("r{i}")).uid(&uid));
        }
        let expect = vec!["close asterisk_restart at=-20 after=-25 before=-20 cause=asterisk_restart talk=580"; 60];
        check(&rows, &v.build(), &expect);
    }
}
