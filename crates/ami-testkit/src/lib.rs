//! A fake AMI server that replays recorded sessions or plays a scripted PBX, for tests and the demo.
//!
//! Layout:
//! - [`session`]: [`Session`], one recorded (or synthetic) connection as pure data;
//! - [`flow`]: JSON event lists (`[{"Event": …}, …]`) as [`ami_proto::Message`]s;
//! - [`pairing`]: [`ActionPairing`], sans-IO pairing of client actions with recorded ones (ActionID
//!   remapping, held-back responses, built-in answers), shared by the server and `callwatch replay`;
//! - [`pbx`]: [`ScriptedPbx`], a sans-IO PBX with its own channel table that answers listings truthfully;
//! - [`server`]: [`FakeAmi`], the TCP server that serves sessions to successive connections;
//! - [`pbx_server`]: [`PbxServer`], a [`ScriptedPbx`] on TCP, driven by commands or by a flow;
//! - [`load`]: [`LoadServer`], a generated event stream as fast as the socket takes it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ami_testkit::Error> {
//! use ami_testkit::{FakeAmi, FakeAmiConfig, Session};
//! let sessions = Session::load_scenario("fixtures/ami".as_ref(), "disconnect-gap")?;
//! let server = FakeAmi::start(FakeAmiConfig::new(sessions).speed(10.0)).await?;
//! println!("fake Asterisk on {}", server.local_addr());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod churn;
pub mod error;
pub mod flow;
pub mod load;
pub mod pairing;
pub mod pbx;
pub mod pbx_server;
pub mod server;
pub mod session;

pub use error::{Error, Result};
pub use load::{LoadConfig, LoadServer};
pub use pairing::{ActionPairing, ClientOutcome, Output, Progress, UnsentPolicy};
pub use pbx::{CallId, Channel, PbxSession, Reply, ScriptedPbx};
pub use pbx_server::PbxServer;
pub use server::{FakeAmi, FakeAmiConfig, Pace, ServerEvent};
pub use session::{
    Chunk, CloseReason, FrameKind, FrameSpan, Note, NoteKind, RecordedAction, Session, Timing,
};
