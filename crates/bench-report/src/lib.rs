//! Figures from callwatch's benchmarks, collected into one table.
//!
//! Each benchmark [`record`]s its headline figures as JSON lines into the file named by
//! `CALLWATCH_BENCH_OUT` (nothing is written when it is unset, so a bench run by hand only prints);
//! `scripts/bench.sh` runs every benchmark with it set and then renders the lines into the table of
//! `docs/performance.md` with the `bench-report` binary ([`render`]).
//!
//! A figure carries its own reading for a PBX of a given size ([`Figure::means`]), written by the bench
//! that knows the workload, and, where one was measured in the same run, a baseline to compare against:
//! on a shared, noisy machine a ratio measured in one run is steadier than any absolute figure.

pub mod proc_stats;
mod render;

use std::io::Write;

use serde::{Deserialize, Serialize};

pub use render::{render, replace_between_markers, RenderError, BEGIN_MARKER, END_MARKER};

/// The environment variable naming the JSON-lines file figures are appended to.
pub const OUT_ENV: &str = "CALLWATCH_BENCH_OUT";

/// One headline figure of a benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Stable identifier, e.g. `ingest.events_per_s` (one row per id: a later record replaces an earlier).
    pub id: String,
    /// What was measured, in words (the table's first column).
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// Its unit (`events/s`, `ms`, `MB`, `x real time`, …).
    pub unit: String,
    /// A baseline measured in the same run, when the figure is best read as a ratio to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// What the figure means for a PBX of a given size.
    pub means: String,
    /// The command that produced it.
    pub command: String,
}

/// A reference measured in the same run as a [`Figure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What the baseline is, in words.
    pub what: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

impl Figure {
    /// A figure without a baseline.
    pub fn new(
        id: impl Into<String>,
        what: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            what: what.into(),
            value,
            unit: unit.into(),
            baseline: None,
            means: String::new(),
            command: String::new(),
        }
    }

    /// With a baseline measured in the same run.
    pub fn baseline(mut self, what: impl Into<String>, value: f64) -> Self {
        self.baseline = Some(Baseline {
            what: what.into(),
            value,
        });
        self
    }

    /// With its reading for a PBX of a given size.
    pub fn means(mut self, text: impl Into<String>) -> Self {
        self.means = text.into();
        self
    }

    /// With the command that produced it.
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = command.into();
        self
    }

    /// The figure divided by its baseline, when there is one.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|b| b.value != 0.0)
            .map(|b| self.value / b.value)
    }
}

/// Appends `figure` to the file named by `CALLWATCH_BENCH_OUT`, if set; a write error is printed, never
/// fatal (the bench's own output still stands).
pub fn record(figure: &Figure) {
    let Some(path) = std::env::var_os(OUT_ENV) else {
        return;
    };
    let line = match serde_json::to_string(figure) {
        Ok(line) => line,
        Err(err) => return eprintln!("bench-report: cannot encode figure {}: {err}", figure.id),
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(err) = written {
        eprintln!(
            "bench-report: cannot append to {}: {err}",
            std::path::Path::new(&path).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_value_over_baseline_and_absent_without_one() {
        let f = Figure::new("x", "x", 3.0, "M events/s").baseline("split", 4.0);
        assert_eq!(f.ratio(), Some(0.75));
        assert_eq!(Figure::new("x", "x", 3.0, "ms").ratio(), None);
        assert_eq!(
            Figure::new("x", "x", 3.0, "ms").baseline("b", 0.0).ratio(),
            None
        );
    }

    #[test]
    fn record_appends_one_json_line_per_figure() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("figures.jsonl");
        std::env::set_var(OUT_ENV, &path);
        record(&Figure::new("a", "first", 1.0, "ms"));
        record(&Figure::new("b", "second", 2.0, "ms").means("fast"));
        std::env::remove_var(OUT_ENV);
        let text = std::fs::read_to_string(&path).unwrap();
        let figures: Vec<Figure> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[1].means, "fast");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
