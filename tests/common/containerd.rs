//! A private, real containerd for end-to-end pulls through a registry mirror.
//!
//! Contract:
//! - [`Containerd::start`] runs Debian's `containerd` (1.6) with its own root, state, config and
//!   sockets under a short `/tmp/ctrd-XXXXXX` dir (unix socket paths are limited to 108 bytes);
//!   the CRI plugin is off, there is no debug or metrics listener, and nothing touches the
//!   machine's `/run/containerd` or `/var/lib/containerd`;
//! - readiness is polled (`ctr version`) under a deadline; every `ctr` call is bounded by the
//!   caller's [`TestEnv`] budget through [`run_cmd`];
//! - mirrors are configured the way a site configures them: `hosts.toml` files under a hosts
//!   directory handed to `ctr images pull --hosts-dir`, so containerd sends `?ns=<registry>` to the
//!   mirror (observed with 1.6.20: `HEAD /v2/<name>/manifests/<tag>?ns=docker.io`, then `GET` by
//!   digest for manifests and blobs, every request with `ns`; no `GET /v2/` ping);
//! - the daemon is stopped on drop (SIGTERM by PID, bounded wait, then SIGKILL), leftover mounts
//!   under its dir are unmounted, and on a panic the tail of its log is printed.
//!
//! containerd needs root. A missing binary fails the test (it does not skip): the test command
//! installs it with `scripts/install-test-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{is_root, log_tail, run_cmd, CmdOutput, TestEnv};

