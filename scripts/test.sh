#!/usr/bin/env bash
# The one test command: installs missing test tools, builds everything once, runs every test
# (unit, property, end-to-end with real processes on loopback) with nextest in parallel, then
# the doc tests. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
scripts/install-test-deps.sh

cargo build --workspace --all-targets

status=0
cargo nextest run --workspace --no-fail-fast || status=$?
cargo test --doc --workspace || status=$?

echo "scripts/test.sh: finished in $(( $(date +%s) - start ))s, exit ${status}" >&2
exit "$status"
