//! `callwatch events --ami URL`: print a live AMI connection's messages.
//!
//! Connects with the `ami` client (login, keepalive and the channel-map resync included), subscribes to its
//! events and feeds every message to the same [`EventSink`] as the file input. The command ends when the
//! session ends (the server closes, or `--max-events` is reached); it does not reconnect. A refused login
//! or an unreachable server is an error. Messages the subscriber missed because the output could not keep
//! up are reported on stderr and in the exit status.

use std::sync::Arc;

use ami::{ChannelMap, Config, Event, MapOptions, TokioClock};
use ami_proto::Frame;
use anyhow::Context as _;

use super::events::{EventSink, Flow};

/// Events taken from the subscription per wake-up.
const BATCH: usize = 1024;
/// Subscriber buffer, in events (about 0.5 KiB each): absorbs bursts while the output catches up, and bounds
/// memory.
const BUFFER: usize = 16 * 1024;

/// Connects to `url`, logs in and prints every message into `sink` until the session ends.
pub async fn run(url: &str, sink: &mut EventSink) -> anyhow::Result<()> {
    let mut cfg = Config::from_url(url).context("invalid --ami URL")?;
    cfg.event_buffer = cfg.event_buffer.max(BUFFER);
    // The map is only needed for the resync; keep no history of ended channels.
    let map = ChannelMap::new(MapOptions {
        max_tombstones: 1024,
        gone_queue: 0,
        ..MapOptions::default()
    });
    let (client, connection) = ami::connect(cfg, map, Arc::new(TokioClock::new()));
    let mut events = client.subscribe();
    let task = tokio::spawn(connection.run());
    let mut batch = Vec::with_capacity(BATCH);
    let mut logged_in = false;
    let mut lagged = 0u64;
    let mut failure = None;
    'session: loop {
        if events.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        for event in batch.drain(..) {
            match event {
                Event::Message(m) => {
                    sink.add_bytes(m.raw().len() as u64);
                    if sink.frame(&Ok(Frame::Message(m)))? == Flow::Stop {
                        break 'session;
                    }
                }
                Event::Connected { epoch, banner } => {
                    logged_in = true;
                    tracing::info!(epoch, "logged in");
                    if let Some(banner) = banner {
                        if sink.frame(&Ok(Frame::Banner(banner)))? == Flow::Stop {
                            break 'session;
                        }
                    }
                }
                Event::Lagged(n) => {
                    lagged += n;
                    tracing::warn!(
                        missed = n,
                        "the output could not keep up; messages were dropped"
                    );
                }
                Event::Disconnected { reason } => {
                    if !logged_in {
                        failure = Some(reason);
                    }
                    break 'session;
                }
                _ => {}
            }
        }
    }
    drop(events);
    drop(client);
    // Dropping the last client makes the connection log off and stop.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
    sink.finish(0)?;
    if let Some(reason) = failure {
        anyhow::bail!("cannot read from AMI: {reason}");
    }
    if lagged > 0 {
        anyhow::bail!("{lagged} messages were dropped because the output could not keep up");
    }
    Ok(())
}
