//! Deterministic OCI image layouts written by the tests themselves (no ../shared needed):
//! uncompressed tar layers of seeded random files, a config and a manifest per platform, and an
//! `index.json` naming each tag (an image index over the platforms when there are several).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{run_cmd, CmdOutput, TestEnv};

/// OCI media types used here.
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// `sha256:<hex>` of bytes.
pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// What [`write_layout`] wrote.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The tag's top-level manifest or index digest.
    pub top: String,
    /// The top-level bytes (manifest or index).
    pub top_bytes: Vec<u8>,
    /// Per platform ("amd64", "arm64"): (manifest digest, layer digests).
    pub platforms: Vec<(String, String, Vec<String>)>,
    /// Every blob written (config, layers, manifests) with its size.
    pub blobs: Vec<(String, u64)>,
}

fn put(dir: &Path, bytes: &[u8], blobs: &mut Vec<(String, u64)>) -> String {
    let d = digest(bytes);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    std::fs::write(&p, bytes).expect("writing a layout blob");
    blobs.push((d.clone(), bytes.len() as u64));
    d
}

/// A tar holding one file of `len` seeded random bytes.
fn layer(seed: u64, len: usize) -> Vec<u8> {
    let data = super::random_bytes(seed, len);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    h.set_cksum();
    b.append_data(&mut h, format!("data/file-{seed}.bin"), &data[..])
        .expect("tar append");
    b.into_inner().expect("tar finish")
}

/// Write an OCI layout at `dir` with one tag `tag`: for each of `arches` a manifest with one
/// layer per entry of `layers` (bytes of file payload, seeded by `seed`, the layer index and the
/// arch). With more than one arch the tag names an index.
pub fn write_layout(dir: &Path, seed: u64, layers: &[usize], arches: &[&str], tag: &str) -> Layout {
    let seeded: Vec<(u64, usize)> = layers
        .iter()
        .enumerate()
        .map(|(li, len)| (seed * 1000 + li as u64, *len))
        .collect();
    write_layout_seeded(dir, &seeded, arches, tag)
}

/// As [`write_layout`], with each layer's own seed: two images that name the same
/// `(seed, len)` share that layer byte for byte (the arch index is added to the seed).
pub fn write_layout_seeded(
    dir: &Path,
    layers: &[(u64, usize)],
    arches: &[&str],
    tag: &str,
) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("creating the layout");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut blobs = Vec::new();
    let mut platforms = Vec::new();
    let mut descs = Vec::new();
    for (ai, arch) in arches.iter().enumerate() {
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for (seed, len) in layers {
            let t = layer(seed + ai as u64 * 100, *len);
            let d = put(dir, &t, &mut blobs);
            diff_ids.push(Value::from(d.clone()));
            layer_descs.push(json!({"mediaType": MT_LAYER, "digest": d, "size": t.len()}));
            layer_digests.push(d);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let cd = put(dir, &config, &mut blobs);
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cd, "size": config.len()},
            "layers": layer_descs,
        }))
        .unwrap();
        let md = put(dir, &manifest, &mut blobs);
        descs.push((
            json!({"mediaType": MT_MANIFEST, "digest": md, "size": manifest.len(),
                   "platform": {"architecture": arch, "os": "linux"}}),
            manifest,
        ));
        platforms.push((arch.to_string(), md, layer_digests));
    }
    let (top_desc, top_bytes) = if descs.len() == 1 {
        descs.pop().unwrap()
    } else {
        let index = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": descs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        }))
        .unwrap();
        let d = put(dir, &index, &mut blobs);
        (
            json!({"mediaType": MT_INDEX, "digest": d, "size": index.len()}),
            index,
        )
    };
    let mut top_desc = top_desc;
    top_desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    if let Some(p) = top_desc.as_object_mut() {
        p.remove("platform");
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top_desc]})).unwrap(),
    )
    .unwrap();
    Layout {
        top: digest(&top_bytes),
        top_bytes,
        platforms,
        blobs,
    }
}

