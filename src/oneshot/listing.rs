//! One complete `CoreShowChannels` listing per AMI server, for a one-shot run.
//!
//! [`Listings::take`] connects to every server at once (the client logs in and lists the channels by itself
//! after every login) and waits, up to a deadline, for each map to become synced. A server that does not
//! sync in time (unreachable, bad login, listing refused) is reported with the last reason the client gave,
//! and its connection is stopped; its rows fall back to the seed's rule. The connections of synced servers
//! stay up until [`Listings::close`], so that [`Listings::relist`] can take a confirming listing.

use std::time::Duration;

use ami::channels::{ChannelMap, MapOptions, MapSnapshot};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::settings::ResolvedServer;

/// The outcome for one server.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A complete listing arrived.
    Synced(MapSnapshot),
    /// No complete listing before the deadline.
    Failed {
        /// Why, as far as the client knows (secrets redacted).
        reason: String,
    },
}

struct Link {
    name: String,
    client: Option<ami::Client>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Connections to the servers and their listings.
pub struct Listings {
    map: ChannelMap,
    links: Vec<Link>,
    outcomes: Vec<(String, Outcome)>,
}

impl std::fmt::Debug for Listings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listings")
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

/// Waits until `client`'s map is synced with a listing at or after `not_before`.
async fn synced_after(
    client: &ami::Client,
    map: &ChannelMap,
    name: &str,
    not_before: Option<DateTime<Utc>>,
) -> MapSnapshot {
    let mut state = client.state();
    loop {
        let synced = matches!(*state.borrow_and_update(), ami::State::Synced);
        if synced {
            let snapshot = map.snapshot(name);
            let fresh = match (not_before, snapshot.listing_at) {
                (None, _) => true,
                (Some(t), Some(at)) => at >= t,
                (Some(_), None) => false,
            };
            if snapshot.synced && snapshot.connected && fresh {
                return snapshot;
            }
        }
        if state.changed().await.is_err() {
            // the connection task stopped: nothing more will come
            std::future::pending::<()>().await;
        }
    }
}

fn last_reason(client: &ami::Client) -> String {
    match &*client.state().borrow() {
        ami::State::Disconnected { reason, .. } => crate::redact::text(reason),
        ami::State::Connecting => "could not connect".into(),
        ami::State::LoggedIn | ami::State::Syncing => {
            "the CoreShowChannels listing did not complete".into()
        }
        _ => "no complete listing".into(),
    }
}

impl Listings {
    /// Connects to every server in `servers` and waits up to `wait` for each one's listing.
    pub async fn take(
        servers: &[ResolvedServer],
        wait: Duration,
        clock: clock::SharedClock,
    ) -> Self {
        let map = ChannelMap::new(MapOptions::default());
        let mut links = Vec::new();
        for server in servers {
            let (client, connection) = ami::connect(server.ami.clone(), map.clone(), clock.clone());
            let cancel = connection.cancel_token();
            let task = tokio::spawn(async move {
                if let Err(err) = connection.run().await {
                    tracing::debug!(error = %err, "AMI connection ended");
                }
            });
            links.push(Link {
                name: server.name.clone(),
                client: Some(client),
                cancel,
                task,
            });
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut outcomes = Vec::new();
        for link in &mut links {
            let Some(client) = link.client.as_ref() else {
                continue;
            };
            let got =
                tokio::time::timeout_at(deadline, synced_after(client, &map, &link.name, None))
                    .await;
            let outcome = match got {
                Ok(snapshot) => Outcome::Synced(snapshot),
                Err(_) => {
                    let reason = last_reason(client);
                    link.cancel.cancel();
                    link.client = None;
                    Outcome::Failed { reason }
                }
            };
            outcomes.push((link.name.clone(), outcome));
        }
        Self {
            map,
            links,
            outcomes,
        }
    }

    /// Each server's outcome, in the order given to [`take`](Self::take).
    pub fn outcomes(&self) -> &[(String, Outcome)] {
        &self.outcomes
    }

    /// Whether server `name` sent events without a `Timestamp:` header (`timestampevents` is off).
    pub fn events_untimed(&self, name: &str) -> bool {
        self.map.server(name).saw_untimed_event()
    }

    /// The synced snapshot of `name`, if its listing arrived.
    pub fn snapshot(&self, name: &str) -> Option<&MapSnapshot> {
        self.outcomes.iter().find_map(|(n, o)| match o {
            Outcome::Synced(s) if n == name => Some(s),
            _ => None,
        })
    }

    /// Takes a new listing of `name` that completes at or after `not_before` (it reconnects, which lists
    /// again), waiting up to `wait`. `None` if the server is not connected or the listing does not come.
    pub async fn relist(
        &mut self,
        name: &str,
        not_before: DateTime<Utc>,
        wait: Duration,
    ) -> Option<MapSnapshot> {
        let link = self.links.iter().find(|l| l.name == name)?;
        let client = link.client.as_ref()?;
        client.force_reconnect();
        let snapshot = tokio::time::timeout(
            wait,
            synced_after(client, &self.map, name, Some(not_before)),
        )
        .await
        .ok()?;
        if let Some(slot) = self.outcomes.iter_mut().find(|(n, _)| n == name) {
            slot.1 = Outcome::Synced(snapshot.clone());
        }
        Some(snapshot)
    }

    /// Logs off from every server and waits (briefly) for the connections to end.
    pub async fn close(self) {
        for link in self.links {
            drop(link.client);
            link.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), link.task).await;
        }
    }
}
