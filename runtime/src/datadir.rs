//! A server's data directory: private (0700) and held by one process at a time.
//!
//! [`DataDirLock::acquire`] creates the directory if needed, makes it 0700 and takes an
//! exclusive `flock(2)` on `<dir>/lock`, which holds the holder's PID and role. A second
//! process on the same directory fails at once with an error naming the holder, instead of
//! serving beside it and racing on the database and chunk files. The lock goes with the
//! process (also when it is killed), so a stale lock file never blocks a restart.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Size and free space of the file system holding `path`, in bytes: (total, available to
/// unprivileged writers), from `statvfs(3)`.
///
/// # Errors
/// The `statvfs` error (e.g. the path does not exist).
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let v = rustix::fs::statvfs(path)?;
    Ok((
        v.f_blocks.saturating_mul(v.f_frsize),
        v.f_bavail.saturating_mul(v.f_frsize),
    ))
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the directory.
    #[error("data dir {dir} is in use by another process ({holder}); stop it or choose another --data-dir")]
    Held {
        /// The directory.
        dir: PathBuf,
        /// What the lock file says about the holder (`pid 1234, sitecast edge`).
        holder: String,
    },
    /// Creating, opening or locking failed.
    #[error("data dir {dir}: {op}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Create `dir` and its missing parents with mode 0700, and tighten `dir` to 0700 if it exists
/// wider: for directories holding keys, tokens and databases.
///
/// # Errors
/// The OS error of creating or changing it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    make_private(dir, 0o700)
}

/// Take group and other permission bits off `path` (leaving it `mode`) if it has any; a
/// missing `path` is left missing.
///
/// # Errors
/// The OS error of reading or changing its mode.
pub fn make_private(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, Permissions::from_mode(mode))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The held lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    dir: PathBuf,
}

impl DataDirLock {
    /// Create `dir` (0700) if missing, tighten it to 0700 if it is wider, and lock it for
    /// this process, recording `role` (e.g. `sitecast edge`) beside the PID.
    ///
    /// # Errors
    /// [`LockError::Held`] if another process holds it; [`LockError::Io`] otherwise.
    pub fn acquire(dir: &Path, role: &str) -> Result<Self, LockError> {
        let io = |op, source| LockError::Io {
            dir: dir.to_owned(),
            op,
            source,
        };
        create_private_dir(dir).map_err(|e| io("create (0700)", e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(|e| io("open lock file", e))?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.split_whitespace().collect::<Vec<_>>();
                let holder = match holder.split_first() {
                    Some((pid, role)) => format!("pid {pid}, {}", role.join(" ")),
                    None => "unknown process".to_owned(),
                };
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            return Err(io("lock", e.into()));
        }
        file.set_len(0).map_err(|e| io("write lock file", e))?;
        file.rewind().map_err(|e| io("write lock file", e))?;
        writeln!(file, "{} {role}", std::process::id()).map_err(|e| io("write lock file", e))?;
        Ok(Self {
            _file: file,
            dir: dir.to_owned(),
        })
    }

    /// The locked directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named_until_the_first_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let first = DataDirLock::acquire(&dir, "sitecast edge").unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let e = DataDirLock::acquire(&dir, "sitecast edge").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("pid {}, sitecast edge", std::process::id())),
            "{text}"
        );
        assert!(matches!(e, LockError::Held { .. }));
        drop(first);
        let again = DataDirLock::acquire(&dir, "sitecast origin").unwrap();
        assert_eq!(again.dir(), dir);
    }

    #[test]
    fn a_wide_directory_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), Permissions::from_mode(0o755)).unwrap();
        let _l = DataDirLock::acquire(tmp.path(), "t").unwrap();
        assert_eq!(
            std::fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
