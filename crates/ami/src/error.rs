//! [`Error`](enum@Error): everything that can go wrong talking to Asterisk.

use std::io;
use std::sync::Arc;

use thiserror::Error;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An AMI client error.
///
/// No variant ever carries the AMI secret: authentication errors name the user and Asterisk's message only.
/// Errors are `Clone` so one failure (a dropped link) can be handed to every pending request.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket or TLS error (refused, reset, unreachable, …).
    #[error("AMI I/O error: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The peer sent bytes that are not AMI (a frame was skipped).
    #[error("AMI protocol error: {0}")]
    Parse(#[from] ami_proto::ParseError),
    /// An action could not be encoded (header injection attempt, bad key).
    #[error("cannot encode AMI action: {0}")]
    Encode(#[from] ami_proto::EncodeError),
    /// The connection closed (or was never up) before the request completed.
    #[error("AMI connection lost: {reason}")]
    Disconnected {
        /// Why the link went down, e.g. `eof`, `keepalive timeout`.
        reason: String,
    },
    /// No answer in time: an action, an event list, the login or a keepalive `Ping`.
    #[error("AMI {what} timed out")]
    Timeout {
        /// What timed out.
        what: &'static str,
    },
    /// Asterisk rejected the credentials (plain secret or MD5 key). Not a network problem.
    #[error("AMI authentication failed for user {username:?}: {message}")]
    Auth {
        /// The user name that was refused.
        username: String,
        /// Asterisk's `Message:` (e.g. `Authentication failed`).
        message: String,
    },
    /// Asterisk answered an action with `Response: Error` (or `Failure`).
    #[error("AMI action {action} failed: {message}")]
    ActionFailed {
        /// The action's name.
        action: String,
        /// Asterisk's `Message:`.
        message: String,
    },
    /// An event list ended without its `*Complete` event (the link dropped or the list was cut).
    #[error("AMI event list of {action} was cut after {received} items")]
    ListIncomplete {
        /// The action's name.
        action: String,
        /// Items received before the cut.
        received: usize,
    },
    /// Two outstanding actions used the same `ActionID`.
    #[error("ActionID {0:?} is already in use by a pending action")]
    DuplicateActionId(String),
    /// The connection URL or configuration is invalid.
    #[error("invalid AMI configuration: {0}")]
    Config(String),
    /// TLS setup failed (bad CA file, bad server name).
    #[error("AMI TLS setup failed: {0}")]
    Tls(String),
    /// The connection task has stopped (every client dropped or it was cancelled).
    #[error("AMI connection task has stopped")]
    Closed,
}

impl Error {
    /// True for failures a reconnect may cure (network, timeouts, a dropped link); false for wrong credentials,
    /// bad configuration and rejected actions.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::Disconnected { .. }
                | Error::Timeout { .. }
                | Error::ListIncomplete { .. }
                | Error::Parse(_)
        )
    }

    /// True when Asterisk refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    pub(crate) fn disconnected(reason: impl Into<String>) -> Self {
        Error::Disconnected {
            reason: reason.into(),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(Arc::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_not_retryable_and_network_is() {
        let auth = Error::Auth {
            username: "watchdog".into(),
            message: "Authentication failed".into(),
        };
        assert!(auth.is_auth());
        assert!(!auth.is_retryable());
        let refused: Error = io::Error::from(io::ErrorKind::ConnectionRefused).into();
        assert!(refused.is_retryable());
        assert!(!refused.is_auth());
        assert!(Error::Timeout { what: "keepalive" }.is_retryable());
    }
}
