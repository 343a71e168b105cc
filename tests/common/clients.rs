//! The device clients of the README against a running `sitecast edge`: busybox `ftpget` and
//! OpenSSH `sftp` (password through `sshpass`), plus a wait for the edge's own view of its
//! session (from its metrics). Installed by scripts/install-test-deps.sh.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{curl, prom_sum, run_cmd, CmdOutput, Edge, TestEnv};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `busybox ftpget` of `remote` into `local` as `user` (`None`: anonymous).
pub fn ftpget(
    env: &TestEnv,
    edge: &Edge,
    user: Option<(&str, &str)>,
    remote: &str,
    local: &Path,
) -> CmdOutput {
    ftpget_at(
        env,
        edge.ftp.expect("the edge serves FTP"),
        user,
        remote,
        local,
    )
}

/// [`ftpget`] from the FTP server at `addr`.
pub fn ftpget_at(
    env: &TestEnv,
    addr: SocketAddr,
    user: Option<(&str, &str)>,
    remote: &str,
    local: &Path,
) -> CmdOutput {
    let (u, p) = user.unwrap_or(("anonymous", "device@example"));
    let mut c = Command::new("busybox");
    c.args(["ftpget", "-u", u, "-p", p, "-P", &addr.port().to_string()])
        .arg(addr.ip().to_string())
        .arg(local)
        .arg(remote);
    run_cmd(env, c, CLIENT_TIMEOUT)
}

/// OpenSSH `sftp -b` running `batch` as `user` with a password (`None`: `anonymous`, no
/// credentials); the working directory is `cwd`.
pub fn sftp_batch(
    env: &TestEnv,
    edge: &Edge,
    user: Option<(&str, &str)>,
    batch: &str,
    cwd: &Path,
) -> CmdOutput {
    sftp_batch_at(
        env,
        edge.sftp.expect("the edge serves SFTP"),
        user,
        batch,
        cwd,
    )
}

/// [`sftp_batch`] against the SFTP server at `addr`.
pub fn sftp_batch_at(
    env: &TestEnv,
    addr: SocketAddr,
    user: Option<(&str, &str)>,
    batch: &str,
    cwd: &Path,
) -> CmdOutput {
    let file = env.scratch("sftp-batch");
    std::fs::write(&file, batch).expect("writing the sftp batch file");
    let opts = [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "PubkeyAuthentication=no",
    ];
    let mut c = match user {
        Some((_, p)) => {
            let mut c = Command::new("sshpass");
            c.args(["-p", p, "sftp", "-o", "BatchMode=no"]);
            c
        }
        None => {
            let mut c = Command::new("sftp");
            c.args(["-o", "BatchMode=yes"]);
            c
        }
    };
    let name = user.map_or("anonymous", |(u, _)| u);
    c.args(opts)
        .args(["-P", &addr.port().to_string(), "-b"])
        .arg(&file)
        .arg(format!("{name}@{}", addr.ip()))
        .current_dir(cwd);
    run_cmd(env, c, CLIENT_TIMEOUT)
}

/// OpenSSH `sftp` download of `remote` into `local` (see [`sftp_batch`]).
pub fn sftp_get(
    env: &TestEnv,
    edge: &Edge,
    user: Option<(&str, &str)>,
    remote: &str,
    local: &Path,
) -> CmdOutput {
    sftp_get_at(
        env,
        edge.sftp.expect("the edge serves SFTP"),
        user,
        remote,
        local,
    )
}

/// [`sftp_get`] from the SFTP server at `addr`.
pub fn sftp_get_at(
    env: &TestEnv,
    addr: SocketAddr,
    user: Option<(&str, &str)>,
    remote: &str,
    local: &Path,
) -> CmdOutput {
    let dir = local.parent().expect("a file path");
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    sftp_batch_at(env, addr, user, &format!("get {remote} {name}\n"), dir)
}

/// Wait until the edge's metric `name` (summed over `labels`) satisfies `ok`, within `limit`.
fn wait_metric(
    env: &TestEnv,
    edge: &Edge,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    limit: Duration,
    ok: impl Fn(f64) -> bool,
) {
    let until = Instant::now() + env.cap(limit);
    loop {
        let text = curl(env, &[&format!("http://{}/metrics", edge.metrics)]).text();
        if ok(prom_sum(&text, name, labels).unwrap_or(0.0)) {
            return;
        }
        assert!(
            Instant::now() < until,
            "the edge's {name} never showed {what} within {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the edge's metrics count at least `n` failed or ended sessions with the origin
/// (after a restart without the origin: its first connect attempt has failed).
pub fn wait_session_failures(env: &TestEnv, edge: &Edge, n: u64, limit: Duration) {
    let what = format!("{n} failed origin sessions");
    let name = "sitecast_edge_origin_session_failures_total";
    wait_metric(env, edge, name, &[], &what, limit, |v| v >= n as f64);
}

/// Wait until the edge's metrics say its session with the origin is `state`
/// (`connected`, `connecting`, …), within `limit`.
pub fn wait_session_state(env: &TestEnv, edge: &Edge, state: &str, limit: Duration) {
    let (name, labels) = ("sitecast_edge_session_state", [("state", state)]);
    wait_metric(
        env,
        edge,
        name,
        &labels,
        &format!("state {state:?}"),
        limit,
        |v| v == 1.0,
    );
}
