//! Images from upstream registries: `POST /api/v1/images/import` (and `sitecast ctl image
//! import`) copies a tag, a digest or every tag of a repository into the origin's registry,
//! all platforms of an index or the chosen ones.
//!
//! Each blob is fetched once: a blob already linked into the target repository is skipped, one
//! stored in any other repository is linked without a transfer, and the rest stream through
//! [`BlobWriter`] (chunked and verified while they arrive; memory flat). Manifests are stored
//! byte-exact, children before the index that names them, and a tag moves only after
//! everything it references is stored.

mod client;
pub(crate) mod pull;

use std::sync::Arc;

use oci_spec::image::ImageIndex;
use serde::{Deserialize, Serialize};
use sitecast_protocol::oci::{parse_digest, ImageRef, Reference, RepoName};
use sitecast_protocol::Sha256Digest;

pub(crate) use client::{Upstream, UpstreamSpec};
pub(crate) use pull::{PullThrough, Pulled};

use crate::core::Core;
use crate::db;
use crate::db::oci::MissingRefs;
use crate::error::{Error, Result};
use crate::ingest::BlobWriter;
use crate::registry::manifests::{self, DOCKER_LIST, MAX_MANIFEST, OCI_INDEX};
use crate::util::now;

/// `POST /api/v1/images/import`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"reference": "registry.example:5000/team/app:1.4", "platforms": ["linux/amd64"]}))]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
    /// `registry.example:5000/team/app:1.4`, `nginx`, `…@sha256:…`.
    pub(crate) reference: String,
    /// `os/arch[/variant]` to keep from an index; empty = every platform.
    #[serde(default)]
    pub(crate) platforms: Vec<String>,
    /// Every tag of the repository (the reference's tag is ignored).
    #[serde(default)]
    pub(crate) all_tags: bool,
    /// Plain HTTP to the upstream.
    #[serde(default)]
    pub(crate) insecure: bool,
    /// Basic credentials for the upstream (also used for its token service).
    #[serde(default)]
    pub(crate) username: Option<String>,
    /// The password of `username`.
    #[serde(default)]
    pub(crate) password: Option<String>,
}

impl ImportRequest {
    /// Every check [`import`] makes before it contacts the upstream: the reference parses, each
    /// platform is `os/arch[/variant]`, and a user name comes with a password.
    pub(crate) fn validate(&self) -> Result<ImageRef> {
        let image = ImageRef::parse(&self.reference).map_err(bad)?;
        for p in &self.platforms {
            let n = p.split('/').count();
            if !(2..=3).contains(&n) || p.split('/').any(str::is_empty) {
                return Err(bad(format!(
                    "platform {p:?}: expected os/arch or os/arch/variant"
                )));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(bad("username and password go together"));
        }
        Ok(image)
    }
}

/// One imported tag or digest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Imported {
    /// Repository at the origin.
    pub(crate) repository: String,
    /// Tag, if imported by tag.
    pub(crate) tag: Option<String>,
    /// Digest of the top-level manifest or index.
    pub(crate) digest: String,
    /// Its media type.
    pub(crate) media_type: String,
    /// Manifests stored (an index and its chosen platforms count each).
    pub(crate) manifests: u64,
    /// Blobs fetched from the upstream.
    pub(crate) blobs_fetched: u64,
    /// The bytes of the blobs fetched.
    pub(crate) bytes_fetched: u64,
    /// Blobs already at the origin (no transfer).
    pub(crate) blobs_reused: u64,
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::BadRequest(e.to_string())
}

fn reg_err(e: crate::registry::OciError) -> Error {
    Error::Upstream(e.message().to_owned())
}

/// Run an import.
/// Progress events of an import (`{"event":"blob","digest","size"}`, then
/// `{"event":"bytes","n"}` about every MiB), for a streamed answer.
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<serde_json::Value>;

pub(crate) async fn import(
    core: &Arc<Core>,
    req: ImportRequest,
    progress: Option<Progress>,
) -> Result<Vec<Imported>> {
    let image = req.validate()?;
    let credentials = match (req.username, req.password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err(bad("username and password go together")),
    };
    let up = Upstream::new(UpstreamSpec::for_host(
        &image.host,
        req.insecure,
        credentials,
    ))?;
    let refs = if req.all_tags {
        up.tags(&image.path)
            .await?
            .into_iter()
            .filter(|t| sitecast_protocol::oci::tag_ok(t))
            .map(Reference::Tag)
            .collect()
    } else {
        vec![image.reference.clone()]
    };
    let repo = image.repo();
    let mut out = Vec::new();
    for reference in refs {
        let imp = Importer {
            core,
            up: &up,
            path: &image.path,
            repo: &repo,
            platforms: &req.platforms,
            progress: progress.as_ref(),
        };
        out.push(imp.one(&reference).await?);
    }
    Ok(out)
}

struct Importer<'a> {
    core: &'a Arc<Core>,
    up: &'a Upstream,
    path: &'a str,
    repo: &'a RepoName,
    platforms: &'a [String],
    progress: Option<&'a Progress>,
}

#[derive(Default)]
struct Counts {
    manifests: u64,
    fetched: u64,
    bytes: u64,
    reused: u64,
}

