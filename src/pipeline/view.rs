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
}

/// Builds the reconciler's view of one server from a map snapshot and the runner's memory.
pub fn server_view(snapshot: &MapSnapshot, memory: &ServerMemory) -> ServerView {
    let mut builder = ServerView::builder(ServerState {
        synced: snapshot.synced,
        connected: snapshot.connected,
        unsynced_since: if snapshot.synced {
            None
        } else {
            snapshot.unsynced_since
        },
        listing_at: snapshot.listing_at,
        epoch: snapshot.epoch,
        ids_matched_before: memory.ids_matched_before,
    });
    for (uniqueid, live) in &snapshot.live {
        builder.live(
            uniqueid.clone(),
            LiveChannel {
                linkedids_ever: live.linkedids_ever.clone(),
                first_seen: live.first_seen,
                last_known_alive: live.last_known_alive,
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
            ChannelEnd::Restart { at, after } => End::Restart {
                at: *at,
                after: after.unwrap_or(*at),
            },
            _ => continue,
        };
        builder.ended(
            uniqueid.clone(),
            EndedChannel {
                linkedids_ever: ended.linkedids_ever.clone(),
                end,
            },
        );
    }
    for (key, at) in &memory.held {
        builder.held(key.clone(), *at);
    }
    builder.build()
}
