//! `callwatch check-config`: validate the configuration, including the mapped table's columns.
//!
//! Prints one line per check (`ok` or `FAIL`, what, and why) and exits non-zero when any check fails.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::settings;

/// Flags of `callwatch check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Only check the file and settings; do not connect to the database.
    #[arg(long)]
    pub offline: bool,
}

/// The checks' outcome, printed as it goes.
#[derive(Default)]
struct Checks {
    failed: usize,
}

impl Checks {
    fn report(&mut self, ok: bool, what: &str, detail: &str) {
        if !ok {
            self.failed += 1;
        }
        let mark = if ok { "ok  " } else { "FAIL" };
        if detail.is_empty() {
            println!("{mark} {what}");
        } else {
            println!("{mark} {what}: {detail}");
        }
    }
}

/// How long `check-config` waits for each AMI server's login and channel listing.
const AMI_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Logs in to every configured AMI server and waits for a listing. What it finds is advice, not a failed
/// check (Asterisk may be down while the configuration is right): `warn` when a server does not list in
/// time, `hint` when its events carry no `Timestamp:` header.
async fn check_ami(settings: &crate::settings::Settings) {
    let Ok(servers) = settings.resolve_servers() else {
        return;
    };
    if servers.is_empty() {
        return;
    }
    let listings =
        crate::oneshot::listing::Listings::take(&servers, AMI_WAIT, Arc::new(clock::SystemClock))
            .await;
    for (name, outcome) in listings.outcomes() {
        match outcome {
            crate::oneshot::listing::Outcome::Synced(s) => {
                println!(
                    "ok   AMI {name}: logged in, {} channel(s) listed",
                    s.live.len()
                );
                if listings.events_untimed(name) {
                    println!(
                        "hint AMI {name}: events carry no Timestamp: header, so end times are bounded by read \
                         times and pings; set `timestampevents = yes` in Asterisk's manager.conf for exact times"
                    );
                }
            }
            crate::oneshot::listing::Outcome::Failed { reason } => println!(
                "warn AMI {name}: no complete channel listing within {} ({reason}); the daemon keeps retrying",
                humantime::format_duration(AMI_WAIT)
            ),
        }
    }
    listings.close().await;
}

/// Checks the `[cdr]` source: reachable (or readable), the table and its columns present, the latest
/// record readable. Never prints a password.
async fn check_cdr(checks: &mut Checks, cfg: &cdr::CdrConfig, default_tz: &str, offline: bool) {
    match cdr::Source::open(cfg, default_tz) {
        Ok(source) => {
            checks.report(
                true,
                "CDR source",
                &format!(
                    "{}, timezone {} (read-only)",
                    source.describe(),
                    cfg.timezone(default_tz)
                ),
            );
            if !offline {
                for c in source.check().await {
                    checks.report(c.ok, &c.what, &c.detail);
                }
            }
            source.shutdown().await;
        }
        Err(err) => checks.report(false, "CDR source", &err.to_string()),
    }
}

/// Runs `callwatch check-config`.
pub async fn run(args: CheckConfigArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut checks = Checks::default();
    let settings = match settings::load(global) {
        Ok(s) => {
            let source = match &global.config {
                Some(p) => p.display().to_string(),
                None => "defaults".to_string(),
            };
            checks.report(true, "configuration", &source);
            s
        }
        Err(err) => {
            checks.report(false, "configuration", &format!("{err:#}"));
            return Ok(ExitCode::from(1));
        }
    };
    match settings.resolve_servers() {
        Ok(servers) => {
            let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
            let detail = if names.is_empty() {
                "none configured".to_string()
            } else {
                names.join(", ")
            };
            checks.report(true, "servers", &detail);
        }
        Err(err) => checks.report(false, "servers", &format!("{err:#}")),
    }
    let db = &settings.database;
    let url = db.url.redacted();
    match db.validate() {
        Ok(()) => checks.report(
            true,
            "database settings",
            &format!(
                "{url}, timezone {}, table {}",
                db.timezone, db.mapping.table
            ),
        ),
        Err(err) => checks.report(false, "database settings", &err.to_string()),
    }
    if !args.offline && checks.failed == 0 {
        match store::Store::connect_without_creating(db, Arc::new(clock::SystemClock)).await {
            Ok(store) => {
                checks.report(true, "database connection", &url);
                match store.check_mapping().await {
                    Ok(report) => {
                        for c in &report.checks {
                            checks.report(c.ok, &c.what, &c.detail);
                        }
                        for hint in &report.hints {
                            println!("hint {hint}");
                        }
                    }
                    Err(err) => checks.report(false, "mapping", &err.to_string()),
                }
                store.shutdown().await;
            }
            Err(err) => checks.report(false, "database connection", &err.to_string()),
        }
    }
    if let Some(cfg) = &settings.cdr {
        check_cdr(&mut checks, cfg, &settings.database.timezone, args.offline).await;
    }
    if !args.offline && checks.failed == 0 {
        check_ami(&settings).await;
    }
    if checks.failed == 0 {
        println!("configuration OK");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} check(s) failed", checks.failed);
        Ok(ExitCode::from(1))
    }
}
