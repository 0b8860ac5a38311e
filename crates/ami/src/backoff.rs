//! Reconnect delays: capped exponential growth with jitter, on the `backoff` crate.

use std::time::Duration;

use backoff::backoff::Backoff as _;
use backoff::ExponentialBackoff;

use crate::config::BackoffConfig;

/// Delays between reconnect attempts. [`Backoff::reset`] after a session that logged in.
#[derive(Debug)]
pub struct Backoff {
    inner: ExponentialBackoff,
    attempts: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(cfg: &BackoffConfig) -> Self {
        let inner = ExponentialBackoff {
            current_interval: cfg.initial,
            initial_interval: cfg.initial,
            randomization_factor: cfg.jitter.clamp(0.0, 0.99),
            multiplier: cfg.multiplier.max(1.0),
            max_interval: cfg.max.max(cfg.initial),
            // Retry forever: the connection gives up only when every client is gone.
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        Self { inner, attempts: 0 }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        self.inner.next_backoff().unwrap_or(self.inner.max_interval)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.2,
        };
        let mut b = Backoff::new(&cfg);
        let mut nominal = 100.0f64;
        for _ in 0..12 {
            let d = b.next_delay().as_secs_f64() * 1000.0;
            assert!(
                d >= nominal * 0.8 - 1.0 && d <= nominal * 1.2 + 1.0,
                "{d} vs {nominal}"
            );
            nominal = (nominal * 2.0).min(2000.0);
        }
        assert_eq!(b.attempts(), 12);
        b.reset();
        let d = b.next_delay();
        assert!(d <= Duration::from_millis(121), "{d:?}");
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
