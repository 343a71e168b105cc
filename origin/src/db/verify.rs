//! The queries of `sitecast origin verify` (see `crate::verify`).

use std::collections::HashSet;

use rusqlite::Connection;
use sitecast_protocol::{BlobId, BlobRecipe, ChunkId, Sha256Digest};
use sitecast_runtime::verify::BlobRecord;

use super::artifacts::decode_recipe;
use super::{id32, u64_of};
use crate::error::Result;

/// A blob row's recipe, or why it does not decode.
pub(crate) type StoredRecipe = std::result::Result<BlobRecipe, String>;

/// Every blob row with its recipe.
pub(crate) fn blobs(c: &Connection) -> Result<Vec<(BlobRecord, StoredRecipe)>> {
    let mut st = c.prepare("SELECT blake3, len, sha256, recipe FROM blobs ORDER BY blake3")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (blob, len, sha, recipe) = row?;
        let rec = BlobRecord {
            blob: id32(&blob, "blob id", BlobId::from_bytes)?,
            len: u64_of(len),
            sha256: id32(&sha, "blob sha256", Sha256Digest::from_bytes)?,
        };
        out.push((rec, decode_recipe(&recipe).map_err(|e| e.to_string())));
    }
    Ok(out)
}

/// Every chunk some blob references (`chunk_refs`, what garbage collection goes by).
pub(crate) fn referenced_chunks(c: &Connection) -> Result<HashSet<ChunkId>> {
    let mut st = c.prepare("SELECT DISTINCT chunk FROM chunk_refs")?;
    let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = HashSet::new();
    for row in rows {
        out.insert(id32(&row?, "chunk id", ChunkId::from_bytes)?);
    }
    Ok(out)
}

/// The paths of the artifacts published with `blob`.
pub(crate) fn paths_of_blob(c: &Connection, blob: &BlobId) -> Result<Vec<String>> {
    let mut st = c.prepare("SELECT path FROM artifacts WHERE blob = ?1 ORDER BY path")?;
    let rows = st.query_map([blob.as_bytes().to_vec()], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many artifacts are published.
pub(crate) fn artifact_count(c: &Connection) -> Result<u64> {
    Ok(u64_of(c.query_row(
        "SELECT COUNT(*) FROM artifacts",
        [],
        |r| r.get(0),
    )?))
}
