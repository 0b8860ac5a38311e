//! `callwatch init --laravel PATH`: write a commented `callwatch.toml` from a Laravel app's `.env`,
//! `config/app.php` and `config/database.php` (see [`crate::laravel`]). Secrets are referenced by their
//! environment variable names, never copied.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::cli::GlobalArgs;
use crate::laravel;

/// Flags of `callwatch init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The Laravel application's directory (the one holding `.env` and `config/`).
    #[arg(long, value_name = "PATH")]
    pub laravel: PathBuf,
    /// Where to write the configuration (`-` for standard output).
    #[arg(
        long,
        short = 'o',
        value_name = "FILE",
        default_value = "callwatch.toml"
    )]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `callwatch init`.
pub async fn run(args: InitArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let app = &args.laravel;
    let env_path = app.join(".env");
    let env_text = std::fs::read_to_string(&env_path).with_context(|| {
        format!(
            "cannot read {} (is {} a Laravel application's directory?)",
            env_path.display(),
            app.display()
        )
    })?;
    let env = laravel::parse_dotenv(&env_text);
    let read = |rel: &str| std::fs::read_to_string(app.join(rel)).ok();
    let generated = laravel::config_for(
        app,
        &env,
        read("config/app.php").as_deref(),
        read("config/database.php").as_deref(),
    )?;
    if args.output.as_os_str() == "-" {
        print!("{}", generated.toml);
    } else {
        anyhow::ensure!(
            args.force || !args.output.exists(),
            "{} exists; pass --force to replace it",
            args.output.display()
        );
        std::fs::write(&args.output, &generated.toml)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        println!("wrote {}", args.output.display());
    }
    eprintln!(
        "callwatch needs these environment variables at run time (secrets are not in the file): {}",
        generated.env_vars.join(", ")
    );
    for w in &generated.warnings {
        eprintln!("check: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
