#!/usr/bin/env python3
"""Write the text seeds of the fuzz corpus (fuzz/corpus/<target>/seed-*): real Range and
conditional headers, request paths, FTP/SFTP names, REST bodies, image references,
manifests and registry requests, in each target's input format (see the target's doc).

The binary seeds (wire frames, recipes) come from the encoders:
    cargo run -p sitecast-protocol --example fuzz_seeds -- fuzz/corpus
Crash reproducers the fuzzer found are kept as fuzz/corpus/<target>/crash-*.
Re-run after changing an input format: python3 fuzz/seeds.py
"""
import base64
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
U64_MAX = 2**64 - 1


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def write(target: str, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.startswith("seed-"):
            os.remove(os.path.join(d, old))
    for i, s in enumerate(seeds):
        if isinstance(s, str):
            s = s.encode()
        with open(os.path.join(d, f"seed-{i:02}"), "wb") as f:
            f.write(s)


ca = hashlib.sha256(b"origin ca").hexdigest()
write("join_token", [
    f"scj1.{ca}.Zk3vQ9-x_2LmP0aB",
    f"  scj1.{ca}.abc\n",
    f"scj1.{ca.upper()}.abc",
    f"scj1.{ca}.",
    f"scj1.{ca[:-2]}.secret",
    "scj2.00.secret",
    f"scj1.{ca}.sec.ret",
])

write("catalog_path", [
    "/", "/firmware/ap-x200/2.1.0/fw.bin", "/a b/\u00fc.bin", "/.hidden/x", "firmware/",
    "/a//b", "/a/", "/a/../b", "/./a", "/a\\..\\b", "/a\nb", "/" + "a" * 256,
    "/ab" * 400, "/.oci/sha256/" + "ab" * 32, "/%2e%2e/x",
])

ranges = [
    "bytes=0-9", "bytes=90-", "bytes=90-200", "bytes=-10", "bytes=-200", "bytes=100-",
    "bytes=-0", "bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-1", " bytes = 3 - 4 ",
    f"bytes=0-{U64_MAX}", f"bytes={U64_MAX}-", f"bytes=-{U64_MAX}", "bytes=+1-+2",
]
write("http_range", [f"100\n{r}" for r in ranges] + [
    f"0\nbytes=0-0", f"{U64_MAX}\nbytes=0-{U64_MAX}", f"{U64_MAX}\nbytes=-1",
    "1048576\n0-1048575", "100\nbytes 0-99/100", f"100\n0-{U64_MAX}",
])

etag = '"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"'
date = "Tue, 14 Nov 2023 22:13:20 GMT"  # 1700000000
write("http_conditional", [
    f"100\n1700000000\n{etag}\n\n\n",
    f"100\n1700000000\nW/{etag}, \"other\"\n\n\n",
    "100\n1700000000\n*\n\n\n",
    f"100\n1700000000\n\n{date}\n\n",
    "100\n1700000000\n\nTue, 14 Nov 2023 22:13:19 GMT\n\n",
    "100\n1700000000\n\nnot a date\n\n",
    "100\n1700000000\n\n\nbytes=0-9\n",
    f"100\n1700000000\n\n\nbytes=10-19\n{etag}",
    "100\n1700000000\n\n\nbytes=10-19\n\"stale\"",
    f"100\n1700000000\n\n\nbytes=-5\n{date}",
    f"100\n1700000000\n\"x\"\n{date}\nbytes=0-\nSun, 06 Nov 1994 08:49:37 GMT",
    f"0\n0\n\n\nbytes=0-0\n",
])

write("http_request", [
    "/firmware/ap-x200/fw.bin\n",
    "/firmware/\nBasic " + base64.b64encode(b"tech:pa:ss").decode(),
    "/\nBasic " + base64.b64encode(b"anonymous:").decode(),
    "/%2e%2e/etc/passwd\nBasic !!!",
    "/a%2Fb/c\nBearer abc",
    "/%ff\nbasic " + base64.b64encode(b"nocolon").decode(),
    "//firmware/x\nBasic",
    "/a%00b\n",
])

write("file_paths", [
    "/\na.bin", "/fw\na.bin", "/fw\n/pub/x", "/fw\n..", "/fw\n../../../../etc/passwd",
    "/fw/a\n./b/../c", "/fw\n//x//y/", "/fw\n", "/fw\n.", "/fw\n~", "/fw\n~/pub",
    "/fw\na~b", "/\n%2e%2e", "/\n..\\..\\etc", "/\na\0b", "/\nC:\\Windows",
])

key = "ssh-ed25519 " + base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode() + " tech@laptop"
bodies = [
    (0, {"name": "tech", "password": "s3cret"}),
    (0, {"name": "tech", "ssh_keys": [key]}),
    (0, {"name": "anonymous", "password": "x"}),
    (0, {"name": "tech"}),
    (1, {"key": key}),
    (1, {"key": "ssh-rsa AAAA"}),
    (2, {"user": "tech", "path": "/firmware", "labels": {"plant": "7"}}),
    (2, {"anonymous": True, "path": "pub/", "site": "plant-7", "list": False}),
    (2, {"path": "/x"}),
    (3, {"name": "ci"}),
    (3, {"name": "admin"}),
    (4, {"name": "plant-7", "labels": {"region": "eu"}, "max_rate": 1000000}),
    (4, {"name": "-bad", "max_rate": 0}),
    (4, {"name": "farm-17", "join_token_ttl": "2h"}),
    (4, {"name": "farm-18", "join_token_ttl": "0s"}),
    (5, {"content": ["/firmware"], "sites": ["plant-7"], "max_rate": U64_MAX}),
    (5, {"images": ["docker.io/library/nginx"], "labels": {"region": "eu"}}),
    (6, {"user": "tech", "repository": "team/*", "push": True}),
    (7, {"reference": "nginx:1.27", "platforms": ["linux/amd64", "linux/arm64/v8"]}),
    (7, {"reference": "registry.example:5000/team/app@" + sha(b"m"), "username": "u"}),
    (8, {"names": ["edge.farm17.example", "*.lan", "10.0.0.1", "fe80::1"]}),
    (8, {"names": ["Edge.example", "edge.example", "a b", ""]}),
    (3, {"name": "dash", "role": "viewer", "ttl": "90days"}),
    (3, {"name": "x", "role": "root", "ttl": "0s"}),
    (9, {"password": "n3w"}),
    (9, {"password": None, "ssh_keys": [key]}),
    (9, {}),
    (10, {"labels": {"province": "gansu"}, "max_rate": None, "https_names": ["a.example"]}),
    (10, {"max_rate": 0}),
]
write("rest_json", [bytes([0x30 + k]) + json.dumps(b).encode() for k, b in bodies] + [
    b"0{\"name\":\"a\",\"name\":\"b\",\"password\":\"x\"}",
    b"5{\"max_rate\": 1e3}",
    b"2{\"path\": \"/a\", \"user\": \"u\", \"extra\": 1}",
])

write("oci_names", [
    "nginx", "docker.io/library/nginx", "registry.example:5000/team/app", "a/b__c/d-e---f/g.h",
    "Nginx", "a//b", "a___b", "host:5000", "1.27", "_x", "a" * 129, sha(b"x"),
    "sha512:" + "ab" * 64, "sha256:ABC", "nginx:1.27", "localhost/a/b:1@" + sha(b"m"),
    "x:bad tag", "docker.io/nginx", "registry.example:5000/team/app:1.4",
])

MT_M = "application/vnd.oci.image.manifest.v1+json"
MT_I = "application/vnd.oci.image.index.v1+json"
MT_DM = "application/vnd.docker.distribution.manifest.v2+json"
MT_DL = "application/vnd.docker.distribution.manifest.list.v2+json"
cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
layer = b"layer bytes"
manifest = {
    "schemaVersion": 2, "mediaType": MT_M,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg),
               "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(layer), "size": len(layer)}],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}
mbytes = json.dumps(manifest, indent=3).encode()
index = {
    "schemaVersion": 2, "mediaType": MT_I,
    "manifests": [
        {"mediaType": MT_M, "digest": sha(mbytes), "size": len(mbytes),
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": MT_M, "digest": sha(b"amd64"), "size": 5,
         "platform": {"architecture": "amd64", "os": "linux"}},
    ],
}
docker = dict(manifest, mediaType=MT_DM)
docker["config"] = dict(manifest["config"], mediaType="application/vnd.docker.container.image.v1+json")
docker["layers"] = [
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(layer), "size": 11},
    {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
     "digest": sha(b"win"), "size": 3, "urls": ["https://example.com/layer"]},
]
dlist = dict(index, mediaType=MT_DL)
artifact = dict(manifest, artifactType="application/vnd.example.sbom",
                subject={"mediaType": MT_M, "digest": sha(mbytes), "size": len(mbytes)})
