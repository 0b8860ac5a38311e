//! Writes a synthetic AMI stream to stdout: `cargo run -p ami-proto --features synthetic --example synth -- CALLS SEED`.
use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let stdout = std::io::stdout().lock();
    let totals = ami_proto::synthetic::Synthetic::new(calls, seed)
        .write_to(std::io::BufWriter::new(stdout))?;
    writeln!(std::io::stderr(), "{totals:?}")?;
    Ok(())
}
