#!/usr/bin/env bash
# The origin's memory and rate while a 2 GiB OCI layer streams into its registry as one chunked
# upload (POST, one streamed PATCH, PUT ?digest=), beside `sha256sum` of the same file.
#
#   loadtest/bench-oci-memory.sh            # release binary; prints one JSON line per figure
#   SIZE=536870912 BIN=target/debug/sitecast loadtest/bench-oci-memory.sh
#
# RSS is sampled from /proc every 0.2 s; VmHWM (the high-water mark) before and after is exact.
# The layer is unique data (AES-CTR keystream), so no chunk dedups against another.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/sitecast}
SIZE=${SIZE:-2147483648}
STATE=$(mktemp -d /tmp/sitecast-oci-mem.XXXXXX)
OPID=""
cleanup() { if [ -n "$OPID" ]; then kill "$OPID" 2>/dev/null || true; wait "$OPID" 2>/dev/null || true; fi; rm -rf "$STATE"; }
trap cleanup EXIT
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 1; }

now() { date +%s.%N; }
mbs() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }

layer=$STATE/layer.bin
head -c "$SIZE" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' 4242)" \
  -iv 00000000000000000000000000000000 > "$layer"
sync
t0=$(now); digest=sha256:$(sha256sum "$layer" | cut -d' ' -f1); t1=$(now)
echo "{\"test\":\"oci_layer_upload\",\"tool\":\"sha256sum\",\"bytes\":$SIZE,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"

"$BIN" origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
  --registry-listen 127.0.0.1:0 > "$STATE/ready" 2> "$STATE/origin.log" &
OPID=$!
for _ in $(seq 100); do [ -s "$STATE/ready" ] && break; sleep 0.1; done
reg=$(sed -n 's/.*"registry":"\([^"]*\)".*/\1/p' "$STATE/ready")
token=$(cat "$STATE/origin/admin.token")
[ -n "$reg" ] || { echo "origin did not start:"; cat "$STATE/origin.log"; exit 1; }

rss() { awk -v k="$1:" '$1 == k { print $2 * 1024 }' "/proc/$OPID/status"; }
rss_before=$(rss VmRSS) hwm_before=$(rss VmHWM)
( while kill -0 "$OPID" 2>/dev/null; do rss VmRSS; sleep 0.2; done ) > "$STATE/rss.samples" &
sampler=$!
t0=$(now)
loc=$(curl -sS -u "x:$token" -X POST -D - -o /dev/null "http://$reg/v2/bench/layer/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
curl -sS -f -u "x:$token" -X PATCH -H 'Content-Type: application/octet-stream' \
  -T "$layer" -o /dev/null "http://$reg$loc"
code=$(curl -sS -u "x:$token" -X PUT -o /dev/null -w '%{http_code}' "http://$reg$loc?digest=$digest")
t1=$(now)
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
[ "$code" = 201 ] || { echo "upload finished with HTTP $code"; tail "$STATE/origin.log"; exit 1; }
peak=$(sort -n "$STATE/rss.samples" | tail -n1)
printf '{"test":"oci_layer_upload","tool":"sitecast registry, chunked PATCH","bytes":%s,"mb_s":%s,"rss_before":%s,"rss_peak_sampled":%s,"rss_after":%s,"hwm_before":%s,"hwm_after":%s,"samples":%s}\n' \
  "$SIZE" "$(mbs "$SIZE" "$t0" "$t1")" "$rss_before" "$peak" "$(rss VmRSS)" "$hwm_before" "$(rss VmHWM)" \
  "$(wc -l < "$STATE/rss.samples")"
# Read it back: the digest the registry serves must be the file's.
got=sha256:$(curl -sS -f -u "x:$token" "http://$reg/v2/bench/layer/blobs/$digest" | sha256sum | cut -d' ' -f1)
[ "$got" = "$digest" ] || { echo "read back $got, expected $digest"; exit 1; }
