//! `[policy]`: when callwatch may close a call, and how often it sweeps.

use std::time::Duration;

use serde::Deserialize;

/// Default time between sweeps (the seed's cron schedule).
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The shortest `ended_channels_retention`.
pub const MIN_ENDED_CHANNELS_RETENTION: Duration = Duration::from_secs(60);
/// The smallest `ended_channels_max`.
pub const MIN_ENDED_CHANNELS_MAX: usize = 1_000;

/// The `[policy]` table. Durations are written like `"30m"`, `"2m"`, `"15s"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Fallback: close rows that cannot be judged once answered longer ago than this (default 30 min).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Fallback only after the map has been unsynced this long (default 2 min).
    #[serde(with = "humantime_serde")]
    pub fallback_after: Duration,
    /// Sweep every this often, besides after every resync (default 10 min).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Clock-skew allowance between the database's and Asterisk's clocks (default 5 s).
    #[serde(with = "humantime_serde")]
    pub skew: Duration,
    /// Close an older unmatched row when a newer call on the same extension is live (default true).
    pub superseded: bool,
    /// Mass-close guard: hold when a round would close more than this fraction of the open rows… (0.9)
    pub max_close_fraction: f64,
    /// …and at least this many of them (50).
    pub max_close_min: usize,
    /// …until a listing this much later confirms them (15 s).
    #[serde(with = "humantime_serde")]
    pub confirm_delay: Duration,
    /// Write the numeric Q.850 cause instead of the snake-case `Cause-txt` for seen hangups.
    pub numeric_cause: bool,
    /// A row kept alive by a channel longer than this is a suspected ghost: counted, listed in `status`,
    /// warned once (default 4 h; `"0"`: off).
    #[serde(with = "humantime_serde")]
    pub max_call_duration: Duration,
    /// Close suspected ghosts (`ghost_channel`) instead of only reporting them (default false).
    pub close_ghosts: bool,
    /// Group commit: closes decided within this window are written in one transaction (default 50 ms;
    /// `"0"`: each round's closes at once).
    #[serde(with = "humantime_serde")]
    pub commit_window: Duration,
    /// …or as soon as this many are waiting (default 500).
    pub commit_max_rows: usize,
    /// How long the daemon remembers each ended channel, the evidence for closes after an outage: a
    /// database outage shorter than this loses no exact end time (default 1 h).
    #[serde(with = "humantime_serde")]
    pub ended_channels_retention: Duration,
    /// …and at most this many per Asterisk server, the oldest forgotten first (default 100,000; ≤ 400 B each).
    pub ended_channels_max: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = reconciler::Policy::default();
        let std = |d: chrono::Duration| d.to_std().unwrap_or_default();
        Self {
            timeout: std(p.timeout),
            fallback_after: std(p.fallback_after),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            skew: std(p.skew),
            superseded: p.superseded,
            max_close_fraction: p.max_close_fraction,
            max_close_min: p.max_close_min,
            confirm_delay: std(p.confirm_delay),
            numeric_cause: false,
            max_call_duration: p.max_call_duration.map(std).unwrap_or_default(),
            close_ghosts: p.close_ghosts,
            commit_window: crate::pipeline::DEFAULT_COMMIT_WINDOW,
            commit_max_rows: crate::pipeline::DEFAULT_COMMIT_MAX_ROWS,
            ended_channels_retention: crate::daemon::TOMBSTONE_RETENTION,
            ended_channels_max: crate::daemon::MAX_TOMBSTONES,
        }
    }
}

impl PolicyConfig {
    /// The reconciler's policy.
    pub fn to_policy(&self) -> reconciler::Policy {
        let chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        reconciler::Policy {
            skew: chrono(self.skew),
            timeout: chrono(self.timeout),
            fallback_after: chrono(self.fallback_after),
            superseded: self.superseded,
            max_close_fraction: self.max_close_fraction,
            max_close_min: self.max_close_min,
            confirm_delay: chrono(self.confirm_delay),
            cause_format: if self.numeric_cause {
                reconciler::CauseFormat::Numeric
            } else {
                reconciler::CauseFormat::Text
            },
            max_call_duration: (!self.max_call_duration.is_zero())
                .then(|| chrono(self.max_call_duration)),
            close_ghosts: self.close_ghosts,
        }
    }

    /// The daemon's (and replay's) group commit.
    pub fn group_commit(&self) -> crate::pipeline::GroupCommit {
        crate::pipeline::GroupCommit {
            window: self.commit_window,
            max_rows: self.commit_max_rows.max(1),
        }
    }

    /// Checks the values that serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_close_fraction > 0.0 && self.max_close_fraction <= 1.0,
            "[policy] max_close_fraction must be in (0, 1], got {}",
            self.max_close_fraction
        );
        anyhow::ensure!(
            !self.sweep_interval.is_zero(),
            "[policy] sweep_interval must be positive"
        );
        anyhow::ensure!(!self.timeout.is_zero(), "[policy] timeout must be positive");
        anyhow::ensure!(
            self.commit_window <= std::time::Duration::from_secs(1),
            "[policy] commit_window must be at most 1s (a seen hangup reaches the table within a second)"
        );
        anyhow::ensure!(
            self.commit_max_rows > 0,
            "[policy] commit_max_rows must be positive"
        );
        anyhow::ensure!(
            self.ended_channels_retention >= MIN_ENDED_CHANNELS_RETENTION,
            "[policy] ended_channels_retention must be at least 1m (a seen hangup is the evidence of the rounds after it)"
        );
        anyhow::ensure!(
            self.ended_channels_max >= MIN_ENDED_CHANNELS_MAX,
            "[policy] ended_channels_max must be at least {MIN_ENDED_CHANNELS_MAX} (a seen hangup is the evidence of the rounds after it)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations_and_keeps_defaults() {
        let p: PolicyConfig = toml::from_str("timeout = \"45m\"\nconfirm_delay = \"20s\"").unwrap();
        assert_eq!(p.timeout, Duration::from_secs(45 * 60));
        assert_eq!(p.confirm_delay, Duration::from_secs(20));
        assert_eq!(p.sweep_interval, DEFAULT_SWEEP_INTERVAL);
        let r = p.to_policy();
        assert_eq!(r.timeout, chrono::Duration::minutes(45));
        assert_eq!(r.fallback_after, chrono::Duration::minutes(2));
        assert!(
            toml::from_str::<PolicyConfig>("timout = \"1m\"").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn max_call_duration_defaults_to_4h_and_0_turns_it_off() {
        let r = PolicyConfig::default().to_policy();
        assert_eq!(r.max_call_duration, Some(chrono::Duration::hours(4)));
        assert!(!r.close_ghosts);
        let p: PolicyConfig = toml::from_str("max_call_duration = \"0\"").unwrap();
        assert_eq!(p.to_policy().max_call_duration, None);
        let p: PolicyConfig =
            toml::from_str("max_call_duration = \"90m\"\nclose_ghosts = true").unwrap();
        let r = p.to_policy();
        assert_eq!(r.max_call_duration, Some(chrono::Duration::minutes(90)));
        assert!(r.close_ghosts);
    }
}
