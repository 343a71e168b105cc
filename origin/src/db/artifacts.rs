//! Blobs, recipes and published artifacts.
//!
//! A blob row (with its recipe and chunk references) is written in the same transaction that
//! publishes the first artifact using it, and only after every chunk is in the store. A blob
//! is garbage once no artifact and no live push references it; [`delete_blob`] then returns the
//! chunks no other blob uses, which the caller removes from the store (see `store::Gc`).

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::{BlobId, BlobRecipe, CatalogPath, ChunkId};

use super::{i64_of, id32, u64_of, ArtifactInfo};
use crate::error::{Error, Result};
use crate::util::rfc3339;

const RECIPE_VERSION: u8 = 1;

/// Encode a recipe for storage: version byte + postcard.
pub(crate) fn encode_recipe(r: &BlobRecipe) -> Vec<u8> {
    let mut out = vec![RECIPE_VERSION];
    // Encoding plain data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(r).unwrap_or_default());
    out
}

/// Decode a stored recipe.
pub(crate) fn decode_recipe(b: &[u8]) -> Result<BlobRecipe> {
    match b.split_first() {
        Some((&RECIPE_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::record("recipe", e))
        }
        Some((v, _)) => Err(Error::record("recipe", format!("unknown version {v}"))),
        None => Err(Error::record("recipe", "empty")),
    }
}

/// What [`publish`] did.
#[derive(Debug)]
pub(crate) struct Published {
    /// The artifact as now published.
    pub(crate) info: ArtifactInfo,
    /// False when the path already held exactly this content (nothing changed).
    pub(crate) changed: bool,
    /// The blob the path held before, if it was a different one (a GC candidate).
    pub(crate) replaced: Option<BlobId>,
}

/// Insert the blob row and its chunk references if the blob is new (its chunks are stored).
pub(crate) fn insert_blob(tx: &Connection, recipe: &BlobRecipe) -> Result<()> {
    let blob = recipe.blake3.as_bytes().to_vec();
    let exists = tx
        .prepare_cached("SELECT 1 FROM blobs WHERE blake3 = ?1")?
        .exists([&blob])?;
    if !exists {
        tx.execute(
            "INSERT INTO blobs (blake3, len, sha256, chunks, recipe) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                blob,
                i64_of(recipe.len),
                recipe.sha256.as_bytes().to_vec(),
                i64_of(recipe.chunks.len() as u64),
                encode_recipe(recipe)
            ],
        )?;
        let mut ins =
            tx.prepare_cached("INSERT OR IGNORE INTO chunk_refs (chunk, blob) VALUES (?1, ?2)")?;
        for ch in &recipe.chunks {
            ins.execute(params![ch.id.as_bytes().to_vec(), blob])?;
        }
    }
    Ok(())
}

