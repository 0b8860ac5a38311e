//! Rule: rows answered in the future are never judged.

use chrono::{DateTime, Utc};

use crate::model::OpenRow;

/// A row answered after `now` (the application's clock runs ahead of callwatch's) is not judged by any
/// rule this round: it is kept, whatever the channels say.
pub(crate) fn answered_in_future(row: &OpenRow, now: DateTime<Utc>) -> bool {
    row.answered_at > now
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;

    #[test]
    fn future_rows_are_never_judged() {
        let gone = synced(0).gone("u1", &["u1"], -30, 0).build();
        let hung_up = synced(0)
            .hangup("u1", &["u1"], -1, Some(16), Some("Normal Clearing"))
            .build();
        let cases = [
            (
                row("r").uid("u1").at(-60),
                &gone,
                "close channel_gone at=-30 after=-30 before=0 cause=channel_gone talk=30",
            ),
            (row("r").uid("u1").at(1), &gone, "keep future"),
            (row("r").uid("u1").at(1), &hung_up, "keep future"),
            (row("r").at(1), &gone, "keep future"),
            // exactly `now` is not the future; the Hangup before it clamps to answered_at
            (
                row("r").uid("u1").at(0),
                &hung_up,
                "close hangup_seen at=0 after=- before=- cause=normal_clearing talk=0",
            ),
        ];
        for (r, view, expect) in cases {
            check_one(&r, view, expect);
        }
    }
}
