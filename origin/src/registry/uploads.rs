//! Blob uploads (monolithic, chunked `PATCH`, cross-repository mount) and blob reads.
//!
//! An upload session lives in memory: its [`BlobWriter`] cuts and stores chunks as bytes
//! arrive, so only the chunker's window and one batch are held whatever the blob's size. A
//! session idle for [`SESSION_IDLE`] is dropped (its chunks collected) when the next upload
//! starts; a restart of the origin forgets sessions, and clients start the upload again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt as _;
use sitecast_protocol::oci::{parse_digest, RepoName};
use sitecast_protocol::{BlobRecipe, Sha256Digest};

use super::read;
use super::{respond, Code, OciError, Query, RegResult, Registry};
use crate::db;
use crate::ingest::BlobWriter;
use crate::upstream::Pulled;
use crate::util::{now, random_secret};

/// An upload session untouched this long is dropped.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Most upload sessions open at once (each holds a chunker window of up to 512 KiB); beyond it a
/// new one is refused with 429 until others finish or expire.
pub(crate) const MAX_SESSIONS: usize = 256;

struct Session {
    repo: RepoName,
    writer: Option<BlobWriter>,
}

struct Entry {
    session: Arc<tokio::sync::Mutex<Session>>,
    touched: Instant,
}

/// Open upload sessions by id.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Entry>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self, repo: RepoName, writer: BlobWriter) -> RegResult<String> {
        let id = random_secret()[..32].to_owned();
        let mut m = self.lock();
        m.retain(|_, e| e.touched.elapsed() < SESSION_IDLE);
        if m.len() >= MAX_SESSIONS {
            return Err(OciError::new(
                Code::TooManyRequests,
                format!("{MAX_SESSIONS} uploads are open; finish or cancel some first"),
            )
            .with_header(header::RETRY_AFTER, "10"));
        }
        m.insert(
            id.clone(),
            Entry {
                session: Arc::new(tokio::sync::Mutex::new(Session {
                    repo,
                    writer: Some(writer),
                })),
                touched: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The session `id`; callers check its repository under the session's lock.
    fn find(&self, id: &str) -> RegResult<Arc<tokio::sync::Mutex<Session>>> {
        let mut m = self.lock();
        let e = m.get_mut(id).ok_or_else(|| unknown_upload(id))?;
        e.touched = Instant::now();
        Ok(Arc::clone(&e.session))
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

fn unknown_upload(id: &str) -> OciError {
    OciError::new(
        Code::BlobUploadUnknown,
        format!(
            "upload {:?} is unknown (finished, cancelled or expired)",
            id.chars().take(64).collect::<String>()
        ),
    )
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The `Range` header value of an upload holding `len` bytes.
fn range_of(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn created(repo: &RepoName, digest: &Sha256Digest) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{}", digest.to_oci())),
            ("docker-content-digest", digest.to_oci()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn accepted(repo: &RepoName, id: &str, len: u64) -> Response {
    respond(
        StatusCode::ACCEPTED,
        &[
            ("location", upload_location(repo, id)),
            ("range", range_of(len)),
            ("docker-upload-uuid", id.to_owned()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// Feed a request body into the writer, keeping the total under `max_upload`
/// (`413 SIZE_INVALID` above it).
async fn feed(reg: &Registry, w: &mut BlobWriter, body: Body) -> RegResult<()> {
    let limit = reg.core.cfg.max_upload;
    Ok(w.feed_stream(body.into_data_stream(), limit).await?)
}

/// Finish a writer: check the digest, link the blob into `repo`.
async fn complete(
    reg: &Registry,
    repo: &RepoName,
    mut w: BlobWriter,
    digest: Sha256Digest,
) -> RegResult<Response> {
    let recipe = match w.finish().await {
        Ok(r) => r,
        Err(e) => {
            w.abandon().await;
            return Err(e.into());
        }
    };
    if recipe.sha256 != digest {
        w.abandon().await;
        return Err(OciError::new(
            Code::DigestInvalid,
            format!(
                "the uploaded bytes have digest {}, not {}; nothing was stored",
                recipe.sha256.to_oci(),
                digest.to_oci()
            ),
        ));
    }
    if let Err(e) = link(reg, repo, recipe).await {
        w.abandon().await;
        return Err(e);
    }
    w.release();
    Ok(created(repo, &digest))
}

async fn link(reg: &Registry, repo: &RepoName, recipe: BlobRecipe) -> RegResult<()> {
    let repo = repo.clone();
    reg.core
        .db
        .call(move |c| db::oci::link_blob(c, &repo, &recipe, now()))
        .await?;
    Ok(())
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload, or open a session.
pub(crate) async fn start(
    reg: &Arc<Registry>,
    repo: RepoName,
    q: &Query,
    body: Body,
) -> RegResult<Response> {
    if let Some(m) = q.get("mount") {
        let digest = parse_digest(m)?;
        let from = q.get("from").map(RepoName::parse).transpose()?;
        let found = reg
            .core
            .db
            .call(move |c| match from {
                Some(f) => Ok(db::oci::repo_blob(c, &f, &digest)?),
                // Automatic content discovery: any repository holding the blob.
                None => Ok(db::oci::any_repo_blob(c, &digest)?.map(|(_, r)| r)),
            })
            .await?;
        if let Some(recipe) = found {
            link(reg, &repo, recipe).await?;
            return Ok(created(&repo, &digest));
        }
        // Not mountable: fall back to a new upload session, as the spec says.
    }
    let mut w = BlobWriter::new(&reg.core);
    if let Some(d) = q.get("digest") {
        let digest = parse_digest(d)?;
        if let Err(e) = feed(reg, &mut w, body).await {
            w.abandon().await;
            return Err(e);
        }
        return complete(reg, &repo, w, digest).await;
    }
    let id = reg.uploads.open(repo.clone(), w)?;
    let mut r = accepted(&repo, &id, 0);
    r.headers_mut().insert(
        "oci-chunk-min-length",
        header::HeaderValue::from_static("0"),
    );
    Ok(r)
}

/// Parse `Content-Range: <start>-<end>` (some clients prefix `bytes `/`bytes=`) into the first
/// byte and the number of bytes announced.
fn content_range(h: &HeaderMap) -> RegResult<Option<(u64, u64)>> {
    h.get(header::CONTENT_RANGE)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    OciError::new(
                        Code::BlobUploadInvalid,
                        "malformed Content-Range: expected <start>-<end>",
                    )
                })
        })
        .transpose()
}

/// The `(start, count)` of a `Content-Range` value, `None` when malformed.
pub(crate) fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let s = s.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    // `0-18446744073709551615` announces 2^64 bytes: more than any upload can hold.
    let count = b.checked_sub(a)?.checked_add(1)?;
    Some((a, count))
}

/// `PATCH`: append a chunk (in order) to an open session.
pub(crate) async fn patch(
    reg: &Arc<Registry>,
    repo: RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> RegResult<Response> {
    let s = reg.uploads.find(id)?;
    let mut s = s.lock().await;
    if s.repo != repo {
        return Err(unknown_upload(id));
    }
    let repo = s.repo.clone();
    let w = s.writer.as_mut().ok_or_else(|| unknown_upload(id))?;
    let have = w.len();
    if let Some((start, expect)) = content_range(headers)? {
        if start != have {
            return Err(OciError::new(
                Code::BlobUploadInvalid,
                format!("chunk starts at {start}, the upload holds {have} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::RANGE, range_of(have))
            .with_header(header::LOCATION, upload_location(&repo, id)));
        }
        feed(reg, w, body).await?;
        let got = w.len() - have;
        if got != expect {
            return Err(OciError::new(
                Code::BlobUploadInvalid,
                format!("Content-Range announced {expect} bytes, the body had {got}"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::RANGE, range_of(w.len())));
        }
    } else {
        feed(reg, w, body).await?;
    }
    Ok(accepted(&repo, id, w.len()))
}

/// `PUT ?digest=`: the last bytes (if any), then the digest check and the link.
pub(crate) async fn finish(
    reg: &Arc<Registry>,
    repo: RepoName,
    id: &str,
    q: &Query,
    body: Body,
) -> RegResult<Response> {
    let digest = parse_digest(
        q.get("digest")
            .ok_or_else(|| OciError::new(Code::DigestInvalid, "PUT needs ?digest="))?,
    )?;
    let s = reg.uploads.find(id)?;
    let mut s = s.lock().await;
    if s.repo != repo {
        return Err(unknown_upload(id));
    }
    let mut w = s.writer.take().ok_or_else(|| unknown_upload(id))?;
    reg.uploads.remove(id);
    if let Err(e) = feed(reg, &mut w, body).await {
        w.abandon().await;
        return Err(e);
    }
    complete(reg, &repo, w, digest).await
}

/// `GET` on an upload: how much it holds.
pub(crate) async fn status(reg: &Arc<Registry>, repo: RepoName, id: &str) -> RegResult<Response> {
    let s = reg.uploads.find(id)?;
    let s = s.lock().await;
    if s.repo != repo {
        return Err(unknown_upload(id));
    }
    let len = s.writer.as_ref().ok_or_else(|| unknown_upload(id))?.len();
    Ok(respond(
        StatusCode::NO_CONTENT,
        &[
            ("location", upload_location(&repo, id)),
            ("range", range_of(len)),
            ("docker-upload-uuid", id.to_owned()),
        ],
        Body::empty(),
    ))
}

/// `DELETE` on an upload: cancel it and collect what it stored.
pub(crate) async fn cancel(reg: &Arc<Registry>, repo: RepoName, id: &str) -> RegResult<Response> {
    let s = reg.uploads.find(id)?;
    let mut s = s.lock().await;
    if s.repo != repo {
        return Err(unknown_upload(id));
    }
    let w = s.writer.take().ok_or_else(|| unknown_upload(id))?;
    reg.uploads.remove(id);
    w.abandon().await;
    Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
}

/// `GET`/`HEAD` of a blob, with `Range`.
pub(crate) async fn get_blob(
    reg: &Arc<Registry>,
    repo: RepoName,
    digest: Sha256Digest,
    range: Option<&str>,
    head: bool,
) -> RegResult<Response> {
    let lookup = |repo: RepoName| async move {
        reg.core
            .db
            .call(move |c| db::oci::repo_blob(c, &repo, &digest))
            .await
    };
    let mut recipe = lookup(repo.clone()).await?;
    if recipe.is_none() {
        match reg.core.pull.blob(&reg.core, &repo, &digest).await? {
            // A fresh fetch streams to this client; with a Range or for HEAD the client waits
            // for the store (the stream is drained by the fetch task either way).
            Some(Pulled::Streaming(body, len)) if range.is_none() && !head => {
                let mut h = vec![
                    ("content-type", "application/octet-stream".to_owned()),
                    ("docker-content-digest", digest.to_oci()),
                ];
                if let Some(l) = len {
                    h.push(("content-length", l.to_string()));
                }
                return Ok(respond(StatusCode::OK, &h, body));
            }
            Some(Pulled::Streaming(body, _)) => {
                let mut drain = body.into_data_stream();
                while drain.next().await.is_some() {}
                recipe = lookup(repo.clone()).await?;
            }
            Some(Pulled::Stored) => recipe = lookup(repo.clone()).await?,
            None => {}
        }
    }
    let recipe = recipe.ok_or_else(|| {
        OciError::new(
            Code::BlobUnknown,
            format!("blob {} is not in {repo}", digest.to_oci()),
        )
    })?;
    let len = recipe.len;
    let (status, start, end) = match read::range(range, len) {
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            return Err(
                OciError::new(Code::BlobUnknown, "requested range not satisfiable")
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{len}")),
            )
        }
    };
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", digest.to_oci()),
        ("accept-ranges", "bytes".to_owned()),
        ("content-length", (end - start).to_string()),
        ("etag", format!("\"{}\"", digest.to_oci())),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        headers.push(("content-range", format!("bytes {start}-{}/{len}", end - 1)));
    }
    let body = if head {
        Body::empty()
    } else {
        read::body(&reg.core, &recipe, start, end)
    };
    Ok(respond(status, &headers, body))
}

/// `DELETE` of a blob: unlink it from the repository; collected once nothing references it.
pub(crate) async fn delete_blob(
    reg: &Arc<Registry>,
    repo: RepoName,
    digest: Sha256Digest,
) -> RegResult<Response> {
    let r2 = repo.clone();
    let blob = reg
        .core
        .db
        .call(move |c| db::oci::unlink_blob(c, &r2, &digest))
        .await?
        .ok_or_else(|| {
            OciError::new(
                Code::BlobUnknown,
                format!("blob {} is not in {repo}", digest.to_oci()),
            )
        })?;
    if let Err(e) = reg.core.collect_blob(blob).await {
        tracing::warn!(error = %e, "garbage collection after blob delete failed");
    }
    Ok(respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 10)));
        assert_eq!(parse_content_range("bytes=10-19"), Some((10, 10)));
        assert_eq!(parse_content_range("bytes 5-5/100"), Some((5, 1)));
        assert_eq!(parse_content_range(" 3 - 4 "), Some((3, 2)));
        for bad in ["", "5", "5-", "-5", "9-3", "a-b", "0-1-2"] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    /// Regression: `0-18446744073709551615` announced 2^64 bytes and overflowed
    /// `end - start + 1` in `patch`.
    #[test]
    fn content_range_of_every_u64_is_refused() {
        let max = u64::MAX;
        assert_eq!(parse_content_range(&format!("0-{max}")), None);
        assert_eq!(parse_content_range(&format!("1-{max}")), Some((1, max)));
        assert_eq!(parse_content_range(&format!("{max}-{max}")), Some((max, 1)));
    }
}
