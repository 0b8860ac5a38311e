//! Sans-IO Asterisk Manager Interface (AMI) protocol.
//!
//! AMI is a line protocol over TCP: the server greets with one banner line
//! (`Asterisk Call Manager/11.0.0`), then both sides exchange *messages*, each a list of `Key: Value` lines
//! ended by a blank line. This crate turns bytes into [`Message`]s and actions into bytes, and nothing else:
//! no sockets, no async runtime, no clock.
//!
//! Layout:
//! - [`message`]: [`Message`], an ordered, zero-copy list of headers over one `bytes::Bytes` frame;
//! - [`parse`]: the incremental framer ([`Parser`]) built on `nom` streaming parsers, with size limits
//!   and resynchronisation after bad frames;
//! - [`event`]: typed, borrowed views of the events callwatch needs ([`Event`]), unknown events passed
//!   through;
//! - [`summary`]: [`StreamSummary`], the counts of a stream (as the recordings' `truth.json` defines them);
//! - `synthetic` (feature `synthetic`): a deterministic generator of realistic AMI streams;
//! - [`action`]: building and encoding actions, with header-injection checks;
//! - [`error`]: [`ParseError`] and [`EncodeError`].
//!
//! ```
//! use ami_proto::{Parser, Frame};
//! use bytes::BytesMut;
//!
//! let mut parser = Parser::default();
//! let mut buf = BytesMut::from(&b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nUniqueid: 1.2\r\n\r\n"[..]);
//! assert!(matches!(parser.next_frame(&mut buf), Some(Ok(Frame::Banner(_)))));
//! let Some(Ok(Frame::Message(msg))) = parser.next_frame(&mut buf) else { panic!() };
//! assert_eq!(msg.event(), Some("Hangup"));
//! assert_eq!(msg.get_str("uniqueid"), Some("1.2"));
//! ```
#![warn(missing_docs)]

pub mod action;
pub mod error;
pub mod event;
pub mod message;
pub mod parse;
pub mod summary;
#[cfg(feature = "synthetic")]
pub mod synthetic;

pub use action::Action;
pub use error::{EncodeError, ParseError};
pub use event::{ChannelInfo, ChannelState, Event, EventList, Timestamp};
pub use message::{Header, Message, MessageKind};
pub use parse::{Frame, Limits, Parser};
pub use summary::StreamSummary;
