//! A tmpfs for one test (root only), and the visible skip of a test that cannot run here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{run_cmd, TestEnv};

/// A tmpfs mounted on a directory; unmounted on drop.
pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `40m`) on `dir`. Err with a reason when not possible
    /// (not root, no permission in this container).
    pub fn mount(env: &TestEnv, dir: &Path, size: &str) -> Result<Self, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir);
        let o = run_cmd(env, cmd, Duration::from_secs(20));
        if !o.ok() {
            return Err(format!("mount -t tmpfs failed: {}", o.stderr.trim()));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// `mount -o remount,size=SIZE`.
    pub fn resize(&self, env: &TestEnv, size: &str) {
        let mut cmd = Command::new("mount");
        cmd.args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir);
        let o = run_cmd(env, cmd, Duration::from_secs(20));
        assert!(
            o.ok(),
            "remount {} size={size} failed: {}",
            self.dir.display(),
            o.stderr
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Processes using it are dropped (killed) before this in the tests; lazy unmount
        // anyway so a leftover never blocks the temp dir's removal.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A test that cannot run here says so in its output and passes, except under CI (`CI` set),
/// which runs as root and can mount: there a skip is a failure.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run under CI: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

/// Effective uid 0 (read from /proc, no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
