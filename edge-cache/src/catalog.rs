//! The edge's SQLite database and the in-memory view of what is published.
//!
//! Contracts:
//! - one writer: every statement runs under one `Mutex<Connection>`; all methods block, so
//!   async callers use `spawn_blocking` (see [`crate::error::blocking`]);
//! - the **published** table holds only complete, verified artifacts. [`Catalog::publish`]
//!   switches a path from its old blob to its new one in one transaction, and only then updates
//!   the in-memory snapshot that servers read, so a reader sees the old artifact or the new
//!   one, never a mix;
//! - encoded records (site config, recipes) are postcard behind a version byte
//!   ([`RECORD_VERSION`]); a record with an unknown version is an error, never misread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sitecast_protocol::wire::{ArtifactState, ArtifactStatus, DesiredState};
use sitecast_protocol::{
    ArtifactManifest, BlobId, BlobRecipe, CatalogPath, ChunkId, Sha256Digest, SiteConfig,
};

use crate::error::Error;

/// Version byte in front of every encoded record.
pub const RECORD_VERSION: u8 = 1;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/edge/0001_init.sql")),
    (2, include_str!("../../migrations/edge/0002_oci.sql")),
];

/// Published artifacts keyed by path text, as servers read them.
pub type PublishedMap = BTreeMap<String, ArtifactManifest>;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEntry {
    /// A published artifact directly in the directory.
    File(ArtifactManifest),
    /// A subdirectory (a prefix of published artifacts), with the newest modification below it.
    Dir {
        /// The subdirectory's path.
        path: CatalogPath,
        /// Newest `modified` of the artifacts below it.
        modified: u64,
    },
}

/// The database plus the published snapshot (see the module docs).
pub struct Catalog {
    conn: Mutex<Connection>,
    published: RwLock<Arc<PublishedMap>>,
    recipes: Mutex<HashMap<BlobId, Arc<BlobRecipe>>>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // postcard into a Vec only fails for types serde cannot represent, which ours are not.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    let err = |reason: String| Error::Record {
        what: what.to_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| err(e.to_string())),
        Some((v, _)) => Err(err(format!("unknown record version {v}"))),
        None => Err(err("empty record".into())),
    }
}

pub(crate) fn id32(what: &str, bytes: &[u8]) -> Result<[u8; 32], Error> {
    bytes.try_into().map_err(|_| Error::Record {
        what: what.to_owned(),
        reason: format!("expected 32 bytes, found {}", bytes.len()),
    })
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn state_str(s: ArtifactState) -> &'static str {
    match s {
        ArtifactState::Queued => "queued",
        ArtifactState::Fetching => "fetching",
        ArtifactState::Complete => "complete",
        ArtifactState::Failed => "failed",
    }
}

fn parse_state(s: &str) -> ArtifactState {
    match s {
        "fetching" => ArtifactState::Fetching,
        "complete" => ArtifactState::Complete,
        "failed" => ArtifactState::Failed,
        _ => ArtifactState::Queued,
    }
}

/// path, blob, len, sha256, modified as stored.
type ManifestRow = (String, Vec<u8>, i64, Vec<u8>, i64);

fn manifest_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ManifestRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

#[allow(clippy::cast_sign_loss)]
fn build_manifest(
    (path, blob, len, sha, modified): ManifestRow,
) -> Result<ArtifactManifest, Error> {
    let rec = |reason: String| Error::Record {
        what: format!("artifact {path}"),
        reason,
    };
    Ok(ArtifactManifest {
        path: CatalogPath::parse_artifact(&path).map_err(|e| rec(e.to_string()))?,
        blob: BlobId::from_bytes(id32("blob id", &blob)?),
        len: len as u64,
        sha256: Sha256Digest::from_bytes(id32("sha256", &sha)?),
        modified: modified as u64,
    })
}

