//! Error types of the protocol crate.

use thiserror::Error;

/// A frame that could not be turned into a message.
///
/// Every variant is recoverable: the [`Parser`](crate::Parser) has already skipped the bad frame (up to and
/// including its terminating blank line, or everything buffered when a frame is too large) and the next call
/// continues with the following message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A frame grew past the configured maximum size without a terminating blank line.
    #[error("AMI frame exceeds the limit of {limit} bytes; skipping to the next blank line")]
    FrameTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// A frame had more header lines than allowed.
    #[error("AMI frame has more than {limit} headers; frame skipped")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A line inside a frame had no `:` separator (and the frame is not legacy command output).
    #[error("AMI header line {line} has no ':' separator; frame skipped")]
    MissingColon {
        /// 1-based line number inside the frame.
        line: usize,
    },
    /// The first line of a connection had no `:` but was not the `Asterisk Call Manager/…` banner; the line
    /// was skipped.
    #[error("AMI greeting is not an `Asterisk Call Manager/` banner; line skipped")]
    NotABanner,
    /// A frame had neither an `Event:` nor a `Response:` header.
    #[error("AMI message has neither an Event nor a Response header")]
    Unclassified,
}

/// An action that cannot be encoded safely.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A header key or value contains CR or LF, which would inject extra headers or end the frame early.
    #[error("header {key:?} contains a CR or LF character (header injection)")]
    LineBreak {
        /// The offending header's key (values are not echoed: they may be secrets).
        key: String,
    },
    /// A header key is empty or contains a `:`.
    #[error("header key {key:?} is empty or contains ':'")]
    BadKey {
        /// The offending key.
        key: String,
    },
}
