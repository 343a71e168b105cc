#!/usr/bin/env bash
# loadtest/wan/campaign.sh SCENARIO.toml [naive|sitecast|both]
#
# The firmware campaign over emulated WAN links (network namespaces + tc tbf, see netns.sh):
#   sitecast  the origin (namespace -o) pushes the scenario's content once per site over QUIC
#             (through `sitecast-loadtest relay` when the scenario has [relay] impairments) to
#             the site's edge node(s); meanwhile every device of the site polls its node
#             (--wait-available) over FTP/HTTP/SFTP per the scenario's mix until it has the
#             firmware, SHA-256 verified.
#   naive     the same devices download the same file straight from nginx in the origin
#             namespace over the same links (what the field did before).
# Reports, as JSON lines on stdout (one per site and side, one summary per side, one comparison):
#   wan_bytes (both directions, at the origin end of the site's link, headers included),
#   makespan_s (push/downloads start → last device verified), min_s (theoretical minimum:
#   bytes a site needs × 8 ÷ link rate; naive: devices × size × 8 ÷ rate), device ok/errors.
# Env: DATA (/srv/sitecast-testdata), BIN_DIR (target/release), WORK (/tmp/sitecast-campaign),
#      WAN_PREFIX (sclt), TIMEOUT (900 s per side), FORCE_RELAY=1 (put the relay on the QUIC
#      path even without impairments: shows that it carries the link rate), MAX_RATE (the push's
#      --max-rate, e.g. 50Mbit/s), ORIGIN_CONFIG (an origin TOML file, e.g. other [quic] settings).
# Needs root. Every namespace it creates is deleted on exit; only 10.200.x.y addresses inside
# those namespaces are used.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCN=$(realpath -e "${1:?usage: campaign.sh SCENARIO.toml [naive|sitecast|both]}")
MODE=${2:-both}
DATA=${DATA:-/srv/sitecast-testdata}
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
WORK=${WORK:-/tmp/sitecast-campaign}
TIMEOUT=${TIMEOUT:-900}
LT=$BIN_DIR/sitecast-loadtest SC=$BIN_DIR/sitecast
# shellcheck source=netns.sh
source "$HERE/netns.sh"
log() { echo "campaign: $*" >&2; }
now() { date +%s.%N; }

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces)"; exit 1; }
[ -x "$LT" ] || { log "missing $LT (cargo build --release -p sitecast-loadtest)"; exit 1; }
eval "$("$LT" scenario "$SCN")"
FILE=$DATA/$SCN_CONTENT
[ -f "$FILE" ] || { log "missing $FILE"; exit 1; }
SIZE=$(stat -c %s "$FILE")
rm -rf "$WORK"; mkdir -p "$WORK"; chmod 755 "$WORK"

PIDS=()
stop_all() {  # PIDS of this shell, plus long-running servers recorded in $WORK/pids by start_bg
  local p
  [ -f "$WORK/pids" ] && mapfile -t -O "${#PIDS[@]}" PIDS < "$WORK/pids"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  PIDS=(); rm -f "$WORK/pids"
}
cleanup() { stop_all; wan_down; }
trap cleanup EXIT

rates=()
for i in $(seq "$SCN_SITES"); do v=SCN_SITE_${i}_RATE_BPS; rates+=("${!v}"); done
wan_up "$WAN_PREFIX" "$SCN_SITES" "${rates[@]}"
log "$SCN_SITES sites up (${rates[*]} bit/s), content $SCN_CONTENT ($SIZE bytes)"

site_var() { local v="SCN_SITE_$1_$2"; echo "${!v:-0}"; }
devices_of() { echo $(( $(site_var "$1" FTP) + $(site_var "$1" HTTP) + $(site_var "$1" SFTP) )); }

# fleet I PROTO URL COUNT LABEL [args]: a device fleet inside site I, JSON report to a file
fleet() {
  local i=$1 proto=$2 url=$3 count=$4 label=$5; shift 5
  [ "$count" -gt 0 ] || return 0
  ip netns exec "$WAN_PREFIX-$i" "$LT" run --proto "$proto" --url "$url" --path "$SCN_CONTENT" \
    --manifest "$DATA/manifest.json" --clients "$count" --requests "$count" --fresh \
    --timeout "${TIMEOUT}s" --label "$label" --json "$@" \
    > "$WORK/fleet-$label.json" 2> "$WORK/fleet-$label.err" &
  PIDS+=($!); FLEETS+=($!)
}

