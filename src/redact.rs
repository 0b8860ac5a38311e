//! Keeping secrets out of logs and error messages.

/// A URL with its password (and any `secret`/`password` query value) replaced by `***`.
///
/// Works on any `scheme://user:password@host…` string, also when it does not parse as a URL.
pub fn url(raw: &str) -> String {
    let mut out = text(raw);
    for key in ["secret=", "password=", "pass="] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key) {
            let start = from + pos + key.len();
            let end = out[start..].find('&').map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// Free text with the password part of every `scheme://user:password@` occurrence replaced by `***`.
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let auth_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..auth_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}

/// Keys whose values are secrets wherever they appear in a configuration file.
fn is_secret_key(key: &str) -> bool {
    let key = key
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .trim()
        .to_ascii_lowercase();
    let key = key.trim_matches(|c| c == '"' || c == '\'');
    ["secret", "password", "passwd", "pass", "token"]
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
}

/// The value of a `key = value` line, without quotes or a trailing comment (also when unterminated).
fn assigned_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    let value = value.trim();
    let value = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = &value[1..];
            inner.find(q).map_or(inner, |end| &inner[..end])
        }
        _ => value.split(['#', ' ']).next().unwrap_or(value),
    };
    Some((key.trim(), value))
}

/// An error about a configuration file, with every secret the file holds replaced by `***`: the values of
/// `secret`/`password`/`token`-like keys (found in `config`, the file's text), URL passwords, and any
/// quoted source line that assigns such a key. TOML errors quote the offending line, so without this a
/// typo next to `secret = "…"` would print the secret.
pub fn config_error(message: &str, config: &str) -> String {
    let mut out = text(message);
    let mut secrets: Vec<&str> = config
        .lines()
        .filter_map(assigned_value)
        .filter(|(key, value)| is_secret_key(key) && value.len() >= 2)
        .map(|(_, value)| value)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        out = out.replace(secret, "***");
    }
    // A quoted line that assigns a secret key (e.g. `3 | secret = "…`), whatever its value looked like.
    out.lines()
        .map(|line| match line.split_once('|') {
            Some((gutter, source))
                if gutter.trim().chars().all(|c| c.is_ascii_digit())
                    && assigned_value(source).is_some_and(|(k, _)| is_secret_key(k)) =>
            {
                let key = source.split_once('=').map_or(source, |(k, _)| k);
                format!("{gutter}|{key}= ***")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_lose_every_secret() {
        let config = "[[server]]\nurl = \"ami://w:url-pw@h\"\nsecret = \"inline-s3cret\" oops\n\
                      [broadcast.pusher]\nsecret = 'pusher-s3cret\napp_password = hunter22\n";
        let message =
            "TOML parse error at line 3, column 24\n  |\n3 | secret = \"inline-s3cret\" oops\n  |\
                       ^\nexpected newline; url ami://w:url-pw@h; pusher-s3cret; hunter22";
        let out = config_error(message, config);
        for secret in ["inline-s3cret", "url-pw", "pusher-s3cret", "hunter22"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("expected newline"), "{out}");
        assert!(out.contains("3 | secret = ***"), "{out}");
    }

    #[test]
    fn passwords_are_removed() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/calls?sslmode=require"),
            "postgres://app:***@db:5432/calls?sslmode=require"
        );
        assert_eq!(
            url("ami://watchdog:lab-secret@127.0.0.1:5038?server=pbx1"),
            "ami://watchdog:***@127.0.0.1:5038?server=pbx1"
        );
        assert_eq!(url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(
            url("http://h/x?secret=abc&y=1"),
            "http://h/x?secret=***&y=1"
        );
        assert_eq!(
            text("error connecting to mysql://root:pw@h/db: refused"),
            "error connecting to mysql://root:***@h/db: refused"
        );
    }
}
