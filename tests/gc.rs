//! Garbage collection beside running work (issue 11), on real processes: collecting never
//! removes a chunk that an upload still in flight has stored (pinned), that a running push
//! still sends, or that an edge is serving to a device.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::store::{hex_ids, stored_chunks};
use common::*;

const MIB: usize = 1 << 20;

/// `curl ARGS` in a scoped thread (a transfer that runs while the test does other things).
fn curl_in_background<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    env: &'e TestEnv,
    args: Vec<String>,
) -> std::thread::ScopedJoinHandle<'s, CmdOutput> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body"]).args(args);
    s.spawn(move || run_cmd(env, cmd, Duration::from_secs(120)))
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::read(a).ok() == std::fs::read(b).ok()
}

#[test]
fn collection_spares_chunks_of_uploads_in_flight_running_pushes_and_served_downloads() {
    let env = TestEnv::new("gc", Duration::from_secs(240));
    std::thread::scope(|scope| run(scope, &env));
}

fn run<'s, 'e: 's>(scope: &'s std::thread::Scope<'s, 'e>, env: &'e TestEnv) {
    let origin = Origin::start(env);
    let token = origin.create_site(env, "s1", &[]);
    let edge = Edge::start(env, origin.quic, Some(&token), &env.path("edge"), &[]);
    origin.ctl_ok(env, &["grant", "create", "--anonymous", "--path", "/"]);
    let a = random_bytes(0x6C01, 8 * MIB);
    let a_file = env.path("a.bin");
    std::fs::write(&a_file, &a).unwrap();
    // B is A's first half: it shares A's chunks but for the one at its end.
    let b_file = env.path("b.bin");
    std::fs::write(&b_file, &a[..4 * MIB]).unwrap();
    let shared: Vec<String> = {
        let all = hex_ids(&a);
        hex_ids(&a[..4 * MIB])
            .into_iter()
            .filter(|c| all.contains(c))
            .collect()
    };
    assert!(shared.len() > 30, "{}", shared.len());

    // 1. An upload in flight (curl at 2 MB/s): once it has stored the shared chunks, B is
    //    uploaded and deleted, which collects B's chunks — but not those A has pinned.
    let upload = curl_in_background(
        scope,
        env,
        vec![
            "--limit-rate".into(),
            "2M".into(),
            "-H".into(),
            format!("Authorization: Bearer {}", origin.token),
            "-T".into(),
            a_file.to_str().unwrap().into(),
            format!("{}/api/v1/artifacts/fw/a.bin", origin.url()),
        ],
    );
    let stored = || {
        let s = stored_chunks(&origin.dir);
        shared.iter().all(|c| s.contains(c))
    };
    assert!(
        eventually(env.cap(Duration::from_secs(30)), stored),
        "the upload never stored its first half"
    );
    origin.upload(env, &b_file, "/fw/b.bin");
    origin.ctl_ok(env, &["artifact", "delete", "/fw/b.bin"]);
    let out = upload.join().unwrap();
    assert!(out.ok(), "upload: {out:?}");
    let held = stored_chunks(&origin.dir);
    let lost = hex_ids(&a).difference(&held).count();
    assert_eq!(
        lost, 0,
        "collecting B removed {lost} chunks of the upload in flight"
    );

    // 2. A running push (paced to ~4 s): replacing A's version and deleting a copy of it (both
    //    collect A's blob) while it runs do not take its chunks.
    let push = origin.push(
        env,
        &[
            "--content",
            "/fw/a.bin",
            "--site",
            "s1",
            "--max-rate",
            "16Mbit/s",
        ],
    );
    origin.wait_push_until(env, &push, Duration::from_secs(30), "1 MiB sent", |v| {
        v["sites"][0]["payload_bytes"].as_u64() > Some(MIB as u64)
    });
    origin.upload(env, &a_file, "/fw/copy.bin");
    origin.ctl_ok(env, &["artifact", "delete", "/fw/copy.bin"]);
    let v2 = random_bytes(0x6C02, 8 * MIB);
    let v2_file = env.path("v2.bin");
    std::fs::write(&v2_file, &v2).unwrap();
    origin.upload(env, &v2_file, "/fw/a.bin");
    let p = origin.push_wait_ok(env, &push, 120);
    assert_eq!(p["state"], "complete");
    let got = env.path("got.bin");
    let served = curl_to_file(env, &[&edge.url("/fw/a.bin")], &got);
    assert!(
        served.status == 200 && same_file(&got, &a_file),
        "the edge serves A whole"
    );

    // 3. A download from the edge (curl at 2 MB/s) while v2 is pushed and published there
    //    (the edge collects A's chunks right after): the download completes with A's bytes.
    let slow = env.path("slow.bin");
    let download = curl_in_background(
        scope,
        env,
        vec![
            "--limit-rate".into(),
            "2M".into(),
            "-o".into(),
            slow.to_str().unwrap().into(),
            edge.url("/fw/a.bin"),
        ],
    );
    let started = || std::fs::metadata(&slow).is_ok_and(|m| m.len() > MIB as u64);
    assert!(
        eventually(env.cap(Duration::from_secs(30)), started),
        "the download never started"
    );
    let push2 = origin.push(env, &["--content", "/fw/a.bin", "--site", "s1"]);
    origin.push_wait_ok(env, &push2, 120);
    let newest = || {
        curl_to_file(env, &[&edge.url("/fw/a.bin")], &got).status == 200
            && same_file(&got, &v2_file)
    };
    assert!(
        eventually(env.cap(Duration::from_secs(30)), newest),
        "the edge serves v2"
    );
    let out = download.join().unwrap();
    assert!(out.ok(), "download: {out:?}");
    assert!(
        same_file(&slow, &a_file),
        "the download that began on A ended with A's bytes, whole"
    );
    eprintln!(
        "FIGURE gc: an upload in flight, a running push and a served download kept every chunk"
    );
}
