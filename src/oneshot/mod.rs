//! The one-shot commands (`cleanup`, `status`, `undo`): what they share besides the pipeline.
//!
//! Layout (one job per module):
//! - [`exit`]: the documented exit codes;
//! - [`groups`]: which server's channels judge which row (rows of unwatched servers get the seed's rule);
//! - [`plan`]: open rows × (a channel listing, or none) → what `cleanup` would do to each old row, decided
//!   by the reconciler;
//! - [`listing`]: connect to each AMI server, wait for one complete `CoreShowChannels` listing, and take
//!   another one when the mass-close guard asks for confirmation;
//! - [`apply`]: the audited, conditional closes, logged with the seed's phrases and broadcast;
//! - [`prompt`]: the `[y/N]` confirmation;
//! - [`render`]: text tables and the `--json` shapes;
//! - [`daemon_status`]: the running daemon's `/status`, for `callwatch status`;
//! - [`when`]: the times `callwatch undo --since` accepts.

pub mod apply;
pub mod daemon_status;
pub mod exit;
pub mod groups;
pub mod listing;
pub mod plan;
pub mod prompt;
pub mod render;
pub mod when;

/// Name of the one-shot commands' lock, so two cleanups never overlap (the seed's `withoutOverlapping`).
/// Daemons hold one lock per server instead, and announce themselves in `callwatch_daemons`: a cleanup
/// refuses to write while one is alive.
pub const LOCK_NAME: &str = "callwatch-daemon";