# site_result SIDE I T0 BYTES0 MIN_S: one JSON line from the fleet reports of site I
site_result() {
  local side=$1 i=$2 t0=$3 b0=$4 min=$5
  python3 - "$side" "$i" "$(site_var "$i" NAME)" "$t0" "$b0" "$(wan_bytes "$i")" "$min" "$WORK" <<'EOF'
import glob, json, sys
side, i, name, t0, b0, b1, min_s, work = sys.argv[1:]
reports = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/fleet-{side}-{i}-*.json"))]
tx0, rx0 = map(int, b0.split()); tx1, rx1 = map(int, b1.split())
ok = sum(r["ok"] for r in reports); failed = sum(r["failed"] for r in reports)
errors = {}
for r in reports:
    for k, v in r["errors"].items():
        errors[k] = errors.get(k, 0) + v
last = max((r["completion_s"]["max"] for r in reports), default=0.0)
print(json.dumps({"test": "campaign_site", "side": side, "site": name,
    "devices": ok + failed, "ok": ok, "failed": failed, "errors": errors,
    "retries": sum(r["retries"] for r in reports),
    "protocols": {r["proto"]: r["clients"] for r in reports},
    "wan_bytes": (tx1 - tx0) + (rx1 - rx0), "wan_bytes_down": tx1 - tx0, "wan_bytes_up": rx1 - rx0,
    "makespan_s": round(last, 3), "min_s": round(float(min_s), 3)}))
EOF
}

# ---------------------------------------------------------------------------------------------
naive() {
  log "naive: nginx in the origin namespace, every device downloads over the WAN"
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx.conf" <<EOF
daemon off; worker_processes 2; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path $WORK/nginx/b; proxy_temp_path $WORK/nginx/p; fastcgi_temp_path $WORK/nginx/f;
  uwsgi_temp_path $WORK/nginx/u; scgi_temp_path $WORK/nginx/s;
  server { listen 18080; root $DATA; location / { limit_except GET { deny all; } } } }
EOF
  ip netns exec "$WAN_PREFIX-o" nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
  local ngx=$!; PIDS+=($ngx)
  for _ in $(seq 100); do in_origin bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080' 2>/dev/null && break; sleep 0.1; done
  local t0 i b0=() d
  FLEETS=()
  for i in $(seq "$SCN_SITES"); do b0+=("$(wan_bytes "$i")"); done
  t0=$(now)
  for i in $(seq "$SCN_SITES"); do
    fleet "$i" http "http://$(origin_addr "$i"):18080" "$(devices_of "$i")" "naive-$i-http"
  done
  for p in "${FLEETS[@]}"; do wait "$p" || true; done
  for i in $(seq "$SCN_SITES"); do
    d=$(devices_of "$i")
    site_result naive "$i" "$t0" "${b0[$((i - 1))]}" \
      "$(awk -v d="$d" -v s="$SIZE" -v r="$(site_var "$i" RATE_BPS)" 'BEGIN{print d*s*8/r}')"
  done | tee "$WORK/naive.jsonl"
  stop_all
}

