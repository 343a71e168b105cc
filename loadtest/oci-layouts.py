#!/usr/bin/env python3
"""Write OCI image layouts for the registry benchmarks (deterministic unless a layer is over
64 MiB, whose payload then comes from /dev/urandom).

    loadtest/oci-layouts.py OUT NAME=SEED:SIZE[,SEED:SIZE...] ...

Each NAME becomes OUT/NAME, an OCI layout with tag "1": one uncompressed tar layer per
SEED:SIZE (a file of SIZE bytes, SHAKE-256 of SEED), a config and a manifest. Two images that
name the same SEED:SIZE share that layer byte for byte. OUT/NAME.layer holds the digest of the
first (base) layer, OUT/NAME.top the manifest digest, OUT/NAME.blobs "digest size" lines.
SIZE takes K, M or G suffixes (binary)."""
import hashlib, io, json, os, sys, tarfile

def size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)

def blob(d, b, out):
    h = hashlib.sha256(b).hexdigest()
    with open(f"{d}/blobs/sha256/{h}", "wb") as f:
        f.write(b)
    out.append((f"sha256:{h}", len(b)))
    return f"sha256:{h}", len(b)

def layer(seed, n):
    data = hashlib.shake_256(seed.encode()).digest(n) if n <= 64 << 20 else None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        ti = tarfile.TarInfo(f"payload-{seed}.bin"); ti.size = n; ti.mtime = 1704067200
        t.addfile(ti, io.BytesIO(data) if data is not None else open("/dev/urandom", "rb"))
    return buf.getvalue()

def layout(out, name, spec):
    d = f"{out}/{name}"; os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    open(f"{d}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
    blobs, layers = [], []
    for part in spec.split(","):
        seed, n = part.split(":")
        ld, ll = blob(d, layer(seed, size(n)), blobs)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ll})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()
    cd, cl = blob(d, cfg, blobs)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": layers}).encode()
    md, ml = blob(d, m, blobs)
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ml, "annotations": {"org.opencontainers.image.ref.name": "1"}}]},
        open(f"{d}/index.json", "w"))
    open(f"{out}/{name}.layer", "w").write(layers[0]["digest"])
    open(f"{out}/{name}.top", "w").write(md)
    open(f"{out}/{name}.blobs", "w").write("".join(f"{b} {n}\n" for b, n in blobs))

if __name__ == "__main__":
    out = sys.argv[1]
    for arg in sys.argv[2:]:
        name, spec = arg.split("=", 1)
        layout(out, name, spec)
