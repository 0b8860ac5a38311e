//! [`Error`](enum@Error): everything that can go wrong loading a session or starting a server.

use std::path::PathBuf;

use thiserror::Error;

/// An error of the testkit.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Neither `PREFIX.ami` nor `PREFIX.ami.gz` exists.
    #[error("no recorded stream for {prefix} (looked for .ami and .ami.gz)")]
    NoStream {
        /// The session prefix that was given.
        prefix: PathBuf,
    },
    /// A line of a `.chunks.jsonl` file is not a valid chunk or note.
    #[error("{path}:{line}: {reason}")]
    Chunks {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON event list is malformed.
    #[error("{path}: not a JSON list of header objects: {reason}")]
    EventList {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A chunk points outside the recorded stream.
    #[error("{path}: chunk at offset {offset} with length {len} runs past the end of the stream ({stream_len} bytes)")]
    ChunkOutOfRange {
        /// The chunks file.
        path: PathBuf,
        /// The chunk's offset.
        offset: usize,
        /// The chunk's length.
        len: usize,
        /// Length of the stream.
        stream_len: usize,
    },
    /// A server option is invalid (e.g. a speed factor that is not a positive number).
    #[error("fake AMI server: {0}")]
    Config(String),
    /// A server could not bind or accept.
    #[error("fake AMI server: {0}")]
    Io(#[from] std::io::Error),
    /// A scripted-PBX command referred to a call or channel that does not exist (or no longer does).
    #[error("scripted PBX: {0}")]
    Script(String),
}

/// Result alias of the testkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;
