#!/usr/bin/env python3
"""Fetch files from an SFTP server with paramiko the way Python tooling does, and report what
arrived as one JSON line on stdout.

    paramiko_sftp.py get     HOST PORT USER PASSWORD REMOTE
    paramiko_sftp.py readv   HOST PORT USER PASSWORD REMOTE COUNT SIZE
    paramiko_sftp.py fleet   HOST PORT USER PASSWORD REMOTE CLIENTS

- get: `SFTPClient.get()` (paramiko's default: prefetch, every read of the file sent at once),
  into a temporary file; reports {"sha256", "bytes", "seconds"}.
- readv: one `SFTPFile.readv()` of COUNT reads of SIZE bytes from offset 0 (all outstanding at
  once); reports the SHA-256 of the bytes read, in order.
- fleet: CLIENTS connections at once, each downloading REMOTE with prefetch; reports the list
  of SHA-256s and the wall time.

PASSWORD is a password, `key:FILE` or `none`. Every mode gives up after the deadline in SITECAST_PARAMIKO_TIMEOUT (seconds, default 120) and
exits 2, so a server that stops answering fails the test rather than hanging it.
"""

import faulthandler
import hashlib
import json
import os
import sys
import tempfile
import threading
import time

import paramiko
from paramiko.sftp_file import SFTPFile

# paramiko's prefetch marks itself done whenever every request sent so far has been answered,
# even while its thread is still sending (the race of paramiko PR #2519). The rest of the file is
# then read one synchronous request at a time, behind every prefetch answer still coming.
# Recorded here (offset where it happened, per file) so a slow run says why.
FELL_BACK = []
# Every transport opened, so a run that times out can say what state each was left in.
TRANSPORTS = []
_read_prefetch = SFTPFile._read_prefetch


def _watched_read_prefetch(self, size):
    data = _read_prefetch(self, size)
    if data is None and not self._closed:
        FELL_BACK.append(self._realpos)
    return data


SFTPFile._read_prefetch = _watched_read_prefetch


def connect(host, port, user, password):
    """PASSWORD is a password, `key:FILE` (a private key file) or `none` (the `none` method)."""
    transport = paramiko.Transport((host, int(port)))
    TRANSPORTS.append(transport)
    if password == "none":
        transport.start_client()
        transport.auth_none(user)
    elif password.startswith("key:"):
        transport.connect(username=user, pkey=paramiko.PKey.from_path(password[4:]))
    else:
        transport.connect(username=user, password=password)
    return transport, paramiko.SFTPClient.from_transport(transport)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def get(host, port, user, password, remote):
    transport, sftp = connect(host, port, user, password)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "file")
        start = time.monotonic()
        sftp.get(remote, local)
        seconds = time.monotonic() - start
        size = os.path.getsize(local)
        digest = sha256_file(local)
    transport.close()
    return {"sha256": digest, "bytes": size, "seconds": seconds, "prefetch_fell_back_at": [o for o in FELL_BACK if o < size]}


def readv(host, port, user, password, remote, count, size):
    count, size = int(count), int(size)
    transport, sftp = connect(host, port, user, password)
    h = hashlib.sha256()
    total = 0
    start = time.monotonic()
    with sftp.open(remote, "rb") as f:
        for block in f.readv([(i * size, size) for i in range(count)]):
            h.update(block)
            total += len(block)
    seconds = time.monotonic() - start
    transport.close()
    return {"sha256": h.hexdigest(), "bytes": total, "seconds": seconds}


def fleet(host, port, user, password, remote, clients):
    results = [None] * int(clients)

    def one(i):
        try:
            results[i] = get(host, port, user, password, remote)["sha256"]
        except Exception as e:  # reported in the output, the test fails on it
            results[i] = "error: %r" % (e,)

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sha256s": results, "seconds": time.monotonic() - start}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    timeout = float(os.environ.get("SITECAST_PARAMIKO_TIMEOUT", "120"))
    out = {}

    def work():
        out["result"] = {"get": get, "readv": readv, "fleet": fleet}[mode](*args)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        # Where each thread stands and what each connection waits for, for the test's log.
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        for tr in TRANSPORTS:
            try:
                state = {"active": tr.is_active(), "clear_to_send": tr.clear_to_send.is_set()}
                for chan in list(tr._channels.values()):
                    state["chan_%d" % chan.chanid] = {
                        "in_window": chan.in_window_size,
                        "out_window": chan.out_window_size,
                        "buffered": len(chan.in_buffer),
                        "eof": chan.eof_received,
                    }
            except Exception as e:  # the diagnosis must not hide the timeout
                state = {"unavailable": repr(e)}
            print("transport: %s" % json.dumps(state), file=sys.stderr)
        print(json.dumps({"error": "no answer within %ss" % timeout, "prefetch_fell_back_at": FELL_BACK}))
        sys.stdout.flush()
        os._exit(2)
    if "result" not in out:
        sys.exit(1)
    print(json.dumps(out["result"]))


if __name__ == "__main__":
    main()
