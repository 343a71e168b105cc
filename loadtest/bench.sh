#!/usr/bin/env bash
# loadtest/bench.sh — the side-by-side benchmark suite: builds release binaries, starts the peers
# (../shared/peers: nginx, vsftpd, OpenSSH sftp, CNCF registry) and sitecast (origin + one edge)
# on the same data, runs every measurement against both with the same load tool
# (sitecast-loadtest), and rewrites the tables in BENCHMARKS.md (loadtest/bench-report.py).
#
#   loadtest/bench.sh                 # ~13 min on 2 cores; JSON lines in target/bench/bench.jsonl
#
# Measurements (RUNS runs each, targets alternating run by run, medians; ratios from one run):
#   single_stream  one client downloads BIG (512 MiB) over HTTP, FTP, SFTP: MB/s
#   fleet          CONC devices, N downloads of SMALL (1 MiB), a fresh connection (and login)
#                  per download, over HTTP, FTP, SFTP: downloads/s, latency p50/p99, errors
#   fleet_anonymous  the FTP fleet logging in as anonymous (no password hashing on either side)
#   keepalive      CONC devices on kept-alive HTTP connections for DURATION: downloads/s, p99
#   oci            registry pull (manifest → index → config + layers): the CNCF registry vs
#                  the edge's mirror serving the same image (pushed to the site)
#   ingest         `sitecast ctl artifact upload` of BIG vs sha256sum / b3sum of the same file
#   ingest_memory  the origin's RSS (sampled every 0.2 s, and VmHWM) during a 2 GiB upload
#                  of unique data (MEM_UPLOAD=0 skips it)
#   update         bytes on the wire for delta/v1 → delta/v2 (64 MiB, 1 % changed + an insert):
#                  sitecast push (origin's bytes_sent for the site) vs rsync daemon (--stats)
#   campaign       loadtest/wan/campaign.sh CAMPAIGN (network namespaces, tbf links)
# Every download is SHA-256 verified against DATA/manifest.json; a failure is counted, not hidden.
# Env: RUNS (3) CONC (200) N (1000) DURATION (10s) BIG SMALL DATA (/srv/sitecast-testdata)
#      OCI (/srv/sitecast-oci-small) STATE (/tmp/sitecast-bench) CAMPAIGN (wan/scenarios/
#      campaign-small.toml, "none" to skip) NO_BUILD=1 (reuse target/release).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${KIT:-$ROOT/../shared}
DATA=${DATA:-/srv/sitecast-testdata}
OCI=${OCI:-/srv/sitecast-oci-small}
STATE=${STATE:-/tmp/sitecast-bench}
RUNS=${RUNS:-3} CONC=${CONC:-200} N=${N:-1000} DURATION=${DURATION:-10s}
BIG=${BIG:-fw/fw-512MiB.bin} SMALL=${SMALL:-fw/fw-1MiB.bin}
CAMPAIGN=${CAMPAIGN:-$ROOT/loadtest/wan/scenarios/campaign-small.toml}
OUTDIR=${OUTDIR:-$ROOT/target/bench}
OUT=$OUTDIR/bench.jsonl
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
SC=$BIN_DIR/sitecast LT=$BIN_DIR/sitecast-loadtest
REPORT_MD=${REPORT_MD:-$ROOT/BENCHMARKS.md}
PIDS=()
cleanup() {
  local p
  [ -f "$STATE/pids.bench" ] && mapfile -t -O "${#PIDS[@]}" PIDS < "$STATE/pids.bench"
  rm -f "$STATE/pids.bench"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -f "$STATE/rsyncd.pid" ] && kill "$(cat "$STATE/rsyncd.pid")" 2>/dev/null || true
  "$KIT/peers/stop-peers.sh" "$STATE/peers" >/dev/null 2>&1 || true
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
emit() { echo "$1" | tee -a "$OUT"; }
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d, list) else d[k]
print(d)' "$1" "$2"; }

for t in curl python3 sha256sum b3sum rsync ssh-keygen openssl; do
  command -v $t >/dev/null || { log "missing $t (loadtest/install-bench-deps.sh)"; exit 1; }
done
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -p sitecast -p sitecast-loadtest --bins >&2)
[ -f "$DATA/manifest.json" ] || "$KIT/tools/make-testdata.py" "$DATA" > /dev/null
[ -f "$OCI/index.json" ] || "$KIT/tools/make-oci-image.py" "$OCI" --layers 1MiB > /dev/null
mkdir -p "$OUTDIR" "$STATE"; : > "$OUT"
"$KIT/peers/start-peers.sh" "$DATA" "$OCI" "$STATE/peers" >&2
PEERS_ENV=$STATE/peers/peers.env
# shellcheck source=/dev/null
source "$PEERS_ENV"
emit "$(printf '{"test":"env","host":"%s","cpus":%s,"kernel":"%s","date":"%s","commit":"%s","runs":%s,"conc":%s,"n":%s}' \
  "$(hostname)" "$(nproc)" "$(uname -r)" "$(date -u +%FT%TZ)" "$(git -C "$ROOT" rev-parse --short HEAD)" "$RUNS" "$CONC" "$N")"

