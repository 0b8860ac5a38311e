//! Reading a Laravel application's settings: its `.env` (dotenv syntax), `config/app.php`'s timezone and its
//! database connection's session `timezone`, and turning them into a commented `callwatch.toml`
//! ([`config_for`], used by `callwatch init --laravel`).
//!
//! Secrets (`DB_PASSWORD`, `REDIS_PASSWORD`, `PUSHER_APP_SECRET`, …) are never copied: the file names the
//! environment variables that hold them, so callwatch can run with the app's `.env` as its environment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::broadcast::{laravel_redis_prefix, DEFAULT_EVENT};

/// Variables of a `.env` file, in the order they appear (later definitions win).
pub type DotEnv = BTreeMap<String, String>;

/// Parses a `.env` file as Laravel's phpdotenv does for the usual cases: `KEY=value`, an optional `export `,
/// `#` comments, `"double quoted"` values with `\n`, `\"`, `\\` escapes and `${VAR}` references, `'single
/// quoted'` values taken literally, unquoted values up to a ` #` comment, with `${VAR}` references.
pub fn parse_dotenv(text: &str) -> DotEnv {
    let mut vars = DotEnv::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let raw = raw.trim_start();
        let value = if let Some(rest) = raw.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(other) => out.push(other),
                        None => out.push('\\'),
                    },
                    c => out.push(c),
                }
            }
            expand(&out, &vars)
        } else if let Some(rest) = raw.strip_prefix('\'') {
            rest.split('\'').next().unwrap_or("").to_string()
        } else {
            let end = raw
                .char_indices()
                .find(|&(i, c)| c == '#' && i > 0 && raw[..i].ends_with(char::is_whitespace))
                .map_or(raw.len(), |(i, _)| i);
            expand(raw[..end].trim(), &vars)
        };
        vars.insert(key.to_string(), value);
    }
    vars
}

