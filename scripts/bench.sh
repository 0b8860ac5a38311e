#!/usr/bin/env bash
# Runs every benchmark and writes their headline figures into the table of docs/performance.md.
#
#   scripts/bench.sh            # the full set (about an hour on a 2-core machine, release build included)
#   scripts/bench.sh --quick    # smaller workloads (a few minutes once built), to check the script itself
#
# Each bench records its figures (bench_report::record) as JSON lines in target/bench/figures.jsonl; its
# full output goes to target/bench/log.txt. The table is rewritten only when every bench succeeded. The
# machine is named in the table; compare ratios measured in one run, not absolute figures across machines.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true

out=target/bench
mkdir -p "$out"
: >"$out/figures.jsonl"
: >"$out/log.txt"
export CALLWATCH_BENCH_OUT="$PWD/$out/figures.jsonl"
export CARGO_TERM_COLOR=never

load() { cut -d' ' -f1 /proc/loadavg; }
run() { # run DESCRIPTION COMMAND...
  printf '== %s\n' "$1" | tee -a "$out/log.txt"
  shift
  "$@" >>"$out/log.txt" 2>&1 || { echo "failed: $*; see $out/log.txt" >&2; tail -20 "$out/log.txt" >&2; exit 1; }
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(load)

if $quick; then
  run "AMI parsing" cargo bench -p ami-proto --features synthetic --bench throughput -- 1000 3
  run "AMI client" cargo bench -p ami --bench loopback -- 2000
  run "channel map memory" cargo bench -p ami --bench tombstones
  run "reconciler" cargo bench -p reconciler --bench decide -- --warm-up-time 1 --measurement-time 2
  run "store" env CALLWATCH_BENCH_ROWS=20000 cargo bench -p store --bench close
  run "fleet" cargo bench --bench fleet -- 10 2 20
  for engine in sqlite postgres mysql; do
    run "close path, replay, $engine" cargo bench --bench churn -- replay "$engine" 200 50 20
    run "close path, live, $engine" cargo bench --bench churn -- live "$engine" 200 50 20
  done
else
  run "AMI parsing" cargo bench -p ami-proto --features synthetic --bench throughput -- 11000 3
  run "AMI client" cargo bench -p ami --bench loopback
  run "channel map memory" cargo bench -p ami --bench tombstones
  run "reconciler" cargo bench -p reconciler --bench decide
  run "store" cargo bench -p store --bench close
  run "fleet" cargo bench --bench fleet -- 50 5 30
  for engine in sqlite postgres mysql; do
    run "close path, replay, $engine" cargo bench --bench churn -- replay "$engine"
    run "close path, live, $engine" cargo bench --bench churn -- live "$engine"
  done
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mode=$($quick && echo " (--quick: smaller workloads)" || true)
info="Written by \`scripts/bench.sh\`${mode} on ${started}, commit ${commit}: $(nproc) cores (${cpu}), ${mem}, \
load average ${load_before} before and $(load) after (other work on the machine slows every figure; \
the ratios to a baseline measured in the same run are the steadier reading)."
cargo run -q -p bench-report -- "$out/figures.jsonl" docs/performance.md "$info"
echo "docs/performance.md updated: $(wc -l <"$out/figures.jsonl") figures"
