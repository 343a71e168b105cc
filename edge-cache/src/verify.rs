//! `sitecast edge verify`: check (and repair) that the catalog and the chunk store agree, with
//! the edge stopped (the data dir lock is taken, so it never runs beside a server).
//!
//! Checks: every chunk file hashes to its name; no temporary file of an interrupted write is
//! left; every published artifact and every blob of the registry mirror's cache has its recipe
//! and every chunk it needs, stored with the recipe's length (with `deep`, the blob is
//! reassembled and its SHA-256 and BLAKE3 checked); every stored chunk is referenced by a stored
//! recipe. Blobs still being fetched (desired, not published) may lack chunks: that is progress,
//! not a problem.
//!
//! Repair: corrupt, misnamed, temporary and stray files are removed; a published artifact that
//! cannot be served is unpublished and its transfer forgotten, so the next session with the
//! origin fetches what it lacks and publishes it again (devices get 404 meanwhile, never wrong
//! bytes); a broken mirror-cache entry is dropped (fetched again on demand); chunks no recipe
//! references are removed, as the edge's garbage collection would.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::params;
use sitecast_protocol::{BlobId, BlobRecipe, ChunkId, Sha256Digest};
use sitecast_runtime::chunks::{ChunkStore as _, DiskChunkStore, DiskOptions};
use sitecast_runtime::datadir::DataDirLock;
use sitecast_runtime::verify::{
    check_blob, check_files, BlobCheck, BlobRecord, VerifyOptions, VerifyReport,
};

use crate::catalog::{decode, id32, Catalog};
use crate::error::Error;

/// A stored recipe, or why it does not decode.
type StoredRecipe = Result<BlobRecipe, String>;

/// Where a checked blob is used.
enum Use {
    Published(String),
    MirrorCache(Sha256Digest),
}

impl Catalog {
    /// (path, record) of every published artifact.
    #[allow(clippy::cast_sign_loss)]
    fn verify_published(&self) -> Result<Vec<(Use, BlobRecord)>, Error> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT path, blob, len, sha256 FROM published ORDER BY path")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (path, blob, len, sha) = row?;
            out.push((
                Use::Published(path),
                BlobRecord {
                    blob: BlobId::from_bytes(id32("blob id", &blob)?),
                    len: len as u64,
                    sha256: Sha256Digest::from_bytes(id32("sha256", &sha)?),
                },
            ));
        }
        Ok(out)
    }

    /// (digest, record) of every blob in the registry mirror's cache.
    #[allow(clippy::cast_sign_loss)]
    fn verify_mirror_cache(&self) -> Result<Vec<(Use, BlobRecord)>, Error> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT digest, blob, len FROM oci_cache ORDER BY digest")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (digest, blob, len) = row?;
            let digest = Sha256Digest::from_bytes(id32("digest", &digest)?);
            out.push((
                Use::MirrorCache(digest),
                BlobRecord {
                    blob: BlobId::from_bytes(id32("blob id", &blob)?),
                    len: len as u64,
                    sha256: digest,
                },
            ));
        }
        Ok(out)
    }

    /// Every stored recipe, or why it does not decode.
    fn verify_recipes(&self) -> Result<Vec<(BlobId, StoredRecipe)>, Error> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT blob, recipe FROM recipes")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (blob, bytes) = row?;
            let blob = BlobId::from_bytes(id32("blob id", &blob)?);
            out.push((
                blob,
                decode::<BlobRecipe>("recipe", &bytes).map_err(|e| e.to_string()),
            ));
        }
        Ok(out)
    }

    /// Unpublish `path` and forget its transfer, in one transaction: the next session
    /// queues it again.
    fn verify_unpublish(&self, path: &str) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM published WHERE path = ?1", params![path])?;
        tx.execute("DELETE FROM transfers WHERE path = ?1", params![path])?;
        tx.commit()?;
        Ok(())
    }

    fn verify_drop_cached(&self, digest: &Sha256Digest) -> Result<(), Error> {
        self.conn().execute(
            "DELETE FROM oci_cache WHERE digest = ?1",
            [digest.as_bytes().as_slice()],
        )?;
        Ok(())
    }
}

