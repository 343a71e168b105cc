//! OCI repositories: blobs linked into repositories, manifests (stored byte-exact as blobs),
//! what each manifest references, and tags.
//!
//! Rules kept here, in one transaction each: a manifest is stored only when everything it
//! references (config and layers, or an index's child manifests) is already in its repository;
//! a tag points at a manifest of its own repository; a blob row and its chunk references are
//! written by the same [`insert_blob`] that artifact publishing uses.

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::oci::{Reference, RepoName};
use sitecast_protocol::{BlobId, BlobRecipe, Sha256Digest};

use super::artifacts::{decode_recipe, insert_blob};
use super::id32;
use crate::error::Result;

/// What kind of thing a manifest references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// A config or layer blob.
    Blob,
    /// A child manifest of an index.
    Manifest,
}

impl RefKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Manifest => "manifest",
        }
    }
}

/// Which references of a manifest may be absent when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingRefs {
    /// Everything referenced must be in the repository (pushes).
    Refuse,
    /// An index's child manifests may be absent (an import of chosen platforms).
    Children,
    /// Anything may be absent: a pull-through cache fetches it when asked for.
    All,
}

/// A manifest to store.
#[derive(Debug, Clone)]
pub(crate) struct NewManifest {
    /// Its bytes' recipe (the bytes are in the chunk store).
    pub(crate) recipe: BlobRecipe,
    /// Stored media type, served back as `Content-Type`.
    pub(crate) media_type: String,
    /// `artifactType`, or the config's media type for the referrers API.
    pub(crate) artifact_type: Option<String>,
    /// `subject.digest`, if any.
    pub(crate) subject: Option<Sha256Digest>,
    /// The `annotations` object as JSON, if any.
    pub(crate) annotations: Option<String>,
    /// Everything it references.
    pub(crate) refs: Vec<(Sha256Digest, RefKind)>,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub(crate) struct StoredManifest {
    /// Its digest.
    pub(crate) digest: Sha256Digest,
    /// Its media type.
    pub(crate) media_type: String,
    /// Its bytes' recipe.
    pub(crate) recipe: BlobRecipe,
}

/// A manifest whose subject is a given digest (an entry of the referrers API).
#[derive(Debug, Clone)]
pub(crate) struct Referrer {
    /// Its digest.
    pub(crate) digest: Sha256Digest,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its media type.
    pub(crate) media_type: String,
    /// Its artifact type, if any.
    pub(crate) artifact_type: Option<String>,
    /// Its annotations (JSON), if any.
    pub(crate) annotations: Option<String>,
}

fn digest_of(b: &[u8]) -> Result<Sha256Digest> {
    id32(b, "oci digest", Sha256Digest::from_bytes)
}

/// Link a stored blob (every chunk in the store) into `repo`; creates the blob row if new.
pub(crate) fn link_blob(
    c: &mut Connection,
    repo: &RepoName,
    recipe: &BlobRecipe,
    now: i64,
) -> Result<()> {
    let tx = c.transaction()?;
    insert_blob(&tx, recipe)?;
    tx.execute(
        "INSERT OR IGNORE INTO oci_repo_blobs (repo, blob, created) VALUES (?1, ?2, ?3)",
        params![repo.as_str(), recipe.blake3.as_bytes().to_vec(), now],
    )?;
    tx.commit()?;
    Ok(())
}

/// The id of the blob with this SHA-256, if it is linked into `repo`.
fn linked_blob(c: &Connection, repo: &RepoName, digest: &Sha256Digest) -> Result<Option<BlobId>> {
    let b: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT rb.blob FROM oci_repo_blobs rb JOIN blobs b ON b.blake3 = rb.blob
             WHERE rb.repo = ?1 AND b.sha256 = ?2 LIMIT 1",
        )?
        .query_row(params![repo.as_str(), digest.as_bytes().to_vec()], |r| {
            r.get(0)
        })
        .optional()?;
    b.map(|b| id32(&b, "blob id", BlobId::from_bytes))
        .transpose()
}

/// The recipe of the blob with this SHA-256, if it is linked into `repo`.
pub(crate) fn repo_blob(
    c: &Connection,
    repo: &RepoName,
    digest: &Sha256Digest,
) -> Result<Option<BlobRecipe>> {
    match linked_blob(c, repo, digest)? {
        Some(id) => super::artifacts::recipe(c, &id),
        None => Ok(None),
    }
}

/// Whether `blob` is a layer, config or manifest of any repository (an edge may fetch it on
/// demand).
pub(crate) fn is_image_blob(c: &Connection, blob: &BlobId) -> Result<bool> {
    let b = blob.as_bytes().to_vec();
    Ok(c.prepare_cached(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM oci_repo_blobs WHERE blob = ?1)
                     OR EXISTS (SELECT 1 FROM oci_manifests WHERE blob = ?1)",
    )?
    .exists([b])?)
}

