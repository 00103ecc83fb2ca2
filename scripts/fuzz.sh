#!/usr/bin/env bash
# `make fuzz`: runs every cargo fuzz target for FUZZ_SECONDS (default 60) each. libFuzzer needs
# a nightly toolchain, installed here if missing; `cargo test` checks the same invariants on
# stable with proptest. New inputs go to fuzz/corpus/ (ignored by git, except the seeds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/cargo-tool.sh

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
install_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo-fuzz
export PATH="$TOOLS_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION/bin:$PATH"

cd fuzz
for target in $(cargo +nightly fuzz list); do
  echo "==> fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
  # Work in a copy of the seeds: the corpus grows, the committed seeds stay as they are.
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  log="corpus/$target.log"
  status=0
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs|panicked|^SUMMARY|Test unit written" "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "==> $target FAILED (exit $status); the crashing input is in fuzz/artifacts/$target, the log in fuzz/$log" >&2
    exit "$status"
  fi
done
