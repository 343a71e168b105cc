//! The mirror's tables in the edge database (migration `0002_oci.sql`): the image state last
//! received, tags as served, which digests each repository may serve, and the on-demand cache.
//! Same contract as [`Catalog`]: one writer, blocking calls (async callers use `blocking`).

use std::collections::{BTreeMap, HashSet};

use rusqlite::{params, OptionalExtension};
use sitecast_protocol::wire::ImageState;
use sitecast_protocol::{BlobId, Sha256Digest};

use crate::catalog::{decode, encode, id32, now_secs, Catalog};
use crate::error::Error;

/// A tag as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagRow {
    pub digest: Sha256Digest,
    pub pinned: bool,
    /// Unix seconds of the last change or confirmation.
    pub updated: i64,
}

/// A blob in the on-demand cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachedBlob {
    pub blob: BlobId,
    pub len: u64,
}

fn digest(bytes: &[u8]) -> Result<Sha256Digest, Error> {
    Ok(Sha256Digest::from_bytes(id32("oci digest", bytes)?))
}

#[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
impl Catalog {
    /// The image state last received, if any.
    ///
    /// # Errors
    /// Database failures or an undecodable record.
    pub(crate) fn image_state(&self) -> Result<Option<ImageState>, Error> {
        let b: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT state FROM oci_state WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        b.map(|b| decode("image state", &b)).transpose()
    }