/// The recipe of a blob with this SHA-256 linked into any repository (for a mount whose
/// source the caller may read).
pub(crate) fn any_repo_blob(
    c: &Connection,
    digest: &Sha256Digest,
) -> Result<Option<(RepoName, BlobRecipe)>> {
    let r: Option<(String, Vec<u8>)> = c
        .query_row(
            "SELECT rb.repo, b.recipe FROM blobs b JOIN oci_repo_blobs rb ON rb.blob = b.blake3
             WHERE b.sha256 = ?1 ORDER BY rb.repo LIMIT 1",
            [digest.as_bytes().to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match r {
        Some((repo, b)) => match RepoName::parse(&repo) {
            Ok(name) => Ok(Some((name, decode_recipe(&b)?))),
            Err(_) => Ok(None),
        },
        None => Ok(None),
    }
}

/// Unlink a blob from `repo`; returns its id (a GC candidate) if it was linked.
pub(crate) fn unlink_blob(
    c: &mut Connection,
    repo: &RepoName,
    digest: &Sha256Digest,
) -> Result<Option<BlobId>> {
    let tx = c.transaction()?;
    let Some(id) = linked_blob(&tx, repo, digest)? else {
        return Ok(None);
    };
    tx.execute(
        "DELETE FROM oci_repo_blobs WHERE repo = ?1 AND blob = ?2",
        params![repo.as_str(), id.as_bytes().to_vec()],
    )?;
    tx.commit()?;
    Ok(Some(id))
}

/// What [`put_manifest`] did.
#[derive(Debug)]
pub(crate) enum PutManifest {
    /// Stored (or already there), and the tag moved if one was given.
    Stored,
    /// A referenced blob or manifest is not in the repository; nothing was stored.
    Missing(Sha256Digest, RefKind),
}

/// Store a manifest (its bytes already in the chunk store), and point `tag` at it.
pub(crate) fn put_manifest(
    c: &mut Connection,
    repo: &RepoName,
    m: &NewManifest,
    tag: Option<&str>,
    missing: MissingRefs,
    now: i64,
) -> Result<PutManifest> {
    let tx = c.transaction()?;
    let digest = m.recipe.sha256.as_bytes().to_vec();
    for (child, kind) in &m.refs {
        if missing == MissingRefs::All
            || (missing == MissingRefs::Children && *kind == RefKind::Manifest)
        {
            continue;
        }
        let sql = match kind {
            RefKind::Blob => {
                "SELECT 1 FROM oci_repo_blobs rb JOIN blobs b ON b.blake3 = rb.blob
                 WHERE rb.repo = ?1 AND b.sha256 = ?2"
            }
            RefKind::Manifest => "SELECT 1 FROM oci_manifests WHERE repo = ?1 AND digest = ?2",
        };
        if !tx
            .prepare_cached(sql)?
            .exists(params![repo.as_str(), child.as_bytes().to_vec()])?
        {
            return Ok(PutManifest::Missing(*child, *kind));
        }
    }
    insert_blob(&tx, &m.recipe)?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO oci_manifests
             (repo, digest, blob, media_type, artifact_type, subject, annotations, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            repo.as_str(),
            digest,
            m.recipe.blake3.as_bytes().to_vec(),
            m.media_type,
            m.artifact_type,
            m.subject.map(|s| s.as_bytes().to_vec()),
            m.annotations,
            now
        ],
    )?;
    if inserted > 0 {
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO oci_manifest_refs (repo, manifest, child, kind) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (child, kind) in &m.refs {
            ins.execute(params![
                repo.as_str(),
                digest,
                child.as_bytes().to_vec(),
                kind.as_str()
            ])?;
        }
    }
    if let Some(tag) = tag {
        tx.execute(
            "INSERT INTO oci_tags (repo, tag, digest, updated) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated = excluded.updated",
            params![repo.as_str(), tag, digest, now],
        )?;
    }
    tx.commit()?;
    Ok(PutManifest::Stored)
}

/// The manifest a reference names in `repo`.
pub(crate) fn get_manifest(
    c: &Connection,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Option<StoredManifest>> {
    let row: Option<(Vec<u8>, String, Vec<u8>)> = match reference {
        Reference::Digest(d) => c
            .query_row(
                "SELECT m.digest, m.media_type, b.recipe FROM oci_manifests m
                 JOIN blobs b ON b.blake3 = m.blob WHERE m.repo = ?1 AND m.digest = ?2",
                params![repo.as_str(), d.as_bytes().to_vec()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?,
        Reference::Tag(t) => c
            .query_row(
                "SELECT m.digest, m.media_type, b.recipe FROM oci_tags t
                 JOIN oci_manifests m ON m.repo = t.repo AND m.digest = t.digest
                 JOIN blobs b ON b.blake3 = m.blob WHERE t.repo = ?1 AND t.tag = ?2",
                params![repo.as_str(), t],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?,
    };
    row.map(|(d, media_type, recipe)| {
        Ok(StoredManifest {
            digest: digest_of(&d)?,
            media_type,
            recipe: decode_recipe(&recipe)?,
        })
    })
    .transpose()
}

/// Delete a manifest by digest (its tags go with it); returns its blob (a GC candidate).
pub(crate) fn delete_manifest(
    c: &mut Connection,
    repo: &RepoName,
    digest: &Sha256Digest,
) -> Result<Option<BlobId>> {
    let tx = c.transaction()?;
    let b: Option<Vec<u8>> = tx
        .query_row(
            "SELECT blob FROM oci_manifests WHERE repo = ?1 AND digest = ?2",
            params![repo.as_str(), digest.as_bytes().to_vec()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(b) = b else { return Ok(None) };
    tx.execute(
        "DELETE FROM oci_manifests WHERE repo = ?1 AND digest = ?2",
        params![repo.as_str(), digest.as_bytes().to_vec()],
    )?;
    tx.commit()?;
    Ok(Some(id32(&b, "blob id", BlobId::from_bytes)?))
}

/// The digest a tag names and when it was last set or confirmed.
pub(crate) fn tag_row(
    c: &Connection,
    repo: &RepoName,
    tag: &str,
) -> Result<Option<(Sha256Digest, i64)>> {
    let row: Option<(Vec<u8>, i64)> = c
        .prepare_cached("SELECT digest, updated FROM oci_tags WHERE repo = ?1 AND tag = ?2")?
        .query_row(params![repo.as_str(), tag], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(d, u)| Ok((digest_of(&d)?, u))).transpose()
}

/// Mark a tag as confirmed now (its upstream still names the same digest).
pub(crate) fn touch_tag(c: &Connection, repo: &RepoName, tag: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE oci_tags SET updated = ?3 WHERE repo = ?1 AND tag = ?2",
        params![repo.as_str(), tag, now],
    )?;
    Ok(())
}

/// Delete a tag (the manifest stays, reachable by digest); false if there was none.
pub(crate) fn delete_tag(c: &Connection, repo: &RepoName, tag: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM oci_tags WHERE repo = ?1 AND tag = ?2",
        params![repo.as_str(), tag],
    )? > 0)
}

/// Whether the repository holds anything (a blob, a manifest).
pub(crate) fn repo_exists(c: &Connection, repo: &RepoName) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM oci_manifests WHERE repo = ?1)
                 OR EXISTS (SELECT 1 FROM oci_repo_blobs WHERE repo = ?1)",
    )?
    .exists([repo.as_str()])?)
}

