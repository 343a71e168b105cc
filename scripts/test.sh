#!/usr/bin/env bash
# The one test command: installs missing test tools, builds everything once, runs every test
# (unit, property, end-to-end with real processes on loopback) with nextest in parallel, then
# the doc tests, then every fuzz target for 10 s each (FUZZ_SECONDS). Exits non-zero if anything
# fails.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
scripts/install-test-deps.sh

cargo build --workspace --all-targets

status=0
cargo nextest run --workspace --no-fail-fast || status=$?
cargo test --doc --workspace || status=$?
# Every fuzz target for a few seconds on its checked-in corpus (nightly: scripts/fuzz.sh 600).
scripts/fuzz.sh "${FUZZ_SECONDS:-10}" || status=$?

echo "scripts/test.sh: finished in $(( $(date +%s) - start ))s, exit ${status}" >&2
exit "$status"