/// The containerd namespace every image of these tests lives in.
pub const NAMESPACE: &str = "sitecast";
/// How long containerd may take to answer `ctr version` after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `ctr images pull` may take unless the caller says otherwise.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long any other `ctr` command may take.
const CTR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd may take to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `containerd` and `ctr` are on PATH.
pub fn available() -> bool {
    ["containerd", "ctr"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Where a mirror miss goes: the `server` line of a generated `hosts.toml`. containerd always
/// tries the `[host]` entries first, in file order, then `server`; a 404 from a host also moves on
/// to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The real upstream (`https://registry-1.docker.io` for `docker.io`, `https://<registry>`
    /// otherwise; no `server` line for `_default`, which containerd reads as `https://<registry>`).
    /// What a site deploys; a test with no internet gets a DNS or connect error on a miss.
    Upstream,
    /// A loopback port that refuses connections (`https://127.0.0.1:1`): a mirror miss fails at
    /// once and nothing leaves the machine. containerd reports the refusal (the first transport
    /// error), not the mirror's 404, so assert on the mirror's side.
    Refused,
}

/// The text of a `hosts.toml` for `registry` (a registry host such as `docker.io`, or
/// `_default`) that sends pulls and tag resolution to `mirror` (a URL with its scheme, e.g.
/// `http://127.0.0.1:5000`; for `https://` certificate checks are skipped, tests use self-signed
/// certificates).
///
/// containerd 1.6 rejects a `hosts.toml` without any `[host]` table ("invalid `host` tree") and
/// then ignores the whole file, so the mirror is always written as a `[host]` table.
pub fn hosts_toml(registry: &str, mirror: &str, fallback: Fallback) -> String {
    let server = match (fallback, registry) {
        (Fallback::Refused, _) => Some("https://127.0.0.1:1".to_owned()),
        (Fallback::Upstream, "_default") => None,
        (Fallback::Upstream, "docker.io") => Some("https://registry-1.docker.io".to_owned()),
        (Fallback::Upstream, r) => Some(format!("https://{r}")),
    };
    let mut t = String::new();
    if let Some(s) = server {
        t.push_str(&format!("server = \"{s}\"\n\n"));
    }
    t.push_str(&format!(
        "[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    ));
    if mirror.starts_with("https://") {
        t.push_str("  skip_verify = true\n");
    }
    t
}

/// One line of `ctr images check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCheck {
    /// The image's top-level digest (index or manifest).
    pub digest: String,
    /// `complete`, `incomplete` or `unavailable`, as ctr prints it.
    pub status: String,
    /// Blobs present locally for this machine's platform (config, layers, manifests).
    pub present: usize,
    /// Blobs required for this machine's platform.
    pub required: usize,
    /// Whether the image is unpacked into the snapshotter.
    pub unpacked: bool,
}

impl ImageCheck {
    /// Every required blob is present and the image is unpacked.
    pub fn is_complete(&self) -> bool {
        self.status == "complete" && self.present == self.required && self.unpacked
    }
}

/// A private containerd daemon, stopped on drop.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    hosts_dir: PathBuf,
    log: PathBuf,
    snapshotter: String,
}

impl Containerd {
    /// Start a private containerd and wait until it answers. Panics (with a pointer to
    /// `scripts/install-test-deps.sh`) when containerd is missing, and when not root.
    pub fn start(env: &TestEnv) -> Self {
        assert!(
            available(),
            "containerd/ctr not found on PATH: scripts/install-test-deps.sh installs Debian's \
             containerd package"
        );
        assert!(is_root(), "a private containerd needs root");
        let dir = tempfile::Builder::new()
            .prefix("ctrd-")
            .tempdir_in("/tmp")
            .expect("creating containerd's temp dir under /tmp");
        let d = dir.path();
        let socket = d.join("c.sock");
        let hosts_dir = d.join("hosts");
        let log = d.join("containerd.log");
        std::fs::create_dir_all(&hosts_dir).expect("creating the hosts dir");
        let config = d.join("config.toml");
        std::fs::write(&config, config_toml(d, &socket)).expect("writing config.toml");
        let logf = std::fs::File::create(&log).expect("creating containerd's log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("cloning the log handle"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning containerd: {e}"));
        let mut c = Self {
            dir,
            child: Some(child),
            socket,
            hosts_dir,
            log,
            snapshotter: String::new(),
        };
        c.wait_ready(env);
        c.snapshotter = c.pick_snapshotter(env);
        c
    }

    fn wait_ready(&mut self, env: &TestEnv) {
        let until = Instant::now() + env.cap(READY_TIMEOUT);
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "containerd exited at startup ({st}); log:\n{}",
                    log_tail(&self.log, 60)
                );
            }
            // Without the socket, `ctr` would wait for its dial timeout: check the file first.
            if self.socket.exists() && self.ctr(env, &["version"], CTR_TIMEOUT).ok() {
                return;
            }
            if Instant::now() >= until {
                self.stop();
                panic!(
                    "containerd did not answer within {READY_TIMEOUT:?}; log:\n{}",
                    log_tail(&self.log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// overlayfs when it loaded (containerd's default), else native (works on any filesystem).
    fn pick_snapshotter(&self, env: &TestEnv) -> String {
        let o = self.ctr_ok(env, &["plugins", "ls"]);
        let overlay_ok = o.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"io.containerd.snapshotter.v1")
                && f.get(1) == Some(&"overlayfs")
                && f.last() == Some(&"ok")
        });
        if overlay_ok { "overlayfs" } else { "native" }.to_owned()
    }

    /// The gRPC socket (`ctr --address`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory handed to `ctr --hosts-dir`.
    pub fn hosts_dir(&self) -> &Path {
        &self.hosts_dir
    }

    /// containerd's own log (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The snapshotter pulls unpack into (`overlayfs` or `native`).
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// The daemon's version as `ctr version` reports it (e.g. `1.6.20~ds1`).
    pub fn server_version(&self, env: &TestEnv) -> String {
        let o = self.ctr_ok(env, &["version"]);
        o.split("Server:")
            .nth(1)
            .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("Version:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no server version in:\n{o}"))
    }

    /// Write `<hosts_dir>/<registry>/hosts.toml` sending `registry`'s pulls to `mirror` (see
    /// [`hosts_toml`]); `registry` is a host (`docker.io`, `registry.example.com`,
    /// `myreg:5000`) or `_default` (every registry without its own directory). Returns the path.
    pub fn write_hosts(&self, registry: &str, mirror: &str, fallback: Fallback) -> PathBuf {
        self.write_hosts_toml(registry, &hosts_toml(registry, mirror, fallback))
    }

    /// Write `<hosts_dir>/<registry>/hosts.toml` with the given text. Returns the path.
    pub fn write_hosts_toml(&self, registry: &str, toml: &str) -> PathBuf {
        let d = self.hosts_dir.join(registry);
        std::fs::create_dir_all(&d).expect("creating a hosts.toml dir");
        let p = d.join("hosts.toml");
        std::fs::write(&p, toml).expect("writing hosts.toml");
        p
    }

    /// Remove every `hosts.toml` written so far.
    pub fn clear_hosts(&self) {
        std::fs::remove_dir_all(&self.hosts_dir).expect("removing the hosts dir");
        std::fs::create_dir_all(&self.hosts_dir).expect("creating the hosts dir");
    }

    /// `ctr images pull --hosts-dir DIR REF` for this machine's platform. `reference` must be
    /// fully qualified (`docker.io/library/hello:1`; ctr does not normalize `hello:1`).
    pub fn pull(&self, env: &TestEnv, reference: &str) -> CmdOutput {
        self.pull_args(env, reference, &[])
    }

    /// [`pull`](Self::pull) with extra `ctr images pull` flags, e.g. `["--platform",
    /// "linux/arm64"]`, `["--all-platforms"]`, `["--user", "u:p"]`, `["--http-dump"]`.
    pub fn pull_args(&self, env: &TestEnv, reference: &str, extra: &[&str]) -> CmdOutput {
        let hosts = self.hosts_dir.to_string_lossy().into_owned();
        let mut args = vec![
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--snapshotter",
            &self.snapshotter,
        ];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ctr(env, &args, PULL_TIMEOUT)
    }

    /// [`pull`](Self::pull) that must succeed; panics with ctr's output and containerd's log.
    pub fn pull_ok(&self, env: &TestEnv, reference: &str) -> CmdOutput {
        let o = self.pull(env, reference);
        assert!(
            o.ok(),
            "ctr images pull {reference} failed ({:?}):\n{}\n{}\ncontainerd log:\n{}",
            o.code,
            o.stdout,
            o.stderr,
            log_tail(&self.log, 30)
        );
        o
    }

    /// The top-level digest (index or manifest) containerd recorded for `reference`, if any.
    pub fn image_digest(&self, env: &TestEnv, reference: &str) -> Option<String> {
        let filter = format!("name=={reference}");
        let o = self.ctr_ok(env, &["images", "ls", &filter]);
        o.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&reference)).then(|| f.get(2).map(|d| (*d).to_owned()))?
        })
    }

    /// `ctr images check` for `reference` (this machine's platform), if the image is known.
    pub fn check(&self, env: &TestEnv, reference: &str) -> Option<ImageCheck> {
        let filter = format!("name=={reference}");
        let o = self.ctr_ok(
            env,
            &[
                "images",
                "check",
                "--snapshotter",
                &self.snapshotter,
                &filter,
            ],
        );
        o.lines()
            .skip(1)
            .find(|l| l.split_whitespace().next() == Some(reference))
            .map(|l| parse_check(l).unwrap_or_else(|| panic!("unexpected check line: {l}")))
    }

    /// The digests of every blob in containerd's content store (`ctr content ls -q`).
    pub fn content_digests(&self, env: &TestEnv) -> Vec<String> {
        self.ctr_ok(env, &["content", "ls", "-q"])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Which of `digests` are not in the content store (empty when all are).
    pub fn missing_blobs(&self, env: &TestEnv, digests: &[&str]) -> Vec<String> {
        let have = self.content_digests(env);
        digests
            .iter()
            .filter(|d| !have.iter().any(|h| h == *d))
            .map(|d| (*d).to_owned())
            .collect()
    }

    /// A blob's bytes as text (`ctr content get`), for manifests, indexes and configs.
    pub fn content_text(&self, env: &TestEnv, digest: &str) -> String {
        self.ctr_ok(env, &["content", "get", digest])
    }

    /// Remove an image and, synchronously, the content and snapshots only it referenced, so the
    /// next pull fetches everything again.
    pub fn remove(&self, env: &TestEnv, reference: &str) {
        self.ctr_ok(env, &["images", "rm", "--sync", reference]);
    }

    /// `ctr --address SOCK --namespace sitecast ARGS` under `timeout` (capped by the test's
    /// budget).
    pub fn ctr(&self, env: &TestEnv, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE, "--connect-timeout", "5s"])
            .args(args)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER");
        run_cmd(env, cmd, timeout)
    }

    /// [`ctr`](Self::ctr) that must succeed; its stdout.
    pub fn ctr_ok(&self, env: &TestEnv, args: &[&str]) -> String {
        let o = self.ctr(env, args, CTR_TIMEOUT);
        assert!(
            o.ok(),
            "ctr {args:?} failed ({:?}):\n{}\n{}",
            o.code,
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    /// SIGTERM by PID, a bounded wait, then SIGKILL; reaps the child.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Not reaped yet, so the PID cannot have been reused.
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Unmount whatever an interrupted unpack left mounted under our dir, deepest first, so the
    /// temp dir can be removed.
    fn unmount_leftovers(&self) {
        let root = self.dir.path().to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- containerd log (last 40 lines of {}) -----\n{}\n-----",
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
        self.stop();
        self.unmount_leftovers();
    }
}

/// containerd's config: everything private to `dir`, no CRI, no debug or metrics listener.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# CRI (kubelet) is not needed for pulls; opt would install into /opt/containerd; the other
# snapshotters only log warnings when absent.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
"#
    )
}

/// Parse `REF TYPE DIGEST STATUS (a/b) SIZE... UNPACKED` from `ctr images check`.
fn parse_check(line: &str) -> Option<ImageCheck> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let digest = (*f.get(2)?).to_owned();
    let status = (*f.get(3)?).to_owned();
    let (a, b) = f
        .get(4)?
        .strip_prefix('(')?
        .strip_suffix(')')?
        .split_once('/')?;
    Some(ImageCheck {
        digest,
        status,
        present: a.parse().ok()?,
        required: b.parse().unwrap_or(0),
        unpacked: *f.last()? == "true",
    })
}
