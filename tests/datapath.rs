//! End-to-end checks of the data path's bookkeeping (issue 9):
//! - what `push show` reports a site needed is what it lacked when the push reached it, after
//!   chunk dedup against everything it held: pinned for a site that holds none, some and all of
//!   the pushed content, per site and per artifact, and checked against the chunk bytes sent;
//! - a version replaced at every site that had it leaves the origin's store and the edge's,
//!   and the origin's metrics agree with its store;
//! - the origin's memory stays flat during a large upload (peak RSS read from /proc).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::store::{hex_ids, ids, stored_chunks};
use common::*;
use serde_json::Value;
use sitecast_protocol::chunk_all;

const MIB: usize = 1 << 20;

/// The pushed artifact at `path` in a push-site's breakdown.
fn artifact<'a>(site: &'a Value, path: &str) -> &'a Value {
    site["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["path"] == path))
        .unwrap_or_else(|| panic!("no artifact {path} in {site:#}"))
}

/// Bytes of `data`'s distinct chunks that are not among `held`.
fn lacking(data: &[u8], held: &HashSet<sitecast_protocol::ChunkId>) -> u64 {
    let (cuts, _) = chunk_all(data);
    let mut seen = HashSet::new();
    cuts.iter()
        .filter(|c| !held.contains(&c.id) && seen.insert(c.id))
        .map(|c| c.data.len() as u64)
        .sum()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

/// Wait (at most 30 s) until the chunk store under `data_dir` holds exactly `want`.
fn holds_exactly(env: &TestEnv, data_dir: &Path, want: &HashSet<String>, what: &str) {
    let mut held = HashSet::new();
    let done = eventually(env.cap(Duration::from_secs(30)), || {
        held = stored_chunks(data_dir);
        held == *want
    });
    assert!(
        done,
        "{what} holds {} chunks ({} not wanted, {} missing), wants exactly those of what a site still wants ({})",
        held.len(),
        held.difference(want).count(),
        want.difference(&held).count(),
        want.len()
    );
}

#[test]
fn bytes_needed_for_none_some_and_all_of_the_content() {
    let env = TestEnv::new("accounting", Duration::from_secs(240));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let _edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);

    // None: a fresh site lacks every byte of A.
    let a = random_bytes(0xACC1, 6 * MIB);
    write(&env.path("a.bin"), &a);
    origin.upload(&env, &env.path("a.bin"), "/fw/a.bin");
    let id = origin.push(&env, &["--content", "/fw/a.bin", "--site", "s1"]);
    let p = origin.push_wait_ok(&env, &id, 120);
    let s = push_site(&p, "s1");
    let want = lacking(&a, &HashSet::new());
    assert_eq!(want, a.len() as u64, "random content has no repeated chunk");
    assert_eq!(u64_field(s, "bytes_needed"), want, "{p:#}");
    assert_eq!(u64_field(artifact(s, "/fw/a.bin"), "bytes_needed"), want);
    assert_eq!(
        u64_field(s, "payload_bytes"),
        want,
        "chunk bytes sent: {p:#}"
    );

    // Some: B shares its first 4 MiB with A and adds 3 MiB; C is A under another path.
    let mut b = a[..4 * MIB].to_vec();
    b.extend(random_bytes(0xACC2, 3 * MIB));
    write(&env.path("b.bin"), &b);
    origin.upload(&env, &env.path("b.bin"), "/fw/b.bin");
    origin.upload(&env, &env.path("a.bin"), "/fw/c.bin");
    let id = origin.push(
        &env,
        &["--content", "/fw/b.bin", "/fw/c.bin", "--site", "s1"],
    );
    let p = origin.push_wait_ok(&env, &id, 120);
    let s = push_site(&p, "s1");
    let want_b = lacking(&b, &ids(&a));
    assert!(
        (3 * MIB as u64..4 * MIB as u64).contains(&want_b),
        "B lacks its new 3 MiB and a boundary chunk or two: {want_b}"
    );
    assert_eq!(
        u64_field(artifact(s, "/fw/b.bin"), "bytes_needed"),
        want_b,
        "{p:#}"
    );
    assert_eq!(
        u64_field(artifact(s, "/fw/c.bin"), "bytes_needed"),
        0,
        "{p:#}"
    );
    assert_eq!(u64_field(s, "bytes_needed"), want_b, "{p:#}");
    assert_eq!(u64_field(s, "bytes_total"), (b.len() + a.len()) as u64);
    assert_eq!(
        u64_field(s, "payload_bytes"),
        want_b,
        "chunk bytes sent: {p:#}"
    );

    // All: a push of content the site holds entirely needs and sends nothing.
    let id = origin.push(
        &env,
        &[
            "--content",
            "/fw/a.bin",
            "/fw/b.bin",
            "/fw/c.bin",
            "--site",
            "s1",
        ],
    );
    let p = origin.push_wait_ok(&env, &id, 60);
    let s = push_site(&p, "s1");
    assert_eq!(u64_field(s, "bytes_needed"), 0, "{p:#}");
    assert_eq!(u64_field(s, "payload_bytes"), 0, "{p:#}");
    for path in ["/fw/a.bin", "/fw/b.bin", "/fw/c.bin"] {
        let x = artifact(s, path);
        assert_eq!(
            (x["state"].as_str(), u64_field(x, "bytes_needed")),
            (Some("complete"), 0)
        );
    }

    // All, at a path the site never had: D is B's bytes (a blob the site holds under /fw/b.bin).
    origin.upload(&env, &env.path("b.bin"), "/fw/d.bin");
    let id = origin.push(&env, &["--content", "/fw/d.bin", "--site", "s1"]);
    let p = origin.push_wait_ok(&env, &id, 60);
    let s = push_site(&p, "s1");
    assert_eq!(u64_field(s, "bytes_needed"), 0, "{p:#}");
    assert_eq!(u64_field(s, "payload_bytes"), 0, "{p:#}");
    eprintln!("FIGURE accounting: none {want} / some {want_b} / all 0 bytes needed, as sent");
}

