//! Helpers shared by the runner's integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `fixtures/ami/`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ami")
}

/// Runs the built `callwatch` binary with `args` (no stdin, no config from the environment).
pub fn callwatch<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_AMI_URL")
        .env("CALLWATCH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}
