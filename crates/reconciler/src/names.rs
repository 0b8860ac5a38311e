//! [`ChannelNames`]: the rows' channel names, resolved once per round against the view's channels.
//!
//! Asterisk numbers most channel names within a boot (`PJSIP/2001-0000001a`), so in one boot a name names
//! one channel; after a restart the numbers start again. A row's `channel` therefore counts only for rows
//! answered in the boot the map knows (see [`crate::ServerState::booted_at`]), and only channels of that
//! boot answer to it: live channels and tombstones, but not the channels a restart ended.

use chrono::Duration;

use crate::evidence::Evidence;
use crate::hash::FxHashMap;
use crate::model::{End, OpenRow};
use crate::view::ServerView;

/// Where a channel name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameSlot<'v> {
    /// A live channel (this Uniqueid) has this name.
    Live(&'v str),
    /// No live channel has it; the tombstone that ended last says how it ended.
    Ended(Evidence<'v>),
}

/// The channel names the rows carry, each resolved to the view's channel of that name.
#[derive(Debug, Default)]
pub(crate) struct ChannelNames<'v> {
    slots: FxHashMap<&'v str, NameSlot<'v>>,
    /// Rows answered before this are from an older boot: their name is ignored.
    boot_floor: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'v> ChannelNames<'v> {
    /// Resolves the names of `rows` against `view`: one pass over the view's channels, and none when no
    /// row carries a usable name.
    pub(crate) fn new(rows: &[OpenRow], view: &'v ServerView, skew: Duration) -> Self {
        let boot_floor = view
            .state()
            .booted_at
            .map(|b| b.checked_sub_signed(skew).unwrap_or(b));
        let mut names = ChannelNames {
            slots: FxHashMap::default(),
            boot_floor,
        };
        let wanted: std::collections::HashSet<&str> =
            rows.iter().filter_map(|r| names.usable(r)).collect();
        if wanted.is_empty() {
            return names;
        }
        for (uid, ch) in view.live_channels() {
            if wanted.contains(ch.channel.as_str()) {
                names.slots.insert(ch.channel.as_str(), NameSlot::Live(uid));
            }
        }
        for (uid, ch) in view.ended_channels() {
            // A channel the restart ended belongs to an older boot than any row whose name counts.
            if matches!(ch.end, End::Restart { .. }) || !wanted.contains(ch.channel.as_str()) {
                continue;
            }
            let ev = Evidence::of(uid, &ch.end);
            names
                .slots
                .entry(ch.channel.as_str())
                .and_modify(|slot| {
                    if let NameSlot::Ended(old) = slot {
                        if ev.point > old.point {
                            *old = ev;
                        }
                    }
                })
                .or_insert(NameSlot::Ended(ev));
        }
        names
    }

    /// The row's channel name, when it has one and was answered in the map's boot.
    fn usable<'r>(&self, row: &'r OpenRow) -> Option<&'r str> {
        let name = row
            .channel
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())?;
        match self.boot_floor {
            Some(floor) if row.answered_at < floor => None,
            _ => Some(name),
        }
    }

    /// The Uniqueid of the live channel named as the row's `channel`, if any.
    pub(crate) fn live_uniqueid(&self, row: &OpenRow) -> Option<&'v str> {
        match self.lookup(row)? {
            NameSlot::Live(uid) => Some(uid),
            NameSlot::Ended(_) => None,
        }
    }

    /// Where the row's channel name stands (`None`: no usable name, or no channel of that name known).
    pub(crate) fn lookup(&self, row: &OpenRow) -> Option<NameSlot<'v>> {
        self.slots.get(self.usable(row)?).copied()
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testkit::*;
    use crate::End;

    const NAME: &str = "PJSIP/2001-0000002a";

    fn hangup(at: i64) -> End {
        End::HangupSeen {
            at: t(at),
            cause: Some(16),
            cause_txt: Some("Normal Clearing".into()),
            after: None,
            before: None,
        }
    }

    #[test]
    fn a_live_channel_of_that_name_keeps_the_row() {
        // the call's first channel took another Linkedid while callwatch was away: only its name is left
        let view = synced(0).live_named("u2", NAME, &["M"]).build();
        check(
            &[
                row("lid").lid("L").chan(NAME),
                row("lid-only").lid("L"),
                row("name-only").chan(NAME),
                row("padded").lid("L").chan(&format!(" {NAME} ")),
            ],
            &view,
            &[
                "keep alive(channel)",
                "close channel_gone at=0 after=-600 before=0 cause=channel_gone talk=600",
                "keep alive(channel)",
                "keep alive(channel)",
            ],
        );
    }

    #[test]
    fn never_closed_while_the_name_is_live() {
        // its Uniqueid's Hangup was seen, but a live channel of the same boot has its name
        let view = synced(0)
            .hangup("u1", &["L"], -30, Some(16), Some("Normal Clearing"))
            .live_named("u2", NAME, &["M"])
            .build();
        check(
            &[row("a").uid("u1").chan(NAME), row("b").uid("u1")],
            &view,
            &[
                "keep alive(channel)",
                "close hangup_seen at=-30 after=- before=- cause=normal_clearing talk=570",
            ],
        );
    }

    #[test]
    fn only_in_the_same_boot() {
        // Asterisk booted at -100: names from before repeat, so a row answered earlier ignores its name
        let view = synced(0)
            .state(|s| s.booted_at = Some(t(-100)))
            .live_named("u2", NAME, &["M"])
            .build();
        check(
            &[
                row("old").lid("L").chan(NAME).at(-600),
                row("skew").lid("L").chan(NAME).at(-104),
                row("new").lid("L").chan(NAME).at(-50),
            ],
            &view,
            &[
                "close channel_gone at=0 after=-600 before=0 cause=channel_gone talk=600",
                "keep alive(channel)",
                "keep alive(channel)",
            ],
        );
        // the channels a restart ended belong to the older boot: never evidence for a name
        let view = synced(0)
            .state(|s| s.booted_at = Some(t(-100)))
            .ended_named(
                "u2",
                NAME,
                &["M"],
                End::Restart {
                    at: t(-100),
                    after: t(-110),
                    before: None,
                },
            )
            .build();
        check(
            &[
                row("new").chan(NAME).at(-50),
                row("lid").lid("L").chan(NAME).at(-50),
            ],
            &view,
            &[
                "keep awaiting_timeout(no_ids=true, at=1750)",
                "close channel_gone at=0 after=-50 before=0 cause=channel_gone talk=50",
            ],
        );
    }

    #[test]
    fn tombstones_of_the_name_and_the_group() {
        let view = synced(0)
            .ended_named("u2", NAME, &["M"], hangup(-20))
            .hangup("g", &["L"], -40, Some(17), Some("User busy"))
            .live("x", &["X"])
            .build();
        check(
            &[
                // the call lasted while either was up: the later Hangup, the first Hangup's cause
                row("both").lid("L").chan(NAME),
                row("name-only").chan(NAME),
                // the group is still up
                row("alive").lid("X").chan(NAME),
                // an unknown name is no evidence
                row("unknown").chan("PJSIP/9999-00000001"),
            ],
            &view,
            &[
                "close hangup_seen at=-20 after=- before=- cause=user_busy talk=580",
                "close hangup_seen at=-20 after=- before=- cause=normal_clearing talk=580",
                "keep alive(linkedid)",
                "keep awaiting_timeout(no_ids=true, at=1200)",
            ],
        );
        // a name reused within the boot (DAHDI, IAX2): the tombstone that ended last answers
        let view = synced(0)
            .ended_named("u1", NAME, &["A"], hangup(-300))
            .ended_named("u2", NAME, &["B"], hangup(-20))
            .build();
        check_one(
            &row("r").chan(NAME),
            &view,
            "close hangup_seen at=-20 after=- before=- cause=normal_clearing talk=580",
        );
    }
}
