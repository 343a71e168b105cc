#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian 12 machine, only when missing:
#   curl, sha256sum (coreutils), python3 (for ../shared/tools/make-testdata.py),
#   mount/umount (util-linux, for the disk-full test when run as root), kill (procps),
#   real FTP/SFTP clients for the edge's protocol tests (busybox ftpget, lftp, OpenSSH's
#   sftp/ssh-keygen, sshpass for password logins in batch mode),
#   and cargo-nextest (the test runner).
# Idempotent: a second run installs nothing.
set -euo pipefail

missing=()
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need curl curl
need sha256sum coreutils
need python3 python3
need mount mount
need umount mount
need kill procps
need busybox busybox
need lftp lftp
need sftp openssh-client
need ssh-keygen openssh-client
need sshpass sshpass

if ((${#missing[@]})); then
    # Deduplicate package names.
    mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "install-test-deps: installing ${pkgs[*]}" >&2
    if [[ $(id -u) -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-test-deps: need root or sudo to install: ${pkgs[*]}" >&2
        exit 1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "install-test-deps: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi
