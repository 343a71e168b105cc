#!/usr/bin/env bash
# loadtest/bench-ftp-sftp.sh — issue 3's benchmarks, side by side in one run:
#   FTP:  one 512 MiB download (curl) and a 200-wide fleet of one-shot 1 MiB downloads
#         (xargs -P 200 curl ftp://, one control + one data connection and a login each),
#         sitecast edge vs vsftpd 3.0 (../shared/peers), both anonymous, same files;
#   SFTP: one 512 MiB download (OpenSSH sftp client, `get` to /dev/null) and a 200-wide fleet of
#         one-shot 1 MiB downloads (xargs -P 200 sftp -b, one SSH connection each),
#         sitecast edge (anonymous, `none` auth) vs OpenSSH 9.2 internal-sftp (ed25519 key);
#         and one 512 MiB paramiko `SFTPClient.get()` (prefetch: every read sent at once) against
#         each (tests/tools/paramiko_sftp.py, paramiko from PyPI).
# Output: JSON lines on stdout (one per measurement) and a Markdown table on stderr.
# Method: as ../shared/peers/baseline.sh (clients share the 2 cores with the servers; compare only
# within one run); RUNS runs of each single-stream measurement, medians; targets alternate run by
# run so drift hits both alike. Every fleet download's size is checked; the single downloads'
# SHA-256 are checked once per target.
# Usage: loadtest/bench-ftp-sftp.sh   (env: RUNS=3 CONC=200 N=1000 SFTP_N=400 DATA=/srv/sitecast-testdata
#                                       STATE=/tmp/sitecast-bench-ftp NO_BUILD=1 to skip the release build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${KIT:-$ROOT/../shared}
DATA=${DATA:-/srv/sitecast-testdata}
OCI=${OCI:-/srv/sitecast-oci-small}
STATE=${STATE:-/tmp/sitecast-bench-ftp}
RUNS=${RUNS:-3} CONC=${CONC:-200} N=${N:-1000} SFTP_N=${SFTP_N:-400}
BIG=fw/fw-512MiB.bin SMALL=fw/fw-1MiB.bin
BIN=$ROOT/target/release/sitecast
PIDS=()
cleanup() {
  # start runs in $(...), a subshell: its PIDs come back through a file, not the array.
  [ -f "$STATE/pids.bench" ] && mapfile -t -O "${#PIDS[@]}" PIDS < "$STATE/pids.bench"
  rm -f "$STATE/pids.bench"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -n | awk '{v[NR]=$1} END{ if (NR==0) print "null"; else print v[int((NR+1)/2)] }'; }

for t in curl sftp ssh-keygen python3 sha256sum; do command -v $t >/dev/null || { log "missing $t (scripts/install-test-deps.sh)"; exit 1; }; done
python3 -c 'import paramiko' 2>/dev/null || { log "missing paramiko (scripts/install-test-deps.sh)"; exit 1; }
PARAMIKO=$ROOT/tests/tools/paramiko_sftp.py
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --bin sitecast >&2)
[ -f "$DATA/manifest.json" ] || "$KIT/tools/make-testdata.py" "$DATA" > /dev/null
[ -f "$OCI/index.json" ] || "$KIT/tools/make-oci-image.py" "$OCI" --layers 1MiB > /dev/null
"$KIT/peers/start-peers.sh" "$DATA" "$OCI" "$STATE/peers" >&2
# shellcheck source=/dev/null
source "$STATE/peers/peers.env"
rm -rf "$STATE/origin" "$STATE/edge"; mkdir -p "$STATE"

