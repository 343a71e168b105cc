//! Crash consistency and a full disk at the origin, with real processes: the origin SIGKILLed
//! at 20 points of an ingest and the edge at 20 points of a fetch-and-publish, each followed by
//! `sitecast origin verify` / `sitecast edge verify` and a restart; a corrupt and a misnamed
//! chunk found and repaired on both sides; an upload larger than the origin's disk.
//!
//! The kill points come from a seeded generator (the seed is printed; `SITECAST_CRASH_SEED`
//! replays one): a random fraction of the new version's bytes found in the origin's store
//! (beyond 1: after the upload was acknowledged), and of the bytes the origin sent to the edge
//! (beyond 1: after the push completed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MIB: usize = 1 << 20;
/// Kill points per side.
const POINTS: usize = 20;

fn seed() -> u64 {
    let seed = std::env::var("SITECAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_C0DE);
    eprintln!("crash seed {seed} (set SITECAST_CRASH_SEED to replay)");
    seed
}

/// `sitecast {role} verify --data-dir DIR --output json [extra]`: (exit code, report).
fn verify(env: &TestEnv, role: &str, dir: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = sitecast_command();
    cmd.args([role, "verify", "--output", "json", "--data-dir"])
        .arg(dir)
        .args(extra);
    let out = run_cmd(env, cmd, Duration::from_secs(120));
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{role} verify printed no JSON ({e}), exit {:?}:\n{}\n{}",
            out.code, out.stdout, out.stderr
        )
    });
    (out.code, v)
}

fn found(v: &Value, what: &str) -> u64 {
    v[what]["found"].as_u64().unwrap_or(0)
}

/// After a crash: no chunk under a wrong name, nothing published that cannot be served.
/// Temporary files and unreferenced chunks are what an interrupted write leaves; `--repair`
/// (or the next start) removes them, and a second check is clean.
fn verify_after_crash(env: &TestEnv, role: &str, dir: &Path, round: usize) {
    let (code, v) = verify(env, role, dir, &["--deep"]);
    eprintln!(
        "  {role} verify: {} temporary files, {} unreferenced chunks",
        found(&v, "temp_files"),
        found(&v, "unreferenced_chunks")
    );
    for what in [
        "corrupt_chunks",
        "stray_files",
        "missing_chunks",
        "broken_blobs",
    ] {
        assert_eq!(
            found(&v, what),
            0,
            "round {round}: {role} verify: {what}\n{v:#}"
        );
    }
    if code != Some(0) {
        let (code, fixed) = verify(env, role, dir, &["--repair"]);
        assert_eq!(
            code,
            Some(0),
            "round {round}: {role} verify --repair\n{fixed:#}"
        );
    }
    let (code, v) = verify(env, role, dir, &[]);
    assert_eq!(
        code,
        Some(0),
        "round {round}: {role} verify after repair\n{v:#}"
    );
    assert_eq!(v["clean"], true);
}

/// A `ctl artifact upload` running in the background; a thread waits for its exit.
struct Upload {
    pid: u32,
    done: mpsc::Receiver<std::io::Result<ExitStatus>>,
    status: Option<std::io::Result<ExitStatus>>,
    err: PathBuf,
}

impl Upload {
    fn start(env: &TestEnv, origin: &Origin, file: &Path, path: &str) -> Self {
        let err = env.scratch("upload.err");
        let mut cmd = sitecast_command();
        cmd.args(["ctl", "--output", "json", "artifact", "upload"])
            .arg(file)
            .arg(path)
            .env("SITECAST_API", origin.url())
            .env("SITECAST_TOKEN", &origin.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = cmd.spawn().expect("spawning ctl upload");
        let pid = child.id();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Self {
            pid,
            done,
            status: None,
            err,
        }
    }

    /// Whether ctl has exited.
    fn ended(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.done.try_recv().ok();
        }
        self.status.is_some()
    }

