//! The read-only file-system view of the published catalog that FTP and SFTP serve.
//!
//! Contracts:
//! - [`resolve`] turns a client-supplied name, relative to a working directory, into a
//!   [`CatalogPath`]: `.`, empty segments and `//` are dropped, `..` goes up and stops at the
//!   root, a leading `~` means the root (every login's home), and the result must pass
//!   [`CatalogPath::parse`] (backslashes, control characters, NUL and over-long names are
//!   refused). No encoding of a name can reach anything but the catalog.
//! - [`stat`] and [`list`] decide access with [`crate::access::decide`] and
//!   [`crate::access::visible`] exactly as the HTTP server does: a file needs `Read`, a
//!   directory `List`; a denied path and a missing one are both refused, and what is refused
//!   is never told apart for a principal without a grant (both are [`VfsError::Denied`] then,
//!   because `decide` runs before existence is revealed).
//! - [`Content`] reads an artifact's bytes chunk by chunk from the chunk store (verified by
//!   the store against the chunk id), never from a copy on disk.

use std::sync::Arc;

use bytes::Bytes;
use sitecast_protocol::{ArtifactManifest, BlobId, BlobRecipe, CatalogPath, ChunkId, PathError};

use crate::access::{decide, visible, Action, Decision};
use crate::catalog::DirEntry;
use crate::core::Core;

/// A node of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A published artifact.
    File(ArtifactManifest),
    /// A directory (a prefix of published artifacts, or the root).
    Dir {
        /// Its path.
        path: CatalogPath,
        /// Newest modification below it (seconds since the epoch; 0 for an empty root).
        modified: u64,
    },
}

impl Node {
    /// The node's path.
    pub(crate) fn path(&self) -> &CatalogPath {
        match self {
            Node::File(m) => &m.path,
            Node::Dir { path, .. } => path,
        }
    }

    /// Seconds since the epoch.
    pub(crate) fn modified(&self) -> u64 {
        match self {
            Node::File(m) => m.modified,
            Node::Dir { modified, .. } => *modified,
        }
    }

    /// Length in bytes (0 for directories).
    pub(crate) fn len(&self) -> u64 {
        match self {
            Node::File(m) => m.len,
            Node::Dir { .. } => 0,
        }
    }

    /// Whether this is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
}

/// Why a view operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VfsError {
    /// The name is not a valid catalog path.
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    /// The principal may not see this path.
    #[error("permission denied")]
    Denied,
    /// Nothing is published there.
    #[error("no such file or directory")]
    NotFound,
    /// A directory where a file is needed.
    #[error("is a directory")]
    IsDir,
    /// A file where a directory is needed.
    #[error("not a directory")]
    NotDir,
    /// Local trouble (missing recipe, unreadable chunk); logged, never shown in detail.
    #[error("artifact is unreadable at this edge")]
    Internal(String),
}

