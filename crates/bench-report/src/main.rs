//! `bench-report FIGURES.jsonl PAGE.md RUN-INFO`: writes the figures the benchmarks recorded into the
//! table of a Markdown page (between its bench-table markers). Run by `scripts/bench.sh`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [figures, page, run_info] = args.as_slice() else {
        eprintln!("usage: bench-report FIGURES.jsonl PAGE.md RUN-INFO");
        return ExitCode::from(2);
    };
    match write_table(figures, page, run_info) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-report: {err}");
            ExitCode::FAILURE
        }
    }
}

fn write_table(figures: &str, page: &str, run_info: &str) -> Result<(), String> {
    let jsonl =
        std::fs::read_to_string(figures).map_err(|e| format!("cannot read {figures}: {e}"))?;
    let text = std::fs::read_to_string(page).map_err(|e| format!("cannot read {page}: {e}"))?;
    let block = bench_report::render(&jsonl, run_info).map_err(|e| e.to_string())?;
    let updated =
        bench_report::replace_between_markers(&text, &block).map_err(|e| format!("{page}: {e}"))?;
    std::fs::write(page, updated).map_err(|e| format!("cannot write {page}: {e}"))
}
