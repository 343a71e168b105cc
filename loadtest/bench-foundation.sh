#!/usr/bin/env bash
# loadtest/bench-foundation.sh — issue 2's benchmarks, side by side in one run:
#   ingest: `sitecast ctl artifact upload` of a 512 MiB file vs sha256sum and b3sum of the same file;
#   edge HTTP: one 512 MiB download, 200 concurrent keep-alive clients (wrk) and a 200-wide fleet of
#   one-shot curl downloads of a 1 MiB file, against nginx (../shared/peers) on the same files.
# Output: JSON lines on stdout (one per measurement) and a Markdown summary on stderr.
# Method: as ../shared/peers/baseline.sh (clients share the host; compare only within one run);
# RUNS runs each, medians; targets alternate run by run so drift hits both alike.
# Usage: loadtest/bench-foundation.sh            (env: RUNS=5 DATA=/srv/sitecast-testdata STATE=/tmp/sitecast-bench)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${KIT:-$ROOT/../shared}
DATA=${DATA:-/srv/sitecast-testdata}
OCI=${OCI:-/srv/sitecast-oci-small}
STATE=${STATE:-/tmp/sitecast-bench}
RUNS=${RUNS:-5} CONC=${CONC:-200} N=${N:-1000} DURATION=${DURATION:-10}
BIG=fw/fw-512MiB.bin SMALL=fw/fw-1MiB.bin
BIN=$ROOT/target/release/sitecast
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -n | awk '{v[NR]=$1} END{ if (NR==0) print "null"; else print v[int((NR+1)/2)] }'; }

for t in curl wrk b3sum sha256sum python3; do command -v $t >/dev/null || { log "missing $t (scripts/install-bench-deps.sh)"; exit 1; }; done
(cd "$ROOT" && cargo build --release --bin sitecast >&2)
[ -f "$DATA/manifest.json" ] || "$KIT/tools/make-testdata.py" "$DATA" > /dev/null
[ -f "$OCI/index.json" ] || "$KIT/tools/make-oci-image.py" "$OCI" --layers 1MiB > /dev/null
"$KIT/peers/start-peers.sh" "$DATA" "$OCI" "$STATE/peers" >&2
# shellcheck source=/dev/null
source "$STATE/peers/peers.env"
NGINX=$PEER_HTTP_URL
rm -rf "$STATE/origin" "$STATE/edge"; mkdir -p "$STATE"

