//! Rule `hangup_seen`: the row's channel (or every channel of its Linkedid group) hung up while watched.

use crate::cause::hangup_cause;
use crate::decision::{Close, Reason};
use crate::evidence::Kind;
use crate::matching::RowMatch;
use crate::model::OpenRow;
use crate::rules::{close, Ctx};

/// Closes at the Hangup time — for a Linkedid group, the last Hangup among every channel that ever carried
/// the Linkedid — with the cause of the (group's first) Hangup, written as the policy's
/// [`crate::CauseFormat`] says. A Hangup read without a `Timestamp:` is known only within bounds (read
/// behind): they go to the audit. Evidence: applies whether or not the map is synced, never held.
pub(crate) fn hangup_seen(
    index: usize,
    row: &OpenRow,
    m: &RowMatch<'_>,
    ctx: &Ctx<'_>,
) -> Option<Close> {
    let e = m.evidence()?;
    if e.kind != Kind::Hangup {
        return None;
    }
    let cause = hangup_cause(e.first_hangup.as_ref(), ctx.policy.cause_format);
    let exact = e.lo == e.point && e.hi == e.point;
    Some(close(
        index,
        row,
        Reason::HangupSeen,
        cause,
        e.point,
        (!exact).then_some(e.lo),
        (!exact).then_some(e.hi),
    ))
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;
    use crate::{CauseFormat, End, Policy};

    #[test]
    fn by_uniqueid() {
        let view = synced(0)
            .hangup("u1", &["u1"], -100, Some(16), Some("Normal Clearing"))
            .hangup("u2", &["u1"], -90, Some(17), Some("User busy"))
            .build();
        check_one(
            &row("r").uid("u1"),
            &view,
            "close hangup_seen at=-100 after=- before=- cause=normal_clearing talk=500",
        );
        // the row follows its own channel even though another channel of the group hung up later
        check_one(
            &row("r").uid("u2").lid("u1"),
            &view,
            "close hangup_seen at=-90 after=- before=- cause=user_busy talk=510",
        );
    }

    #[test]
    fn linkedid_group_ends_with_its_last_hangup_and_the_first_hangups_cause() {
        let view = synced(0)
            .hangup("a", &["L"], -100, Some(16), Some("Normal Clearing"))
            .hangup("b", &["L"], -98, Some(0), Some("Unknown"))
            .hangup("c", &["L"], -99, None, None)
            .build();
        check_one(
            &row("r").lid("L"),
            &view,
            "close hangup_seen at=-98 after=- before=- cause=normal_clearing talk=502",
        );
        // a Uniqueid that matches nothing falls back to the Linkedid
        check_one(
            &row("r").uid("zz").lid("L"),
            &view,
            "close hangup_seen at=-98 after=- before=- cause=normal_clearing talk=502",
        );
    }

    #[test]
    fn transferred_channel_keeps_the_group_alive() {
        // `t` carried L, then was moved to M by a transfer; it is still up, so L's call is not over
        let view = synced(0)
            .hangup("a", &["L"], -100, Some(16), Some("Normal Clearing"))
            .live("t", &["L", "M"])
            .build();
        check_one(&row("r").lid("L"), &view, "keep alive(linkedid)");
        // once it hangs up, L ends at its Hangup: the last one, never earlier
        let view = synced(0)
            .hangup("a", &["L"], -100, Some(16), Some("Normal Clearing"))
            .hangup("t", &["L", "M"], -10, Some(16), Some("Normal Clearing"))
            .build();
        check_one(
            &row("r").lid("L"),
            &view,
            "close hangup_seen at=-10 after=- before=- cause=normal_clearing talk=590",
        );
    }

    /// Issue 14 (1): a Hangup read behind, without a `Timestamp:`, is known only within bounds; they go
    /// to the audit, and a group's bounds are its last member's.
    #[test]
    fn a_hangup_read_behind_closes_with_its_bounds() {
        let behind = |at: i64, after: i64, before: i64| End::HangupSeen {
            at: t(at),
            cause: Some(16),
            cause_txt: Some("Normal Clearing".into()),
            after: Some(t(after)),
            before: Some(t(before)),
        };
        let view = synced(0)
            .ended("u1", &["L"], behind(-95, -99, -90))
            .hangup("u2", &["L"], -97, Some(16), Some("Normal Clearing"))
            .build();
        check_one(
            &row("r").uid("u1"),
            &view,
            "close hangup_seen at=-95 after=-99 before=-90 cause=normal_clearing talk=505",
        );
        check_one(
            &row("r").lid("L"),
            &view,
            "close hangup_seen at=-95 after=-97 before=-90 cause=normal_clearing talk=505",
        );
    }

    #[test]
    fn applies_while_unsynced() {
        let view = unsynced(-50)
            .hangup("u1", &["u1"], -60, Some(16), Some("Normal Clearing"))
            .build();
        check_one(
            &row("r").uid("u1"),
            &view,
            "close hangup_seen at=-60 after=- before=- cause=normal_clearing talk=540",
        );
    }

    #[test]
    fn numeric_cause() {
        let view = synced(0)
            .hangup("u1", &["u1"], -100, Some(16), Some("Normal Clearing"))
            .hangup("u2", &["u2"], -100, None, Some("Normal Clearing"))
            .build();
        let policy = Policy {
            cause_format: CauseFormat::Numeric,
            ..Policy::default()
        };
        check_at(
            &[row("a").uid("u1"), row("b").uid("u2")],
            &view,
            &policy,
            0,
            &[
                "close hangup_seen at=-100 after=- before=- cause=16 talk=500",
                "close hangup_seen at=-100 after=- before=- cause=normal_clearing talk=500",
            ],
        );
    }
}
