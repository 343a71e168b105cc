#!/usr/bin/env bash
# loadtest/bench-ingest.sh — issue 9 item 3's ingest figures, side by side in one run:
#   dd        `dd conv=fdatasync` of the same bytes into the origin's filesystem (the disk's own
#             durable sequential write rate);
#   openssl   `openssl dgst -sha256` of the file (one core of SHA-256 with SHA-NI);
#   new       `sitecast ctl artifact upload` of SIZE bytes of new random content;
#   stored    the same upload again under another path (every chunk already stored);
#   after_rm  new content right after deleting a 2 GiB artifact (its ~32,000 chunk files).
# Every measurement starts from a quiet disk (`sync` first); RUNS runs of each, alternating,
# medians. Output: JSON lines on stdout, a Markdown table on stderr.
# Usage: loadtest/bench-ingest.sh   (env: RUNS=3 SIZE=536870912 STATE=/var/tmp/sitecast-bench-ingest
#                                    NO_BUILD=1 to skip the release build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3} SIZE=${SIZE:-536870912}
STATE=${STATE:-/var/tmp/sitecast-bench-ingest}
BIN=$ROOT/target/release/sitecast
PID=
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"; }
trap cleanup EXIT
log() { echo "bench-ingest: $*" >&2; }
now() { date +%s.%N; }
mbs() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
for t in openssl dd python3; do command -v $t >/dev/null || { log "missing $t"; exit 1; }; done
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --bin sitecast >&2)

rm -rf "$STATE"; mkdir -p "$STATE"
fifo=$STATE/ready.fifo; mkfifo "$fifo"
"$BIN" origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
  --registry-listen 127.0.0.1:0 > "$fifo" 2> "$STATE/origin.log" &
PID=$!
read -r ready < "$fifo"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
export SITECAST_API=http://$(field "$ready" api) SITECAST_TOKEN=$(cat "$(field "$ready" admin_token_file)")
ctl() { "$BIN" ctl "$@"; }
fresh() { head -c "$2" /dev/urandom > "$1"; }  # FILE SIZE: new random content (page cache warm)

declare -A R
for i in $(seq "$RUNS"); do
  f=$STATE/new-$i.bin; fresh "$f" "$SIZE"
  sync; t0=$(now); dd if="$f" of="$STATE/dd.out" bs=4M conv=fdatasync status=none; t1=$(now)
  R[dd]+="$(mbs "$SIZE" "$t0" "$t1") "; rm -f "$STATE/dd.out"
  sync; t0=$(now); openssl dgst -sha256 "$f" > /dev/null; t1=$(now); R[openssl]+="$(mbs "$SIZE" "$t0" "$t1") "
  sync; t0=$(now); ctl artifact upload "$f" "/bench/new-$i.bin" > /dev/null; t1=$(now); R[new]+="$(mbs "$SIZE" "$t0" "$t1") "
  sync; t0=$(now); ctl artifact upload "$f" "/bench/again-$i.bin" > /dev/null; t1=$(now); R[stored]+="$(mbs "$SIZE" "$t0" "$t1") "
  # A 2 GiB artifact stored, then deleted; new content uploaded at once.
  fresh "$STATE/big.bin" $((2 << 30)); ctl artifact upload "$STATE/big.bin" /bench/big.bin > /dev/null; rm -f "$STATE/big.bin"
  g=$STATE/after-$i.bin; fresh "$g" "$SIZE"; sync
  ctl artifact delete /bench/big.bin > /dev/null
  t0=$(now); ctl artifact upload "$g" "/bench/after-$i.bin" > /dev/null; t1=$(now); R[after_rm]+="$(mbs "$SIZE" "$t0" "$t1") "
  rm -f "$f" "$g"
done
printf '| measurement | MB/s (median) | runs |\n|---|---:|---|\n' >&2
for k in dd openssl new stored after_rm; do
  med=$(echo "${R[$k]}" | median)
  printf '{"test":"ingest","what":"%s","bytes":%s,"mb_s_median":%s,"mb_s":[%s]}\n' "$k" "$SIZE" "$med" "$(echo ${R[$k]} | tr ' ' ',')"
  printf '| %s | %s | %s |\n' "$k" "$med" "$(echo ${R[$k]} | sed 's/ /, /g')" >&2
done
