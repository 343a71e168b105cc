#!/usr/bin/env bash
# Run every fuzz target for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 10).
#
#   scripts/fuzz.sh        short mode, called by scripts/test.sh (CI)
#   scripts/fuzz.sh 600    nightly mode: ten minutes per target
#
# Builds fuzz/ once (cargo-fuzz, libFuzzer, no sanitizer, overflow checks on), then runs each
# target on a scratch copy of its checked-in corpus (fuzz/corpus/<target>, never modified
# here) so new coverage found in a run does not dirty the checkout. Exits non-zero when a
# target crashes; the crashing input is left in fuzz/artifacts/<target>/ (reproduce with
# `cargo fuzz run -s none <target> fuzz/artifacts/<target>/crash-…`).
#
# FUZZ_TARGETS="a b" limits the run to those targets; FUZZ_KEEP_CORPUS=1 merges what a run
# found back into fuzz/corpus (for curating the corpus, not for CI).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }

# cargo-fuzz on the stable toolchain: without a sanitizer it needs no nightly flag
# (`-s address` would need RUSTC_BOOTSTRAP=1 for -Zsanitizer).
# The fuzz build (every dependency instrumented: ~20 min cold on 2 cores) lives outside the
# checkout, so a fresh clone on a machine that ran it before rebuilds only sitecast's crates.
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sitecast/fuzz-target}
build=(cargo fuzz build -O -a -s none --target-dir "$FUZZ_TARGET_DIR")
start=$(date +%s)
"${build[@]}"
built=$(date +%s)
echo "fuzz: built the targets in $((built - start))s" >&2

mapfile -t all < <(cargo fuzz list)
targets=(${FUZZ_TARGETS:-${all[@]}})
bin_dir=$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
    work=$scratch/$t
    mkdir -p "$work" "fuzz/artifacts/$t"
    [[ -d fuzz/corpus/$t ]] && cp -a "fuzz/corpus/$t/." "$work/"
    echo "fuzz: $t for ${secs}s ($(ls "$work" | wc -l) corpus inputs)" >&2
    if ! "$bin_dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "$work" \
        >"$scratch/$t.log" 2>&1; then
        failed+=("$t")
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz: $t CRASHED; input left in fuzz/artifacts/$t/" >&2
    else
        grep -E '^(stat::number_of_executed_units|Done)' "$scratch/$t.log" | tail -n 1 >&2 || true
    fi
    if [[ ${FUZZ_KEEP_CORPUS:-0} == 1 ]]; then
        mkdir -p "fuzz/corpus/$t"
        "$bin_dir/$t" -merge=1 "fuzz/corpus/$t" "$work" >/dev/null 2>&1 || true
    fi
done

echo "fuzz: ${#targets[@]} targets, ${secs}s each, finished in $(( $(date +%s) - start ))s" >&2
if ((${#failed[@]})); then
    echo "fuzz: crashed: ${failed[*]}" >&2
    exit 1
fi
