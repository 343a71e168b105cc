//! The mirror's read endpoints: manifests, blobs (with Range), tags, catalog, referrers.
//!
//! A manifest by tag: a pushed tag answers from the site without asking anyone; a tag learned
//! on demand is asked again of the origin when older than `oci.tag_ttl`, and its last known
//! digest answers when the origin cannot be reached. A manifest or blob the site lacks is
//! fetched on demand ([`super::ondemand`]); a blob streams to the client while it arrives.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{ACCEPT, CONTENT_RANGE, LINK, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use sitecast_protocol::oci::{parse_digest, Reference};
use sitecast_protocol::{ArtifactManifest, Sha256Digest};

use super::auth::{self, Caller};
use super::error::{Code, OciError, OciResult};
use super::ondemand::{self, as_manifest, Miss};
use super::{query, Repo};
use crate::core::Core;
use crate::error::blocking;
use crate::vfs::{Content, READ_BATCH_BYTES};

/// Batches of about [`READ_BATCH_BYTES`] read ahead of the one being sent.
const READ_AHEAD: usize = 3;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn respond(status: StatusCode, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut r = (status, body).into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

fn miss(code: Code, what: &str, m: &Miss) -> OciError {
    // Every miss is a 404, so containerd moves on to its next host.
    OciError::new(code, format!("{what}: {m}")).with_status(StatusCode::NOT_FOUND)
}

/// `GET /v2/`.
pub(crate) fn base(core: &Core, headers: &HeaderMap, caller: &Caller) -> OciResult<Response> {
    let anonymous_ok = core
        .site_config()
        .grants
        .iter()
        .any(|g| g.principal == sitecast_protocol::Principal::Anonymous && g.permissions.read);
    if caller.user.is_none() && caller.repos.is_none() && !anonymous_ok {
        return Err(auth::challenge(headers, None, "authentication required"));
    }
    Ok(respond(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        Body::from("{}"),
    ))
}

/// What the site holds of `d` for `repo`, in one look-up: the media type it was linked with
/// (manifests have one) and where its bytes are. `None` when `repo` may not serve it or the
/// bytes are not here.
async fn local(
    core: &Arc<Core>,
    repo: &str,
    d: Sha256Digest,
) -> OciResult<Option<(Option<String>, ArtifactManifest)>> {
    let catalog = core.catalog.clone();
    let repo = repo.to_owned();
    Ok(blocking("look up blob", move || {
        let Some(media_type) = catalog.linked(&repo, &d)? else {
            return Ok(None);
        };
        if let Some(m) = catalog.image_blob(&d) {
            return Ok(Some((media_type, m)));
        }
        Ok(catalog
            .cached_blob(&d)?
            .map(|c| (media_type, as_manifest(&d, c.blob, c.len))))
    })
    .await?)
}

/// Where a blob's bytes are at the site, if they are (see [`local`]).
async fn local_blob(
    core: &Arc<Core>,
    repo: &str,
    d: Sha256Digest,
) -> OciResult<Option<ArtifactManifest>> {
    Ok(local(core, repo, d).await?.map(|(_, m)| m))
}

/// A manifest's digest, media type and bytes, from the site or on demand.
async fn manifest_bytes(
    core: &Arc<Core>,
    repo: &Repo,
    reference: &Reference,
) -> OciResult<(Sha256Digest, String, Bytes)> {
    let name = repo.name.as_str().to_owned();
    let metrics = core.metrics.repo(&name);
    // 1. The digest a tag names, if the site knows it and need not ask.
    let mut stale: Option<Sha256Digest> = None;
    let digest = match reference {
        Reference::Digest(d) => Some(*d),
        Reference::Tag(t) => {
            let (catalog, n, t) = (core.catalog.clone(), name.clone(), t.clone());
            let row = blocking("look up tag", move || catalog.tag(&n, &t)).await?;
            // Learned times are whole seconds: a tag is fresh for at least `tag_ttl` (rounded
            // up to a second) and at most one second more, never asked again early.
            let ttl = core.cfg.oci.tag_ttl;
            let ttl = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
                .unwrap_or(i64::MAX);
            match row {
                Some(r) if r.pinned || crate::catalog::now_secs() - r.updated <= ttl => {
                    Some(r.digest)
                }
                Some(r) => {
                    stale = Some(r.digest);
                    None
                }
                None => None,
            }
        }
    };
    // 2. The bytes, if the site holds them.
    if let Some(d) = digest {
        if let Some(found) = local_manifest(core, &name, d).await? {
            metrics.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(found);
        }
    }
    // 3. On demand.
    metrics.misses.fetch_add(1, Ordering::Relaxed);
    let wanted = digest.map_or_else(|| reference.to_string(), |d| d.to_oci());
    let resolved = ondemand::resolve(core, &name, &wanted).await;
    let (manifest, recipe) = match resolved {
        Ok(r) => r,
        Err(m) => {
            if let Some(d) = stale {
                // The origin is unreachable: the digest the site last knew.
                if let Some(found) = local_manifest(core, &name, d).await? {
                    tracing::info!(repo = %name, reference = %reference, error = %m,
                        "serving the last known digest of a tag");
                    return Ok(found);
                }
            }
            return Err(miss(
                Code::ManifestUnknown,
                &format!("manifest {reference} of {name}"),
                &m,
            ));
        }
    };
    if let Reference::Digest(d) = reference {
        if manifest.digest != *d {
            return Err(OciError::internal("the origin answered another manifest"));
        }
    }
    let d = manifest.digest;
    let mut f = ondemand::flight(core, &name, d, Some(recipe));
    let limit = core.cfg.oci.miss_timeout;
    tokio::time::timeout(limit, ondemand::wait_ready(&mut f, 0, true))
        .await
        .map_err(|_| miss(Code::ManifestUnknown, "manifest", &Miss::Timeout(limit)))?
        .map_err(|m| miss(Code::ManifestUnknown, "manifest", &m))?;
    {
        let (catalog, n, mt) = (
            core.catalog.clone(),
            name.clone(),
            manifest.media_type.clone(),
        );
        let tag = match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        };
        blocking("remember manifest", move || {
            catalog.link(&n, &d, Some(&mt))?;
            if let Some(t) = tag {
                catalog.cache_tag(&n, &t, &d)?;
            }
            Ok(())
        })
        .await?;
    }
    let m = local_blob(core, &name, d)
        .await?
        .ok_or_else(|| OciError::internal("manifest vanished after its fetch"))?;
    let bytes = read_all(core, &m).await?;
    if !INDEX_TYPES.contains(&manifest.media_type.as_str()) {
        ondemand::prefetch(core, &name, &bytes);
    }
    Ok((d, manifest.media_type, bytes))
}