# --- sitecast: origin + one edge on loopback ---------------------------------------------------
# The previous run's stores are moved aside now and deleted at the end (see ingest below).
for d in origin edge; do [ ! -d "$STATE/$d" ] || mv "$STATE/$d" "$STATE/trash.$d.$$"; done
start() {  # start NAME ARGS...: background sitecast process; prints its ready line
  local name=$1; shift
  "$SC" "$@" > "$STATE/$name.out" 2> "$STATE/$name.log" &
  local pid=$! line=""
  echo "$pid" >> "$STATE/pids.bench"   # callers run start in $(...): PIDS+= would be lost
  for _ in $(seq 600); do
    line=$(head -n1 "$STATE/$name.out" 2>/dev/null || true)
    [ -z "$line" ] || { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || break; sleep 0.1
  done
  log "$name did not start: $(tail -5 "$STATE/$name.log")"; exit 1
}
O=$(start origin origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
      --registry-listen 127.0.0.1:0)
export SITECAST_API=http://$(jget "$O" api) SITECAST_TOKEN=$(cat "$(jget "$O" admin_token_file)")
ctl() { "$SC" ctl "$@"; }

# --- ingest ------------------------------------------------------------------------------------
# Run 1 uploads BIG itself; later runs upload files of the same size with unique content
# (AES-CTR keystreams, deterministic), so every run stores all-new chunks. Nothing is deleted
# until the suite ends: on a journal-less ext4 (this machine's root filesystem) creating files
# within ~30 s of mass deletions scans past every recently freed inode (ext4 `recently_deleted`),
# which cut ingest to ~65 MB/s in earlier runs of this suite. A final upload of BIG again
# measures the path where every chunk is already stored.
SIZE=$(stat -c %s "$DATA/$BIG")
mbs() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }
keystream() {  # keystream N BYTES FILE: deterministic unique data
  [ "$(stat -c %s "$3" 2>/dev/null || echo 0)" = "$2" ] ||
    head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$1")" \
      -iv 00000000000000000000000000000000 > "$3"
  sync  # written back now, not by the origin's syncfs during the measurement
}
for i in $(seq "$RUNS"); do
  f=$DATA/$BIG
  [ "$i" = 1 ] || { f=$STATE/ingest-$i.bin; keystream "$i" "$SIZE" "$f"; }
  cat "$f" > /dev/null
  t0=$(now); sha256sum "$f" > /dev/null; t1=$(now)
  emit "{\"test\":\"ingest\",\"tool\":\"sha256sum\",\"run\":$i,\"bytes\":$SIZE,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"
  t0=$(now); b3sum "$f" > /dev/null; t1=$(now)
  emit "{\"test\":\"ingest\",\"tool\":\"b3sum\",\"run\":$i,\"bytes\":$SIZE,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"
  t0=$(now); ctl artifact upload "$f" "/bench/ingest-$i.bin" > /dev/null; t1=$(now)
  emit "{\"test\":\"ingest\",\"tool\":\"sitecast upload\",\"run\":$i,\"bytes\":$SIZE,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"
done
t0=$(now); ctl artifact upload "$DATA/$BIG" /bench/ingest-again.bin > /dev/null; t1=$(now)
emit "{\"test\":\"ingest\",\"tool\":\"sitecast upload, chunks already stored\",\"run\":1,\"bytes\":$SIZE,\"mb_s\":$(mbs "$SIZE" "$t0" "$t1")}"