impl Importer<'_> {
    async fn one(&self, reference: &Reference) -> Result<Imported> {
        let (bytes, media_type) = self.up.manifest(self.path, reference, MAX_MANIFEST).await?;
        let digest = Sha256Digest::of(&bytes);
        let mut counts = Counts::default();
        let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
        if is_index {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Upstream(format!("invalid index: {e}")))?;
            let mut kept = 0;
            for d in index.manifests() {
                let wanted = self.platforms.is_empty()
                    || d.platform().as_ref().is_some_and(|p| {
                        let base = format!("{}/{}", p.os(), p.architecture());
                        self.platforms.iter().any(|want| {
                            *want == base
                                || p.variant()
                                    .as_ref()
                                    .is_some_and(|v| *want == format!("{base}/{v}"))
                        })
                    });
                if !wanted {
                    continue;
                }
                let child = parse_digest(d.digest().as_ref())
                    .map_err(|e| Error::Upstream(e.to_string()))?;
                self.manifest(&child, &mut counts).await?;
                kept += 1;
            }
            if kept == 0 {
                return Err(bad(format!(
                    "no platform of {} matches {:?}",
                    reference, self.platforms
                )));
            }
        } else {
            self.blobs_of(&media_type, &bytes, &mut counts).await?;
        }
        let tag = match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        };
        manifests::store(
            self.core,
            self.repo,
            &bytes,
            media_type.clone(),
            tag.as_deref(),
            if is_index && !self.platforms.is_empty() {
                MissingRefs::Children
            } else {
                MissingRefs::Refuse
            },
        )
        .await
        .map_err(reg_err)?;
        counts.manifests += 1;
        tracing::info!(repo = %self.repo, reference = %reference, digest = %digest.to_oci(),
            fetched = counts.fetched, bytes = counts.bytes, reused = counts.reused, "image imported");
        Ok(Imported {
            repository: self.repo.to_string(),
            tag,
            digest: digest.to_oci(),
            media_type,
            manifests: counts.manifests,
            blobs_fetched: counts.fetched,
            bytes_fetched: counts.bytes,
            blobs_reused: counts.reused,
        })
    }

    /// A platform manifest of an index, with its blobs.
    async fn manifest(&self, digest: &Sha256Digest, counts: &mut Counts) -> Result<()> {
        let (bytes, media_type) = self
            .up
            .manifest(self.path, &Reference::Digest(*digest), MAX_MANIFEST)
            .await?;
        self.blobs_of(&media_type, &bytes, counts).await?;
        manifests::store(
            self.core,
            self.repo,
            &bytes,
            media_type,
            None,
            MissingRefs::Refuse,
        )
        .await
        .map_err(reg_err)?;
        counts.manifests += 1;
        Ok(())
    }

    async fn blobs_of(&self, media_type: &str, bytes: &[u8], counts: &mut Counts) -> Result<()> {
        let a = manifests::analyse(media_type, bytes).map_err(reg_err)?;
        for (d, kind) in a.refs {
            if kind == db::oci::RefKind::Blob {
                self.blob(&d, counts).await?;
            }
        }
        Ok(())
    }

    /// Make one blob present in the repository: already there, linked from another
    /// repository, or fetched.
    async fn blob(&self, digest: &Sha256Digest, counts: &mut Counts) -> Result<()> {
        let (repo, d) = (self.repo.clone(), *digest);
        let known = self
            .core
            .db
            .call(move |c| {
                if db::oci::repo_blob(c, &repo, &d)?.is_some() {
                    return Ok(Some(true));
                }
                match db::oci::any_repo_blob(c, &d)? {
                    Some((_, recipe)) => {
                        db::oci::link_blob(c, &repo, &recipe, now())?;
                        Ok(Some(false))
                    }
                    None => Ok(None),
                }
            })
            .await?;
        if known.is_some() {
            counts.reused += 1;
            return Ok(());
        }
        let resp = self.up.blob(self.path, digest).await?;
        let progress = self.progress.cloned();
        if let Some(p) = &progress {
            let _ = p.send(
                serde_json::json!({"event": "blob", "digest": digest.to_oci(),
                                              "size": resp.content_length()}),
            );
        }
        let mut unreported = 0u64;
        let stream = futures::StreamExt::inspect(resp.bytes_stream(), move |piece| {
            if let (Some(p), Ok(b)) = (&progress, piece) {
                unreported += b.len() as u64;
                if unreported >= 1 << 20 {
                    let _ = p.send(serde_json::json!({"event": "bytes", "n": unreported}));
                    unreported = 0;
                }
            }
        });
        let mut w = BlobWriter::new(self.core);
        let limit = self.core.cfg.max_upload;
        if let Err(e) = w.feed_stream(stream, limit).await {
            w.abandon().await;
            return Err(match e {
                Error::BadRequest(m) => Error::Upstream(format!("blob {}: {m}", digest.to_oci())),
                e => e,
            });
        }
        let recipe = match w.finish().await {
            Ok(r) => r,
            Err(e) => {
                w.abandon().await;
                return Err(e);
            }
        };
        if recipe.sha256 != *digest {
            w.abandon().await;
            return Err(Error::Upstream(format!(
                "blob {} arrived with digest {}; nothing stored",
                digest.to_oci(),
                recipe.sha256.to_oci()
            )));
        }
        let (repo, len) = (self.repo.clone(), recipe.len);
        let linked = self
            .core
            .db
            .call(move |c| db::oci::link_blob(c, &repo, &recipe, now()))
            .await;
        match linked {
            Ok(()) => w.release(),
            Err(e) => {
                w.abandon().await;
                return Err(e);
            }
        }
        counts.fetched += 1;
        counts.bytes += len;
        Ok(())
    }
}
