#!/usr/bin/env python3
"""Turn bench.jsonl (loadtest/bench.sh) into the Markdown tables of BENCHMARKS.md.

    bench-report.py BENCH.jsonl BENCHMARKS.md

Rewrites everything between `<!-- bench:begin -->` and `<!-- bench:end -->` (appends the
markers when missing). Medians over runs; a ratio is the median of the per-run ratios (both
targets measured in the same run), so drift between runs cancels out.
"""
import json
import statistics
import sys
from collections import defaultdict

PEER = {"http": "nginx", "ftp": "vsftpd", "sftp": "OpenSSH sftp", "oci": "distribution"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, fmt="{:.1f}"):
    return "n/a" if x is None else fmt.format(x)


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    env = next((r for r in rows if r.get("test") == "env"), {})
    by = defaultdict(lambda: defaultdict(dict))  # (test, proto) -> run -> label -> row
    for r in rows:
        if r.get("tool") == "sitecast-loadtest":
            by[(r["test"], r["proto"])][r["run"]][r["label"]] = r
    out = []
    out.append(f"Measured {env.get('date', '?')} on {env.get('host', '?')} ({env.get('cpus', '?')} cores, "
               f"kernel {env.get('kernel', '?')}), commit {env.get('commit', '?')}: "
               f"{env.get('runs', '?')} runs, medians; ratio = sitecast ÷ peer, median of per-run ratios. "
               f"Every download SHA-256 verified by `sitecast-loadtest`.")
    out.append("")

    def ratio(test, proto, key):
        rs = []
        for run in by[(test, proto)].values():
            p, s = run.get("peers"), run.get("sitecast")
            if p and s and p[key]:
                rs.append(s[key] / p[key])
        return med(rs)

    def col(test, proto, label, key):
        return med([run[label][key] for run in by[(test, proto)].values() if label in run])

    def errs(test, proto, label):
        return sum(run[label]["failed"] for run in by[(test, proto)].values() if label in run)

    has = lambda test: any(k[0] == test for k in by)
    if has("single_stream"):
        out.append("### Single stream (one client, the big file)")
        out.append("")
        out.append("| protocol | peer | peer MB/s | sitecast MB/s | ratio | failures (peer / sitecast) |")
        out.append("|---|---|---:|---:|---:|---|")
    for proto in ("http", "ftp", "sftp"):
        if (("single_stream", proto)) in by:
            out.append(f"| {proto} | {PEER[proto]} | {f(col('single_stream', proto, 'peers', 'throughput_mb_s'))} | "
                       f"{f(col('single_stream', proto, 'sitecast', 'throughput_mb_s'))} | "
                       f"{f(ratio('single_stream', proto, 'throughput_mb_s'), '{:.2f}')} | "
                       f"{errs('single_stream', proto, 'peers')} / {errs('single_stream', proto, 'sitecast')} |")
    if has("fleet"):
        out.append("")
        out.append(f"### Device fleet ({env.get('conc', '?')} concurrent devices, {env.get('n', '?')} downloads of the "
                   "1 MiB file, a new connection and login per download)")
        out.append("")
        out.append("| protocol | peer | peer downloads/s | sitecast downloads/s | ratio | p50 / p99 ms peer | p50 / p99 ms sitecast | failures (peer / sitecast) |")
        out.append("|---|---|---:|---:|---:|---|---|---|")
    for test, proto, name in (("fleet", "http", "http"), ("fleet", "ftp", "ftp"),
                              ("fleet_anonymous", "ftp", "ftp, anonymous"), ("fleet", "sftp", "sftp")):
        if (test, proto) in by:
            lat = lambda lab: (f"{f(med([r[lab]['latency_ms']['p50'] for r in by[(test, proto)].values() if lab in r]))} / "
                               f"{f(med([r[lab]['latency_ms']['p99'] for r in by[(test, proto)].values() if lab in r]))}")
            out.append(f"| {name} | {PEER[proto]} | {f(col(test, proto, 'peers', 'requests_per_s'))} | "
                       f"{f(col(test, proto, 'sitecast', 'requests_per_s'))} | "
                       f"{f(ratio(test, proto, 'requests_per_s'), '{:.2f}')} | {lat('peers')} | {lat('sitecast')} | "
                       f"{errs(test, proto, 'peers')} / {errs(test, proto, 'sitecast')} |")
    if ("keepalive", "http") in by:
        out.append("")
        out.append("### HTTP keep-alive (same devices, connections kept, fixed duration)")
        out.append("")
        out.append("| peer downloads/s | sitecast downloads/s | ratio | p99 ms peer | p99 ms sitecast | failures |")
        out.append("|---:|---:|---:|---:|---:|---|")
        k = ("keepalive", "http")
        p99 = lambda lab: med([r[lab]["latency_ms"]["p99"] for r in by[k].values() if lab in r])
        out.append(f"| {f(col(*k, 'peers', 'requests_per_s'))} | {f(col(*k, 'sitecast', 'requests_per_s'))} | "
                   f"{f(ratio(*k, 'requests_per_s'), '{:.2f}')} | {f(p99('peers'))} | {f(p99('sitecast'))} | "
                   f"{errs(*k, 'peers')} / {errs(*k, 'sitecast')} |")
    if ("oci", "oci") in by:
        out.append("")
        out.append("### OCI pulls (manifest, index, config and layers, 4 clients)")
        out.append("")
        out.append("| registry pulls/s | edge mirror pulls/s | ratio | registry MB/s | edge MB/s | failures |")
        out.append("|---:|---:|---:|---:|---:|---|")
        k = ("oci", "oci")
        out.append(f"| {f(col(*k, 'peers', 'requests_per_s'))} | {f(col(*k, 'sitecast', 'requests_per_s'))} | "
                   f"{f(ratio(*k, 'requests_per_s'), '{:.2f}')} | {f(col(*k, 'peers', 'throughput_mb_s'))} | "
                   f"{f(col(*k, 'sitecast', 'throughput_mb_s'))} | {errs(*k, 'peers')} / {errs(*k, 'sitecast')} |")
    ing = defaultdict(list)
    for r in rows:
        if r.get("test") == "ingest":
            ing[r["tool"]].append(r["mb_s"])
    if ing:
        out.append("")
        out.append("### Ingest (512 MiB of new content per run, page cache warm; the same file hashed by each tool)")
        out.append("")
        out.append("| tool | MB/s (median) | runs |")
        out.append("|---|---:|---|")
        for tool in ("sitecast upload", "sitecast upload, chunks already stored", "sha256sum", "b3sum"):
            if tool in ing:
                out.append(f"| {tool} | {f(med(ing[tool]))} | {', '.join(str(x) for x in ing[tool])} |")
    mem = next((r for r in rows if r.get("test") == "ingest_memory"), None)
    if mem:
        mib = lambda b: f"{b / 1048576:.0f} MiB"
        out.append("")
        out.append(f"Origin memory during a {mem['bytes'] / 2**30:.0f} GiB upload of unique data "
                   f"({mem['mb_s']} MB/s, {mem['samples']} samples of RSS): before {mib(mem['rss_before'])}, "
                   f"peak {mib(mem['rss_peak_sampled'])}, after {mib(mem['rss_after'])}; "
                   f"high-water mark {mib(mem['hwm_before'])} → {mib(mem['hwm_after'])}.")
        out.append("")
        out.append("Command: `sudo loadtest/bench.sh` (measurement `ingest_memory`; `MEM_UPLOAD=0` skips it). "
                   "The bound is also a test: `tests/datapath.rs` `a_1_gib_upload_keeps_the_origin_s_memory_flat` "
                   "(peak RSS < 128 MiB for 1 GiB).")
    up = next((r for r in rows if r.get("test") == "update"), None)
    if up:
        out.append("")
        out.append("### Update v1 → v2 (64 MiB, 1 % rewritten in 4 regions + 1021 bytes inserted): bytes on the wire")
        out.append("")
        out.append("| method | bytes | % of the file |")
        out.append("|---|---:|---:|")
        fb = up["file_bytes"]
        for name, b in (("full download", fb), ("sitecast push (payload + framing)", up["sitecast_bytes_sent"]),
                        ("rsync daemon (sent + received)", up["rsync_bytes_total"])):
            out.append(f"| {name} | {b:,} | {100 * b / fb:.2f} |")
        out.append("")
        out.append(f"sitecast ÷ rsync = {up['sitecast_bytes_sent'] / max(1, up['rsync_bytes_total']):.2f} "
                   f"(sitecast payload {up['sitecast_payload_bytes']:,}, framing {up['sitecast_framing_bytes']:,}).")
        out.append("")
        out.append("Command: `sudo loadtest/bench.sh` (measurement `update`; the data is "
                   "`../shared/tools/make-testdata.py`'s `delta/v1`, `delta/v2`). The bound is also a test: "
                   "`tests/foundation.rs` `second_firmware_version_sends_a_small_fraction` (< 2.5 %).")
    camp = [r for r in rows if r.get("test") in ("campaign", "campaign_site")]
    summary = next((r for r in camp if r["test"] == "campaign"), None)
    if summary:
        out.append("")
        out.append(f"### Campaign `{summary['scenario']}` ({summary['content_bytes']:,} bytes of firmware)")
        out.append("")
        out.append("| side | site | devices | failed | WAN bytes | makespan s | theoretical min s |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for r in camp:
            if r["test"] == "campaign_site":
                out.append(f"| {r['side']} | {r['site']} | {r['devices']} | {r['failed']} | {r['wan_bytes']:,} | "
                           f"{r['makespan_s']:.1f} | {r['min_s']:.1f} |")
        if "wan_bytes_ratio" in summary:
            out.append("")
            out.append(f"naive ÷ sitecast: WAN bytes {summary['wan_bytes_ratio']}×, makespan {summary['makespan_ratio']}×.")
        out.append("")
        out.append(f"Command: `sudo loadtest/wan/campaign.sh loadtest/wan/scenarios/{summary['scenario']}.toml` "
                   "(also run by `sudo loadtest/bench.sh`, `CAMPAIGN=none` skips it).")
    text = "\n".join(out) + "\n"
    md = open(sys.argv[2]).read()
    b, e = "<!-- bench:begin -->", "<!-- bench:end -->"
    if b in md and e in md:
        md = md[: md.index(b) + len(b)] + "\n" + text + md[md.index(e):]
    else:
        md = md.rstrip("\n") + "\n\n" + b + "\n" + text + e + "\n"
    open(sys.argv[2], "w").write(md)


if __name__ == "__main__":
    main()
