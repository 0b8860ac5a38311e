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

#[cfg(test)]
mod tests {
    use super::*;

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
