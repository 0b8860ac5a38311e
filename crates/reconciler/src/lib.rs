//! Pure decisions: which in-progress calls to close, when they ended and why.
//!
//! The runner calls [`decide`] once per server and round, with the server's open rows (calls with
//! `answered_at` set and `ended_at` NULL), a [`ServerView`] built from the AMI channel map's snapshot, a
//! [`Policy`] and the current time. It gets back one [`Decision`] per row: keep it, close it (with
//! `ended_at`, cause, reason and bounds), or hold it under the mass-close guard.
//!
//! Layout: `model` (input types), `view` (the indexed [`ServerView`]), `policy`, `decision` (output
//! types), `matching` (row → channels), `rules/*` (one module per rule, each with its table tests),
//! `decide` (runs the rules in order).
//!
//! Architecture invariant: this crate uses std and chrono only. It knows nothing of tokio, sqlx, the AMI
//! crates or tracing; it never reads a clock (time is an argument), never does I/O and never fails.
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use reconciler::{decide, Decision, End, EndedChannel, OpenRow, Policy, Reason, ServerState, ServerView};
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
//! let mut view = ServerView::builder(ServerState {
//!     synced: true,
//!     connected: true,
//!     listing_at: Some(now),
//!     ..ServerState::default()
//! });
//! view.ended(
//!     "1795520552.4",
//!     EndedChannel {
//!         linkedids_ever: vec!["1795520552.4".into()],
//!         channel: "PJSIP/2001-00000004".into(),
//!         end: End::HangupSeen {
//!             at: now - Duration::seconds(30),
//!             cause: Some(16),
//!             cause_txt: Some("Normal Clearing".into()),
//!             after: None,
//!             before: None,
//!         },
//!     },
//! );
//! let view = view.build();
//! let rows = [OpenRow {
//!     key: "42".into(),
//!     uniqueid: Some("1795520552.4".into()),
//!     linkedid: None,
//!     channel: None,
//!     extension: Some("2007".into()),
//!     answered_at: now - Duration::seconds(90),
//!     talk_seconds: None,
//! }];
//! let decisions = decide(&rows, &view, &Policy::default(), now);
//! let Decision::Close(close) = &decisions[0] else { panic!() };
//! assert_eq!(close.reason, Reason::HangupSeen);
//! assert_eq!(close.cause, "normal_clearing");
//! assert_eq!(close.talk_seconds, 60);
//! ```
#![warn(missing_docs)]

mod cause;
mod decide;
mod decision;
mod evidence;
mod hash;
mod key;
mod matching;
mod model;
mod names;
mod policy;
mod rules;
mod view;

pub use decide::decide;
pub use decision::{Close, Decision, Ghost, HoldReason, KeepReason, MatchedBy, Reason};
pub use model::{End, EndedChannel, LiveChannel, OpenRow, ServerState};
pub use policy::{
    CauseFormat, Policy, DEFAULT_CLOSE_GHOSTS, DEFAULT_CONFIRM_DELAY, DEFAULT_FALLBACK_AFTER,
    DEFAULT_MAX_CALL_DURATION, DEFAULT_MAX_CLOSE_FRACTION, DEFAULT_MAX_CLOSE_MIN, DEFAULT_SKEW,
    DEFAULT_SUPERSEDED, DEFAULT_TIMEOUT,
};
pub use view::{ServerView, ServerViewBuilder};
