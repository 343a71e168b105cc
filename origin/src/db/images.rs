//! Images in pushes: which manifests and blobs an image selector names, and the image state a
//! site is sent.
//!
//! An image travels like artifacts do: its manifests (and an index's pushed platform
//! manifests) and every blob they reference become push artifacts at
//! [`oci::blob_path`]`(digest)`, so they are chunk-deduplicated, paced, resumed, verified
//! (the artifact SHA-256 is the OCI digest) and counted in `push show` like any file. What
//! makes them an image again at the site is the [`ImageState`]: per repository, the pushed
//! tags and what each manifest references, from which the edge decides when a tag may be
//! published.
//!
//! Selectors: `REPO:TAG`, `REPO@sha256:…`, and `REPO:PATTERN` where the pattern has `*` or
//! `?` (`REPO:*` is every tag). A bare `REPO` means `REPO:latest`, as for `docker pull`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::oci::{self, ImageRef, Reference, RepoName};
use sitecast_protocol::wire::{ImageManifest, ImageRepo, ImageState, ImageTag};
use sitecast_protocol::Sha256Digest;

use super::id32;
use crate::error::{Error, Result};

/// A pseudo-artifact of an image: one blob or manifest at its reserved path.
pub(crate) struct ImageBlob {
    pub(crate) path: String,
    pub(crate) blob: Vec<u8>,
    pub(crate) len: i64,
    pub(crate) sha256: Vec<u8>,
}

/// What a push's image selectors resolved to.
#[derive(Default)]
pub(crate) struct ResolvedImages {
    /// Every manifest and blob to send.
    pub(crate) blobs: Vec<ImageBlob>,
    /// `(repo, tag or "", manifest digest)` rows for `push_images`.
    pub(crate) images: Vec<(String, String, Sha256Digest)>,
}

/// `*` and `?` glob match (no character classes).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Split a selector into its repository and either a reference or a tag pattern.
fn parse_selector(s: &str) -> Result<(RepoName, std::result::Result<Reference, String>)> {
    let bad = |e: oci::OciNameError| Error::BadRequest(format!("image {s:?}: {e}"));
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    if !s.contains('@') {
        if let Some(i) = s[slash..].rfind(':') {
            let pattern = &s[slash + i + 1..];
            if pattern.contains(['*', '?']) {
                let r = ImageRef::parse(&s[..slash + i]).map_err(bad)?;
                return Ok((r.repo(), Err(pattern.to_owned())));
            }
        }
    }
    let r = ImageRef::parse(s).map_err(bad)?;
    Ok((r.repo(), Ok(r.reference)))
}

fn digest_of(b: &[u8]) -> Result<Sha256Digest> {
    id32(b, "oci digest", Sha256Digest::from_bytes)
}

