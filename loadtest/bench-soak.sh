#!/usr/bin/env bash
# loadtest/bench-soak.sh — file descriptors and memory of an edge under a long mixed-protocol
# load (issue 10 part 3): 200 devices at once for DURATION (default 10 min) on loopback:
#   HTTP   80 devices, keep-alive, 1 MiB and 16 MiB files
#   FTP    50 devices, a new connection and login per download
#   SFTP   40 devices, password login, a new session per download
#   OCI    30 clients pulling a 1.3 MiB image (manifest, config, layers) through the mirror
# Every download's SHA-256 (or digest) is verified by sitecast-loadtest. Every 10 s the edge's
# open file descriptors (/proc/PID/fd) and resident memory (VmRSS, VmHWM) are sampled.
# Prints one JSON line per sample and a summary line; exits 1 if any download failed or the
# edge holds more descriptors at the end than at the start plus 16 (a leak).
#
#   loadtest/bench-soak.sh                       # release binaries, DURATION=10min
#   BIN=target/debug/sitecast LT=target/debug/sitecast-loadtest DURATION=2min loadtest/bench-soak.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sitecast}
LT=${LT:-$ROOT/target/release/sitecast-loadtest}
DURATION=${DURATION:-10min}
STATE=$(mktemp -d /tmp/scsoak.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "bench-soak: state kept in $STATE" >&2; else rm -rf "$STATE"; fi
}
trap cleanup EXIT
for x in "$BIN" "$LT"; do [ -x "$x" ] || { echo "no $x: cargo build --release --workspace" >&2; exit 1; }; done
log() { echo "bench-soak: $*" >&2; }
wait_line() {  # wait_line FILE PATTERN: the first line of FILE matching PATTERN, within 60 s
  for _ in $(seq 600); do grep -m1 "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  log "no '$2' in $1"; cat "$1" >&2; exit 1
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Origin on loopback, the content, one site with a user, an anonymous grant and a push.
"$BIN" origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
  --registry-listen 127.0.0.1:0 > "$STATE/origin.out" 2> "$STATE/origin.log" & PIDS+=($!)
ready=$(wait_line "$STATE/origin.out" '"ready"')
export SITECAST_API="http://$(jget "$ready" api)" SITECAST_TOKEN
SITECAST_TOKEN=$(cat "$(jget "$ready" admin_token_file)")
quic=$(jget "$ready" quic) registry=$(jget "$ready" registry)
head -c 1048576 /dev/urandom > "$STATE/small.bin"
head -c 16777216 /dev/urandom > "$STATE/big.bin"
"$BIN" ctl artifact upload "$STATE/small.bin" /fw/small.bin > /dev/null
"$BIN" ctl artifact upload "$STATE/big.bin" /fw/big.bin > /dev/null
python3 "$ROOT/loadtest/oci-layouts.py" "$STATE" img=base:1M,top:300K > /dev/null
"$BIN" ctl image push-layout "$STATE/img" docker.io/library/soak --registry "$registry" > /dev/null
join=$("$BIN" ctl --output json site create s1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
printf 'soak-pw\n' | "$BIN" ctl user create dev --password-stdin > /dev/null
"$BIN" ctl grant create --anonymous --path /fw > /dev/null
"$BIN" ctl grant create --user dev --path /fw > /dev/null
"$BIN" ctl grant create --anonymous --path /oci > /dev/null   # image pulls through the mirror
push=$("$BIN" ctl push create --content /fw/ --image docker.io/library/soak:1 --site s1)

# All 200 devices come from 127.0.0.1: lift the per-address caps (32 by default) for the test.
printf '[ftp]\nmax_connections_per_ip = 1000\n[sftp]\nmax_connections_per_ip = 1000\n' > "$STATE/edge.toml"
"$BIN" edge --config "$STATE/edge.toml" --data-dir "$STATE/edge" --origin "$quic" --join-token "$join" --node soak \
  --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --ftp-listen 127.0.0.1:0 \
  --sftp-listen 127.0.0.1:0 --oci-listen 127.0.0.1:0 > "$STATE/edge.out" 2> "$STATE/edge.log" & PIDS+=($!)
EDGE=$!
ready=$(wait_line "$STATE/edge.out" '"ready"')
http=$(jget "$ready" http) ftp=$(jget "$ready" ftp) sftp=$(jget "$ready" sftp) oci=$(jget "$ready" oci)
"$BIN" ctl push wait "$push" --timeout 300 > /dev/null
small=$(sha256sum "$STATE/small.bin" | cut -d' ' -f1) big=$(sha256sum "$STATE/big.bin" | cut -d' ' -f1)
printf '{"files":[{"path":"fw/small.bin","size":1048576,"sha256":"%s"},{"path":"fw/big.bin","size":16777216,"sha256":"%s"}]}\n' \
  "$small" "$big" > "$STATE/manifest.json"

sample() {  # one JSON line: seconds, fds, rss and peak (KiB) of the edge
  local fds rss hwm
  fds=$(ls "/proc/$EDGE/fd" | wc -l)
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$EDGE/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$EDGE/status")
  echo "{\"t\":$(( $(date +%s) - T0 )),\"edge_fds\":$fds,\"edge_rss_kib\":$rss,\"edge_hwm_kib\":$hwm}"
}
T0=$(date +%s)
fd0=$(ls "/proc/$EDGE/fd" | wc -l)
log "edge pid $EDGE: $fd0 descriptors before the load; running 200 devices for $DURATION"
run() {  # run NAME ARGS...: one load tool process, report in STATE/NAME.json
  local name=$1; shift
  "$LT" run --json --duration "$DURATION" --timeout 60s "$@" > "$STATE/$name.json" 2> "$STATE/$name.log" &
  LOADS+=($!)
}
LOADS=()
run http --proto http --url "http://$http" --user dev --password soak-pw \
  --manifest "$STATE/manifest.json" --path fw/small.bin --path fw/big.bin -c 80
run ftp --proto ftp --url "ftp://$ftp" --path fw/small.bin --sha256 "$small" -c 50 --fresh
run sftp --proto sftp --url "sftp://$sftp" --user dev --password soak-pw --insecure-host-key \
  --path fw/small.bin --sha256 "$small" -c 40 --fresh
run oci --proto oci --url "http://$oci" --path library/soak:1 -c 30
while kill -0 "${LOADS[0]}" 2>/dev/null || kill -0 "${LOADS[1]}" 2>/dev/null \
      || kill -0 "${LOADS[2]}" 2>/dev/null || kill -0 "${LOADS[3]}" 2>/dev/null; do
  sample | tee -a "$STATE/samples.jsonl"
  sleep 10
done
failed=0
for l in "${LOADS[@]}"; do wait "$l" || failed=1; done
sleep 2   # let closing connections finish
sample | tee -a "$STATE/samples.jsonl"
fd1=$(ls "/proc/$EDGE/fd" | wc -l)
python3 - "$STATE" "$fd0" "$fd1" "$big" <<'EOF'
import json, sys
state, fd0, fd1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = [json.loads(l) for l in open(f"{state}/samples.jsonl")]
loads = {}
for name in ["http", "ftp", "sftp", "oci"]:
    try:
        r = json.load(open(f"{state}/{name}.json"))
        loads[name] = {k: r.get(k) for k in ["ok", "failed", "bytes"]}
    except Exception as e:
        loads[name] = {"error": str(e)}
third = max(1, len(s) // 3)
summary = {
    "summary": True, "samples": len(s), "fds_before": fd0, "fds_after": fd1,
    "fds_max": max(x["edge_fds"] for x in s),
    "rss_mib_first_third_max": round(max(x["edge_rss_kib"] for x in s[:third]) / 1024, 1),
    "rss_mib_last_third_max": round(max(x["edge_rss_kib"] for x in s[-third:]) / 1024, 1),
    "hwm_mib": round(s[-1]["edge_hwm_kib"] / 1024, 1), "loads": loads,
}
print(json.dumps(summary))
EOF
[ "$failed" = 0 ] || { log "a load tool run reported failures"; exit 1; }
[ "$fd1" -le $((fd0 + 16)) ] || { log "descriptors grew from $fd0 to $fd1"; exit 1; }
