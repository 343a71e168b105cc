//! Manifests and indexes (`PUT`/`GET`/`HEAD`/`DELETE`), tags, the catalog and referrers.
//!
//! A manifest is parsed with `oci-spec` only to learn what it references; the bytes the client
//! sent are what is stored and served, so the digest is never rewritten and a Docker schema 2
//! manifest stays Docker schema 2.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sitecast_protocol::oci::{parse_digest, Reference, RepoName};
use sitecast_protocol::Sha256Digest;

use super::{read, respond, small_body, Code, OciError, Query, RegResult, Registry};
use crate::core::Core;
use crate::db::oci::{MissingRefs, NewManifest, PutManifest, RefKind};
use crate::db::{self};
use crate::ingest::BlobWriter;
use crate::util::now;

/// Largest manifest accepted (the spec asks registries to take at least 4 MiB).
pub(crate) const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn invalid(message: impl Into<String>) -> OciError {
    OciError::new(Code::ManifestInvalid, message)
}

fn descriptor_digest(d: &Descriptor) -> RegResult<Sha256Digest> {
    parse_digest(d.digest().as_ref()).map_err(|e| invalid(format!("descriptor: {e}")))
}

/// Layers that are not distributed through registries (Windows foreign layers) are not
/// required to be present.
fn non_distributable(d: &Descriptor) -> bool {
    let t = d.media_type().to_string();
    t.contains("foreign") || t.contains("nondistributable")
}

/// What a manifest body references, and its referrers-API fields.
pub(crate) struct Analysis {
    pub(crate) refs: Vec<(Sha256Digest, RefKind)>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) subject: Option<Sha256Digest>,
    pub(crate) annotations: Option<String>,
}

pub(crate) fn analyse(media_type: &str, bytes: &[u8]) -> RegResult<Analysis> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
    if let Some(declared) = value.get("mediaType").and_then(|v| v.as_str()) {
        if declared != media_type {
            return Err(invalid(format!(
                "Content-Type {media_type:?} differs from the manifest's mediaType {declared:?}"
            )));
        }
    }
    let annotations = value
        .get("annotations")
        .filter(|a| a.is_object())
        .map(ToString::to_string);
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_value(value)
                .map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
            if m.schema_version() != 2 {
                return Err(invalid("schemaVersion must be 2"));
            }
            let mut refs = vec![(descriptor_digest(m.config())?, RefKind::Blob)];
            for l in m.layers() {
                let d = descriptor_digest(l)?;
                if !non_distributable(l) {
                    refs.push((d, RefKind::Blob));
                }
            }
            let artifact_type = m
                .artifact_type()
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| Some(m.config().media_type().to_string()));
            let subject = m.subject().as_ref().map(descriptor_digest).transpose()?;
            Ok(Analysis {
                refs,
                artifact_type,
                subject,
                annotations,
            })
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_value(value)
                .map_err(|e| invalid(format!("invalid image index: {e}")))?;
            if i.schema_version() != 2 {
                return Err(invalid("schemaVersion must be 2"));
            }
            let refs = i
                .manifests()
                .iter()
                .map(|d| Ok((descriptor_digest(d)?, RefKind::Manifest)))
                .collect::<RegResult<Vec<_>>>()?;
            let artifact_type = i.artifact_type().as_ref().map(ToString::to_string);
            let subject = i.subject().as_ref().map(descriptor_digest).transpose()?;
            Ok(Analysis {
                refs,
                artifact_type,
                subject,
                annotations,
            })
        }
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}: expected {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST} or {DOCKER_LIST}"
        ))),
    }
}

/// The media type of a manifest upload: `Content-Type`, else the body's `mediaType`.
pub(crate) fn media_type_of(headers: &HeaderMap, bytes: &[u8]) -> RegResult<String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty() && v != "application/octet-stream" && v != "application/json");
    if let Some(ct) = ct {
        return Ok(ct);
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
        .ok_or_else(|| {
            invalid("no Content-Type and no mediaType: cannot tell what this manifest is")
        })
}