async fn local_manifest(
    core: &Arc<Core>,
    repo: &str,
    d: Sha256Digest,
) -> OciResult<Option<(Sha256Digest, String, Bytes)>> {
    match local(core, repo, d).await? {
        Some((Some(mt), m)) => Ok(Some((d, mt, read_all(core, &m).await?))),
        _ => Ok(None),
    }
}

async fn read_all(core: &Arc<Core>, m: &ArtifactManifest) -> OciResult<Bytes> {
    let content = Content::open(core, m)
        .await
        .map_err(|e| OciError::internal(e.to_string()))?;
    let chunks = content
        .chunk_range(0, content.chunks())
        .await
        .map_err(|e| OciError::internal(e.to_string()))?;
    let mut out = Vec::with_capacity(usize::try_from(m.len).unwrap_or(0));
    for c in chunks {
        out.extend_from_slice(&c);
    }
    Ok(out.into())
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let values: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .collect();
    values.is_empty() || values.iter().any(|v| *v == media_type || *v == "*/*")
}

/// The child of an index for `linux/amd64` (or the first), for a client that accepts no
/// index type.
pub(crate) fn default_child(index: &[u8]) -> Option<Sha256Digest> {
    let v: serde_json::Value = serde_json::from_slice(index).ok()?;
    let ms = v.get("manifests")?.as_array()?;
    let platform = |m: &serde_json::Value, os: &str, arch: &str| {
        m.pointer("/platform/os").and_then(|x| x.as_str()) == Some(os)
            && m.pointer("/platform/architecture").and_then(|x| x.as_str()) == Some(arch)
    };
    let pick = ms
        .iter()
        .find(|m| platform(m, "linux", "amd64"))
        .or_else(|| ms.first())?;
    parse_digest(pick.get("digest")?.as_str()?).ok()
}

