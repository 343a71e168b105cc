//! `sitecast origin verify`: check (and repair) that the catalog and the chunk store agree,
//! with the origin stopped (the data dir lock is taken, so it never runs beside a server).
//!
//! Checks: every chunk file hashes to its name; no temporary file of an interrupted write is
//! left; every blob row's recipe is its blob's and every chunk it needs is stored with the
//! recipe's length (with `deep`, the blob is reassembled and its SHA-256 and BLAKE3 checked);
//! every stored chunk is referenced by some blob (`chunk_refs`).
//!
//! Repair: corrupt, misnamed, temporary and stray files are removed; a broken blob's artifacts
//! are deleted as `ctl artifact delete` would (they leave every site's desired state; upload
//! the bytes again to restore them), then the blob row if nothing else references it; chunks no
//! blob references (left by an upload interrupted by a crash) are removed. A broken blob still
//! referenced by an OCI repository or a push of an older version stays reported.

use std::path::Path;

use sitecast_runtime::chunks::{ChunkStore as _, DiskChunkStore, DiskOptions};
use sitecast_runtime::datadir::DataDirLock;
use sitecast_runtime::verify::{check_blob, check_files, VerifyOptions, VerifyReport};

use crate::db::{self, Db};
use crate::error::{Error, Result};

/// Check the origin data directory `data_dir` (see the module docs). Blocking.
///
/// # Errors
/// The directory is not an origin's, is held by a running origin, or cannot be read (or, with
/// `repair`, written).
pub fn verify(data_dir: &Path, opts: VerifyOptions) -> Result<VerifyReport> {
    let db_path = data_dir.join("origin.db");
    if !db_path.is_file() {
        return Err(Error::Config(format!(
            "{} holds no origin database (origin.db); is it an origin's data dir?",
            data_dir.display()
        )));
    }
    let _lock = DataDirLock::acquire(data_dir, "sitecast origin verify")?;
    let db = Db::open(&db_path)?;
    let store = DiskChunkStore::open_existing(
        data_dir.join("chunks"),
        DiskOptions {
            fsync: true,
            verify_reads: false,
        },
    )?;
    let mut report = VerifyReport::new("origin", data_dir.to_owned(), opts);
    let audit = store.audit()?;
    check_files(&store, &audit, &mut report, opts.repair)?;

    let blobs = db.blocking(|c| db::verify::blobs(c))?;
    report.blobs = blobs.len() as u64;
    let mut freed = Vec::new();
    for (rec, recipe) in &blobs {
        let check = match recipe {
            Ok(r) => check_blob(&store, &audit, rec, r, opts.deep)?,
            Err(e) => sitecast_runtime::verify::BlobCheck {
                missing: Vec::new(),
                fault: Some(format!("recipe does not decode: {e}")),
            },
        };
        if check.ok() {
            continue;
        }
        let blob = rec.blob;
        let paths = db.blocking(|c| db::verify::paths_of_blob(c, &blob))?;
        let why = check
            .fault
            .clone()
            .unwrap_or_else(|| format!("{} chunks missing", check.missing.len()));
        if !opts.repair {
            note_missing(&mut report, rec.blob, &check.missing, false);
            report.broken_blobs.add(false);
            report.problem(format!(
                "blob {blob} cannot be served ({why}); artifacts {paths:?} (left)"
            ));
            continue;
        }
        for p in &paths {
            let path = sitecast_protocol::CatalogPath::parse_artifact(p)
                .map_err(|e| Error::bad_path(p, e))?;
            db.blocking(|c| db::artifacts::delete(c, &path))?;
        }
        let gone = db.blocking(|c| {
            let referenced = db::artifacts::blob_referenced(c, &blob)?;
            let chunks = db::artifacts::delete_blob(c, &blob)?;
            Ok((!referenced).then_some(chunks))
        })?;
        let repaired = gone.is_some();
        note_missing(&mut report, blob, &check.missing, repaired);
        report.broken_blobs.add(repaired);
        if let Some(chunks) = gone {
            freed.extend(chunks);
            report.problem(format!(
                "blob {blob} cannot be served ({why}); artifacts {paths:?} deleted: upload them again"
            ));
        } else {
            report.problem(format!(
                "blob {blob} cannot be served ({why}); artifacts {paths:?} deleted, but an OCI \
                 repository or a push still references it: push that content again (left)"
            ));
        }
    }

    // After repairs: whatever no blob references is garbage (no upload is pinning anything
    // while the origin is stopped).
    let referenced = db.blocking(|c| db::verify::referenced_chunks(c))?;
    let mut unreferenced: Vec<_> = audit
        .chunks
        .keys()
        .filter(|id| !referenced.contains(id))
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
            "{} chunks ({} bytes) no blob references (left by interrupted uploads, or freed by a repair) ({})",
            unreferenced.len(),
            unreferenced
                .iter()
                .map(|id| audit.chunks.get(id).copied().unwrap_or(0))
                .sum::<u64>(),
            if opts.repair { "removed" } else { "left" }
        ));
    }
    for id in freed {
        if !referenced.contains(&id) {
            store.remove(&id)?;
        }
    }
    report.artifacts = db.blocking(|c| db::verify::artifact_count(c))?;
    Ok(report)
}

fn note_missing(
    report: &mut VerifyReport,
    blob: sitecast_protocol::BlobId,
    missing: &[sitecast_protocol::ChunkId],
    repaired: bool,
) {
    for id in missing {
        report.missing_chunks.add(repaired);
        report.problem(format!("blob {blob} needs chunk {id}, which is not stored"));
    }
}

#[cfg(test)]
mod tests {
    use sitecast_protocol::{chunk_all, CatalogPath, ChunkId};

    use super::*;

    #[test]
    fn repair_deletes_what_lost_a_chunk_and_collects_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("origin.db")).unwrap();
        let store =
            DiskChunkStore::open(dir.path().join("chunks"), DiskOptions::default()).unwrap();
        let bytes: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (cuts, recipe) = chunk_all(&bytes);
        for c in &cuts {
            store.put(&c.id, &c.data).unwrap();
        }
        let path = CatalogPath::parse("/fw/a.bin").unwrap();
        db.blocking(|c| db::artifacts::publish(c, &path, &recipe, 1))
            .unwrap();
        // An upload killed before it published leaves chunks nothing references.
        let orphan = ChunkId::of(b"half an upload");
        store.put(&orphan, b"half an upload").unwrap();
        drop(db);

        let opts = VerifyOptions::default();
        let r = verify(dir.path(), opts).unwrap();
        assert_eq!(r.unreferenced_chunks.found, 1, "{r:?}");
        assert_eq!(r.broken_blobs.found, 0, "{r:?}");
        assert!(!r.clean());

        store.remove(&recipe.chunks[0].id).unwrap();
        let r = verify(dir.path(), opts).unwrap();
        assert_eq!(
            (r.missing_chunks.found, r.broken_blobs.found),
            (1, 1),
            "{r:?}"
        );
        let r = verify(
            dir.path(),
            VerifyOptions {
                repair: true,
                deep: true,
            },
        )
        .unwrap();
        assert!(r.clean(), "{r:?}");
        let r = verify(dir.path(), opts).unwrap();
        assert!(r.clean() && r.problems.is_empty(), "{r:?}");
        assert_eq!((r.artifacts, r.blobs, r.chunks), (0, 0, 0), "{r:?}");
        let db = Db::open(&dir.path().join("origin.db")).unwrap();
        assert!(db
            .blocking(|c| db::artifacts::get(c, &path))
            .unwrap()
            .is_none());
    }
}