/// Store a manifest's bytes in `repo` (and point `tag` at it); returns its subject, if any.
/// `missing` says which references may be absent (see [`MissingRefs`]).
pub(crate) async fn store(
    core: &Arc<Core>,
    repo: &RepoName,
    bytes: &[u8],
    media_type: String,
    tag: Option<&str>,
    missing: MissingRefs,
) -> RegResult<Option<Sha256Digest>> {
    let Analysis {
        refs,
        artifact_type,
        subject,
        annotations,
    } = analyse(&media_type, bytes)?;
    let mut w = BlobWriter::new(core);
    let recipe = match async {
        w.feed(bytes).await?;
        w.finish().await
    }
    .await
    {
        Ok(r) => r,
        Err(e) => {
            w.abandon().await;
            return Err(e.into());
        }
    };
    let m = NewManifest {
        recipe,
        media_type,
        artifact_type,
        subject,
        annotations,
        refs,
    };
    let tag = tag.map(str::to_owned);
    let r2 = repo.clone();
    let res = core
        .db
        .call(move |c| db::oci::put_manifest(c, &r2, &m, tag.as_deref(), missing, now()))
        .await;
    match res {
        Ok(PutManifest::Stored) => w.release(),
        Ok(PutManifest::Missing(d, kind)) => {
            w.abandon().await;
            let what = match kind {
                RefKind::Blob => "blob",
                RefKind::Manifest => "manifest",
            };
            return Err(OciError::new(
                Code::ManifestBlobUnknown,
                format!(
                    "the manifest references {what} {} which is not in {repo}; push it first",
                    d.to_oci()
                ),
            ));
        }
        Err(e) => {
            w.abandon().await;
            return Err(e.into());
        }
    }
    Ok(subject)
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub(crate) async fn put(
    reg: &Arc<Registry>,
    repo: RepoName,
    reference: Reference,
    headers: &HeaderMap,
    body: Body,
) -> RegResult<Response> {
    let bytes = small_body(body, MAX_MANIFEST, "manifest").await?;
    let digest = Sha256Digest::of(&bytes);
    if let Reference::Digest(d) = &reference {
        if *d != digest {
            return Err(OciError::new(
                Code::DigestInvalid,
                format!(
                    "the manifest's digest is {}, not {}",
                    digest.to_oci(),
                    d.to_oci()
                ),
            ));
        }
    }
    let media_type = media_type_of(headers, &bytes)?;
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    let subject = store(
        &reg.core,
        &repo,
        &bytes,
        media_type,
        tag,
        MissingRefs::Refuse,
    )
    .await?;
    tracing::info!(repo = %repo, reference = %reference, digest = %digest.to_oci(), "manifest stored");
    let mut h = vec![
        (
            "location",
            format!("/v2/{repo}/manifests/{}", digest.to_oci()),
        ),
        ("docker-content-digest", digest.to_oci()),
        ("content-length", "0".to_owned()),
    ];
    if let Some(s) = subject {
        h.push(("oci-subject", s.to_oci()));
    }
    Ok(respond(StatusCode::CREATED, &h, Body::empty()))
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the stored bytes and media type.
pub(crate) async fn get(
    reg: &Arc<Registry>,
    repo: RepoName,
    reference: Reference,
    head: bool,
) -> RegResult<Response> {
    let lookup = |repo: RepoName, reference: Reference| async move {
        reg.core
            .db
            .call(move |c| db::oci::get_manifest(c, &repo, &reference))
            .await
    };
    if let Reference::Tag(t) = &reference {
        reg.core.pull.refresh_tag(&reg.core, &repo, t).await?;
    }
    let mut m = lookup(repo.clone(), reference.clone()).await?;
    if m.is_none() && reg.core.pull.manifest(&reg.core, &repo, &reference).await? {
        m = lookup(repo.clone(), reference.clone()).await?;
    }
    let m = m.ok_or_else(|| {
        OciError::new(
            Code::ManifestUnknown,
            format!("manifest {reference} is not in {repo}"),
        )
    })?;
    let headers = [
        ("content-type", m.media_type.clone()),
        ("docker-content-digest", m.digest.to_oci()),
        ("content-length", m.recipe.len.to_string()),
        ("etag", format!("\"{}\"", m.digest.to_oci())),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(read::whole(&reg.core, &m.recipe).await?)
    };
    Ok(respond(StatusCode::OK, &headers, body))
}

/// `DELETE /v2/<name>/manifests/<reference>`: a digest deletes the manifest (and its tags),
/// a tag deletes only the tag.
pub(crate) async fn delete(
    reg: &Arc<Registry>,
    repo: RepoName,
    reference: Reference,
) -> RegResult<Response> {
    let r2 = repo.clone();
    match reference {
        Reference::Digest(d) => {
            let blob = reg
                .core
                .db
                .call(move |c| db::oci::delete_manifest(c, &r2, &d))
                .await?
                .ok_or_else(|| {
                    OciError::new(
                        Code::ManifestUnknown,
                        format!("manifest {} is not in {repo}", d.to_oci()),
                    )
                })?;
            if let Err(e) = reg.core.collect_blob(blob).await {
                tracing::warn!(error = %e, "garbage collection after manifest delete failed");
            }
        }
        Reference::Tag(t) => {
            let t2 = t.clone();
            if !reg
                .core
                .db
                .call(move |c| db::oci::delete_tag(c, &r2, &t2))
                .await?
            {
                return Err(OciError::new(
                    Code::ManifestUnknown,
                    format!("tag {t} is not in {repo}"),
                ));
            }
        }
    }
    Ok(respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}

/// `n` and `last` of a paged list (`n` at most 10,000; default 1,000).
fn paging(q: &Query) -> RegResult<(usize, Option<String>)> {
    let n = match q.get("n") {
        None | Some("") => 1000,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| {
                OciError::new(Code::Unsupported, format!("n={v:?} is not a number"))
                    .with_status(StatusCode::BAD_REQUEST)
            })?
            .min(10_000),
    };
    Ok((n, q.get("last").map(str::to_owned)))
}

fn paged(path: &str, key: &str, name: Option<&RepoName>, items: Vec<String>, n: usize) -> Response {
    let mut h = vec![("content-type", "application/json".to_owned())];
    if n > 0 && items.len() == n {
        if let Some(last) = items.last() {
            let enc =
                percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
            h.push(("link", format!("<{path}?n={n}&last={enc}>; rel=\"next\"")));
        }
    }
    let body = match name {
        Some(r) => serde_json::json!({"name": r.as_str(), key: items}),
        None => serde_json::json!({ key: items }),
    };
    respond(StatusCode::OK, &h, Body::from(body.to_string()))
}

/// `GET /v2/<name>/tags/list?n=&last=`.
pub(crate) async fn tags(reg: &Arc<Registry>, repo: RepoName, q: &Query) -> RegResult<Response> {
    let (n, last) = paging(q)?;
    let r2 = repo.clone();
    let tags = reg
        .core
        .db
        .call(move |c| {
            if !db::oci::repo_exists(c, &r2)? {
                return Ok(None);
            }
            db::oci::tags(c, &r2, last.as_deref(), n).map(Some)
        })
        .await?
        .ok_or_else(|| OciError::new(Code::NameUnknown, format!("repository {repo} is unknown")))?;
    Ok(paged(
        &format!("/v2/{repo}/tags/list"),
        "tags",
        Some(&repo),
        tags,
        n,
    ))
}

/// `GET /v2/_catalog?n=&last=`.
pub(crate) async fn catalog(reg: &Arc<Registry>, q: &Query) -> RegResult<Response> {
    let (n, last) = paging(q)?;
    let repos = reg
        .core
        .db
        .call(move |c| db::oci::catalog(c, last.as_deref(), n))
        .await?;
    Ok(paged("/v2/_catalog", "repositories", None, repos, n))
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: an image index of the manifests whose
/// subject is `digest`.
pub(crate) async fn referrers(
    reg: &Arc<Registry>,
    repo: RepoName,
    subject: Sha256Digest,
    artifact_type: Option<&str>,
) -> RegResult<Response> {
    let filter = artifact_type.filter(|t| !t.is_empty()).map(str::to_owned);
    let f2 = filter.clone();
    let list = reg
        .core
        .db
        .call(move |c| db::oci::referrers(c, &repo, &subject, f2.as_deref()))
        .await?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_oci(),
                "size": r.size,
            });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = t.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut h = vec![("content-type", OCI_INDEX.to_owned())];
    if filter.is_some() {
        h.push(("oci-filters-applied", "artifactType".to_owned()));
    }
    Ok(respond(StatusCode::OK, &h, Body::from(body.to_string())))
}