# ---------------------------------------------------------------------------------------------
# start_bg NAME NS CMD...: run CMD in namespace NS (the PID is the command's own: ip netns exec
# execs it; recorded in $WORK/pids because callers run this in a $(...) subshell), wait for its
# JSON ready line (stdout), print it
start_bg() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
  local pid=$! line=""
  echo "$pid" >> "$WORK/pids"
  for _ in $(seq 600); do
    line=$(head -n1 "$WORK/$name.out" 2>/dev/null || true)
    [ -z "$line" ] || { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not start: $(tail -5 "$WORK/$name.log")"; return 1
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

sitecast_side() {
  [ -x "$SC" ] || { log "missing $SC: skipping the sitecast side"; return 0; }
  log "sitecast: origin in the origin namespace, edges in the sites, devices on the site LAN"
  local O api quic_port=18443 dial_port=18443
  local cfg=(); [ -z "${ORIGIN_CONFIG:-}" ] || cfg=(--config "$ORIGIN_CONFIG")
  O=$(start_bg origin "$WAN_PREFIX-o" "$SC" origin "${cfg[@]}" --data-dir "$WORK/origin" \
        --api-listen 127.0.0.1:18440 --quic-listen "0.0.0.0:$quic_port")
  api=http://$(jget "$O" api)
  local token; token=$(cat "$(jget "$O" admin_token_file)")
  ctl() { in_origin "$SC" ctl --api "$api" --token "$token" "$@"; }
  if [ -n "${FORCE_RELAY:-}" ] || [ "$SCN_RELAY_DELAY$SCN_RELAY_JITTER$SCN_RELAY_LOSS$SCN_RELAY_OUTAGE_EVERY" != "0ms0ms0" ]; then
    dial_port=18444
    local outage=()
    [ -z "$SCN_RELAY_OUTAGE_EVERY" ] || outage=(--outage-every "$SCN_RELAY_OUTAGE_EVERY" --outage-for "$SCN_RELAY_OUTAGE_FOR")
    start_bg relay "$WAN_PREFIX-o" "$LT" relay --listen "0.0.0.0:$dial_port" --upstream "127.0.0.1:$quic_port" \
      --delay "$SCN_RELAY_DELAY" --jitter "$SCN_RELAY_JITTER" --loss "$SCN_RELAY_LOSS" "${outage[@]}" > /dev/null
    log "relay on the QUIC path: delay $SCN_RELAY_DELAY jitter $SCN_RELAY_JITTER loss $SCN_RELAY_LOSS outage ${SCN_RELAY_OUTAGE_EVERY:-none}/$SCN_RELAY_OUTAGE_FOR"
  fi
  ctl artifact upload "$FILE" "/$SCN_CONTENT" > /dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/device_key" <<< y > /dev/null
  ctl user create device --password device-pass > /dev/null
  # SFTP devices log in with a key when the origin takes one (POST /users/{name}/keys), else with
  # the password.
  SFTP_AUTH=(--password device-pass)
  if ctl user add-key device "$WORK/device_key.pub" > /dev/null 2>&1; then SFTP_AUTH=(--key "$WORK/device_key"); else
    log "origin refused the device's SSH key: SFTP devices use the password"; fi
  local i n name nodes e port
  cat > "$WORK/edge.toml" <<EOF
[ftp]
max_connections_per_ip = 1000
[sftp]
max_connections_per_ip = 1000
EOF
  declare -gA NODE_PORT=()
  for i in $(seq "$SCN_SITES"); do
    name=$(site_var "$i" NAME) nodes=$(site_var "$i" NODES)
    ctl site create "$name" > /dev/null
    ctl grant create --anonymous --path "/$(dirname "$SCN_CONTENT")" --site "$name" > /dev/null
    ctl grant create --user device --path "/$(dirname "$SCN_CONTENT")" --site "$name" > /dev/null
    for n in $(seq "$nodes"); do
      local jt; jt=$(ctl --output json site join-token "$name" | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
      port=$((19000 + n * 10))
      sed "s/^\[ftp\]/[ftp]\npassive_ports = \"$((30000 + n * 100))-$((30099 + n * 100))\"/" "$WORK/edge.toml" > "$WORK/edge-$i-$n.toml"
      start_bg "edge-$i-$n" "$WAN_PREFIX-$i" "$SC" edge --config "$WORK/edge-$i-$n.toml" \
        --data-dir "$WORK/edge-$i-$n" --origin "$(origin_addr "$i"):$dial_port" --join-token "$jt" \
        --node "n$n" --http-listen "127.0.0.1:$port" --ftp-listen "127.0.0.1:$((port + 1))" \
        --sftp-listen "127.0.0.1:$((port + 2))" --metrics-listen "127.0.0.1:$((port + 3))" \
        --oci-listen "127.0.0.1:$((port + 4))" > /dev/null
      # A site has one join token at a time: this node enrolls before the next token is issued.
      local until_t=$(( $(date +%s) + 60 ))
      until [ "$(ctl --output json site show "$name" | python3 -c 'import json,sys
print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["state"] == "online"))')" -ge "$n" ]; do
        [ "$(date +%s)" -lt "$until_t" ] || { log "node $n of $name did not come online"; return 1; }
        sleep 0.2
      done
    done
  done
  # every node enrolled and online before the clock starts
  local deadline=$(( $(date +%s) + 60 ))
  local want=0
  for i in $(seq "$SCN_SITES"); do want=$((want + $(site_var "$i" NODES))); done
  until [ "$(ctl --output json site list | python3 -c 'import json,sys
s=json.load(sys.stdin)["sites"]; print(sum(1 for x in s for n in x["nodes"] if n["state"]=="online"))')" = "$want" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "edges did not come online"; return 1; }
    sleep 0.2
  done
  local t0 b0=() push
  FLEETS=()
  for i in $(seq "$SCN_SITES"); do b0+=("$(wan_bytes "$i")"); done
  t0=$(now)
  push=$(ctl push create --content "/$SCN_CONTENT" ${MAX_RATE:+--max-rate "$MAX_RATE"} $(for i in $(seq "$SCN_SITES"); do echo --site "$(site_var "$i" NAME)"; done))
  for i in $(seq "$SCN_SITES"); do
    nodes=$(site_var "$i" NODES)
    for proto in ftp http sftp; do
      local count; count=$(site_var "$i" "${proto^^}")
      for n in $(seq "$nodes"); do
        # devices split round-robin over the nodes
        local c=$(( count / nodes + (n <= count % nodes ? 1 : 0) ))
        port=$((19000 + n * 10))
        case $proto in
          http) fleet "$i" http "http://127.0.0.1:$port" "$c" "sitecast-$i-http-$n" --wait-available "${TIMEOUT}s" ;;
          ftp)  fleet "$i" ftp "ftp://127.0.0.1:$((port + 1))" "$c" "sitecast-$i-ftp-$n" --wait-available "${TIMEOUT}s" ;;
          sftp) fleet "$i" sftp "sftp://127.0.0.1:$((port + 2))" "$c" "sitecast-$i-sftp-$n" --wait-available "${TIMEOUT}s" \
                  --user device "${SFTP_AUTH[@]}" --insecure-host-key ;;
        esac
      done
    done
  done
  for p in "${FLEETS[@]}"; do wait "$p" || true; done
  ctl --output json push show "$push" > "$WORK/push.json" || true
  for i in $(seq "$SCN_SITES"); do
    site_result sitecast "$i" "$t0" "${b0[$((i - 1))]}" \
      "$(awk -v s="$SIZE" -v r="$(site_var "$i" RATE_BPS)" 'BEGIN{print s*8/r}')"
  done | tee "$WORK/sitecast.jsonl"
  stop_all
}