#[test]
fn a_replaced_version_is_collected_at_the_origin_and_the_edge() {
    let env = TestEnv::new("collect", Duration::from_secs(240));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    let keep = random_bytes(0xC000, 2 * MIB);
    write(&env.path("keep.bin"), &keep);
    origin.upload(&env, &env.path("keep.bin"), "/fw/keep.bin");

    // v1, v2, v3 at one path, each pushed and delivered: only v3 (and keep.bin) remain.
    let mut versions = Vec::new();
    for v in 1..=3u64 {
        let data = random_bytes(0xC000 + v, 3 * MIB);
        write(&env.path("x.bin"), &data);
        origin.upload(&env, &env.path("x.bin"), "/fw/x.bin");
        let id = origin.push(&env, &["--content", "/fw/", "--site", "s1"]);
        assert_eq!(origin.push_wait_ok(&env, &id, 120)["state"], "complete");
        versions.push(data);
    }
    let want: HashSet<String> = hex_ids(&keep)
        .union(&hex_ids(&versions[2]))
        .cloned()
        .collect();
    // Collection runs right after the completing status report is stored, so a poll may
    // see the push complete a moment before the replaced chunks are gone.
    holds_exactly(&env, &origin.dir, &want, "the origin's store");
    let m = curl(
        &env,
        &[
            "-H",
            &format!("Authorization: Bearer {}", origin.token),
            &format!("{}/metrics", origin.url()),
        ],
    );
    let text = m.text();
    assert_eq!(
        prom_sum(&text, "sitecast_origin_blobs", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        prom_sum(&text, "sitecast_origin_blob_bytes", &[]),
        Some((keep.len() + versions[2].len()) as f64)
    );

    // The edge drops v1 and v2 once v3 is published (it collects right after publishing).
    holds_exactly(&env, &edge.dir, &want, "the edge's store");
    // v3 is what the edge serves.
    origin.ctl_ok(
        &env,
        &[
            "grant",
            "create",
            "--anonymous",
            "--path",
            "/fw",
            "--site",
            "s1",
        ],
    );
    let got = env.path("got.bin");
    let deadline = std::time::Instant::now() + env.cap(Duration::from_secs(30));
    while curl_to_file(&env, &[&edge.url("/fw/x.bin")], &got).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the grant never reached the edge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read(&got), versions[2]);
    eprintln!(
        "FIGURE collect: origin and edge hold {} chunks (v3 + keep) after v1..v3",
        want.len()
    );
}

/// `VmHWM` (peak resident set) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kib * 1024
}

/// The bound BENCHMARKS.md states for the origin during an upload of any size.
const UPLOAD_RSS_BOUND: u64 = 128 << 20;

#[test]
fn a_1_gib_upload_keeps_the_origin_s_memory_flat() {
    let env = TestEnv::new("upload-rss", Duration::from_secs(240));
    let origin = Origin::start(&env);
    let file = env.path("big.bin");
    write_random(&file, 0x6B1, 1 << 30);
    let before = peak_rss(origin.pid());
    let art = origin.upload(&env, &file, "/fw/big.bin");
    assert_eq!(art["size"], 1u64 << 30, "{art}");
    let peak = peak_rss(origin.pid());
    eprintln!(
        "FIGURE upload-rss: origin peak RSS {} MiB before, {} MiB after a 1 GiB upload",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < UPLOAD_RSS_BOUND,
        "the origin's peak RSS reached {} MiB during a 1 GiB upload (bound {} MiB)",
        peak >> 20,
        UPLOAD_RSS_BOUND >> 20
    );
}