    /// Wait for the upload to end; true if it succeeded.
    fn finish(mut self, env: &TestEnv) -> bool {
        let st = self.status.take().map_or_else(
            || self.done.recv_timeout(env.cap(Duration::from_secs(60))),
            Ok,
        );
        let Ok(st) = st else {
            // Still unreaped (its waiter blocks in wait), so the PID is still this child's.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            panic!("ctl upload did not end");
        };
        let st = st.expect("waiting for ctl");
        if !st.success() {
            eprintln!(
                "  upload ended with {st}: {}",
                std::fs::read_to_string(&self.err)
                    .unwrap_or_default()
                    .trim()
            );
        }
        st.success()
    }
}

/// Bytes of every file in a chunk store (chunks and temporary files).
fn store_bytes(store: &Path) -> u64 {
    let Ok(fans) = std::fs::read_dir(store) else {
        return 0;
    };
    let mut total = 0;
    for fan in fans.flatten() {
        if let Ok(files) = std::fs::read_dir(fan.path()) {
            total += files
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
    }
    total
}

/// The SHA-256 (hex) of the artifact at `path`, if the origin has one.
fn artifact(env: &TestEnv, origin: &Origin, path: &str) -> Option<String> {
    let out = origin.ctl(env, &["--output", "json", "artifact", "show", path]);
    if !out.ok() {
        return None;
    }
    let v: Value = serde_json::from_str(&out.stdout).expect("artifact show JSON");
    Some(v["sha256"].as_str().expect("sha256").to_owned())
}

#[test]
fn origin_killed_at_20_points_of_an_ingest_publishes_nothing_half() {
    let env = TestEnv::new("crash-origin", Duration::from_secs(600));
    let mut rng = Rng::new(seed());
    let mut origin = Origin::start(&env);
    let size = 24 * MIB;
    let first = env.path("v0.bin");
    write_random(&first, 1, size);
    let mut current = Some(
        origin.upload(&env, &first, "/fw/a.bin")["sha256"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let store = origin.dir.join("chunks");
    let mut acknowledged = 0;
    for round in 0..POINTS {
        let file = env.path(&format!("v{}.bin", round + 1));
        write_random(&file, 100 + round as u64, size);
        let sha = sha256sum(&env, &file);
        // The kill point: once this fraction of the new version's bytes is in the store
        // (temporary files included); past 1, once the upload is acknowledged.
        let frac = (rng.next_u64() % 1100) as f64 / 1000.0;
        let base = store_bytes(&store);
        let mut up = Upload::start(&env, &origin, &file, "/fw/a.bin");
        let until = Instant::now() + env.cap(Duration::from_secs(60));
        let mut reached = 0;
        while !up.ended() {
            reached = store_bytes(&store).saturating_sub(base);
            if frac < 1.0 && reached as f64 >= frac * size as f64 {
                break;
            }
            assert!(
                Instant::now() < until,
                "round {round}: the upload made no progress"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        origin.kill();
        let ok = up.finish(&env);
        let point = if frac < 1.0 {
            format!(
                "at {:.0}% of the bytes stored (aimed at {:.0}%)",
                reached as f64 * 100.0 / size as f64,
                frac * 100.0
            )
        } else {
            "after the upload ended".to_owned()
        };
        eprintln!("round {round}: origin SIGKILLed {point} (acknowledged: {ok})");
        verify_after_crash(&env, "origin", &origin.dir, round);
        origin.restart(&env);
        let now = artifact(&env, &origin, "/fw/a.bin");
        if ok {
            acknowledged += 1;
            assert_eq!(
                now.as_deref(),
                Some(sha.as_str()),
                "round {round}: an acknowledged upload was lost"
            );
        } else {
            assert!(
                now == current || now.as_deref() == Some(sha.as_str()),
                "round {round}: /fw/a.bin is neither the old nor the new version: {now:?}"
            );
        }
        current = now;
    }
    eprintln!("{acknowledged} of {POINTS} uploads finished before the kill");
    // Without a repair, the next start removes what a killed upload wrote: kill one half-way,
    // restart, and once the origin says so the store is clean.
    let last = env.path("last.bin");
    write_random(&last, 999, size);
    let base = store_bytes(&store);
    let mut up = Upload::start(&env, &origin, &last, "/fw/a.bin");
    let until = Instant::now() + env.cap(Duration::from_secs(60));
    while !up.ended() && store_bytes(&store) < base + size as u64 / 2 {
        assert!(Instant::now() < until, "the upload made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    origin.kill();
    assert!(!up.finish(&env), "the upload ended before the kill");
    origin.restart(&env);
    let until = Instant::now() + env.cap(Duration::from_secs(60));
    while !std::fs::read_to_string(origin.log())
        .unwrap_or_default()
        .contains("removed chunks of uploads interrupted by a crash")
    {
        assert!(
            Instant::now() < until,
            "the restarted origin removed nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    origin.stop(&env);
    let (code, v) = verify(&env, "origin", &origin.dir, &[]);
    assert_eq!(code, Some(0), "the start-up sweep left something: {v:#}");
    origin.restart(&env);
    // The last version uploads again and the store is clean.
    let v = origin.upload(&env, &last, "/fw/a.bin");
    assert_eq!(v["sha256"].as_str().unwrap(), sha256sum(&env, &last));
    origin.stop(&env);
    let (code, v) = verify(&env, "origin", &origin.dir, &["--deep"]);
    assert_eq!(code, Some(0), "{v:#}");
}

/// The edge's answer for `path`: None for 404, else the body's SHA-256.
fn served(env: &TestEnv, edge: &Edge, path: &str) -> Option<String> {
    let got = env.scratch("served.bin");
    let r = curl_to_file(env, &[&edge.url(path)], &got);
    match r.status {
        404 => None,
        200 => Some(sha256sum(env, &got)),
        s => panic!("GET {path}: status {s}"),
    }
}

/// Origin with an anonymous grant below `/fw` and one enrolled edge of site `s1`.
fn origin_and_edge(env: &TestEnv, cfg: &str) -> (Origin, Edge) {
    let origin = Origin::start(env);
    let token = origin.create_site(env, "s1", &[]);
    origin.ctl_ok(env, &["grant", "create", "--anonymous", "--path", "/fw"]);
    let toml = env.path("edge.toml");
    std::fs::write(&toml, cfg).unwrap();
    let edge = Edge::start(
        env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", toml.to_str().unwrap()],
    );
    (origin, edge)
}

#[test]
fn edge_killed_at_20_points_of_a_fetch_publishes_nothing_half() {
    let env = TestEnv::new("crash-edge", Duration::from_secs(600));
    let mut rng = Rng::new(seed() ^ 0xED6E);
    let (origin, mut edge) =
        origin_and_edge(&env, "retry_failed = \"1s\"\nretry_failed_max = \"1s\"\n");
    let size = 12 * MIB;
    let mut current: Option<String> = None;
    for round in 0..POINTS {
        let file = env.path(&format!("e{round}.bin"));
        write_random(&file, 500 + round as u64, size);
        let sha = sha256sum(&env, &file);
        origin.upload(&env, &file, "/fw/e.bin");
        let id = origin.push(
            &env,
            &[
                "--content",
                "/fw/e.bin",
                "--site",
                "s1",
                "--max-rate",
                "24MiB/s",
            ],
        );
        // A point between "nothing sent" and "published" (above 1: after completion).
        let frac = (rng.next_u64() % 1050) as f64 / 1000.0;
        let target = (size as f64 * frac) as u64;
        let at =
            origin.wait_push_until(&env, &id, Duration::from_secs(60), "the kill point", |p| {
                let s = push_site(p, "s1");
                s["state"] == "complete" || s["bytes_sent"].as_u64().unwrap_or(0) >= target
            });
        // While it fetches, the path serves the old version or nothing.
        let seen = served(&env, &edge, "/fw/e.bin");
        assert!(
            seen == current || seen.as_deref() == Some(sha.as_str()),
            "round {round}: served {seen:?}"
        );
        edge.kill();
        eprintln!(
            "round {round}: edge SIGKILLed at {:.0}% sent ({})",
            u64_field(push_site(&at, "s1"), "bytes_sent") as f64 * 100.0 / size as f64,
            push_site(&at, "s1")["state"]
        );
        verify_after_crash(&env, "edge", &edge.dir, round);
        edge.restart(&env);
        let seen = served(&env, &edge, "/fw/e.bin");
        assert!(
            seen == current || seen.as_deref() == Some(sha.as_str()),
            "round {round}: after the restart /fw/e.bin is neither old nor new: {seen:?}"
        );
        origin.push_wait_ok(&env, &id, 120);
        assert_eq!(
            served(&env, &edge, "/fw/e.bin").as_deref(),
            Some(sha.as_str()),
            "round {round}"
        );
        current = Some(sha);
    }
    edge.stop(&env);
    let (code, v) = verify(&env, "edge", &edge.dir, &["--deep"]);
    assert_eq!(code, Some(0), "{v:#}");
}

/// Every chunk file of a store, sorted.
fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(dir).unwrap() {
        let fan = fan.unwrap().path();
        if fan.is_dir() {
            for f in std::fs::read_dir(&fan).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// Damage two chunk files: one gets a flipped byte, the other a name it does not hash to.
fn damage(store: &Path) {
    let files = chunk_files(store);
    assert!(files.len() >= 2, "too few chunks in {}", store.display());
    let mut data = std::fs::read(&files[0]).unwrap();
    data[0] ^= 0xFF;
    std::fs::write(&files[0], data).unwrap();
    let name = files[1].file_name().unwrap().to_str().unwrap();
    let wrong = format!(
        "{}{}",
        &name[..name.len() - 1],
        if name.ends_with('0') { '1' } else { '0' }
    );
    std::fs::rename(&files[1], files[1].with_file_name(wrong)).unwrap();
}

#[test]
fn verify_repair_finds_a_corrupt_and_a_renamed_chunk() {
    let env = TestEnv::new("verify-repair", Duration::from_secs(300));
    let (mut origin, mut edge) = origin_and_edge(&env, "");
    let file = env.path("r.bin");
    write_random(&file, 42, 4 * MIB);
    let sha = sha256sum(&env, &file);
    origin.upload(&env, &file, "/fw/r.bin");
    let id = origin.push(&env, &["--content", "/fw/r.bin", "--site", "s1"]);
    origin.push_wait_ok(&env, &id, 60);

    // The edge: found, unpublished by the repair, fetched again after the restart.
    edge.stop(&env);
    let (code, v) = verify(&env, "edge", &edge.dir, &[]);
    assert_eq!(
        (code, v["clean"].clone()),
        (Some(0), Value::Bool(true)),
        "{v:#}"
    );
    damage(&edge.dir.join("chunks"));
    let (code, v) = verify(&env, "edge", &edge.dir, &[]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(found(&v, "corrupt_chunks"), 2, "{v:#}");
    assert_eq!(found(&v, "broken_blobs"), 1, "{v:#}");
    let (code, v) = verify(&env, "edge", &edge.dir, &["--repair"]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["corrupt_chunks"]["repaired"], 2, "{v:#}");
    let (code, v) = verify(&env, "edge", &edge.dir, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    edge.restart(&env);
    let until = Instant::now() + env.cap(Duration::from_secs(60));
    while served(&env, &edge, "/fw/r.bin").as_deref() != Some(sha.as_str()) {
        assert!(
            Instant::now() < until,
            "the repaired edge did not fetch /fw/r.bin again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The origin: found; the artifact it cannot serve is deleted; an upload restores it.
    origin.stop(&env);
    damage(&origin.dir.join("chunks"));
    let (code, v) = verify(&env, "origin", &origin.dir, &[]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(found(&v, "corrupt_chunks"), 2, "{v:#}");
    assert_eq!(found(&v, "missing_chunks"), 2, "{v:#}");
    let (code, v) = verify(&env, "origin", &origin.dir, &["--repair"]);
    assert_eq!(code, Some(0), "{v:#}");
    let (code, v) = verify(&env, "origin", &origin.dir, &["--deep"]);
    assert_eq!(code, Some(0), "{v:#}");
    origin.restart(&env);
    assert_eq!(artifact(&env, &origin, "/fw/r.bin"), None);
    origin.upload(&env, &file, "/fw/r.bin");
    assert_eq!(
        artifact(&env, &origin, "/fw/r.bin").as_deref(),
        Some(sha.as_str())
    );

    // verify refuses a data dir a server holds.
    let mut cmd = sitecast_command();
    cmd.args(["origin", "verify", "--data-dir"])
        .arg(&origin.dir);
    let out = run_cmd(&env, cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("in use by another process"),
        "{}",
        out.stderr
    );
}

/// Used KiB of the file system at `dir`.
fn used_kib(env: &TestEnv, dir: &Path) -> u64 {
    let mut cmd = std::process::Command::new("df");
    cmd.args(["-k", "--output=used"]).arg(dir);
    let out = run_cmd(env, cmd, Duration::from_secs(10));
    out.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df: {}", out.stdout))
}

#[test]
fn disk_full_origin_upload_gets_507_and_frees_its_space() {
    const NAME: &str = "disk_full_origin_upload_gets_507_and_frees_its_space";
    let env = TestEnv::new("diskfull-origin", Duration::from_secs(240));
    let fs = match Tmpfs::mount(&env, &env.path("origin-tmpfs"), "40m") {
        Ok(fs) => fs,
        Err(e) => return skip(NAME, &format!("needs a tmpfs mount: {e}")),
    };
    let origin = Origin::start_in(&env, &fs.dir.join("data"));
    let small = env.path("small.bin");
    write_random(&small, 7, 2 * MIB);
    origin.upload(&env, &small, "/fw/small.bin");
    let before = used_kib(&env, &fs.dir);

    let big = env.path("big.bin");
    write_random(&big, 8, 64 * MIB);
    let out = origin.ctl(
        &env,
        &["artifact", "upload", big.to_str().unwrap(), "/fw/big.bin"],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("insufficient_storage") && out.stderr.contains("disk is full"),
        "ctl should print the reason: {}",
        out.stderr
    );
    // The API's answer: 507 with the documented error body.
    let r = curl(
        &env,
        &[
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {}", origin.token),
            "--data-binary",
            &format!("@{}", big.display()),
            &format!("{}/api/v1/artifacts/fw/big.bin", origin.url()),
        ],
    );
    assert_eq!(r.status, 507, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "insufficient_storage", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("full"),
        "{v}"
    );
    // Nothing published, the space written is freed (the abandoned upload's chunks removed).
    assert_eq!(artifact(&env, &origin, "/fw/big.bin"), None);
    let after = used_kib(&env, &fs.dir);
    eprintln!("tmpfs used: {before} KiB before, {after} KiB after the failed uploads");
    assert!(
        after <= before + 1024,
        "{after} KiB used after, {before} KiB before"
    );
    // A smaller upload afterwards succeeds.
    let medium = env.path("medium.bin");
    write_random(&medium, 9, 8 * MIB);
    let v = origin.upload(&env, &medium, "/fw/medium.bin");
    assert_eq!(v["sha256"].as_str().unwrap(), sha256sum(&env, &medium));
    let mut origin = origin;
    origin.stop(&env);
    let (code, v) = verify(&env, "origin", &origin.dir, &[]);
    assert_eq!(code, Some(0), "{v:#}");
}
