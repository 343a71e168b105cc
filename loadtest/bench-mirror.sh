#!/usr/bin/env bash
# loadtest/bench-mirror.sh — the edge's OCI registry mirror beside Debian's CNCF distribution
# (docker-registry), same images, same run, same clients. Two network namespaces
# (loadtest/wan/netns.sh): "origin" holds the sitecast origin and an upstream CNCF registry;
# "site" holds the edge, a CNCF registry serving the same images locally, a private containerd
# and every client. The edge reaches the origin through `sitecast-loadtest relay` (UDP).
#
# LAN (the site's own network; the link is not limited):
#   blob_single     one GET of the 512 MiB layer from the edge vs from the local CNCF registry
#   image_pulls     sitecast-loadtest --proto oci: C concurrent clients pulling the 1 MiB image
#                   (manifest → config → layer, every digest verified), N pulls
#   containerd_hit  `ctr images pull` of the 1 MiB image, pushed to the site: through a
#                   hosts.toml mirror to the edge vs straight from the local registry (seconds;
#                   the image is removed from containerd between pulls)
# WAN (the link limited to RATE bits/s both ways with tbf):
#   first_pull      containerd's first pull of an image nobody pushed (16 MiB + 1 MiB, only in
#                   the upstream registry): on demand through the edge (edge → relay → origin →
#                   pull-through upstream) vs a direct pull from the upstream over the same link,
#                   and the second pull from the edge (a hit). The relay adds nothing here.
#   then the relay adds DELAY ± JITTER one way and LOSS (QUIC only: TCP cannot cross it):
#   push_v2         pushing image v2 (shares its 16 MiB base layer with v1, new 1 MiB top) to the
#                   site: bytes sent vs the bytes of v2's new blobs, and seconds
#   first_pull_lossy  the first on-demand pull of another such image
# Prints JSON lines.
#
#   loadtest/bench-mirror.sh        # release binaries; RUNS=3 C=100 N=400 RATE=20000000
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sitecast}
LT=${LT:-$ROOT/target/release/sitecast-loadtest}
RUNS=${RUNS:-3} C=${C:-100} N=${N:-400} RATE=${RATE:-20000000}
DELAY=${DELAY:-20ms} JITTER=${JITTER:-5ms} LOSS=${LOSS:-0.5%}
STATE=$(mktemp -d /tmp/scbm.XXXXXX)   # short: containerd's socket path is limited
PIDS=()
WAN_PREFIX=scbm
# shellcheck source=loadtest/wan/netns.sh
source "$ROOT/loadtest/wan/netns.sh"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  grep -s " $STATE/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  wan_down; if [ -n "${KEEP:-}" ]; then log "state kept in $STATE"; else rm -rf "$STATE"; fi
}
trap cleanup EXIT
for x in "$BIN" "$LT"; do [ -x "$x" ] || { echo "no $x: cargo build --release --workspace" >&2; exit 1; }; done
for t in docker-registry skopeo containerd ctr curl; do
  command -v $t >/dev/null || { echo "missing $t (scripts/install-test-deps.sh)" >&2; exit 1; }
