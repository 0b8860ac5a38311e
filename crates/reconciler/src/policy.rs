//! [`Policy`]: the knobs of the rules, with their defaults as constants.

use chrono::Duration;

/// Default clock-skew allowance between the application's `answered_at` and callwatch's listing time.
pub const DEFAULT_SKEW: Duration = Duration::seconds(5);
/// Default age after which an unjudgeable row is closed by `timeout_cleanup`.
pub const DEFAULT_TIMEOUT: Duration = Duration::minutes(30);
/// Default time a server must stay unsynced before its rows become unjudgeable.
pub const DEFAULT_FALLBACK_AFTER: Duration = Duration::minutes(2);
/// The `superseded` rule is on by default.
pub const DEFAULT_SUPERSEDED: bool = true;
/// Default share of the open rows above which a round's guardable closes are held.
pub const DEFAULT_MAX_CLOSE_FRACTION: f64 = 0.9;
/// Default minimum number of guardable closes for the mass-close guard to act.
pub const DEFAULT_MAX_CLOSE_MIN: usize = 50;
/// Default delay before a later listing may confirm held closes.
pub const DEFAULT_CONFIRM_DELAY: Duration = Duration::seconds(15);
/// Default age beyond which a row kept alive by a channel is a suspected ghost.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::hours(4);
/// Suspected ghosts are reported, not closed, by default.
pub const DEFAULT_CLOSE_GHOSTS: bool = false;

/// How a close's `cause` is written for `hangup_seen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CauseFormat {
    /// The Hangup's `Cause-txt` in snake case (`Normal Clearing` → `normal_clearing`); the numeric code
    /// when there is no text; `unknown` when there is neither.
    #[default]
    Text,
    /// The Hangup's numeric `Cause` (`16`); the snake-case text when there is no code; `unknown` when
    /// there is neither.
    Numeric,
}

/// The rules' settings. `Policy::default()` uses the `DEFAULT_*` constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Clock-skew allowance: a row answered later than `listing_at - skew` is not judged by that listing.
    pub skew: Duration,
    /// Unjudgeable rows answered more than `timeout` ago are closed by `timeout_cleanup`.
    pub timeout: Duration,
    /// A server unsynced for more than `fallback_after` makes its rows unjudgeable.
    pub fallback_after: Duration,
    /// Whether the `superseded` rule (one in-progress call per extension) is on.
    pub superseded: bool,
    /// The mass-close guard acts when a round would close more than this share of the open rows (0..=1;
    /// a value that is not finite counts as [`DEFAULT_MAX_CLOSE_FRACTION`]) …
    pub max_close_fraction: f64,
    /// … and at least this many of them.
    pub max_close_min: usize,
    /// Held closes are confirmed by a listing taken at least this long after they were held.
    pub confirm_delay: Duration,
    /// How `hangup_seen` causes are written.
    pub cause_format: CauseFormat,
    /// A row answered longer ago than this and still kept alive by a channel is a suspected ghost
    /// (Asterisk can keep a channel after its call is gone); `None`: never.
    pub max_call_duration: Option<Duration>,
    /// Close suspected ghosts (`ghost_channel`, on a synced map) instead of only reporting them.
    pub close_ghosts: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            skew: DEFAULT_SKEW,
            timeout: DEFAULT_TIMEOUT,
            fallback_after: DEFAULT_FALLBACK_AFTER,
            superseded: DEFAULT_SUPERSEDED,
            max_close_fraction: DEFAULT_MAX_CLOSE_FRACTION,
            max_close_min: DEFAULT_MAX_CLOSE_MIN,
            confirm_delay: DEFAULT_CONFIRM_DELAY,
            cause_format: CauseFormat::Text,
            max_call_duration: Some(DEFAULT_MAX_CALL_DURATION),
            close_ghosts: DEFAULT_CLOSE_GHOSTS,
        }
    }
}

impl Policy {
    /// `max_close_fraction` clamped to 0..=1, or the default when it is not a finite number.
    pub fn close_fraction(&self) -> f64 {
        if self.max_close_fraction.is_finite() {
            self.max_close_fraction.clamp(0.0, 1.0)
        } else {
            DEFAULT_MAX_CLOSE_FRACTION
        }
    }
}
