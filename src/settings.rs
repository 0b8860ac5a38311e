//! The runner's configuration: one TOML file (`--config`, default `/etc/callwatch/callwatch.toml`),
//! environment overrides (`CALLWATCH_…`, `DATABASE_URL`) and command-line flags on top.
//!
//! ```toml
//! [[server]]
//! name = "pbx1"
//! url = "ami://watchdog@127.0.0.1:5038"
//! secret_file = "/etc/callwatch/ami.secret"
//!
//! [database]
//! url = "sqlite:///var/lib/callwatch/calls.db"
//!
//! [policy]
//! timeout = "30m"
//! ```
//!
//! See `deploy/callwatch.toml` for every key with its documentation.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::broadcast::BroadcastConfig;
use crate::cli::GlobalArgs;
use crate::http::HttpConfig;
use crate::policy::PolicyConfig;

/// Where the configuration is read from when `--config` is not given (a missing default file is fine).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/callwatch/callwatch.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// AMI servers to watch (`[[server]]`).
    #[serde(rename = "server")]
    pub servers: Vec<ServerConfig>,
    /// The calls table (`[database]`).
    pub database: store::DatabaseConfig,
    /// Decision rules (`[policy]`).
    pub policy: PolicyConfig,
    /// Frontend notifications (`[broadcast]`).
    pub broadcast: BroadcastConfig,
    /// Health, readiness, metrics and status endpoints (`[http]`).
    pub http: HttpConfig,
    /// Asterisk's CDRs, for exact end times after an outage (`[cdr]`; read-only).
    pub cdr: Option<cdr::CdrConfig>,
}

/// One `[[server]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Server name, as written in the calls table's `server` column (default: the URL's `?server=`, else
    /// `default`).
    pub name: Option<String>,
    /// `ami://user[:secret]@host[:5038][?server=NAME]` or `amis://…` for TLS.
    pub url: String,
    /// Read the AMI secret from this environment variable instead of the URL.
    pub secret_env: Option<String>,
    /// Read the AMI secret from this file instead of the URL.
    pub secret_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for `amis://`.
    pub ca_file: Option<PathBuf>,
    /// Rows whose `server` column is NULL belong to this server (default: the first server).
    #[serde(default)]
    pub default: bool,
    /// Longest delay between AMI reconnect attempts, jitter included (default 5 s; also the URL's
    /// `reconnect_max=SECS`, which this overrides).
    #[serde(default, with = "humantime_serde")]
    pub reconnect_max: Option<std::time::Duration>,
}

impl ServerConfig {
    /// A server given only by its URL (e.g. `--ami` on the command line); it is the default server.
    pub fn from_url(url: &str) -> Self {
        Self {
            name: None,
            url: url.to_string(),
            secret_env: None,
            secret_file: None,
            ca_file: None,
            default: true,
            reconnect_max: None,
        }
    }

    /// A server given by its URL on the command line or in `CALLWATCH_AMI_URL`: when the URL carries no
    /// secret of its own and `CALLWATCH_AMI_SECRET` is set (`secret_set`), the secret is read from there.
    pub fn from_cli_url(url: &str, secret_set: bool) -> Self {
        let mut server = Self::from_url(url);
        if secret_set && !url_names_secret(url) {
            server.secret_env = Some(AMI_SECRET_ENV.to_string());
        }
        server
    }
}

/// The environment variable that holds the AMI secret for `CALLWATCH_AMI_URL` / `--ami`.
pub const AMI_SECRET_ENV: &str = "CALLWATCH_AMI_SECRET";