# --- ingest memory: the origin's resident set while a 2 GiB upload streams through it -----------
# Unique data (AES-CTR keystream, deterministic), so no chunk dedups against another.
if [ "${MEM_UPLOAD:-1}" != 0 ]; then
  HUGE=$STATE/upload-2GiB.bin
  keystream 999 2147483648 "$HUGE"
  OPID=$(head -n1 "$STATE/pids.bench")
  rss() { awk -v k="$1:" '$1 == k { print $2 * 1024 }' "/proc/$OPID/status"; }
  rss_before=$(rss VmRSS) hwm_before=$(rss VmHWM)
  peak=$rss_before
  ( while kill -0 "$OPID" 2>/dev/null; do rss VmRSS; sleep 0.2; done ) > "$STATE/rss.samples" &
  sampler=$!
  t0=$(now); ctl artifact upload "$HUGE" /bench/upload-2GiB.bin > /dev/null; t1=$(now)
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  peak=$(sort -n "$STATE/rss.samples" | tail -n1)
  emit "$(printf '{"test":"ingest_memory","bytes":2147483648,"mb_s":%s,"rss_before":%s,"rss_peak_sampled":%s,"rss_after":%s,"hwm_before":%s,"hwm_after":%s,"samples":%s}' \
    "$(mbs 2147483648 "$t0" "$t1")" "$rss_before" "$peak" "$(rss VmRSS)" "$hwm_before" "$(rss VmHWM)" "$(wc -l < "$STATE/rss.samples")")"
fi

