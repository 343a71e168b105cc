#!/usr/bin/env bash
# The origin's OCI registry beside Debian's CNCF distribution (docker-registry), same image,
# same run, same clients:
#   blob_single   one GET of the 512 MiB layer (curl to /dev/null; the digest is checked by a
#                 second GET outside the timing)
#   image_pulls   sitecast-loadtest --proto oci: C concurrent clients pulling the small image
#                 (manifest → config → 1 MiB layer, every digest verified), N pulls
#   push          skopeo copy of the image layout into each registry (seconds)
# Prints JSON lines. The edge mirror is not built yet; this measures the origin's registry.
#
#   loadtest/bench-oci.sh                   # release binaries; RUNS=3 C=100 N=400
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/sitecast}
LT=${LT:-target/release/sitecast-loadtest}
RUNS=${RUNS:-3} C=${C:-100} N=${N:-400}
STATE=$(mktemp -d /tmp/sitecast-bench-oci.XXXXXX)
PIDS=()
# `wait` returns the killed server's status; `|| true` keeps errexit from ending the trap early.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$STATE"; }
trap cleanup EXIT
for x in "$BIN" "$LT"; do [ -x "$x" ] || { echo "no $x: cargo build --release --workspace" >&2; exit 1; }; done
now() { date +%s.%N; }
mbs() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }
secs() { awk -v a="$1" -v c="$2" 'BEGIN{printf "%.3f", c-a}'; }

# Images: a 512 MiB layer (single stream) and a small one (fleet), as OCI layouts.
loadtest/oci-layouts.py "$STATE" big=big:512M small=small:1M
sync

# CNCF distribution.
mkdir -p "$STATE/reg/data"
cat > "$STATE/reg/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $STATE/reg/data}}
http: {addr: 127.0.0.1:18590}
EOF
docker-registry serve "$STATE/reg/config.yml" > "$STATE/reg/log" 2>&1 & PIDS+=($!)
# sitecast origin.
"$BIN" origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
  --registry-listen 127.0.0.1:0 > "$STATE/ready" 2> "$STATE/origin.log" & PIDS+=($!)
for _ in $(seq 100); do [ -s "$STATE/ready" ] && curl -s -o /dev/null http://127.0.0.1:18590/v2/ && break; sleep 0.1; done
SC=$(sed -n 's/.*"registry":"\([^"]*\)".*/\1/p' "$STATE/ready")
TOKEN=$(cat "$STATE/origin/admin.token")
declare -A URL=([cncf]=127.0.0.1:18590 [sitecast]=$SC)
declare -A CRED=([cncf]="" [sitecast]="x:$TOKEN")

for t in cncf sitecast; do
  creds=(); [ -n "${CRED[$t]}" ] && creds=(--dest-creds "${CRED[$t]}")
  for img in big small; do
    t0=$(now)
    skopeo --insecure-policy copy --preserve-digests --dest-tls-verify=false "${creds[@]}" \
      "oci:$STATE/$img:1" "docker://${URL[$t]}/bench/$img:1" > /dev/null
    t1=$(now)
    echo "{\"test\":\"push\",\"target\":\"$t\",\"image\":\"$img\",\"seconds\":$(secs "$t0" "$t1")}"
  done
done

BIGL=$(cat "$STATE/big.layer")
for i in $(seq "$RUNS"); do
  order="cncf sitecast"; [ $((i % 2)) = 0 ] && order="sitecast cncf"
  for t in $order; do
    auth=(); [ -n "${CRED[$t]}" ] && auth=(-u "${CRED[$t]}")
    t0=$(now)
    curl -sS -f "${auth[@]}" -o /dev/null "http://${URL[$t]}/v2/bench/big/blobs/$BIGL"
    t1=$(now)
    # Verified outside the timing (sha256sum runs at about the speed of both registries).
    got=$(curl -sS -f "${auth[@]}" "http://${URL[$t]}/v2/bench/big/blobs/$BIGL" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$BIGL" ] || { echo "$t: wrong digest" >&2; exit 1; }
    size=$(stat -c %s "$STATE/big/blobs/sha256/${BIGL#sha256:}")
    echo "{\"test\":\"blob_single\",\"target\":\"$t\",\"run\":$i,\"mb_s\":$(mbs "$size" "$t0" "$t1")}"
  done
  for t in $order; do
    a=(); [ -n "${CRED[$t]}" ] && a=(--user x --password "$TOKEN")
    r=$("$LT" run --proto oci --url "http://${URL[$t]}" --path bench/small:1 "${a[@]}" \
          -c "$C" -n "$N" --json --label "$t" 2>>"$STATE/lt.err")
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.pop("error_samples",None); d.update(test="image_pulls", target=sys.argv[2], run=int(sys.argv[3])); print(json.dumps(d))' "$r" "$t" "$i"
  done
done