/// `GET|HEAD /v2/<name>/manifests/<reference>`.
pub(crate) async fn manifest(
    core: &Arc<Core>,
    repo: &Repo,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> OciResult<Response> {
    // A reference that is no tag or digest names nothing here: 404, as the spec's pull
    // workflow expects (a malformed digest stays a 400 DIGEST_INVALID).
    let reference = match Reference::parse(reference) {
        Ok(r) => r,
        Err(sitecast_protocol::oci::OciNameError::Tag(t)) => {
            return Err(OciError::new(
                Code::ManifestUnknown,
                format!("{t:?} is not a tag or digest of {}", repo.name),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let (mut d, mut media_type, mut bytes) = manifest_bytes(core, repo, &reference).await?;
    if !accepts(headers, &media_type) {
        let child = INDEX_TYPES
            .contains(&media_type.as_str())
            .then(|| default_child(&bytes))
            .flatten();
        let Some(child) = child else {
            return Err(OciError::new(
                Code::ManifestUnknown,
                format!(
                    "manifest {reference} is a {media_type}, which the request does not accept"
                ),
            ));
        };
        (d, media_type, bytes) = manifest_bytes(core, repo, &Reference::Digest(child)).await?;
    }
    let hdrs = [
        ("content-type", media_type),
        ("docker-content-digest", d.to_oci()),
        ("content-length", bytes.len().to_string()),
        ("etag", format!("\"{}\"", d.to_oci())),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Ok(respond(StatusCode::OK, &hdrs, body))
}

/// `GET|HEAD /v2/<name>/blobs/<digest>`, with one `Range`.
pub(crate) async fn blob(
    core: &Arc<Core>,
    repo: &Repo,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> OciResult<Response> {
    let d = parse_digest(digest)?;
    let name = repo.name.as_str().to_owned();
    let metrics = core.metrics.repo(&name);
    let (m, mut flight) = match local_blob(core, &name, d).await? {
        Some(m) => {
            metrics.hits.fetch_add(1, Ordering::Relaxed);
            (m, None)
        }
        None => {
            metrics.misses.fetch_add(1, Ordering::Relaxed);
            let mut f = ondemand::flight(core, &name, d, None);
            let recipe = ondemand::recipe_of(core, &mut f)
                .await
                .map_err(|m| miss(Code::BlobUnknown, &format!("blob {}", d.to_oci()), &m))?;
            (as_manifest(&d, recipe.blake3, recipe.len), Some(f))
        }
    };
    let len = m.len;
    let range = headers.get(RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range.map(|r| crate::http::parse_range(r, len)) {
        None | Some(crate::http::RangeReq::Full) => (StatusCode::OK, 0, len),
        Some(crate::http::RangeReq::Part(a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Some(crate::http::RangeReq::Unsatisfiable) => {
            return Err(
                OciError::new(Code::BlobUnknown, "requested range not satisfiable")
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(CONTENT_RANGE, format!("bytes */{len}")),
            );
        }
    };
    let mut hdrs = vec![
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", d.to_oci()),
        ("accept-ranges", "bytes".to_owned()),
        ("content-length", (end - start).to_string()),
        ("etag", format!("\"{}\"", d.to_oci())),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        hdrs.push(("content-range", format!("bytes {start}-{}/{len}", end - 1)));
    }
    if head || start == end {
        return Ok(respond(status, &hdrs, Body::empty()));
    }
    let content = Arc::new(
        Content::open(core, &m)
            .await
            .map_err(|e| OciError::internal(e.to_string()))?,
    );
    let body = stream(core, content, start, end, flight.take(), &name);
    Ok(respond(status, &hdrs, body))
}

/// Bytes `start..end` of `content`, batch by batch; with a flight, each batch waits until its
/// chunks are stored, and the last until the whole blob is verified.
fn stream(
    core: &Arc<Core>,
    content: Arc<Content>,
    start: u64,
    end: u64,
    flight: Option<ondemand::Flight>,
    repo: &str,
) -> Body {
    let (Some(first), Some(last)) = (content.chunk_at(start), content.chunk_at(end - 1)) else {
        return Body::empty();
    };
    let batches = content.batches(first..last + 1, READ_BATCH_BYTES);
    let n = batches.len();
    let served = core.metrics.repo(repo);
    let http = core.clone();
    let s = futures::stream::iter(batches.into_iter().enumerate())
        .map(move |(i, (from, to))| {
            let content = content.clone();
            let mut flight = flight.clone();
            async move {
                if let Some(f) = flight.as_mut() {
                    ondemand::wait_ready(f, to, i + 1 == n)
                        .await
                        .map_err(|m| std::io::Error::other(m.to_string()))?;
                }
                let pieces = content
                    .range_pieces(from, to, start, end)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok::<_, std::io::Error>(futures::stream::iter(
                    pieces.into_iter().map(Ok::<Bytes, std::io::Error>),
                ))
            }
        })
        // The next batches are read (and verified) while this one is sent.
        .buffered(READ_AHEAD)
        .try_flatten()
        .inspect_ok(move |piece: &Bytes| {
            let n = piece.len() as u64;
            served.bytes_served.fetch_add(n, Ordering::Relaxed);
            http.metrics
                .http_bytes_served
                .fetch_add(n, Ordering::Relaxed);
        });
    Body::from_stream(s)
}

fn page(all: Vec<String>, q: Option<&str>) -> (Vec<String>, bool) {
    let last = query(q, "last");
    let n = query(q, "n").and_then(|n| n.parse::<usize>().ok());
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    (items, more)
}

/// `GET /v2/<name>/tags/list` with `n` and `last`: the site's tags and, while the site is
/// online, the origin's too (asked within `oci.miss_timeout`), as a mirror lists what its
/// upstream holds; any of them resolves, on demand when the site lacks it.
pub(crate) async fn tags(core: &Arc<Core>, repo: &Repo, q: Option<&str>) -> OciResult<Response> {
    let (catalog, n) = (core.catalog.clone(), repo.name.as_str().to_owned());
    let (mut tags, mut known) = blocking("list tags", move || {
        let tags = catalog.tags_of(&n)?;
        let known = !tags.is_empty() || catalog.repos()?.contains(&n);
        Ok((tags, known))
    })
    .await?;
    match ondemand::tags(core, repo.name.as_str()).await {
        Ok(theirs) => {
            known |= !theirs.is_empty();
            tags.extend(theirs);
            tags.sort_unstable();
            tags.dedup();
        }
        Err(Miss::Offline) => {}
        Err(e) => {
            tracing::debug!(repo = %repo.name, error = %e, "tags: the origin's list is left out");
        }
    }
    if !known {
        return Err(OciError::new(
            Code::NameUnknown,
            format!("repository {} is not at this site", repo.name),
        ));
    }
    let (items, more) = page(tags, q);
    let mut r =
        axum::Json(serde_json::json!({"name": repo.name.as_str(), "tags": items})).into_response();
    if more {
        if let Some(l) = items.last() {
            let n = query(q, "n").unwrap_or_default();
            let link = format!("</v2/{}/tags/list?n={n}&last={l}>; rel=\"next\"", repo.name);
            if let Ok(v) = HeaderValue::from_str(&link) {
                r.headers_mut().insert(LINK, v);
            }
        }
    }
    Ok(r)
}

/// `GET /v2/_catalog` with `n` and `last`: the repositories the caller may pull.
pub(crate) async fn catalog(
    core: &Arc<Core>,
    caller: &Caller,
    q: Option<&str>,
) -> OciResult<Response> {
    let catalog = core.catalog.clone();
    let repos = blocking("list repositories", move || catalog.repos()).await?;
    let visible: Vec<String> = repos
        .into_iter()
        .filter(|r| auth::may_pull(core, caller.user.as_deref(), r))
        .filter(|r| caller.repos.as_ref().is_none_or(|rs| rs.contains(r)))
        .collect();
    let (items, more) = page(visible, q);
    let mut r = axum::Json(serde_json::json!({"repositories": items})).into_response();
    if more {
        if let Some(l) = items.last() {
            let n = query(q, "n").unwrap_or_default();
            if let Ok(v) =
                HeaderValue::from_str(&format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\""))
            {
                r.headers_mut().insert(LINK, v);
            }
        }
    }
    Ok(r)
}

/// One entry of a referrers index.
fn descriptor(
    media_type: &str,
    digest: &Sha256Digest,
    size: u64,
    artifact_type: Option<String>,
    annotations: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut desc = serde_json::json!({
        "mediaType": media_type,
        "digest": digest.to_oci(),
        "size": size,
    });
    if let Some(t) = artifact_type {
        desc["artifactType"] = t.into();
    }
    if let Some(a) = annotations {
        desc["annotations"] = a;
    }
    desc
}

/// `GET /v2/<name>/referrers/<digest>`: the manifests of this repository whose `subject` is
/// the digest (optionally of one `artifactType`): the site's, and while the site is online the
/// origin's too (asked within `oci.miss_timeout`; offline or slow, the site's alone), so what
/// was attached to an image at the origin after it reached the site is listed.
pub(crate) async fn referrers(
    core: &Arc<Core>,
    repo: &Repo,
    digest: &str,
    q: Option<&str>,
) -> OciResult<Response> {
    let subject = parse_digest(digest)?;
    let filter = query(q, "artifactType");
    let (catalog, n) = (core.catalog.clone(), repo.name.as_str().to_owned());
    let manifests = blocking("list manifests", move || catalog.manifests_of(&n)).await?;
    let mut out = Vec::new();
    for (d, media_type) in manifests {
        let Some(m) = local_blob(core, repo.name.as_str(), d).await? else {
            continue;
        };
        let bytes = read_all(core, &m).await?;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if v.pointer("/subject/digest").and_then(|s| s.as_str()) != Some(subject.to_oci().as_str())
        {
            continue;
        }
        let artifact_type = v
            .get("artifactType")
            .or_else(|| v.pointer("/config/mediaType"))
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        if filter.is_some() && filter != artifact_type {
            continue;
        }
        out.push(descriptor(
            &media_type,
            &d,
            bytes.len() as u64,
            artifact_type,
            v.get("annotations").cloned(),
        ));
    }
    match ondemand::referrers(core, repo.name.as_str(), subject).await {
        Ok(theirs) => {
            let mut seen: std::collections::HashSet<String> = out
                .iter()
                .filter_map(|d| d["digest"].as_str().map(str::to_owned))
                .collect();
            for r in theirs {
                if filter.is_some() && filter != r.artifact_type {
                    continue;
                }
                if !seen.insert(r.digest.to_oci()) {
                    continue;
                }
                let annotations = r
                    .annotations_json
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok());
                out.push(descriptor(
                    &r.media_type,
                    &r.digest,
                    r.size,
                    r.artifact_type,
                    annotations,
                ));
            }
        }
        Err(Miss::Offline) => {}
        Err(e) => {
            tracing::debug!(repo = %repo.name, error = %e, "referrers: the origin's list is left out");
        }
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": out,
    });
    let mut r = respond(
        StatusCode::OK,
        &[(
            "content-type",
            "application/vnd.oci.image.index.v1+json".into(),
        )],
        Body::from(body.to_string()),
    );
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
