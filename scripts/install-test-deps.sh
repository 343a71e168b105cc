#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian 12 machine, only when missing:
#   curl, sha256sum (coreutils), python3 (for ../shared/tools/make-testdata.py),
#   mount/umount (util-linux, for the disk-full test when run as root), kill (procps),
#   real FTP/SFTP clients for the edge's protocol tests (busybox ftpget, lftp, OpenSSH's
#   sftp/ssh-keygen, sshpass for password logins in batch mode),
#   cargo-nextest (the test runner) and cargo-fuzz (scripts/fuzz.sh; g++ builds libFuzzer),
#   Python test tools from PyPI (oras, paramiko, prometheus_client, openapi-spec-validator,
#   schemathesis).
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
need g++ g++

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

# cargo-fuzz (libFuzzer) for scripts/fuzz.sh; it needs a C++ compiler for libFuzzer itself.
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "install-test-deps: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# OCI clients and servers: skopeo (copy/inspect), docker-registry (CNCF distribution, the
# upstream for imports and the conformance reference), containerd (a real puller through a
# hosts.toml mirror; the package ships both `containerd` and `ctr`).
oci_missing=()
command -v skopeo >/dev/null 2>&1 || oci_missing+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || oci_missing+=(docker-registry)
{ command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1; } || oci_missing+=(containerd)
if ((${#oci_missing[@]})); then
    echo "install-test-deps: installing ${oci_missing[*]}" >&2
    SUDO=(); [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${oci_missing[@]}"
fi

# oras-py (PyPI `oras`): an OCI artifact client (pushes a file as an artifact, pulls it back).
# The Python on PATH is not Debian's: pip, not apt.
if ! python3 -c 'import oras.client' >/dev/null 2>&1; then
    echo "install-test-deps: installing oras (PyPI)" >&2
    python3 -m pip install -q 'oras==0.2.43'
fi

# paramiko (PyPI): the SFTP library behind most Python tooling; its get() pipelines every read
# of a file at once, which the SFTP tests exercise.
if ! python3 -c 'import paramiko; assert paramiko.__version__ == "5.1.0"' >/dev/null 2>&1; then
    echo "install-test-deps: installing paramiko (PyPI)" >&2
    python3 -m pip install -q 'paramiko==5.1.0'
fi

# prometheus_client (PyPI): its exposition parser checks both /metrics in the tests.
if ! python3 -c 'import importlib.metadata as m, prometheus_client; assert m.version("prometheus_client") == "0.26.0"' >/dev/null 2>&1; then
    echo "install-test-deps: installing prometheus_client (PyPI)" >&2
    python3 -m pip install -q 'prometheus_client==0.26.0'
fi

# openapi-spec-validator (PyPI) checks the origin's OpenAPI document (origin/tests/openapi.rs);
# schemathesis (PyPI) fuzzes the REST API from that document (tests/schemathesis.rs).
if ! python3 -c 'import importlib.metadata as m; assert m.version("openapi-spec-validator") == "0.9.0"' >/dev/null 2>&1; then
    echo "install-test-deps: installing openapi-spec-validator (PyPI)" >&2
    python3 -m pip install -q 'openapi-spec-validator==0.9.0'
fi
if ! python3 -c 'import importlib.metadata as m; assert m.version("schemathesis") == "4.32.5"' >/dev/null 2>&1; then
    echo "install-test-deps: installing schemathesis (PyPI)" >&2
    python3 -m pip install -q 'schemathesis==4.32.5'
fi

# The OCI distribution-spec conformance suite (vendored in scripts/oci-conformance, built with
# Debian's Go), cached outside the checkout and built only when missing.
OCI_CONFORMANCE_WORK=${OCI_CONFORMANCE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/sitecast/oci-conformance}
if [[ ! -x $OCI_CONFORMANCE_WORK/conformance.test ]]; then
    echo "install-test-deps: building the OCI conformance suite into $OCI_CONFORMANCE_WORK" >&2
    WORK=$OCI_CONFORMANCE_WORK "$(dirname "$0")/oci-conformance/build.sh" >&2
fi