/// True when `url` gives the secret itself (a password) or says where it is (`secret_env` / `secret_file`).
fn url_names_secret(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => {
            u.password().is_some()
                || u.query_pairs()
                    .any(|(k, _)| k == "secret_env" || k == "secret_file")
        }
        Err(_) => false,
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("name", &self.name)
            .field("url", &crate::redact::url(&self.url))
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("default", &self.default)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

/// A server ready to connect to.
#[derive(Debug, Clone)]
pub struct ResolvedServer {
    /// Its name.
    pub name: String,
    /// Rows with a NULL server belong to it.
    pub is_default: bool,
    /// Client settings (secret included, redacted in Debug).
    pub ami: ami::Config,
}

impl Settings {
    /// Resolves every `[[server]]` into client settings: URL parsed, secret read from the URL, env or file.
    pub fn resolve_servers(&self) -> anyhow::Result<Vec<ResolvedServer>> {
        let mut out: Vec<ResolvedServer> = Vec::new();
        let any_default = self.servers.iter().any(|s| s.default);
        for (i, s) in self.servers.iter().enumerate() {
            let ami = resolve_ami(
                &s.url,
                s.secret_env.as_deref(),
                s.secret_file.as_deref(),
                s.ca_file.as_deref(),
            )
            .with_context(|| format!("[[server]] #{}", i + 1))?;
            let name = s.name.clone().unwrap_or_else(|| ami.server.clone());
            anyhow::ensure!(
                !out.iter().any(|o| o.name == name),
                "[[server]] #{}: the name {name:?} is used twice",
                i + 1
            );
            let mut ami = ami;
            ami.server = name.clone();
            if let Some(max) = s.reconnect_max {
                anyhow::ensure!(
                    !max.is_zero(),
                    "[[server]] #{}: reconnect_max must be longer than 0",
                    i + 1
                );
                ami.backoff.max = max;
            }
            out.push(ResolvedServer {
                name,
                is_default: if any_default { s.default } else { i == 0 },
                ami,
            });
        }
        Ok(out)
    }

    /// Checks what can be checked without connecting anywhere.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.policy.validate()?;
        self.broadcast.validate()?;
        self.resolve_servers()?;
        if let Some(c) = &self.cdr {
            c.validate(&self.database.timezone)?;
        }
        anyhow::ensure!(
            self.servers.iter().filter(|s| s.default).count() <= 1,
            "only one [[server]] may have default = true"
        );
        anyhow::ensure!(
            self.servers.len() <= 1 || !self.database.mapping.columns.server.trim().is_empty(),
            "{} [[server]] blocks, but the calls table has no server column mapped: every row would be \
             judged against one Asterisk's channels, and the other's live calls closed as gone. Map the \
             column that names each row's Asterisk ([database.mapping.columns] server = \"…\"), or run one \
             callwatch per Asterisk, each with its own calls table",
            self.servers.len()
        );
        Ok(())
    }
}

/// Parses an AMI URL and fills in the secret from an env var or file when given.
pub fn resolve_ami(
    url: &str,
    secret_env: Option<&str>,
    secret_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> anyhow::Result<ami::Config> {
    // The URL parser reads `secret_env` / `secret_file` itself (and insists on a secret): pass ours along.
    let mut url = url.to_string();
    let mut add = |key: &str, value: &str| {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(key);
        url.push('=');
        url.push_str(&percent_encode(value));
    };
    if let Some(var) = secret_env {
        add("secret_env", var);
    } else if let Some(path) = secret_file {
        add("secret_file", &path.display().to_string());
    }
    let mut cfg = ami::Config::from_url(&url).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let (Some(ca), Some(tls)) = (ca_file, cfg.tls.as_mut()) {
        tls.ca_file = Some(ca.to_path_buf());
    }
    Ok(cfg)
}

/// Percent-encodes a query value (everything but unreserved characters and `/`).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Loads the configuration for a command: the file (`--config`, or the default path when it exists), then
/// `CALLWATCH_…` environment overrides, then `--database` / `DATABASE_URL`.
pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
    let mut settings = match &global.config {
        Some(path) => read_file(path)?,
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            read_file(Path::new(DEFAULT_CONFIG_PATH))?
        }
        None => Settings::default(),
    };
    apply_env(&mut settings, |k| std::env::var(k).ok())?;
    if let Some(url) = &global.database {
        settings.database.url = store::DatabaseUrl::new(url.clone());
    }
    if settings.database.url.expose().is_empty() {
        settings.database.url = store::DatabaseUrl::new(DEFAULT_DATABASE_URL);
    }
    settings
        .broadcast
        .status
        .clone_from(&settings.database.mapping.status_values.completed);
    settings.validate()?;
    Ok(settings)
}

/// The embedded default database when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://callwatch.db";

fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            crate::redact::config_error(&e.to_string(), &text)
        )
    })
}