/// `skopeo --insecure-policy ARGS` (two minutes at most).
pub fn skopeo(env: &TestEnv, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy"]).args(args);
    run_cmd(env, cmd, Duration::from_secs(120))
}

pub fn skopeo_ok(env: &TestEnv, args: &[&str]) -> String {
    let o = skopeo(env, args);
    assert!(
        o.ok(),
        "skopeo {args:?} failed ({:?}):\n{}\n{}",
        o.code,
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// `skopeo copy --preserve-digests` of the layout `dir` at `tag` to `dest` (every platform of an
/// index with `all`), with `cr` as the destination's credentials.
pub fn push_layout(env: &TestEnv, cr: Option<&str>, dir: &Path, tag: &str, dest: &str, all: bool) {
    let src = format!("oci:{}:{tag}", dir.display());
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    if let Some(c) = cr {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dest]);
    skopeo_ok(env, &args);
}

/// `skopeo copy --preserve-digests` of `src` (one linux platform, `arch` or this machine's) into
/// the `dir:` folder `out`, with `cr` as the source's credentials.
pub fn pull_to_dir(env: &TestEnv, cr: Option<&str>, src: &str, arch: Option<&str>, out: &Path) {
    let dest = format!("dir:{}", out.display());
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
    if let Some(c) = cr {
        args.extend(["--src-creds", c]);
    }
    if let Some(a) = arch {
        args.extend(["--override-arch", a, "--override-os", "linux"]);
    }
    args.extend([src, dest.as_str()]);
    skopeo_ok(env, &args);
}

/// Debian's CNCF distribution (`docker-registry`) on a loopback port, stopped on drop.
pub struct Upstream {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    /// Start it with an empty store under the test's directory.
    pub fn start(env: &TestEnv) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("picking a port")
            .port();
        let dir = env.path("upstream");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (scripts/install-test-deps.sh installs it)");
        let addr = format!("127.0.0.1:{port}");
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            child,
            log: dir.join("registry.log"),
        }
    }

    /// Stop it (SIGKILL) and wait.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many GET requests for this path the upstream has answered (its access log).
    pub fn gets(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("response completed") && l.contains("http.request.method=GET"))
            .filter(|l| l.contains(&format!("http.request.uri=\"{path}\"")))
            .count()
    }
}

/// The conformance binary: built by scripts/install-test-deps.sh into the cache
/// (`OCI_CONFORMANCE_WORK`, default `~/.cache/sitecast/oci-conformance`), or named by
/// `OCI_CONFORMANCE_BIN`.
pub fn conformance_bin() -> PathBuf {
    if let Ok(p) = std::env::var("OCI_CONFORMANCE_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(w) = std::env::var("OCI_CONFORMANCE_WORK") {
        return PathBuf::from(w).join("conformance.test");
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("sitecast/oci-conformance/conformance.test")
}

/// The conformance suite against `root` (a URL) in repository `namespace`, with the settings
/// both test files use; `envs` picks the workflows (`OCI_TEST_*`) and what else they need.
/// Returns the run and its summary lines (totals and `[FAIL]` lines).
pub fn run_conformance(
    env: &TestEnv,
    root: &str,
    namespace: &str,
    envs: &[(&str, &str)],
) -> (CmdOutput, Vec<String>) {
    let bin = conformance_bin();
    assert!(
        bin.exists(),
        "{} is missing: scripts/install-test-deps.sh builds it (scripts/oci-conformance/build.sh)",
        bin.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.current_dir(env.dir())
        .env("OCI_ROOT_URL", root)
        .env("OCI_NAMESPACE", namespace)
        .env("OCI_HIDE_SKIPPED_WORKFLOWS", "0")
        .env("OCI_REPORT_DIR", "none")
        .env("GOMAXPROCS", "1")
        .envs(envs.iter().copied())
        .arg("-ginkgo.no-color");
    let o = run_cmd(env, cmd, Duration::from_secs(180));
    let summary = o
        .stdout
        .lines()
        .filter(|l| l.contains("Passed") || l.contains("[FAIL]") || l.starts_with("Ran "))
        .map(str::to_owned)
        .collect();
    (o, summary)
}
