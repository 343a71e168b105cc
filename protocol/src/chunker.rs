//! Content-defined chunking (FastCDC 2020) and whole-blob hashing.
//!
//! Chunk boundaries are a compatibility contract: an origin and an edge (and two versions of
//! sitecast) must cut the same bytes the same way, or dedup is lost. The parameters below are
//! fixed, and a snapshot test pins the boundaries of a seeded input.
//!
//! [`Chunker`] is incremental: feed it any split of the input and it yields the same chunks as
//! cutting the whole input at once, so the origin can chunk an upload while it streams in.

use fastcdc::v2020::FastCDC;
use sha2::Digest as _;

use crate::ids::{BlobId, ChunkId, Sha256Digest};
use crate::recipe::{BlobRecipe, ChunkRef};

/// Smallest chunk FastCDC cuts (except the last chunk of a blob).
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Target average chunk size.
pub const AVG_CHUNK: u32 = 64 * 1024;
/// Largest chunk; also the largest chunk any peer accepts.
pub const MAX_CHUNK: u32 = 256 * 1024;

/// A chunk cut from the input: its offset within the blob, and its bytes' id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Offset of the chunk's first byte within the blob.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
    /// BLAKE3 of `data`.
    pub id: ChunkId,
}

/// The whole blob's hashes (BLAKE3: its [`BlobId`]; SHA-256) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHashes {
    /// BLAKE3 of the blob.
    pub blake3: BlobId,
    /// SHA-256 of the blob.
    pub sha256: Sha256Digest,
    /// Its length.
    pub len: u64,
}

/// Incremental whole-blob hashing (BLAKE3 and SHA-256). Separate from [`Cutter`] so that a
/// caller can run the two on different threads: they are the two halves of ingest's CPU.
#[derive(Clone)]
pub struct BlobHasher {
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    len: u64,
}

impl Default for BlobHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BlobHasher {
    /// Nothing hashed yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            blake3: blake3::Hasher::new(),
            sha256: sha2::Sha256::new(),
            len: 0,
        }
    }

    /// Hash more input.
    pub fn update(&mut self, data: &[u8]) {
        self.blake3.update(data);
        self.sha256.update(data);
        self.len += data.len() as u64;
    }

    /// The hashes of everything fed.
    #[must_use]
    pub fn finish(self) -> BlobHashes {
        BlobHashes {
            blake3: BlobId::from_bytes(*self.blake3.finalize().as_bytes()),
            sha256: Sha256Digest::from_bytes(self.sha256.finalize().into()),
            len: self.len,
        }
    }
}

/// Incremental FastCDC cutting: chunk boundaries and chunk ids, without the whole-blob hashes
/// (see [`BlobHasher`]; [`Chunker`] does both).
pub struct Cutter {
    buf: Vec<u8>,
    /// Start of the bytes not yet cut, within `buf` (compacted lazily: fewer copies).
    pos: usize,
    offset: u64,
    chunks: Vec<ChunkRef>,
}

impl Default for Cutter {
    fn default() -> Self {
        Self::new()
    }
}

/// `buf` is compacted once this many cut bytes sit before `pos`.
const COMPACT_AT: usize = 4 * MAX_CHUNK as usize;

impl Cutter {
    /// Nothing cut yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(COMPACT_AT + 2 * MAX_CHUNK as usize),
            pos: 0,
            offset: 0,
            chunks: Vec::new(),
        }
    }

    /// Feed more input; returns the chunks whose boundaries are now certain.
    pub fn update(&mut self, data: &[u8]) -> Vec<Cut> {
        if self.pos >= COMPACT_AT {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        // A cut is final once MAX_CHUNK bytes are buffered past its start: FastCDC never looks
        // further than that.
        while self.buf.len() - self.pos >= MAX_CHUNK as usize {
            let len = first_cut(&self.buf[self.pos..]);
            out.push(self.emit(len));
        }
        out
    }

    /// Cut what is left and return the final chunks with the blob's recipe, given the blob's
    /// hashes (of exactly the bytes fed here).
    ///
    /// # Panics
    /// If `hashes.len` is not the number of bytes fed: the hashes are of other bytes.
    #[must_use]
    pub fn finish(mut self, hashes: BlobHashes) -> (Vec<Cut>, BlobRecipe) {
        let mut out = Vec::new();
        while self.pos < self.buf.len() {
            let len = first_cut(&self.buf[self.pos..]);
            out.push(self.emit(len));
        }
        assert_eq!(
            hashes.len, self.offset,
            "blob hashes of {} bytes for {} bytes cut",
            hashes.len, self.offset
        );
        let recipe = BlobRecipe {
            len: self.offset,
            blake3: hashes.blake3,
            sha256: hashes.sha256,
            chunks: self.chunks,
        };
        (out, recipe)
    }

    fn emit(&mut self, len: usize) -> Cut {
        let data = self.buf[self.pos..self.pos + len].to_vec();
        let id = ChunkId::of(&data);
        let cut = Cut {
            offset: self.offset,
            data,
            id,
        };
        self.chunks.push(ChunkRef {
            id,
            len: u32::try_from(len).expect("chunk length bounded by MAX_CHUNK"),
        });
        self.offset += len as u64;
        self.pos += len;
        cut
    }
}

