//! The switchable faults of a [`crate::FaultProxy`].

use std::time::Duration;

/// A direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server (e.g. callwatch's actions, SQL).
    ToServer,
    /// Server → client (e.g. AMI events, result sets).
    ToClient,
}

impl Direction {
    pub(crate) fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// Faults that stay in force until changed; [`Faults::default`] is a clean link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Nothing is forwarded either way; the sockets stay open.
    pub half_open: bool,
    /// Every chunk is forwarded this much after it was read (order kept).
    pub latency: Duration,
    /// Bytes per second, per direction and connection (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Every byte is written on its own.
    pub one_byte_segments: bool,
}

impl Faults {
    /// Whether any fault is set.
    pub fn is_clean(&self) -> bool {
        *self == Faults::default()
    }
}
