//! The SFTP server against paramiko (PyPI, installed by scripts/install-test-deps.sh), whose
//! `get()` sends every read of a file at once: any number of outstanding requests is answered,
//! whole files arrive with the right SHA-256, and many such clients at once all finish.
//!
//! Each call of the helper script has its own deadline, so a server that stops answering fails
//! the test (exit 2, "no answer within …") instead of hanging it.
#![allow(clippy::missing_panics_doc)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{files, publish, pw, sha, start, Edge, T};
use serde_json::Value;
use tokio::process::Command;

/// Deterministic bytes, fast enough for a GiB in a debug build.
fn big(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Publish the usual files plus `extra` (under /fw, which alice reads); their SHA-256s.
fn publish_extra(edge: &Edge, extra: &[(&'static str, usize)]) -> Vec<String> {
    let mut all = files();
    let mut shas = Vec::new();
    for (i, (path, len)) in extra.iter().enumerate() {
        let bytes = big(*len, 1000 + i as u64);
        shas.push(sha(&bytes));
        all.push((path, bytes));
    }
    publish(&edge.core, &all, 2);
    shas
}

/// `tests/tools/paramiko_sftp.py MODE …` as alice; its JSON result.
async fn paramiko(edge: &Edge, args: &[&str], deadline: Duration) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/paramiko_sftp.py");
    let port = edge.sftp.port().to_string();
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(args[0])
        .args(["127.0.0.1", &port, "alice", pw("alice")])
        .args(&args[1..])
        .env("SITECAST_PARAMIKO_TIMEOUT", deadline.as_secs().to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(deadline + Duration::from_secs(10), cmd.output())
        .await
        .expect("paramiko finished")
        .expect("python3 with paramiko (scripts/install-test-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "paramiko {args:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_get_of_64_mib_and_1_gib_files() {
    tokio::time::timeout(T * 2, async {
        let edge = start(|_| {}).await;
        let shas = publish_extra(&edge, &[("/fw/64m.bin", 64 << 20), ("/fw/1g.bin", 1 << 30)]);
        for (path, len, want) in [
            ("/fw/64m.bin", 64u64 << 20, &shas[0]),
            ("/fw/1g.bin", 1 << 30, &shas[1]),
        ] {
            let got = paramiko(&edge, &["get", path], Duration::from_secs(180)).await;
            assert_eq!(got["bytes"].as_u64(), Some(len), "{path}: {got}");
            assert_eq!(got["sha256"].as_str(), Some(want.as_str()), "{path}");
            eprintln!(
                "paramiko get {path}: {:.1} MB/s, prefetch fell back at {}",
                len as f64 / got["seconds"].as_f64().unwrap() / 1e6,
                got["prefetch_fell_back_at"]
            );
        }
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_readv_of_4096_outstanding_requests() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let shas = publish_extra(&edge, &[("/fw/128m.bin", 128 << 20)]);
        let got = paramiko(
            &edge,
            &["readv", "/fw/128m.bin", "4096", "32768"],
            Duration::from_secs(90),
        )
        .await;
        assert_eq!(got["bytes"].as_u64(), Some(128 << 20), "{got}");
        assert_eq!(got["sha256"].as_str(), Some(shas[0].as_str()));
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_paramiko_prefetch_downloads() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let shas = publish_extra(&edge, &[("/fw/16m.bin", 16 << 20)]);
        let got = paramiko(
            &edge,
            &["fleet", "/fw/16m.bin", "20"],
            Duration::from_secs(100),
        )
        .await;
        let got: Vec<&str> = got["sha256s"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default())
            .collect();
        assert_eq!(got, vec![shas[0].as_str(); 20]);
    })
    .await
    .expect("in time");
}
