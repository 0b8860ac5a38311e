//! Async Asterisk Manager Interface (AMI) client for callwatch.
//!
//! The crate keeps a live map of one or more Asterisks' channels and tells when a channel is gone, which is
//! what callwatch needs to close calls that ended without the application noticing.
//!
//! Layout (one job per module):
//! - [`config`] / [`url`]: [`Config`] and the `ami://user:secret@host:5038?server=NAME` URL; the secret is
//!   never printed;
//! - [`codec`]: a thin tokio-util codec over [`ami_proto::Parser`];
//! - [`core`]: [`Core`], the sans-IO connection state machine (login, correlation, event lists, keepalive,
//!   resync), driven by bytes and time, so recordings can drive it on virtual time;
//! - [`channels`]: [`ChannelMap`], the live channel map with resync merge, restart detection, tombstones and
//!   [`ChannelGone`] notifications;
//! - [`connection`] / [`client`]: the tokio driver ([`Connection`], spawned by the caller) and its cheap
//!   handle ([`Client`]);
//! - [`connector`] / [`tls`]: TCP and TLS dialing; [`backoff`]: reconnect delays; [`error`]: [`Error`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), ami::Error> {
//! use std::sync::Arc;
//!
//! let cfg = ami::Config::from_url("ami://watchdog@127.0.0.1:5038?server=pbx1&secret_env=AMI_SECRET")?;
//! let map = ami::ChannelMap::default();
//! let (client, connection) = ami::connect(cfg, map.clone(), Arc::new(ami::TokioClock::new()));
//! tokio::spawn(connection.run());
//! let mut events = client.subscribe();
//! while let Some(event) = events.recv().await {
//!     if let ami::Event::Resynced { live, .. } = event {
//!         println!("{live} channels up; synced = {}", map.snapshot("pbx1").synced);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod backoff;
pub mod channels;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod connector;
pub mod core;
pub mod error;
mod reader;
pub mod tls;
pub mod url;

pub use crate::channels::{
    ChannelEnd, ChannelGone, ChannelMap, EndedChannel, ListingOutcome, LiveChannel, MapOptions,
    MapSnapshot, ServerChannels,
};
pub use crate::client::{Client, ClientStats, Event, State, Subscription};
pub use crate::codec::AmiCodec;
pub use crate::config::{AuthMethod, BackoffConfig, Config, Secret, TlsConfig};
pub use crate::connection::{connect, connect_with, Connection, TokioClock};
pub use crate::connector::{BoxedTransport, ChannelConnector, Connector, TcpConnector, Transport};
pub use crate::core::{Core, CoreStats, EventList, Output, Reply, ReplyKind, RequestId};
pub use crate::error::{Error, Result};
