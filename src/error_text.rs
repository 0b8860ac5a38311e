//! Rendering an error and its causes as one line, as the command line prints it.

/// `err` and its causes joined by `: `, leaving out a cause whose text the message already contains
/// (many errors repeat their source in their own message), so no cause is said twice.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("database error (reading): {source}")]
    struct Outer {
        #[source]
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no such table: callwatch_locks (code 1)")]
    struct Inner;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let err =
            anyhow::Error::new(Outer { source: Inner }).context("cannot take the instance lock");
        assert_eq!(
            one_line(&err),
            "cannot take the instance lock: database error (reading): no such table: callwatch_locks (code 1)"
        );
        assert_eq!(
            format!("{err:#}").matches("no such table").count(),
            2,
            "the default rendering repeats it"
        );
    }
}