# --- content, site, edge -------------------------------------------------------------------------
for f in "$BIG" "$SMALL"; do ctl artifact upload "$DATA/$f" "/$f" > /dev/null; done
TOKEN=$(ctl --output json site create bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
ctl grant create --anonymous --path /fw --site bench > /dev/null
ctl user create reader --password reader-pass > /dev/null
ctl grant create --user reader --path /fw --site bench > /dev/null
cat > "$STATE/edge.toml" <<EOF
[ftp]
max_connections_per_ip = 10000
passive_ports = "31000-31999"
[sftp]
max_connections_per_ip = 10000
EOF
E=$(start edge edge --config "$STATE/edge.toml" --data-dir "$STATE/edge" --origin "$(jget "$O" quic)" \
      --join-token "$TOKEN" --node bench-1 --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
      --ftp-listen 127.0.0.1:0 --sftp-listen 127.0.0.1:0 --oci-listen 127.0.0.1:0)
# The peers' OCI image, every tag, into the origin's registry and to the site (anonymous pulls).
O_REG=$(jget "$O" registry)
for tag in ${PEER_OCI_TAGS//,/ }; do
  skopeo --insecure-policy copy --all --preserve-digests --dest-tls-verify=false \
    --dest-creds "x:$SITECAST_TOKEN" "oci:$OCI:$tag" "docker://$O_REG/docker.io/$PEER_OCI_REPO:$tag" > /dev/null
done
ctl grant create --anonymous --path /oci --site bench > /dev/null
PUSH=$(ctl push create --content /fw --image "docker.io/$PEER_OCI_REPO:*" --site bench)
ctl push wait "$PUSH" --timeout 900 > /dev/null
HOSTKEY=$(ssh-keygen -y -f "$STATE/edge/identity/ssh_host_ed25519_key" | cut -d' ' -f1,2)
SFTP_ADDR=$(jget "$E" sftp)
echo "[127.0.0.1]:${SFTP_ADDR##*:} $HOSTKEY" > "$STATE/edge_known_hosts"
mkdir -p "$STATE/sitecast-env"
cat > "$STATE/sitecast-env/peers.env" <<EOF
PEER_HOST=127.0.0.1
PEER_DATA_DIR=$DATA
PEER_HTTP_URL=http://$(jget "$E" http)
PEER_FTP_URL=ftp://$(jget "$E" ftp)
PEER_FTP_USER=reader
PEER_FTP_PASS=reader-pass
PEER_SFTP_URL=sftp://$SFTP_ADDR
PEER_SFTP_PORT=${SFTP_ADDR##*:}
PEER_SFTP_USER=reader
PEER_SFTP_PASS=reader-pass
PEER_SFTP_KNOWN_HOSTS=$STATE/edge_known_hosts
PEER_REGISTRY_URL=http://$(jget "$E" oci)
PEER_OCI_REPO=$PEER_OCI_REPO
PEER_OCI_TAGS=$PEER_OCI_TAGS
EOF
SC_ENV=$STATE/sitecast-env/peers.env
log "edge ready: $E"

# lt TARGET PROTO TEST RUN ARGS...: one load-tool run, one JSON line tagged with target/test/run
lt() {
  local target=$1 proto=$2 test=$3 run=$4; shift 4
  local env=$PEERS_ENV auth=()
  if [ "$target" = sitecast ]; then
    env=$SC_ENV; [ "$proto" = sftp ] && auth=(--password reader-pass)
  fi
  local r
  r=$("$LT" run --proto "$proto" --peers-env "$env" --manifest "$DATA/manifest.json" \
        --label "$target" --json "${auth[@]}" "$@" 2>>"$STATE/lt.err" || true)
  [ -n "$r" ] || { log "$target $proto $test run $run produced no report"; return 0; }
  emit "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(test=sys.argv[2], run=int(sys.argv[3])); d.pop("error_samples") if not d["failed"] else None; print(json.dumps(d))' "$r" "$test" "$run")"
}

for p in http ftp sftp; do "$LT" run --proto $p --peers-env "$SC_ENV" --manifest "$DATA/manifest.json" \
  --path "$SMALL" -c 1 -n 1 $([ $p = sftp ] && echo --password reader-pass) > /dev/null ||
  { log "sitecast edge fails $p: see above"; }; done
for i in $(seq "$RUNS"); do
  order="peers sitecast"; [ $((i % 2)) = 0 ] && order="sitecast peers"
  for proto in http ftp sftp; do
    for t in $order; do lt "$t" "$proto" single_stream "$i" --path "$BIG" -c 1 -n 1; done
  done
  for proto in http ftp sftp; do
    for t in $order; do lt "$t" "$proto" fleet "$i" --path "$SMALL" -c "$CONC" -n "$N" --fresh --timeout 60s; done
  done
  # The same FTP fleet logging in as anonymous: no password to check on either side.
  for t in $order; do
    lt "$t" ftp fleet_anonymous "$i" --path "$SMALL" -c "$CONC" -n "$N" --fresh --timeout 60s \
      --user anonymous --password device@
  done
  for t in $order; do lt "$t" http keepalive "$i" --path "$SMALL" -c "$CONC" --duration "$DURATION"; done
  for t in $order; do lt "$t" oci oci "$i" -c 4 -n 40; done
done

# --- update bytes: sitecast push vs rsync --------------------------------------------------------
V1=$DATA/delta/v1/fw-64MiB.bin V2=$DATA/delta/v2/fw-64MiB.bin
ctl artifact upload "$V1" /fw/update.bin > /dev/null
P1=$(ctl push create --content /fw/update.bin --site bench); ctl push wait "$P1" --timeout 600 > /dev/null
ctl artifact upload "$V2" /fw/update.bin > /dev/null
P2=$(ctl push create --content /fw/update.bin --site bench); ctl push wait "$P2" --timeout 600 > /dev/null
ctl --output json push show "$P2" > "$STATE/push-update.json"
# rsync daemon on loopback serving v2; the receiver holds v1 under the same name
mkdir -p "$STATE/rsync-dst"; rm -f "$STATE/rsyncd.pid"
cat > "$STATE/rsyncd.conf" <<EOF
pid file = $STATE/rsyncd.pid
address = 127.0.0.1
port = 18873
use chroot = no
[v2]
path = $(dirname "$V2")
read only = yes
EOF
rsync --daemon --config="$STATE/rsyncd.conf"
for _ in $(seq 50); do [ -f "$STATE/rsyncd.pid" ] && break; sleep 0.1; done
cp "$V1" "$STATE/rsync-dst/fw-64MiB.bin"
rsync --stats --no-whole-file "rsync://127.0.0.1:18873/v2/fw-64MiB.bin" "$STATE/rsync-dst/" > "$STATE/rsync.stats"
cmp -s "$STATE/rsync-dst/fw-64MiB.bin" "$V2" || log "rsync result differs from v2!"
python3 - "$STATE/push-update.json" "$STATE/rsync.stats" "$(stat -c %s "$V2")" <<'EOF' | tee -a "$OUT"
import json, re, sys
push = json.load(open(sys.argv[1]))["sites"][0]
stats = open(sys.argv[2]).read()
def num(label):
    m = re.search(label + r":\s*([\d,]+)", stats)
    return int(m.group(1).replace(",", "")) if m else None
sent, recv = num("Total bytes sent"), num("Total bytes received")
print(json.dumps({"test": "update", "file_bytes": int(sys.argv[3]),
    "sitecast_bytes_sent": push["bytes_sent"], "sitecast_payload_bytes": push["payload_bytes"],
    "sitecast_framing_bytes": push["framing_bytes"], "sitecast_bytes_needed": push["bytes_needed"],
    "rsync_bytes_total": (sent or 0) + (recv or 0), "rsync_bytes_sent": sent, "rsync_bytes_received": recv}))
EOF
kill "$(cat "$STATE/rsyncd.pid")" 2>/dev/null || true

# --- campaign -----------------------------------------------------------------------------------
cleanup; PIDS=()
if [ "$CAMPAIGN" != none ]; then
  BIN_DIR=$BIN_DIR "$ROOT/loadtest/wan/campaign.sh" "$CAMPAIGN" both | tee -a "$OUT"
fi
python3 "$ROOT/loadtest/bench-report.py" "$OUT" "$REPORT_MD"
rm -rf "$STATE"/trash.*
log "done: $OUT, BENCHMARKS.md rewritten"
