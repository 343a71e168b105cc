//! The OCI distribution-spec conformance suite (`../shared/oci-conformance/`, built by the test
//! command) against the site's registry mirror (issue 8): read-only against content pushed to
//! the site, and with the suite's own content pushed to the origin and every answer read from
//! the edge (through `tests/tools/split_proxy.py`). The origin's own registry runs the suite in
//! `tests/registry.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mirror::{origin_creds, publish, site};
use common::oci::skopeo_ok;
use common::*;

const KIB: usize = 1 << 10;

#[test]
fn edge_mirror_passes_every_read_only_pull_and_discovery_spec_for_pushed_content() {
    let env = TestEnv::new("mirror-conformance", Duration::from_secs(240));
    let (origin, edge) = site(&env);
    let repo = "docker.io/conformance/edge";
    let tags = ["t1", "t2", "t3", "t4", "t5"];
    let l = publish(&env, &origin, 31, &[64 * KIB], &["amd64"], repo, tags[0]);
    let dir = env.path("layout-31");
    for t in &tags[1..] {
        let dest = format!("docker://{}/{repo}:{t}", origin.registry);
        let src = format!("oci:{}:{}", dir.display(), tags[0]);
        skopeo_ok(
            &env,
            &[
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
                &origin_creds(&origin),
                &src,
                &dest,
            ],
        );
    }
    let id = origin.push(&env, &["--image", &format!("{repo}:*"), "--site", "s1"]);
    origin.push_wait_ok(&env, &id, 120);
    let oci = edge.oci.unwrap();
    let (blob, tag_list) = (&l.platforms[0].2[0], tags.join(","));
    let (o, summary) = common::oci::run_conformance(
        &env,
        &format!("http://{oci}"),
        repo,
        &[
            ("OCI_TEST_PULL", "1"),
            ("OCI_TEST_CONTENT_DISCOVERY", "1"),
            ("OCI_TAG_NAME", tags[0]),
            ("OCI_MANIFEST_DIGEST", &l.top),
            ("OCI_BLOB_DIGEST", blob),
            ("OCI_TAG_LIST", &tag_list),
        ],
    );
    // Only the totals: the three referrers specs expected to fail read-only are named below
    // when anything else fails.
    let totals: Vec<&String> = summary.iter().filter(|l| !l.contains("[FAIL]")).collect();
    println!("edge conformance (read-only): {totals:?}");
    // Read-only, the suite cannot create the referrers its three referrers specs look for
    // (their subject is a manifest its own setup pushes, with a random config): those three
    // fail against any read-only registry. Every other pull and discovery spec must pass; the
    // edge's referrers API is checked with a referrer of our own in another test.
    let failed: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("[FAIL]"))
        .collect();
    let unexpected: Vec<&&str> = failed
        .iter()
        .filter(|l| !l.contains("(listing references)"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "conformance specs failed against the edge:\n{}\n{}",
        o.stdout,
        o.stderr
    );
    assert!(
        o.stdout.contains("Ran 22 of"),
        "expected the 22 read-only pull and discovery specs to run:\n{}",
        summary.join("\n")
    );
    assert!(
        o.stdout.contains("19 Passed"),
        "expected 19 passing specs:\n{}",
        summary.join("\n")
    );
}

/// `tests/tools/split_proxy.py` in front of the edge (reads) and the origin (writes): killed
/// on drop.
struct SplitProxy {
    child: std::process::Child,
    port: u16,
}

impl SplitProxy {
    fn start(env: &TestEnv, reads: &str, writes: &str, basic: &str) -> Self {
        use std::io::BufRead as _;
        let log = std::fs::File::create(env.path("split-proxy.log")).unwrap();
        let mut child = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/split_proxy.py"))
            .args(["--reads", reads, "--writes", writes, "--basic", basic])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("split_proxy ready line {line:?}: {e}"));
        let port = u16::try_from(v["ready"].as_u64().unwrap()).unwrap();
        Self { child, port }
    }
}

impl Drop for SplitProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn edge_mirror_passes_pull_and_content_discovery_with_the_suite_s_own_content_pushed_to_the_origin()
{
    let env = TestEnv::new("mirror-conformance-rw", Duration::from_secs(240));
    let (origin, edge) = site(&env);
    let proxy = SplitProxy::start(
        &env,
        &format!("http://{}", edge.oci.unwrap()),
        &format!("http://{}", origin.registry),
        &origin_creds(&origin),
    );
    // The suite's setup pushes to the origin; every answer it checks is read from the edge, which
    // has nothing pushed: manifests and blobs come on demand, tags and referrers from the
    // origin's lists while the site is online.
    let (o, summary) = common::oci::run_conformance(
        &env,
        &format!("http://127.0.0.1:{}", proxy.port),
        "docker.io/conformance/rw",
        &[("OCI_TEST_PULL", "1"), ("OCI_TEST_CONTENT_DISCOVERY", "1")],
    );
    println!("edge conformance (setup through the origin): {summary:?}");
    assert!(
        o.stdout.contains(" 0 Failed") && !o.stdout.contains("[FAIL]"),
        "conformance specs failed against the edge:\n{}\n{}\n{}",
        o.stdout,
        o.stderr,
        log_tail(&env.path("split-proxy.log"), 80)
    );
}