done
now() { date +%s.%N; }
mbs() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }
secs() { awk -v a="$1" -v c="$2" 'BEGIN{printf "%.3f", c-a}'; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
log() { echo "bench-mirror: $*" >&2; }
bg() {  # bg NS NAME CMD...: run in namespace NS, output in STATE/NAME.{out,log}
  local ns=$1 name=$2; shift 2
  ip netns exec "$ns" "$@" > "$STATE/$name.out" 2> "$STATE/$name.log" & PIDS+=($!)
}
wait_for() {  # wait_for WHAT CMD...: poll (0.1 s) until CMD succeeds, at most 60 s
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "$what did not come up"; exit 1
}
O=$WAN_PREFIX-o S=$WAN_PREFIX-1
OA=10.200.1.1
in_o() { ip netns exec "$O" "$@"; }
in_s() { ip netns exec "$S" "$@"; }

loadtest/oci-layouts.py "$STATE" big=big:512M small=small:1M \
  v1=base:16M,top1:1M v2=base:16M,top2:1M remote=rbase:16M,rtop:1M lossy=lbase:16M,ltop:1M
sync
wan_up "$WAN_PREFIX" 1 10000000000   # unlimited while the images are set up

registry() {  # registry NS NAME ADDR
  mkdir -p "$STATE/$2/data"
  printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' \
    "$STATE/$2/data" "$3" > "$STATE/$2/config.yml"
  bg "$1" "$2" docker-registry serve "$STATE/$2/config.yml"
  wait_for "$2" ip netns exec "$1" curl -sf "http://$3/v2/"
}
registry "$O" upstream "$OA:18591"
registry "$S" cncf 127.0.0.1:18590
cat > "$STATE/origin.toml" <<EOF
[[registry_upstreams]]
prefix = "docker.io/"
url = "http://$OA:18591"
EOF
bg "$O" origin "$BIN" origin --config "$STATE/origin.toml" --data-dir "$STATE/origin" \
  --api-listen "$OA:18440" --quic-listen "$OA:18443" --registry-listen "$OA:18442"
wait_for origin test -s "$STATE/origin.out"
export SITECAST_API=http://$OA:18440 SITECAST_TOKEN
SITECAST_TOKEN=$(cat "$STATE/origin/admin.token")
ctl() { in_o "$BIN" ctl "$@"; }
copy() {  # copy NS LAYOUT DEST [CREDS]
  local c=(); [ -n "${4:-}" ] && c=(--dest-creds "$4")
  ip netns exec "$1" skopeo --insecure-policy copy --preserve-digests --dest-tls-verify=false "${c[@]}" \
    "oci:$STATE/$2:1" "docker://$3" > /dev/null
}
for img in big small v1; do
  copy "$O" "$img" "$OA:18442/docker.io/bench/$img:1" "x:$SITECAST_TOKEN"
  copy "$S" "$img" "127.0.0.1:18590/bench/$img:1"
done
copy "$O" remote "$OA:18591/library/remote:1"

JOIN=$(ctl --output json site create bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
ctl grant create --anonymous --path /oci --site bench > /dev/null
relay() {  # (re)start the relay with these options; the edge reconnects through it
  [ -z "${RELAY:-}" ] || { kill "$RELAY" 2>/dev/null || true; wait "$RELAY" 2>/dev/null || true; }
  bg "$S" relay "$LT" relay --listen 127.0.0.1:18600 --upstream "$OA:18443" "$@"; RELAY=${PIDS[-1]}
}
relay
bg "$S" edge "$BIN" edge --data-dir "$STATE/edge" --origin 127.0.0.1:18600 --join-token "$JOIN" \
  --node bench-1 --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --ftp-listen 127.0.0.1:0 \
  --sftp-listen 127.0.0.1:0 --oci-listen 127.0.0.1:18500
wait_for edge test -s "$STATE/edge.out"
P=$(ctl push create --image docker.io/bench/big:1 docker.io/bench/small:1 docker.io/bench/v1:1 --site bench)
ctl push wait "$P" --timeout 900 > /dev/null
EDGE=127.0.0.1:18500 CNCF=127.0.0.1:18590
declare -A URL=([cncf]=$CNCF [sitecast]=$EDGE)

# --- LAN ------------------------------------------------------------------------------------
BIGL=$(cat "$STATE/big.layer")
SIZE=$(stat -c %s "$STATE/big/blobs/sha256/${BIGL#sha256:}")
for i in $(seq "$RUNS"); do
  order="cncf sitecast"; [ $((i % 2)) = 0 ] && order="sitecast cncf"
  for t in $order; do
    t0=$(now); in_s curl -sS -f -o /dev/null "http://${URL[$t]}/v2/bench/big/blobs/$BIGL"; t1=$(now)
    got=$(in_s curl -sS -f "http://${URL[$t]}/v2/bench/big/blobs/$BIGL" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$BIGL" ] || { log "$t: wrong digest"; exit 1; }
    echo "{\"test\":\"blob_single\",\"target\":\"$t\",\"run\":$i,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"
  done
  for t in $order; do
    r=$(in_s "$LT" run --proto oci --url "http://${URL[$t]}" --path bench/small:1 -c "$C" -n "$N" \
          --json --label "$t" 2>>"$STATE/lt.err")
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.pop("error_samples",None); d.update(test="image_pulls", target=sys.argv[2], run=int(sys.argv[3])); print(json.dumps(d))' "$r" "$t" "$i"
  done
done

# A private containerd in the site namespace (own root, state and socket; no CRI).
CD=$STATE/ctrd; mkdir -p "$CD/hosts-edge/docker.io" "$CD/hosts-cncf/docker.io" "$CD/hosts-up/upstream.test"
cat > "$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CD/c.sock"
[ttrpc]
  address = "$CD/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
mirror_hosts() {  # mirror_hosts FILE MIRROR: containerd tries MIRROR, then a refused port
  printf 'server = "https://127.0.0.1:1"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$2" > "$1"
}
mirror_hosts "$CD/hosts-edge/docker.io/hosts.toml" "$EDGE"
direct_hosts() {  # direct_hosts FILE REGISTRY: the registry itself (a [host] table is required)
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$2" "$2" > "$1"
}
direct_hosts "$CD/hosts-cncf/docker.io/hosts.toml" "$CNCF"
direct_hosts "$CD/hosts-up/upstream.test/hosts.toml" "$OA:18591"
bg "$S" containerd containerd --config "$CD/config.toml"
ctr() { in_s ctr --address "$CD/c.sock" --namespace bench "$@"; }
wait_for containerd test -S "$CD/c.sock"
wait_for containerd ctr version
SNAP=native; ctr plugins ls | grep -q 'snapshotter.v1 *overlayfs .* ok' && SNAP=overlayfs
pull() {  # pull HOSTS REF: seconds of one `ctr images pull`, then the image is removed again
  local t0 t1; t0=$(now)
  ctr images pull --hosts-dir "$CD/$1" --snapshotter "$SNAP" "$2" > "$STATE/ctr.out" 2>&1 ||
    { log "ctr pull $2 failed: $(tail -3 "$STATE/ctr.out")"; exit 1; }
  t1=$(now); echo "$(secs "$t0" "$t1")"
  ctr images rm --sync "$2" > /dev/null
}
for t in cncf sitecast; do
  hosts=hosts-cncf; [ "$t" = sitecast ] && hosts=hosts-edge
  pull "$hosts" docker.io/bench/small:1 > /dev/null   # warm (snapshotter, page cache)
  s=$(for i in $(seq 5); do pull "$hosts" docker.io/bench/small:1; done | median)
  echo "{\"test\":\"containerd_hit\",\"target\":\"$t\",\"pulls\":5,\"median_s\":$s}"
done

# --- WAN ------------------------------------------------------------------------------------
wan_tbf "$O" "$WAN_PREFIX-o1" "$RATE"; wan_tbf "$S" "$WAN_PREFIX-s1" "$RATE"
METRICS=$(sed -n 's/.*"metrics":"\([^"]*\)".*/\1/p' "$STATE/edge.out")
connected() { in_s curl -sf "http://$METRICS/metrics" | grep -q 'sitecast_edge_session_state{.*state="connected"} 1'; }
# 1. The rate limit only (the relay adds nothing): the on-demand pull and the direct pull cross
#    the same link.
relay
wait_for "the edge's session" connected
s_edge=$(pull hosts-edge docker.io/library/remote:1)
s_up=$(pull hosts-up upstream.test/library/remote:1)
s_hit=$(pull hosts-edge docker.io/library/remote:1)
echo "{\"test\":\"first_pull\",\"rate_bps\":$RATE,\"relay\":\"none\",\"edge_on_demand_s\":$s_edge,\"direct_s\":$s_up,\"edge_second_pull_s\":$s_hit}"

# 2. Delay, jitter and loss on the QUIC path too (TCP cannot cross the UDP relay).
relay --delay "$DELAY" --jitter "$JITTER" --loss "$LOSS" --seed 7
wait_for "the edge's session" connected
copy "$O" v2 "$OA:18442/docker.io/bench/v1:1" "x:$SITECAST_TOKEN"   # v2 under the same tag
t0=$(now)
P=$(ctl push create --image docker.io/bench/v1:1 --site bench)
ctl push wait "$P" --timeout 900 > /dev/null
t1=$(now)
ctl --output json push show "$P" > "$STATE/push-v2.json"
python3 - "$STATE/push-v2.json" "$STATE/v1.blobs" "$STATE/v2.blobs" "$(secs "$t0" "$t1")" "$DELAY±$JITTER loss $LOSS" <<'EOF'
import json, sys
push = json.load(open(sys.argv[1]))["sites"][0]
old = {l.split()[0] for l in open(sys.argv[2])}
new = sum(int(n) for d, n in (l.split() for l in open(sys.argv[3])) if d not in old)
print(json.dumps({"test": "push_v2", "relay": sys.argv[5], "seconds": float(sys.argv[4]),
  "bytes_total": push["bytes_total"], "bytes_needed": push["bytes_needed"], "bytes_sent": push["bytes_sent"],
  "new_blob_bytes": new, "sent_per_new_byte": round(push["bytes_sent"] / new, 4)}))
EOF
[ "$(in_s curl -sI "http://$EDGE/v2/bench/v1/manifests/1" | tr -d '\r' | sed -n 's/^docker-content-digest: //Ip')" = "$(cat "$STATE/v2.top")" ] ||
  { log "the edge does not serve v2 after the push"; exit 1; }
copy "$O" lossy "$OA:18591/library/lossy:1"
s_edge=$(pull hosts-edge docker.io/library/lossy:1)
echo "{\"test\":\"first_pull_lossy\",\"rate_bps\":$RATE,\"relay\":\"$DELAY±$JITTER loss $LOSS\",\"edge_on_demand_s\":$s_edge}"