/// Tags of `repo` in lexical order, after `last`, at most `n`.
pub(crate) fn tags(
    c: &Connection,
    repo: &RepoName,
    last: Option<&str>,
    n: usize,
) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT tag FROM oci_tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
    )?;
    let rows = st.query_map(
        params![
            repo.as_str(),
            last.unwrap_or(""),
            i64::try_from(n).unwrap_or(i64::MAX)
        ],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Repository names in lexical order, after `last`, at most `n`.
pub(crate) fn catalog(c: &Connection, last: Option<&str>, n: usize) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT repo FROM (SELECT repo FROM oci_manifests UNION SELECT repo FROM oci_repo_blobs)
         WHERE repo > ?1 ORDER BY repo LIMIT ?2",
    )?;
    let rows = st.query_map(
        params![last.unwrap_or(""), i64::try_from(n).unwrap_or(i64::MAX)],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Manifests of `repo` whose subject is `subject`, optionally of one artifact type.
pub(crate) fn referrers(
    c: &Connection,
    repo: &RepoName,
    subject: &Sha256Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Referrer>> {
    let mut st = c.prepare_cached(
        "SELECT m.digest, b.len, m.media_type, m.artifact_type, m.annotations
         FROM oci_manifests m JOIN blobs b ON b.blake3 = m.blob
         WHERE m.repo = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3)
         ORDER BY m.digest",
    )?;
    let rows = st.query_map(
        params![repo.as_str(), subject.as_bytes().to_vec(), artifact_type],
        |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (d, len, media_type, artifact_type, annotations) = row?;
        out.push(Referrer {
            digest: digest_of(&d)?,
            size: super::u64_of(len),
            media_type,
            artifact_type,
            annotations,
        });
    }
    Ok(out)
}

/// Totals for metrics: (repositories, manifests, tags).
pub(crate) fn totals(c: &Connection) -> Result<(u64, u64, u64)> {
    Ok(c.query_row(
        "SELECT (SELECT COUNT(*) FROM (SELECT repo FROM oci_manifests UNION SELECT repo FROM oci_repo_blobs)),
                (SELECT COUNT(*) FROM oci_manifests), (SELECT COUNT(*) FROM oci_tags)",
        [],
        |r| {
            Ok((
                super::u64_of(r.get(0)?),
                super::u64_of(r.get(1)?),
                super::u64_of(r.get(2)?),
            ))
        },
    )?)
}
