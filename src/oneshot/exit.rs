//! Exit codes of `cleanup`, `status` and `undo`, so that cron jobs and scripts can tell outcomes apart.

use std::process::ExitCode;

/// How a one-shot command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done (including "nothing to do" and dry runs).
    Ok,
    /// 1: an error (configuration, database, a failed close).
    Error,
    /// 2: refused or not confirmed: no terminal to ask on and neither `--yes` nor `--no-interaction`, or the
    /// answer was not "y". Nothing was changed.
    Refused,
    /// 3: another callwatch (a running daemon or another cleanup) holds the instance lock. Nothing was changed.
    LockHeld,
    /// 4: done in part: some closes were held back by the mass-close guard (`cleanup`), or some closes could
    /// not be undone because the row changed since (`undo`).
    Incomplete,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Refused => 2,
            Exit::LockHeld => 3,
            Exit::Incomplete => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// The exit-code table shown in `--help` of `cleanup` and `undo`.
pub const HELP: &str = "Exit codes:
  0  done (also: nothing to do, dry run)
  1  error (configuration, database, a failed close)
  2  refused or not confirmed: no terminal and neither --yes nor --no-interaction, or the answer was not y
  3  another callwatch (the daemon or another cleanup) holds the instance lock
  4  done in part: closes held by the mass-close guard (cleanup), closes that could not be undone (undo)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [
            Exit::Ok,
            Exit::Error,
            Exit::Refused,
            Exit::LockHeld,
            Exit::Incomplete,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(HELP.contains(&format!("  {}  ", a.code())), "{a:?}");
            for b in &all[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
    }
}
