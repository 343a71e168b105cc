//! The SSH host key: an Ed25519 key created once in `<data_dir>/identity/ssh_host_ed25519_key`
//! (OpenSSH private key format, mode 0600, written to a temporary file, synced and renamed so
//! a crash never leaves a half-written key), then loaded on every start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

use crate::error::Error;

/// Where the host key of an edge with data directory `data_dir` lives.
#[must_use]
pub fn host_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity").join("ssh_host_ed25519_key")
}

/// Load the host key, creating it first if there is none.
pub(crate) fn load_or_create(data_dir: &Path) -> Result<PrivateKey, Error> {
    let path = host_key_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| Error::Tls(format!("ssh host key {}: {e}", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &path, e)),
    }
    let dir = path.parent().unwrap_or(data_dir);
    sitecast_runtime::datadir::create_private_dir(dir).map_err(|e| Error::io("create", dir, e))?;
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::Tls(format!("encoding the ssh host key: {e}")))?;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    tracing::info!(path = %path.display(), fingerprint = %key.public_key().fingerprint(Default::default()), "created the ssh host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(host_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(host_key_path(dir.path()), "garbage").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