/// Check the edge data directory `data_dir` (see the module docs). Blocking.
///
/// # Errors
/// The directory is not an edge's, is held by a running edge, or cannot be read (or, with
/// `repair`, written).
pub fn verify(data_dir: &Path, opts: VerifyOptions) -> Result<VerifyReport, Error> {
    let db_path = data_dir.join("edge.db");
    if !db_path.is_file() {
        return Err(Error::Config(format!(
            "{} holds no edge database (edge.db); is it an edge's data dir?",
            data_dir.display()
        )));
    }
    let _lock = DataDirLock::acquire(data_dir, "sitecast edge verify")?;
    let catalog = Catalog::open(&db_path)?;
    let store = DiskChunkStore::open_existing(
        data_dir.join("chunks"),
        DiskOptions {
            fsync: true,
            verify_reads: false,
        },
    )?;
    let mut report = VerifyReport::new("edge", data_dir.to_owned(), opts);
    let audit = store.audit()?;
    check_files(&store, &audit, &mut report, opts.repair)?;

    let recipes: std::collections::HashMap<BlobId, StoredRecipe> =
        catalog.verify_recipes()?.into_iter().collect();
    report.blobs = recipes.len() as u64;
    let mut uses = catalog.verify_published()?;
    report.artifacts = uses.len() as u64;
    uses.extend(catalog.verify_mirror_cache()?);
    for (used, rec) in &uses {
        let check = match recipes.get(&rec.blob) {
            Some(Ok(r)) => check_blob(&store, &audit, rec, r, opts.deep)?,
            Some(Err(e)) => BlobCheck {
                missing: Vec::new(),
                fault: Some(format!("recipe does not decode: {e}")),
            },
            None => BlobCheck {
                missing: Vec::new(),
                fault: Some("no recipe stored".into()),
            },
        };
        if check.ok() {
            continue;
        }
        let why = check
            .fault
            .clone()
            .unwrap_or_else(|| format!("{} chunks missing", check.missing.len()));
        for id in &check.missing {
            report.missing_chunks.add(opts.repair);
            report.problem(format!(
                "blob {} needs chunk {id}, which is not stored",
                rec.blob
            ));
        }
        report.broken_blobs.add(opts.repair);
        let done = if opts.repair { "" } else { " (left)" };
        match used {
            Use::Published(path) => {
                if opts.repair {
                    catalog.verify_unpublish(path.as_str())?;
                }
                let what = if opts.repair {
                    "unpublished; the next session fetches it again"
                } else {
                    "published"
                };
                report.problem(format!(
                    "{path} (blob {}) cannot be served ({why}): {what}{done}",
                    rec.blob
                ));
            }
            Use::MirrorCache(digest) => {
                if opts.repair {
                    catalog.verify_drop_cached(digest)?;
                }
                report.problem(format!(
                    "mirror cache blob sha256:{} cannot be served ({why}){}",
                    hex::encode(digest.as_bytes()),
                    if opts.repair {
                        ": dropped; fetched again on demand"
                    } else {
                        done
                    }
                ));
            }
        }
    }

    let keep: HashSet<ChunkId> = recipes
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|r| r.chunks.iter().map(|c| c.id))
        .collect();
    let mut unreferenced: Vec<ChunkId> = audit
        .chunks
        .keys()
        .filter(|id| !keep.contains(id))
        .copied()
        .collect();
    unreferenced.sort_unstable();
    for id in &unreferenced {
        if opts.repair {
            store.remove(id)?;
        }
        report.unreferenced_chunks.add(opts.repair);
    }
    if !unreferenced.is_empty() {
        report.problem(format!(
            "{} chunks no stored recipe references ({}; the edge's garbage collection would \
             remove them too)",
            unreferenced.len(),
            if opts.repair { "removed" } else { "left" }
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use sitecast_protocol::wire::{ArtifactState, ArtifactStatus, DesiredState};
    use sitecast_protocol::{chunk_all, ArtifactManifest, CatalogPath};

    use super::*;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    /// A data dir with `/fw/a.bin` published; returns its recipe.
    fn published_edge(dir: &Path) -> BlobRecipe {
        let catalog = Catalog::open(&dir.join("edge.db")).unwrap();
        let store = DiskChunkStore::open(dir.join("chunks"), DiskOptions::default()).unwrap();
        let (cuts, recipe) = chunk_all(&data(3 << 20));
        for c in &cuts {
            store.put(&c.id, &c.data).unwrap();
        }
        catalog.save_recipe(&recipe).unwrap();
        let m = ArtifactManifest {
            path: CatalogPath::parse("/fw/a.bin").unwrap(),
            blob: recipe.blake3,
            len: recipe.len,
            sha256: recipe.sha256,
            modified: 1,
        };
        catalog
            .save_desired(&DesiredState {
                revision: 1,
                artifacts: vec![m.clone()],
            })
            .unwrap();
        let status = ArtifactStatus {
            path: m.path.clone(),
            blob: m.blob,
            state: ArtifactState::Complete,
            bytes_total: m.len,
            bytes_needed: m.len,
            bytes_fetched: m.len,
            error: None,
        };
        assert!(catalog.publish(&m, &status).unwrap());
        recipe
    }

    #[test]
    fn repair_unpublishes_what_lost_a_chunk_and_keeps_it_desired() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = published_edge(dir.path());
        let opts = VerifyOptions::default();
        let r = verify(dir.path(), opts).unwrap();
        assert!(r.clean() && r.problems.is_empty(), "{r:?}");
        assert_eq!((r.artifacts, r.blobs), (1, 1));

        let lost = recipe.chunks[1].id;
        let hex = lost.to_hex();
        std::fs::remove_file(dir.path().join("chunks").join(&hex[..2]).join(&hex[2..])).unwrap();
        let stray = ChunkId::of(b"nobody's");
        DiskChunkStore::open(dir.path().join("chunks"), DiskOptions::default())
            .unwrap()
            .put(&stray, b"nobody's")
            .unwrap();
        let r = verify(dir.path(), opts).unwrap();
        assert!(!r.clean());
        assert_eq!(r.missing_chunks.found, 1);
        assert_eq!(r.broken_blobs.found, 1);
        assert_eq!(r.unreferenced_chunks.found, 1);

        let r = verify(
            dir.path(),
            VerifyOptions {
                repair: true,
                deep: true,
            },
        )
        .unwrap();
        assert!(r.clean(), "{r:?}");
        let catalog = Catalog::open(&dir.path().join("edge.db")).unwrap();
        assert!(catalog.published().is_empty(), "unpublished");
        assert!(
            catalog.transfers().unwrap().is_empty(),
            "its transfer forgotten"
        );
        assert_eq!(
            catalog.desired().unwrap().artifacts.len(),
            1,
            "still desired"
        );
        assert!(
            catalog.recipe(&recipe.blake3).unwrap().is_some(),
            "recipe kept for the refetch"
        );
        drop(catalog);
        let r = verify(dir.path(), opts).unwrap();
        assert!(r.clean() && r.problems.is_empty(), "{r:?}");
    }

    #[test]
    fn refuses_what_is_not_an_edge_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let e = verify(dir.path(), VerifyOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no edge database"), "{e}");
    }
}
