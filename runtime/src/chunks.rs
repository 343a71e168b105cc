//! The content-addressed chunk store.
//!
//! Contract, for every implementation:
//! - `put` checks the bytes against the id before storing anything (a wrong digest never gets
//!   a name), and is idempotent (`Ok(false)` when the chunk was already there);
//! - `get` returns the bytes only if they still hash to the id; a chunk found corrupt is removed
//!   and reported as [`StoreError::Corrupt`], so it is fetched again rather than served;
//! - on disk, a chunk appears under its name only complete and synced: written to a temporary
//!   file in the same directory, `fsync`ed, renamed, and the directory synced (a fan-out
//!   directory created for it is synced into the store directory first). A crash leaves at
//!   worst a stray temporary file, which [`DiskChunkStore::open`] removes. `put_many` keeps
//!   the same guarantee for a batch with two `syncfs` calls (data, then renames) in place of
//!   two `fsync`s per chunk;
//! - `put_many` checks every chunk before storing any.
//!
//! All methods block: call them from `tokio::task::spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use sitecast_protocol::ChunkId;

mod audit;
pub use audit::StoreAudit;

/// What went wrong in a chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The chunk is not in the store.
    #[error("chunk {0} not found")]
    NotFound(ChunkId),
    /// Bytes offered for a chunk do not hash to its id.
    #[error("bytes offered for chunk {0} do not match its id")]
    Mismatch(ChunkId),
    /// The stored bytes no longer match the id (bit rot, tampering); the chunk was removed.
    #[error("stored chunk {0} is corrupt and was removed")]
    Corrupt(ChunkId),
    /// The file system is full (or over quota).
    #[error("no space left on device while storing chunk {id} in {}", dir.display())]
    NoSpace {
        /// The chunk being written.
        id: ChunkId,
        /// The store directory.
        dir: PathBuf,
    },
    /// Any other I/O failure.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl StoreError {
    /// Whether the failure is the disk being full (or over quota).
    #[must_use]
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace { .. })
    }

    /// Whether trying again later may succeed (full disk, transient I/O) as opposed to a
    /// failure of the data itself.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::NoSpace { .. } | StoreError::Io { .. })
    }
}

/// A content-addressed store of chunks (see the module docs for the contract).
pub trait ChunkStore: Send + Sync + 'static {
    /// Whether the chunk is present (not verified).
    ///
    /// # Errors
    /// I/O failures.
    fn has(&self, id: &ChunkId) -> Result<bool, StoreError>;
    /// The chunk's bytes, verified against its id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], I/O failures.
    fn get(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError>;
    /// Store a chunk after checking it; `Ok(false)` if it was already present.
    ///
    /// # Errors
    /// [`StoreError::Mismatch`], [`StoreError::NoSpace`], I/O failures.
    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<bool, StoreError>;
    /// Store several chunks, each checked first (a mismatch stores none of them); one `bool`
    /// per chunk as for [`ChunkStore::put`]. A store may make the batch durable at once
    /// rather than chunk by chunk; when it returns, every chunk is as durable as after `put`.
    ///
    /// # Errors
    /// As [`ChunkStore::put`]. After an error some chunks of the batch may be stored (each
    /// whole and verified), none half-written.
    fn put_many(&self, chunks: &[(ChunkId, &[u8])]) -> Result<Vec<bool>, StoreError> {
        if let Some((id, _)) = chunks.iter().find(|(id, d)| !id.matches(d)) {
            return Err(StoreError::Mismatch(*id));
        }
        chunks.iter().map(|(id, d)| self.put(id, d)).collect()
    }
    /// Remove a chunk; removing an absent chunk is not an error.
    ///
    /// # Errors
    /// I/O failures.
    fn remove(&self, id: &ChunkId) -> Result<(), StoreError>;
    /// Every chunk id in the store.
    ///
    /// # Errors
    /// I/O failures.
    fn list(&self) -> Result<Vec<ChunkId>, StoreError>;
    /// Sum of the stored chunks' lengths.
    ///
    /// # Errors
    /// I/O failures.
    fn total_bytes(&self) -> Result<u64, StoreError>;
}

/// Options of a [`DiskChunkStore`].
#[derive(Debug, Clone, Copy)]
pub struct DiskOptions {
    /// `fsync` each chunk and its directory before it is visible (default true). Turning it off
    /// is only for throwaway stores.
    pub fsync: bool,
    /// Verify bytes against the id on every read (default true).
    pub verify_reads: bool,
}

