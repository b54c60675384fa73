#!/usr/bin/env bash
# Runs every fuzz target briefly from its committed corpus; exits non-zero on the first crash
# (the crashing input is in fuzz/artifacts/<target>/). Called by tests/run-all.sh; see
# fuzz/README.md. QUORATE_FUZZ_SECONDS is the whole budget (default 60), split evenly; 0
# skips the step (the corpus replay in tests/fuzz_corpus.rs still runs with cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${QUORATE_FUZZ_SECONDS:-60}
if [ "$budget" = 0 ]; then
  echo "fuzz: skipped (QUORATE_FUZZ_SECONDS=0)"
  exit 0
fi

if ! command -v cargo-fuzz >/dev/null; then
  if [ "$(id -u)" = 0 ] || [ -n "${CI:-}" ]; then
    cargo install cargo-fuzz --locked --quiet
  else
    echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz --locked); fuzz step skipped" >&2
    exit 0
  fi
fi

# cargo fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list --fuzz-dir fuzz)
n=$(echo "$targets" | wc -w)
each=$(( budget / n > 0 ? budget / n : 1 ))

cargo fuzz build --fuzz-dir fuzz -a
for t in $targets; do
  work="fuzz/work/ci/$t"
  mkdir -p "$work"
  log="fuzz/work/ci/$t.log"
  # New inputs go to the scratch directory; the committed corpus is only read.
  if ! cargo fuzz run --fuzz-dir fuzz -a "$t" "$work" "fuzz/corpus/$t" -- \
      -max_total_time="$each" -malloc_limit_mb=512 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t/ (see fuzz/README.md)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $t: ${runs:-?} runs in ${each} s, no crash"
done
echo "fuzz: $n targets, ${each} s each, no crash"