/// Replaces `${NAME}` by the value of an earlier variable (empty when undefined).
fn expand(value: &str, vars: &DotEnv) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(len) => {
                let name = &rest[start + 2..start + 2 + len];
                out.push_str(vars.get(name).map_or("", String::as_str));
                rest = &rest[start + 3 + len..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of `'key' => …` in a PHP config array: a string literal, or `env('NAME', 'default')` resolved
/// against `env`. `None` when the key is absent or its value is another expression.
fn php_value(php: &str, key: &str, env: &DotEnv) -> Option<String> {
    for line in php.lines() {
        let code = line.trim_start();
        if code.starts_with("//") || code.starts_with('#') || code.starts_with('*') {
            continue;
        }
        for quote in ['\'', '"'] {
            let needle = format!("{quote}{key}{quote}");
            let Some(at) = code.find(&needle) else {
                continue;
            };
            let after = code[at + needle.len()..].trim_start();
            let Some(expr) = after.strip_prefix("=>") else {
                continue;
            };
            return php_expr(expr.trim_start(), env);
        }
    }
    None
}

/// A PHP string literal or `env('NAME'[, 'default'])` at the start of `expr`.
fn php_expr(expr: &str, env: &DotEnv) -> Option<String> {
    if let Some(args) = expr.strip_prefix("env(") {
        let args = &args[..args.find(')')?];
        let mut parts = args.splitn(2, ',');
        let name = php_string(parts.next()?.trim())?;
        if let Some(v) = env.get(&name) {
            return Some(v.clone());
        }
        return parts.next().and_then(|d| php_string(d.trim()));
    }
    php_string(expr)
}

/// The PHP string literal at the start of `s` (`'…'` or `"…"`, no escapes).
fn php_string(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &s[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

/// The text of the PHP array that follows `'name' => [` (brackets counted; enough for config files).
fn php_array<'a>(php: &'a str, name: &str) -> Option<&'a str> {
    let start = ["'", "\""]
        .iter()
        .find_map(|q| php.find(&format!("{q}{name}{q} => [")))?;
    let open = start + php[start..].find('[')?;
    let mut depth = 0usize;
    for (i, c) in php[open..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&php[open..open + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// What [`config_for`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The commented `callwatch.toml`.
    pub toml: String,
    /// Environment variables the file refers to (secrets), which callwatch needs at run time.
    pub env_vars: Vec<String>,
    /// Things the reader must check or edit.
    pub warnings: Vec<String>,
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn get<'a>(env: &'a DotEnv, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// A `scheme://user@host:port/path` URL without any password.
fn url_without_password(
    scheme: &str,
    user: Option<&str>,
    host: &str,
    port: &str,
    path: &str,
) -> String {
    let mut url = match url::Url::parse(&format!("{scheme}://{host}")) {
        Ok(u) => u,
        Err(_) => return format!("{scheme}://{host}:{port}/{path}"),
    };
    if let Some(user) = user {
        let _ = url.set_username(user);
    }
    if let Ok(port) = port.parse::<u16>() {
        let _ = url.set_port(Some(port));
    }
    url.set_path(path);
    url.to_string()
}

/// Builds a commented `callwatch.toml` for the Laravel app in `app_dir`, from its `.env` variables, its
/// `config/app.php` and `config/database.php` (when present). Fails only on a database callwatch cannot use.
pub fn config_for(
    app_dir: &Path,
    env: &DotEnv,
    app_php: Option<&str>,
    database_php: Option<&str>,
) -> anyhow::Result<Generated> {
    let mut env_vars = Vec::new();
    let mut warnings = Vec::new();
    let mut t = String::new();
    let app = app_dir.display();
    let _ = writeln!(
        t,
        "# callwatch configuration written by `callwatch init --laravel {app}` from the app's .env and config/.\n\
         # No secret is copied here: the settings below name the environment variables that hold them, so run\n\
         # callwatch with the app's .env as its environment (systemd: EnvironmentFile={app}/.env).\n\
         # Check it with: callwatch check-config --config callwatch.toml\n"
    );

    let _ = writeln!(
        t,
        "# The Asterisk to watch: edit the AMI account's user, host and port (manager.conf).\n\
         [[server]]\n\
         name = \"pbx1\"\n\
         url = \"ami://callwatch@127.0.0.1:5038\"\n\
         secret_env = \"CALLWATCH_AMI_SECRET\"          # the AMI secret, from the environment\n"
    );
    env_vars.push("CALLWATCH_AMI_SECRET".to_string());
    warnings.push("edit [[server]] url: the AMI account callwatch logs in with".to_string());

    // The database.
    let connection = get(env, "DB_CONNECTION").unwrap_or("mysql");
    let _ = writeln!(t, "[database]");
    match connection {
        "mysql" | "mariadb" | "pgsql" => {
            let (scheme, port) = if connection == "pgsql" {
                ("postgres", "5432")
            } else {
                ("mysql", "3306")
            };
            let url = url_without_password(
                scheme,
                get(env, "DB_USERNAME"),
                get(env, "DB_HOST").unwrap_or("127.0.0.1"),
                get(env, "DB_PORT").unwrap_or(port),
                get(env, "DB_DATABASE").unwrap_or("forge"),
            );
            let _ = writeln!(
                t,
                "# DB_CONNECTION={connection}: DB_HOST, DB_PORT, DB_DATABASE, DB_USERNAME.\nurl = {}",
                quoted(&url)
            );
            if env.contains_key("DB_PASSWORD") {
                let _ = writeln!(
                    t,
                    "password_env = \"DB_PASSWORD\"                # the password, from the environment"
                );
                env_vars.push("DB_PASSWORD".to_string());
            }
            if env.contains_key("DATABASE_URL") || env.contains_key("DB_URL") {
                warnings.push(
                    "the app's .env has DATABASE_URL/DB_URL: callwatch reads DATABASE_URL from its environment, \
                     which then replaces [database] url"
                        .to_string(),
                );
            }
        }
        "sqlite" => {
            let file = match get(env, "DB_DATABASE") {
                Some(p) if Path::new(p).is_absolute() => p.to_string(),
                Some(p) => app_dir.join(p).display().to_string(),
                None => app_dir
                    .join("database/database.sqlite")
                    .display()
                    .to_string(),
            };
            let _ = writeln!(
                t,
                "# DB_CONNECTION=sqlite: the app's database file.\nurl = {}",
                quoted(&format!("sqlite://{file}"))
            );
        }
        other => anyhow::bail!(
            "DB_CONNECTION={other}: callwatch works with mysql, mariadb, pgsql and sqlite databases"
        ),
    }
    let timezone = app_php
        .and_then(|php| php_value(php, "timezone", env))
        .or_else(|| get(env, "APP_TIMEZONE").map(str::to_string))
        .unwrap_or_else(|| "UTC".to_string());
    if store::TimeCodec::new(&timezone).is_err() {
        warnings.push(format!(
            "the app's timezone {timezone:?} is not an IANA zone name"
        ));
    }
    let _ = writeln!(
        t,
        "# The app's timezone (config/app.php 'timezone'): the zone of its naive timestamps.\ntimezone = {}",
        quoted(&timezone)
    );
    if matches!(connection, "mysql" | "mariadb") {
        let session = database_php
            .and_then(|php| php_array(php, connection))
            .and_then(|conn| php_value(conn, "timezone", env));
        match session {
            Some(zone) => {
                let _ = writeln!(
                    t,
                    "# config/database.php sets the {connection} connection's session timezone.\nsession_time_zone = {}",
                    quoted(&zone)
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "# Sessions keep the server's time_zone, as the app's do (config/database.php sets no 'timezone').\n\
                     # session_time_zone = \"+00:00\""
                );
            }
        }
    }
    let _ = writeln!(t, "\n[database.mapping]\ntable = \"calls\"                            # the app's calls table; map its columns under [database.mapping.columns]\n");

    // Broadcasting.
    let driver = get(env, "BROADCAST_DRIVER")
        .or_else(|| get(env, "BROADCAST_CONNECTION"))
        .unwrap_or("null");
    let _ = writeln!(
        t,
        "[broadcast]\n\
         # Laravel sends the event's class name; the frontend listens with\n\
         # Echo.channel('calls').listen('CallStatusUpdated', …). If the app's event defines broadcastAs(),\n\
         # put that name here and listen with a leading dot: .listen('.CallStatusUpdated', …).\n\
         channel = \"calls\"\n\
         event = '{DEFAULT_EVENT}'"
    );
    match driver {
        "redis" => {
            let host = get(env, "REDIS_HOST").unwrap_or("127.0.0.1");
            let port = get(env, "REDIS_PORT").unwrap_or("6379");
            let db = get(env, "REDIS_DB").unwrap_or("0");
            let url = url_without_password("redis", get(env, "REDIS_USERNAME"), host, port, db);
            let _ = writeln!(
                t,
                "\n# BROADCAST_DRIVER=redis (laravel-echo-server / Soketi): REDIS_HOST, REDIS_PORT, REDIS_DB.\n\
                 [broadcast.redis]\nurl = {}",
                quoted(&url)
            );
            if let Some(prefix) = env.get("REDIS_PREFIX") {
                let _ = writeln!(
                    t,
                    "prefix = {}                   # REDIS_PREFIX",
                    quoted(prefix)
                );
            } else {
                let name = get(env, "APP_NAME").unwrap_or("Laravel");
                let _ = writeln!(
                    t,
                    "# APP_NAME: Laravel's prefix is Str::slug(APP_NAME, '_').'_database_' = {}\napp_name = {}",
                    laravel_redis_prefix(name),
                    quoted(name)
                );
            }
            if get(env, "REDIS_PASSWORD").is_some_and(|p| p != "null") {
                let _ = writeln!(
                    t,
                    "password_env = \"REDIS_PASSWORD\"             # the password, from the environment"
                );
                env_vars.push("REDIS_PASSWORD".to_string());
            }
        }
        "pusher" | "reverb" => {
            let (p, default_scheme) = if driver == "pusher" {
                ("PUSHER", "https")
            } else {
                ("REVERB", "https")
            };
            let var = |k: &str| format!("{p}_{k}");
            let url = match get(env, &var("HOST")) {
                Some(host) => {
                    let scheme = get(env, &var("SCHEME")).unwrap_or(default_scheme);
                    let port = get(env, &var("PORT")).unwrap_or(if scheme == "http" {
                        "80"
                    } else {
                        "443"
                    });
                    format!("{scheme}://{host}:{port}")
                }
                None => format!(
                    "https://api-{}.pusher.com",
                    get(env, "PUSHER_APP_CLUSTER").unwrap_or("mt1")
                ),
            };
            let _ = writeln!(
                t,
                "\n# BROADCAST_DRIVER={driver}: {p}_HOST/PORT/SCHEME (or the cluster), {p}_APP_ID, {p}_APP_KEY.\n\
                 [broadcast.pusher]\nurl = {}\napp_id = {}\nkey = {}\nsecret_env = {}            # the secret, from the environment",
                quoted(&url),
                quoted(get(env, &var("APP_ID")).unwrap_or("")),
                quoted(get(env, &var("APP_KEY")).unwrap_or("")),
                quoted(&var("APP_SECRET")),
            );
            env_vars.push(var("APP_SECRET"));
        }
        other => {
            let _ = writeln!(
                t,
                "# BROADCAST_DRIVER={other}: nothing is broadcast. For Echo, add [broadcast.redis] or [broadcast.pusher]."
            );
        }
    }
    let _ = writeln!(
        t,
        "\n[policy]\n\
         # The old cron's rule, now only a fallback: close rows answered longer ago than this when AMI cannot\n\
         # say whether their channel is alive.\n\
         timeout = \"30m\""
    );
    Ok(Generated {
        toml: t,
        env_vars,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_syntax() {
        let env = parse_dotenv(
            "# comment\nAPP_NAME=\"Call Center\"\nexport DB_HOST=db.local\nDB_PASSWORD='p#ss ${X}'\n\
             REDIS_PASSWORD=null # inline comment\nURL=\"http://${DB_HOST}/x\\n\"\nEMPTY=\nBAD LINE\nHASH=a#b\n",
        );
        assert_eq!(env["APP_NAME"], "Call Center");
        assert_eq!(env["DB_HOST"], "db.local");
        assert_eq!(env["DB_PASSWORD"], "p#ss ${X}", "single quotes are literal");
        assert_eq!(env["REDIS_PASSWORD"], "null");
        assert_eq!(env["URL"], "http://db.local/x\n");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env["HASH"], "a#b", "a # inside a value is kept");
        assert!(!env.contains_key("BAD LINE"));
    }

    #[test]
    fn php_config_values() {
        let env = parse_dotenv("APP_TIMEZONE=Europe/Vienna\n");
        let l8 =
            "return [\n    // 'timezone' => 'Asia/Tokyo',\n    'timezone' => 'Europe/Berlin',\n];";
        assert_eq!(
            php_value(l8, "timezone", &env).as_deref(),
            Some("Europe/Berlin")
        );
        let l11 = "'timezone' => env('APP_TIMEZONE', 'UTC'),";
        assert_eq!(
            php_value(l11, "timezone", &env).as_deref(),
            Some("Europe/Vienna")
        );
        assert_eq!(
            php_value(l11, "timezone", &DotEnv::new()).as_deref(),
            Some("UTC")
        );
        let db = "'connections' => [\n 'sqlite' => [\n 'timezone' => 'x',\n ],\n 'mysql' => [\n 'driver' => 'mysql',\n \
                  'options' => [1, 2],\n 'timezone' => '+00:00',\n ],\n]";
        let mysql = php_array(db, "mysql").unwrap();
        assert_eq!(
            php_value(mysql, "timezone", &env).as_deref(),
            Some("+00:00")
        );
        assert_eq!(php_array(db, "pgsql"), None);
    }

    fn settings(toml_text: &str) -> crate::settings::Settings {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
    }

    #[test]
    fn reverb_app_on_laravel_11() {
        let env = parse_dotenv(
            "APP_NAME=Laravel\nAPP_TIMEZONE=Europe/Berlin\nDB_CONNECTION=sqlite\nBROADCAST_CONNECTION=reverb\n\
             REVERB_APP_ID=123\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=reverb-secret-value\n\
             REVERB_HOST=localhost\nREVERB_PORT=8080\nREVERB_SCHEME=http\n",
        );
        let app_php = "'timezone' => env('APP_TIMEZONE', 'UTC'),";
        let g = config_for(Path::new("/srv/app"), &env, Some(app_php), None).unwrap();
        assert!(!g.toml.contains("reverb-secret-value"), "{}", g.toml);
        let s = settings(&g.toml);
        assert_eq!(s.database.timezone, "Europe/Berlin");
        assert_eq!(
            s.database.url.expose(),
            "sqlite:///srv/app/database/database.sqlite"
        );
        let p = s.broadcast.pusher.unwrap();
        assert_eq!(p.url, "http://localhost:8080");
        assert_eq!((p.app_id.as_str(), p.key.as_str()), ("123", "app-key"));
        assert_eq!(p.secret_env.as_deref(), Some("REVERB_APP_SECRET"));
        assert!(p.secret.is_none());
        assert_eq!(s.broadcast.event, DEFAULT_EVENT);
        assert!(g.env_vars.contains(&"REVERB_APP_SECRET".to_string()));
    }

    #[test]
    fn pusher_cluster_and_redis_prefix() {
        let env = parse_dotenv(
            "DB_CONNECTION=mysql\nDB_USERNAME=app\nDB_PASSWORD=db-secret-value\nBROADCAST_DRIVER=pusher\n\
             PUSHER_APP_ID=1\nPUSHER_APP_KEY=k\nPUSHER_APP_SECRET=pusher-secret-value\nPUSHER_APP_CLUSTER=eu\n",
        );
        let g = config_for(Path::new("/srv/app"), &env, None, None).unwrap();
        assert!(!g.toml.contains("secret-value"), "{}", g.toml);
        let s = settings(&g.toml);
        assert_eq!(s.database.url.expose(), "mysql://app@127.0.0.1:3306/forge");
        assert_eq!(s.database.password_env.as_deref(), Some("DB_PASSWORD"));
        assert_eq!(s.database.session_time_zone, None);
        assert_eq!(s.broadcast.pusher.unwrap().url, "https://api-eu.pusher.com");

        let env = parse_dotenv("BROADCAST_DRIVER=redis\nREDIS_PREFIX=crm_\nDB_CONNECTION=sqlsrv\n");
        let err = config_for(Path::new("/srv/app"), &env, None, None).unwrap_err();
        assert!(err.to_string().contains("sqlsrv"), "{err}");
        let env =
            parse_dotenv("BROADCAST_DRIVER=redis\nREDIS_PREFIX=crm_\nDB_CONNECTION=mariadb\n");
        let db_php = "'mariadb' => [\n'timezone' => '+00:00',\n],";
        let g = config_for(Path::new("/srv/app"), &env, None, Some(db_php)).unwrap();
        let s = settings(&g.toml);
        let r = s.broadcast.redis.unwrap();
        assert_eq!(r.effective_prefix().unwrap(), "crm_");
        assert_eq!(r.password_env, None);
        assert_eq!(s.database.session_time_zone.as_deref(), Some("+00:00"));
    }
}
