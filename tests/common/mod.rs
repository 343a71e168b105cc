//! Harness for end-to-end tests: real `sitecast` processes on loopback, real clients.
//!
//! Contract (see docs/internals.md):
//! - every server is started on port 0 and its bound addresses are read back from the one
//!   JSON ready line it prints on stdout; nothing waits on a fixed sleep;
//! - each test owns a [`TestEnv`] (its own temp dir and an overall deadline); every wait in this
//!   module is bounded by the smaller of its own limit and what is left of that deadline, so a
//!   hung server fails the test with a message instead of hanging the suite;
//! - a server's stderr goes to `<env>/<name>.log` (appended across restarts); when a test panics,
//!   the tail of every server log is printed so the failure explains itself;
//! - every child is killed (SIGKILL, by its own PID, while still unreaped) when its handle drops.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod clients;
pub mod containerd;
mod data;
pub mod mirror;
pub mod oci;
pub mod store;
mod tmpfs;

#[allow(unused_imports)] // each test binary uses a different subset
pub use data::*;
#[allow(unused_imports)] // each test binary uses a different subset
pub use tmpfs::{is_root, skip, Tmpfs};

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sitecast");

/// `sitecast` with none of its own environment variables inherited from the test runner
/// (`SITECAST_API`, `SITECAST_TOKEN`, `SITECAST_ORIGIN`, `SITECAST_JOIN_TOKEN`, the config
/// paths), so what a test passes is all it gets.
pub fn sitecast_command() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "SITECAST_API",
        "SITECAST_TOKEN",
        "SITECAST_JOIN_TOKEN",
        "SITECAST_ORIGIN",
        "SITECAST_ORIGIN_CONFIG",
        "SITECAST_EDGE_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `ctl` command or a `curl` request may take unless the caller says otherwise.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Per-test environment
// ---------------------------------------------------------------------------------------------

/// One test's private directory and overall deadline.
pub struct TestEnv {
    dir: tempfile::TempDir,
    deadline: Instant,
    name: String,
    seq: AtomicUsize,
}

impl TestEnv {
    /// A fresh temp dir; the test fails once `budget` has elapsed.
    pub fn new(name: &str, budget: Duration) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sitecast-{name}-"))
            .tempdir()
            .expect("creating the test's temp dir");
        Self {
            dir,
            deadline: Instant::now() + budget,
            name: name.to_owned(),
            seq: AtomicUsize::new(0),
        }
    }

    /// The test's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the test's temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A fresh scratch file name inside the temp dir.
    pub fn scratch(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("scratch-{n}-{what}"))
    }

    /// What is left of the test's budget; panics when it is spent.
    pub fn left(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "test {}: overall deadline exceeded",
            self.name
        );
        left
    }

    /// `want`, capped by what is left of the test's budget.
    pub fn cap(&self, want: Duration) -> Duration {
        want.min(self.left())
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

enum StdoutEvent {
    Line(String),
    Eof,
}

/// A running `sitecast` server: the child, its stderr log and its stdout lines.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    lines: mpsc::Receiver<StdoutEvent>,
}

fn drain_stdout(out: ChildStdout, tx: mpsc::Sender<StdoutEvent>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx
                        .send(StdoutEvent::Line(line.trim_end().to_owned()))
                        .is_err()
                    {
                        // Nobody listens any more; keep draining so the child never blocks.
                    }
                }
            }
        }
        let _ = tx.send(StdoutEvent::Eof);
    });
}

