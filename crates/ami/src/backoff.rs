//! Reconnect delays: capped exponential growth (on the `backoff` crate) with jitter that never passes the cap.
//!
//! The nominal delay of attempt *n* (from 0) is `min(initial * multiplier^n, max)`. The delay used is a
//! uniform draw in `[nominal * (1 - jitter), min(nominal * (1 + jitter), max)]`: below the cap it spreads
//! both ways, at the cap only downwards, so no delay is ever longer than `max` (`reconnect_max`) and clients
//! that lost the same Asterisk do not all come back at the same instant.

use std::time::Duration;

use backoff::backoff::Backoff as _;
use backoff::ExponentialBackoff;
use rand::Rng as _;

use crate::config::BackoffConfig;

/// Delays between reconnect attempts. [`Backoff::reset`] after a session that logged in.
#[derive(Debug)]
pub struct Backoff {
    /// The nominal (unjittered) schedule.
    inner: ExponentialBackoff,
    jitter: f64,
    attempts: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(cfg: &BackoffConfig) -> Self {
        // A first delay longer than the cap is the cap.
        let initial = cfg.initial.min(cfg.max);
        let inner = ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            // Jitter is applied by `jittered`, bounded by the cap.
            randomization_factor: 0.0,
            multiplier: cfg.multiplier.max(1.0),
            max_interval: cfg.max,
            // Retry forever: the connection gives up only when every client is gone.
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        Self {
            inner,
            jitter: cfg.jitter,
            attempts: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let max = self.inner.max_interval;
        let nominal = self.inner.next_backoff().unwrap_or(max);
        jittered(nominal, max, self.jitter, rand::thread_rng().gen())
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.attempts = 0;
    }
}

/// The delay for a `nominal` one: `u` in `[0, 1)` picks a point of `[nominal * (1 - jitter),
/// min(nominal * (1 + jitter), max)]` (`jitter` clamped to `[0, 0.99]`). Never more than `max`.
pub fn jittered(nominal: Duration, max: Duration, jitter: f64, u: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 0.99)
    } else {
        0.0
    };
    let nominal = nominal.min(max).as_secs_f64();
    let lo = nominal * (1.0 - jitter);
    let hi = (nominal * (1.0 + jitter)).min(max.as_secs_f64());
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(lo + (hi - lo) * u).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn the_default_schedule_reaches_five_seconds_and_never_passes_it() {
        let cfg = BackoffConfig::default();
        assert_eq!(cfg.max, Duration::from_secs(5));
        // Nominal 0.5, 1, 2, 4, then 5 s for ever; each delay within ±20 % of it, never above 5 s.
        let nominal = [
            500.0, 1000.0, 2000.0, 4000.0, 5000.0, 5000.0, 5000.0, 5000.0,
        ];
        for _ in 0..200 {
            let mut b = Backoff::new(&cfg);
            for n in nominal {
                let d = ms(b.next_delay());
                assert!(d >= n * 0.8 - 0.001, "{d} below {n} - 20 %");
                assert!(
                    d <= (n * 1.2).min(5000.0) + 0.001,
                    "{d} above {n} + 20 % or 5 s"
                );
            }
        }
        // Twenty attempts in, still at most 5 s.
        let mut b = Backoff::new(&cfg);
        let longest = (0..20).map(|_| b.next_delay()).max().unwrap();
        assert!(longest <= Duration::from_secs(5), "{longest:?}");
    }

    #[test]
    fn jitter_is_bounded_by_the_cap_and_spreads_both_ways_below_it() {
        let max = Duration::from_secs(5);
        let s = Duration::from_secs;
        assert_eq!(jittered(s(2), max, 0.2, 0.0), Duration::from_millis(1600));
        assert_eq!(jittered(s(2), max, 0.2, 1.0), Duration::from_millis(2400));
        assert_eq!(jittered(s(2), max, 0.2, 0.5), s(2));
        // At the cap: [4 s, 5 s].
        assert_eq!(jittered(s(5), max, 0.2, 0.0), s(4));
        assert_eq!(jittered(s(5), max, 0.2, 1.0), s(5));
        // Just under the cap the upper bound is the cap itself.
        assert_eq!(jittered(s(4), max, 0.5, 1.0), s(5));
        // Nonsense input stays within bounds.
        assert_eq!(jittered(s(9), max, 0.2, 1.0), s(5));
        assert_eq!(jittered(s(2), max, f64::NAN, 0.7), s(2));
        assert_eq!(
            jittered(s(2), max, 5.0, f64::NAN),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn grows_with_jitter_up_to_the_cap_and_resets() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.2,
        };
        let mut b = Backoff::new(&cfg);
        let mut nominal = 100.0f64;
        for _ in 0..12 {
            let d = ms(b.next_delay());
            assert!(
                d >= nominal * 0.8 - 0.001 && d <= (nominal * 1.2).min(2000.0) + 0.001,
                "{d} vs {nominal}"
            );
            nominal = (nominal * 2.0).min(2000.0);
        }
        assert_eq!(b.attempts(), 12);
        b.reset();
        let d = b.next_delay();
        assert!(d <= Duration::from_millis(120), "{d:?}");
    }

    #[test]
    fn jitter_spreads_delays() {
        let cfg = BackoffConfig::default();
        let firsts: std::collections::HashSet<u128> = (0..20)
            .map(|_| Backoff::new(&cfg).next_delay().as_micros())
            .collect();
        assert!(firsts.len() > 1, "no jitter: {firsts:?}");
    }
}
