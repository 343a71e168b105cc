//! The report of `sitecast origin verify` and `sitecast edge verify`: what was checked, each
//! kind of problem found and how many of them a repair fixed, one line per problem.
//!
//! Both sides fill the same [`VerifyReport`], so operators and scripts read one shape
//! (`--output json` prints it as is). [`VerifyReport::clean`] is the exit status: true when
//! nothing was found, or everything found was repaired.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use sha2::Digest as _;
use sitecast_protocol::{BlobId, BlobRecipe, ChunkId, Sha256Digest};

use crate::chunks::{ChunkStore as _, DiskChunkStore, StoreAudit, StoreError};

/// How the check runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Fix what can be fixed (see each side's docs); otherwise change nothing.
    pub repair: bool,
    /// Also reassemble every blob and check its whole-blob SHA-256 and BLAKE3 (reads every
    /// referenced chunk a second time).
    pub deep: bool,
}

/// One kind of problem: how many were found and how many of those were repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Found.
    pub found: u64,
    /// Repaired (0 without `--repair`).
    pub repaired: u64,
}

impl Count {
    /// One more found, and repaired when `repaired`.
    pub fn add(&mut self, repaired: bool) {
        self.found += 1;
        self.repaired += u64::from(repaired);
    }

    fn left(self) -> u64 {
        self.found - self.repaired
    }
}

/// What a verify run found (see the module docs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// `origin` or `edge`.
    pub role: &'static str,
    /// The data directory checked.
    pub data_dir: PathBuf,
    /// Whether repairs were made.
    pub repair: bool,
    /// Whether whole blobs were reassembled and hashed.
    pub deep: bool,
    /// Chunk files whose content hashes to their name.
    pub chunks: u64,
    /// Their bytes.
    pub chunk_bytes: u64,
    /// Blobs (recipes) in the catalog.
    pub blobs: u64,
    /// Published artifacts.
    pub artifacts: u64,
    /// Files named like a chunk whose content hashes to another name (repair: removed).
    pub corrupt_chunks: Count,
    /// Temporary files of interrupted writes (repair: removed).
    pub temp_files: Count,
    /// Other files in the store's directories (repair: removed).
    pub stray_files: Count,
    /// Chunks a blob's recipe needs that are absent, corrupt or of the wrong length.
    pub missing_chunks: Count,
    /// Blobs whose recipe does not reassemble to their recorded length (or, with `deep`,
    /// hashes) or lacks chunks (repair: see each side).
    pub broken_blobs: Count,
    /// Chunks no recipe references (repair: removed, as garbage collection would).
    pub unreferenced_chunks: Count,
    /// One line per problem, saying what was done about it.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// An empty report for `role` on `data_dir`.
    #[must_use]
    pub fn new(role: &'static str, data_dir: PathBuf, opts: VerifyOptions) -> Self {
        Self {
            role,
            data_dir,
            repair: opts.repair,
            deep: opts.deep,
            ..Self::default()
        }
    }

    fn counts(&self) -> [(&'static str, Count); 6] {
        [
            ("corrupt or misnamed chunks", self.corrupt_chunks),
            ("temporary files", self.temp_files),
            ("stray files", self.stray_files),
            ("missing chunks", self.missing_chunks),
            ("broken blobs", self.broken_blobs),
            ("unreferenced chunks", self.unreferenced_chunks),
        ]
    }

    /// Nothing found, or everything found repaired.
    #[must_use]
    pub fn clean(&self) -> bool {
        self.counts().iter().all(|(_, c)| c.left() == 0)
    }

    /// Record a problem line.
    pub fn problem(&mut self, line: String) {
        self.problems.push(line);
    }

    /// The human summary: the problem lines, then one line per kind, then the verdict.
    #[must_use]
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let _ = writeln!(out, "  {p}");
        }
        let _ = writeln!(
            out,
            "{} data dir {}: {} chunks ({} bytes), {} blobs, {} published artifacts{}",
            self.role,
            self.data_dir.display(),
            self.chunks,
            self.chunk_bytes,
            self.blobs,
            self.artifacts,
            if self.deep {
                " (blobs reassembled and hashed)"
            } else {
                ""
            }
        );
        for (what, c) in self.counts() {
            if c.found > 0 {
                let _ = writeln!(out, "{what}: {} found, {} repaired", c.found, c.repaired);
            }
        }
        let verdict = if self.counts().iter().all(|(_, c)| c.found == 0) {
            "clean"
        } else if self.clean() {
            "repaired"
        } else if self.repair {
            "problems remain"
        } else {
            "problems found; run again with --repair to fix them"
        };
        let _ = writeln!(out, "{verdict}");
        out
    }
}