/// Resolve image selectors to the manifests and blobs to send (see the module docs).
pub(crate) fn resolve(c: &Connection, selectors: &[String]) -> Result<ResolvedImages> {
    let mut out = ResolvedImages::default();
    let mut paths = BTreeSet::new();
    for s in selectors {
        let (repo, sel) = parse_selector(s)?;
        let roots: Vec<(String, Sha256Digest)> = match sel {
            Ok(Reference::Digest(d)) => vec![(String::new(), d)],
            Ok(Reference::Tag(t)) => {
                let d: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT digest FROM oci_tags WHERE repo = ?1 AND tag = ?2",
                        params![repo.as_str(), t],
                        |r| r.get(0),
                    )
                    .optional()?;
                match d {
                    Some(d) => vec![(t, digest_of(&d)?)],
                    None => vec![],
                }
            }
            Err(pattern) => {
                let mut st = c.prepare_cached(
                    "SELECT tag, digest FROM oci_tags WHERE repo = ?1 ORDER BY tag",
                )?;
                let rows: Vec<(String, Vec<u8>)> = st
                    .query_map([repo.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                rows.into_iter()
                    .filter(|(t, _)| glob(&pattern, t))
                    .map(|(t, d)| Ok((t, digest_of(&d)?)))
                    .collect::<Result<_>>()?
            }
        };
        if roots.is_empty() {
            return Err(Error::BadRequest(format!(
                "image {s:?} matches nothing at the origin (push or import it first)"
            )));
        }
        for (tag, digest) in roots {
            closure(c, &repo, &digest, &mut out.blobs, &mut paths, s)?;
            out.images.push((repo.as_str().to_owned(), tag, digest));
        }
    }
    Ok(out)
}

/// Add a manifest, what it references and (for an index) its stored children.
fn closure(
    c: &Connection,
    repo: &RepoName,
    digest: &Sha256Digest,
    out: &mut Vec<ImageBlob>,
    seen: &mut BTreeSet<String>,
    selector: &str,
) -> Result<()> {
    let Some(m) = manifest(c, repo, digest)? else {
        return Err(Error::BadRequest(format!(
            "image {selector:?}: manifest {} is not in {repo}",
            digest.to_oci()
        )));
    };
    add(c, &m.digest, "manifest", out, seen, selector)?;
    for b in &m.blobs {
        add(c, b, "blob", out, seen, selector)?;
    }
    for child in &m.children {
        closure(c, repo, child, out, seen, selector)?;
    }
    Ok(())
}

fn add(
    c: &Connection,
    digest: &Sha256Digest,
    what: &str,
    out: &mut Vec<ImageBlob>,
    seen: &mut BTreeSet<String>,
    selector: &str,
) -> Result<()> {
    let path = oci::blob_path(digest).to_string();
    if !seen.insert(path.clone()) {
        return Ok(());
    }
    let row: Option<(Vec<u8>, i64)> = c
        .prepare_cached("SELECT blake3, len FROM blobs WHERE sha256 = ?1 LIMIT 1")?
        .query_row([digest.as_bytes().to_vec()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((blob, len)) = row else {
        return Err(Error::BadRequest(format!(
            "image {selector:?}: {what} {} is not stored at the origin (a pull-through image \
             is only partly cached; import it with `ctl image import` first)",
            digest.to_oci()
        )));
    };
    out.push(ImageBlob {
        path,
        blob,
        len,
        sha256: digest.as_bytes().to_vec(),
    });
    Ok(())
}

/// A manifest of `repo` as the edge is told about it (pushes and on-demand resolution):
/// children are only those stored.
pub(crate) fn manifest(
    c: &Connection,
    repo: &RepoName,
    digest: &Sha256Digest,
) -> Result<Option<ImageManifest>> {
    let media_type: Option<String> = c
        .prepare_cached("SELECT media_type FROM oci_manifests WHERE repo = ?1 AND digest = ?2")?
        .query_row(params![repo.as_str(), digest.as_bytes().to_vec()], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(media_type) = media_type else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "SELECT r.child, r.kind, EXISTS (SELECT 1 FROM oci_manifests m
                                          WHERE m.repo = r.repo AND m.digest = r.child)
         FROM oci_manifest_refs r WHERE r.repo = ?1 AND r.manifest = ?2",
    )?;
    let rows: Vec<(Vec<u8>, String, bool)> = st
        .query_map(params![repo.as_str(), digest.as_bytes().to_vec()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut m = ImageManifest {
        digest: *digest,
        media_type,
        blobs: Vec::new(),
        children: Vec::new(),
    };
    for (child, kind, stored) in rows {
        let d = digest_of(&child)?;
        match kind.as_str() {
            "manifest" if stored => m.children.push(d),
            "manifest" => {}
            _ => m.blobs.push(d),
        }
    }
    m.blobs.sort();
    m.children.sort();
    Ok(Some(m))
}

/// Record a push's images.
pub(crate) fn insert(
    c: &Connection,
    push: i64,
    images: &[(String, String, Sha256Digest)],
) -> Result<()> {
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO push_images (push, repo, tag, digest) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (repo, tag, digest) in images {
        st.execute(params![push, repo, tag, digest.as_bytes().to_vec()])?;
    }
    Ok(())
}

/// A push's images as `repo:tag` / `repo@digest`.
pub(crate) fn of_push(c: &Connection, push: i64) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT repo, tag, digest FROM push_images WHERE push = ?1 ORDER BY repo, tag, digest",
    )?;
    let rows: Vec<(String, String, Vec<u8>)> = st
        .query_map([push], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(repo, tag, d)| {
            let d = digest_of(&d)?;
            Ok(if tag.is_empty() {
                format!("{repo}@{}", d.to_oci())
            } else {
                format!("{repo}:{tag}@{}", d.to_oci())
            })
        })
        .collect()
}

/// The image state of `site` at desired revision `revision`, or `None` if no image was ever
/// pushed to it. The newest push wins for a tag; manifests deleted at the origin since are
/// left out (their blobs still travel, as push artifacts).
pub(crate) fn site_state(c: &Connection, site: &str, revision: u64) -> Result<Option<ImageState>> {
    let mut st = c.prepare_cached(
        "SELECT pi.repo, pi.tag, pi.digest FROM push_images pi
         JOIN push_sites ps ON ps.push = pi.push WHERE ps.site = ?1 AND ps.state <> 'cancelled'
           AND ps.site_deleted IS NULL AND ps.released IS NOT NULL ORDER BY pi.push DESC",
    )?;
    let rows: Vec<(String, String, Vec<u8>)> = st
        .query_map([site], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    // repo -> (tags, root digests)
    let mut repos: BTreeMap<String, (BTreeMap<String, Sha256Digest>, BTreeSet<Sha256Digest>)> =
        BTreeMap::new();
    for (repo, tag, d) in rows {
        let d = digest_of(&d)?;
        let entry = repos.entry(repo).or_default();
        if !tag.is_empty() {
            if entry.0.contains_key(&tag) {
                continue; // an older push of this tag
            }
            entry.0.insert(tag, d);
        }
        entry.1.insert(d);
    }
    let mut out = ImageState {
        revision,
        repos: Vec::new(),
    };
    for (repo, (tags, roots)) in repos {
        let Ok(name) = RepoName::parse(&repo) else {
            continue;
        };
        let mut manifests: BTreeMap<Sha256Digest, ImageManifest> = BTreeMap::new();
        let mut todo: Vec<Sha256Digest> = roots.into_iter().collect();
        while let Some(d) = todo.pop() {
            if manifests.contains_key(&d) {
                continue;
            }
            if let Some(m) = manifest(c, &name, &d)? {
                todo.extend(m.children.iter().copied());
                manifests.insert(d, m);
            }
        }
        out.repos.push(ImageRepo {
            repo,
            tags: tags
                .into_iter()
                .filter(|(_, d)| manifests.contains_key(d))
                .map(|(tag, digest)| ImageTag { tag, digest })
                .collect(),
            manifests: manifests.into_values().collect(),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", "1.27"));
        assert!(glob("1.*", "1.27"));
        assert!(!glob("1.*", "2.0"));
        assert!(glob("1.2?", "1.27"));
        assert!(glob("*-alpine", "1.27-alpine"));
        assert!(!glob("*-alpine", "1.27"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }
}
