//! [`Config`]: where and how to connect, with defaults as constants and the secret redacted.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ami_proto::Limits;

/// Default AMI TCP port.
pub const DEFAULT_PORT: u16 = 5038;
/// Default interval between keepalive `Ping`s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Default time a `Ping` may take to be answered before the link is declared dead.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an action may take to be answered.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an event list (e.g. `CoreShowChannels`) may take to complete.
pub const DEFAULT_LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time from TCP connect to a successful login (Asterisk answers a bad login after ~1 s).
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default TCP (and TLS) connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default capacity of each subscriber's event channel.
pub const DEFAULT_EVENT_BUFFER: usize = 8192;
/// Default `Events:` mask sent with `Login`.
pub const DEFAULT_EVENTS: &str = "on";
/// Default first reconnect delay.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Default longest reconnect delay (`reconnect_max`): a watchdog's reconnect is cheap, and calls that end
/// while AMI is down are closed only after it is back.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default growth factor of the reconnect delay.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
/// Default jitter: each delay is drawn from `delay * (1 ± jitter)`, never above the longest delay.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.2;
/// Default server name when the URL has no `?server=`.
pub const DEFAULT_SERVER_NAME: &str = "default";

/// The AMI secret. Never printed: `Debug` shows `<redacted>` and there is no `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the login only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<not set>"
        } else {
            "<redacted>"
        })
    }
}

/// How the login proves the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `Login` with `Secret:` in clear text (use TLS or loopback).
    #[default]
    Plain,
    /// `Challenge` then `Login` with `AuthType: MD5` and `Key: md5(challenge + secret)`.
    Md5,
}

/// TLS settings for `amis://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Name to verify the certificate against (default: the host).
    pub server_name: Option<String>,
}

/// Reconnect delays: capped exponential growth with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// First delay.
    pub initial: Duration,
    /// Longest delay (`reconnect_max`); jitter never makes a delay longer.
    pub max: Duration,
    /// Growth factor per failed attempt.
    pub multiplier: f64,
    /// Randomisation factor in `[0, 1)`: a delay `d` becomes a uniform draw in `d * (1 ± jitter)`, cut at
    /// `max` (see [`crate::backoff`]).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            multiplier: DEFAULT_BACKOFF_MULTIPLIER,
            jitter: DEFAULT_BACKOFF_JITTER,
        }
    }
}

/// Everything needed to connect to one Asterisk and keep the session healthy.
///
/// Build it from a URL with [`Config::from_url`] (see [`crate::url`]) or field by field. `Debug` never shows
/// the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Name of this Asterisk in the channel map and in logs (`?server=NAME`).
    pub server: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `Some` for `amis://`.
    pub tls: Option<TlsConfig>,
    /// AMI user.
    pub username: String,
    /// AMI secret.
    pub secret: Secret,
    /// Plain or MD5 login.
    pub auth: AuthMethod,
    /// `Events:` mask sent with `Login` (`on`, `off`, `call,system`, …).
    pub events: String,
    /// Interval between keepalive `Ping`s.
    pub ping_interval: Duration,
    /// Time a `Ping` may take before the link is declared dead (half-open).
    pub ping_timeout: Duration,
    /// Time an action may take.
    pub action_timeout: Duration,
    /// Time an event list may take to complete.
    pub list_timeout: Duration,
    /// Time from connect to a successful login.
    pub login_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Capacity of each subscriber's channel; overflow is reported as `Lagged` and triggers a resync.
    pub event_buffer: usize,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Frame size limits for the parser.
    pub limits: Limits,
}

impl Config {
    /// A configuration with every default, for `username@host:5038`.
    pub fn new(host: impl Into<String>, username: impl Into<String>, secret: Secret) -> Self {
        Self {
            server: DEFAULT_SERVER_NAME.into(),
            host: host.into(),
            port: DEFAULT_PORT,
            tls: None,
            username: username.into(),
            secret,
            auth: AuthMethod::Plain,
            events: DEFAULT_EVENTS.into(),
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            action_timeout: DEFAULT_ACTION_TIMEOUT,
            list_timeout: DEFAULT_LIST_TIMEOUT,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            event_buffer: DEFAULT_EVENT_BUFFER,
            backoff: BackoffConfig::default(),
            limits: Limits::default(),
        }
    }

    /// `host:port`, for dialing and logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let cfg = Config::new("127.0.0.1", "watchdog", Secret::new("lab-secret"));
        let text = format!("{cfg:?}");
        assert!(!text.contains("lab-secret"), "{text}");
        assert!(text.contains("<redacted>"));
        assert_eq!(format!("{:?}", Secret::default()), "<not set>");
    }

    #[test]
    fn address_brackets_ipv6() {
        let mut cfg = Config::new("::1", "u", Secret::default());
        assert_eq!(cfg.address(), "[::1]:5038");
        cfg.host = "pbx.example".into();
        cfg.port = 1;
        assert_eq!(cfg.address(), "pbx.example:1");
    }
}