# start NAME ARGS...: run sitecast in the background, wait for its ready line, print it
start() {
  local name=$1; shift
  local fifo=$STATE/$name.fifo; rm -f "$fifo"; mkfifo "$fifo"
  "$BIN" "$@" > "$fifo" 2> "$STATE/$name.log" & PIDS+=($!)
  local line; read -r -t 60 line < "$fifo" || { log "$name did not start: $(tail -5 "$STATE/$name.log")"; exit 1; }
  echo "$line"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

O=$(start origin origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0)
export SITECAST_API=http://$(field "$O" api) SITECAST_TOKEN=$(cat "$(field "$O" admin_token_file)")
ctl() { "$BIN" ctl "$@"; }

# --- ingest ------------------------------------------------------------------------------------
cat "$DATA/$BIG" > /dev/null   # page cache
SIZE=$(stat -c %s "$DATA/$BIG")
ing=() sha=() b3=()
for i in $(seq "$RUNS"); do
  t0=$(now); sha256sum "$DATA/$BIG" > /dev/null; t1=$(now); sha+=("$(awk -v b="$SIZE" -v a="$t0" -v c="$t1" 'BEGIN{printf "%.1f", b/(c-a)/1e6}')")
  t0=$(now); b3sum "$DATA/$BIG" > /dev/null; t1=$(now); b3+=("$(awk -v b="$SIZE" -v a="$t0" -v c="$t1" 'BEGIN{printf "%.1f", b/(c-a)/1e6}')")
  # a new path each run, into a store that does not hold the chunks yet: delete the previous one
  # (the origin garbage-collects its chunks) so every run pays for chunking, hashing and writing.
  [ "$i" = 1 ] || ctl artifact delete "/bench/ingest-$((i - 1)).bin" > /dev/null
  t0=$(now); ctl artifact upload "$DATA/$BIG" "/bench/ingest-$i.bin" > /dev/null; t1=$(now)
  ing+=("$(awk -v b="$SIZE" -v a="$t0" -v c="$t1" 'BEGIN{printf "%.1f", b/(c-a)/1e6}')")
done
for pair in "sitecast_upload:${ing[*]}" "sha256sum:${sha[*]}" "b3sum:${b3[*]}"; do
  name=${pair%%:*} vals=${pair#*:}
  med=$(tr ' ' '\n' <<< "$vals" | median)
  printf '{"test":"ingest","tool":"%s","bytes":%s,"runs":%s,"mb_s_median":%s,"mb_s":[%s]}\n' "$name" "$SIZE" "$RUNS" "$med" "$(tr ' ' ',' <<< "$vals")"
done

# --- edge HTTP -------------------------------------------------------------------------------
ctl artifact upload "$DATA/$BIG" "/$BIG" > /dev/null
ctl artifact upload "$DATA/$SMALL" "/$SMALL" > /dev/null
TOKEN=$(ctl site create bench-site --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
ctl grant create --anonymous --path /fw --site bench-site > /dev/null
E=$(start edge edge --data-dir "$STATE/edge" --origin "$(field "$O" quic)" --join-token "$TOKEN" --node bench-1 \
      --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0)
EDGE=http://$(field "$E" http)
PUSH=$(ctl push create --content /fw --site bench-site)
ctl push wait "$PUSH" --timeout 600 > /dev/null

BIG_SIZE=$(stat -c %s "$DATA/$BIG") SMALL_SIZE=$(stat -c %s "$DATA/$SMALL")
for u in "$NGINX" "$EDGE"; do curl -sS -o /dev/null "$u/$BIG"; done   # warm-up
declare -A SINGLE
for i in $(seq "$RUNS"); do
  for t in nginx sitecast; do
    u=$NGINX; [ $t = sitecast ] && u=$EDGE
    read -r bytes secs < <(curl -sS --max-time 120 -o /dev/null -w '%{size_download} %{time_total}\n' "$u/$BIG" || echo "0 1")
    [ "$bytes" = "$BIG_SIZE" ] || log "$t single run $i short: $bytes"
    SINGLE[$t]+="$(awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.1f", b/s/1e6}') "
  done
done
for t in nginx sitecast; do
  med=$(tr ' ' '\n' <<< "${SINGLE[$t]}" | grep . | median)
  printf '{"test":"single_stream","target":"%s","proto":"http","bytes":%s,"runs":%s,"mb_s_median":%s,"mb_s":[%s]}\n' \
    "$t" "$BIG_SIZE" "$RUNS" "$med" "$(echo ${SINGLE[$t]} | tr ' ' ',')"
done

wrk_run() {  # target url
  wrk -t2 -c"$CONC" -d"${DURATION}s" --latency "$2/$SMALL" 2>&1 | awk -v label="$1" -v conc="$CONC" '
    function ms(v) { return v ~ /us$/ ? v / 1000 : v ~ /ms$/ ? v + 0 : v ~ /s$/ ? v * 1000 : v }
    /^Requests\/sec:/ { rps = $2 } /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx/ { non2xx = $5 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    END { printf "{\"test\":\"concurrency\",\"target\":\"%s\",\"proto\":\"http_keepalive\",\"tool\":\"wrk\",\"concurrency\":%d,\"requests_per_s\":%.1f,\"failures\":%d,\"latency_ms_p50\":%.2f,\"latency_ms_p99\":%.2f}\n", label, conc, rps, err + non2xx, p50, p99 }'
}
fleet_run() {  # target url
  local t0 t1 ok
  t0=$(now)
  seq "$N" | xargs -P "$CONC" -I{} curl -s --max-time 60 -o /dev/null -w '%{exitcode} %{size_download}\n' "$2/$SMALL" > "$STATE/fleet" || true
  t1=$(now)
  ok=$(awk -v s="$SMALL_SIZE" '$1 == 0 && $2 == s' "$STATE/fleet" | wc -l)
  awk -v label="$1" -v c="$CONC" -v n="$N" -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN {
    printf "{\"test\":\"concurrency\",\"target\":\"%s\",\"proto\":\"http_fleet\",\"tool\":\"xargs -P curl\",\"concurrency\":%d,\"requests\":%d,\"wall_s\":%.2f,\"requests_per_s\":%.1f,\"failures\":%d}\n", label, c, n, b - a, ok / (b - a), n - ok }'
}
for t in nginx sitecast; do u=$NGINX; [ $t = sitecast ] && u=$EDGE; wrk_run $t "$u"; done
for t in nginx sitecast; do u=$NGINX; [ $t = sitecast ] && u=$EDGE; fleet_run $t "$u"; done
"$KIT/peers/stop-peers.sh" "$STATE/peers" >&2 || true
