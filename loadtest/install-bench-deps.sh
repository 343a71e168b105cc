#!/usr/bin/env bash
# Install what loadtest/bench.sh and loadtest/wan/ need on Debian 12, only when missing:
# curl, python3, b3sum, rsync, wrk, ssh-keygen (openssh-client), openssl, ip/tc (iproute2), nginx.
# The peers themselves (nginx, vsftpd, sshd, docker-registry, skopeo) come with ../shared/peers.
set -euo pipefail
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need curl curl; need python3 python3; need b3sum b3sum; need rsync rsync; need wrk wrk
need ssh-keygen openssh-client; need openssl openssl; need ip iproute2; need tc iproute2; need nginx nginx
if ((${#missing[@]})); then
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-bench-deps: installing ${pkgs[*]}" >&2
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi
