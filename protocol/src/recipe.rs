//! Blob recipes and artifact manifests.

use serde::{Deserialize, Serialize};

use crate::chunker::MAX_CHUNK;
use crate::ids::{BlobId, ChunkId, Sha256Digest};
use crate::path::CatalogPath;

/// One chunk of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk's BLAKE3.
    pub id: ChunkId,
    /// Its length in bytes (at most [`MAX_CHUNK`]).
    pub len: u32,
}

/// A blob: its length and hashes, and the ordered chunks that make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecipe {
    /// Total length in bytes.
    pub len: u64,
    /// BLAKE3 of the whole blob (its id).
    pub blake3: BlobId,
    /// SHA-256 of the whole blob.
    pub sha256: Sha256Digest,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// Why a recipe is not self-consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// Chunk lengths do not add up to the blob length.
    #[error("recipe chunk lengths add up to {sum}, blob length is {len}")]
    LengthMismatch {
        /// Sum of the chunk lengths.
        sum: u64,
        /// Declared length.
        len: u64,
    },
    /// A chunk is empty or larger than [`MAX_CHUNK`].
    #[error("recipe chunk {index} has invalid length {len}")]
    BadChunkLength {
        /// Position in the recipe.
        index: usize,
        /// Its declared length.
        len: u32,
    },
}

impl BlobRecipe {
    /// Check the recipe is self-consistent (lengths add up, chunk sizes in range).
    ///
    /// # Errors
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let mut sum = 0u64;
        for (index, c) in self.chunks.iter().enumerate() {
            if c.len == 0 || c.len > MAX_CHUNK {
                return Err(RecipeError::BadChunkLength { index, len: c.len });
            }
            sum += u64::from(c.len);
        }
        if sum != self.len {
            return Err(RecipeError::LengthMismatch { sum, len: self.len });
        }
        Ok(())
    }

    /// Offset of each chunk within the blob, in recipe order.
    pub fn offsets(&self) -> impl Iterator<Item = (u64, &ChunkRef)> {
        self.chunks.iter().scan(0u64, |off, c| {
            let at = *off;
            *off += u64::from(c.len);
            Some((at, c))
        })
    }
}

/// A published artifact: a catalog path bound to a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    /// Where it is published.
    pub path: CatalogPath,
    /// The blob's id (BLAKE3).
    pub blob: BlobId,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256Digest,
    /// Upload time, seconds since the Unix epoch (served as Last-Modified / MDTM).
    pub modified: u64,
}
