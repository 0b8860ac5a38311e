//! Turning the AMI channel map's snapshot into the reconciler's input.

use ami::channels::{ChannelEnd, MapSnapshot};
use chrono::{DateTime, Utc};
use reconciler::{End, EndedChannel, LiveChannel, ServerState, ServerView};

/// What the runner remembers about one server between rounds.
#[derive(Debug, Clone, Default)]
pub struct ServerMemory {
    /// Rows held by the mass-close guard, and since when.
    pub held: std::collections::HashMap<String, DateTime<Utc>>,
    /// Some open row of this server has matched a channel before.
    pub ids_matched_before: bool,
    /// Since when this process has been watching the server (its start). A map that has never been synced
    /// counts as unsynced since then, so `fallback_after` runs from process start when AMI was never
    /// reachable (wrong port or password, Asterisk down at boot, listing refused).
    pub watching_since: Option<DateTime<Utc>>,
}

/// Builds the reconciler's view of one server from a map snapshot and the runner's memory.
pub fn server_view(snapshot: &MapSnapshot, memory: &ServerMemory) -> ServerView {
    let mut builder = ServerView::builder(ServerState {
        synced: snapshot.synced,
        connected: snapshot.connected,
        unsynced_since: if snapshot.synced {
            None
        } else {
            snapshot.unsynced_since.or(memory.watching_since)
        },
        listing_at: snapshot.listing_at,
        epoch: snapshot.epoch,
        ids_matched_before: memory.ids_matched_before,
        booted_at: snapshot.booted_at,
    });
    for (uniqueid, live) in &snapshot.live {
        builder.live(
            uniqueid.clone(),
            LiveChannel {
                linkedids_ever: live.linkedids_ever.clone(),
                channel: live.channel.clone(),
                first_seen: live.first_seen,
                last_known_alive: live.last_known_alive,
                last_activity: live.last_activity,
                epoch: live.epoch,
            },
        );
    }
    for (uniqueid, ended) in &snapshot.ended {
        let end = match &ended.end {
            ChannelEnd::HangupSeen {
                at,
                cause,
                cause_txt,
                after,
                before,
            } => End::HangupSeen {
                at: *at,
                cause: *cause,
                cause_txt: cause_txt.clone(),
                after: *after,
                before: *before,
            },
            // A channel never known alive in a synced view carries no evidence of its own: leave it out, so
            // a row that follows it is judged as "never seen alive" (ended_after = its answered_at).
            ChannelEnd::Gone { after: None, .. } => continue,
            ChannelEnd::Gone {
                after: Some(after),
                before,
            } => End::Gone {
                after: *after,
                before: *before,
            },
            ChannelEnd::Restart { at, after, before } => End::Restart {
                at: *at,
                after: after.unwrap_or(*at),
                before: *before,
            },
            _ => continue,
        };
        builder.ended(
            uniqueid.clone(),
            EndedChannel {
                linkedids_ever: ended.linkedids_ever.clone(),
                channel: ended.channel.clone(),
                end,
            },
        );
    }
    for (key, at) in &memory.held {
        builder.held(key.clone(), *at);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::ChannelMap;
    use ami_proto::Message;
    use chrono::{Duration, TimeZone};
    use reconciler::{decide, Decision, OpenRow, Policy};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_795_520_000 + secs, 0).unwrap()
    }

    fn item(uid: &str) -> Message {
        Message::from_pairs([
            ("Event", "CoreShowChannel"),
            ("ActionID", "1"),
            ("Channel", "PJSIP/2001-00000001"),
            ("ChannelStateDesc", "Up"),
            ("Uniqueid", uid),
            ("Linkedid", uid),
        ])
    }

    fn row(key: &str, uniqueid: &str, answered_at: DateTime<Utc>) -> OpenRow {
        OpenRow {
            key: key.into(),
            uniqueid: Some(uniqueid.into()),
            linkedid: None,
            channel: None,
            extension: None,
            answered_at,
            talk_seconds: None,
        }
    }

    /// Issue 14 (2): Asterisk takes a listing's snapshot when the action arrives, not when the last item
    /// is read. A call answered while a long listing streams (its channel is not in the snapshot, and its
    /// `Newchannel` is still unread) is never closed by that listing; a call answered well before it is.
    #[test]
    fn a_call_answered_while_a_listing_streams_is_not_judged_by_it() {
        let map = ChannelMap::default();
        let s = map.server("pbx");
        s.begin_session(t(0));
        let gen = s.begin_listing(t(0));
        for i in 0..500 {
            s.listed(gen, &item(&format!("1795520000.{i}")), t(i / 50));
        }
        s.finish_listing(gen, t(12)).unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.listing_at, Some(t(0)));
        let view = server_view(&snap, &ServerMemory::default());
        let rows = [
            row("during", "1795520003.1", t(3)),
            row("before", "1795519900.1", t(0) - Duration::seconds(60)),
            row("listed", "1795520000.7", t(-30)),
        ];
        let decisions = decide(&rows, &view, &Policy::default(), t(12));
        assert!(
            matches!(decisions[0], Decision::Keep { .. }),
            "{:?}",
            decisions[0]
        );
        let Decision::Close(close) = &decisions[1] else {
            panic!("{:?}", decisions[1])
        };
        assert_eq!(close.ended_before, Some(t(0)));
        assert!(matches!(decisions[2], Decision::Keep { .. }));
    }
}
