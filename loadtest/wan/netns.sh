#!/usr/bin/env bash
# loadtest/wan/netns.sh — sourced by the campaign scripts: WAN topology out of network namespaces.
#
#   wan_up PREFIX N RATE_BPS...   origin namespace PREFIX-o and sites PREFIX-1..N, each joined to
#                                 the origin by a veth pair (origin side "PREFIX-o<i>", site side
#                                 "PREFIX-s<i>"), addresses 10.200.<i>.1 (origin) / .2 (site) /30,
#                                 a `tc tbf` rate limit of RATE_BPS[i] on BOTH ends (downlink and
#                                 uplink), loopback up everywhere. No route to the host or outside.
#   wan_down                      deletes every namespace wan_up created (the veths go with them).
#   wan_bytes I                   "tx rx" bytes of site I's link counted at the origin end
#                                 (tx = towards the site), including IP/UDP/TCP headers.
#   in_origin CMD... / in_site I CMD...   run a command inside a namespace.
#
# Every namespace name starts with PREFIX (default "sclt"), so nothing else on the host is
# touched. Callers must `trap wan_down EXIT`. Needs root, iproute2, a kernel with sch_tbf
# (no netem needed: delay/jitter/loss are done by `sitecast-loadtest relay`).

WAN_NS=()
WAN_PREFIX=${WAN_PREFIX:-sclt}

in_origin() { ip netns exec "$WAN_PREFIX-o" "$@"; }
in_site() { local i=$1; shift; ip netns exec "$WAN_PREFIX-$i" "$@"; }
site_addr() { echo "10.200.$1.2"; }
origin_addr() { echo "10.200.$1.1"; }

wan_tbf() {  # wan_tbf NS DEV RATE_BPS
  local burst=$(($3 / 8 / 100))   # 10 ms worth of bytes
  [ "$burst" -ge 32768 ] || burst=32768
  ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3bit" burst "$burst" latency 200ms
}

wan_up() {
  local prefix=$1 n=$2; shift 2
  WAN_PREFIX=$prefix
  [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "wan_up: 1..200 sites" >&2; return 1; }
  ip netns add "$prefix-o"; WAN_NS+=("$prefix-o")
  ip -n "$prefix-o" link set lo up
  local i rate
  for i in $(seq "$n"); do
    rate=${1:?wan_up: a rate per site}; shift
    ip netns add "$prefix-$i"; WAN_NS+=("$prefix-$i")
    ip -n "$prefix-$i" link set lo up
    ip link add "$prefix-o$i" netns "$prefix-o" type veth peer name "$prefix-s$i" netns "$prefix-$i"
    ip -n "$prefix-o" addr add "10.200.$i.1/30" dev "$prefix-o$i"
    ip -n "$prefix-$i" addr add "10.200.$i.2/30" dev "$prefix-s$i"
    ip -n "$prefix-o" link set "$prefix-o$i" up
    ip -n "$prefix-$i" link set "$prefix-s$i" up
    # veth offloads would hand tbf 64 KiB super-packets; keep MTU-sized packets like a WAN.
    ip netns exec "$prefix-o" ethtool -K "$prefix-o$i" tso off gso off gro off >/dev/null 2>&1 || true
    ip netns exec "$prefix-$i" ethtool -K "$prefix-s$i" tso off gso off gro off >/dev/null 2>&1 || true
    wan_tbf "$prefix-o" "$prefix-o$i" "$rate"
    wan_tbf "$prefix-$i" "$prefix-s$i" "$rate"
  done
}

wan_down() {
  local ns
  for ns in "${WAN_NS[@]}"; do
    # Processes still inside would keep the namespace's veths alive: the callers stop theirs first.
    ip netns del "$ns" 2>/dev/null || true
  done
  WAN_NS=()
}

wan_bytes() {
  local d=/sys/class/net/$WAN_PREFIX-o$1/statistics
  ip netns exec "$WAN_PREFIX-o" cat "$d/tx_bytes" "$d/rx_bytes" | paste -sd' '
}
