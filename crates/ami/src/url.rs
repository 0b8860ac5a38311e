//! Connection URLs: `ami://user:secret@host:5038?server=NAME` and `amis://…` (TLS).
//!
//! Query parameters (all optional):
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `server=NAME` | name of this Asterisk in the channel map and logs (default `default`) |
//! | `secret_env=VAR` | read the secret from environment variable `VAR` instead of the URL |
//! | `secret_file=PATH` | read the secret from a file (trailing line end removed) |
//! | `auth=plain\|md5` | login method (default `plain`) |
//! | `events=MASK` | `Events:` header of the login (default `on`) |
//! | `ping=SECS`, `ping_timeout=SECS` | keepalive interval and deadline |
//! | `action_timeout=SECS`, `list_timeout=SECS`, `login_timeout=SECS`, `connect_timeout=SECS` | timeouts |
//! | `buffer=N` | capacity of each subscriber's event channel |
//! | `reconnect_max=SECS` | longest delay between reconnect attempts, jitter included (default 5) |
//! | `ca=PATH` | (`amis://` only) PEM CA bundle to trust instead of the web roots |
//! | `tls_name=NAME` | (`amis://` only) name to verify the certificate against |
//!
//! Errors never repeat the URL, because it may hold the secret.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AuthMethod, Config, Secret, TlsConfig, DEFAULT_PORT};
use crate::error::Error;

/// Where a secret can be found besides the URL itself.
pub trait SecretSource {
    /// The value of environment variable `name`.
    fn env(&self, name: &str) -> Option<String>;
    /// The content of file `path`.
    fn file(&self, path: &std::path::Path) -> std::io::Result<String>;
}

/// The process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSecretSource;