impl Catalog {
    /// Open (creating and migrating) the database at `path` and load the published snapshot.
    ///
    /// # Errors
    /// The database cannot be opened or holds undecodable records.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = sitecast_runtime::sqlite::open(path, MIGRATIONS)?;
        let cat = Self {
            conn: Mutex::new(conn),
            published: RwLock::new(Arc::new(BTreeMap::new())),
            recipes: Mutex::new(HashMap::new()),
        };
        let map = {
            let conn = cat.conn();
            let mut stmt =
                conn.prepare("SELECT path, blob, len, sha256, modified FROM published")?;
            let rows = stmt.query_map([], manifest_from_row)?;
            let mut map = BTreeMap::new();
            for row in rows {
                let m = build_manifest(row?)?;
                map.insert(m.path.as_str().to_owned(), m);
            }
            map
        };
        *cat.published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(map);
        Ok(cat)
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The site config last received, if any.
    ///
    /// # Errors
    /// Database failures or an undecodable record.
    pub fn site_config(&self) -> Result<Option<SiteConfig>, Error> {
        let blob: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT config FROM site_config WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        blob.map(|b| decode("site config", &b)).transpose()
    }

    /// Persist a site config (replacing the previous one).
    ///
    /// # Errors
    /// Database failures (a full disk included).
    #[allow(clippy::cast_possible_wrap)]
    pub fn save_site_config(&self, cfg: &SiteConfig) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO site_config (id, revision, config) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, config = excluded.config",
            params![cfg.revision as i64, encode(cfg)],
        )?;
        Ok(())
    }

    /// The desired state last received (revision 0 and no artifacts if none).
    ///
    /// # Errors
    /// Database failures or undecodable rows.
    #[allow(clippy::cast_sign_loss)]
    pub fn desired(&self) -> Result<DesiredState, Error> {
        let conn = self.conn();
        let revision: i64 = conn
            .query_row("SELECT revision FROM desired_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let mut stmt = conn.prepare(
            "SELECT path, blob, len, sha256, modified FROM desired_artifacts ORDER BY path",
        )?;
        let artifacts = stmt
            .query_map([], manifest_from_row)?
            .map(|r| build_manifest(r?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DesiredState {
            revision: revision as u64,
            artifacts,
        })
    }

    /// Persist a new desired state and unpublish (and forget the transfers of) every path it
    /// no longer names, in one transaction. Returns the unpublished paths.
    ///
    /// # Errors
    /// Database failures.
    #[allow(clippy::cast_possible_wrap)]
    pub fn save_desired(&self, desired: &DesiredState) -> Result<Vec<CatalogPath>, Error> {
        let keep: HashSet<&str> = desired.artifacts.iter().map(|a| a.path.as_str()).collect();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO desired_state (id, revision) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision",
            [desired.revision as i64],
        )?;
        tx.execute("DELETE FROM desired_artifacts", [])?;
        {
            let mut ins = tx.prepare(
                "INSERT OR REPLACE INTO desired_artifacts (path, blob, len, sha256, modified)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for a in &desired.artifacts {
                ins.execute(params![
                    a.path.as_str(),
                    a.blob.as_bytes().as_slice(),
                    a.len as i64,
                    a.sha256.as_bytes().as_slice(),
                    a.modified as i64
                ])?;
            }
        }
        let snapshot = self.published();
        let gone: Vec<CatalogPath> = snapshot
            .values()
            .filter(|m| !keep.contains(m.path.as_str()))
            .map(|m| m.path.clone())
            .collect();
        for p in &gone {
            tx.execute("DELETE FROM published WHERE path = ?1", [p.as_str()])?;
        }
        tx.execute(
            "DELETE FROM transfers WHERE path NOT IN (SELECT path FROM desired_artifacts)",
            [],
        )?;
        tx.commit()?;
        if !gone.is_empty() {
            let mut map = (*snapshot).clone();
            for p in &gone {
                map.remove(p.as_str());
            }
            self.set_published(map);
        }
        Ok(gone)
    }

    /// A blob's recipe, if stored.
    ///
    /// # Errors
    /// Database failures or an undecodable record.
    pub fn recipe(&self, blob: &BlobId) -> Result<Option<Arc<BlobRecipe>>, Error> {
        if let Some(r) = self.recipe_cache().get(blob) {
            return Ok(Some(r.clone()));
        }
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT recipe FROM recipes WHERE blob = ?1",
                [blob.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(bytes) = bytes else { return Ok(None) };
        let recipe: Arc<BlobRecipe> = Arc::new(decode(&format!("recipe {blob}"), &bytes)?);
        self.recipe_cache().insert(*blob, recipe.clone());
        Ok(Some(recipe))
    }

    fn recipe_cache(&self) -> MutexGuard<'_, HashMap<BlobId, Arc<BlobRecipe>>> {
        self.recipes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Store a recipe (idempotent).
    ///
    /// # Errors
    /// Database failures.
    pub fn save_recipe(&self, recipe: &BlobRecipe) -> Result<(), Error> {
        self.conn().execute(
            "INSERT OR IGNORE INTO recipes (blob, recipe) VALUES (?1, ?2)",
            params![recipe.blake3.as_bytes().as_slice(), encode(recipe)],
        )?;
        Ok(())
    }

    /// Publish a complete, verified artifact: in one transaction the path switches to the new
    /// blob and its transfer becomes complete; then the snapshot servers read is swapped.
    /// Nothing happens (`Ok(false)`) unless the desired state still names this blob at this
    /// path. The blob's recipe must already be stored.
    ///
    /// # Errors
    /// Database failures (nothing changes then).
    #[allow(clippy::cast_possible_wrap)]
    pub fn publish(&self, m: &ArtifactManifest, status: &ArtifactStatus) -> Result<bool, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let desired: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM desired_artifacts WHERE path = ?1 AND blob = ?2",
                params![m.path.as_str(), m.blob.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        if desired.is_none() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO published (path, blob, len, sha256, modified, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (path) DO UPDATE SET blob = excluded.blob, len = excluded.len,
               sha256 = excluded.sha256, modified = excluded.modified,
               published_at = excluded.published_at",
            params![
                m.path.as_str(),
                m.blob.as_bytes().as_slice(),
                m.len as i64,
                m.sha256.as_bytes().as_slice(),
                m.modified as i64,
                now_secs()
            ],
        )?;
        save_transfer_in(&tx, status)?;
        tx.commit()?;
        let mut map = (*self.published()).clone();
        map.insert(m.path.as_str().to_owned(), m.clone());
        self.set_published(map);
        Ok(true)
    }

    fn set_published(&self, map: PublishedMap) {
        *self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(map);
    }

    /// The current published snapshot (cheap: an `Arc`).
    #[must_use]
    pub fn published(&self) -> Arc<PublishedMap> {
        self.published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The published artifact at `path`, if any. Image blobs (below
    /// [`sitecast_protocol::oci::BLOB_DIR`]) are not files: the file protocols never see them.
    #[must_use]
    pub fn lookup(&self, path: &CatalogPath) -> Option<ArtifactManifest> {
        if sitecast_protocol::oci::is_blob_path(path.as_str()) {
            return None;
        }
        self.published().get(path.as_str()).cloned()
    }

    /// The published image blob (manifest, config or layer) with this digest, if any.
    #[must_use]
    pub fn image_blob(&self, digest: &Sha256Digest) -> Option<ArtifactManifest> {
        let path = sitecast_protocol::oci::blob_path(digest);
        self.published().get(path.as_str()).cloned()
    }

    /// The entries directly in directory `dir`, or `None` when nothing is published below it
    /// (the root always exists). Sorted by name.
    #[must_use]
    pub fn list_dir(&self, dir: &CatalogPath) -> Option<Vec<DirEntry>> {
        if sitecast_protocol::oci::is_blob_path(dir.as_str()) {
            return None;
        }
        let snap = self.published();
        let prefix = if dir.is_root() {
            "/".to_owned()
        } else {
            format!("{}/", dir.as_str())
        };
        let mut out: BTreeMap<String, DirEntry> = BTreeMap::new();
        for (path, m) in snap.range(prefix.clone()..) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            if sitecast_protocol::oci::is_blob_path(path) {
                continue;
            }
            match rest.split_once('/') {
                None => {
                    out.insert(rest.to_owned(), DirEntry::File(m.clone()));
                }
                Some((name, _)) => {
                    let entry = out.entry(name.to_owned()).or_insert_with(|| DirEntry::Dir {
                        path: dir.join(name).unwrap_or_else(|_| dir.clone()),
                        modified: 0,
                    });
                    if let DirEntry::Dir { modified, .. } = entry {
                        *modified = (*modified).max(m.modified);
                    }
                }
            }
        }
        if out.is_empty() && !dir.is_root() {
            return None;
        }
        Some(out.into_values().collect())
    }

    /// Every stored transfer row.
    ///
    /// # Errors
    /// Database failures or undecodable rows.
    #[allow(clippy::cast_sign_loss)]
    pub fn transfers(&self) -> Result<Vec<ArtifactStatus>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT path, blob, state, bytes_total, bytes_needed, bytes_fetched, error
             FROM transfers ORDER BY path",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (path, blob, state, total, needed, fetched, error) = row?;
            out.push(ArtifactStatus {
                path: CatalogPath::parse_artifact(&path).map_err(|e| Error::Record {
                    what: format!("transfer {path}"),
                    reason: e.to_string(),
                })?,
                blob: BlobId::from_bytes(id32("blob id", &blob)?),
                state: parse_state(&state),
                bytes_total: total as u64,
                bytes_needed: needed as u64,
                bytes_fetched: fetched as u64,
                error,
            });
        }
        Ok(out)
    }

    /// Persist one transfer row.
    ///
    /// # Errors
    /// Database failures.
    pub fn save_transfer(&self, s: &ArtifactStatus) -> Result<(), Error> {
        save_transfer_in(&self.conn(), s)
    }

    /// Forget recipes no desired or published artifact uses (unless their blob is `in_use`,
    /// being read by a client), and return every chunk id the remaining recipes reference
    /// (the chunks that must be kept).
    ///
    /// # Errors
    /// Database failures or undecodable recipes.
    pub fn prune_recipes(&self, in_use: &HashSet<BlobId>) -> Result<HashSet<ChunkId>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT blob FROM recipes WHERE blob NOT IN (SELECT blob FROM published)
               AND blob NOT IN (SELECT blob FROM desired_artifacts)
               AND blob NOT IN (SELECT blob FROM oci_cache)",
        )?;
        let unused = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        for blob in unused {
            if !in_use.contains(&BlobId::from_bytes(id32("blob id", &blob)?)) {
                conn.execute("DELETE FROM recipes WHERE blob = ?1", [&blob])?;
            }
        }
        let mut stmt = conn.prepare("SELECT blob, recipe FROM recipes")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut keep = HashSet::new();
        let mut live = HashSet::new();
        for row in rows {
            let (blob, bytes) = row?;
            let recipe: BlobRecipe = decode("recipe", &bytes)?;
            live.insert(BlobId::from_bytes(id32("blob id", &blob)?));
            keep.extend(recipe.chunks.iter().map(|c| c.id));
        }
        self.recipe_cache().retain(|b, _| live.contains(b));
        Ok(keep)
    }
}

#[allow(clippy::cast_possible_wrap)]
fn save_transfer_in(conn: &Connection, s: &ArtifactStatus) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO transfers (path, blob, state, bytes_total, bytes_needed, bytes_fetched,
                                error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (path) DO UPDATE SET blob = excluded.blob, state = excluded.state,
           bytes_total = excluded.bytes_total, bytes_needed = excluded.bytes_needed,
           bytes_fetched = excluded.bytes_fetched, error = excluded.error,
           updated_at = excluded.updated_at",
        params![
            s.path.as_str(),
            s.blob.as_bytes().as_slice(),
            state_str(s.state),
            s.bytes_total as i64,
            s.bytes_needed as i64,
            s.bytes_fetched as i64,
            s.error,
            now_secs()
        ],
    )?;
    Ok(())
}
