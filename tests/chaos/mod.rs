//! The fault-injection suite's harness, shared by the integration tests (`tests/it/chaos.rs`, short
//! schedules) and the soak bench (`benches/chaos.rs`): the real daemon against the scripted PBX and a real
//! database, through fault proxies, on a seeded fault schedule, with the invariants checked against the
//! PBX's truth.
//!
//! - [`schedule`]: the seeded fault schedule;
//! - [`world`]: calls started and hung up on a seeded plan, the application's rows, the truth;
//! - [`daemons`]: the daemon in this process or as `callwatch run` processes (signals, RSS);
//! - [`engines`]: private PostgreSQL / MariaDB servers to restart;
//! - [`invariants`]: the checks;
//! - [`run`]: one run, start to verdict.
// Each of the two targets that include this harness uses a different part of it.
#![allow(dead_code)]

pub mod daemons;
pub mod engines;
pub mod invariants;
pub mod run;
pub mod schedule;
pub mod world;

pub use daemons::DaemonKind;
pub use run::{run, ChaosConfig};
pub use schedule::FaultClass;