/// Incremental FastCDC chunker that also hashes the whole blob (BLAKE3 and SHA-256), on the
/// caller's thread: a [`Cutter`] and a [`BlobHasher`] fed the same bytes.
#[derive(Default)]
pub struct Chunker {
    cutter: Cutter,
    hasher: BlobHasher,
}

impl Chunker {
    /// An empty chunker.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed more input; returns the chunks whose boundaries are now certain.
    pub fn update(&mut self, data: &[u8]) -> Vec<Cut> {
        self.hasher.update(data);
        self.cutter.update(data)
    }

    /// Cut what is left and return the final chunks with the blob's recipe.
    #[must_use]
    pub fn finish(self) -> (Vec<Cut>, BlobRecipe) {
        self.cutter.finish(self.hasher.finish())
    }
}

/// Length of the first chunk FastCDC cuts from `data` (all of it if shorter than one chunk).
fn first_cut(data: &[u8]) -> usize {
    FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .next()
        .map_or(data.len(), |c| c.length)
}

/// Chunk a whole blob held in memory: the recipe and the chunks' bytes.
#[must_use]
pub fn chunk_all(data: &[u8]) -> (Vec<Cut>, BlobRecipe) {
    let mut c = Chunker::new();
    let mut cuts = c.update(data);
    let (rest, recipe) = c.finish();
    cuts.extend(rest);
    (cuts, recipe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic bytes independent of any RNG crate's version: BLAKE3's XOF of the seed.
    fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut v);
        v
    }

    /// Boundaries are a compatibility contract: if this changes, every deployed edge loses
    /// dedup against new uploads. Change it only with a new chunking version.
    #[test]
    fn snapshot_of_seeded_input() {
        let data = seeded(1 << 20, 42);
        let (cuts, recipe) = chunk_all(&data);
        let lens: Vec<usize> = cuts.iter().map(|c| c.data.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 1 << 20);
        assert_eq!(recipe.chunks.len(), cuts.len());
        let summary = format!(
            "{} chunks, first {:?}, last {:?}, first id {}",
            lens.len(),
            &lens[..3],
            lens.last().unwrap(),
            cuts[0].id.short()
        );
        assert_eq!(summary, SNAPSHOT, "chunk boundaries changed");
    }
    const SNAPSHOT: &str =
        "15 chunks, first [72462, 95088, 92685], last 42405, first id f61c8de0ccc9";

    #[test]
    fn empty_and_tiny_blobs() {
        let (cuts, recipe) = chunk_all(b"");
        assert!(cuts.is_empty());
        assert_eq!(recipe.len, 0);
        assert_eq!(recipe.blake3, BlobId::of(b""));
        let (cuts, recipe) = chunk_all(b"abc");
        assert_eq!(cuts.len(), 1);
        assert_eq!(recipe.sha256, Sha256Digest::of(b"abc"));
        recipe.validate().unwrap();
    }

    /// Inserting bytes near the start of a 64 MiB input changes only a few chunks.
    #[test]
    fn insertion_near_start_changes_few_chunks() {
        let v1 = seeded(64 << 20, 7);
        let mut v2 = v1.clone();
        let insert = seeded(1021, 8);
        v2.splice(4096..4096, insert);
        let (_, r1) = chunk_all(&v1);
        let (_, r2) = chunk_all(&v2);
        let old: std::collections::HashSet<_> = r1.chunks.iter().map(|c| c.id).collect();
        let changed = r2.chunks.iter().filter(|c| !old.contains(&c.id)).count();
        assert!(
            changed <= 3,
            "{changed} of {} chunks changed after a 1021-byte insertion",
            r2.chunks.len()
        );
        assert!(r1.chunks.len() > 500);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Streaming (any split) and one-shot chunking agree, and so do the blob hashes.
        #[test]
        fn streaming_equals_one_shot(seed in any::<u64>(), len in 0usize..1_500_000,
                                     splits in proptest::collection::vec(1usize..300_000, 1..12)) {
            let data = seeded(len, seed);
            let (whole, recipe) = chunk_all(&data);
            let mut c = Chunker::new();
            let mut got = Vec::new();
            let mut pos = 0;
            for s in splits.iter().cycle() {
                if pos >= data.len() { break; }
                let end = (pos + s).min(data.len());
                got.extend(c.update(&data[pos..end]));
                pos = end;
            }
            let (rest, r2) = c.finish();
            got.extend(rest);
            prop_assert_eq!(&got, &whole);
            prop_assert_eq!(&r2, &recipe);
            prop_assert_eq!(recipe.blake3, BlobId::of(&data));
            prop_assert_eq!(recipe.sha256, Sha256Digest::of(&data));
            recipe.validate().unwrap();
            for cut in &whole {
                prop_assert!(cut.data.len() <= MAX_CHUNK as usize);
                prop_assert!(cut.id.matches(&cut.data));
            }
        }

        /// Streaming BLAKE3 over any split equals one-shot BLAKE3.
        #[test]
        fn blake3_streaming_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..20_000),
                                            split in 0usize..20_000) {
            let split = split.min(data.len());
            let mut h = blake3::Hasher::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            prop_assert_eq!(h.finalize(), blake3::hash(&data));
        }
    }
}