/// Publish `path` → the blob described by `recipe` (whose chunks are all stored).
pub(crate) fn publish(
    c: &mut Connection,
    path: &CatalogPath,
    recipe: &BlobRecipe,
    modified: i64,
) -> Result<Published> {
    let tx = c.transaction()?;
    let blob = recipe.blake3.as_bytes().to_vec();
    insert_blob(&tx, recipe)?;
    let old: Option<Vec<u8>> = tx
        .query_row(
            "SELECT blob FROM artifacts WHERE path = ?1",
            [path.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let (changed, replaced) = match old {
        Some(o) if o == blob => (false, None),
        Some(o) => (true, Some(id32(&o, "artifact blob", BlobId::from_bytes)?)),
        None => (true, None),
    };
    if changed {
        tx.execute(
            "INSERT INTO artifacts (path, blob, modified) VALUES (?1, ?2, ?3)
             ON CONFLICT (path) DO UPDATE SET blob = excluded.blob, modified = excluded.modified",
            params![path.as_str(), blob, modified],
        )?;
    }
    let info = get_tx(&tx, path.as_str())?.ok_or_else(|| Error::NotFound(path.to_string()))?;
    tx.commit()?;
    Ok(Published {
        info,
        changed,
        replaced,
    })
}

const SELECT: &str = "SELECT a.path, b.len, b.sha256, b.blake3, b.chunks, a.modified
     FROM artifacts a JOIN blobs b ON b.blake3 = a.blob";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactInfo> {
    let sha: Vec<u8> = r.get(2)?;
    let b3: Vec<u8> = r.get(3)?;
    Ok(ArtifactInfo {
        path: r.get(0)?,
        size: u64_of(r.get(1)?),
        sha256: hex::encode(sha),
        blake3: hex::encode(b3),
        chunks: u64_of(r.get(4)?),
        modified: rfc3339(r.get(5)?),
    })
}

fn get_tx(c: &Connection, path: &str) -> Result<Option<ArtifactInfo>> {
    Ok(
        c.query_row(&format!("{SELECT} WHERE a.path = ?1"), [path], row)
            .optional()?,
    )
}

/// One artifact.
pub(crate) fn get(c: &Connection, path: &CatalogPath) -> Result<Option<ArtifactInfo>> {
    get_tx(c, path.as_str())
}

/// Every artifact at or below `prefix`, by path.
pub(crate) fn list(c: &Connection, prefix: &CatalogPath) -> Result<Vec<ArtifactInfo>> {
    let mut st = c.prepare(&format!("{SELECT} ORDER BY a.path"))?;
    let rows = st.query_map([], row)?;
    let mut out = Vec::new();
    for r in rows {
        let a = r?;
        if CatalogPath::parse(&a.path).is_ok_and(|p| p.is_under(prefix)) {
            out.push(a);
        }
    }
    Ok(out)
}

/// (blob, len, sha256, modified) of a published artifact.
pub(crate) type ManifestRow = (Vec<u8>, i64, Vec<u8>, i64);

/// The manifest fields of a published artifact.
pub(crate) fn resolve(c: &Connection, path: &str) -> Result<Option<ManifestRow>> {
    Ok(c
        .query_row(
            "SELECT a.blob, b.len, b.sha256, a.modified FROM artifacts a JOIN blobs b ON b.blake3 = a.blob WHERE a.path = ?1",
            [path],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// What deleting an artifact did.
#[derive(Debug)]
pub(crate) struct Deleted {
    /// The blob the path held (a GC candidate).
    pub(crate) blob: BlobId,
    /// Sites whose desired state changed.
    pub(crate) sites: Vec<String>,
}

/// Delete an artifact: it leaves the catalog and every site's desired state (pushes that
/// carried it stop waiting for it).
pub(crate) fn delete(c: &mut Connection, path: &CatalogPath) -> Result<Option<Deleted>> {
    let tx = c.transaction()?;
    let blob: Option<Vec<u8>> = tx
        .query_row(
            "SELECT blob FROM artifacts WHERE path = ?1",
            [path.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(blob) = blob else {
        return Ok(None);
    };
    tx.execute("DELETE FROM artifacts WHERE path = ?1", [path.as_str()])?;
    tx.execute("DELETE FROM channels WHERE path = ?1", [path.as_str()])?;
    let sites: Vec<String> = {
        let mut st = tx.prepare(
            "SELECT DISTINCT ps.site FROM push_sites ps JOIN push_artifacts pa ON pa.push = ps.push
             WHERE pa.path = ?1 AND pa.removed = 0",
        )?;
        let rows = st.query_map([path.as_str()], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let pushes: Vec<i64> = {
        let mut st =
            tx.prepare("SELECT push FROM push_artifacts WHERE path = ?1 AND removed = 0")?;
        let rows = st.query_map([path.as_str()], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.execute(
        "UPDATE push_artifacts SET removed = 1 WHERE path = ?1",
        [path.as_str()],
    )?;
    tx.execute(
        "UPDATE push_site_artifacts SET state = 'removed' WHERE path = ?1 AND state <> 'complete'",
        [path.as_str()],
    )?;
    for p in pushes {
        super::pushes::recompute_push(&tx, p)?;
    }
    super::sites::bump_desired(&tx, &sites)?;
    tx.commit()?;
    Ok(Some(Deleted {
        blob: id32(&blob, "artifact blob", BlobId::from_bytes)?,
        sites,
    }))
}

/// A blob's recipe.
pub(crate) fn recipe(c: &Connection, blob: &BlobId) -> Result<Option<BlobRecipe>> {
    let b: Option<Vec<u8>> = c
        .query_row(
            "SELECT recipe FROM blobs WHERE blake3 = ?1",
            [blob.as_bytes().to_vec()],
            |r| r.get(0),
        )
        .optional()?;
    b.map(|b| decode_recipe(&b)).transpose()
}

/// Whether a blob is referenced by an artifact, a live push, or an OCI repository (as a
/// linked blob or as a manifest).
pub(crate) fn blob_referenced(c: &Connection, blob: &BlobId) -> Result<bool> {
    let b = blob.as_bytes().to_vec();
    let n: i64 = c.query_row(
        "SELECT (SELECT COUNT(*) FROM artifacts WHERE blob = ?1)
              + (SELECT COUNT(*) FROM push_artifacts WHERE blob = ?1 AND removed = 0)
              + (SELECT COUNT(*) FROM oci_repo_blobs WHERE blob = ?1)
              + (SELECT COUNT(*) FROM oci_manifests WHERE blob = ?1)",
        [b],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Delete a blob if nothing references it; returns the chunks no remaining blob uses.
pub(crate) fn delete_blob(c: &mut Connection, blob: &BlobId) -> Result<Vec<ChunkId>> {
    let tx = c.transaction()?;
    if blob_referenced(&tx, blob)? {
        return Ok(Vec::new());
    }
    let b = blob.as_bytes().to_vec();
    let chunks: Vec<Vec<u8>> = {
        let mut st = tx.prepare("SELECT chunk FROM chunk_refs WHERE blob = ?1")?;
        let rows = st.query_map([&b], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.execute("DELETE FROM chunk_refs WHERE blob = ?1", [&b])?;
    tx.execute("DELETE FROM blobs WHERE blake3 = ?1", [&b])?;
    let mut out = Vec::new();
    {
        let mut st = tx.prepare("SELECT 1 FROM chunk_refs WHERE chunk = ?1 LIMIT 1")?;
        for ch in chunks {
            if !st.exists([&ch])? {
                out.push(id32(&ch, "chunk id", ChunkId::from_bytes)?);
            }
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Whether any blob uses this chunk.
pub(crate) fn chunk_referenced(c: &Connection, chunk: &ChunkId) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM chunk_refs WHERE chunk = ?1 LIMIT 1")?
            .exists([chunk.as_bytes().to_vec()])?,
    )
}

/// Totals for metrics: (artifacts, blobs, blob bytes).
pub(crate) fn totals(c: &Connection) -> Result<(u64, u64, u64)> {
    Ok(c.query_row(
        "SELECT (SELECT COUNT(*) FROM artifacts), (SELECT COUNT(*) FROM blobs), (SELECT COALESCE(SUM(len), 0) FROM blobs)",
        [],
        |r| Ok((u64_of(r.get(0)?), u64_of(r.get(1)?), u64_of(r.get(2)?))),
    )?)
}