impl Default for DiskOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            verify_reads: true,
        }
    }
}

/// Chunks as files `<dir>/<2 hex>/<62 hex>`.
pub struct DiskChunkStore {
    dir: PathBuf,
    opts: DiskOptions,
}

const TMP_SUFFIX: &str = ".tmp";

impl DiskChunkStore {
    /// Open (creating) a store in `dir`, removing temporary files a crash left behind.
    ///
    /// # Errors
    /// The directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, opts: DiskOptions) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| io_err("create", &dir, source))?;
        let store = Self { dir, opts };
        for fan in store.fan_dirs()? {
            for entry in fs::read_dir(&fan).map_err(|e| io_err("read", &fan, e))? {
                let entry = entry.map_err(|e| io_err("read", &fan, e))?;
                if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                    let p = entry.path();
                    tracing::info!(path = %p.display(), "removing temporary file left by a crash");
                    fs::remove_file(&p).map_err(|e| io_err("remove", &p, e))?;
                }
            }
        }
        Ok(store)
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn fan_dirs(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_err("read", &self.dir, e))? {
            let entry = entry.map_err(|e| io_err("read", &self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    /// A write error as [`StoreError::NoSpace`] when the disk (or quota) is full.
    fn nospace(&self, id: &ChunkId, e: io::Error, op: &'static str, p: &Path) -> StoreError {
        if e.raw_os_error() == Some(28) || e.raw_os_error() == Some(122) {
            StoreError::NoSpace {
                id: *id,
                dir: self.dir.clone(),
            }
        } else {
            io_err(op, p, e)
        }
    }

    /// Write `data` to a new temporary file beside `path` (not synced); returns its path.
    /// Nothing is left behind on failure.
    fn write_tmp(&self, id: &ChunkId, data: &[u8], path: &Path) -> Result<PathBuf, StoreError> {
        let fan = path.parent().expect("chunk path has a fan-out parent");
        if !fan.is_dir() {
            fs::create_dir_all(fan).map_err(|e| self.nospace(id, e, "create", fan))?;
            // A new fan-out directory's own entry must be durable before any chunk in it is
            // (the chunk's rename is made durable by syncing the fan-out directory only).
            if self.opts.fsync {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| self.nospace(id, e, "sync", &self.dir))?;
            }
        }
        let tmp = fan.join(format!(
            "{}.{:016x}{TMP_SUFFIX}",
            &id.to_hex()[2..],
            rand::random::<u64>()
        ));
        let written = File::create(&tmp)
            .map_err(|e| self.nospace(id, e, "create", &tmp))
            .and_then(|mut f| {
                f.write_all(data)
                    .map_err(|e| self.nospace(id, e, "write", &tmp))
            });
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Flush the whole filesystem holding the store (`syncfs(2)`).
    fn syncfs(&self, id: &ChunkId) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).map_err(|e| io_err("open", &self.dir, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| self.nospace(id, e.into(), "sync", &self.dir))
    }

    fn write_new(&self, id: &ChunkId, data: &[u8], path: &Path) -> Result<(), StoreError> {
        let fan = path.parent().expect("chunk path has a fan-out parent");
        let tmp = self.write_tmp(id, data, path)?;
        let result = (|| {
            if self.opts.fsync {
                File::open(&tmp)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| self.nospace(id, e, "sync", &tmp))?;
            }
            fs::rename(&tmp, path).map_err(|e| self.nospace(id, e, "rename", &tmp))?;
            if self.opts.fsync {
                File::open(fan)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| self.nospace(id, e, "sync", fan))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl ChunkStore for DiskChunkStore {
    fn has(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let p = self.path(id);
        match fs::metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("stat", &p, e)),
        }
    }

    fn get(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let p = self.path(id);
        let mut data = Vec::new();
        match File::open(&p) {
            Ok(mut f) => {
                f.read_to_end(&mut data)
                    .map_err(|e| io_err("read", &p, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(*id)),
            Err(e) => return Err(io_err("open", &p, e)),
        }
        if self.opts.verify_reads && !id.matches(&data) {
            tracing::error!(chunk = %id, path = %p.display(), "stored chunk is corrupt; removing it");
            let _ = fs::remove_file(&p);
            return Err(StoreError::Corrupt(*id));
        }
        Ok(data)
    }

    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<bool, StoreError> {
        if !id.matches(data) {
            return Err(StoreError::Mismatch(*id));
        }
        let p = self.path(id);
        if self.has(id)? {
            return Ok(false);
        }
        self.write_new(id, data, &p)?;
        Ok(true)
    }

    /// Writes every new chunk to its temporary file, makes them durable with one `syncfs(2)`,
    /// renames them into place, and makes the renames durable with a second `syncfs`: two
    /// flushes per batch instead of two `fsync`s per chunk (about 0.6 ms each on a virtio
    /// disk, which capped ingest near 110 MB/s).
    fn put_many(&self, chunks: &[(ChunkId, &[u8])]) -> Result<Vec<bool>, StoreError> {
        if let Some((id, _)) = chunks.iter().find(|(id, d)| !id.matches(d)) {
            return Err(StoreError::Mismatch(*id));
        }
        if !self.opts.fsync {
            // Checked above: store without hashing each chunk again.
            return chunks
                .iter()
                .map(|(id, d)| {
                    let path = self.path(id);
                    if self.has(id)? {
                        return Ok(false);
                    }
                    self.write_new(id, d, &path)?;
                    Ok(true)
                })
                .collect();
        }
        let mut fresh = vec![false; chunks.len()];
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let result = (|| {
            for (i, (id, data)) in chunks.iter().enumerate() {
                let path = self.path(id);
                if self.has(id)? || staged.iter().any(|(_, p)| *p == path) {
                    continue;
                }
                let tmp = self.write_tmp(id, data, &path)?;
                staged.push((tmp, path));
                fresh[i] = true;
            }
            if staged.is_empty() {
                return Ok(());
            }
            self.syncfs(&chunks[0].0)?;
            while let Some((tmp, path)) = staged.pop() {
                if let Err(e) = fs::rename(&tmp, &path) {
                    staged.push((tmp.clone(), path));
                    return Err(self.nospace(&chunks[0].0, e, "rename", &tmp));
                }
            }
            self.syncfs(&chunks[0].0)
        })();
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
        result.map(|()| fresh)
    }

    fn remove(&self, id: &ChunkId) -> Result<(), StoreError> {
        let p = self.path(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &p, e)),
        }
    }

    fn list(&self) -> Result<Vec<ChunkId>, StoreError> {
        let mut out = Vec::new();
        for fan in self.fan_dirs()? {
            let prefix = fan
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for entry in fs::read_dir(&fan).map_err(|e| io_err("read", &fan, e))? {
                let entry = entry.map_err(|e| io_err("read", &fan, e))?;
                let name = entry.file_name();
                if let Ok(id) = format!("{prefix}{}", name.to_string_lossy()).parse() {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    fn total_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for id in self.list()? {
            let p = self.path(&id);
            match fs::metadata(&p) {
                Ok(m) => total += m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("stat", &p, e)),
            }
        }
        Ok(total)
    }
}

/// An in-memory store, for tests and throwaway use.
#[derive(Default)]
pub struct MemChunkStore {
    chunks: RwLock<HashMap<ChunkId, Vec<u8>>>,
}

impl MemChunkStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Overwrite a stored chunk's bytes without checking (to test corruption handling).
    pub fn corrupt(&self, id: &ChunkId, data: Vec<u8>) {
        self.chunks
            .write()
            .expect("chunk map lock")
            .insert(*id, data);
    }
}

impl ChunkStore for MemChunkStore {
    fn has(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(self.chunks.read().expect("chunk map lock").contains_key(id))
    }

    fn get(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let mut map = self.chunks.write().expect("chunk map lock");
        let data = map.get(id).ok_or(StoreError::NotFound(*id))?;
        if !id.matches(data) {
            map.remove(id);
            return Err(StoreError::Corrupt(*id));
        }
        Ok(data.clone())
    }

    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<bool, StoreError> {
        if !id.matches(data) {
            return Err(StoreError::Mismatch(*id));
        }
        let mut map = self.chunks.write().expect("chunk map lock");
        if map.contains_key(id) {
            return Ok(false);
        }
        map.insert(*id, data.to_vec());
        Ok(true)
    }

    fn remove(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.chunks.write().expect("chunk map lock").remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<ChunkId>, StoreError> {
        Ok(self
            .chunks
            .read()
            .expect("chunk map lock")
            .keys()
            .copied()
            .collect())
    }

    fn total_bytes(&self) -> Result<u64, StoreError> {
        Ok(self
            .chunks
            .read()
            .expect("chunk map lock")
            .values()
            .map(|v| v.len() as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance suite every implementation must pass.
    fn conformance(store: &dyn ChunkStore, corrupt: &dyn Fn(&ChunkId, Vec<u8>)) {
        let a = b"alpha".to_vec();
        let id = ChunkId::of(&a);
        assert!(!store.has(&id).unwrap());
        assert!(matches!(store.get(&id), Err(StoreError::NotFound(_))));
        assert!(matches!(
            store.put(&id, b"not alpha"),
            Err(StoreError::Mismatch(_))
        ));
        assert!(!store.has(&id).unwrap(), "a mismatched put stores nothing");
        assert!(store.put(&id, &a).unwrap());
        assert!(!store.put(&id, &a).unwrap(), "second put is a no-op");
        assert_eq!(store.get(&id).unwrap(), a);
        assert_eq!(store.list().unwrap(), vec![id]);
        assert_eq!(store.total_bytes().unwrap(), 5);
        corrupt(&id, b"alphx".to_vec());
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt(_))));
        assert!(!store.has(&id).unwrap(), "a corrupt chunk is dropped");
        assert!(store.put(&id, &a).unwrap());
        store.remove(&id).unwrap();
        store.remove(&id).unwrap();
        assert!(!store.has(&id).unwrap());
        assert!(store.list().unwrap().is_empty());

        // put_many: one present, two new, one repeated within the batch.
        let (b, c) = (b"bravo".to_vec(), b"charlie".to_vec());
        let (bid, cid) = (ChunkId::of(&b), ChunkId::of(&c));
        assert!(store.put(&id, &a).unwrap());
        let batch: Vec<(ChunkId, &[u8])> = vec![(id, &a), (bid, &b), (cid, &c), (bid, &b)];
        assert_eq!(
            store.put_many(&batch).unwrap(),
            vec![false, true, true, false]
        );
        assert_eq!(store.get(&bid).unwrap(), b);
        assert_eq!(store.get(&cid).unwrap(), c);
        assert_eq!(store.total_bytes().unwrap(), 5 + 5 + 7);
        // A mismatch anywhere in the batch stores none of it.
        let (d, e) = (b"delta".to_vec(), b"echo".to_vec());
        let (did, eid) = (ChunkId::of(&d), ChunkId::of(&e));
        let bad: Vec<(ChunkId, &[u8])> = vec![(did, &d), (eid, b"not echo")];
        assert!(matches!(store.put_many(&bad), Err(StoreError::Mismatch(x)) if x == eid));
        assert!(!store.has(&did).unwrap() && !store.has(&eid).unwrap());
        assert_eq!(store.put_many(&[]).unwrap(), Vec::<bool>::new());
        for x in [id, bid, cid] {
            store.remove(&x).unwrap();
        }
    }

    #[test]
    fn memory_store_conforms() {
        let s = MemChunkStore::new();
        conformance(&s, &|id, data| s.corrupt(id, data));
    }

    #[test]
    fn disk_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskChunkStore::open(dir.path().join("c"), DiskOptions::default()).unwrap();
        conformance(&s, &|id, data| fs::write(s.path(id), data).unwrap());
        // Without fsync (throwaway stores) the same contract holds.
        let opts = DiskOptions {
            fsync: false,
            ..DiskOptions::default()
        };
        let s = DiskChunkStore::open(dir.path().join("n"), opts).unwrap();
        conformance(&s, &|id, data| fs::write(s.path(id), data).unwrap());
    }

    #[test]
    fn open_removes_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskChunkStore::open(dir.path(), DiskOptions::default()).unwrap();
        let id = ChunkId::of(b"x");
        s.put(&id, b"x").unwrap();
        let stray = s.path(&id).with_extension("123.tmp");
        fs::write(&stray, b"half").unwrap();
        let s = DiskChunkStore::open(dir.path(), DiskOptions::default()).unwrap();
        assert!(!stray.exists());
        assert_eq!(s.list().unwrap(), vec![id]);
    }
}