/// Resolve `name` against the working directory `cwd` (see the module docs).
///
/// # Errors
/// The resulting path is not a valid [`CatalogPath`].
pub(crate) fn resolve(cwd: &str, name: &str) -> Result<CatalogPath, PathError> {
    let mut segs: Vec<&str> = Vec::new();
    let (base, rest) = if let Some(rest) = name.strip_prefix('/') {
        ("", rest)
    } else if name == "~" {
        ("", "")
    } else if let Some(rest) = name.strip_prefix("~/") {
        ("", rest)
    } else {
        (cwd, name)
    };
    for seg in base.split('/').chain(rest.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    CatalogPath::parse(&format!("/{}", segs.join("/")))
}

/// What is at `path` for `principal`, if it may see it (see the module docs).
///
/// # Errors
/// [`VfsError::Denied`] or [`VfsError::NotFound`].
pub(crate) fn stat(
    core: &Core,
    principal: Option<&str>,
    path: &CatalogPath,
) -> Result<Node, VfsError> {
    let node = if path.is_root() {
        None
    } else {
        core.catalog.lookup(path).map(Node::File)
    };
    let node = node.or_else(|| {
        core.catalog.list_dir(path).map(|entries| Node::Dir {
            path: path.clone(),
            modified: entries
                .iter()
                .map(|e| match e {
                    DirEntry::File(m) => m.modified,
                    DirEntry::Dir { modified, .. } => *modified,
                })
                .max()
                .unwrap_or(0),
        })
    });
    let action = if matches!(node, Some(Node::Dir { .. })) {
        Action::List
    } else {
        Action::Read
    };
    if decide(&core.site_config(), principal, path, action) == Decision::Deny {
        return Err(VfsError::Denied);
    }
    node.ok_or(VfsError::NotFound)
}

/// The entries of directory `dir` that `principal` may see, sorted by name. A file is listed
/// as itself (as `ls file` does).
///
/// # Errors
/// As [`stat`].
pub(crate) fn list(
    core: &Core,
    principal: Option<&str>,
    dir: &CatalogPath,
) -> Result<Vec<Node>, VfsError> {
    match stat(core, principal, dir)? {
        f @ Node::File(_) => Ok(vec![f]),
        Node::Dir { path, .. } => {
            let site = core.site_config();
            let entries = core.catalog.list_dir(&path).unwrap_or_default();
            Ok(entries
                .into_iter()
                .map(|e| match e {
                    DirEntry::File(m) => Node::File(m),
                    DirEntry::Dir { path, modified } => Node::Dir { path, modified },
                })
                .filter(|n| visible(&site, principal, n.path(), n.is_dir()))
                .collect())
        }
    }
}

/// A file that may be read: `principal` may read `path` and it is an artifact.
///
/// # Errors
/// As [`stat`], or [`VfsError::IsDir`].
pub(crate) fn file(
    core: &Core,
    principal: Option<&str>,
    path: &CatalogPath,
) -> Result<ArtifactManifest, VfsError> {
    match stat(core, principal, path)? {
        Node::File(m) => Ok(m),
        Node::Dir { .. } => Err(VfsError::IsDir),
    }
}

/// Bytes of chunks a sequential reader (HTTP body, FTP RETR) takes per blocking task.
pub(crate) const READ_BATCH_BYTES: u64 = 1 << 20;

/// An artifact's content, readable at any offset, chunk by chunk from the store.
pub(crate) struct Content {
    core: Arc<Core>,
    recipe: Arc<BlobRecipe>,
    /// Start offset of each chunk, plus the total length at the end.
    starts: Vec<u64>,
    /// Keeps the blob's chunks from garbage collection while this reader lives.
    _reading: Reading,
}

/// One client reading a blob (see [`Core::start_reading`]). When the last reader of a blob
/// that is no longer published goes, garbage collection runs again to reclaim its chunks.
struct Reading {
    core: Arc<Core>,
    blob: BlobId,
}

impl Reading {
    fn new(core: &Arc<Core>, blob: BlobId) -> Self {
        core.start_reading(blob);
        Self {
            core: core.clone(),
            blob,
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.core.stop_reading(self.blob) {
            return;
        }
        let published = self.core.catalog.published();
        if published.values().any(|m| m.blob == self.blob) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let core = self.core.clone();
            rt.spawn(async move {
                if let Err(e) = crate::session::collect_garbage(&core).await {
                    tracing::warn!(error = %e, "removing unreferenced chunks failed");
                }
            });
        }
    }
}

impl Content {
    /// Open `m`'s content (loads its recipe off the async runtime).
    ///
    /// # Errors
    /// [`VfsError::Internal`] when the recipe is missing or does not match the manifest.
    pub(crate) async fn open(core: &Arc<Core>, m: &ArtifactManifest) -> Result<Self, VfsError> {
        // Registered before the recipe is read, so a collection from now on keeps it.
        let reading = Reading::new(core, m.blob);
        let catalog = core.catalog.clone();
        let blob = m.blob;
        let recipe = tokio::task::spawn_blocking(move || catalog.recipe(&blob))
            .await
            .map_err(|e| VfsError::Internal(e.to_string()))?
            .map_err(|e| VfsError::Internal(e.to_string()))?
            .ok_or_else(|| VfsError::Internal(format!("recipe of blob {blob} is missing")))?;
        if recipe.len != m.len {
            return Err(VfsError::Internal(format!(
                "recipe length {} differs from manifest length {}",
                recipe.len, m.len
            )));
        }
        let mut starts = Vec::with_capacity(recipe.chunks.len() + 1);
        let mut off = 0u64;
        for c in &recipe.chunks {
            starts.push(off);
            off += u64::from(c.len);
        }
        starts.push(off);
        Ok(Self {
            core: core.clone(),
            recipe,
            starts,
            _reading: reading,
        })
    }

    /// Total length.
    pub(crate) fn len(&self) -> u64 {
        self.recipe.len
    }

    /// Number of chunks.
    pub(crate) fn chunks(&self) -> usize {
        self.recipe.chunks.len()
    }

    /// The chunk holding byte `offset` (`None` at or past the end).
    pub(crate) fn chunk_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.recipe.len {
            return None;
        }
        // starts is sorted; the chunk is the last start <= offset.
        Some(self.starts.partition_point(|s| *s <= offset) - 1)
    }

    /// Start offset of chunk `i`.
    pub(crate) fn chunk_start(&self, i: usize) -> u64 {
        self.starts.get(i).copied().unwrap_or(self.recipe.len)
    }

    /// Chunk `i`'s bytes, read (and verified) by the store on a blocking thread.
    ///
    /// # Errors
    /// [`VfsError::Internal`] when the chunk is missing, corrupt or shorter than the recipe.
    pub(crate) async fn chunk(&self, i: usize) -> Result<Bytes, VfsError> {
        let mut v = self.chunk_range(i, i + 1).await?;
        v.pop()
            .ok_or_else(|| VfsError::Internal(format!("no chunk {i}")))
    }

    /// Chunks `from..to`, read (and verified) by the store in one blocking task, so a
    /// sequential reader pays one thread hand-off per batch rather than per chunk.
    ///
    /// # Errors
    /// As [`Content::chunk`].
    pub(crate) async fn chunk_range(&self, from: usize, to: usize) -> Result<Vec<Bytes>, VfsError> {
        let Some(refs) = self.recipe.chunks.get(from..to) else {
            return Err(VfsError::Internal(format!("no chunks {from}..{to}")));
        };
        let refs: Vec<(ChunkId, u32)> = refs.iter().map(|c| (c.id, c.len)).collect();
        // Cached chunks were verified when they were read; only the rest go to the store.
        let cached: Vec<Option<Bytes>> =
            refs.iter().map(|(id, _)| self.core.cache.get(id)).collect();
        if cached.iter().all(Option::is_some) {
            return Ok(cached.into_iter().flatten().collect());
        }
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || {
            refs.into_iter()
                .zip(cached)
                .map(|((id, len), cached)| {
                    if let Some(data) = cached {
                        return Ok(data);
                    }
                    let data = core.store.get(&id).map_err(|e| {
                        tracing::error!(chunk = %id, error = %e, "chunk unreadable while serving");
                        VfsError::Internal(format!("chunk {id}: {e}"))
                    })?;
                    if data.len() != len as usize {
                        return Err(VfsError::Internal(format!(
                            "chunk {id} is {} bytes, its recipe says {len}",
                            data.len()
                        )));
                    }
                    let data = Bytes::from(data);
                    core.cache.insert(id, data.clone());
                    Ok(data)
                })
                .collect()
        })
        .await
        .map_err(|e| VfsError::Internal(e.to_string()))?
    }

    /// Chunks `from..to` (as [`Content::chunk_range`]) cut to the bytes `start..end` of the
    /// blob: what a range response sends of that batch.
    ///
    /// # Errors
    /// As [`Content::chunk`].
    pub(crate) async fn range_pieces(
        &self,
        from: usize,
        to: usize,
        start: u64,
        end: u64,
    ) -> Result<Vec<Bytes>, VfsError> {
        let chunks = self.chunk_range(from, to).await?;
        Ok((from..)
            .zip(chunks)
            .map(|(i, data)| {
                let off = self.chunk_start(i);
                #[allow(clippy::cast_possible_truncation)] // within one chunk (≤ 256 KiB)
                let (lo, hi) = (
                    (start.max(off) - off) as usize,
                    (end.min(off + data.len() as u64) - off) as usize,
                );
                data.slice(lo..hi)
            })
            .collect())
    }

    /// Split chunks `range` (clamped to the blob) into consecutive batches of about `bytes`
    /// each (at least one chunk per batch), as `(from, to)` index ranges.
    pub(crate) fn batches(&self, range: std::ops::Range<usize>, bytes: u64) -> Vec<(usize, usize)> {
        let last = range.end.min(self.chunks());
        let mut out = Vec::new();
        let mut from = range.start;
        while from < last {
            let mut to = from + 1;
            while to < last && self.chunk_start(to + 1) - self.chunk_start(from) <= bytes {
                to += 1;
            }
            out.push((from, to));
            from = to;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_reads_chunks_and_batches() {
        use sitecast_runtime::chunks::MemChunkStore;
        let dir = tempfile::tempdir().unwrap();
        let catalog = crate::catalog::Catalog::open(&dir.path().join("edge.db")).unwrap();
        let store = Arc::new(MemChunkStore::new());
        // A cache of 1 MiB: the 3 MB blob does not fit, so both paths are exercised.
        let cfg = crate::config::EdgeConfig {
            chunk_cache_bytes: 1 << 20,
            ..Default::default()
        };
        let core = Arc::new(Core::with_parts(cfg, catalog, store).unwrap());
        let bytes: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (cuts, recipe) = sitecast_protocol::chunk_all(&bytes);
        for c in &cuts {
            core.store.put(&c.id, &c.data).unwrap();
        }
        core.catalog.save_recipe(&recipe).unwrap();
        let m = ArtifactManifest {
            path: CatalogPath::parse("/a.bin").unwrap(),
            blob: recipe.blake3,
            len: recipe.len,
            sha256: recipe.sha256,
            modified: 0,
        };
        let c = Content::open(&core, &m).await.unwrap();
        assert_eq!(c.len(), 3_000_000);
        assert_eq!(c.chunk_at(0), Some(0));
        assert_eq!(c.chunk_at(3_000_000), None);
        let last = c.chunks() - 1;
        assert_eq!(c.chunk_at(2_999_999), Some(last));
        // Batches cover every chunk once, in order, each within 1 MiB unless a single chunk.
        let batches = c.batches(0..usize::MAX, 1 << 20);
        assert_eq!(batches.first().unwrap().0, 0);
        assert_eq!(batches.last().unwrap().1, c.chunks());
        assert!(batches.windows(2).all(|w| w[0].1 == w[1].0));
        let mut all = Vec::new();
        for (from, to) in &batches {
            assert!(to - from == 1 || c.chunk_start(*to) - c.chunk_start(*from) <= 1 << 20);
            for d in c.chunk_range(*from, *to).await.unwrap() {
                all.extend_from_slice(&d);
            }
        }
        assert_eq!(all, bytes);
        assert_eq!(c.batches(last..c.chunks(), 1 << 20), vec![(last, last + 1)]);
        assert_eq!(c.batches(1..3, u64::MAX), vec![(1, 3)]);
        assert!(c.batches(3..3, 1 << 20).is_empty());
        let i = c.chunk_at(1_000_000).unwrap();
        assert!(c.chunk_start(i) <= 1_000_000 && c.chunk_start(i + 1) > 1_000_000);
        assert_eq!(
            c.chunk(i).await.unwrap().len() as u64,
            c.chunk_start(i + 1) - c.chunk_start(i)
        );
        // The last chunks read are served from memory, verified once: even with the store's
        // copy gone they come back whole, and no store read happens.
        let misses = core.cache.misses.load(std::sync::atomic::Ordering::Relaxed);
        let last_id = recipe.chunks[last].id;
        core.store.remove(&last_id).unwrap();
        let again = c.chunk(last).await.unwrap();
        assert_eq!(&again[..], &bytes[c.chunk_start(last) as usize..]);
        assert_eq!(
            core.cache.misses.load(std::sync::atomic::Ordering::Relaxed),
            misses
        );
        assert!(core.cache.bytes() <= 1 << 20);
        // A chunk neither cached nor stored is an internal error, not a panic.
        assert!(
            core.cache.get(&recipe.chunks[0].id).is_none(),
            "evicted long ago"
        );
        core.store.remove(&recipe.chunks[0].id).unwrap();
        assert!(matches!(c.chunk(0).await, Err(VfsError::Internal(_))));
    }

    #[test]
    fn resolve_stays_inside() {
        let ok = |cwd: &str, name: &str| resolve(cwd, name).unwrap().as_str().to_owned();
        assert_eq!(ok("/", "a.bin"), "/a.bin");
        assert_eq!(ok("/fw", "a.bin"), "/fw/a.bin");
        assert_eq!(ok("/fw", "/pub/x"), "/pub/x");
        assert_eq!(ok("/fw", ".."), "/");
        assert_eq!(ok("/fw", "../../../../etc/passwd"), "/etc/passwd");
        assert_eq!(ok("/fw/a", "./b/../c"), "/fw/a/c");
        assert_eq!(ok("/fw", "//x//y/"), "/x/y");
        assert_eq!(ok("/fw", ""), "/fw");
        assert_eq!(ok("/fw", "."), "/fw");
        assert_eq!(ok("/fw", "~"), "/");
        assert_eq!(ok("/fw", "~/pub"), "/pub");
        assert_eq!(ok("/fw", "a~b"), "/fw/a~b");
        assert_eq!(ok("/", "%2e%2e"), "/%2e%2e");
        assert!(resolve("/", "..\\..\\etc").is_err());
        assert!(resolve("/", "a\0b").is_err());
        assert!(resolve("/", "a\nb").is_err());
        assert!(resolve("/", &"x".repeat(300)).is_err());
    }
}
