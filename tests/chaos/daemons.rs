//! The daemons under test: `daemon::run` in this process (fast reconnects through `tweak_ami`), or
//! `callwatch run` processes sharing one database (killed, terminated and started again; RSS sampled from
//! `/proc`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callwatch::daemon::{self, DaemonOptions};
use callwatch::health::Health;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The in-process daemon's longest reconnect delay (set through `tweak_ami`, shorter than the default so
/// that short CI runs see several outages).
pub const IN_PROCESS_RECONNECT_MAX: Duration = Duration::from_secs(1);
/// The `callwatch run` processes' `[[server]] reconnect_max` (written into their configuration).
pub const PROCESS_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    /// `daemon::run` in this process.
    InProcess,
    /// This many `callwatch run` processes on the same database (an active one and standbys).
    Processes(usize),
}

/// Resident memory of one process over its life.
#[derive(Debug, Clone)]
pub struct Rss {
    /// Process id.
    pub pid: u32,
    /// First sample (kB), taken once the process had run a few seconds.
    pub first_kb: u64,
    /// First sample once the process had run `warm_after` (kB).
    pub warm_kb: u64,
    /// Last sample (kB).
    pub last_kb: u64,
    /// Largest sample (kB).
    pub max_kb: u64,
    /// When it started.
    pub started: Instant,
    /// When the last sample was taken.
    pub last_at: Instant,
    /// Whether `warm_kb` was taken.
    pub warm: bool,
    /// Every sample.
    pub samples: Vec<RssSample>,
}

/// One reading of a process's memory from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct RssSample {
    /// When it was read.
    pub at: Instant,
    /// `VmRSS` (kB): all resident pages.
    pub rss_kb: u64,
    /// `RssAnon` (kB): the resident heap and stacks, what a leak grows.
    pub anon_kb: u64,
    /// `RssFile` (kB): resident pages of mapped files (the binary and its libraries), which come and go
    /// with the page cache.
    pub file_kb: u64,
}

impl Rss {
    /// The growth judged once the process's map holds all it may (`full_at`: when the PBX had ended
    /// `[policy] ended_channels_max` channels since the process started, the cap of its tombstones) and
    /// `settle` later: the first and the last sample from then, and the time between them. `None` when the
    /// process did not live long enough after that.
    pub fn after(&self, full_at: Instant, settle: Duration) -> Option<(u64, u64, Duration)> {
        let from = full_at + settle;
        let first = self.samples.iter().find(|s| s.at >= from)?;
        let last = self.samples.last()?;
        (last.at > first.at).then(|| (first.rss_kb, last.rss_kb, last.at - first.at))
    }

    /// The samples from `from` on, at most `points` of them evenly spread over that time (the last one
    /// included): a process's memory over a long soak, for the report.
    pub fn series(&self, from: Instant, points: usize) -> Vec<RssSample> {
        let kept: Vec<&RssSample> = self.samples.iter().filter(|s| s.at >= from).collect();
        let (Some(first), Some(last)) = (kept.first(), kept.last()) else {
            return Vec::new();
        };
        let span = last.at - first.at;
        let steps = points.max(2) - 1;
        let mut out: Vec<RssSample> = Vec::new();
        for i in 0..=steps {
            let due = first.at + span.mul_f64(i as f64 / steps as f64);
            if let Some(s) = kept.iter().find(|s| s.at >= due) {
                if out.last().is_none_or(|o| o.at != s.at) {
                    out.push(**s);
                }
            }
        }
        out
    }
}

struct Proc {
    child: Child,
    started: Instant,
    rss: Option<Rss>,
}

/// The running daemons.
pub struct Daemons {
    kind: DaemonKind,
    config: PathBuf,
    dir: PathBuf,
    in_process: Option<(
        CancellationToken,
        JoinHandle<anyhow::Result<daemon::DaemonSummary>>,
    )>,
    procs: Vec<Option<Proc>>,
    spawned: usize,
    /// Every process's memory, finished ones included.
    pub rss: Vec<Rss>,
    /// Age at which a process's warm RSS is taken.
    pub warm_after: Duration,
}