/// Environment overrides: `CALLWATCH_AMI_URL` (replaces the servers with one), `CALLWATCH_AMI_SECRET`,
/// `CALLWATCH_TIMEOUT`, `CALLWATCH_FALLBACK_AFTER`, `CALLWATCH_SWEEP_INTERVAL`, `CALLWATCH_HTTP_LISTEN`,
/// `CALLWATCH_TIMEZONE`.
fn apply_env(settings: &mut Settings, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    if let Some(url) = get("CALLWATCH_AMI_URL") {
        settings.servers = vec![ServerConfig::from_cli_url(
            &url,
            get(AMI_SECRET_ENV).is_some(),
        )];
    }
    let duration = |key: &str| -> anyhow::Result<Option<std::time::Duration>> {
        get(key)
            .map(|v| {
                humantime::parse_duration(&v)
                    .with_context(|| format!("{key}={v:?} is not a duration"))
            })
            .transpose()
    };
    if let Some(d) = duration("CALLWATCH_TIMEOUT")? {
        settings.policy.timeout = d;
    }
    if let Some(d) = duration("CALLWATCH_FALLBACK_AFTER")? {
        settings.policy.fallback_after = d;
    }
    if let Some(d) = duration("CALLWATCH_SWEEP_INTERVAL")? {
        settings.policy.sweep_interval = d;
    }
    if let Some(listen) = get("CALLWATCH_HTTP_LISTEN") {
        settings.http.listen = listen;
    }
    if let Some(tz) = get("CALLWATCH_TIMEZONE") {
        settings.database.timezone = tz;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ami.secret");
        std::fs::write(&secret, "lab-secret\n").unwrap();
        let text = include_str!("../deploy/callwatch.toml")
            .replace("/etc/callwatch/ami.secret", secret.to_str().unwrap());
        let s: Settings = toml::from_str(&text).unwrap();
        s.validate().unwrap();
        assert_eq!(s.servers.len(), 1);
        let servers = s.resolve_servers().unwrap();
        assert!(servers[0].is_default);
        assert_eq!(
            servers[0].ami.secret.expose(),
            "lab-secret",
            "read from secret_file"
        );
        assert_eq!(servers[0].name, "pbx1");
        assert_eq!(
            servers[0].ami.backoff.max,
            std::time::Duration::from_secs(5),
            "reconnect_max as in the sample"
        );
        assert!(!format!("{s:?}").contains("lab-secret"));
    }

    #[test]
    fn reconnect_max_per_server() {
        let text = "[[server]]\nurl = \"ami://u:s@127.0.0.1\"\nreconnect_max = \"2s\"\n\
                    [[server]]\nname = \"b\"\nurl = \"ami://u:s@127.0.0.2?reconnect_max=7\"\n";
        let s: Settings = toml::from_str(text).unwrap();
        let servers = s.resolve_servers().unwrap();
        assert_eq!(
            servers[0].ami.backoff.max,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            servers[1].ami.backoff.max,
            std::time::Duration::from_secs(7)
        );
        let s: Settings =
            toml::from_str("[[server]]\nurl = \"ami://u:s@h\"\nreconnect_max = \"0s\"\n").unwrap();
        let err = s.resolve_servers().unwrap_err();
        assert!(format!("{err:#}").contains("reconnect_max"), "{err:#}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = toml::from_str::<Settings>("[policy]\ntimeout = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let err = toml::from_str::<Settings>("[polcy]\n").unwrap_err();
        assert!(err.to_string().contains("polcy"), "{err}");
    }

    #[test]
    fn env_overrides_apply() {
        let mut s = Settings::default();
        apply_env(&mut s, |k| match k {
            "CALLWATCH_AMI_URL" => Some("ami://watchdog@127.0.0.1:5038?server=pbx9".into()),
            "CALLWATCH_TIMEOUT" => Some("45m".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.servers.len(), 1);
        assert_eq!(s.policy.timeout, std::time::Duration::from_secs(45 * 60));
        let err = apply_env(&mut s, |k| {
            (k == "CALLWATCH_SWEEP_INTERVAL").then(|| "often".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("CALLWATCH_SWEEP_INTERVAL"));
    }
}
