#!/usr/bin/env bash
# `make mutants`: mutation testing of the money and limit code (the files in
# .cargo/mutants.toml) against the native tests. About 300 mutants at 25 s to a minute each on
# two shared cores (an hour or more), so it is not part of `make test`. MUTANTS_JOBS (default 2)
# builds at once; extra arguments go to cargo mutants (e.g. `--re 'QuotaState::admit'`,
# `--list`, `--iterate` to retest only what was missed last time). The report is in
# target/mutants/mutants.out (missed.txt, caught.txt, unviable.txt, timeout.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/cargo-tool.sh

CARGO_MUTANTS_VERSION=27.1.0
# cargo-mutants answers `--version` only as a cargo subcommand, so install_cargo_tool's own
# check (`cargo-mutants --version`) would reinstall it on every run: check it here first.
root="$TOOLS_DIR/cargo-mutants-$CARGO_MUTANTS_VERSION"
if [ "$("$root/bin/cargo-mutants" mutants --version 2>/dev/null | awk '{ print $NF }')" != "$CARGO_MUTANTS_VERSION" ]; then
  install_cargo_tool cargo-mutants "$CARGO_MUTANTS_VERSION" cargo-mutants
fi
export PATH="$TOOLS_DIR/cargo-mutants-$CARGO_MUTANTS_VERSION/bin:$PATH"

# A fixed timeout rather than one scaled from the baseline: the baseline on a loaded 2-core
# machine varies, and a mutant that loops (a window that never advances) must still end.
# Each mutant relinks every test binary: without debug info that is several times faster, and
# a failing test's message is all a mutant's log needs.
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
mkdir -p target
exec cargo mutants --test-tool cargo --jobs "${MUTANTS_JOBS:-2}" --timeout "${MUTANTS_TIMEOUT:-300}" \
  --output target/mutants "$@"
