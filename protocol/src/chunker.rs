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

/// Incremental FastCDC chunker that also hashes the whole blob (BLAKE3 and SHA-256).
pub struct Chunker {
    buf: Vec<u8>,
    offset: u64,
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    chunks: Vec<ChunkRef>,
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunker {
    /// An empty chunker.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(2 * MAX_CHUNK as usize),
            offset: 0,
            blake3: blake3::Hasher::new(),
            sha256: sha2::Sha256::new(),
            chunks: Vec::new(),
        }
    }

    /// Feed more input; returns the chunks whose boundaries are now certain.
    pub fn update(&mut self, data: &[u8]) -> Vec<Cut> {
        self.blake3.update(data);
        self.sha256.update(data);
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0usize;
        // A cut is final once MAX_CHUNK bytes are buffered past its start: FastCDC never looks
        // further than that.
        while self.buf.len() - start >= MAX_CHUNK as usize {
            let len = first_cut(&self.buf[start..]);
            out.push(self.emit(start, len));
            start += len;
        }
        self.buf.drain(..start);
        out
    }

    /// Cut what is left and return the final chunks with the blob's recipe.
    #[must_use]
    pub fn finish(mut self) -> (Vec<Cut>, BlobRecipe) {
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < self.buf.len() {
            let len = first_cut(&self.buf[start..]);
            out.push(self.emit(start, len));
            start += len;
        }
        let recipe = BlobRecipe {
            len: self.offset,
            blake3: BlobId::from_bytes(*self.blake3.finalize().as_bytes()),
            sha256: Sha256Digest::from_bytes(self.sha256.finalize().into()),
            chunks: self.chunks,
        };
        (out, recipe)
    }

    fn emit(&mut self, start: usize, len: usize) -> Cut {
        let data = self.buf[start..start + len].to_vec();
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
        cut
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
