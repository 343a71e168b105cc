//! Checking a [`DiskChunkStore`] on disk, for `sitecast origin verify` and `sitecast edge
//! verify` (run while no server holds the data directory).
//!
//! [`DiskChunkStore::audit`] reads every file of the store once and sorts it into: chunks whose
//! content hashes (BLAKE3) to their name, files named like a chunk whose content does not
//! (bit rot, a rename, a write that bypassed the store), temporary files an interrupted write
//! left behind, and anything else in the fan-out directories. It changes nothing;
//! [`DiskChunkStore::discard`] removes what a repair decides to remove.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use sitecast_protocol::ChunkId;

use super::{io_err, DiskChunkStore, DiskOptions, StoreError, TMP_SUFFIX};

/// What [`DiskChunkStore::audit`] found.
#[derive(Debug, Default)]
pub struct StoreAudit {
    /// Chunks whose content hashes to their name, with their length in bytes.
    pub chunks: HashMap<ChunkId, u64>,
    /// Files named like a chunk whose content hashes to something else: (name, path).
    pub corrupt: Vec<(ChunkId, PathBuf)>,
    /// Temporary files of writes that never finished.
    pub temp_files: Vec<PathBuf>,
    /// Files in the fan-out directories that are neither chunks nor temporary files.
    pub strays: Vec<PathBuf>,
    /// Bytes read and hashed.
    pub bytes_read: u64,
}

impl DiskChunkStore {
    /// Open an existing store for inspection: unlike [`DiskChunkStore::open`], nothing is
    /// created and no temporary file is removed.
    ///
    /// # Errors
    /// The directory does not exist or is not a directory.
    pub fn open_existing(dir: impl Into<PathBuf>, opts: DiskOptions) -> Result<Self, StoreError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(Self { dir, opts }),
            Ok(_) => Err(io_err(
                "open store",
                &dir,
                io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            )),
            Err(e) => Err(io_err("open store", &dir, e)),
        }
    }

    /// Read every file of the store and sort it (see the module docs). Blocking; reads the
    /// whole store once.
    ///
    /// # Errors
    /// A directory or file that cannot be read.
    pub fn audit(&self) -> Result<StoreAudit, StoreError> {
        let mut out = StoreAudit::default();
        for fan in self.fan_dirs()? {
            let prefix = fan
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            for entry in fs::read_dir(&fan).map_err(|e| io_err("read", &fan, e))? {
                let entry = entry.map_err(|e| io_err("read", &fan, e))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(TMP_SUFFIX) {
                    out.temp_files.push(path);
                    continue;
                }
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                let id: Option<ChunkId> = format!("{prefix}{name}").parse().ok();
                // Only the canonical spelling is a chunk: `get` would never find another.
                let id = id.filter(|id| is_file && self.path(id) == path);
                let Some(id) = id else {
                    out.strays.push(path);
                    continue;
                };
                let mut data = Vec::new();
                File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut data))
                    .map_err(|e| io_err("read", &path, e))?;
                out.bytes_read += data.len() as u64;
                if id.matches(&data) {
                    out.chunks.insert(id, data.len() as u64);
                } else {
                    out.corrupt.push((id, path));
                }
            }
        }
        Ok(out)
    }

    /// Remove one file the audit reported (a corrupt chunk, a temporary or stray file).
    /// Refuses paths outside the store's fan-out directories.
    ///
    /// # Errors
    /// A path outside the store, or the removal failing (an absent file is not an error).
    pub fn discard(&self, path: &Path) -> Result<(), StoreError> {
        let inside = path
            .parent()
            .and_then(Path::parent)
            .is_some_and(|d| d == self.dir);
        if !inside {
            return Err(io_err(
                "discard",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not inside the chunk store"),
            ));
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ChunkStore as _;
    use super::*;

    #[test]
    fn audit_sorts_chunks_corruption_renames_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskChunkStore::open(dir.path(), DiskOptions::default()).unwrap();
        let (a, b, c) = (
            b"alpha".as_slice(),
            b"bravo".as_slice(),
            b"charlie".as_slice(),
        );
        let (ida, idb, idc) = (ChunkId::of(a), ChunkId::of(b), ChunkId::of(c));
        for (id, d) in [(ida, a), (idb, b), (idc, c)] {
            s.put(&id, d).unwrap();
        }
        // b rots; c is renamed to the name of a chunk it is not; a stray and a leftover.
        fs::write(s.path(&idb), b"brav0").unwrap();
        let other = ChunkId::of(b"delta");
        fs::create_dir_all(s.path(&other).parent().unwrap()).unwrap();
        fs::rename(s.path(&idc), s.path(&other)).unwrap();
        let tmp = s.path(&ida).with_extension("1234.tmp");
        fs::write(&tmp, b"half").unwrap();
        let stray = s.path(&ida).with_extension("bak");
        fs::write(&stray, b"?").unwrap();

        let s = DiskChunkStore::open_existing(dir.path(), DiskOptions::default()).unwrap();
        let audit = s.audit().unwrap();
        assert_eq!(audit.chunks, HashMap::from([(ida, 5)]));
        let mut corrupt: Vec<ChunkId> = audit.corrupt.iter().map(|(id, _)| *id).collect();
        corrupt.sort_unstable();
        let mut want = vec![idb, other];
        want.sort_unstable();
        assert_eq!(corrupt, want);
        assert_eq!(audit.temp_files, vec![tmp.clone()]);
        assert_eq!(audit.strays, vec![stray.clone()]);

        for p in audit
            .corrupt
            .iter()
            .map(|(_, p)| p)
            .chain(&audit.temp_files)
            .chain(&audit.strays)
        {
            s.discard(p).unwrap();
        }
        assert!(s.discard(dir.path()).is_err(), "outside the fan-out dirs");
        let again = s.audit().unwrap();
        assert_eq!(again.chunks.len(), 1);
        assert!(again.corrupt.is_empty() && again.temp_files.is_empty() && again.strays.is_empty());
        assert!(
            DiskChunkStore::open_existing(dir.path().join("nope"), DiskOptions::default()).is_err()
        );
    }
}