/// The last `n` lines of a log file (for failure messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Proc {
    /// Spawn `BIN args`, stderr appended to `log`, and wait for its JSON ready line.
    fn start(env: &TestEnv, name: &str, args: &[OsString], log: &Path) -> (Self, Value) {
        Self::try_start(env, name, args, log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Proc::start`]; a process that exits before its ready line is an `Err` with its log.
    fn try_start(
        env: &TestEnv,
        name: &str,
        args: &[OsString],
        log: &Path,
    ) -> Result<(Self, Value), String> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("opening log");
        let _ = writeln!(f, "===== harness: starting {name}: sitecast {args:?}");
        let mut cmd = sitecast_command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(f))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
        let (tx, rx) = mpsc::channel();
        drain_stdout(child.stdout.take().expect("piped stdout"), tx);
        let mut p = Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            lines: rx,
        };
        let ready = p.read_ready(env)?;
        Ok((p, ready))
    }

    fn read_ready(&mut self, env: &TestEnv) -> Result<Value, String> {
        let until = Instant::now() + env.cap(READY_TIMEOUT);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let ev = self.lines.recv_timeout(left);
            match ev {
                Ok(StdoutEvent::Line(l)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&l) {
                        if v["event"] == "ready" {
                            return Ok(v);
                        }
                    }
                    // Anything else on stdout before the ready line is tolerated but noted.
                    eprintln!("[{}] stdout: {l}", self.name);
                }
                Ok(StdoutEvent::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.take().and_then(|mut c| c.wait().ok());
                    return Err(format!(
                        "{} exited before printing its ready line (status {status:?}); stderr:\n{}",
                        self.name,
                        log_tail(&self.log, 80)
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!(
                        "{} printed no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                        self.name,
                        log_tail(&self.log, 80)
                    );
                }
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send a signal by name (TERM, INT) to this child. The child is not reaped yet, so its PID
    /// cannot have been reused by another process.
    fn signal(&mut self, sig: &str) {
        if let Some(pid) = self.pid() {
            let st = Command::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .status()
                .expect("running kill(1)");
            assert!(st.success(), "kill -s {sig} {pid} failed");
        }
    }

    /// Wait for the child to exit: its stdout reaches EOF when it does (event, not a poll).
    fn wait_exit(&mut self, env: &TestEnv, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + env.cap(timeout);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(StdoutEvent::Line(l)) => eprintln!("[{}] stdout: {l}", self.name),
                Ok(StdoutEvent::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!(
                        "{} did not exit within {timeout:?}; stderr:\n{}",
                        self.name,
                        log_tail(&self.log, 80)
                    );
                }
            }
        }
        let mut child = self.child.take().expect("child present");
        child.wait().expect("waiting for the child")
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} stderr (last 60 lines of {}) -----\n{}\n-----",
                self.name,
                self.log.display(),
                log_tail(&self.log, 60)
            );
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Commands with a time limit
// ---------------------------------------------------------------------------------------------

/// What a finished command produced.
#[derive(Debug)]
pub struct CmdOutput {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CmdOutput {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Run a command to completion under a time limit. Stdout and stderr are read by two threads;
/// both reach EOF when the command exits, which is the event we wait for.
pub fn run_cmd(env: &TestEnv, mut cmd: Command, timeout: Duration) -> CmdOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        let _ = tx.send((true, b));
    });
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        let _ = tx2.send((false, b));
    });
    let until = Instant::now() + env.cap(timeout);
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, b)) => stdout = Some(b),
            Ok((false, b)) => stderr = Some(b),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command timed out after {timeout:?}: {desc}");
            }
        }
    }
    let status = child.wait().expect("waiting for command");
    CmdOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout.unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
    }
}

/// `sitecast ctl ARGS` against `api` with `token` (env SITECAST_API / SITECAST_TOKEN).
pub fn ctl_raw(
    env: &TestEnv,
    api: &str,
    token: &str,
    args: &[&str],
    timeout: Duration,
) -> CmdOutput {
    let mut cmd = Command::new(BIN);
    cmd.arg("ctl")
        .args(args)
        .env("SITECAST_API", api)
        .env("SITECAST_TOKEN", token);
    run_cmd(env, cmd, timeout)
}

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

/// A `sitecast origin` process.
pub struct Origin {
    /// Its data dir.
    pub dir: PathBuf,
    /// REST API address.
    pub api: SocketAddr,
    /// QUIC address.
    pub quic: SocketAddr,
    /// OCI registry address.
    pub registry: SocketAddr,
    /// The admin bearer token (read from the token file of the ready line).
    pub token: String,
    proc: Option<Proc>,
    log: PathBuf,
    config: Option<PathBuf>,
}

impl Origin {
    /// Start an origin on `<env>/origin` with ports chosen by the kernel.
    pub fn start(env: &TestEnv) -> Self {
        Self::start_at(
            env,
            &env.path("origin"),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    /// Start an origin on data dir `dir` (e.g. on a tmpfs) with ports chosen by the kernel.
    pub fn start_in(env: &TestEnv, dir: &Path) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Self::start_at(env, dir, any, any, any)
    }

    /// Start an origin with a TOML config file of this content (ports still chosen by the
    /// kernel).
    pub fn start_with_config(env: &TestEnv, toml: &str) -> Self {
        let cfg = env.path("origin.toml");
        std::fs::write(&cfg, toml).expect("writing the origin config");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Self::start_args(env, &env.path("origin"), any, any, any, Some(&cfg))
    }

    fn start_at(
        env: &TestEnv,
        dir: &Path,
        api: SocketAddr,
        quic: SocketAddr,
        registry: SocketAddr,
    ) -> Self {
        Self::start_args(env, dir, api, quic, registry, None)
    }

    fn start_args(
        env: &TestEnv,
        dir: &Path,
        api: SocketAddr,
        quic: SocketAddr,
        registry: SocketAddr,
        config: Option<&Path>,
    ) -> Self {
        Self::try_start_args(env, dir, api, quic, registry, config)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_args(
        env: &TestEnv,
        dir: &Path,
        api: SocketAddr,
        quic: SocketAddr,
        registry: SocketAddr,
        config: Option<&Path>,
    ) -> Result<Self, String> {
        let log = env.path("origin.log");
        let mut args: Vec<OsString> = vec![
            "origin".into(),
            "--data-dir".into(),
            dir.into(),
            "--api-listen".into(),
            api.to_string().into(),
            "--quic-listen".into(),
            quic.to_string().into(),
            "--registry-listen".into(),
            registry.to_string().into(),
        ];
        if let Some(c) = config {
            args.push("--config".into());
            args.push(c.into());
        }
        let (proc, ready) = Proc::try_start(env, "origin", &args, &log)?;
        let api: SocketAddr = parse_addr(&ready, "api");
        let quic: SocketAddr = parse_addr(&ready, "quic");
        let registry: SocketAddr = parse_addr(&ready, "registry");
        let token_file = ready["admin_token_file"]
            .as_str()
            .unwrap_or_else(|| panic!("ready line without admin_token_file: {ready}"));
        let token = std::fs::read_to_string(token_file)
            .unwrap_or_else(|e| panic!("reading admin token file {token_file}: {e}"))
            .trim()
            .to_owned();
        assert!(!token.is_empty(), "admin token file {token_file} is empty");
        Ok(Self {
            dir: dir.to_owned(),
            api,
            quic,
            registry,
            token,
            proc: Some(proc),
            log,
            config: config.map(Path::to_owned),
        })
    }

    /// `http://<api>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `sitecast ctl ARGS` (text output); the caller checks the exit code.
    pub fn ctl(&self, env: &TestEnv, args: &[&str]) -> CmdOutput {
        ctl_raw(env, &self.url(), &self.token, args, CMD_TIMEOUT)
    }

    /// `sitecast ctl --output json ARGS`, which must succeed; stdout parsed as JSON.
    pub fn ctl_json(&self, env: &TestEnv, args: &[&str]) -> Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let out = ctl_raw(env, &self.url(), &self.token, &a, CMD_TIMEOUT);
        assert!(
            out.ok(),
            "sitecast ctl {a:?} failed ({:?}):\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sitecast ctl {a:?}: stdout is not JSON ({e}):\n{}",
                out.stdout
            )
        })
    }

    /// `sitecast ctl ARGS` which must succeed; returns stdout.
    pub fn ctl_ok(&self, env: &TestEnv, args: &[&str]) -> String {
        let out = self.ctl(env, args);
        assert!(
            out.ok(),
            "sitecast ctl {args:?} failed ({:?}):\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Upload `file` as `path`; returns the Artifact JSON.
    pub fn upload(&self, env: &TestEnv, file: &Path, path: &str) -> Value {
        let f = file.to_str().expect("utf-8 path");
        let out = ctl_raw(
            env,
            &self.url(),
            &self.token,
            &["--output", "json", "artifact", "upload", f, path],
            Duration::from_secs(180),
        );
        assert!(
            out.ok(),
            "artifact upload {path} failed ({:?}):\n{}",
            out.code,
            out.stderr
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("upload output not JSON ({e}): {}", out.stdout))
    }

    /// Create a site; returns its join token.
    pub fn create_site(&self, env: &TestEnv, name: &str, extra: &[&str]) -> String {
        let mut a = vec!["site", "create", name];
        a.extend_from_slice(extra);
        let v = self.ctl_json(env, &a);
        v["join_token"]
            .as_str()
            .unwrap_or_else(|| panic!("site create: no join_token in {v}"))
            .to_owned()
    }

    /// `ctl push create`; returns the push id as text.
    pub fn push(&self, env: &TestEnv, args: &[&str]) -> String {
        let mut a = vec!["push", "create"];
        a.extend_from_slice(args);
        let v = self.ctl_json(env, &a);
        id_text(&v["id"])
    }

    /// `ctl push wait ID --timeout N` (long-polls); the CmdOutput so callers can expect failure.
    pub fn push_wait(&self, env: &TestEnv, id: &str, secs: u64) -> CmdOutput {
        let secs = secs.min(env.left().as_secs().max(1));
        ctl_raw(
            env,
            &self.url(),
            &self.token,
            &[
                "--output",
                "json",
                "push",
                "wait",
                id,
                "--timeout",
                &secs.to_string(),
            ],
            Duration::from_secs(secs + 30),
        )
    }

    /// `ctl push wait` that must succeed; returns the final Push JSON.
    pub fn push_wait_ok(&self, env: &TestEnv, id: &str, secs: u64) -> Value {
        let out = self.push_wait(env, id, secs);
        assert!(
            out.ok(),
            "push wait {id} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.code,
            out.stdout,
            out.stderr
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("push wait output not JSON ({e}): {}", out.stdout))
    }

    /// `ctl push show ID --output json`.
    pub fn push_show(&self, env: &TestEnv, id: &str) -> Value {
        self.ctl_json(env, &["push", "show", id])
    }

    /// `GET /api/v1/pushes/{id}?wait_ms=N`: answers as soon as anything in the push changes,
    /// else after `wait_ms` (the REST long poll).
    pub fn push_long_poll(&self, env: &TestEnv, id: &str, wait_ms: u64) -> Value {
        let r = curl(
            env,
            &[
                "-H",
                &format!("Authorization: Bearer {}", self.token),
                &format!("{}/api/v1/pushes/{id}?wait_ms={wait_ms}", self.url()),
            ],
        );
        assert_eq!(r.status, 200, "GET push {id}: {}", r.text());
        r.json()
    }

    /// Wait (long polls, under `timeout` and the test deadline) until `pred(push)` holds.
    pub fn wait_push_until(
        &self,
        env: &TestEnv,
        id: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + env.cap(timeout);
        let mut v = self.push_show(env, id);
        loop {
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < until,
                "push {id}: gave up waiting for {what}; last state:\n{v:#}"
            );
            v = self.push_long_poll(env, id, 200);
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self, env: &TestEnv) -> ExitStatus {
        let mut p = self.proc.take().expect("origin running");
        p.signal("TERM");
        p.wait_exit(env, EXIT_TIMEOUT)
    }

    /// Start again on the same data dir and QUIC address (edges know it). The old API and
    /// registry ports are tried first; a parallel test may have taken one since the kill
    /// (their port-0 binds draw from the same range), so later attempts let the kernel choose
    /// those two, and retry the QUIC port a few times in case it is taken for a moment.
    pub fn restart(&mut self, env: &TestEnv) {
        self.kill();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut last = String::new();
        for attempt in 0..10 {
            let (api, registry) = if attempt == 0 {
                (self.api, self.registry)
            } else {
                (any, any)
            };
            let config = self.config.clone();
            match Self::try_start_args(
                env,
                &self.dir.clone(),
                api,
                self.quic,
                registry,
                config.as_deref(),
            ) {
                Ok(new) => {
                    *self = new;
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the origin did not restart on {}: {last}", self.quic);
    }

    /// The origin process's PID (while it runs).
    pub fn pid(&self) -> u32 {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .expect("origin running")
    }

    /// This origin's stderr log.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

fn parse_addr(ready: &Value, key: &str) -> SocketAddr {
    ready[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ready line has no usable {key:?}: {ready}"))
}

fn opt_addr(ready: &Value, key: &str) -> Option<SocketAddr> {
    ready[key].as_str().and_then(|s| s.parse().ok())
}

/// An id value as text (ids may be JSON numbers or strings).
pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => panic!("missing id"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Edge
// ---------------------------------------------------------------------------------------------

/// A `sitecast edge` process.
pub struct Edge {
    /// Its data dir.
    pub dir: PathBuf,
    /// HTTP address for devices.
    pub http: SocketAddr,
    /// Metrics address.
    pub metrics: SocketAddr,
    /// Node name.
    pub node: String,
    /// FTP address, when the edge serves FTP.
    pub ftp: Option<SocketAddr>,
    /// SFTP address, when the edge serves SFTP.
    pub sftp: Option<SocketAddr>,
    /// OCI registry mirror address, when the edge serves it.
    pub oci: Option<SocketAddr>,
    args: Vec<OsString>,
    name: String,
    proc: Option<Proc>,
    log: PathBuf,
}

impl Edge {
    /// Start an edge (`--node NAME` and `--config FILE` may be among `extra`; default node
    /// `edge-1`) on `data_dir`, dialing `origin`, enrolling with `join_token` if given.
    pub fn start(
        env: &TestEnv,
        origin: SocketAddr,
        join_token: Option<&str>,
        data_dir: &Path,
        extra: &[&str],
    ) -> Self {
        let mut args: Vec<OsString> = vec![
            "edge".into(),
            "--data-dir".into(),
            data_dir.into(),
            "--origin".into(),
            origin.to_string().into(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            // FTP and SFTP default to fixed ports; parallel tests must not share them.
            "--ftp-listen".into(),
            "127.0.0.1:0".into(),
            "--sftp-listen".into(),
            "127.0.0.1:0".into(),
            "--oci-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if let Some(t) = join_token {
            args.push("--join-token".into());
            args.push(t.into());
        }
        if !extra.contains(&"--node") {
            args.push("--node".into());
            args.push("edge-1".into());
        }
        args.extend(extra.iter().map(OsString::from));
        let name = format!(
            "edge-{}",
            data_dir
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("edge")
        );
        let log = env.path(&format!("{name}.log"));
        let (proc, ready) = Proc::start(env, &name, &args, &log);
        Self {
            dir: data_dir.to_owned(),
            http: parse_addr(&ready, "http"),
            metrics: parse_addr(&ready, "metrics"),
            node: ready["node"].as_str().unwrap_or_default().to_owned(),
            ftp: opt_addr(&ready, "ftp"),
            sftp: opt_addr(&ready, "sftp"),
            oci: opt_addr(&ready, "oci"),
            args,
            name,
            proc: Some(proc),
            log,
        }
    }

    /// `http://<http><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self, env: &TestEnv) -> ExitStatus {
        let mut p = self.proc.take().expect("edge running");
        p.signal("TERM");
        p.wait_exit(env, EXIT_TIMEOUT)
    }

    /// Start again with the same arguments on the same data dir (new local ports).
    pub fn restart(&mut self, env: &TestEnv) {
        self.kill();
        let (proc, ready) = Proc::start(env, &self.name, &self.args, &self.log);
        self.http = parse_addr(&ready, "http");
        self.metrics = parse_addr(&ready, "metrics");
        self.ftp = opt_addr(&ready, "ftp");
        self.sftp = opt_addr(&ready, "sftp");
        self.oci = opt_addr(&ready, "oci");
        self.proc = Some(proc);
    }

    /// This edge's stderr log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The edge process's PID (while it runs).
    pub fn pid(&self) -> u32 {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .expect("edge running")
    }
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// An HTTP answer as seen by curl.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers of the final response, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (empty when written to a file).
    pub body: Vec<u8>,
}

impl Resp {
    /// First header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// `curl -sS ARGS` with the body kept in memory (small answers).
pub fn curl(env: &TestEnv, args: &[&str]) -> Resp {
    let body = env.scratch("body");
    let mut r = curl_to_file(env, args, &body);
    r.body = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    r
}

/// `curl -sS ARGS -o OUT`; headers parsed from `-D -`.
pub fn curl_to_file(env: &TestEnv, args: &[&str], out: &Path) -> Resp {
    let max = env.cap(CMD_TIMEOUT).as_secs().max(1).to_string();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", &max, "-D", "-", "-o"])
        .arg(out)
        .args(args);
    let o = run_cmd(env, cmd, CMD_TIMEOUT + Duration::from_secs(5));
    assert!(o.ok(), "curl {args:?} failed ({:?}): {}", o.code, o.stderr);
    parse_head(&o.stdout).unwrap_or_else(|| {
        panic!(
            "curl {args:?}: cannot parse the response head:\n{}",
            o.stdout
        )
    })
}

/// Parse the last header block that `curl -D -` printed (skipping 1xx blocks).
fn parse_head(text: &str) -> Option<Resp> {
    let mut last = None;
    for block in text.split("\r\n\r\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let status_line = lines.next()?;
        let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        last = Some(Resp {
            status,
            headers,
            body: Vec::new(),
        });
    }
    last
}

/// `-u user:pass` arguments, or none.
pub fn creds(user: Option<(&str, &str)>) -> Vec<String> {
    match user {
        Some((u, p)) => vec!["-u".into(), format!("{u}:{p}")],
        None => Vec::new(),
    }
}

/// Poll `f` until it holds (an event the test cannot await otherwise), for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