case $MODE in
  naive) naive ;;
  sitecast) sitecast_side ;;
  both) naive; sitecast_side ;;
  *) log "mode must be naive, sitecast or both"; exit 2 ;;
esac

# comparison line over both sides (when both ran)
python3 - "$WORK" "$SCN_NAME" "$SIZE" <<'EOF'
import json, os, sys
work, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(side):
    p = f"{work}/{side}.jsonl"
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
out = {"test": "campaign", "scenario": name, "content_bytes": size}
for side in ("naive", "sitecast"):
    rows = load(side)
    if rows:
        out[side] = {"sites": len(rows), "devices": sum(r["devices"] for r in rows),
                     "failed": sum(r["failed"] for r in rows),
                     "wan_bytes": sum(r["wan_bytes"] for r in rows),
                     "makespan_s": max(r["makespan_s"] for r in rows),
                     "min_s": max(r["min_s"] for r in rows)}
if "naive" in out and "sitecast" in out and out["sitecast"]["wan_bytes"] and out["sitecast"]["makespan_s"]:
    out["wan_bytes_ratio"] = round(out["naive"]["wan_bytes"] / out["sitecast"]["wan_bytes"], 2)
    out["makespan_ratio"] = round(out["naive"]["makespan_s"] / out["sitecast"]["makespan_s"], 2)
print(json.dumps(out))
EOF