    /// Persist a new image state and make what it pushes servable in its repositories (pinned
    /// links), in one transaction. Tags are published separately ([`Catalog::publish_tags`]).
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn save_image_state(&self, st: &ImageState) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO oci_state (id, state) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            [encode(st)],
        )?;
        tx.execute("UPDATE oci_links SET pinned = 0 WHERE pinned = 1", [])?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO oci_links (repo, digest, media_type, pinned) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (repo, digest) DO UPDATE SET pinned = 1,
                   media_type = coalesce(excluded.media_type, media_type)",
            )?;
            for r in &st.repos {
                for m in &r.manifests {
                    ins.execute(params![
                        r.repo,
                        m.digest.as_bytes().as_slice(),
                        m.media_type
                    ])?;
                    for b in &m.blobs {
                        ins.execute(params![
                            r.repo,
                            b.as_bytes().as_slice(),
                            Option::<String>::None
                        ])?;
                    }
                }
            }
        }
        // Links no longer pushed stay only for what the on-demand cache holds.
        tx.execute(
            "DELETE FROM oci_links WHERE pinned = 0 AND media_type IS NULL
               AND digest NOT IN (SELECT digest FROM oci_cache)",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Set the pushed tags to `tags` (repo, tag → digest): others pinned before are dropped.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn publish_tags(
        &self,
        tags: &BTreeMap<(String, String), Sha256Digest>,
    ) -> Result<usize, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let old: Vec<(String, String, Vec<u8>)> = tx
            .prepare("SELECT repo, tag, digest FROM oci_tags WHERE pinned = 1")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = 0;
        for (repo, tag, d) in &old {
            match tags.get(&(repo.clone(), tag.clone())) {
                Some(new) if new.as_bytes().as_slice() == d.as_slice() => {}
                Some(_) => {}
                None => {
                    tx.execute(
                        "DELETE FROM oci_tags WHERE repo = ?1 AND tag = ?2",
                        params![repo, tag],
                    )?;
                    changed += 1;
                }
            }
        }
        for ((repo, tag), d) in tags {
            let same = old
                .iter()
                .any(|(r, t, od)| r == repo && t == tag && od.as_slice() == d.as_bytes());
            if same {
                continue;
            }
            tx.execute(
                "INSERT INTO oci_tags (repo, tag, digest, pinned, updated) VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, pinned = 1,
                   updated = excluded.updated",
                params![repo, tag, d.as_bytes().as_slice(), now_secs()],
            )?;
            changed += 1;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Every tag served, pinned or not: (repo, tag) → row.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Result<Option<TagRow>, Error> {
        let row: Option<(Vec<u8>, bool, i64)> = self
            .conn()
            .query_row(
                "SELECT digest, pinned, updated FROM oci_tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(d, pinned, updated)| {
            Ok(TagRow {
                digest: digest(&d)?,
                pinned,
                updated,
            })
        })
        .transpose()
    }

    /// Remember a tag resolved on demand (a pushed tag of the same name is left alone).
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn cache_tag(&self, repo: &str, tag: &str, d: &Sha256Digest) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO oci_tags (repo, tag, digest, pinned, updated) VALUES (?1, ?2, ?3, 0, ?4)
             ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest,
               updated = excluded.updated WHERE pinned = 0",
            params![repo, tag, d.as_bytes().as_slice(), now_secs()],
        )?;
        Ok(())
    }

    /// Tags of `repo`, sorted.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn tags_of(&self, repo: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .conn()
            .prepare_cached("SELECT tag FROM oci_tags WHERE repo = ?1 ORDER BY tag")?
            .query_map([repo], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Repositories with anything to serve, sorted.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn repos(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT repo FROM oci_links UNION SELECT repo FROM oci_tags ORDER BY 1",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Let `repo` serve `d` (on demand); a manifest carries its media type.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn link(
        &self,
        repo: &str,
        d: &Sha256Digest,
        media_type: Option<&str>,
    ) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO oci_links (repo, digest, media_type, pinned) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT (repo, digest) DO UPDATE SET
               media_type = coalesce(excluded.media_type, media_type)",
            params![repo, d.as_bytes().as_slice(), media_type],
        )?;
        Ok(())
    }

    /// Whether `repo` may serve `d`; with the stored media type for a manifest.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn linked(
        &self,
        repo: &str,
        d: &Sha256Digest,
    ) -> Result<Option<Option<String>>, Error> {
        Ok(self
            .conn()
            .prepare_cached("SELECT media_type FROM oci_links WHERE repo = ?1 AND digest = ?2")?
            .query_row(params![repo, d.as_bytes().as_slice()], |r| r.get(0))
            .optional()?)
    }

    /// Manifests `repo` may serve, with their media types.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn manifests_of(&self, repo: &str) -> Result<Vec<(Sha256Digest, String)>, Error> {
        let rows: Vec<(Vec<u8>, String)> = self
            .conn()
            .prepare_cached(
                "SELECT digest, media_type FROM oci_links
                 WHERE repo = ?1 AND media_type IS NOT NULL ORDER BY digest",
            )?
            .query_map([repo], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(d, m)| Ok((digest(&d)?, m)))
            .collect()
    }

    /// A blob of the on-demand cache; marks it used now.
    ///
    /// # Errors
    /// Database failures or an undecodable row.
    pub(crate) fn cached_blob(&self, d: &Sha256Digest) -> Result<Option<CachedBlob>, Error> {
        let conn = self.conn();
        let row: Option<(Vec<u8>, i64)> = conn
            .prepare_cached("SELECT blob, len FROM oci_cache WHERE digest = ?1")?
            .query_row([d.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((b, len)) = row else { return Ok(None) };
        conn.prepare_cached("UPDATE oci_cache SET last_used = ?2 WHERE digest = ?1")?
            .execute(params![d.as_bytes().as_slice(), now_secs()])?;
        Ok(Some(CachedBlob {
            blob: BlobId::from_bytes(id32("blob id", &b)?),
            len: len as u64,
        }))
    }

    /// Add a verified blob (its recipe already stored) to the on-demand cache.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn cache_blob(
        &self,
        d: &Sha256Digest,
        blob: &BlobId,
        len: u64,
    ) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO oci_cache (digest, blob, len, last_used) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used",
            params![
                d.as_bytes().as_slice(),
                blob.as_bytes().as_slice(),
                len as i64,
                now_secs()
            ],
        )?;
        Ok(())
    }

    /// Drop least recently used cache entries until it holds at most `max` bytes, sparing
    /// blobs in `spare` (being read, or pinned by a pushed image). Returns the entries removed;
    /// their chunks go at the next garbage collection.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) fn evict(&self, max: u64, spare: &HashSet<BlobId>) -> Result<usize, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let total: i64 = tx.query_row("SELECT coalesce(sum(len), 0) FROM oci_cache", [], |r| {
            r.get(0)
        })?;
        let mut total = total as u64;
        if total <= max {
            return Ok(0);
        }
        let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = tx
            .prepare("SELECT digest, blob, len FROM oci_cache ORDER BY last_used, digest")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut removed = 0;
        for (d, b, len) in rows {
            if total <= max {
                break;
            }
            if spare.contains(&BlobId::from_bytes(id32("blob id", &b)?)) {
                continue;
            }
            tx.execute("DELETE FROM oci_cache WHERE digest = ?1", [&d])?;
            tx.execute(
                "DELETE FROM oci_links WHERE digest = ?1 AND pinned = 0",
                [&d],
            )?;
            total = total.saturating_sub(len as u64);
            removed += 1;
        }
        tx.commit()?;
        Ok(removed)
    }
}