impl SecretSource for OsSecretSource {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

impl Config {
    /// Parses a connection URL (see the [module docs](crate::url)), reading `secret_env`/`secret_file` from the
    /// process environment and file system.
    pub fn from_url(url: &str) -> Result<Config, Error> {
        parse_url(url, &OsSecretSource)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn seconds(key: &str, value: &str) -> Result<Duration, Error> {
    let secs: f64 = value
        .parse()
        .map_err(|_| bad(format!("{key} must be a number of seconds, got {value:?}")))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1.0e6 {
        return Err(bad(format!("{key} must be between 0 and 1000000 seconds")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("bad percent-encoding in the URL's user or secret"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("the URL's user or secret is not UTF-8"))
}

/// Parses `url`, taking `secret_env` / `secret_file` from `source`.
pub fn parse_url(url: &str, source: &dyn SecretSource) -> Result<Config, Error> {
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a valid URL ({e})")))?;
    let tls = match parsed.scheme() {
        "ami" => false,
        "amis" => true,
        other => {
            return Err(bad(format!(
                "unknown scheme {other:?}: use ami:// or amis://"
            )))
        }
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("the URL has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let username = percent_decode(parsed.username())?;
    if username.is_empty() {
        return Err(bad("the URL has no user (ami://USER:SECRET@HOST)"));
    }
    let mut cfg = Config::new(host, username, Secret::default());
    cfg.port = parsed.port().unwrap_or(DEFAULT_PORT);
    if let Some(password) = parsed.password() {
        cfg.secret = Secret::new(percent_decode(password)?);
    }
    let mut tls_cfg = TlsConfig::default();
    let mut secret_from: Option<&'static str> = None;
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "server" => {
                if value.is_empty() {
                    return Err(bad("server= must not be empty"));
                }
                cfg.server = value.into_owned();
            }
            "secret_env" => {
                let v = source.env(&value).ok_or_else(|| {
                    bad(format!(
                        "environment variable {value:?} (secret_env) is not set"
                    ))
                })?;
                cfg.secret = Secret::new(v);
                secret_from = Some("secret_env");
            }
            "secret_file" => {
                let text = source
                    .file(std::path::Path::new(&*value))
                    .map_err(|e| bad(format!("cannot read secret_file {value:?}: {}", e.kind())))?;
                cfg.secret = Secret::new(text.trim_end_matches(['\r', '\n']));
                secret_from = Some("secret_file");
            }
            "auth" => {
                cfg.auth = match value.to_ascii_lowercase().as_str() {
                    "plain" => AuthMethod::Plain,
                    "md5" => AuthMethod::Md5,
                    other => return Err(bad(format!("auth must be plain or md5, got {other:?}"))),
                }
            }
            "events" => {
                if value.contains(['\r', '\n']) {
                    return Err(bad("events= contains a line break"));
                }
                cfg.events = value.into_owned();
            }
            "ping" => cfg.ping_interval = seconds("ping", &value)?,
            "ping_timeout" => cfg.ping_timeout = seconds("ping_timeout", &value)?,
            "action_timeout" => cfg.action_timeout = seconds("action_timeout", &value)?,
            "list_timeout" => cfg.list_timeout = seconds("list_timeout", &value)?,
            "login_timeout" => cfg.login_timeout = seconds("login_timeout", &value)?,
            "connect_timeout" => cfg.connect_timeout = seconds("connect_timeout", &value)?,
            "reconnect_max" => cfg.backoff.max = seconds("reconnect_max", &value)?,
            "buffer" => {
                cfg.event_buffer = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(format!("buffer must be a positive integer, got {value:?}"))
                })?
            }
            "ca" => tls_cfg.ca_file = Some(PathBuf::from(&*value)),
            "tls_name" => tls_cfg.server_name = Some(value.into_owned()),
            other => return Err(bad(format!("unknown URL parameter {other:?}"))),
        }
    }
    if secret_from.is_some() && parsed.password().is_some() {
        return Err(bad(
            "give the secret either in the URL or via secret_env/secret_file, not both",
        ));
    }
    if cfg.secret.is_empty() {
        return Err(bad(
            "no secret: put it in the URL or use secret_env= / secret_file=",
        ));
    }
    if tls {
        cfg.tls = Some(tls_cfg);
    } else if tls_cfg != TlsConfig::default() {
        return Err(bad("ca= and tls_name= need an amis:// URL"));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<String, String>);

    impl SecretSource for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn file(&self, path: &std::path::Path) -> std::io::Result<String> {
            self.0
                .get(path.to_str().unwrap())
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn fake() -> Fake {
        Fake(HashMap::from([
            ("AMI_SECRET".to_string(), "from-env".to_string()),
            ("/run/ami.secret".to_string(), "from-file\n".to_string()),
        ]))
    }

    #[test]
    fn full_url() {
        let cfg = parse_url(
            "ami://watchdog:lab%2Dsecret@pbx1.example:6038?server=pbx1&auth=md5&events=call,system&ping=2.5",
            &fake(),
        )
        .unwrap();
        assert_eq!(cfg.server, "pbx1");
        assert_eq!(cfg.host, "pbx1.example");
        assert_eq!(cfg.port, 6038);
        assert_eq!(cfg.username, "watchdog");
        assert_eq!(cfg.secret.expose(), "lab-secret");
        assert_eq!(cfg.auth, AuthMethod::Md5);
        assert_eq!(cfg.events, "call,system");
        assert_eq!(cfg.ping_interval, Duration::from_millis(2500));
        assert!(cfg.tls.is_none());
        assert_eq!(
            cfg.backoff.max,
            Duration::from_secs(5),
            "default reconnect_max"
        );
    }

    #[test]
    fn reconnect_max() {
        let cfg = parse_url("ami://u:s@h?reconnect_max=2.5", &fake()).unwrap();
        assert_eq!(cfg.backoff.max, Duration::from_millis(2500));
        assert!(parse_url("ami://u:s@h?reconnect_max=0", &fake()).is_err());
        assert!(parse_url("ami://u:s@h?reconnect_max=soon", &fake()).is_err());
    }

    #[test]
    fn secret_from_env_or_file() {
        let cfg = parse_url("ami://watchdog@127.0.0.1?secret_env=AMI_SECRET", &fake()).unwrap();
        assert_eq!(cfg.secret.expose(), "from-env");
        assert_eq!(cfg.port, DEFAULT_PORT);
        assert_eq!(cfg.server, "default");
        let cfg = parse_url(
            "ami://watchdog@127.0.0.1?secret_file=/run/ami.secret",
            &fake(),
        )
        .unwrap();
        assert_eq!(cfg.secret.expose(), "from-file");
        assert!(parse_url("ami://watchdog@127.0.0.1?secret_env=NOPE", &fake()).is_err());
        assert!(parse_url("ami://watchdog@127.0.0.1", &fake()).is_err());
        assert!(parse_url("ami://watchdog:x@127.0.0.1?secret_env=AMI_SECRET", &fake()).is_err());
    }

    #[test]
    fn tls_url() {
        let cfg = parse_url("amis://u:s@[::1]:5039?ca=/etc/ca.pem&tls_name=pbx", &fake()).unwrap();
        assert_eq!(cfg.host, "::1");
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(tls.server_name.as_deref(), Some("pbx"));
        assert!(parse_url("ami://u:s@h?ca=/x", &fake()).is_err());
    }

    #[test]
    fn errors_never_echo_the_secret() {
        for url in [
            "http://u:lab-secret@h",
            "ami://u:lab-secret@h?bogus=1",
            "ami://u:lab-secret@h?ping=abc",
            "ami://:lab-secret@h",
            "ami://u:lab%zzsecret@h",
        ] {
            let err = parse_url(url, &fake()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("lab-secret"), "{url}: {text}");
        }
    }
}
