//! End-to-end: the load tool's SFTP and OCI clients (behind BENCHMARKS.md's SFTP and OCI rows)
//! against a real edge with pushed content: every download verified, counted, and a wrong
//! digest reported as a failure. The HTTP and FTP clients are covered by loadtest/tests/smoke.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::oci::{push_layout, write_layout};
use common::*;
use serde_json::Value;

const ALICE: (&str, &str) = ("alice", "alice-pw-1");

/// `sitecast-loadtest`, built beside `sitecast` by the workspace build (scripts/test.sh).
fn loadtest_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("sitecast-loadtest");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        p.display()
    );
    p
}

/// `sitecast-loadtest run ARGS --json`: exit code and report.
fn run_tool(env: &TestEnv, args: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = Command::new(loadtest_bin());
    cmd.arg("run")
        .args(args)
        .args(["--json", "--timeout", "20s"]);
    let o = run_cmd(env, cmd, Duration::from_secs(90));
    let report = serde_json::from_str(o.stdout.trim())
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {o:?}"));
    (o.code, report)
}

fn assert_clean(report: &Value, n: u64) {
    assert_eq!(report["requests"], n, "{report}");
    assert_eq!(report["ok"], n, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["digests_verified"], n, "{report}");
}

#[test]
fn load_tool_sftp_and_oci_clients_against_an_edge() {
    let env = TestEnv::new("loadtool", Duration::from_secs(240));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    origin.ctl_ok(&env, &["user", "create", ALICE.0, "--password", ALICE.1]);
    origin.ctl_ok(
        &env,
        &[
            "grant", "create", "--user", ALICE.0, "--path", "/fw", "--site", "s1",
        ],
    );
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/oci"]);
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);

    let file = env.path("a.bin");
    write_random(&file, 0x10AD, 1 << 20);
    let sha = sha256sum(&env, &file);
    origin.upload(&env, &file, "/fw/a.bin");
    let layout = env.path("layout");
    write_layout(&layout, 7, &[300 * 1024, 20 * 1024], &["amd64"], "1");
    push_layout(
        &env,
        Some(&format!("sitecast:{}", origin.token)),
        &layout,
        "1",
        &format!("docker://{}/docker.io/library/load:1", origin.registry),
        false,
    );
    let id = origin.push(
        &env,
        &[
            "--content",
            "/fw/a.bin",
            "--image",
            "docker.io/library/load:1",
            "--site",
            "s1",
        ],
    );
    origin.push_wait_ok(&env, &id, 120);

    // SFTP: password login, 4 devices, 20 downloads, each SHA-256 checked; then fresh sessions.
    let url = format!("sftp://{}", edge.sftp.expect("sftp"));
    let sftp = |digest: &str, extra: &[&str]| {
        let mut a = vec![
            "--proto",
            "sftp",
            "--url",
            &url,
            "--user",
            ALICE.0,
            "--password",
            ALICE.1,
            "--insecure-host-key",
            "--path",
            "fw/a.bin",
            "--sha256",
            digest,
            "-c",
            "4",
            "-n",
            "20",
        ];
        a.extend_from_slice(extra);
        run_tool(&env, &a)
    };
    let (code, r) = sftp(&sha, &[]);
    assert_eq!(code, Some(0), "{r}");
    assert_clean(&r, 20);
    assert_eq!(r["bytes"], 20u64 << 20, "{r}");
    let (code, r) = sftp(&sha, &["--fresh"]);
    assert_eq!(code, Some(0), "{r}");
    assert_clean(&r, 20);
    let (code, r) = sftp(&"0".repeat(64), &[]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["errors"]["digest_mismatch"], 20, "{r}");

    // OCI: the mirror by tag (docker.io is the default registry), manifest + config + layers,
    // every blob's digest checked.
    let oci = format!("http://{}", edge.oci.expect("oci"));
    let (code, r) = run_tool(
        &env,
        &[
            "--proto",
            "oci",
            "--url",
            &oci,
            "--path",
            "library/load:1",
            "-c",
            "4",
            "-n",
            "20",
        ],
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        (r["ok"].as_u64(), r["failed"].as_u64()),
        (Some(20), Some(0)),
        "{r}"
    );
    assert!(
        r["bytes"].as_u64().unwrap_or(0) >= 20 * (320 * 1024),
        "every pull carries the layers: {r}"
    );
    // A tag the site does not have is a failure, not a success.
    let (code, r) = run_tool(
        &env,
        &[
            "--proto",
            "oci",
            "--url",
            &oci,
            "--path",
            "library/load:nope",
            "-c",
            "1",
            "-n",
            "2",
        ],
    );
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["ok"], 0, "{r}");
}