/// `VmRSS`, `RssAnon` and `RssFile` of `pid` in kB.
pub fn memory_kb(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

impl Daemons {
    /// Starts the daemons with the configuration file `config` (logs go to `dir`).
    pub fn start(kind: DaemonKind, config: PathBuf, dir: PathBuf) -> anyhow::Result<Self> {
        let mut d = Self {
            kind,
            config,
            dir,
            in_process: None,
            procs: Vec::new(),
            spawned: 0,
            rss: Vec::new(),
            warm_after: Duration::from_secs(10),
        };
        match kind {
            DaemonKind::InProcess => {
                let text = std::fs::read_to_string(&d.config)?;
                let mut settings: callwatch::settings::Settings = toml::from_str(&text)?;
                settings
                    .broadcast
                    .status
                    .clone_from(&settings.database.mapping.status_values.completed);
                let cancel = CancellationToken::new();
                let task = tokio::spawn(daemon::run(
                    settings,
                    DaemonOptions {
                        cancel: Some(cancel.clone()),
                        health: Some(Health::new(Utc::now())),
                        skip_metrics: true,
                        forget_closed_rows: true,
                        tweak_ami: Some(|cfg: &mut ami::Config| {
                            cfg.backoff.initial = Duration::from_millis(100);
                            cfg.backoff.max = IN_PROCESS_RECONNECT_MAX;
                        }),
                        ..DaemonOptions::default()
                    },
                ));
                d.in_process = Some((cancel, task));
            }
            DaemonKind::Processes(n) => {
                for _ in 0..n {
                    let p = d.spawn()?;
                    d.procs.push(Some(p));
                }
            }
        }
        Ok(d)
    }

    /// The longest reconnect delay of these daemons' AMI clients: the bound of "resync within
    /// `reconnect_max` + 1 s".
    pub fn reconnect_max(&self) -> Duration {
        match self.kind {
            DaemonKind::InProcess => IN_PROCESS_RECONNECT_MAX,
            DaemonKind::Processes(_) => PROCESS_RECONNECT_MAX,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<Proc> {
        self.spawned += 1;
        let log = std::fs::File::create(self.dir.join(format!("daemon-{}.log", self.spawned)))?;
        // `CHAOS_DAEMON_WRAP="heaptrack -o /tmp/ht"`: each daemon runs under that program (a profiler).
        let wrap = std::env::var("CHAOS_DAEMON_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_callwatch"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_callwatch")),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("DATABASE_URL")
            .env_remove("CALLWATCH_CONFIG")
            .env_remove("CALLWATCH_AMI_URL")
            .env(
                "CALLWATCH_LOG",
                std::env::var("CHAOS_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Proc {
            child,
            started: Instant::now(),
            rss: None,
        })
    }

    /// Process ids of the live processes, by slot.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.procs
            .iter()
            .map(|p| p.as_ref().map(|p| p.child.id()))
            .collect()
    }

    /// Stops the process in `slot`: SIGKILL (`kill`) or SIGTERM, waiting for it to exit. Returns false when
    /// a SIGTERM was not obeyed within 20 s (it is then killed).
    pub async fn stop_slot(&mut self, slot: usize, kill: bool) -> bool {
        let Some(mut p) = self.procs.get_mut(slot).and_then(Option::take) else {
            return true;
        };
        self.sample_one(&mut p);
        if let Some(r) = p.rss {
            self.rss.push(r);
        }
        let pid = p.child.id();
        if kill {
            let _ = p.child.kill();
            let _ = p.child.wait();
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = p.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
        false
    }

    /// Starts a process in an empty `slot` again.
    pub fn restart_slot(&mut self, slot: usize) -> anyhow::Result<()> {
        if self.procs.get(slot).is_some_and(Option::is_none) {
            let p = self.spawn()?;
            self.procs[slot] = Some(p);
        }
        Ok(())
    }

    fn sample_one(&self, p: &mut Proc) {
        let Some((kb, anon_kb, file_kb)) = memory_kb(p.child.id()) else {
            return;
        };
        let now = Instant::now();
        let age = now - p.started;
        if age < Duration::from_secs(3) {
            return;
        }
        let r = p.rss.get_or_insert(Rss {
            pid: p.child.id(),
            first_kb: kb,
            warm_kb: kb,
            last_kb: kb,
            max_kb: kb,
            started: p.started,
            last_at: now,
            warm: false,
            samples: Vec::new(),
        });
        r.samples.push(RssSample {
            at: now,
            rss_kb: kb,
            anon_kb,
            file_kb,
        });
        // The warm figure: the first sample once the process has run `warm_after` (caches filled).
        if !r.warm && age >= self.warm_after {
            r.warm_kb = kb;
            r.warm = true;
        }
        r.last_kb = kb;
        r.max_kb = r.max_kb.max(kb);
        r.last_at = now;
    }

    /// Samples every live process's RSS.
    pub fn sample_rss(&mut self) {
        let mut procs = std::mem::take(&mut self.procs);
        for p in procs.iter_mut().flatten() {
            self.sample_one(p);
        }
        self.procs = procs;
    }

    /// Stops everything (SIGTERM for processes); false when a process ignored SIGTERM or the in-process
    /// daemon failed.
    pub async fn stop(&mut self) -> bool {
        let mut ok = true;
        if let Some((cancel, task)) = self.in_process.take() {
            cancel.cancel();
            ok &= matches!(task.await, Ok(Ok(_)));
        }
        for slot in 0..self.procs.len() {
            ok &= self.stop_slot(slot, false).await;
        }
        ok
    }

    /// The daemons' logs, concatenated (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.spawned {
            if let Ok(s) = std::fs::read_to_string(self.dir.join(format!("daemon-{i}.log"))) {
                out.push_str(&format!("--- daemon {i} ---\n{s}"));
            }
        }
        out
    }
}
