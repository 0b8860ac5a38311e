//! The `[y/N]` confirmation, asked only on a terminal.

use std::io::{self, BufRead, IsTerminal, Write};

/// How a run is allowed to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// `--yes` / `--no-interaction`: go ahead without asking.
    Given,
    /// Standard input is a terminal: ask.
    Ask,
    /// No terminal and no `--yes`: refuse, change nothing.
    Refused,
}

/// Decides how to get consent: `assume_yes` wins; otherwise ask only when `stdin_is_terminal`.
pub fn consent(assume_yes: bool, stdin_is_terminal: bool) -> Consent {
    if assume_yes {
        Consent::Given
    } else if stdin_is_terminal {
        Consent::Ask
    } else {
        Consent::Refused
    }
}

/// [`consent`] for this process's standard input.
pub fn consent_here(assume_yes: bool) -> Consent {
    consent(assume_yes, io::stdin().is_terminal())
}

/// Writes `question [y/N] ` to `output` and reads one line: true only for `y` or `yes` (any case).
/// End of input counts as no.
pub fn confirm(
    question: &str,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<bool> {
    write!(output, "{question} [y/N] ")?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Asks on this process's terminal (stdin), writing the question to stdout or, when `to_stderr`, stderr.
pub async fn ask(question: String, to_stderr: bool) -> io::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        if to_stderr {
            confirm(&question, &mut input, &mut io::stderr())
        } else {
            confirm(&question, &mut input, &mut io::stdout())
        }
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> (bool, String) {
        let mut out = Vec::new();
        let yes = confirm("Close 2 stuck calls?", &mut text.as_bytes(), &mut out).unwrap();
        (yes, String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y\n", "Y\n", "yes\n", " YES \r\n"] {
            assert!(answer(yes).0, "{yes:?}");
        }
        for no in ["\n", "n\n", "no\n", "", "yep\n", "ja\n"] {
            assert!(!answer(no).0, "{no:?}");
        }
        assert_eq!(answer("y\n").1, "Close 2 stuck calls? [y/N] ");
    }

    #[test]
    fn consent_rules() {
        assert_eq!(consent(true, false), Consent::Given);
        assert_eq!(consent(true, true), Consent::Given);
        assert_eq!(consent(false, true), Consent::Ask);
        assert_eq!(consent(false, false), Consent::Refused);
    }
}