write("oci_manifest", [
    MT_M.encode() + b"\n" + mbytes,
    b"\n" + json.dumps(index).encode(),
    (MT_DM + "; charset=utf-8").encode() + b"\n" + json.dumps(docker).encode(),
    b"application/json\n" + json.dumps(dlist).encode(),
    MT_M.encode() + b"\n" + json.dumps(artifact).encode(),
    MT_I.encode() + b"\n" + json.dumps(dict(index, manifests=[])).encode(),
    MT_I.encode() + b"\n" + json.dumps(manifest).encode(),
    b"\n" + json.dumps(dict(manifest, schemaVersion=1)).encode(),
    b"text/plain\n{}",
])

auth = "Basic " + base64.b64encode(b"x:api-token").decode()
write("registry_request", [
    "_catalog\nn=10&last=a\n" + auth,
    "docker.io/library/nginx/tags/list\nn=2\nBearer abc.def",
    "docker.io/library/nginx/manifests/1.27\n\nbearer  tok ",
    "team/app/manifests/" + sha(b"m") + "\n\n",
    "team/app/blobs/" + sha(b"l") + "\n\n",
    "team/app/blobs/uploads/\nmount=" + sha(b"l") + "&from=team%2Fother\n",
    "team/app/blobs/uploads/0f3a-uuid\ndigest=" + sha(b"l") + "\n",
    "team/app/referrers/" + sha(b"m") + "\nartifactType=application%2Fvnd.example+sbom\n",
    "a/manifests/b/manifests/c\n&&=&a=1&a=2\nBasic !!",
    "Upper/x/tags/list\nscope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=x\nDigest x",
])

print(f"seeds written under {ROOT}", file=sys.stderr)
