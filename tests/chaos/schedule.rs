//! The seeded fault schedule: which fault, when, for how long. Pure: the same seed gives the same schedule.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A kind of fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultClass {
    /// AMI link reset, connections refused for the hold.
    AmiCut,
    /// AMI socket open, nothing forwarded, for the hold.
    AmiHalfOpen,
    /// AMI latency (param: ms) for the hold.
    AmiLatency,
    /// AMI bandwidth (param: bytes/s) for the hold: the slow consumer.
    AmiThrottle,
    /// AMI reset after `param` more bytes from Asterisk: a frame cut in the middle.
    AmiResetMidFrame,
    /// AMI delivered one byte per segment for the hold.
    AmiOneByte,
    /// Asterisk restarts: `Shutdown`, channels gone, new uptime.
    AsteriskRestart,
    /// Asterisk crashes: channels gone, refused for the hold, new uptime.
    AsteriskCrash,
    /// Database link reset, connections refused for the hold.
    DbCut,
    /// Database socket open, nothing forwarded, for the hold.
    DbHalfOpen,
    /// Database latency (param: ms) for the hold.
    DbLatency,
    /// The database connection dies right after a `COMMIT` was sent.
    DbCommitCut,
    /// SIGKILL the active daemon; started again after the hold.
    Sigkill,
    /// SIGTERM the active daemon; started again after the hold.
    Sigterm,
    /// The database engine (a private instance) restarted.
    EngineRestart,
}

impl FaultClass {
    /// Faults on the AMI link and Asterisk.
    pub const AMI: [FaultClass; 8] = [
        FaultClass::AmiCut,
        FaultClass::AmiHalfOpen,
        FaultClass::AmiLatency,
        FaultClass::AmiThrottle,
        FaultClass::AmiResetMidFrame,
        FaultClass::AmiOneByte,
        FaultClass::AsteriskRestart,
        FaultClass::AsteriskCrash,
    ];
    /// Faults on the database link.
    pub const DB: [FaultClass; 4] = [
        FaultClass::DbCut,
        FaultClass::DbHalfOpen,
        FaultClass::DbLatency,
        FaultClass::DbCommitCut,
    ];
    /// Faults on the daemon process.
    pub const PROCESS: [FaultClass; 2] = [FaultClass::Sigkill, FaultClass::Sigterm];

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::AmiCut => "ami cut",
            FaultClass::AmiHalfOpen => "ami half-open",
            FaultClass::AmiLatency => "ami latency",
            FaultClass::AmiThrottle => "ami throttle",
            FaultClass::AmiResetMidFrame => "ami reset mid-frame",
            FaultClass::AmiOneByte => "ami 1-byte segments",
            FaultClass::AsteriskRestart => "asterisk restart",
            FaultClass::AsteriskCrash => "asterisk crash",
            FaultClass::DbCut => "db cut",
            FaultClass::DbHalfOpen => "db half-open",
            FaultClass::DbLatency => "db latency",
            FaultClass::DbCommitCut => "db cut after COMMIT",
            FaultClass::Sigkill => "SIGKILL daemon",
            FaultClass::Sigterm => "SIGTERM daemon",
            FaultClass::EngineRestart => "db engine restart",
        }
    }

    /// Whether the fault ends the AMI session, so that a resync must follow its end.
    pub fn ends_ami_session(self) -> bool {
        matches!(
            self,
            FaultClass::AmiCut
                | FaultClass::AmiHalfOpen
                | FaultClass::AmiResetMidFrame
                | FaultClass::AsteriskRestart
                | FaultClass::AsteriskCrash
        )
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The kind.
    pub class: FaultClass,
    /// When, from the start of the run.
    pub at: Duration,
    /// How long it stays (0 for one-shot faults).
    pub hold: Duration,
    /// Class-specific: latency in ms, bandwidth in bytes/s, bytes before a reset.
    pub param: u64,
}

/// Faults drawn from `classes`, one at a time, over `seconds`: a quiet 2–5 s after the start and after each
/// fault (so each late close is attributed to one fault), holds of 1–4 s.
pub fn schedule(seed: u64, seconds: u64, classes: &[FaultClass]) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let end = Duration::from_secs(seconds);
    let mut t = Duration::from_secs(3);
    let mut out = Vec::new();
    if classes.is_empty() {
        return out;
    }
    loop {
        let class = classes[rng.gen_range(0..classes.len())];
        let hold = Duration::from_millis(rng.gen_range(1_000..4_000));
        let (hold, param) = match class {
            FaultClass::AmiLatency | FaultClass::DbLatency => (hold, rng.gen_range(50..800)),
            FaultClass::AmiThrottle => (hold, rng.gen_range(2_000..20_000)),
            FaultClass::AmiResetMidFrame => (Duration::ZERO, rng.gen_range(1..2_000)),
            FaultClass::AsteriskRestart | FaultClass::DbCommitCut => (Duration::ZERO, 0),
            _ => (hold, 0),
        };
        if t + hold > end {
            return out;
        }
        out.push(Fault {
            class,
            at: t,
            hold,
            param,
        });
        t += hold + Duration::from_millis(rng.gen_range(2_000..5_000));
    }
}
