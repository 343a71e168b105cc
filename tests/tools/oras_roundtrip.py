#!/usr/bin/env python3
"""Push a file as an OCI artifact with oras-py, or pull one (the tests' oras client).

    oras_roundtrip.py push HOST REPO:TAG FILE [USER PASSWORD]
    oras_roundtrip.py pull HOST REPO:TAG OUTDIR [USER PASSWORD]
"""
import sys

import oras.client

mode, host, target, path = sys.argv[1:5]
user = sys.argv[5] if len(sys.argv) > 5 else None
password = sys.argv[6] if len(sys.argv) > 6 else None
client = oras.client.OrasClient(hostname=host, insecure=True)
if user:
    client.login(username=user, password=password, hostname=host)
if mode == "push":
    client.push(target=f"{host}/{target}", files=[path], disable_path_validation=True)
else:
    for f in client.pull(target=f"{host}/{target}", outdir=path):
        print(f)