/// Count (and with `repair`, remove) what an audit found wrong with the store's files:
/// corrupt or misnamed chunks, temporary files, stray files.
///
/// # Errors
/// A removal fails.
pub fn check_files(
    store: &DiskChunkStore,
    audit: &StoreAudit,
    report: &mut VerifyReport,
    repair: bool,
) -> Result<(), StoreError> {
    report.chunks = audit.chunks.len() as u64;
    report.chunk_bytes = audit.chunks.values().sum();
    let done = if repair { "removed" } else { "left" };
    for (id, path) in &audit.corrupt {
        if repair {
            store.discard(path)?;
        }
        report.corrupt_chunks.add(repair);
        report.problem(format!(
            "chunk file {} does not hash to its name {id} ({done})",
            path.display()
        ));
    }
    for path in &audit.temp_files {
        if repair {
            store.discard(path)?;
        }
        report.temp_files.add(repair);
        report.problem(format!(
            "temporary file {} of an interrupted write ({done})",
            path.display()
        ));
    }
    for path in &audit.strays {
        if repair {
            store.discard(path)?;
        }
        report.stray_files.add(repair);
        report.problem(format!(
            "file {} is not a chunk of this store ({done})",
            path.display()
        ));
    }
    Ok(())
}

/// What the catalog records about a blob, to check its recipe against.
#[derive(Debug, Clone, Copy)]
pub struct BlobRecord {
    /// Its id.
    pub blob: BlobId,
    /// Its recorded length.
    pub len: u64,
    /// Its recorded SHA-256.
    pub sha256: Sha256Digest,
}

/// Why a blob cannot be served from the store, if it cannot.
#[derive(Debug, Default)]
pub struct BlobCheck {
    /// Chunks of its recipe the store lacks (absent, corrupt, or of another length), each once.
    pub missing: Vec<ChunkId>,
    /// The first other fault (recipe inconsistent or not this blob's; with `deep`, the
    /// reassembled bytes hashing wrong).
    pub fault: Option<String>,
}

impl BlobCheck {
    /// Whether the blob reassembles.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.fault.is_none()
    }
}

/// Check one blob's recipe against the record and the audited store; with `deep`, read the
/// blob back and hash it. `store` should be opened without `verify_reads` so a check never
/// removes anything.
///
/// # Errors
/// Reading a chunk fails (only with `deep`).
pub fn check_blob(
    store: &DiskChunkStore,
    audit: &StoreAudit,
    rec: &BlobRecord,
    recipe: &BlobRecipe,
    deep: bool,
) -> Result<BlobCheck, StoreError> {
    let mut out = BlobCheck::default();
    if let Err(e) = recipe.validate() {
        out.fault = Some(format!("recipe is inconsistent: {e}"));
    } else if recipe.blake3 != rec.blob || recipe.len != rec.len || recipe.sha256 != rec.sha256 {
        out.fault = Some(format!(
            "recipe describes another blob (length {}, recorded {})",
            recipe.len, rec.len
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &recipe.chunks {
        if seen.insert(c.id) && audit.chunks.get(&c.id) != Some(&u64::from(c.len)) {
            out.missing.push(c.id);
        }
    }
    if deep && out.ok() {
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut len = 0u64;
        for c in &recipe.chunks {
            let data = store.get(&c.id)?;
            sha.update(&data);
            b3.update(&data);
            len += data.len() as u64;
        }
        let sha = Sha256Digest::from_bytes(sha.finalize().into());
        let b3 = BlobId::from_bytes(*b3.finalize().as_bytes());
        if len != rec.len || sha != rec.sha256 || b3 != rec.blob {
            out.fault = Some(format!(
                "reassembled blob does not match its record (length {len}, sha256 {sha})"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_means_nothing_left_unrepaired() {
        let mut r = VerifyReport::new("edge", "/d".into(), VerifyOptions::default());
        assert!(r.clean());
        assert!(r.render_text().ends_with("clean\n"));
        r.temp_files.add(false);
        assert!(!r.clean());
        assert!(r
            .render_text()
            .contains("temporary files: 1 found, 0 repaired"));
        let mut r = VerifyReport::new(
            "edge",
            "/d".into(),
            VerifyOptions {
                repair: true,
                deep: false,
            },
        );
        r.corrupt_chunks.add(true);
        assert!(r.clean());
        assert!(r.render_text().ends_with("repaired\n"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["corrupt_chunks"],
            serde_json::json!({"found": 1, "repaired": 1})
        );
    }
}
