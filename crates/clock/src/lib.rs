//! Time sources for callwatch.
//!
//! Every component that needs "now" (the AMI connection state machine, the live channel map, the store's
//! `updated_at`, the runner's sweeps) asks a [`Clock`] instead of the operating system, so the whole
//! pipeline can run on the wall clock in the daemon and on *virtual* time when a recorded session is replayed
//! (`callwatch replay`), where time is whatever the recording says it was.
//!
//! ```
//! use clock::{Clock, VirtualClock};
//! use chrono::{TimeZone, Utc};
//!
//! let start = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
//! let clock = VirtualClock::new(start);
//! clock.advance(chrono::Duration::seconds(90));
//! assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// Used by `callwatch replay` (driven by a recording's arrival times) and by tests.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    micros: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A virtual clock that reads `start` until it is moved.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(start.timestamp_micros())),
        }
    }

    /// Sets the time. Moving backwards is ignored: virtual time never runs backwards.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros
            .fetch_max(at.timestamp_micros(), Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (negative durations are ignored).
    pub fn advance(&self, by: Duration) {
        if let Some(us) = by.num_microseconds() {
            if us > 0 {
                self.micros.fetch_add(us, Ordering::SeqCst);
            }
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Wall time mapped onto another timeline at a speed factor: `origin + (elapsed wall time × speed)`.
///
/// `callwatch demo` runs the real daemon against a recording played `speed` times faster; with this clock
/// every time the daemon writes is a time of the recording.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    origin: DateTime<Utc>,
    started: std::time::Instant,
    speed: f64,
}

impl ScaledClock {
    /// Reads `origin` now, then runs `speed` times faster than the wall clock (`speed` <= 0 counts as 1).
    pub fn new(origin: DateTime<Utc>, speed: f64) -> Self {
        Self {
            origin,
            started: std::time::Instant::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started.elapsed().as_secs_f64() * self.speed;
        self.origin + Duration::microseconds((elapsed * 1_000_000.0) as i64)
    }
}

/// A shared, dynamically chosen clock.
pub type SharedClock = Arc<dyn Clock>;

/// Converts fractional Unix seconds (as in the recordings' `.chunks.jsonl`) to a UTC instant.
///
/// Returns `None` for values outside chrono's range or that are not finite.
pub fn from_unix_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    let micros = (seconds * 1_000_000.0).round();
    if micros.abs() > i64::MAX as f64 {
        return None;
    }
    DateTime::from_timestamp_micros(micros as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn virtual_clock_never_runs_backwards() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = VirtualClock::new(t0);
        clock.set(t0 - Duration::seconds(5));
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::seconds(-3));
        assert_eq!(clock.now(), t0);
        let shared = clock.clone();
        shared.advance(Duration::milliseconds(1500));
        assert_eq!(clock.now(), t0 + Duration::milliseconds(1500));
    }

    #[test]
    fn scaled_clock_runs_faster_from_its_origin() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ScaledClock::new(t0, 1000.0);
        let a = clock.now();
        assert!(a >= t0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(2) {}
        // At least 2 ms of wall time passed: at least 2 s on the scaled timeline.
        assert!(clock.now() - t0 >= Duration::seconds(2));
    }

    #[test]
    fn unix_seconds_convert_with_microsecond_precision() {
        let t = from_unix_seconds(1795522144.335284).unwrap();
        assert_eq!(t.timestamp(), 1795522144);
        assert_eq!(t.timestamp_subsec_micros(), 335284);
        assert!(from_unix_seconds(f64::NAN).is_none());
    }
}