start() {  # NAME ARGS...: run sitecast in the background, wait for its ready line, print it
  local name=$1; shift
  local fifo=$STATE/$name.fifo; rm -f "$fifo"; mkfifo "$fifo"
  "$BIN" "$@" > "$fifo" 2> "$STATE/$name.log" &
  echo $! >> "$STATE/pids.bench"
  local line; read -r -t 60 line < "$fifo" || { log "$name did not start: $(tail -5 "$STATE/$name.log")"; exit 1; }
  echo "$line"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

O=$(start origin origin --data-dir "$STATE/origin" --api-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0)
export SITECAST_API=http://$(field "$O" api) SITECAST_TOKEN=$(cat "$(field "$O" admin_token_file)")
ctl() { "$BIN" ctl "$@"; }
ctl artifact upload "$DATA/$BIG" "/$BIG" > /dev/null
ctl artifact upload "$DATA/$SMALL" "/$SMALL" > /dev/null
TOKEN=$(ctl site create bench-ftp --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
ctl grant create --anonymous --path /fw --site bench-ftp > /dev/null
# Room for the 200-wide fleets: more passive ports and connections per address than the defaults.
cat > "$STATE/edge.toml" <<EOF
[ftp]
passive_ports = "31000-31999"
max_connections_per_ip = 512
[sftp]
max_connections_per_ip = 512
EOF
E=$(start edge edge --config "$STATE/edge.toml" --data-dir "$STATE/edge" --origin "$(field "$O" quic)" \
      --join-token "$TOKEN" --node bench-ftp-1 --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
      --ftp-listen 127.0.0.1:0 --sftp-listen 127.0.0.1:0)
EDGE_FTP=ftp://$(field "$E" ftp)
EDGE_SFTP=$(field "$E" sftp)
PUSH=$(ctl push create --content /fw --site bench-ftp)
ctl push wait "$PUSH" --timeout 600 > /dev/null

BIG_SIZE=$(stat -c %s "$DATA/$BIG") SMALL_SIZE=$(stat -c %s "$DATA/$SMALL")
BIG_SHA=$(sha256sum "$DATA/$BIG" | cut -d' ' -f1)
VSFTPD=$PEER_FTP_URL
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes)
# sftp_get TARGET REMOTE LOCAL: one OpenSSH sftp session downloading REMOTE
sftp_get() {
  if [ "$1" = openssh ]; then
    printf 'get %s %s\n' "$2" "$3" | sftp -q "${SSH_OPTS[@]}" -o IdentitiesOnly=yes -i "$PEER_SFTP_KEY" \
      -P "$PEER_SFTP_PORT" -b - "$PEER_SFTP_USER@127.0.0.1" > /dev/null
  else
    printf 'get %s %s\n' "$2" "$3" | sftp -q "${SSH_OPTS[@]}" -P "${EDGE_SFTP##*:}" -b - anonymous@127.0.0.1 > /dev/null
  fi
}
# The OpenSSH peer is chrooted into DATA when it can be; otherwise paths are relative to DATA.
OSSH_BIG=/$BIG OSSH_SMALL=/$SMALL
[ -z "${PEER_SFTP_ROOT:-}" ] || { OSSH_BIG=$BIG; OSSH_SMALL=$SMALL; }

# --- correctness once per target ---------------------------------------------------------------
for t in vsftpd sitecast; do
  u=$VSFTPD; [ $t = sitecast ] && u=$EDGE_FTP
  got=$(curl -sS "$u/$BIG" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$BIG_SHA" ] || { log "FTP $t: wrong SHA-256"; exit 1; }
done
for t in openssh sitecast; do
  p=/$BIG; [ $t = openssh ] && p=$OSSH_BIG
  sftp_get $t "$p" "$STATE/big.$t"
  got=$(sha256sum "$STATE/big.$t" | cut -d' ' -f1); rm -f "$STATE/big.$t"
  [ "$got" = "$BIG_SHA" ] || { log "SFTP $t: wrong SHA-256"; exit 1; }
done

# --- single stream -----------------------------------------------------------------------------
declare -A SINGLE
for i in $(seq "$RUNS"); do
  for t in vsftpd sitecast; do
    u=$VSFTPD; [ $t = sitecast ] && u=$EDGE_FTP
    read -r bytes secs < <(curl -sS --max-time 300 -o /dev/null -w '%{size_download} %{time_total}\n' "$u/$BIG" || echo "0 1")
    [ "$bytes" = "$BIG_SIZE" ] || log "ftp $t run $i short: $bytes"
    SINGLE[ftp_$t]+="$(awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.1f", b/s/1e6}') "
  done
  for t in openssh sitecast; do
    p=/$BIG; [ $t = openssh ] && p=$OSSH_BIG
    t0=$(now); sftp_get $t "$p" /dev/null; t1=$(now)
    SINGLE[sftp_$t]+="$(awk -v b="$BIG_SIZE" -v a="$t0" -v c="$t1" 'BEGIN{printf "%.1f", b/(c-a)/1e6}') "
  done
  for t in openssh sitecast; do  # paramiko get(): the SHA-256 is checked every run
    if [ $t = openssh ]; then
      r=$(SITECAST_PARAMIKO_TIMEOUT=300 python3 "$PARAMIKO" get 127.0.0.1 "$PEER_SFTP_PORT" "$PEER_SFTP_USER" "key:$PEER_SFTP_KEY" "$OSSH_BIG")
    else
      r=$(SITECAST_PARAMIKO_TIMEOUT=300 python3 "$PARAMIKO" get 127.0.0.1 "${EDGE_SFTP##*:}" anonymous none "/$BIG")
    fi
    [ "$(field "$r" sha256)" = "$BIG_SHA" ] || { log "paramiko $t: wrong SHA-256: $r"; exit 1; }
    SINGLE[paramiko_$t]+="$(awk -v b="$BIG_SIZE" -v s="$(field "$r" seconds)" 'BEGIN{printf "%.1f", b/s/1e6}') "
  done
done
for key in ftp_vsftpd ftp_sitecast sftp_openssh sftp_sitecast paramiko_openssh paramiko_sitecast; do
  med=$(tr ' ' '\n' <<< "${SINGLE[$key]}" | grep . | median)
  printf '{"test":"single_stream","target":"%s","proto":"%s","bytes":%s,"runs":%s,"mb_s_median":%s,"mb_s":[%s]}\n' \
    "${key#*_}" "${key%%_*}" "$BIG_SIZE" "$RUNS" "$med" "$(echo ${SINGLE[$key]} | tr ' ' ',')"
done

# --- 200-wide fleets of one-shot 1 MiB downloads -----------------------------------------------
ftp_fleet() {  # TARGET URL
  local t0 t1 ok
  t0=$(now)
  seq "$N" | xargs -P "$CONC" -I{} curl -s --max-time 120 -o /dev/null -w '%{exitcode} %{size_download}\n' "$2/$SMALL" > "$STATE/fleet" || true
  t1=$(now)
  ok=$(awk -v s="$SMALL_SIZE" '$1 == 0 && $2 == s' "$STATE/fleet" | wc -l)
  awk -v label="$1" -v c="$CONC" -v n="$N" -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN {
    printf "{\"test\":\"concurrency\",\"target\":\"%s\",\"proto\":\"ftp_fleet\",\"tool\":\"xargs -P curl\",\"concurrency\":%d,\"requests\":%d,\"wall_s\":%.2f,\"requests_per_s\":%.1f,\"failures\":%d}\n", label, c, n, b - a, ok / (b - a), n - ok }'
}
sftp_one() {  # TARGET: one download into a temp file, prints "exit size"
  local f; f=$(mktemp -p "$STATE" small.XXXXXX)
  local p=/$SMALL; [ "$1" = openssh ] && p=$OSSH_SMALL
  if sftp_get "$1" "$p" "$f" 2>/dev/null; then echo "0 $(stat -c %s "$f")"; else echo "1 0"; fi
  rm -f "$f"
}
export -f sftp_one sftp_get
export STATE SMALL OSSH_SMALL PEER_SFTP_KEY PEER_SFTP_PORT PEER_SFTP_USER EDGE_SFTP
export SSH_OPTS_STR="${SSH_OPTS[*]}"
sftp_fleet() {  # TARGET
  local t0 t1 ok
  t0=$(now)
  seq "$SFTP_N" | xargs -P "$CONC" -I{} bash -c 'SSH_OPTS=($SSH_OPTS_STR); sftp_one '"$1" > "$STATE/sfleet" || true
  t1=$(now)
  ok=$(awk -v s="$SMALL_SIZE" '$1 == 0 && $2 == s' "$STATE/sfleet" | wc -l)
  awk -v label="$1" -v c="$CONC" -v n="$SFTP_N" -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN {
    printf "{\"test\":\"concurrency\",\"target\":\"%s\",\"proto\":\"sftp_fleet\",\"tool\":\"xargs -P sftp\",\"concurrency\":%d,\"requests\":%d,\"wall_s\":%.2f,\"requests_per_s\":%.1f,\"failures\":%d}\n", label, c, n, b - a, ok / (b - a), n - ok }'
}
for t in vsftpd sitecast; do u=$VSFTPD; [ $t = sitecast ] && u=$EDGE_FTP; ftp_fleet $t "$u"; done
for t in openssh sitecast; do sftp_fleet $t; done
"$KIT/peers/stop-peers.sh" "$STATE/peers" >&2 || true
